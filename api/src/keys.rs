//! API keys: each is bound to one tenant and one role, stored only as a SHA-256 digest of its
//! secret, and checked in constant time.
//!
//! A key created with `personal_data` (`crm-api keys create --personal-data`) reads personal
//! fields in plain text; any other key, except admin keys, reads them as
//! [`crm_core::privacy::REDACTED`] (see [`crate::disclosure`]).
//!
//! The same database holds the access log `crm_access_log` (see [`crate::access`]), created
//! here beside the keys: every answer that carried personal fields in plain text, per data
//! subject (key id, subject, route, time; never a value), append-only by triggers on both
//! backends.
//!
//! A key reads `crm_<key id>_<secret>`: the key id (16 hex digits) is public and names the row;
//! the secret (64 hex digits, 256 random bits from the operating system) is shown once, when
//! the key is created, and never stored. Keys live in the table `crm_api_keys` of the store's
//! own database, so `crm-api keys ...` works beside a running server; the server caches what
//! it read for [`CACHE_TTL`] (`serve --key-cache-ms`), so a revocation takes effect within
//! that time, for live streams too ([`crate::edge::streams`]).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crm_core::envelope::TenantId;
use crm_projections::ReadDb;
use crm_projections::db::{Backend, Col, SqlValue};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How long the server trusts what it read about a key, by default.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// Keys remembered by the cache before it starts over.
const CACHE_ENTRIES: usize = 10_000;

const KEY_PREFIX: &str = "crm_";
const KEY_ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// What a key may do. Admin may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Appends events.
    Ingest,
    /// Reads the read models and the log.
    Analyst,
    /// Reads timelines and verification.
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Analyst, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                format!("unknown role {text:?}; the roles are ingest, analyst, auditor and admin")
            })
    }
}

/// Why keys could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Db(#[from] crm_projections::ProjectionError),
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("stored key {key_id} is unreadable: {reason}")]
    Corrupt { key_id: String, reason: String },
}

/// A key as stored (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub key_id: String,
    pub tenant: String,
    pub role: Role,
    /// Reads personal fields in plain text (admin keys always do).
    pub personal_data: bool,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A freshly created key: the only time its full text exists.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub info: KeyInfo,
    /// `crm_<key id>_<secret>`: what clients send as `Authorization: Bearer ...`.
    pub token: String,
}

/// Who is calling: what a valid key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub tenant: TenantId,
    pub role: Role,
    /// The key was created with `--personal-data`.
    pub personal_data: bool,
}

impl Principal {
    /// Admin, or one of `roles`.
    pub fn may(&self, roles: &[Role]) -> bool {
        self.role == Role::Admin || roles.contains(&self.role)
    }

    /// Whether answers to this key carry personal fields in plain text: an admin key, or a
    /// key created with `--personal-data`.
    pub fn reads_personal_data(&self) -> bool {
        self.role == Role::Admin || self.personal_data
    }
}

/// Why a presented key was refused. Deliberately vague towards the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not of the form `crm_<id>_<secret>`.
    Malformed,
    /// Unknown id, wrong secret or revoked: the caller is told only that the key is not valid.
    Invalid,
}

#[derive(Debug, Clone)]
struct Stored {
    tenant: TenantId,
    role: Role,
    personal_data: bool,
    digest: [u8; 32],
    revoked: bool,
}

/// The key table and the server's short-lived cache of it.
#[derive(Debug)]
pub struct KeyStore {
    db: ReadDb,
    cache: Mutex<HashMap<String, (Instant, Option<Stored>)>>,
    cache_ttl: Duration,
}

impl KeyStore {
    /// Opens the key table and the access log, creating them (or adding what an older
    /// version lacked) if needed.
    pub async fn open(db: ReadDb) -> Result<KeyStore, KeyError> {
        db.execute(
            "CREATE TABLE IF NOT EXISTS crm_api_keys (\
             key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL, \
             secret_sha256 TEXT NOT NULL, label TEXT, created_at BIGINT NOT NULL, \
             revoked_at BIGINT, personal_data BIGINT NOT NULL DEFAULT 0)",
            vec![],
        )
        .await?;
        add_personal_data_column(&db).await?;
        create_access_log(&db).await?;
        Ok(KeyStore {
            db,
            cache: Mutex::new(HashMap::new()),
            cache_ttl: CACHE_TTL,
        })
    }

