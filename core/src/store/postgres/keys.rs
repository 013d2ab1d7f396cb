//! The key table on PostgreSQL (`crm_keyring`, `crm_subject_keys`, `crm_subject_links`):
//! the [`KeyOps`] an append applies inside its transaction (under the append lock), and the
//! [`KeyTable`] calls, each one transaction on the pool.
//!
//! PostgreSQL keeps the old version of an updated row until VACUUM, and plain VACUUM leaves
//! its bytes in the page's free space: [`KeyTable::scrub`] rewrites the key table with
//! `VACUUM FULL`, so a destroyed key is gone from its relation files.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::envelope::TenantId;
use crate::store::StoreError;
use crate::store::keys::{KeyId, KeyOps, KeyTable, Keyring, SubjectKey, SubjectLink};
use crate::store::postgres::PostgresEventStore;
use crate::store::sqlite::random_key_id;

const KEY_COLUMNS: &str = "tenant, subject, key_id, wrapped, created_at, erased_at";

/// Applies an append's key changes inside its transaction (see [`KeyOps`]).
pub(super) async fn apply_ops(
    conn: &mut PgConnection,
    tenant: &TenantId,
    ops: &KeyOps,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // One round trip for every key the append seals under (an A1 request of 500 events
    // names tens of subjects; a round trip each, under the append lock, cost more than the
    // rows they check).
    if !ops.uses.is_empty() {
        let subjects: Vec<&str> = ops.uses.iter().map(|(s, _)| s.as_str()).collect();
        let rows = sqlx::query(
            "SELECT u.n, k.key_id, k.wrapped FROM UNNEST($2::text[]) WITH ORDINALITY AS u(subject, n) \
             LEFT JOIN LATERAL (SELECT key_id, wrapped FROM crm_subject_keys \
                 WHERE tenant = $1 AND subject = u.subject LIMIT 1) AS k ON TRUE ORDER BY u.n",
        )
        .bind(tenant.as_str())
        .bind(&subjects)
        .fetch_all(&mut *conn)
        .await?;
        for ((subject, key_id), row) in ops.uses.iter().zip(&rows) {
            let stored: Option<Vec<u8>> = row.try_get(1)?;
            let wrapped: Option<Vec<u8>> = row.try_get(2)?;
            match (stored, wrapped) {
                (Some(_), None) => return Err(erased(subject)),
                (Some(stored), Some(_)) if stored == key_id.as_slice() => {}
                _ => return Err(changed(subject)),
            }
        }
        if rows.len() != ops.uses.len() {
            return Err(StoreError::Task("the key check lost rows".to_owned()));
        }
    }
    // One statement for every new key; a subject that already has a row is not inserted,
    // and the first such (in the order given) fails the append.
    if !ops.new.is_empty() {
        let subjects: Vec<&str> = ops.new.iter().map(|n| n.subject.as_str()).collect();
        let key_ids: Vec<&[u8]> = ops.new.iter().map(|n| n.key_id.as_slice()).collect();
        let wrapped: Vec<&[u8]> = ops.new.iter().map(|n| n.wrapped.as_slice()).collect();
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO crm_subject_keys (tenant, subject, key_id, wrapped, created_at) \
             SELECT $1, n.subject, n.key_id, n.wrapped, $5 \
             FROM UNNEST($2::text[], $3::bytea[], $4::bytea[]) AS n(subject, key_id, wrapped) \
             ON CONFLICT (tenant, subject) DO NOTHING RETURNING subject",
        )
        .bind(tenant.as_str())
        .bind(&subjects)
        .bind(&key_ids)
        .bind(&wrapped)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        if inserted.len() != ops.new.len() {
            let mut left: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            for subject in &inserted {
                *left.entry(subject.as_str()).or_default() += 1;
            }
            for new in &ops.new {
                match left.get_mut(new.subject.as_str()) {
                    Some(count) if *count > 0 => *count -= 1,
                    _ => {
                        return Err(match key_row(conn, tenant, &new.subject).await? {
                            Some((_, None)) => erased(&new.subject),
                            _ => changed(&new.subject),
                        });
                    }
                }
            }
        }
    }
    for (subject, owner) in &ops.links {
        sqlx::query(
            "INSERT INTO crm_subject_links (tenant, subject, owner) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(subject)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
        if matches!(key_row(conn, tenant, owner).await?, Some((_, None))) {
            erase_closure(conn, tenant, std::slice::from_ref(subject), now).await?;
        }
    }
    if !ops.erase.is_empty() {
        erase_closure(conn, tenant, &ops.erase, now).await?;
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

async fn key_row(
    conn: &mut PgConnection,
    tenant: &TenantId,
    subject: &str,
) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, StoreError> {
    let row = sqlx::query(
        "SELECT key_id, wrapped FROM crm_subject_keys WHERE tenant = $1 AND subject = $2",
    )
    .bind(tenant.as_str())
    .bind(subject)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
        None => None,
    })
}

