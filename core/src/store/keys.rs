//! The key table beside the log: one data key per data subject, wrapped by the master key,
//! kept by each backend in its own database (`crm_keyring`, `crm_subject_keys`).
//!
//! The store never sees a plaintext key: it keeps wrapped bytes, tombstones and links, and
//! applies [`KeyOps`] inside the transaction of the append they belong to, so an event and
//! the key it is sealed under, a conversion and the link it makes, an erasure event and the
//! destruction of the keys it names commit together or not at all. What the bytes mean is
//! [`crate::privacy`]'s business.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::envelope::TenantId;
use crate::store::StoreError;

/// Length of a key id (random).
pub const KEY_ID_LEN: usize = 16;

/// A key id: random bytes, unique within a tenant.
pub type KeyId = [u8; KEY_ID_LEN];

/// The one key-ring row: how a master key proves it is the store's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    /// A non-secret name of the master key (shown in errors and `stats`).
    pub fingerprint: String,
    /// A known value sealed under the master key.
    pub key_check: Vec<u8>,
}

/// One subject's row in the key table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    pub tenant: TenantId,
    /// `customer:<id>` or `lead:<id>`.
    pub subject: String,
    pub key_id: KeyId,
    /// The data key sealed by the master key; `None` once erased (a tombstone).
    pub wrapped: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
}

/// `subject` is erased whenever `owner` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectLink {
    pub tenant: TenantId,
    pub subject: String,
    pub owner: String,
}

/// A key minted for an append.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub subject: String,
    pub key_id: KeyId,
    pub wrapped: Vec<u8>,
}

/// Changes to the key table that belong to one append, applied in its transaction before the
/// events are written, and only if the append writes something new.
#[derive(Debug, Clone, Default)]
pub struct KeyOps {
    /// Subjects whose live keys the append seals fields under: each must still have its key
    /// (with this id), else the append fails with [`StoreError::SubjectErased`] or
    /// [`StoreError::KeyChanged`].
    pub uses: Vec<(String, KeyId)>,
    /// Keys to create; a subject that has a row already fails the append with
    /// [`StoreError::KeyChanged`] (or [`StoreError::SubjectErased`] for a tombstone).
    pub new: Vec<NewKey>,
    /// `(subject, owner)`: erase `subject` whenever `owner` is erased (now, if it already is).
    pub links: Vec<(String, String)>,
    /// Subjects to erase, with every subject linked to them.
    pub erase: Vec<String>,
}

impl KeyOps {
    pub fn is_empty(&self) -> bool {
        self.uses.is_empty()
            && self.new.is_empty()
            && self.links.is_empty()
            && self.erase.is_empty()
    }
}

/// What the backends keep of keys. Every method is one transaction.
#[async_trait]
pub trait KeyTable: Send + Sync + std::fmt::Debug {
    /// The key ring, if one was set up.
    async fn keyring(&self) -> Result<Option<Keyring>, StoreError>;

    /// Stores `keyring` unless one is stored already; returns the stored one.
    async fn init_keyring(&self, keyring: &Keyring) -> Result<Keyring, StoreError>;

    /// How many erasures the store has seen: caches of unwrapped keys compare it before they
    /// answer, so a key erased by another process is never used to decrypt.
    async fn erasure_count(&self) -> Result<u64, StoreError>;

    /// The rows of these subjects of `tenant` (absent subjects left out).
    async fn keys_of_subjects(
        &self,
        tenant: &TenantId,
        subjects: &[String],
    ) -> Result<Vec<SubjectKey>, StoreError>;

    /// The rows of these key ids of `tenant` (unknown ids left out).
    async fn keys_by_id(
        &self,
        tenant: &TenantId,
        key_ids: &[KeyId],
    ) -> Result<Vec<SubjectKey>, StoreError>;

    /// Every row, of one tenant or all, in (tenant, subject) order.
    async fn all_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<SubjectKey>, StoreError>;

    /// Every link, of one tenant or all.
    async fn all_links(&self, tenant: Option<&TenantId>) -> Result<Vec<SubjectLink>, StoreError>;

    /// Inserts rows and links (a restore); rows whose subject is stored already are left as
    /// they are. Returns how many rows were inserted.
    async fn restore_keys(
        &self,
        rows: &[SubjectKey],
        links: &[SubjectLink],
    ) -> Result<u64, StoreError>;

    /// Erases subjects outside an append (a tenant's offboarding, a tombstone without an
    /// event), with everything linked to them. Returns the subjects erased now.
    async fn erase_subjects(
        &self,
        tenant: &TenantId,
        subjects: &[String],
    ) -> Result<Vec<String>, StoreError>;

    /// Erases every key of `tenant`. Returns how many live keys were destroyed.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<u64, StoreError>;

    /// Replaces the key ring and every live wrapped key at once (a master-key rotation):
    /// `rewrapped` holds `(tenant, subject, wrapped)` for every live key; fails, changing
    /// nothing, if the live keys are not exactly those.
    async fn rotate(
        &self,
        keyring: &Keyring,
        rewrapped: &[(TenantId, String, Vec<u8>)],
    ) -> Result<(), StoreError>;

    /// Records a fact about the store (`crm_store_facts`).
    async fn record_fact(&self, name: &str, value: &str) -> Result<(), StoreError>;

    /// A recorded fact.
    async fn fact(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Makes what erasure overwrote unrecoverable from the database's files: SQLite folds the
    /// WAL into the file and truncates it (freed pages are zeroed by `secure_delete`);
    /// PostgreSQL rewrites the key table (`VACUUM FULL`), leaving no dead row versions.
    async fn scrub(&self) -> Result<(), StoreError>;
}

/// The subject name of a customer.
pub fn customer_subject(customer_id: &str) -> String {
    format!("customer:{customer_id}")
}

/// The subject name of a lead.
pub fn lead_subject(lead_id: &str) -> String {
    format!("lead:{lead_id}")
}
