//! `crm-replay snapshot`: not written yet.

use std::process::ExitCode;

use anyhow::{Result, bail};
use crm_core::envelope::Position;
use std::path::Path;

use crate::Ctx;

pub async fn run(
    _ctx: &Ctx,
    _as_of: Option<String>,
    _position: Option<Position>,
    _out: &Path,
) -> Result<ExitCode> {
    bail!("crm-replay snapshot is not available yet")
}
