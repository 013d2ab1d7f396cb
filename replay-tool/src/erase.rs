//! `crm-replay erase`, `erase-tenant` and `rotate-master`: the operator's side of personal
//! data. `erase` calls the same decision as `POST /v1/customers/{id}/erase`
//! ([`crm_core::privacy::erase`]), then brings the read models up to the erasure (a runner
//! here, or the serving process's) and scrubs the database files.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_core::envelope::{Position, TenantId};
use crm_core::ids::EntityId;
use crm_core::privacy::erase::{ErasureTarget, erase, scrub_keys};
use crm_core::privacy::{MasterKey, PrivateStore};
use crm_projections::runner::{self, RunnerOptions};
use crm_projections::{ReadDb, all_projections, bookkeeping};

use crate::Ctx;
use crate::output::outln;

/// Longest the read models may take to apply an erasure.
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

fn private(ctx: &Ctx) -> Result<&PrivateStore> {
    ctx.private
        .as_ref()
        .context("this command needs the master key")
}

pub async fn run(ctx: &Ctx, tenant: &str, id: &str, lead: bool) -> Result<ExitCode> {
    let store = private(ctx)?;
    let tenant = TenantId::parse(tenant).context("--tenant")?;
    let id = EntityId::parse(id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let target = if lead {
        ErasureTarget::Lead(id)
    } else {
        ErasureTarget::Customer(id)
    };
    let erasure = erase(store, &tenant, &target).await?;
    if let Some(position) = erasure.position {
        apply_and_scrub(ctx, store, position).await?;
    } else {
        scrub_keys(store).await?;
    }
    if ctx.json {
        outln!("{}", serde_json::to_string(&erasure)?);
    } else if erasure.already_erased {
        eprintln!(
            "{} was already erased; the files were scrubbed again",
            erasure.subject
        );
    } else {
        eprintln!(
            "{} erased: its data keys are destroyed (event at position {}), the read models \
             applied it and the database files were scrubbed",
            erasure.subject,
            erasure.position.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the projections here until every read model has applied `position` (or waits for
/// the serving process that holds them), then scrubs the key table and the read models.
async fn apply_and_scrub(ctx: &Ctx, store: &PrivateStore, position: Position) -> Result<()> {
    let db = ReadDb::open(&ctx.url)
        .await
        .context("cannot open the read models")?;
    let handle = runner::start(
        ctx.projection_store(),
        db.clone(),
        all_projections(),
        RunnerOptions::default(),
    );
    let deadline = Instant::now() + APPLY_TIMEOUT;
    let wanted = all_projections().len();
    loop {
        let stored = bookkeeping::stored_positions(&db).await?;
        if stored.len() >= wanted && stored.iter().all(|p| p.position >= position) {
            break;
        }
        if Instant::now() > deadline {
            handle.shutdown().await.ok();
            bail!(
                "the read models did not reach the erasure at position {position} within {} s; \
                 the keys are destroyed, run the command again to scrub",
                APPLY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.shutdown().await.ok();
    db.scrub_after_erasure(store).await?;
    db.close().await;
    Ok(())
}

pub async fn tenant(ctx: &Ctx, tenant: &str) -> Result<ExitCode> {
    let store = private(ctx)?;
    let tenant = TenantId::parse(tenant).context("tenant")?;
    let destroyed = store.vault().table().erase_tenant(&tenant).await?;
    store.vault().forget_all();
    scrub_keys(store).await?;
    // Its webhook subscriptions, their delivery log and queued calls go with it.
    let db = ReadDb::open(&ctx.url)
        .await
        .context("cannot open the read models")?;
    let webhooks = crm_automation::webhooks::tables::erase_tenant(&db, tenant.as_str()).await?;
    // So does the rule worker's state (rules held, scheduled facts, run log): the tenant's
    // rules act no more (their events stay in the log, which stays verifiable).
    crm_automation::workflows::tables::create(&db)
        .await
        .context("cannot open the workflow tables")?;
    crm_automation::workflows::tables::erase_tenant(&db, tenant.as_str())
        .await
        .context("cannot delete the tenant's workflow state")?;
    db.close().await;
    if ctx.json {
        outln!(
            "{}",
            serde_json::json!({
                "tenant": tenant.as_str(),
                "keys_destroyed": destroyed,
                "webhooks_deleted": webhooks,
            })
        );
    } else {
        eprintln!(
            "tenant {tenant}: {destroyed} data keys destroyed, {webhooks} webhook subscriptions \
             deleted with their delivery log, its workflow rules' state deleted; its log still verifies, its personal fields read \
             \"[erased]\" (rebuild the read models to clear them there: crm-replay rebuild --all)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rotate(ctx: &Ctx, new_key_file: &Path) -> Result<ExitCode> {
    let store = private(ctx)?;
    let new_master = match MasterKey::load(None, Some(new_key_file))? {
        Some((key, _)) => key,
        None => {
            let key = MasterKey::generate()?;
            key.write_new_file(new_key_file)?;
            key
        }
    };
    // Webhook secrets are sealed under the master key too: re-sealed first, so a rotation
    // stopped between the two steps is run again with the same new key (a secret already
    // under it is left as it is).
    let db = ReadDb::open(&ctx.url)
        .await
        .context("cannot open the webhook tables")?;
    let resealed =
        crm_automation::webhooks::secrets::reseal_all(&db, store.vault().master(), &new_master)
            .await?;
    db.close().await;
    let count = store.vault().rotate_master(&new_master).await?;
    if ctx.json {
        outln!(
            "{}",
            serde_json::json!({
                "rewrapped": count,
                "webhook_secrets_resealed": resealed,
                "fingerprint": new_master.fingerprint(),
            })
        );
    } else {
        eprintln!(
            "{count} data keys re-wrapped and {resealed} webhook secrets re-sealed under the key \
             in {} (fingerprint {}); use it from \
             now on and destroy the old one once every backup made with it has expired",
            new_key_file.display(),
            new_master.fingerprint()
        );
    }
    Ok(ExitCode::SUCCESS)
}
