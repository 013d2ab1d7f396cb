//! `crm-replay stats [--tenant T]`: what the store holds: events (per tenant and per type,
//! with their first and last positions), streams, the head, the store's size on disk, and
//! each read model's position and lag.

use std::process::ExitCode;

use anyhow::{Context, Result};
use crm_core::envelope::TenantId;
use crm_core::store::StoreUrl;
use crm_projections::db::{Col, SqlValue};
use crm_projections::{ReadDb, bookkeeping};
use serde::Serialize;

use crate::Ctx;
use crate::output::outln;

#[derive(Serialize)]
struct TypeCount {
    event_type: String,
    events: i64,
    first_position: i64,
    last_position: i64,
}

#[derive(Serialize)]
struct TenantCount {
    tenant: String,
    events: i64,
}

#[derive(Serialize)]
struct ProjectionLine {
    projection: String,
    generation: i64,
    position: u64,
    lag: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebuild_position: Option<u64>,
}

#[derive(Serialize)]
struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    events: i64,
    streams: i64,
    head_position: u64,
    first_position: Option<i64>,
    last_position: Option<i64>,
    store_bytes: Option<u64>,
    /// The fingerprint of the master key the store's key ring was made with (no key needed).
    master_key_fingerprint: Option<String>,
    tenants: Vec<TenantCount>,
    types: Vec<TypeCount>,
    projections: Vec<ProjectionLine>,
}

pub async fn run(ctx: &Ctx, tenant: Option<String>) -> Result<ExitCode> {
    let tenant = tenant
        .map(|t| TenantId::parse(&t))
        .transpose()
        .context("--tenant")?;
    let db = ReadDb::open_read_only(&ctx.url)
        .await
        .context("cannot open the store's database")?;
    let (filter, args): (&str, Vec<SqlValue>) = match &tenant {
        Some(tenant) => (" WHERE tenant = ?", vec![tenant.as_str().into()]),
        None => ("", vec![]),
    };
    let types: Vec<TypeCount> = db
        .fetch(
            &format!(
                "SELECT event_type, COUNT(*), MIN(position), MAX(position) FROM crm_events{filter} \
                 GROUP BY event_type ORDER BY event_type"
            ),
            args.clone(),
            &[Col::Text, Col::Int, Col::Int, Col::Int],
        )
        .await?
        .into_iter()
        .map(|row| TypeCount {
            event_type: row[0].as_text().unwrap_or_default().to_owned(),
            events: row[1].as_int().unwrap_or(0),
            first_position: row[2].as_int().unwrap_or(0),
            last_position: row[3].as_int().unwrap_or(0),
        })
        .collect();
    let tenants: Vec<TenantCount> = db
        .fetch(
            &format!(
                "SELECT tenant, COUNT(*) FROM crm_events{filter} GROUP BY tenant ORDER BY tenant"
            ),
            args.clone(),
            &[Col::Text, Col::Int],
        )
        .await?
        .into_iter()
        .map(|row| TenantCount {
            tenant: row[0].as_text().unwrap_or_default().to_owned(),
            events: row[1].as_int().unwrap_or(0),
        })
        .collect();
    let streams = db
        .fetch(
            &format!("SELECT COUNT(*) FROM crm_streams{filter}"),
            args,
            &[Col::Int],
        )
        .await?
        .first()
        .and_then(|row| row[0].as_int())
        .unwrap_or(0);
    let head_position = ctx.store.head_position().await?;
    // A store never served (only imported into) has no read models yet.
    let stored = if db.has_table("crm_projection_checkpoints").await? {
        bookkeeping::stored_positions(&db).await?
    } else {
        Vec::new()
    };
    let projections = stored
        .into_iter()
        .map(|s| ProjectionLine {
            lag: head_position.saturating_sub(s.position),
            projection: s.projection,
            generation: s.generation,
            position: s.position,
            rebuild_position: s.rebuild_position,
        })
        .collect();
    let store_bytes = match &ctx.url {
        StoreUrl::Sqlite { path, .. } => {
            let size = |suffix: &str| {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                std::fs::metadata(name).map(|m| m.len()).unwrap_or(0)
            };
            Some(size("") + size("-wal") + size("-shm"))
        }
        StoreUrl::Postgres { .. } => db
            .fetch(
                "SELECT pg_database_size(current_database())",
                vec![],
                &[Col::Int],
            )
            .await?
            .first()
            .and_then(|row| row[0].as_int())
            .and_then(|bytes| u64::try_from(bytes).ok()),
    };
    let master_key_fingerprint = match ctx.raw.key_table() {
        Some(table) => table.keyring().await?.map(|k| k.fingerprint),
        None => None,
    };
    let stats = Stats {
        master_key_fingerprint,
        tenant: tenant.map(|t| t.to_string()),
        events: types.iter().map(|t| t.events).sum(),
        streams,
        head_position,
        first_position: types.iter().map(|t| t.first_position).min(),
        last_position: types.iter().map(|t| t.last_position).max(),
        store_bytes,
        tenants,
        types,
        projections,
    };
    if ctx.json {
        outln!("{}", serde_json::to_string(&stats)?);
    } else {
        print_text(&stats);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(stats: &Stats) {
    outln!(
        "{} events in {} streams{}; head position {}; positions {}–{}; store size {}",
        stats.events,
        stats.streams,
        stats
            .tenant
            .as_deref()
            .map(|t| format!(" of tenant {t}"))
            .unwrap_or_default(),
        stats.head_position,
        stats.first_position.unwrap_or(0),
        stats.last_position.unwrap_or(0),
        stats
            .store_bytes
            .map(|b| format!("{:.1} MiB", b as f64 / 1_048_576.0))
            .unwrap_or_else(|| "unknown".into()),
    );
    outln!(
        "master key fingerprint: {}",
        stats
            .master_key_fingerprint
            .as_deref()
            .unwrap_or("none (no key ring: a plaintext or empty store)")
    );
    outln!("tenants:");
    for tenant in &stats.tenants {
        outln!("  {:<24} {:>12} events", tenant.tenant, tenant.events);
    }
    outln!("event types:");
    for t in &stats.types {
        outln!(
            "  {:<28} {:>12} events  positions {}–{}",
            t.event_type,
            t.events,
            t.first_position,
            t.last_position
        );
    }
    outln!("read models:");
    for p in &stats.projections {
        outln!(
            "  {:<20} generation {:<3} position {:>12}  lag {}{}",
            p.projection,
            p.generation,
            p.position,
            p.lag,
            p.rebuild_position
                .map(|r| format!("  (rebuild at {r})"))
                .unwrap_or_default()
        );
    }
}