/// See the SQLite twin: erases `subjects` and everything linked to them.
async fn erase_closure(
    conn: &mut PgConnection,
    tenant: &TenantId,
    subjects: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut all: Vec<String> = Vec::new();
    let mut queue: Vec<String> = subjects.to_vec();
    while let Some(subject) = queue.pop() {
        if all.contains(&subject) {
            continue;
        }
        let linked: Vec<String> = sqlx::query_scalar(
            "SELECT subject FROM crm_subject_links WHERE tenant = $1 AND owner = $2",
        )
        .bind(tenant.as_str())
        .bind(&subject)
        .fetch_all(&mut *conn)
        .await?;
        queue.extend(linked);
        all.push(subject);
    }
    let mut changed = Vec::new();
    for subject in all {
        match key_row(conn, tenant, &subject).await? {
            Some((_, None)) => {}
            Some((_, Some(_))) => {
                sqlx::query(
                    "UPDATE crm_subject_keys SET wrapped = NULL, erased_at = $3 \
                     WHERE tenant = $1 AND subject = $2",
                )
                .bind(tenant.as_str())
                .bind(&subject)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                changed.push(subject);
            }
            None => {
                sqlx::query(
                    "INSERT INTO crm_subject_keys \
                     (tenant, subject, key_id, wrapped, created_at, erased_at) \
                     VALUES ($1, $2, $3, NULL, $4, $4)",
                )
                .bind(tenant.as_str())
                .bind(&subject)
                .bind(random_key_id()?.as_slice())
                .bind(now)
                .execute(&mut *conn)
                .await?;
                changed.push(subject);
            }
        }
    }
    if !changed.is_empty() {
        sqlx::query("UPDATE crm_keyring SET erasures = erasures + 1")
            .execute(&mut *conn)
            .await?;
    }
    Ok(changed)
}

fn to_key(row: &sqlx::postgres::PgRow) -> Result<SubjectKey, StoreError> {
    let subject: String = row.try_get(1)?;
    let key_id: Vec<u8> = row.try_get(2)?;
    let key_id: KeyId = key_id
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Sealing(format!("the key id of {subject} is damaged")))?;
    Ok(SubjectKey {
        tenant: TenantId::from_stored(row.try_get(0)?),
        subject,
        key_id,
        wrapped: row.try_get(3)?,
        created_at: row.try_get(4)?,
        erased_at: row.try_get(5)?,
    })
}

fn keyring_of(row: &sqlx::postgres::PgRow) -> Result<Keyring, StoreError> {
    Ok(Keyring {
        fingerprint: row.try_get(0)?,
        key_check: row.try_get(1)?,
    })
}

#[async_trait]
impl KeyTable for PostgresEventStore {
    async fn keyring(&self) -> Result<Option<Keyring>, StoreError> {
        let row = sqlx::query("SELECT fingerprint, key_check FROM crm_keyring WHERE id = 1")
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(keyring_of).transpose()
    }

