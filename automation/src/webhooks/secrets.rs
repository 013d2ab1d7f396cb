//! Signing secrets at rest: generated here (32 bytes from the operating system), shown to
//! the caller once (on creation and on rotation), and stored only sealed under the master key
//! (`MasterKey::seal_secret`, AES-256-GCM) with the associated data (tenant, webhook id), so a
//! sealed secret moved to another row does not open. Never logged.
//!
//! A master-key rotation (`crm-replay rotate-master`) re-seals every secret under the new key
//! ([`reseal_all`]) before the key ring moves to it; a row already sealed under the new key
//! is left as it is, so a rotation interrupted between the two steps can be run again.

use crm_core::privacy::MasterKey;
use crm_projections::ReadDb;

use super::WebhookError;
use super::signing::Secret;
use super::tables;

/// A new secret and its sealed form for (tenant, id).
pub fn generate(
    master: &MasterKey,
    tenant: &str,
    id: &str,
) -> Result<(Secret, String), WebhookError> {
    let secret = Secret::generate()?;
    let sealed = master.seal_secret(secret.bytes(), &[tenant, id])?;
    Ok((secret, sealed))
}

/// Opens a stored secret.
pub fn open(
    master: &MasterKey,
    tenant: &str,
    id: &str,
    sealed: &str,
) -> Result<Secret, WebhookError> {
    Ok(Secret::from_bytes(
        master.open_secret(sealed, &[tenant, id])?,
    ))
}

/// Re-seals every webhook secret from `old` to `new`; returns how many were re-sealed. A
/// secret that opens under neither key fails the whole call (nothing is skipped silently).
pub async fn reseal_all(
    db: &ReadDb,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, WebhookError> {
    tables::create(db).await?;
    let mut count = 0;
    for (tenant, id, sealed) in tables::sealed_secrets(db).await? {
        let owner = [tenant.as_str(), id.as_str()];
        if new.open_secret(&sealed, &owner).is_ok() {
            continue;
        }
        let plain = old.open_secret(&sealed, &owner).map_err(|_| {
            WebhookError::Sealing(format!(
                "the secret of webhook {id} (tenant {tenant}) opens under neither the current \
                 nor the new master key"
            ))
        })?;
        let resealed = new.seal_secret(&plain, &owner)?;
        if tables::replace_secret(db, &tenant, &id, &sealed, &resealed).await? {
            count += 1;
        }
    }
    Ok(count)
}
