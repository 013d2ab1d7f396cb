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
//!
//! A key may expire (`keys create --expires-in 90d` or `--expires-at`): from then on it is
//! refused, the caller told only that it expired. `keys rotate` creates a new key (a new id,
//! `rotated_from` naming the old one) with the old key's tenant, role, personal-data flag and
//! label, and lets the old one expire after a grace period. When a key was last used
//! (`last_used_at`) is written at most once a minute per key per server, by a task of its
//! own, so answering a request never waits for it.

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
/// `last_used_at` is written at most this often per key (by one server).
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// How long a rotated key stays valid, by default.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

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
    /// The key cannot be rotated: unknown, revoked or expired.
    #[error("key {key_id}: {reason}")]
    NotRotatable { key_id: String, reason: String },
    /// A time the key table cannot hold (past year 262143).
    #[error("{0}: out of range")]
    OutOfRange(&'static str),
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
    /// From this time on the key is refused (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// When a server last accepted the key (written at most once a minute per server).
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key this one replaced (`keys rotate`).
    pub rotated_from: Option<String>,
}

impl KeyInfo {
    /// Whether the key is expired at `now`.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
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
    /// The right secret of a key past its `expires_at` (a rotated key past its grace period):
    /// the caller is told only that it expired.
    Expired,
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The new key, shown once.
    pub new: NewKey,
    /// The old key is refused from this time on.
    pub old_valid_until: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Stored {
    tenant: TenantId,
    role: Role,
    personal_data: bool,
    digest: [u8; 32],
    revoked: bool,
    /// Microseconds since the epoch.
    expires_at: Option<i64>,
}

impl Stored {
    fn expired(&self) -> bool {
        self.expires_at
            .is_some_and(|at| at <= Utc::now().timestamp_micros())
    }
}

/// The key table and the server's short-lived cache of it.
#[derive(Debug)]
pub struct KeyStore {
    db: ReadDb,
    cache: Mutex<HashMap<String, (Instant, Option<Stored>)>>,
    cache_ttl: Duration,
    /// When this process last wrote each key's `last_used_at`.
    used: Mutex<HashMap<String, Instant>>,
    /// Those writes still running (see [`KeyStore::settle`]).
    writes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl KeyStore {
    /// Opens the key table and the access log, creating them (or adding what an older
    /// version lacked) if needed.
    pub async fn open(db: ReadDb) -> Result<KeyStore, KeyError> {
        db.execute(
            "CREATE TABLE IF NOT EXISTS crm_api_keys (\
             key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL, \
             secret_sha256 TEXT NOT NULL, label TEXT, created_at BIGINT NOT NULL, \
             revoked_at BIGINT, personal_data BIGINT NOT NULL DEFAULT 0, \
             expires_at BIGINT, last_used_at BIGINT, rotated_from TEXT)",
            vec![],
        )
        .await?;
        add_missing_columns(&db).await?;
        create_access_log(&db).await?;
        Ok(KeyStore {
            db,
            cache: Mutex::new(HashMap::new()),
            cache_ttl: CACHE_TTL,
            used: Mutex::new(HashMap::new()),
            writes: Mutex::new(Vec::new()),
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

    /// Whether `key_id` names a key that is neither revoked nor expired, by what was read at
    /// most `max_age` ago.
    pub async fn is_active(&self, key_id: &str, max_age: Duration) -> Result<bool, KeyError> {
        Ok(self
            .lookup_within(key_id, max_age)
            .await?
            .is_some_and(|stored| !stored.revoked && !stored.expired()))
    }

    /// The principal of `key_id` while it is neither revoked nor expired, by what was read at
    /// most the cache time ago: what a console session (`crate::console::session`) acts as,
    /// so a session ends with its key's revocation or expiry.
    pub async fn principal_of(&self, key_id: &str) -> Result<Option<Principal>, KeyError> {
        Ok(self
            .lookup(key_id)
            .await?
            .filter(|stored| !stored.revoked && !stored.expired())
            .map(|stored| Principal {
                key_id: key_id.to_owned(),
                tenant: stored.tenant,
                role: stored.role,
                personal_data: stored.personal_data,
            }))
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
        self.create_until(tenant, role, personal_data, label, None)
            .await
    }

    /// [`KeyStore::create`], refused from `expires_at` on (never when `None`).
    pub async fn create_until(
        &self,
        tenant: &TenantId,
        role: Role,
        personal_data: bool,
        label: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<NewKey, KeyError> {
        let (key, args) = new_key(tenant, role, personal_data, label, expires_at, None)?;
        self.db.execute(INSERT_KEY, args).await?;
        Ok(key)
    }

    /// Replaces `key` (its id or full text): a new key with its tenant, role, personal-data
    /// flag and label, `rotated_from` naming it, expiring at `expires_at` (by default after
    /// the old key's lifetime from now, or never if the old key never expired); the old key
    /// stays valid for `grace` (or until it expired anyway), then is refused. Both in one
    /// transaction. A revoked, expired or unknown key is not rotated.
    pub async fn rotate(
        &self,
        key: &str,
        grace: Duration,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Rotated, KeyError> {
        let key_id = key_id_of(key);
        let refused = |reason: &str| KeyError::NotRotatable {
            key_id: key_id.to_owned(),
            reason: reason.to_owned(),
        };
        let now = crm_core::envelope::to_stored_precision(Utc::now());
        let old = self
            .list_where(Some(("key_id", key_id)))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| refused("no such key"))?;
        if old.revoked_at.is_some() {
            return Err(refused("revoked; create a new key instead"));
        }
        if old.expired_at(now) {
            return Err(refused("expired; create a new key instead"));
        }
        let tenant = TenantId::parse(&old.tenant).map_err(|e| KeyError::Corrupt {
            key_id: key_id.to_owned(),
            reason: e.to_string(),
        })?;
        let expires_at = match (expires_at, old.expires_at) {
            (Some(at), _) => Some(at),
            (None, Some(old_expiry)) => Some(now + (old_expiry - old.created_at)),
            (None, None) => None,
        };
        let grace_end = chrono::Duration::from_std(grace)
            .ok()
            .and_then(|grace| now.checked_add_signed(grace))
            .ok_or(KeyError::OutOfRange("--grace"))?;
        let old_valid_until = old.expires_at.map_or(grace_end, |at| at.min(grace_end));
        let (new, args) = new_key(
            &tenant,
            old.role,
            old.personal_data,
            old.label.as_deref(),
            expires_at,
            Some(key_id),
        )?;
        let mut tx = self.db.begin().await?;
        let moved = tx
            .execute(
                "UPDATE crm_api_keys SET expires_at = ? WHERE key_id = ? AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > ?)",
                vec![
                    SqlValue::Int(old_valid_until.timestamp_micros()),
                    key_id.into(),
                    SqlValue::Int(now.timestamp_micros()),
                ],
            )
            .await?;
        if moved != 1 {
            tx.rollback().await?;
            return Err(refused("revoked or expired meanwhile"));
        }
        tx.execute(INSERT_KEY, args).await?;
        tx.commit().await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(key_id);
        }
        Ok(Rotated {
            new,
            old_valid_until,
        })
    }

    /// Sets when `key` (id or full text) expires (`None`: never). False if no such key.
    pub async fn set_expiry(
        &self,
        key: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, KeyError> {
        let key_id = key_id_of(key);
        let changed = self
            .db
            .execute(
                "UPDATE crm_api_keys SET expires_at = ? WHERE key_id = ?",
                vec![
                    SqlValue::opt_int(expires_at.map(|at| at.timestamp_micros())),
                    key_id.into(),
                ],
            )
            .await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(key_id);
        }
        Ok(changed > 0)
    }

    /// Every key, optionally of one tenant, oldest first.
    pub async fn list(&self, tenant: Option<&TenantId>) -> Result<Vec<KeyInfo>, KeyError> {
        self.list_where(tenant.map(|t| ("tenant", t.as_str())))
            .await
    }

    async fn list_where(&self, filter: Option<(&str, &str)>) -> Result<Vec<KeyInfo>, KeyError> {
        let mut sql = "SELECT key_id, tenant, role, label, created_at, revoked_at, \
                       personal_data, expires_at, last_used_at, rotated_from FROM crm_api_keys"
            .to_owned();
        let mut args = Vec::new();
        if let Some((column, value)) = filter {
            sql.push_str(&format!(" WHERE {column} = ?"));
            args.push(value.into());
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
                    Col::Int,
                    Col::Int,
                    Col::Text,
                ],
            )
            .await?;
        let time = |value: &SqlValue| value.as_int().and_then(DateTime::from_timestamp_micros);
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
                    created_at: time(&row[4]).unwrap_or_default(),
                    revoked_at: time(&row[5]),
                    personal_data: row[6].as_int().is_some_and(|flag| flag != 0),
                    expires_at: time(&row[7]),
                    last_used_at: time(&row[8]),
                    rotated_from: row[9].as_text().map(str::to_owned),
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
            // Only the holder of the secret learns that the key expired.
            Some(stored) if matches && !stored.revoked && stored.expired() => Err(Refusal::Expired),
            Some(stored) if matches && !stored.revoked => {
                self.mark_used(key_id);
                Ok(Principal {
                    key_id: key_id.to_owned(),
                    tenant: stored.tenant,
                    role: stored.role,
                    personal_data: stored.personal_data,
                })
            }
            _ => Err(Refusal::Invalid),
        })
    }

    /// Records that `key_id` was accepted now, unless this process did so within
    /// [`LAST_USED_EVERY`]: the write runs on a task of its own (a failure is logged, the
    /// request never waits for it).
    fn mark_used(&self, key_id: &str) {
        let now = Instant::now();
        {
            let Ok(mut used) = self.used.lock() else {
                return;
            };
            if let Some(at) = used.get_mut(key_id) {
                if now.duration_since(*at) < LAST_USED_EVERY {
                    return;
                }
                *at = now;
            } else {
                if used.len() >= CACHE_ENTRIES {
                    used.clear();
                }
                used.insert(key_id.to_owned(), now);
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let db = self.db.clone();
        let args = vec![SqlValue::Int(Utc::now().timestamp_micros()), key_id.into()];
        let write = runtime.spawn(async move {
            if let Err(error) = db
                .execute(
                    "UPDATE crm_api_keys SET last_used_at = ? WHERE key_id = ?",
                    args,
                )
                .await
            {
                tracing::warn!(%error, "could not record when a key was last used");
            }
        });
        if let Ok(mut writes) = self.writes.lock() {
            writes.retain(|write| !write.is_finished());
            writes.push(write);
        }
    }

    /// Waits for the `last_used_at` writes still running: a stopping server calls it once
    /// no request is answered any more, so none is cut off by the process's exit (which
    /// would leave the SQLite store's write-ahead log with a commit the file never folded).
    pub async fn settle(&self) {
        let writes = match self.writes.lock() {
            Ok(mut writes) => std::mem::take(&mut *writes),
            Err(_) => return,
        };
        for write in writes {
            let _ = write.await;
        }
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
                "SELECT tenant, role, secret_sha256, revoked_at, personal_data, expires_at \
                 FROM crm_api_keys WHERE key_id = ?",
                vec![key_id.into()],
                &[
                    Col::Text,
                    Col::Text,
                    Col::Text,
                    Col::Int,
                    Col::Int,
                    Col::Int,
                ],
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
                    expires_at: row[5].as_int(),
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

/// Columns added to `crm_api_keys` after its first release, with their definitions.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    // Keys made before it read personal fields redacted, unless they are admin keys.
    ("personal_data", "BIGINT NOT NULL DEFAULT 0"),
    // Keys made before these never expire, were never rotated, were not seen in use.
    ("expires_at", "BIGINT"),
    ("last_used_at", "BIGINT"),
    ("rotated_from", "TEXT"),
];

/// Adds to a key table made by an older version the columns it lacks ([`ADDED_COLUMNS`]).
/// Looks first, so an open of an upgraded table takes no table lock; safe when another
/// process adds them at the same time.
async fn add_missing_columns(db: &ReadDb) -> Result<(), KeyError> {
    let present = key_columns(db).await?;
    for (column, definition) in ADDED_COLUMNS {
        if present.iter().any(|name| name == column) {
            continue;
        }
        let add = match db.backend() {
            Backend::Postgres => {
                format!("ALTER TABLE crm_api_keys ADD COLUMN IF NOT EXISTS {column} {definition}")
            }
            Backend::Sqlite => format!("ALTER TABLE crm_api_keys ADD COLUMN {column} {definition}"),
        };
        match db.execute(&add, vec![]).await {
            Ok(_) => {}
            // Another process may have added it meanwhile (SQLite has no IF NOT EXISTS here).
            Err(_) if key_columns(db).await?.iter().any(|name| name == column) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// The names of `crm_api_keys`' columns.
async fn key_columns(db: &ReadDb) -> Result<Vec<String>, KeyError> {
    let sql = match db.backend() {
        Backend::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'crm_api_keys'"
        }
        Backend::Sqlite => "SELECT name FROM pragma_table_info('crm_api_keys')",
    };
    let rows = db.fetch(sql, vec![], &[Col::Text]).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row.into_iter().next().and_then(SqlValue::into_text))
        .collect())
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

const INSERT_KEY: &str = "INSERT INTO crm_api_keys \
     (key_id, tenant, role, secret_sha256, label, created_at, revoked_at, personal_data, \
     expires_at, last_used_at, rotated_from) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL, ?)";

/// A new key's text and the arguments of [`INSERT_KEY`] that store it (hashed).
fn new_key(
    tenant: &TenantId,
    role: Role,
    personal_data: bool,
    label: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    rotated_from: Option<&str>,
) -> Result<(NewKey, Vec<SqlValue>), KeyError> {
    let mut random = [0u8; 8 + 32];
    getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
    let key_id = hex::encode(&random[..8]);
    let secret = hex::encode(&random[8..]);
    let created_at = crm_core::envelope::to_stored_precision(Utc::now());
    let expires_at = expires_at.map(crm_core::envelope::to_stored_precision);
    let args = vec![
        key_id.as_str().into(),
        tenant.as_str().into(),
        role.as_str().into(),
        hex::encode(digest(&secret)).into(),
        SqlValue::opt_text(label),
        SqlValue::Int(created_at.timestamp_micros()),
        SqlValue::Int(i64::from(personal_data)),
        SqlValue::opt_int(expires_at.map(|at| at.timestamp_micros())),
        SqlValue::opt_text(rotated_from),
    ];
    Ok((
        NewKey {
            token: format!("{KEY_PREFIX}{key_id}_{secret}"),
            info: KeyInfo {
                key_id,
                tenant: tenant.as_str().to_owned(),
                role,
                personal_data,
                label: label.map(str::to_owned),
                created_at,
                revoked_at: None,
                expires_at,
                last_used_at: None,
                rotated_from: rotated_from.map(str::to_owned),
            },
        },
        args,
    ))
}

/// A lifetime such as `90d`, `12h`, `30m` or `45s` (a whole number and one unit).
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: give a whole number and a unit, s, m, h or d \
                 (e.g. 90d, 12h)"
            ));
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: it must start with a whole number"))?;
    number
        .checked_mul(seconds_per)
        .filter(|seconds| *seconds <= 1_000 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is longer than 1000 years"))
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
    fn lifetimes_read_a_number_and_a_unit() {
        assert_eq!(parse_lifetime("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_lifetime("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_lifetime("1s"), Ok(Duration::from_secs(1)));
        for bad in [
            "",
            "d",
            "12",
            "1.5h",
            "3w",
            "-1d",
            "99999999999999999999d",
            "400000d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
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
