//! Leases: each projection is run by exactly one runner at a time.
//!
//! - PostgreSQL: a session advisory lock per projection, held on a connection kept aside for
//!   it. When the process dies its connection closes, the lock is released, and a standby
//!   runner takes the projection over on its next try (about a second).
//! - SQLite: a row per projection with a holder and an expiry, renewed with every batch and
//!   every poll; a runner takes a projection whose lease expired, or at once when the holder
//!   was a process on this host that no longer exists (so a restart after a crash does not
//!   wait for the expiry).
//!
//! Leases keep runners from working in parallel; correctness does not rest on them, because
//! every checkpoint moves by compare-and-set in the batch's own transaction.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::db::{ReadDb, ReadTx, SqlValue};
use crate::error::ProjectionError;

/// Advisory-lock class for projections ("crmp" in ASCII).
const LOCK_CLASS: i32 = 0x6372_6d70;

#[derive(Debug)]
pub struct Leases {
    holder: String,
    ttl: Duration,
    /// The connection that holds this runner's advisory locks (PostgreSQL only).
    pg: Option<PgConnection>,
}

impl Leases {
    pub fn new(ttl: Duration) -> Leases {
        Leases {
            holder: format!(
                "{}:{}:{}",
                host_name(),
                std::process::id(),
                uuid::Uuid::new_v4()
            ),
            ttl,
            pg: None,
        }
    }

    /// Tries to take (or keep) the lease of `projection`.
    pub async fn try_acquire(
        &mut self,
        db: &ReadDb,
        projection: &str,
    ) -> Result<bool, ProjectionError> {
        match db {
            ReadDb::Sqlite(_) => {
                let now = now_micros();
                let taken = db
                    .execute(
                        "INSERT INTO crm_projection_leases (projection, holder, expires_at) \
                         VALUES (?, ?, ?) ON CONFLICT (projection) DO UPDATE \
                         SET holder = excluded.holder, expires_at = excluded.expires_at \
                         WHERE crm_projection_leases.expires_at < ? \
                            OR crm_projection_leases.holder = excluded.holder",
                        vec![
                            projection.into(),
                            self.holder.as_str().into(),
                            SqlValue::Int(now + self.ttl_micros()),
                            SqlValue::Int(now),
                        ],
                    )
                    .await?;
                if taken == 1 {
                    return Ok(true);
                }
                self.take_from_dead_holder(db, projection).await
            }
            ReadDb::Postgres(pool) => {
                if self.pg.is_none() {
                    self.pg = Some(pool.acquire().await?.detach());
                }
                let Some(conn) = self.pg.as_mut() else {
                    return Ok(false);
                };
                let result: Result<bool, sqlx::Error> =
                    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
                        .bind(LOCK_CLASS)
                        .bind(projection)
                        .fetch_one(&mut *conn)
                        .await;
                match result {
                    Ok(taken) => Ok(taken),
                    Err(error) => {
                        // The connection is gone, and with it every lock it held.
                        self.pg = None;
                        Err(error.into())
                    }
                }
            }
        }
    }

    /// Takes a SQLite lease whose holder was a process of this host that has exited.
    async fn take_from_dead_holder(
        &self,
        db: &ReadDb,
        projection: &str,
    ) -> Result<bool, ProjectionError> {
        let rows = db
            .fetch(
                "SELECT holder FROM crm_projection_leases WHERE projection = ?",
                vec![projection.into()],
                &[crate::db::Col::Text],
            )
            .await?;
        let Some(holder) = rows.first().and_then(|r| r[0].as_text()).map(str::to_owned) else {
            return Ok(false);
        };
        if !holder_is_gone(&holder) {
            return Ok(false);
        }
        tracing::info!(projection, "taking over the lease of an exited process");
        let taken = db
            .execute(
                "UPDATE crm_projection_leases SET holder = ?, expires_at = ? \
                 WHERE projection = ? AND holder = ?",
                vec![
                    self.holder.as_str().into(),
                    SqlValue::Int(now_micros() + self.ttl_micros()),
                    projection.into(),
                    holder.as_str().into(),
                ],
            )
            .await?;
        Ok(taken == 1)
    }

    /// Checks that the PostgreSQL lock connection is alive (its locks are then still held).
    /// On SQLite, leases are renewed inside each batch instead.
    pub async fn alive(&mut self) -> bool {
        match self.pg.as_mut() {
            Some(conn) => {
                if conn.ping().await.is_ok() {
                    true
                } else {
                    self.pg = None;
                    false
                }
            }
            None => true,
        }
    }

    /// Renews a SQLite lease inside a batch transaction; fails if another runner took it.
    pub async fn renew(&self, tx: &mut ReadTx, projection: &str) -> Result<(), ProjectionError> {
        if let ReadTx::Sqlite(_) = tx {
            let renewed = tx
                .execute(
                    "UPDATE crm_projection_leases SET expires_at = ? \
                     WHERE projection = ? AND holder = ?",
                    vec![
                        SqlValue::Int(now_micros() + self.ttl_micros()),
                        projection.into(),
                        self.holder.as_str().into(),
                    ],
                )
                .await?;
            if renewed != 1 {
                return Err(ProjectionError::LostLease(projection.to_owned()));
            }
        }
        Ok(())
    }

    /// Gives every lease up, so a standby can take over at once.
    pub async fn release_all(&mut self, db: &ReadDb) {
        if let Some(conn) = self.pg.take() {
            let _ = conn.close().await;
        }
        if let ReadDb::Sqlite(_) = db {
            let _ = db
                .execute(
                    "DELETE FROM crm_projection_leases WHERE holder = ?",
                    vec![self.holder.as_str().into()],
                )
                .await;
        }
    }

    fn ttl_micros(&self) -> i64 {
        i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX / 2)
    }
}

/// This machine's name, as lease holders record it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// True when `holder` (`host:pid:uuid`) names a process of this host that no longer runs.
/// Only decided where `/proc` exists; elsewhere the lease simply expires.
fn holder_is_gone(holder: &str) -> bool {
    let mut parts = holder.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == host_name()
        && pid != std::process::id()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