    async fn init_keyring(&self, keyring: &Keyring) -> Result<Keyring, StoreError> {
        sqlx::query(
            "INSERT INTO crm_keyring (id, fingerprint, key_check, created_at) \
             VALUES (1, $1, $2, now()) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&keyring.fingerprint)
        .bind(&keyring.key_check)
        .execute(self.pool())
        .await?;
        let row = sqlx::query("SELECT fingerprint, key_check FROM crm_keyring WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        keyring_of(&row)
    }

    async fn erasure_count(&self) -> Result<u64, StoreError> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT erasures FROM crm_keyring WHERE id = 1")
                .fetch_optional(self.pool())
                .await?;
        Ok(count.unwrap_or(0) as u64)
    }

    async fn keys_of_subjects(
        &self,
        tenant: &TenantId,
        subjects: &[String],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM crm_subject_keys WHERE tenant = $1 AND subject = ANY($2)"
        )))
        .bind(tenant.as_str())
        .bind(subjects)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(to_key).collect()
    }

    async fn keys_by_id(
        &self,
        tenant: &TenantId,
        key_ids: &[KeyId],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        let ids: Vec<&[u8]> = key_ids.iter().map(|id| id.as_slice()).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM crm_subject_keys WHERE tenant = $1 AND key_id = ANY($2)"
        )))
        .bind(tenant.as_str())
        .bind(&ids)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(to_key).collect()
    }

    async fn all_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<SubjectKey>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM crm_subject_keys \
             WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, subject"
        )))
        .bind(tenant.map(|t| t.as_str()))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(to_key).collect()
    }

    async fn all_links(&self, tenant: Option<&TenantId>) -> Result<Vec<SubjectLink>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, subject, owner FROM crm_subject_links \
             WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, subject, owner",
        )
        .bind(tenant.map(|t| t.as_str()))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SubjectLink {
                    tenant: TenantId::from_stored(row.try_get(0)?),
                    subject: row.try_get(1)?,
                    owner: row.try_get(2)?,
                })
            })
            .collect()
    }

    async fn restore_keys(
        &self,
        rows: &[SubjectKey],
        links: &[SubjectLink],
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut inserted = 0;
        for key in rows {
            inserted += sqlx::query(
                "INSERT INTO crm_subject_keys \
                 (tenant, subject, key_id, wrapped, created_at, erased_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(key.tenant.as_str())
            .bind(&key.subject)
            .bind(key.key_id.as_slice())
            .bind(&key.wrapped)
            .bind(key.created_at)
            .bind(key.erased_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        for link in links {
            sqlx::query(
                "INSERT INTO crm_subject_links (tenant, subject, owner) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(link.tenant.as_str())
            .bind(&link.subject)
            .bind(&link.owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn erase_subjects(
        &self,
        tenant: &TenantId,
        subjects: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let changed = erase_closure(&mut tx, tenant, subjects, Utc::now()).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn erase_tenant(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let destroyed = sqlx::query(
            "UPDATE crm_subject_keys SET wrapped = NULL, erased_at = now() \
             WHERE tenant = $1 AND wrapped IS NOT NULL",
        )
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE crm_keyring SET erasures = erasures + 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(destroyed)
    }

    async fn rotate(
        &self,
        keyring: &Keyring,
        rewrapped: &[(TenantId, String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        // Holds off appends (which mint keys under the append lock) during the rotation.
        sqlx::query("LOCK TABLE crm_subject_keys IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let live: i64 =
            sqlx::query_scalar("SELECT count(*) FROM crm_subject_keys WHERE wrapped IS NOT NULL")
                .fetch_one(&mut *tx)
                .await?;
        if live as usize != rewrapped.len() {
            return Err(StoreError::Sealing(format!(
                "the store holds {live} live keys but {} were re-wrapped: another process \
                 changed the key table during the rotation; run it again",
                rewrapped.len()
            )));
        }
        for (tenant, subject, wrapped) in rewrapped {
            let updated = sqlx::query(
                "UPDATE crm_subject_keys SET wrapped = $3 \
                 WHERE tenant = $1 AND subject = $2 AND wrapped IS NOT NULL",
            )
            .bind(tenant.as_str())
            .bind(subject)
            .bind(wrapped)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                return Err(StoreError::Sealing(format!(
                    "the key of {subject} changed during the rotation; run it again"
                )));
            }
        }
        sqlx::query("UPDATE crm_keyring SET fingerprint = $1, key_check = $2 WHERE id = 1")
            .bind(&keyring.fingerprint)
            .bind(&keyring.key_check)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_fact(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO crm_store_facts (name, value, recorded_at) VALUES ($1, $2, now()) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, \
             recorded_at = EXCLUDED.recorded_at",
        )
        .bind(name)
        .bind(value)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn fact(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM crm_store_facts WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    async fn scrub(&self) -> Result<(), StoreError> {
        sqlx::raw_sql("VACUUM FULL crm_subject_keys")
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
