//! Personal data at rest: envelope encryption of the fields the catalog flags as personal,
//! under one data key per data subject, and erasure by destroying that key.
//!
//! - [`MasterKey`] wraps every data key (`master.rs`); the key table beside the log keeps only
//!   wrapped keys ([`crate::store::keys`]).
//! - [`Vault`] mints, unwraps and caches data keys (`vault.rs`).
//! - [`PrivateStore`] is an [`crate::store::EventStore`] over a backend that seals personal
//!   fields on append and opens them on read (`store.rs`), so every reader (projections, the
//!   API, exports, snapshots) sees plaintext, or [`ERASED`] once the subject is erased.
//!
//! A sealed field is the JSON string `crm:v1:<key id>:<nonce ‖ ciphertext ‖ tag>` (base64url)
//! in place of the field's value. The cipher is AES-256-GCM; its associated data binds the
//! ciphertext to the tenant, stream, event id and field name, so it cannot be moved to another
//! event or field. The hash chain covers the stored (sealed) bytes, so verification needs no
//! key.

pub mod erase;
mod fields;
mod master;
pub mod replays;
mod store;
mod vault;

pub use fields::{
    ERASED, REDACTED, is_sealed, readable, readable_opt, same_content, subject_of_data,
};
pub use master::{MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MasterKey, default_key_file};
pub use store::{PrivateStore, UNREAD};
pub use vault::{Vault, VaultStatus};

/// Bytes of an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;

/// What can go wrong setting up or using personal-data protection.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// No master key was given where one is needed.
    #[error(
        "no master key: set CRM_MASTER_KEY (64 hex digits or base64 of 32 bytes) or \
         --master-key-file / CRM_MASTER_KEY_FILE to the key file{hint}"
    )]
    MissingMasterKey { hint: String },

    /// The master key does not open this store's key ring.
    #[error(
        "wrong master key: {origin} (fingerprint {given}) fails the key check of this store \
         (crm_keyring.key_check, made by the key with fingerprint {expected}); nothing was \
         written"
    )]
    WrongMasterKey {
        origin: String,
        given: String,
        expected: String,
    },

    /// The store holds events written before encryption at rest.
    #[error(
        "this store holds events written before personal fields were encrypted at rest, in \
         plain text; copy it into a new store with `crm-replay migrate-encrypt --from OLD \
         --to NEW`, then serve the new one"
    )]
    PlaintextStore,

    /// The master key or its file is unusable.
    #[error("master key: {0}")]
    MasterKey(String),

    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Fills `out` from the operating system's random source.
pub(crate) fn random_bytes(out: &mut [u8]) -> Result<(), PrivacyError> {
    getrandom::fill(out).map_err(|e| PrivacyError::MasterKey(format!("no randomness: {e}")))
}

/// Bytes of operating-system randomness fetched at once for nonces.
const NONCE_POOL: usize = 4096;

thread_local! {
    /// Unused OS randomness of this thread (`.1` is how much of `.0` is used): a nonce per
    /// sealed field would otherwise be a system call per field. Each byte is used once.
    static NONCES: std::cell::RefCell<(Vec<u8>, usize)> =
        const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// A fresh random nonce.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], PrivacyError> {
    NONCES.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (bytes, used) = &mut *pool;
        if bytes.len() < NONCE_POOL || *used + NONCE_LEN > bytes.len() {
            bytes.resize(NONCE_POOL, 0);
            random_bytes(bytes)?;
            *used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[*used..*used + NONCE_LEN]);
        // Spent bytes are cleared so no later reader of the buffer sees them.
        bytes[*used..*used + NONCE_LEN].fill(0);
        *used += NONCE_LEN;
        Ok(nonce)
    })
}

/// Where the master key comes from: `CRM_MASTER_KEY`, else a key file (`--master-key-file`,
/// `CRM_MASTER_KEY_FILE`, or for a SQLite store `master.key` beside the store file).
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    /// The value of `CRM_MASTER_KEY`, if set.
    pub value: Option<String>,
    /// The key file named by `--master-key-file` / `CRM_MASTER_KEY_FILE`, if any.
    pub file: Option<std::path::PathBuf>,
}

