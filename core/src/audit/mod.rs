//! Signed tree heads: what an auditor keeps outside the database. A head states a tenant's
//! tree size and Merkle root (`crate::merkle`) at a time, signed with Ed25519 by a key that
//! never enters the database (`key.rs`: a 0600 file or `CRM_SIGNING_KEY`); `head.rs`: the
//! head, its signed message and its verification. No global log position appears in a head:
//! it would tell a tenant how busy the others are.

pub mod head;
pub mod key;

pub use head::{HEAD_VERSION, SignedHead, signed_message};
pub use key::{
    HeadSigner, PublicKey, SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV, SigningKeySource,
    default_signing_key_file,
};

/// Why a key or a head cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The signing key could not be read, parsed or written.
    #[error("signing key: {0}")]
    Key(String),
    /// A public key could not be parsed.
    #[error("public key: {0}")]
    PublicKey(String),
    /// A head is malformed or its signature does not verify.
    #[error("signed head: {0}")]
    Head(String),
}
