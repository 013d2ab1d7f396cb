//! The head-signing key: an Ed25519 key (`ed25519-dalek`) from `CRM_SIGNING_KEY` (the 32-byte
//! seed as 64 hex digits or base64) or a key file (`--signing-key-file`,
//! `CRM_SIGNING_KEY_FILE`, or for a SQLite store `signing.key` beside the store file, created
//! mode 0600 on first start). Never stored in the database: whoever can write the database
//! cannot sign a head. The public key is given as raw base64, hex and PEM (SPKI), with a key
//! id (the first 16 hex digits of SHA-256 of the raw public key).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signer, Verifier};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::AuditError;
use crate::store::StoreUrl;

/// The environment variable holding the signing key itself.
pub const SIGNING_KEY_ENV: &str = "CRM_SIGNING_KEY";
/// The environment variable (and `--signing-key-file` option) naming a key file.
pub const SIGNING_KEY_FILE_ENV: &str = "CRM_SIGNING_KEY_FILE";

/// The default key file of a SQLite store: `signing.key` beside it.
pub fn default_signing_key_file(store_path: &Path) -> PathBuf {
    store_path
        .parent()
        .map(|dir| dir.join("signing.key"))
        .unwrap_or_else(|| PathBuf::from("signing.key"))
}

/// Where the signing key comes from.
#[derive(Debug, Clone, Default)]
pub struct SigningKeySource {
    /// The value of `CRM_SIGNING_KEY`, if set.
    pub value: Option<String>,
    /// The key file named by `--signing-key-file` / `CRM_SIGNING_KEY_FILE`, if any.
    pub file: Option<PathBuf>,
}

impl SigningKeySource {
    /// The source the environment names.
    pub fn from_env() -> SigningKeySource {
        SigningKeySource {
            value: std::env::var(SIGNING_KEY_ENV).ok(),
            file: std::env::var_os(SIGNING_KEY_FILE_ENV).map(Into::into),
        }
    }

    /// The key file this source uses for `url`: the one named, else for SQLite the default
    /// beside the store file; none for PostgreSQL (several servers share one database, and
    /// each must sign with the same key, so it is given, never made up by one of them).
    pub fn key_file(&self, url: &StoreUrl) -> Option<PathBuf> {
        match (&self.file, url) {
            (Some(file), _) => Some(file.clone()),
            (None, StoreUrl::Sqlite { path, .. }) => Some(default_signing_key_file(path)),
            (None, StoreUrl::Postgres { .. }) => None,
        }
    }

    /// The key: `CRM_SIGNING_KEY`, else the key file. A missing default file is created with
    /// a new key when `create` is set and the store is SQLite (returned as the second
    /// member). `Ok(None)`: no key was given (PostgreSQL without one).
    pub fn resolve(
        &self,
        url: &StoreUrl,
        create: bool,
    ) -> Result<Option<(HeadSigner, Option<PathBuf>)>, AuditError> {
        if let Some(value) = &self.value {
            return HeadSigner::parse(value, SIGNING_KEY_ENV).map(|key| Some((key, None)));
        }
        let Some(file) = self.key_file(url) else {
            return Ok(None);
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                HeadSigner::parse(&text, &file.display().to_string()).map(|key| Some((key, None)))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let named = self.file.is_some();
                if !create || named || !matches!(url, StoreUrl::Sqlite { .. }) {
                    return Err(AuditError::Key(format!(
                        "{} does not exist (give the head-signing key with \
                         --signing-key-file or {SIGNING_KEY_ENV})",
                        file.display()
                    )));
                }
                let key = HeadSigner::generate()?;
                key.write_new_file(&file)?;
                Ok(Some((key, Some(file))))
            }
            Err(error) => Err(AuditError::Key(format!(
                "cannot read {}: {error}",
                file.display()
            ))),
        }
    }
}

/// The Ed25519 key that signs tree heads. Its secret bytes are zeroed when dropped.
pub struct HeadSigner {
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for HeadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeadSigner({})", self.public().key_id())
    }
}

