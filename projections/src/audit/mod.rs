//! The audit tree: one RFC 9162 Merkle tree per tenant over its events in log order (leaf
//! `i` is the tenant's `i`-th event, its leaf data the event's stored bytes,
//! `crm_core::merkle::leaf_data`), built by a checkpointed worker beside the projections
//! (`worker.rs`), never inside the append. What it stores, in the read-model database:
//!
//! - `crm_audit_checkpoint`: the log position the trees cover (moved by compare-and-set in
//!   the batch's own transaction, so two workers never add a leaf twice);
//! - `crm_audit_trees`: each tenant's tree size and root;
//! - `crm_audit_nodes`: the perfect subtrees' hashes at every fourth level (leaves at level 0,
//!   then levels 4, 8, …: about 1.07 rows per event); proofs compute the other levels from
//!   them (`crm_core::merkle::nodes::sparse`) and read at most a few hundred rows at any size;
//! - `crm_audit_leaves`: (stream, revision) → leaf index and log position.
//!
//! These tables only answer proofs quickly; nothing trusts them. A signed head is checked
//! against leaves recomputed from the log (`verify.rs`), and a proof against a signed head.

pub mod proofs;
pub mod verify;
pub mod worker;

use std::collections::HashMap;

use crm_core::merkle::nodes::NodeId;
use crm_core::merkle::{Hash, empty_root};

use crate::db::{Backend, Col, ReadDb, ReadTx, SqlValue};
use crate::error::ProjectionError;

pub use proofs::{
    ConsistencyProof, InclusionProof, TreeError, consistency, inclusion, signed_head,
};
pub use verify::{HeadCheck, HeadFinding, check_heads};
pub use worker::{TreeWorker, spawn};

/// The stored levels of `crm_audit_nodes`: 0, 4, 8, …
pub(crate) const STRIDE: u32 = 4;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS crm_audit_checkpoint (
        id BIGINT PRIMARY KEY,
        position BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS crm_audit_trees (
        tenant TEXTKEY PRIMARY KEY,
        size BIGINT NOT NULL,
        root TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS crm_audit_nodes (
        tenant TEXTKEY NOT NULL,
        level BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (tenant, level, idx)
    ) WITHOUT_ROWID",
    "CREATE TABLE IF NOT EXISTS crm_audit_leaves (
        tenant TEXTKEY NOT NULL,
        stream TEXTKEY NOT NULL,
        revision BIGINT NOT NULL,
        leaf_index BIGINT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (tenant, stream, revision)
    ) WITHOUT_ROWID",
    "INSERT INTO crm_audit_checkpoint (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
];

/// Creates the audit tables if they are missing (concurrent starters on PostgreSQL are
/// serialised by a transaction-scoped advisory lock).
pub async fn create(db: &ReadDb) -> Result<(), ProjectionError> {
    // The lease table the worker shares with the projections.
    crate::bookkeeping::create(db).await?;
    let mut tx = db.begin().await?;
    if tx.backend() == Backend::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(1668443504, 16)", vec![])
            .await?;
    }
    for statement in SCHEMA {
        tx.execute(statement, vec![]).await?;
    }
    tx.commit().await
}

/// A tenant's tree as the worker last stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub size: u64,
    pub root: Hash,
}

impl Tree {
    /// The empty tree (a tenant with no event yet).
    pub fn empty() -> Tree {
        Tree {
            size: 0,
            root: empty_root(),
        }
    }
}

/// The log position the trees cover (0 before the worker first ran).
pub async fn covered(db: &ReadDb) -> Result<u64, ProjectionError> {
    if !db.has_table("crm_audit_checkpoint").await? {
        return Ok(0);
    }
    let rows = db
        .fetch(
            "SELECT position FROM crm_audit_checkpoint WHERE id = 1",
            vec![],
            &[Col::Int],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row[0].as_int())
        .map_or(0, |p| p.max(0) as u64))
}