impl KeySource {
    /// The source the environment names (`CRM_MASTER_KEY`, `CRM_MASTER_KEY_FILE`).
    pub fn from_env() -> KeySource {
        KeySource {
            value: std::env::var(MASTER_KEY_ENV).ok(),
            file: std::env::var_os(MASTER_KEY_FILE_ENV).map(Into::into),
        }
    }

    /// A key file.
    pub fn file(path: impl Into<std::path::PathBuf>) -> KeySource {
        KeySource {
            value: None,
            file: Some(path.into()),
        }
    }

    /// The key file this source uses for `url`: the one named, else for SQLite the default
    /// beside the store file.
    pub fn key_file(&self, url: &crate::store::StoreUrl) -> Option<std::path::PathBuf> {
        match (&self.file, url) {
            (Some(file), _) => Some(file.clone()),
            (None, crate::store::StoreUrl::Sqlite { path, .. }) => Some(default_key_file(path)),
            (None, crate::store::StoreUrl::Postgres { .. }) => None,
        }
    }
}

/// A store opened for personal data: the sealing store, and what happened on the way.
#[derive(Debug)]
pub struct OpenedStore {
    pub store: PrivateStore,
    /// The key file created now (a new store whose key file did not exist).
    pub created_key_file: Option<std::path::PathBuf>,
}

/// Opens the store at `url` with its master key. When the store is new (no key ring, no
/// events) and `create` is set, a missing key file is created (mode 0600) with a new key.
/// Fails, writing nothing, without a key ([`PrivacyError::MissingMasterKey`]), with a wrong
/// one ([`PrivacyError::WrongMasterKey`]), or on a store written in plain text
/// ([`PrivacyError::PlaintextStore`]).
pub async fn open_private(
    url: &crate::store::StoreUrl,
    source: &KeySource,
    create: bool,
) -> Result<OpenedStore, PrivacyError> {
    let raw = crate::store::open_store(url).await?;
    open_private_on(raw, url, source, create).await
}

/// [`open_private`] over a store already open.
pub async fn open_private_on(
    raw: crate::store::SharedStore,
    url: &crate::store::StoreUrl,
    source: &KeySource,
    create: bool,
) -> Result<OpenedStore, PrivacyError> {
    let key_file = source.key_file(url);
    let mut created_key_file = None;
    let (master, origin) = match MasterKey::load(source.value.as_deref(), key_file.as_deref())? {
        Some(found) => found,
        None => {
            let table = raw.key_table();
            let keyring = match &table {
                Some(table) => table.keyring().await?,
                None => None,
            };
            let fresh = keyring.is_none() && raw.head_position().await? == 0;
            match (&key_file, fresh && create) {
                (Some(path), true) => {
                    let master = MasterKey::generate()?;
                    master.write_new_file(path)?;
                    created_key_file = Some(path.clone());
                    (master, format!("the key file {}", path.display()))
                }
                _ => {
                    let hint = match (&keyring, &key_file) {
                        (Some(keyring), Some(path)) => format!(
                            " ({} does not exist; this store's key has fingerprint {})",
                            path.display(),
                            keyring.fingerprint
                        ),
                        (Some(keyring), None) => {
                            format!(
                                " (this store's key has fingerprint {})",
                                keyring.fingerprint
                            )
                        }
                        (None, _) if !fresh => return Err(PrivacyError::PlaintextStore),
                        (None, _) => String::new(),
                    };
                    return Err(PrivacyError::MissingMasterKey { hint });
                }
            }
        }
    };
    let (vault, _) = Vault::open(&raw, master, &origin, create).await?;
    Ok(OpenedStore {
        store: PrivateStore::new(raw, std::sync::Arc::new(vault)),
        created_key_file,
    })
}
