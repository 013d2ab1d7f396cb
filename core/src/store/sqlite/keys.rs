//! The key table on SQLite (`crm_keyring`, `crm_subject_keys`, `crm_subject_links`): the
//! [`KeyOps`] an append applies inside its own transaction, and the [`KeyTable`] calls, each
//! one transaction on the writer connection (writes) or a reader (reads).
//!
//! Every connection of the file has `secure_delete` on, so the bytes of a destroyed key (and
//! of any read-model row an erasure overwrites) are zeroed in the page, not left in free
//! space; [`KeyTable::scrub`] then folds the WAL into the file and truncates it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::envelope::TenantId;
use crate::store::StoreError;
use crate::store::keys::{KEY_ID_LEN, KeyId, KeyOps, KeyTable, Keyring, SubjectKey, SubjectLink};
use crate::store::sqlite::SqliteEventStore;
use crate::store::sqlite::append::write_transaction;
use crate::store::sqlite::error::retry_busy;

const KEY_COLUMNS: &str = "tenant, subject, key_id, wrapped, created_at, erased_at";

/// Applies an append's key changes inside its transaction (see [`KeyOps`]).
pub(super) fn apply_ops(
    conn: &Connection,
    tenant: &TenantId,
    ops: &KeyOps,
    now: i64,
) -> Result<(), StoreError> {
    for (subject, key_id) in &ops.uses {
        match key_row(conn, tenant, subject)? {
            Some((_, None)) => return Err(erased(subject)),
            Some((stored, Some(_))) if stored == key_id.as_slice() => {}
            _ => return Err(changed(subject)),
        }
    }
    for new in &ops.new {
        let inserted = conn
            .prepare_cached(
                "INSERT INTO crm_subject_keys (tenant, subject, key_id, wrapped, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant, subject) DO NOTHING",
            )?
            .execute(params![
                tenant.as_str(),
                new.subject,
                new.key_id.as_slice(),
                new.wrapped,
                now
            ])?;
        if inserted == 0 {
            return Err(match key_row(conn, tenant, &new.subject)? {
                Some((_, None)) => erased(&new.subject),
                _ => changed(&new.subject),
            });
        }
    }
    for (subject, owner) in &ops.links {
        conn.prepare_cached(
            "INSERT INTO crm_subject_links (tenant, subject, owner) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![tenant.as_str(), subject, owner])?;
        if matches!(key_row(conn, tenant, owner)?, Some((_, None))) {
            erase_closure(conn, tenant, std::slice::from_ref(subject), now)?;
        }
    }
    if !ops.erase.is_empty() {
        erase_closure(conn, tenant, &ops.erase, now)?;
    }
    Ok(())
}

fn erased(subject: &str) -> StoreError {
    StoreError::SubjectErased {
        subject: subject.to_owned(),
    }
}

fn changed(subject: &str) -> StoreError {
    StoreError::KeyChanged {
        subject: subject.to_owned(),
    }
}

/// A subject's key id and wrapped key (`None`: a tombstone).
type KeyRow = (Vec<u8>, Option<Vec<u8>>);

/// The subject's (key id, wrapped key), if it has a row.
fn key_row(
    conn: &Connection,
    tenant: &TenantId,
    subject: &str,
) -> Result<Option<KeyRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT key_id, wrapped FROM crm_subject_keys WHERE tenant = ?1 AND subject = ?2",
        )?
        .query_row(params![tenant.as_str(), subject], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?)
}

/// Erases `subjects` and every subject linked to them (transitively): destroys live keys,
/// leaves tombstones (a new one where a subject had no key), counts the erasure. Returns the
/// subjects whose state changed.
fn erase_closure(
    conn: &Connection,
    tenant: &TenantId,
    subjects: &[String],
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let mut all: Vec<String> = Vec::new();
    let mut queue: Vec<String> = subjects.to_vec();
    while let Some(subject) = queue.pop() {
        if all.contains(&subject) {
            continue;
        }
        let mut linked = conn.prepare_cached(
            "SELECT subject FROM crm_subject_links WHERE tenant = ?1 AND owner = ?2",
        )?;
        let rows = linked.query_map(params![tenant.as_str(), subject], |row| row.get(0))?;
        for row in rows {
            queue.push(row?);
        }
        all.push(subject);
    }
    let mut changed = Vec::new();
    for subject in all {
        match key_row(conn, tenant, &subject)? {
            Some((_, None)) => {}
            Some((_, Some(_))) => {
                conn.prepare_cached(
                    "UPDATE crm_subject_keys SET wrapped = NULL, erased_at = ?3 \
                     WHERE tenant = ?1 AND subject = ?2",
                )?
                .execute(params![tenant.as_str(), subject, now])?;
                changed.push(subject);
            }
            None => {
                conn.prepare_cached(
                    "INSERT INTO crm_subject_keys \
                     (tenant, subject, key_id, wrapped, created_at, erased_at) \
                     VALUES (?1, ?2, ?3, NULL, ?4, ?4)",
                )?
                .execute(params![
                    tenant.as_str(),
                    subject,
                    random_key_id()?.as_slice(),
                    now
                ])?;
                changed.push(subject);
            }
        }
    }
    if !changed.is_empty() {
        conn.prepare_cached("UPDATE crm_keyring SET erasures = erasures + 1")?
            .execute([])?;
    }
    Ok(changed)
}