/// `tenant`'s tree as stored (the empty tree when it has none).
pub async fn tree(db: &ReadDb, tenant: &str) -> Result<Tree, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT size, root FROM crm_audit_trees WHERE tenant = ?",
            vec![tenant.into()],
            &[Col::Int, Col::Text],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(Tree::empty());
    };
    let size = row[0].as_int().unwrap_or(0).max(0) as u64;
    let root = parse_hash(
        row[1].as_text().unwrap_or_default(),
        "crm_audit_trees",
        tenant,
    )?;
    Ok(Tree { size, root })
}

/// Every tenant with a tree, and its tree.
pub async fn trees(db: &ReadDb) -> Result<Vec<(String, Tree)>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT tenant, size, root FROM crm_audit_trees ORDER BY tenant",
            vec![],
            &[Col::Text, Col::Int, Col::Text],
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            let tenant = row[0].as_text().unwrap_or_default().to_owned();
            let root = parse_hash(
                row[2].as_text().unwrap_or_default(),
                "crm_audit_trees",
                &tenant,
            )?;
            let size = row[1].as_int().unwrap_or(0).max(0) as u64;
            Ok((tenant, Tree { size, root }))
        })
        .collect()
}

/// Reads the stored perfect subtrees `ids` of `tenant` (those stored; a proof that needs a
/// missing one fails naming it).
pub(crate) async fn fetch_nodes(
    db: &ReadDb,
    tenant: &str,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, ProjectionError> {
    let mut found = HashMap::with_capacity(ids.len());
    // One primary-key lookup per node, in one statement (an OR of pairs would scan the
    // tenant's nodes on SQLite).
    const LOOKUP: &str = "SELECT level, idx, hash FROM crm_audit_nodes \
                          WHERE tenant = ? AND level = ? AND idx = ?";
    for chunk in ids.chunks(100) {
        let mut args: Vec<SqlValue> = Vec::with_capacity(chunk.len() * 3);
        for (level, index) in chunk {
            args.push(tenant.into());
            args.push(SqlValue::Int(i64::from(*level)));
            args.push(SqlValue::Int(*index as i64));
        }
        let rows = db
            .fetch(
                &vec![LOOKUP; chunk.len()].join(" UNION ALL "),
                args,
                &[Col::Int, Col::Int, Col::Text],
            )
            .await?;
        for row in rows {
            let level = row[0].as_int().unwrap_or(0) as u32;
            let index = row[1].as_int().unwrap_or(0) as u64;
            let hash = parse_hash(
                row[2].as_text().unwrap_or_default(),
                "crm_audit_nodes",
                &format!("{tenant}/{level}/{index}"),
            )?;
            found.insert((level, index), hash);
        }
    }
    Ok(found)
}

/// The stored leaf hashes of `tenant` with index in `[from, to)`, in order.
pub(crate) async fn stored_leaves(
    db: &ReadDb,
    tenant: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, ProjectionError> {
    let rows = db
        .fetch(
            "SELECT idx, hash FROM crm_audit_nodes WHERE tenant = ? AND level = 0 \
             AND idx >= ? AND idx < ? ORDER BY idx",
            vec![
                tenant.into(),
                SqlValue::Int(from as i64),
                SqlValue::Int(to as i64),
            ],
            &[Col::Int, Col::Text],
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            parse_hash(
                row[1].as_text().unwrap_or_default(),
                "crm_audit_nodes",
                tenant,
            )
        })
        .collect()
}

pub(crate) fn parse_hash(text: &str, table: &str, key: &str) -> Result<Hash, ProjectionError> {
    let mut hash = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut hash).is_err() {
        return Err(ProjectionError::Corrupt {
            table: table.into(),
            key: key.into(),
            reason: format!("{text:?} is not a 64-hex-digit hash"),
        });
    }
    Ok(hash)
}

pub(crate) async fn checkpoint_in(tx: &mut ReadTx) -> Result<u64, ProjectionError> {
    let rows = tx
        .fetch(
            "SELECT position FROM crm_audit_checkpoint WHERE id = 1",
            vec![],
            &[Col::Int],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|row| row[0].as_int())
        .map_or(0, |p| p.max(0) as u64))
}
