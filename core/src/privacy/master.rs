//! The master key: 32 random bytes from `CRM_MASTER_KEY` (64 hex digits or base64) or a key
//! file, never stored in the database. It wraps the data keys; the store keeps a check value
//! sealed under it, so a wrong key is refused before anything is read or written.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::privacy::{NONCE_LEN, PrivacyError, random_bytes, random_nonce};
use crate::store::keys::Keyring;

/// The environment variable holding the master key itself.
pub const MASTER_KEY_ENV: &str = "CRM_MASTER_KEY";
/// The environment variable (and `--master-key-file` option) naming a key file.
pub const MASTER_KEY_FILE_ENV: &str = "CRM_MASTER_KEY_FILE";

const CHECK_PLAINTEXT: &[u8] = b"crm master key check v1";
const CHECK_AAD: &[u8] = b"crm-keyring-v1";

/// The master key. Its bytes are zeroed when it is dropped.
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint())
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<MasterKey, PrivacyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random_bytes(bytes.as_mut_slice())?;
        Ok(MasterKey { bytes })
    }

    /// Parses 64 hex digits or the base64 of 32 bytes (surrounding whitespace ignored).
    pub fn parse(text: &str, source: &str) -> Result<MasterKey, PrivacyError> {
        let text = text.trim();
        let mut bytes = Zeroizing::new([0u8; 32]);
        if text.len() == 64 && hex::decode_to_slice(text, bytes.as_mut_slice()).is_ok() {
            return Ok(MasterKey { bytes });
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default(),
        );
        if decoded.len() == 32 {
            bytes.copy_from_slice(&decoded);
            return Ok(MasterKey { bytes });
        }
        Err(PrivacyError::MasterKey(format!(
            "{source} is not a master key: give 64 hex digits or the base64 of 32 bytes \
             (`crm-replay master-key generate` prints one)"
        )))
    }

    /// The key as base64, for writing to a key file.
    pub fn encoded(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.bytes.as_slice()))
    }

    /// A non-secret name of the key: the first 8 bytes of an HMAC of a fixed label.
    pub fn fingerprint(&self) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.bytes.as_slice())
            .expect("HMAC takes any key length");
        mac.update(b"crm master key fingerprint");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.bytes.as_slice()).expect("32-byte key")
    }

    /// The key-ring row that proves this key.
    pub fn keyring(&self) -> Result<Keyring, PrivacyError> {
        Ok(Keyring {
            fingerprint: self.fingerprint(),
            key_check: seal(&self.cipher(), CHECK_PLAINTEXT, CHECK_AAD)?,
        })
    }

    /// Checks this key against the store's key ring.
    pub fn check(&self, keyring: &Keyring, source: &str) -> Result<(), PrivacyError> {
        match open(&self.cipher(), &keyring.key_check, CHECK_AAD) {
            Ok(plain) if plain.as_slice() == CHECK_PLAINTEXT => Ok(()),
            _ => Err(PrivacyError::WrongMasterKey {
                origin: source.to_owned(),
                given: self.fingerprint(),
                expected: keyring.fingerprint.clone(),
            }),
        }
    }

    /// Seals a secret the service keeps for an owner (a webhook subscription's signing key)
    /// under this key: AES-256-GCM, a random nonce, the associated data binding it to its
    /// owner (`owner`: e.g. tenant and webhook id, each length-prefixed), so a sealed secret
    /// copied to another row does not open. Base64 text, for a text column.
    pub fn seal_secret(&self, plain: &[u8], owner: &[&str]) -> Result<String, PrivacyError> {
        let sealed = seal(&self.cipher(), plain, &secret_aad(owner))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// Opens what [`MasterKey::seal_secret`] sealed for `owner`; an error when it was sealed
    /// under another key or for another owner, or altered.
    pub fn open_secret(
        &self,
        sealed: &str,
        owner: &[&str],
    ) -> Result<Zeroizing<Vec<u8>>, PrivacyError> {
        let refused = || {
            PrivacyError::MasterKey(
                "a sealed secret does not open under this master key (sealed under another \
                 key, for another owner, or altered)"
                    .into(),
            )
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| refused())?;
        open(&self.cipher(), &bytes, &secret_aad(owner)).map_err(|()| refused())
    }

    /// Loads the key: `CRM_MASTER_KEY` if set, else the key file if given and present.
    /// `Ok(None)` when neither is there.
    pub fn load(
        env_value: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<(MasterKey, String)>, PrivacyError> {
        if let Some(value) = env_value.filter(|v| !v.trim().is_empty()) {
            return Ok(Some((
                MasterKey::parse(value, MASTER_KEY_ENV)?,
                MASTER_KEY_ENV.into(),
            )));
        }
        let Some(file) = file else { return Ok(None) };
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let source = format!("the key file {}", file.display());
                Ok(Some((MasterKey::parse(&text, &source)?, source)))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(PrivacyError::MasterKey(format!(
                "cannot read the key file {}: {error}",
                file.display()
            ))),
        }
    }

    /// Writes the key to a new file created with mode 0600 (refuses to overwrite).
    pub fn write_new_file(&self, path: &Path) -> Result<(), PrivacyError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                PrivacyError::MasterKey(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                PrivacyError::MasterKey(format!("cannot create {}: {e}", path.display()))
            })?;
        file.write_all(self.encoded().as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| PrivacyError::MasterKey(format!("cannot write {}: {e}", path.display())))
    }
}

/// The associated data of a sealed secret: a label, then each part of its owner
/// length-prefixed (so `("a", "bc")` and `("ab", "c")` differ).
fn secret_aad(owner: &[&str]) -> Vec<u8> {
    let mut aad = b"crm-secret-v1".to_vec();
    for part in owner {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// The default key file beside a SQLite store: `<store dir>/master.key`.
pub fn default_key_file(store_path: &Path) -> PathBuf {
    store_path
        .parent()
        .map(|dir| dir.join("master.key"))
        .unwrap_or_else(|| PathBuf::from("master.key"))
}

/// AES-256-GCM with a random nonce: `nonce ‖ ciphertext ‖ tag`.
pub(crate) fn seal(cipher: &Aes256Gcm, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, PrivacyError> {
    let nonce = random_nonce()?;
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| PrivacyError::MasterKey("encryption failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal`] made; `Err(())` if it was altered, or sealed under another key or AAD.
pub(crate) fn open(
    cipher: &Aes256Gcm,
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ()> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(());
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| ())?;
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: body, aad })
        .map(Zeroizing::new)
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_under_their_key_and_for_their_owner() {
        let key = MasterKey::generate().expect("key");
        let other = MasterKey::generate().expect("other key");
        let sealed = key
            .seal_secret(b"signing key bytes", &["acme", "wh_1"])
            .expect("seal");
        assert!(!sealed.contains("signing"));
        assert_eq!(
            key.open_secret(&sealed, &["acme", "wh_1"])
                .expect("open")
                .as_slice(),
            b"signing key bytes"
        );
        // Another tenant, another id, the parts shifted, another key: refused.
        for owner in [
            &["globex", "wh_1"][..],
            &["acme", "wh_2"],
            &["acmew", "h_1"],
        ] {
            assert!(key.open_secret(&sealed, owner).is_err(), "{owner:?}");
        }
        assert!(other.open_secret(&sealed, &["acme", "wh_1"]).is_err());
        assert!(key.open_secret("not base64!", &["acme", "wh_1"]).is_err());
        // Each seal takes a fresh nonce.
        assert_ne!(
            key.seal_secret(b"signing key bytes", &["acme", "wh_1"])
                .expect("again"),
            sealed
        );
    }
}
