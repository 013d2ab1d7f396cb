//! `crm-replay timeline`: not written yet.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::Ctx;

pub async fn run(
    _ctx: &Ctx,
    _tenant: &str,
    _customer: &str,
    _as_of: Option<String>,
) -> Result<ExitCode> {
    bail!("crm-replay timeline is not available yet")
}
