//! Proofs and heads from the stored tree: an inclusion proof for an event (named by stream
//! and revision: event ids are unique only within a stream), a consistency proof between two
//! sizes, and a signed head. The inclusion proof carries the event as stored and its leaf
//! hash recomputed from those bytes (never read from a stored hash), so a proof of an event
//! changed after the tree recorded it fails against any head signed before.

use base64::Engine;
use crm_core::audit::{HeadSigner, SignedHead};
use crm_core::envelope::{RecordedEvent, StreamId, TenantId};
use crm_core::merkle::nodes::{
    NodeId, consistency_path, inclusion_path, lookup, needed, root_at, sparse,
};
use crm_core::merkle::{Hash, ProofError, leaf_data, leaf_hash};
use crm_core::store::{Direction, SharedStore, StoreError, StreamStart};
use serde::{Deserialize, Serialize};

use super::{STRIDE, Tree, fetch_nodes, tree};
use crate::db::{Col, ReadDb, SqlValue};
use crate::error::ProjectionError;

/// Why a proof or a head cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Db(#[from] ProjectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such event in the tenant's log.
    #[error("stream {stream} has no event at revision {revision}")]
    NoSuchEvent { stream: String, revision: u64 },
    /// The event is stored but the tree worker has not added it yet.
    #[error(
        "the event at revision {revision} of stream {stream} is not in the audit tree yet \
         (the tree holds {size} events); retry shortly"
    )]
    NotYetInTree {
        stream: String,
        revision: u64,
        size: u64,
    },
    /// A tree size larger than the tenant's tree.
    #[error("{parameter}={asked} is beyond the tenant's tree, which holds {size} events")]
    SizeBeyond {
        parameter: &'static str,
        asked: u64,
        size: u64,
    },
    /// The event is a leaf beyond the tree size asked for.
    #[error(
        "tree_size={tree_size}: the event is leaf {leaf_index}, outside the tree of the \
         tenant's first {tree_size} events"
    )]
    LeafBeyond { leaf_index: u64, tree_size: u64 },
    /// A consistency range that has no proof.
    #[error("from={from}, to={to}: no consistency proof (0 < from <= to)")]
    BadRange { from: u64, to: u64 },
    /// The stored tree lacks a node a proof needs (damaged tables).
    #[error("the stored audit tree is damaged: {0}")]
    Proof(#[from] ProofError),
}

/// An event's inclusion proof (RFC 9162 §2.1.3) in its tenant's tree of `tree_size` leaves.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProof {
    pub tenant: String,
    pub tree_size: u64,
    /// The event's leaf index: its place among the tenant's events in log order, from 0.
    pub leaf_index: u64,
    /// SHA-256(0x00 ‖ leaf_data), lowercase hex, recomputed from the stored event.
    pub leaf_hash: String,
    /// The root of the tree of `tree_size` leaves, lowercase hex.
    pub root_hash: String,
    /// The audit path, from the leaf's sibling up, lowercase hex.
    pub audit_path: Vec<String>,
    /// What the leaf commits to (base64): the event's stored fields, length-prefixed.
    pub leaf_data: String,
    /// The event as stored (personal fields sealed as they are at rest).
    pub event: RecordedEvent,
}

/// A consistency proof (RFC 9162 §2.1.4): the tree of `to` leaves extends the tree of `from`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    pub tenant: String,
    pub from: u64,
    pub to: u64,
    /// The root of the tree of `from` leaves, lowercase hex.
    pub from_root: String,
    /// The root of the tree of `to` leaves, lowercase hex.
    pub to_root: String,
    /// The proof's nodes, lowercase hex (empty when `from` equals `to`).
    pub proof: Vec<String>,
}

/// The tenant's current head, signed now.
pub async fn signed_head(
    db: &ReadDb,
    signer: &HeadSigner,
    tenant: &TenantId,
) -> Result<SignedHead, TreeError> {
    let Tree { size, root } = tree(db, tenant.as_str()).await?;
    Ok(SignedHead::sign(signer, tenant.as_str(), size, &root))
}

