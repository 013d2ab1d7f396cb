//! A store checked against signed heads kept elsewhere (`crm-replay audit verify --head`):
//! every leaf is recomputed from the stored bytes of the tenant's events as the log holds
//! them now, the tree of the first `tree_size` of them must hash to each head's root (so the
//! current log is a consistent extension of every head), and each head's signature must
//! verify. What fails is named: a head's signature; a size the log no longer reaches; the
//! first head whose root differs and the last that matches (the change lies between); and,
//! where the audit tree's own records still agree with the head, the exact first event whose
//! stored bytes changed or which is gone.

use crm_core::audit::{PublicKey, SignedHead};
use crm_core::envelope::TenantId;
use crm_core::merkle::nodes::root_at;
use crm_core::merkle::{Frontier, Hash, leaf_data, leaf_hash};
use crm_core::store::{Scope, SharedStore};
use serde::Serialize;

use super::proofs::{TreeError, with_nodes};
use super::{stored_leaves, tree};
use crate::db::{Col, ReadDb, SqlValue};

/// What a check found.
#[derive(Debug, Clone, Serialize)]
pub struct HeadCheck {
    pub tenant: String,
    /// The tenant's events in the log now.
    pub log_size: u64,
    /// The root of the tree recomputed from them, hex.
    pub log_root: String,
    /// The heads checked, smallest first.
    pub heads: Vec<HeadOutcome>,
    /// Everything that failed, in the order found; empty when every head holds.
    pub findings: Vec<HeadFinding>,
}

