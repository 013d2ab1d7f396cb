//! The vault: data keys minted, wrapped under the master key, unwrapped and cached.
//!
//! Two caches, both dropped whole when the store's erasure count moves (checked before every
//! read that opens a sealed field, so a key erased by any process is never used to decrypt
//! again): key id → cipher (`None` once erased) for reads, subject → (key id, cipher) for
//! appends. An append also names every key it seals under in its [`KeyOps::uses`], which the
//! backend checks inside the append's transaction: a key erased meanwhile fails the append
//! instead of sealing new data under a destroyed key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use zeroize::Zeroizing;

use crate::envelope::TenantId;
use crate::privacy::master::{open, seal};
use crate::privacy::{MasterKey, PrivacyError, random_bytes};
use crate::store::keys::{KEY_ID_LEN, KeyId, KeyTable, NewKey, SubjectKey};
use crate::store::{SharedStore, StoreError};

/// Entries a cache holds before it starts over.
const CACHE_LIMIT: usize = 200_000;

/// A data key ready to use.
pub(crate) type Cipher = Arc<Aes256Gcm>;

/// How [`Vault::open`] found the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultStatus {
    /// The key ring was created now, under this master key.
    Created,
    /// The key ring was there and this master key opened it.
    Opened,
}

/// See the module documentation.
pub struct Vault {
    master: MasterKey,
    master_cipher: Aes256Gcm,
    table: Arc<dyn KeyTable>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    /// The erasure count the entries are valid for.
    erasures: Option<u64>,
    /// Per tenant (looked up without cloning the tenant), key id → cipher.
    by_id: HashMap<TenantId, HashMap<KeyId, Option<Cipher>>>,
    by_id_len: usize,
    by_subject: HashMap<(TenantId, String), (KeyId, Cipher)>,
}

impl Cache {
    fn clear(&mut self) {
        self.by_id.clear();
        self.by_id_len = 0;
        self.by_subject.clear();
    }

    fn insert_id(&mut self, tenant: &TenantId, id: KeyId, cipher: Option<Cipher>) {
        if self.by_id_len >= CACHE_LIMIT {
            self.by_id.clear();
            self.by_id_len = 0;
        }
        let ids = match self.by_id.get_mut(tenant) {
            Some(ids) => ids,
            None => self.by_id.entry(tenant.clone()).or_default(),
        };
        if ids.insert(id, cipher).is_none() {
            self.by_id_len += 1;
        }
    }
}

impl Vault {
    /// Opens the vault of `store` with `master`: checks the key against the store's key ring,
    /// or creates the key ring when the store has none and holds no events yet (only if
    /// `create`). A store with events but no key ring was written before encryption at rest
    /// and is refused ([`PrivacyError::PlaintextStore`]). Writes nothing when it fails.
    pub async fn open(
        store: &SharedStore,
        master: MasterKey,
        source: &str,
        create: bool,
    ) -> Result<(Vault, VaultStatus), PrivacyError> {
        let table = store
            .key_table()
            .ok_or_else(|| PrivacyError::MasterKey("this store keeps no key table".into()))?;
        let status = match table.keyring().await? {
            Some(keyring) => {
                master.check(&keyring, source)?;
                VaultStatus::Opened
            }
            None => {
                if store.head_position().await? > 0 {
                    return Err(PrivacyError::PlaintextStore);
                }
                if !create {
                    return Err(PrivacyError::MasterKey(
                        "this store has no key ring yet; start `crm-api serve` on it once".into(),
                    ));
                }
                let stored = table.init_keyring(&master.keyring()?).await?;
                // Another process may have created it first, with another key.
                master.check(&stored, source)?;
                VaultStatus::Created
            }
        };
        let master_cipher = master.cipher();
        Ok((
            Vault {
                master,
                master_cipher,
                table,
                cache: Mutex::new(Cache::default()),
            },
            status,
        ))
    }

    /// The key table.
    pub fn table(&self) -> &Arc<dyn KeyTable> {
        &self.table
    }