/// A random key id for a tombstone.
pub(crate) fn random_key_id() -> Result<KeyId, StoreError> {
    let mut id = [0u8; KEY_ID_LEN];
    getrandom::fill(&mut id).map_err(|e| StoreError::Sealing(format!("no randomness: {e}")))?;
    Ok(id)
}

fn micros(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(value).unwrap_or_default()
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, SubjectKeyParts)> {
    Ok((
        row.get(0)?,
        SubjectKeyParts {
            subject: row.get(1)?,
            key_id: row.get(2)?,
            wrapped: row.get(3)?,
            created_at: row.get(4)?,
            erased_at: row.get(5)?,
        },
    ))
}

struct SubjectKeyParts {
    subject: String,
    key_id: Vec<u8>,
    wrapped: Option<Vec<u8>>,
    created_at: i64,
    erased_at: Option<i64>,
}

fn to_key(tenant: String, parts: SubjectKeyParts) -> Result<SubjectKey, StoreError> {
    let key_id: KeyId =
        parts.key_id.as_slice().try_into().map_err(|_| {
            StoreError::Sealing(format!("the key id of {} is damaged", parts.subject))
        })?;
    Ok(SubjectKey {
        tenant: TenantId::from_stored(tenant),
        subject: parts.subject,
        key_id,
        wrapped: parts.wrapped,
        created_at: micros(parts.created_at),
        erased_at: parts.erased_at.map(micros),
    })
}

fn collect_keys(
    rows: impl Iterator<Item = rusqlite::Result<(String, SubjectKeyParts)>>,
) -> Result<Vec<SubjectKey>, StoreError> {
    let mut keys = Vec::new();
    for row in rows {
        let (tenant, parts) = row?;
        keys.push(to_key(tenant, parts)?);
    }
    Ok(keys)
}