    /// Trusts what it read about a key for `ttl` (a revocation takes effect within it).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> KeyStore {
        self.cache_ttl = ttl;
        self
    }

    /// How long what was read about a key is trusted.
    pub fn cache_ttl(&self) -> Duration {
        self.cache_ttl
    }

    /// Whether `key_id` names a key that is not revoked, by what was read at most `max_age`
    /// ago.
    pub async fn is_active(&self, key_id: &str, max_age: Duration) -> Result<bool, KeyError> {
        Ok(self
            .lookup_within(key_id, max_age)
            .await?
            .is_some_and(|stored| !stored.revoked))
    }

    /// The database the keys (and the access log) live in.
    pub fn db(&self) -> &ReadDb {
        &self.db
    }

    /// Creates a key for `tenant` with `role`; with `personal_data` it reads personal fields
    /// in plain text.
    pub async fn create(
        &self,
        tenant: &TenantId,
        role: Role,
        personal_data: bool,
        label: Option<&str>,
    ) -> Result<NewKey, KeyError> {
        let mut random = [0u8; 8 + 32];
        getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
        let key_id = hex::encode(&random[..8]);
        let secret = hex::encode(&random[8..]);
        let created_at = crm_core::envelope::to_stored_precision(Utc::now());
        self.db
            .execute(
                "INSERT INTO crm_api_keys \
                 (key_id, tenant, role, secret_sha256, label, created_at, revoked_at, \
                 personal_data) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                vec![
                    key_id.as_str().into(),
                    tenant.as_str().into(),
                    role.as_str().into(),
                    hex::encode(digest(&secret)).into(),
                    SqlValue::opt_text(label),
                    SqlValue::Int(created_at.timestamp_micros()),
                    SqlValue::Int(i64::from(personal_data)),
                ],
            )
            .await?;
        Ok(NewKey {
            token: format!("{KEY_PREFIX}{key_id}_{secret}"),
            info: KeyInfo {
                key_id,
                tenant: tenant.as_str().to_owned(),
                role,
                personal_data,
                label: label.map(str::to_owned),
                created_at,
                revoked_at: None,
            },
        })
    }

    /// Every key, optionally of one tenant, oldest first.
    pub async fn list(&self, tenant: Option<&TenantId>) -> Result<Vec<KeyInfo>, KeyError> {
        let mut sql = "SELECT key_id, tenant, role, label, created_at, revoked_at, \
                       personal_data FROM crm_api_keys"
            .to_owned();
        let mut args = Vec::new();
        if let Some(tenant) = tenant {
            sql.push_str(" WHERE tenant = ?");
            args.push(tenant.as_str().into());
        }
        sql.push_str(" ORDER BY created_at, key_id");
        let rows = self
            .db
            .fetch(
                &sql,
                args,
                &[
                    Col::Text,
                    Col::Text,
                    Col::Text,
                    Col::Text,
                    Col::Int,
                    Col::Int,
                    Col::Int,
                ],
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                let key_id = row[0].as_text().unwrap_or_default().to_owned();
                let role = row[2]
                    .as_text()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|reason| KeyError::Corrupt {
                        key_id: key_id.clone(),
                        reason,
                    })?;
                Ok(KeyInfo {
                    tenant: row[1].as_text().unwrap_or_default().to_owned(),
                    role,
                    label: row[3].as_text().map(str::to_owned),
                    created_at: row[4]
                        .as_int()
                        .and_then(DateTime::from_timestamp_micros)
                        .unwrap_or_default(),
                    revoked_at: row[5].as_int().and_then(DateTime::from_timestamp_micros),
                    personal_data: row[6].as_int().is_some_and(|flag| flag != 0),
                    key_id,
                })
            })
            .collect()
    }

    /// Whether any key exists (revoked ones included).
    pub async fn any(&self) -> Result<bool, KeyError> {
        let rows = self
            .db
            .fetch(
                "SELECT CAST(1 AS BIGINT) FROM crm_api_keys LIMIT 1",
                vec![],
                &[Col::Int],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Revokes a key by id (or by its full text). False if no such key was active.
    pub async fn revoke(&self, key: &str) -> Result<bool, KeyError> {
        let key_id = key_id_of(key);
        let revoked = self
            .db
            .execute(
                "UPDATE crm_api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                vec![SqlValue::Int(Utc::now().timestamp_micros()), key_id.into()],
            )
            .await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(key_id);
        }
        Ok(revoked > 0)
    }

    /// Checks a presented key.
    pub async fn authenticate(&self, token: &str) -> Result<Result<Principal, Refusal>, KeyError> {
        let Some((key_id, secret)) = split_token(token) else {
            return Ok(Err(Refusal::Malformed));
        };
        let stored = self.lookup(key_id).await?;
        // Hash and compare even for an unknown id, so timing does not tell ids apart.
        let presented = digest(secret);
        let expected = stored.as_ref().map_or([0xa5; 32], |s| s.digest);
        let matches = constant_time_eq(&presented, &expected);
        Ok(match stored {
            Some(stored) if matches && !stored.revoked => Ok(Principal {
                key_id: key_id.to_owned(),
                tenant: stored.tenant,
                role: stored.role,
                personal_data: stored.personal_data,
            }),
            _ => Err(Refusal::Invalid),
        })
    }

    async fn lookup(&self, key_id: &str) -> Result<Option<Stored>, KeyError> {
        self.lookup_within(key_id, self.cache_ttl).await
    }

    async fn lookup_within(
        &self,
        key_id: &str,
        max_age: Duration,
    ) -> Result<Option<Stored>, KeyError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, stored)) = cache.get(key_id)
            && at.elapsed() < max_age
        {
            return Ok(stored.clone());
        }
        let rows = self
            .db
            .fetch(
                "SELECT tenant, role, secret_sha256, revoked_at, personal_data FROM crm_api_keys \
                 WHERE key_id = ?",
                vec![key_id.into()],
                &[Col::Text, Col::Text, Col::Text, Col::Int, Col::Int],
            )
            .await?;
        let stored = match rows.into_iter().next() {
            None => None,
            Some(row) => {
                let corrupt = |reason: String| KeyError::Corrupt {
                    key_id: key_id.to_owned(),
                    reason,
                };
                let tenant = TenantId::parse(row[0].as_text().unwrap_or_default())
                    .map_err(|e| corrupt(e.to_string()))?;
                let role = row[1]
                    .as_text()
                    .unwrap_or_default()
                    .parse()
                    .map_err(corrupt)?;
                let mut digest = [0u8; 32];
                hex::decode_to_slice(row[2].as_text().unwrap_or_default(), &mut digest)
                    .map_err(|e| corrupt(format!("digest: {e}")))?;
                Some(Stored {
                    tenant,
                    role,
                    digest,
                    revoked: row[3].as_int().is_some(),
                    personal_data: row[4].as_int().is_some_and(|flag| flag != 0),
                })
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key_id.to_owned(), (Instant::now(), stored.clone()));
        }
        Ok(stored)
    }
}

