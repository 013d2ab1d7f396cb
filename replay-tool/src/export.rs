//! `crm-replay export`: not written yet.

use std::process::ExitCode;

use anyhow::{Result, bail};
use crm_core::envelope::Position;
use std::path::PathBuf;

use crate::Ctx;

pub async fn run(
    _ctx: &Ctx,
    _tenant: Option<String>,
    _from: Option<Position>,
    _to: Option<Position>,
    _types: Vec<String>,
    _out: Option<PathBuf>,
) -> Result<ExitCode> {
    bail!("crm-replay export is not available yet")
}
