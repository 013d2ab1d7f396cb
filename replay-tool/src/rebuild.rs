//! `crm-replay rebuild`: not written yet.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::Ctx;

pub async fn run(_ctx: &Ctx, _projection: Option<String>, _all: bool) -> Result<ExitCode> {
    bail!("crm-replay rebuild is not available yet")
}