/// Adds `crm_api_keys.personal_data` to a key table made before it existed (its keys then
/// read personal fields redacted, unless they are admin keys). Looks first, so an open of an
/// upgraded table takes no table lock; safe when another process adds it at the same time.
async fn add_personal_data_column(db: &ReadDb) -> Result<(), KeyError> {
    if has_personal_data_column(db).await? {
        return Ok(());
    }
    let add = match db.backend() {
        Backend::Postgres => {
            "ALTER TABLE crm_api_keys ADD COLUMN IF NOT EXISTS \
             personal_data BIGINT NOT NULL DEFAULT 0"
        }
        Backend::Sqlite => {
            "ALTER TABLE crm_api_keys ADD COLUMN personal_data BIGINT NOT NULL DEFAULT 0"
        }
    };
    match db.execute(add, vec![]).await {
        Ok(_) => Ok(()),
        // Another process may have added it meanwhile (SQLite has no IF NOT EXISTS here).
        Err(_) if has_personal_data_column(db).await? => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn has_personal_data_column(db: &ReadDb) -> Result<bool, KeyError> {
    let sql = match db.backend() {
        Backend::Postgres => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'crm_api_keys' \
             AND column_name = 'personal_data'"
        }
        Backend::Sqlite => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pragma_table_info('crm_api_keys') \
             WHERE name = 'personal_data'"
        }
    };
    let rows = db.fetch(sql, vec![], &[Col::Int]).await?;
    Ok(rows.first().and_then(|row| row[0].as_int()) == Some(1))
}

