//! The runner's own tables: which generation of each projection is live, every generation's
//! checkpoint, leases (SQLite), and per-tenant settings the read models' queries use.
//!
//! A checkpoint only moves by compare-and-set (`advance`), inside the transaction that wrote
//! the batch, so two runners that both believe they own a projection can never apply the
//! same events twice: the second commit finds the checkpoint moved and rolls back.

use crm_core::envelope::Position;

use crate::db::{Backend, Col, ReadDb, ReadTx, SqlValue};
use crate::error::ProjectionError;
use crate::projection::{Projection, Tables, physical_name};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS crm_projections (
        projection TEXTKEY PRIMARY KEY,
        live_generation BIGINT NOT NULL,
        rebuild_requested BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS crm_projection_checkpoints (
        projection TEXTKEY NOT NULL,
        generation BIGINT NOT NULL,
        version BIGINT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (projection, generation)
    )",
    "CREATE TABLE IF NOT EXISTS crm_projection_leases (
        projection TEXTKEY PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS crm_tenant_settings (
        tenant TEXTKEY NOT NULL,
        setting TEXTKEY NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (tenant, setting)
    )",
];

/// Creates the bookkeeping tables if they are missing. On PostgreSQL concurrent starters
/// are serialised by a transaction-scoped advisory lock.
pub async fn create(db: &ReadDb) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    if tx.backend() == Backend::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(1668443504, 0)", vec![])
            .await?;
    }
    for statement in SCHEMA.iter().chain(crate::parking::SCHEMA) {
        tx.execute(statement, vec![]).await?;
    }
    tx.commit().await
}

/// A projection's row in `crm_projections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveState {
    pub live_generation: i64,
    pub rebuild_requested: bool,
}

/// One generation's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub generation: i64,
    pub version: i64,
    pub position: Position,
}

pub async fn live_state(
    tx: &mut ReadTx,
    projection: &str,
) -> Result<Option<LiveState>, ProjectionError> {
    let rows = tx
        .fetch(
            "SELECT live_generation, rebuild_requested FROM crm_projections WHERE projection = ?",
            vec![projection.into()],
            &[Col::Int, Col::Int],
        )
        .await?;
    Ok(rows.first().map(|row| LiveState {
        live_generation: row[0].as_int().unwrap_or(0),
        rebuild_requested: row[1].as_int().unwrap_or(0) != 0,
    }))
}

pub async fn checkpoints(
    tx: &mut ReadTx,
    projection: &str,
) -> Result<Vec<Checkpoint>, ProjectionError> {
    let rows = tx
        .fetch(
            "SELECT generation, version, position FROM crm_projection_checkpoints \
             WHERE projection = ? ORDER BY generation",
            vec![projection.into()],
            &[Col::Int, Col::Int, Col::Int],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Checkpoint {
            generation: row[0].as_int().unwrap_or(0),
            version: row[1].as_int().unwrap_or(0),
            position: to_position(row[2].as_int().unwrap_or(0)),
        })
        .collect())
}

