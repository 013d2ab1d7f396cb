//! A signed tree head: `{tenant, tree_size, root_hash, timestamp}` and an Ed25519 signature
//! of [`signed_message`], a short text an auditor can rebuild with `printf` and check with
//! `openssl pkeyutl -verify -rawin` (docs/audit.md).

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::AuditError;
use super::key::{HeadSigner, PublicKey};
use crate::merkle::Hash;

/// The head format's version (part of the signed message).
pub const HEAD_VERSION: u32 = 1;

/// A tenant's tree head, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    /// The format's version: 1.
    pub version: u32,
    /// The tenant whose tree this is.
    pub tenant: String,
    /// How many of the tenant's events the tree holds (in log order).
    pub tree_size: u64,
    /// The RFC 9162 Merkle tree hash of those events, lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub root_hash: String,
    /// When the head was signed (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    /// Which key signed it: the first 16 hex digits of SHA-256 of the raw public key.
    pub key_id: String,
    /// The Ed25519 signature of the signed message, base64.
    pub signature: String,
}

/// The bytes a head's signature covers: five lines, each ending in `\n`.
///
/// ```text
/// crm-tree-head-v1
/// tenant <tenant>
/// tree_size <decimal>
/// root_hash <64 hex digits>
/// timestamp <RFC 3339>
/// ```
pub fn signed_message(tenant: &str, tree_size: u64, root_hash: &str, timestamp: &str) -> Vec<u8> {
    format!(
        "crm-tree-head-v{HEAD_VERSION}\ntenant {tenant}\ntree_size {tree_size}\n\
         root_hash {root_hash}\ntimestamp {timestamp}\n"
    )
    .into_bytes()
}

impl SignedHead {
    /// Signs the tree of `tree_size` leaves with root `root` for `tenant`, now.
    pub fn sign(signer: &HeadSigner, tenant: &str, tree_size: u64, root: &Hash) -> SignedHead {
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        SignedHead::sign_at(signer, tenant, tree_size, root, timestamp)
    }

    /// Signs with a given timestamp (tests, and heads rebuilt for a fixed time).
    pub fn sign_at(
        signer: &HeadSigner,
        tenant: &str,
        tree_size: u64,
        root: &Hash,
        timestamp: String,
    ) -> SignedHead {
        let root_hash = hex::encode(root);
        let signature = signer.sign(&signed_message(tenant, tree_size, &root_hash, &timestamp));
        SignedHead {
            version: HEAD_VERSION,
            tenant: tenant.to_owned(),
            tree_size,
            root_hash,
            timestamp,
            key_id: signer.public().key_id(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        }
    }

    /// The root hash as bytes.
    pub fn root(&self) -> Result<Hash, AuditError> {
        let mut root = [0u8; 32];
        if self.root_hash.len() != 64 || hex::decode_to_slice(&self.root_hash, &mut root).is_err() {
            return Err(AuditError::Head(format!(
                "root_hash {:?} is not 64 hex digits",
                self.root_hash
            )));
        }
        Ok(root)
    }

    /// Checks the head's form and its signature under `key`; the error names what failed.
    pub fn verify(&self, key: &PublicKey) -> Result<Hash, AuditError> {
        if self.version != HEAD_VERSION {
            return Err(AuditError::Head(format!(
                "version {} is not a version this program reads ({HEAD_VERSION})",
                self.version
            )));
        }
        let root = self.root()?;
        if chrono::DateTime::parse_from_rfc3339(&self.timestamp).is_err() {
            return Err(AuditError::Head(format!(
                "timestamp {:?} is not an RFC 3339 time",
                self.timestamp
            )));
        }
        if self.key_id != key.key_id() {
            return Err(AuditError::Head(format!(
                "it names the signing key {}, and the public key given is {}",
                self.key_id,
                key.key_id()
            )));
        }
        let signature: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| AuditError::Head("signature is not 64 bytes in base64".into()))?;
        let message = signed_message(
            &self.tenant,
            self.tree_size,
            &self.root_hash,
            &self.timestamp,
        );
        if !key.verifies(&message, &signature) {
            return Err(AuditError::Head(format!(
                "the signature of the head of tenant {} at tree size {} does not verify under \
                 key {}",
                self.tenant,
                self.tree_size,
                key.key_id()
            )));
        }
        Ok(root)
    }

    /// Parses a head from JSON, naming what is wrong.
    pub fn from_json(text: &str) -> Result<SignedHead, AuditError> {
        serde_json::from_str(text).map_err(|e| AuditError::Head(format!("not a signed head: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_verifies_and_no_changed_member_does() {
        let signer = HeadSigner::generate().expect("key");
        let key = signer.public();
        let head = SignedHead::sign(&signer, "acme", 42, &[7u8; 32]);
        assert_eq!(head.verify(&key).expect("verifies"), [7u8; 32]);
        let json = serde_json::to_string(&head).expect("json");
        assert_eq!(SignedHead::from_json(&json).expect("parse"), head);
        type Change = Box<dyn Fn(&mut SignedHead)>;
        let changes: Vec<Change> = vec![
            Box::new(|h| h.tenant = "acmf".into()),
            Box::new(|h| h.tree_size = 43),
            Box::new(|h| h.root_hash = hex::encode([8u8; 32])),
            Box::new(|h| h.timestamp = "2020-01-01T00:00:00.000Z".into()),
            Box::new(|h| h.signature = h.signature.replacen('A', "B", 1)),
            Box::new(|h| h.version = 2),
            Box::new(|h| h.root_hash = "zz".into()),
        ];
        for change in changes {
            let mut altered = head.clone();
            change(&mut altered);
            if altered == head {
                continue;
            }
            assert!(altered.verify(&key).is_err(), "{altered:?}");
        }
        let other = HeadSigner::generate().expect("key").public();
        let error = head.verify(&other).expect_err("another key");
        assert!(error.to_string().contains(&other.key_id()), "{error}");
        assert!(SignedHead::from_json("{\"version\":1}").is_err());
    }

    #[test]
    fn the_signed_message_is_the_documented_text() {
        assert_eq!(
            signed_message("acme", 3, "ab", "2026-01-02T03:04:05.006Z"),
            b"crm-tree-head-v1\ntenant acme\ntree_size 3\nroot_hash ab\ntimestamp 2026-01-02T03:04:05.006Z\n"
        );
    }
}
