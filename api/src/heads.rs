//! `serve --publish-heads DIR --every 10m`: each tenant's signed tree head written to
//! `DIR/<tenant>/head-<tree size, 20 digits>.json`, once per tree size, at the start and then
//! at every interval. A file is created, never overwritten or removed (mount `DIR` on
//! write-once storage, or copy it there: docs/audit.md); it is written whole and synced,
//! then the directory is synced, so a crash leaves either no file or a whole one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crm_core::audit::{HeadSigner, SignedHead};
use crm_projections::ReadDb;

use crate::app::SharedState;

/// Starts the task; it ends when the server closes.
pub fn spawn(
    state: SharedState,
    signer: Arc<HeadSigner>,
    dir: PathBuf,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let mut closing = state.closing.subscribe();
    tokio::spawn(async move {
        loop {
            match publish(&state.db, &signer, &dir).await {
                Ok(written) if written > 0 => {
                    tracing::info!(written, dir = %dir.display(), "signed tree heads published");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, dir = %dir.display(), "could not publish the signed tree heads");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = closing.wait_for(|closing| *closing) => return,
            }
        }
    })
}

/// Writes the head of every tenant whose current tree size has no file yet; returns how many
/// were written.
pub async fn publish(db: &ReadDb, signer: &HeadSigner, dir: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    for (tenant, tree) in crm_projections::audit::trees(db).await? {
        if tree.size == 0 {
            continue;
        }
        let tenant_dir = dir.join(&tenant);
        let path = tenant_dir.join(format!("head-{:020}.json", tree.size));
        if path.exists() {
            continue;
        }
        let head = SignedHead::sign(signer, &tenant, tree.size, &tree.root);
        let text = serde_json::to_string_pretty(&head)? + "\n";
        tokio::task::spawn_blocking(move || write_once(&tenant_dir, &path, &text)).await??;
        written += 1;
    }
    Ok(written)
}

/// Creates `path` with `text` (never over an existing file), synced, and syncs its directory.
fn write_once(dir: &Path, path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temporary = dir.join(format!(
        ".{}.partial",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("head")
    ));
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    // A hard link fails if the name exists: an existing head is never replaced.
    match std::fs::hard_link(&temporary, path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(error).with_context(|| format!("cannot create {}", path.display()));
        }
    }
    let _ = std::fs::remove_file(&temporary);
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}