    /// The master key.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every cached key (after an erasure by this process).
    pub fn forget_all(&self) {
        let mut cache = self.cache();
        cache.clear();
        cache.erasures = None;
    }

    fn wrap_aad(tenant: &TenantId, subject: &str, key_id: &KeyId) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + subject.len());
        aad.extend_from_slice(b"crm-data-key-v1");
        for part in [tenant.as_str().as_bytes(), subject.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(key_id);
        aad
    }

    /// Wraps a data key under `master`.
    pub(crate) fn wrap_with(
        master: &Aes256Gcm,
        tenant: &TenantId,
        subject: &str,
        key_id: &KeyId,
        key: &[u8],
    ) -> Result<Vec<u8>, PrivacyError> {
        seal(master, key, &Self::wrap_aad(tenant, subject, key_id))
    }

    /// The data key of a row, unwrapped; `None` for a tombstone.
    pub(crate) fn unwrap_key(
        &self,
        key: &SubjectKey,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let Some(wrapped) = &key.wrapped else {
            return Ok(None);
        };
        let aad = Self::wrap_aad(&key.tenant, &key.subject, &key.key_id);
        open(&self.master_cipher, wrapped, &aad)
            .map(Some)
            .map_err(|()| {
                StoreError::Sealing(format!(
                    "the data key of {} (tenant {}) does not open under the master key: the key \
                 table was altered",
                    key.subject, key.tenant
                ))
            })
    }

    fn cipher_of(&self, key: &SubjectKey) -> Result<Option<Cipher>, StoreError> {
        Ok(match self.unwrap_key(key)? {
            Some(bytes) => Some(Arc::new(Aes256Gcm::new_from_slice(&bytes).map_err(
                |_| StoreError::Sealing(format!("the data key of {} is damaged", key.subject)),
            )?)),
            None => None,
        })
    }

    /// Drops the caches if the store's erasure count moved since they were filled.
    pub(crate) async fn refresh(&self) -> Result<(), StoreError> {
        let count = self.table.erasure_count().await?;
        let mut cache = self.cache();
        if cache.erasures != Some(count) {
            cache.clear();
            cache.erasures = Some(count);
        }
        Ok(())
    }

    /// The ciphers of these key ids of `tenant` (`None`: erased). Call [`Vault::refresh`]
    /// first. Unknown key ids are an error: the keys were not restored with the log.
    pub(crate) async fn ciphers_by_id(
        &self,
        tenant: &TenantId,
        ids: &[KeyId],
    ) -> Result<HashMap<KeyId, Option<Cipher>>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        let mut asked = std::collections::HashSet::new();
        {
            let cache = self.cache();
            let known = cache.by_id.get(tenant);
            for id in ids {
                if found.contains_key(id) {
                    continue;
                }
                match known.and_then(|known| known.get(id)) {
                    Some(cipher) => {
                        found.insert(*id, cipher.clone());
                    }
                    None => {
                        if asked.insert(*id) {
                            missing.push(*id);
                        }
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let rows = self.table.keys_by_id(tenant, &missing).await?;
        let mut cache = self.cache();
        for row in &rows {
            let cipher = self.cipher_of(row)?;
            cache.insert_id(tenant, row.key_id, cipher.clone());
            found.insert(row.key_id, cipher);
        }
        if let Some(id) = missing.iter().find(|id| !found.contains_key(*id)) {
            return Err(StoreError::Sealing(format!(
                "tenant {tenant} has no data key {}: the key table does not belong to this \
                 log (restore it with `crm-replay import --keys-in`)",
                hex::encode(id)
            )));
        }
        Ok(found)
    }

    /// The keys an append seals under, per subject: live keys from the cache or the table,
    /// and new keys minted (and wrapped) for subjects without one. A tombstoned subject is
    /// [`StoreError::SubjectErased`]. `optimistic` skips the table: a subject not cached gets
    /// a new key, which the append's transaction refuses if the subject has one.
    pub(crate) async fn keys_for_append(
        &self,
        tenant: &TenantId,
        subjects: &[String],
        optimistic: bool,
    ) -> Result<(HashMap<String, (KeyId, Cipher)>, Vec<NewKey>), StoreError> {
        let mut keys = HashMap::with_capacity(subjects.len());
        let mut missing = Vec::new();
        {
            let cache = self.cache();
            for subject in subjects {
                match cache.by_subject.get(&(tenant.clone(), subject.clone())) {
                    Some(entry) => {
                        keys.insert(subject.clone(), entry.clone());
                    }
                    None => missing.push(subject.clone()),
                }
            }
        }
        let mut new = Vec::new();
        if missing.is_empty() {
            return Ok((keys, new));
        }
        let rows = if optimistic {
            Vec::new()
        } else {
            self.table.keys_of_subjects(tenant, &missing).await?
        };
        for row in &rows {
            match self.cipher_of(row)? {
                Some(cipher) => {
                    keys.insert(row.subject.clone(), (row.key_id, cipher));
                }
                None => {
                    return Err(StoreError::SubjectErased {
                        subject: row.subject.clone(),
                    });
                }
            }
        }
        for subject in missing {
            if keys.contains_key(&subject) {
                continue;
            }
            let mut key_id = [0u8; KEY_ID_LEN];
            let mut key = Zeroizing::new([0u8; 32]);
            random_bytes(&mut key_id).map_err(sealing)?;
            random_bytes(key.as_mut_slice()).map_err(sealing)?;
            let wrapped = Self::wrap_with(
                &self.master_cipher,
                tenant,
                &subject,
                &key_id,
                key.as_slice(),
            )
            .map_err(sealing)?;
            let cipher = Arc::new(Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key"));
            keys.insert(subject.clone(), (key_id, cipher));
            new.push(NewKey {
                subject,
                key_id,
                wrapped,
            });
        }
        Ok((keys, new))
    }

    /// Remembers keys an append used or created (after it committed).
    pub(crate) fn remember(&self, tenant: &TenantId, keys: &HashMap<String, (KeyId, Cipher)>) {
        let mut cache = self.cache();
        if cache.by_subject.len() + keys.len() > CACHE_LIMIT {
            cache.by_subject.clear();
        }
        for (subject, (id, cipher)) in keys {
            cache
                .by_subject
                .insert((tenant.clone(), subject.clone()), (*id, Arc::clone(cipher)));
            cache.insert_id(tenant, *id, Some(Arc::clone(cipher)));
        }
    }

    /// Forgets one subject's key (its append found it changed).
    pub(crate) fn forget(&self, tenant: &TenantId, subject: &str) {
        let mut cache = self.cache();
        if let Some((id, _)) = cache
            .by_subject
            .remove(&(tenant.clone(), subject.to_owned()))
            && let Some(ids) = cache.by_id.get_mut(tenant)
            && ids.remove(&id).is_some()
        {
            cache.by_id_len -= 1;
        }
    }

    /// Re-wraps every live data key under `new_master` and replaces the key ring, in one
    /// transaction; the log is not touched. Returns how many keys were re-wrapped.
    pub async fn rotate_master(&self, new_master: &MasterKey) -> Result<usize, PrivacyError> {
        let new_cipher = new_master.cipher();
        let mut rewrapped = Vec::new();
        for row in self.table.all_keys(None).await? {
            if let Some(key) = self.unwrap_key(&row)? {
                let wrapped =
                    Self::wrap_with(&new_cipher, &row.tenant, &row.subject, &row.key_id, &key)?;
                rewrapped.push((row.tenant, row.subject, wrapped));
            }
        }
        self.table
            .rotate(&new_master.keyring()?, &rewrapped)
            .await?;
        self.table.scrub().await?;
        Ok(rewrapped.len())
    }
}

fn sealing(error: PrivacyError) -> StoreError {
    StoreError::Sealing(error.to_string())
}
