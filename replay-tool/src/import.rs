//! `crm-replay import`: not written yet.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::Ctx;

pub async fn run(
    _ctx: &Ctx,
    _file: &str,
    _tenant: Option<String>,
    _batch: usize,
) -> Result<ExitCode> {
    bail!("crm-replay import is not available yet")
}