#[async_trait]
impl KeyTable for SqliteEventStore {
    async fn keyring(&self) -> Result<Option<Keyring>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT fingerprint, key_check FROM crm_keyring WHERE id = 1")?
                .query_row([], |row| {
                    Ok(Keyring {
                        fingerprint: row.get(0)?,
                        key_check: row.get(1)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn init_keyring(&self, keyring: &Keyring) -> Result<Keyring, StoreError> {
        write_transaction(&self.inner.writer, |conn| {
            conn.execute(
                "INSERT INTO crm_keyring (id, fingerprint, key_check, created_at) \
                 VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
                params![
                    keyring.fingerprint,
                    keyring.key_check,
                    Utc::now().timestamp_micros()
                ],
            )?;
            Ok(conn.query_row(
                "SELECT fingerprint, key_check FROM crm_keyring WHERE id = 1",
                [],
                |row| {
                    Ok(Keyring {
                        fingerprint: row.get(0)?,
                        key_check: row.get(1)?,
                    })
                },
            )?)
        })
        .await
    }

    async fn erasure_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let count: Option<i64> = conn
                .prepare_cached("SELECT erasures FROM crm_keyring WHERE id = 1")?
                .query_row([], |row| row.get(0))
                .optional()?;
            Ok(count.unwrap_or(0) as u64)
        })
        .await
    }

    async fn keys_of_subjects(
        &self,
        tenant: &TenantId,
        subjects: &[String],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        self.read(|conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM crm_subject_keys WHERE tenant = ?1 AND subject = ?2"
            ))?;
            let mut keys = Vec::new();
            for subject in subjects {
                let rows = select.query_map(params![tenant.as_str(), subject], key_from_row)?;
                keys.extend(collect_keys(rows)?);
            }
            Ok(keys)
        })
        .await
    }

    async fn keys_by_id(
        &self,
        tenant: &TenantId,
        key_ids: &[KeyId],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        self.read(|conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM crm_subject_keys WHERE tenant = ?1 AND key_id = ?2"
            ))?;
            let mut keys = Vec::new();
            for key_id in key_ids {
                let rows =
                    select.query_map(params![tenant.as_str(), key_id.as_slice()], key_from_row)?;
                keys.extend(collect_keys(rows)?);
            }
            Ok(keys)
        })
        .await
    }

    async fn all_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<SubjectKey>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.read(|conn| {
            let mut select = conn.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM crm_subject_keys \
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, subject"
            ))?;
            let rows = select.query_map(params![tenant], key_from_row)?;
            collect_keys(rows)
        })
        .await
    }

    async fn all_links(&self, tenant: Option<&TenantId>) -> Result<Vec<SubjectLink>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.read(|conn| {
            let mut select = conn.prepare(
                "SELECT tenant, subject, owner FROM crm_subject_links \
                 WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, subject, owner",
            )?;
            let rows = select.query_map(params![tenant], |row| {
                Ok(SubjectLink {
                    tenant: TenantId::from_stored(row.get(0)?),
                    subject: row.get(1)?,
                    owner: row.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn restore_keys(
        &self,
        rows: &[SubjectKey],
        links: &[SubjectLink],
    ) -> Result<u64, StoreError> {
        write_transaction(&self.inner.writer, |conn| {
            let mut inserted = 0;
            for key in rows {
                inserted += conn
                    .prepare_cached(
                        "INSERT INTO crm_subject_keys \
                         (tenant, subject, key_id, wrapped, created_at, erased_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![
                        key.tenant.as_str(),
                        key.subject,
                        key.key_id.as_slice(),
                        key.wrapped,
                        key.created_at.timestamp_micros(),
                        key.erased_at.map(|at| at.timestamp_micros()),
                    ])? as u64;
            }
            for link in links {
                conn.prepare_cached(
                    "INSERT INTO crm_subject_links (tenant, subject, owner) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    link.tenant.as_str(),
                    link.subject,
                    link.owner
                ])?;
            }
            Ok(inserted)
        })
        .await
    }

    async fn erase_subjects(
        &self,
        tenant: &TenantId,
        subjects: &[String],
    ) -> Result<Vec<String>, StoreError> {
        write_transaction(&self.inner.writer, |conn| {
            erase_closure(conn, tenant, subjects, Utc::now().timestamp_micros())
        })
        .await
    }

    async fn erase_tenant(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        write_transaction(&self.inner.writer, |conn| {
            let destroyed = conn.execute(
                "UPDATE crm_subject_keys SET wrapped = NULL, erased_at = ?2 \
                 WHERE tenant = ?1 AND wrapped IS NOT NULL",
                params![tenant.as_str(), Utc::now().timestamp_micros()],
            )?;
            conn.execute("UPDATE crm_keyring SET erasures = erasures + 1", [])?;
            Ok(destroyed as u64)
        })
        .await
    }

    async fn rotate(
        &self,
        keyring: &Keyring,
        rewrapped: &[(TenantId, String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        write_transaction(&self.inner.writer, |conn| {
            let live: i64 = conn.query_row(
                "SELECT count(*) FROM crm_subject_keys WHERE wrapped IS NOT NULL",
                [],
                |row| row.get(0),
            )?;
            if live as usize != rewrapped.len() {
                return Err(StoreError::Sealing(format!(
                    "the store holds {live} live keys but {} were re-wrapped: another process \
                     changed the key table during the rotation; run it again",
                    rewrapped.len()
                )));
            }
            for (tenant, subject, wrapped) in rewrapped {
                let updated = conn
                    .prepare_cached(
                        "UPDATE crm_subject_keys SET wrapped = ?3 \
                         WHERE tenant = ?1 AND subject = ?2 AND wrapped IS NOT NULL",
                    )?
                    .execute(params![tenant.as_str(), subject, wrapped])?;
                if updated != 1 {
                    return Err(StoreError::Sealing(format!(
                        "the key of {subject} changed during the rotation; run it again"
                    )));
                }
            }
            conn.execute(
                "UPDATE crm_keyring SET fingerprint = ?1, key_check = ?2 WHERE id = 1",
                params![keyring.fingerprint, keyring.key_check],
            )?;
            Ok(())
        })
        .await
    }

    async fn record_fact(&self, name: &str, value: &str) -> Result<(), StoreError> {
        write_transaction(&self.inner.writer, |conn| {
            conn.execute(
                "INSERT INTO crm_store_facts (name, value, recorded_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                 recorded_at = excluded.recorded_at",
                params![name, value, Utc::now().timestamp_micros()],
            )?;
            Ok(())
        })
        .await
    }

    async fn fact(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT value FROM crm_store_facts WHERE name = ?1",
                    params![name],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn scrub(&self) -> Result<(), StoreError> {
        let mut writer = self.inner.writer.lock().await;
        // TRUNCATE waits for readers still on old WAL frames; retried while they finish.
        retry_busy(|| {
            let (busy, _, _): (i64, i64, i64) =
                writer
                    .conn_mut()
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })?;
            if busy != 0 {
                return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("a reader holds the WAL; the checkpoint is retried".into()),
                )));
            }
            Ok(())
        })
        .await
    }
}