/// The inclusion proof of the event at `revision` of `stream`, in the tree of `tree_size`
/// leaves (the current tree when `None`).
pub async fn inclusion(
    db: &ReadDb,
    store: &SharedStore,
    tenant: &TenantId,
    stream: &StreamId,
    revision: u64,
    tree_size: Option<u64>,
) -> Result<InclusionProof, TreeError> {
    let rows = db
        .fetch(
            "SELECT leaf_index, position FROM crm_audit_leaves \
             WHERE tenant = ? AND stream = ? AND revision = ?",
            vec![
                tenant.as_str().into(),
                stream.as_str().into(),
                SqlValue::Int(revision as i64),
            ],
            &[Col::Int, Col::Int],
        )
        .await?;
    let Some(row) = rows.first() else {
        let stored = store
            .read_stream(
                tenant,
                stream,
                Direction::Forwards,
                StreamStart::Revision(revision),
                1,
            )
            .await?;
        return Err(match stored.first() {
            Some(event) if event.revision == revision => TreeError::NotYetInTree {
                stream: stream.to_string(),
                revision,
                size: tree(db, tenant.as_str()).await?.size,
            },
            _ => TreeError::NoSuchEvent {
                stream: stream.to_string(),
                revision,
            },
        });
    };
    let leaf_index = row[0].as_int().unwrap_or(0).max(0) as u64;
    let position = row[1].as_int().unwrap_or(0).max(0) as u64;
    // Read after the leaf: the batch that stored it stored the tree that holds it.
    let current = tree(db, tenant.as_str()).await?;
    let size = sized(tree_size, &current, "tree_size")?;
    if leaf_index >= size {
        return Err(TreeError::LeafBeyond {
            leaf_index,
            tree_size: size,
        });
    }
    let event = store
        .read_positions(tenant, &[position])
        .await?
        .into_iter()
        .find(|e| e.stream_id == *stream && e.revision == revision)
        .ok_or_else(|| TreeError::NoSuchEvent {
            stream: stream.to_string(),
            revision,
        })?;
    let data = leaf_data(&event);
    let leaf = leaf_hash(&data);
    let (path, root) = with_nodes(db, tenant.as_str(), |node| {
        let path = inclusion_path(leaf_index, size, node)?;
        let root = root_at(size, node)?;
        Ok::<_, ProofError>((path, root))
    })
    .await?;
    Ok(InclusionProof {
        tenant: tenant.as_str().to_owned(),
        tree_size: size,
        leaf_index,
        leaf_hash: hex::encode(leaf),
        root_hash: hex::encode(root),
        audit_path: path.iter().map(hex::encode).collect(),
        leaf_data: base64::engine::general_purpose::STANDARD.encode(&data),
        event,
    })
}

/// The consistency proof from the tree of `from` leaves to the tree of `to` (the current
/// tree when `None`).
pub async fn consistency(
    db: &ReadDb,
    tenant: &TenantId,
    from: u64,
    to: Option<u64>,
) -> Result<ConsistencyProof, TreeError> {
    let current = tree(db, tenant.as_str()).await?;
    let to = sized(to, &current, "to")?;
    if from == 0 || from > to {
        return Err(TreeError::BadRange { from, to });
    }
    let (proof, from_root, to_root) = with_nodes(db, tenant.as_str(), |node| {
        let proof = consistency_path(from, to, node)?;
        let from_root = root_at(from, node)?;
        let to_root = root_at(to, node)?;
        Ok::<_, ProofError>((proof, from_root, to_root))
    })
    .await?;
    Ok(ConsistencyProof {
        tenant: tenant.as_str().to_owned(),
        from,
        to,
        from_root: hex::encode(from_root),
        to_root: hex::encode(to_root),
        proof: proof.iter().map(hex::encode).collect(),
    })
}

fn sized(asked: Option<u64>, current: &Tree, parameter: &'static str) -> Result<u64, TreeError> {
    match asked {
        None => Ok(current.size),
        Some(asked) if asked > current.size => Err(TreeError::SizeBeyond {
            parameter,
            asked,
            size: current.size,
        }),
        Some(asked) => Ok(asked),
    }
}

/// Runs `compute` over the stored nodes it needs (levels not stored computed from those
/// below, `STRIDE`): a first pass lists them, one read fetches them, a second pass computes.
pub(crate) async fn with_nodes<T>(
    db: &ReadDb,
    tenant: &str,
    compute: impl Fn(&mut dyn FnMut(NodeId) -> Option<Hash>) -> Result<T, ProofError>,
) -> Result<T, TreeError> {
    let ids = needed(|node| compute(&mut |id| sparse(&mut *node, STRIDE, id)));
    let fetched = fetch_nodes(db, tenant, &ids).await?;
    let mut read = lookup(&fetched);
    Ok(compute(&mut |id| sparse(&mut read, STRIDE, id))?)
}