/// Creates the tables of `generation` (empty) and its checkpoint at position 0.
pub async fn create_generation(
    tx: &mut ReadTx,
    projection: &dyn Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    for def in projection.tables() {
        let table = physical_name(def.name, generation);
        tx.execute(&format!("DROP TABLE IF EXISTS {table}"), vec![])
            .await?;
        tx.execute(&def.create.replace("{t}", &table), vec![])
            .await?;
        for index in def.indexes {
            tx.execute(&index.replace("{t}", &table), vec![]).await?;
        }
    }
    crate::parking::forget_generation(tx, projection.name(), generation).await?;
    tx.execute(
        "INSERT INTO crm_projection_checkpoints (projection, generation, version, position) \
         VALUES (?, ?, ?, 0) ON CONFLICT (projection, generation) \
         DO UPDATE SET version = excluded.version, position = 0",
        vec![
            projection.name().into(),
            generation.into(),
            projection.version().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Drops the tables and then the checkpoint of `generation`, which must be neither live
/// nor being built (a generation the runner has left behind).
///
/// Each `DROP TABLE` is a statement of its own, outside any transaction. Inside one, SQLite
/// keeps a statement journal of every page the statement changes, and with `secure_delete`
/// (every freed page is zeroed, so changed) and `temp_store = memory` (no personal data in
/// temporary files) that journal is the whole table in memory: W5 at 10M events peaked at
/// 1.2 GB. On its own the statement needs no statement journal, and its changed pages spill
/// into the WAL past the connection's page cache.
///
/// The checkpoint goes last, in its own transaction: until then the generation is still
/// listed, so a crash half-way leaves a generation the next set-up drops again (`IF EXISTS`).
pub async fn drop_generation(
    db: &ReadDb,
    projection: &dyn Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    for def in projection.tables() {
        let table = physical_name(def.name, generation);
        db.execute(&format!("DROP TABLE IF EXISTS {table}"), vec![])
            .await?;
    }
    let mut tx = db.begin().await?;
    crate::parking::forget_generation(&mut tx, projection.name(), generation).await?;
    tx.execute(
        "DELETE FROM crm_projection_checkpoints WHERE projection = ? AND generation = ?",
        vec![projection.name().into(), generation.into()],
    )
    .await?;
    tx.commit().await
}

/// Makes `generation` the one readers see: repoints every view and records it as live.
pub async fn make_live(
    tx: &mut ReadTx,
    projection: &dyn Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    let tables = Tables::new(projection.tables(), generation);
    for def in projection.tables() {
        tx.execute(&format!("DROP VIEW IF EXISTS {}", def.name), vec![])
            .await?;
        tx.execute(
            &format!(
                "CREATE VIEW {} AS SELECT * FROM {}",
                def.name,
                tables.get(def.name)
            ),
            vec![],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO crm_projections (projection, live_generation, rebuild_requested) \
         VALUES (?, ?, 0) ON CONFLICT (projection) \
         DO UPDATE SET live_generation = excluded.live_generation",
        vec![projection.name().into(), generation.into()],
    )
    .await?;
    Ok(())
}

/// Moves a checkpoint from `from` to `to`, failing with [`ProjectionError::LostLease`] if it
/// is no longer at `from` (another process advanced it).
pub async fn advance(
    tx: &mut ReadTx,
    projection: &str,
    generation: i64,
    from: Position,
    to: Position,
) -> Result<(), ProjectionError> {
    let moved = tx
        .execute(
            "UPDATE crm_projection_checkpoints SET position = ? \
             WHERE projection = ? AND generation = ? AND position = ?",
            vec![
                from_position(to),
                projection.into(),
                generation.into(),
                from_position(from),
            ],
        )
        .await?;
    if moved == 1 {
        Ok(())
    } else {
        Err(ProjectionError::LostLease(projection.to_owned()))
    }
}

/// Asks for a blue/green rebuild of `projection`; whichever runner holds it starts one within
/// about a second. Returns false when the projection was never started here.
pub async fn request_rebuild(db: &ReadDb, projection: &str) -> Result<bool, ProjectionError> {
    let updated = db
        .execute(
            "UPDATE crm_projections SET rebuild_requested = 1 WHERE projection = ?",
            vec![projection.into()],
        )
        .await?;
    Ok(updated == 1)
}

pub async fn clear_rebuild_request(
    tx: &mut ReadTx,
    projection: &str,
) -> Result<(), ProjectionError> {
    tx.execute(
        "UPDATE crm_projections SET rebuild_requested = 0 WHERE projection = ?",
        vec![projection.into()],
    )
    .await?;
    Ok(())
}

/// The stored state of every projection: name, live generation, its position, and the
/// position of a rebuild in progress. What the API reports when another process runs them.
pub async fn stored_positions(db: &ReadDb) -> Result<Vec<StoredPosition>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT p.projection, p.live_generation, c.position, \
             (SELECT MAX(b.position) FROM crm_projection_checkpoints b \
              WHERE b.projection = p.projection AND b.generation > p.live_generation) \
             FROM crm_projections p JOIN crm_projection_checkpoints c \
             ON c.projection = p.projection AND c.generation = p.live_generation \
             ORDER BY p.projection",
            vec![],
            &[Col::Text, Col::Int, Col::Int, Col::Int],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| StoredPosition {
            projection: row[0].as_text().unwrap_or_default().to_owned(),
            generation: row[1].as_int().unwrap_or(0),
            position: to_position(row[2].as_int().unwrap_or(0)),
            rebuild_position: row[3].as_int().map(to_position),
        })
        .collect())
}

/// The code version of `projection`'s live generation (the tables its view shows), if it
/// has one. While a rebuild to a new version runs, the live generation is still the old one.
pub async fn live_version(db: &ReadDb, projection: &str) -> Result<Option<i64>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT c.version FROM crm_projections p JOIN crm_projection_checkpoints c \
             ON c.projection = p.projection AND c.generation = p.live_generation \
             WHERE p.projection = ?",
            vec![projection.into()],
            &[Col::Int],
        )
        .await?;
    Ok(rows.first().and_then(|row| row[0].as_int()))
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredPosition {
    pub projection: String,
    pub generation: i64,
    pub position: Position,
    pub rebuild_position: Option<Position>,
}

/// Reads a per-tenant setting (JSON text).
pub async fn tenant_setting(
    db: &ReadDb,
    tenant: &str,
    setting: &str,
) -> Result<Option<String>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT value FROM crm_tenant_settings WHERE tenant = ? AND setting = ?",
            vec![tenant.into(), setting.into()],
            &[Col::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|mut row| row.remove(0).into_text()))
}

/// Stores a per-tenant setting (JSON text), replacing any earlier value.
pub async fn set_tenant_setting(
    db: &ReadDb,
    tenant: &str,
    setting: &str,
    value: &str,
) -> Result<(), ProjectionError> {
    db.execute(
        "INSERT INTO crm_tenant_settings (tenant, setting, value) VALUES (?, ?, ?) \
         ON CONFLICT (tenant, setting) DO UPDATE SET value = excluded.value",
        vec![tenant.into(), setting.into(), value.into()],
    )
    .await?;
    Ok(())
}

pub(crate) fn to_position(value: i64) -> Position {
    Position::try_from(value).unwrap_or(0)
}

pub(crate) fn from_position(position: Position) -> SqlValue {
    SqlValue::Int(i64::try_from(position).unwrap_or(i64::MAX))
}
