//! The key file of `export --keys-out` / `import --keys-in`: the tenants' data keys as the
//! store keeps them (wrapped by the master key, so the file is useless without it), their
//! tombstones and links, one JSON object per line. Created with mode 0600.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use chrono::{DateTime, Utc};
use crm_core::envelope::TenantId;
use crm_core::store::keys::{KeyTable, SubjectKey, SubjectLink};
use serde::{Deserialize, Serialize};

use crate::Ctx;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Key {
        tenant: String,
        subject: String,
        key_id: String,
        wrapped: Option<String>,
        created_at: DateTime<Utc>,
        erased_at: Option<DateTime<Utc>>,
    },
    Link {
        tenant: String,
        subject: String,
        owner: String,
    },
}

fn table(ctx: &Ctx) -> Result<std::sync::Arc<dyn KeyTable>> {
    ctx.raw.key_table().context("this store keeps no key table")
}

pub async fn write(ctx: &Ctx, tenant: Option<&str>, path: &Path) -> Result<()> {
    let tenant = tenant
        .map(TenantId::parse)
        .transpose()
        .context("--tenant")?;
    let table = table(ctx)?;
    let keys = table.all_keys(tenant.as_ref()).await?;
    let links = table.all_links(tenant.as_ref()).await?;
    let file = crate::outfile::create(path, false, &ctx.url, "--keys-out")?;
    let mut out = std::io::BufWriter::new(file);
    for key in keys {
        let line = Line::Key {
            tenant: key.tenant.as_str().to_owned(),
            subject: key.subject,
            key_id: hex::encode(key.key_id),
            wrapped: key.wrapped.map(|w| B64.encode(w)),
            created_at: key.created_at,
            erased_at: key.erased_at,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    for link in links {
        let line = Line::Link {
            tenant: link.tenant.as_str().to_owned(),
            subject: link.subject,
            owner: link.owner,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    out.flush()?;
    Ok(())
}

pub async fn read(ctx: &Ctx, path: &Path) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut keys = Vec::new();
    let mut links = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), n + 1);
        match serde_json::from_str::<Line>(&line).with_context(at)? {
            Line::Key {
                tenant,
                subject,
                key_id,
                wrapped,
                created_at,
                erased_at,
            } => {
                let mut id = [0u8; 16];
                hex::decode_to_slice(&key_id, &mut id).with_context(at)?;
                keys.push(SubjectKey {
                    tenant: TenantId::parse(&tenant).with_context(at)?,
                    subject,
                    key_id: id,
                    wrapped: wrapped
                        .map(|w| B64.decode(w))
                        .transpose()
                        .with_context(at)?,
                    created_at,
                    erased_at,
                });
            }
            Line::Link {
                tenant,
                subject,
                owner,
            } => links.push(SubjectLink {
                tenant: TenantId::parse(&tenant).with_context(at)?,
                subject,
                owner,
            }),
        }
    }
    if keys.is_empty() && links.is_empty() {
        bail!("{} holds no keys", path.display());
    }
    let restored = table(ctx)?.restore_keys(&keys, &links).await?;
    eprintln!("{restored} data keys restored from {}", path.display());
    Ok(())
}