impl HeadCheck {
    /// Whether every head verified and the log extends each one.
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One head's result.
#[derive(Debug, Clone, Serialize)]
pub struct HeadOutcome {
    pub tree_size: u64,
    pub timestamp: String,
    pub holds: bool,
}

/// One failure, with what it names.
#[derive(Debug, Clone, Serialize)]
pub struct HeadFinding {
    /// `signature`, `tenant`, `missing_events`, `root_differs`, `first_changed_event`,
    /// `first_missing_event` or `between_heads`.
    pub kind: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

impl HeadFinding {
    fn new(kind: &'static str, message: String) -> HeadFinding {
        HeadFinding {
            kind,
            message,
            tree_size: None,
            leaf_index: None,
            stream: None,
            revision: None,
            position: None,
        }
    }
}

/// Checks `tenant`'s log in the raw store `store` against `heads` under `key`; `db` (the
/// read-model database, when there is one) lets a failure name the exact event.
pub async fn check_heads(
    store: &SharedStore,
    db: Option<&ReadDb>,
    tenant: &TenantId,
    heads: &[SignedHead],
    key: &PublicKey,
) -> Result<HeadCheck, TreeError> {
    let mut findings = Vec::new();
    let mut valid: Vec<(&SignedHead, Hash)> = Vec::new();
    for head in heads {
        if head.tenant != tenant.as_str() {
            findings.push(HeadFinding::new(
                "tenant",
                format!(
                    "the head signed {} is tenant {}'s, not {}'s",
                    head.timestamp, head.tenant, tenant
                ),
            ));
            continue;
        }
        match head.verify(key) {
            Ok(root) => valid.push((head, root)),
            Err(error) => {
                let mut finding = HeadFinding::new("signature", error.to_string());
                finding.tree_size = Some(head.tree_size);
                findings.push(finding);
            }
        }
    }
    valid.sort_by_key(|(head, _)| head.tree_size);

    // Every leaf from the stored bytes, in log order; each head's root where its size falls.
    let scope = Scope::Tenant(tenant.clone());
    let mut frontier = Frontier::new();
    let mut leaves: Vec<Hash> = Vec::new();
    let mut positions: Vec<u64> = Vec::new();
    let mut roots_at: Vec<Option<Hash>> = vec![None; valid.len()];
    let mut next_head = 0;
    let mut after = 0;
    while next_head < valid.len() && valid[next_head].0.tree_size == 0 {
        roots_at[next_head] = Some(frontier.root());
        next_head += 1;
    }
    loop {
        let batch = store.read_all(&scope, after, 5_000).await?;
        let Some(last) = batch.last() else {
            break;
        };
        after = last.position;
        for event in &batch {
            let leaf = leaf_hash(&leaf_data(event));
            frontier.push(leaf);
            leaves.push(leaf);
            positions.push(event.position);
            while next_head < valid.len() && valid[next_head].0.tree_size == frontier.size() {
                roots_at[next_head] = Some(frontier.root());
                next_head += 1;
            }
        }
    }
    let log_size = frontier.size();

    let mut outcomes = Vec::new();
    let mut last_holding: Option<u64> = None;
    let mut first_failing: Option<(&SignedHead, Hash)> = None;
    for ((head, root), computed) in valid.iter().zip(&roots_at) {
        let holds = match computed {
            None => {
                let mut finding = HeadFinding::new(
                    "missing_events",
                    format!(
                        "the head signed {} covers {} events of tenant {}; the log holds only \
                         {log_size}: events were removed",
                        head.timestamp, head.tree_size, tenant
                    ),
                );
                finding.tree_size = Some(head.tree_size);
                findings.push(finding);
                false
            }
            Some(computed) if computed != root => {
                let mut finding = HeadFinding::new(
                    "root_differs",
                    format!(
                        "the first {} events of tenant {} in the log do not hash to the root \
                         of the head signed {}: an event among them was changed, removed, \
                         inserted or reordered",
                        head.tree_size, tenant, head.timestamp
                    ),
                );
                finding.tree_size = Some(head.tree_size);
                findings.push(finding);
                false
            }
            Some(_) => true,
        };
        if holds && first_failing.is_none() {
            last_holding = Some(head.tree_size);
        }
        if !holds && first_failing.is_none() {
            first_failing = Some((head, *root));
        }
        outcomes.push(HeadOutcome {
            tree_size: head.tree_size,
            timestamp: head.timestamp.clone(),
            holds,
        });
    }

    if let Some((failing, failing_root)) = first_failing {
        let from = last_holding.unwrap_or(0);
        let mut finding = HeadFinding::new(
            "between_heads",
            match last_holding {
                Some(size) => format!(
                    "the log matches the head at tree size {size} and not the one at {}: the \
                     first difference is among leaves {size}..{} (the tenant's events {} to {})",
                    failing.tree_size,
                    failing.tree_size,
                    size + 1,
                    failing.tree_size
                ),
                None => format!(
                    "no head checked holds: the first difference is among leaves 0..{} (the \
                     tenant's first {} events)",
                    failing.tree_size, failing.tree_size
                ),
            },
        );
        finding.tree_size = Some(failing.tree_size);
        findings.push(finding);
        if let Some(db) = db {
            findings.extend(
                name_first_difference(
                    store,
                    db,
                    tenant,
                    failing.tree_size,
                    &failing_root,
                    from,
                    &leaves,
                    &positions,
                )
                .await?,
            );
        }
    }

    Ok(HeadCheck {
        tenant: tenant.as_str().to_owned(),
        log_size,
        log_root: hex::encode(frontier.root()),
        heads: outcomes,
        findings,
    })
}

/// Where the audit tree's records still agree with the failing head (the attacker left the
/// tree tables alone), the first leaf at or after `from` whose recorded hash differs from the
/// recomputed one is the first changed or removed event.
#[allow(clippy::too_many_arguments)]
async fn name_first_difference(
    store: &SharedStore,
    db: &ReadDb,
    tenant: &TenantId,
    size: u64,
    head_root: &Hash,
    from: u64,
    leaves: &[Hash],
    positions: &[u64],
) -> Result<Vec<HeadFinding>, TreeError> {
    let recorded = tree(db, tenant.as_str()).await?;
    if recorded.size < size {
        return Ok(Vec::new());
    }
    let recorded_root = with_nodes(db, tenant.as_str(), |node| root_at(size, node)).await;
    if recorded_root.ok().as_ref() != Some(head_root) {
        let mut finding = HeadFinding::new(
            "tree_rewritten",
            format!(
                "the audit tree's own records no longer match the head at tree size {size} \
                 either: they were rewritten too, so only the heads locate the change"
            ),
        );
        finding.tree_size = Some(size);
        return Ok(vec![finding]);
    }
    let mut index = from;
    while index < size {
        let to = (index + 50_000).min(size);
        let stored = stored_leaves(db, tenant.as_str(), index, to).await?;
        for (offset, recorded_leaf) in stored.iter().enumerate() {
            let i = index + offset as u64;
            if leaves.get(i as usize) == Some(recorded_leaf) {
                continue;
            }
            // The tree recorded this leaf for the event it named then.
            let named = db
                .fetch(
                    "SELECT stream, revision, position FROM crm_audit_leaves \
                     WHERE tenant = ? AND leaf_index = ?",
                    vec![tenant.as_str().into(), SqlValue::Int(i as i64)],
                    &[Col::Text, Col::Int, Col::Int],
                )
                .await?;
            let (stream, revision, position) = named
                .first()
                .map(|row| {
                    (
                        row[0].as_text().unwrap_or_default().to_owned(),
                        row[1].as_int().unwrap_or(0) as u64,
                        row[2].as_int().unwrap_or(0) as u64,
                    )
                })
                .unwrap_or_default();
            let now_there = match positions.get(i as usize) {
                Some(p) => store
                    .read_positions(tenant, &[*p])
                    .await?
                    .into_iter()
                    .next(),
                None => None,
            };
            let (kind, message) = match now_there {
                Some(event) if event.stream_id.as_str() == stream && event.revision == revision => {
                    (
                        "first_changed_event",
                        format!(
                            "leaf {i}: the event at revision {revision} of stream {stream} \
                         (position {position}) no longer hashes to the leaf the head covers: \
                         its stored bytes were changed"
                        ),
                    )
                }
                _ => (
                    "first_missing_event",
                    format!(
                        "leaf {i}: the event at revision {revision} of stream {stream} \
                         (position {position}), which the head covers, is no longer in the \
                         log where it was: it was removed, or others were inserted before it"
                    ),
                ),
            };
            let mut finding = HeadFinding::new(kind, message);
            finding.tree_size = Some(size);
            finding.leaf_index = Some(i);
            finding.stream = Some(stream);
            finding.revision = Some(revision);
            finding.position = Some(position);
            return Ok(vec![finding]);
        }
        index = to;
    }
    Ok(Vec::new())
}
