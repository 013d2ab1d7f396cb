//! `crm-replay stats`: not written yet.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::Ctx;

pub async fn run(_ctx: &Ctx, _tenant: Option<String>) -> Result<ExitCode> {
    bail!("crm-replay stats is not available yet")
}