impl HeadSigner {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<HeadSigner, AuditError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice())
            .map_err(|e| AuditError::Key(format!("no randomness: {e}")))?;
        Ok(HeadSigner {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Parses the 32-byte seed as 64 hex digits or base64 (surrounding whitespace ignored).
    pub fn parse(text: &str, source: &str) -> Result<HeadSigner, AuditError> {
        let text = text.trim();
        let mut seed = Zeroizing::new([0u8; 32]);
        let parsed = (text.len() == 64 && hex::decode_to_slice(text, seed.as_mut_slice()).is_ok())
            || {
                let decoded = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .unwrap_or_default(),
                );
                let fits = decoded.len() == 32;
                if fits {
                    seed.copy_from_slice(&decoded);
                }
                fits
            };
        if !parsed {
            return Err(AuditError::Key(format!(
                "{source}: not a signing key (expected 32 bytes as 64 hex digits or base64)"
            )));
        }
        Ok(HeadSigner {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the key (hex) to a new file created with mode 0600; never overwrites.
    pub fn write_new_file(&self, path: &Path) -> Result<(), AuditError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| AuditError::Key(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| AuditError::Key(format!("cannot create {}: {e}", path.display())))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(self.key.to_bytes())));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| AuditError::Key(format!("cannot write {}: {e}", path.display())))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// An Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The public key heads are checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The raw key in base64.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.to_bytes())
    }

    /// The first 16 hex digits of SHA-256 of the raw key: which key signed a head.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.to_bytes())[..8])
    }

    /// The key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl pkeyutl` reads it.
    pub fn pem(&self) -> Result<String, AuditError> {
        self.0
            .to_public_key_pem(Default::default())
            .map_err(|e| AuditError::PublicKey(format!("cannot encode as PEM: {e}")))
    }

    /// Parses a PEM public key, 32 raw bytes in base64 or hex, or the JSON document that
    /// `GET /v1/audit/public-key` and `crm-replay audit public-key --json` give.
    pub fn parse(text: &str) -> Result<PublicKey, AuditError> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return ed25519_dalek::VerifyingKey::from_public_key_pem(text)
                .map(PublicKey)
                .map_err(|e| AuditError::PublicKey(format!("not an Ed25519 PEM key: {e}")));
        }
        if text.starts_with('{') {
            let document: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| AuditError::PublicKey(format!("not JSON: {e}")))?;
            let Some(raw) = document.get("public_key").and_then(|v| v.as_str()) else {
                return Err(AuditError::PublicKey(
                    "the JSON document has no \"public_key\" member".into(),
                ));
            };
            return PublicKey::parse(raw);
        }
        let mut bytes = [0u8; 32];
        let parsed = (text.len() == 64 && hex::decode_to_slice(text, &mut bytes).is_ok()) || {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default();
            let fits = decoded.len() == 32;
            if fits {
                bytes.copy_from_slice(&decoded);
            }
            fits
        };
        if !parsed {
            return Err(AuditError::PublicKey(
                "expected a PEM key, or 32 bytes as base64 or 64 hex digits".into(),
            ));
        }
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|e| AuditError::PublicKey(format!("not an Ed25519 point: {e}")))
    }

    /// Whether `signature` is this key's Ed25519 signature of `message` (strict: no
    /// malleable or small-order forms).
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &signature).is_ok()
            && self.0.verify(message, &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_file_and_its_public_forms() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys/signing.key");
        let key = HeadSigner::generate().expect("key");
        key.write_new_file(&path).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(key.write_new_file(&path).is_err(), "never overwrites");
        let text = std::fs::read_to_string(&path).expect("read");
        let again = HeadSigner::parse(&text, "file").expect("parse");
        assert_eq!(again.public(), key.public());
        let public = key.public();
        for form in [
            public.base64(),
            hex::encode(public.to_bytes()),
            public.pem().expect("pem"),
            format!("{{\"public_key\":\"{}\"}}", public.base64()),
        ] {
            assert_eq!(PublicKey::parse(&form).expect("parse"), public, "{form}");
        }
        let signature = key.sign(b"message");
        assert!(public.verifies(b"message", &signature));
        assert!(!public.verifies(b"messagf", &signature));
        let other = HeadSigner::generate().expect("key").public();
        assert!(!other.verifies(b"message", &signature));
        assert_ne!(other.key_id(), public.key_id());
    }

    #[test]
    fn bad_keys_are_refused_naming_their_source() {
        for text in ["", "abc", &"0".repeat(63), "not base64 at all!"] {
            let error = HeadSigner::parse(text, "CRM_SIGNING_KEY").expect_err(text);
            assert!(error.to_string().contains("CRM_SIGNING_KEY"), "{error}");
            assert!(PublicKey::parse(text).is_err(), "{text}");
        }
        assert!(PublicKey::parse("{\"x\": 1}").is_err());
    }

    #[test]
    fn the_embedded_default_creates_its_key_once_and_postgres_needs_one_given() {
        let dir = tempfile::tempdir().expect("dir");
        let url = StoreUrl::resolve(None, dir.path()).expect("url");
        let source = SigningKeySource::default();
        let (first, created) = source.resolve(&url, true).expect("resolve").expect("key");
        assert_eq!(created, Some(dir.path().join("signing.key")));
        let (second, created) = source.resolve(&url, true).expect("resolve").expect("key");
        assert_eq!(created, None);
        assert_eq!(first.public(), second.public());
        let postgres = StoreUrl::resolve(Some("postgres://127.0.0.1/x"), dir.path()).expect("url");
        assert!(source.resolve(&postgres, true).expect("resolve").is_none());
        let named = SigningKeySource {
            value: None,
            file: Some(dir.path().join("absent.key")),
        };
        let error = named
            .resolve(&url, true)
            .expect_err("a named file must exist");
        assert!(error.to_string().contains("absent.key"), "{error}");
    }
}