/// Creates the access log (see [`crate::access`]) and the triggers that refuse to change or
/// remove its rows, on either backend.
async fn create_access_log(db: &ReadDb) -> Result<(), KeyError> {
    let statements: &[&str] = match db.backend() {
        Backend::Sqlite => &[
            "CREATE TABLE IF NOT EXISTS crm_access_log (\
             id INTEGER PRIMARY KEY, at BIGINT NOT NULL, tenant TEXT NOT NULL, \
             key_id TEXT NOT NULL, subject TEXT NOT NULL, route TEXT NOT NULL)",
            "CREATE TRIGGER IF NOT EXISTS crm_access_log_append_only_update \
             BEFORE UPDATE ON crm_access_log \
             BEGIN SELECT RAISE(ABORT, 'crm_access_log is append-only'); END",
            "CREATE TRIGGER IF NOT EXISTS crm_access_log_append_only_delete \
             BEFORE DELETE ON crm_access_log \
             BEGIN SELECT RAISE(ABORT, 'crm_access_log is append-only'); END",
        ],
        Backend::Postgres => &[
            "CREATE TABLE IF NOT EXISTS crm_access_log (\
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at BIGINT NOT NULL, \
             tenant TEXT COLLATE \"C\" NOT NULL, key_id TEXT COLLATE \"C\" NOT NULL, \
             subject TEXT COLLATE \"C\" NOT NULL, route TEXT NOT NULL)",
            // One statement: the function and the trigger exist together or not at all.
            "DO $do$ BEGIN \
             IF NOT EXISTS (SELECT 1 FROM pg_trigger \
             WHERE tgname = 'crm_access_log_append_only' \
             AND tgrelid = 'crm_access_log'::regclass) THEN \
             CREATE OR REPLACE FUNCTION crm_access_log_append_only() RETURNS trigger \
             LANGUAGE plpgsql AS $f$ BEGIN \
             RAISE EXCEPTION 'crm_access_log is append-only'; END; $f$; \
             CREATE TRIGGER crm_access_log_append_only \
             BEFORE UPDATE OR DELETE OR TRUNCATE ON crm_access_log \
             FOR EACH STATEMENT EXECUTE FUNCTION crm_access_log_append_only(); \
             END IF; END $do$",
        ],
    };
    for statement in statements {
        db.execute(statement, vec![]).await?;
    }
    for index in [
        "CREATE INDEX IF NOT EXISTS crm_access_log_subject ON crm_access_log (tenant, subject, id)",
        "CREATE INDEX IF NOT EXISTS crm_access_log_key ON crm_access_log (tenant, key_id, id)",
        "CREATE INDEX IF NOT EXISTS crm_access_log_at ON crm_access_log (tenant, at)",
    ] {
        db.execute(index, vec![]).await?;
    }
    Ok(())
}

/// The key id of a key's full text, or the text itself (taken to be an id).
pub fn key_id_of(key: &str) -> &str {
    split_token(key).map_or(key, |(id, _)| id)
}

/// `(key id, secret)` of a well-formed key.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(key_id, KEY_ID_HEX) && hex(secret, SECRET_HEX)).then_some((key_id, secret))
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares without an early exit, so the time taken does not depend on where bytes differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_only_when_well_formed() {
        let id = "0123456789abcdef";
        let secret = "a".repeat(64);
        let token = format!("crm_{id}_{secret}");
        assert_eq!(split_token(&token), Some((id, secret.as_str())));
        for bad in [
            String::new(),
            format!("crx_{id}_{secret}"),
            format!("crm_{id}{secret}"),
            format!("crm_{id}_{}", "a".repeat(63)),
            format!("crm_{id}_{}z", "a".repeat(63)),
            format!("crm_0123_{secret}"),
        ] {
            assert_eq!(split_token(&bad), None, "{bad}");
        }
    }

    #[test]
    fn constant_time_comparison_tells_equal_from_different() {
        let a = digest("one");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn roles_parse_by_name_and_admin_may_everything() {
        assert_eq!("auditor".parse::<Role>(), Ok(Role::Auditor));
        assert!("root".parse::<Role>().is_err());
        let principal = |role| Principal {
            key_id: "k".into(),
            tenant: TenantId::parse("t").expect("tenant"),
            role,
            personal_data: false,
        };
        assert!(principal(Role::Admin).may(&[Role::Ingest]));
        assert!(principal(Role::Ingest).may(&[Role::Ingest]));
        assert!(!principal(Role::Analyst).may(&[Role::Ingest, Role::Auditor]));
        assert!(principal(Role::Admin).reads_personal_data());
        assert!(!principal(Role::Analyst).reads_personal_data());
        let flagged = Principal {
            personal_data: true,
            ..principal(Role::Analyst)
        };
        assert!(flagged.reads_personal_data());
    }
}
