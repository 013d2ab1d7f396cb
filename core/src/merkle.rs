//! Merkle trees exactly as RFC 9162 §2.1 (Certificate Transparency 2.0) defines them, over
//! a tenant's events in log order: the tree hash, inclusion proofs (an event is leaf `m` of
//! the tree of size `n`) and consistency proofs (the tree of size `n` extends the one of size
//! `m`), with the verification algorithms of §2.1.3.2 and §2.1.4.2, and [`Frontier`], the
//! compact form a worker keeps to extend a tree one leaf at a time.
//!
//! - leaf hash: `SHA-256(0x00 ‖ leaf data)`; node hash: `SHA-256(0x01 ‖ left ‖ right)`;
//! - the tree of `n > 1` leaves splits at `k`, the largest power of two below `n`: the root is
//!   the node hash of the tree of the first `k` leaves and the tree of the other `n - k`; no
//!   node is ever duplicated; the empty tree's hash is `SHA-256()` of nothing.
//!
//! Pure: no I/O, no clock. The leaf data of an event is [`leaf_data`]: its stored bytes and
//! fields, length-prefixed, so a verifier recomputes every leaf from what is stored, never
//! from a stored hash.

use sha2::{Digest, Sha256};

use crate::envelope::RecordedEvent;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Domain separation of [`leaf_data`]: bump when its encoding changes.
const LEAF_DOMAIN: &[u8] = b"crm-merkle-leaf-v1";

/// The hash of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// What an event's leaf commits to: the stored event, field by field (tenant, stream,
/// revision, id, type, schema version, data and metadata as stored, business and recording
/// times), each variable-length field prefixed by its length, so no two different events
/// share leaf data. The global log position is left out: a tenant's tree tells nothing of
/// the other tenants' traffic.
pub fn leaf_data(event: &RecordedEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        LEAF_DOMAIN.len() + 160 + event.data.get().len() + event.metadata.get().len(),
    );
    out.extend_from_slice(LEAF_DOMAIN);
    put(&mut out, event.tenant.as_str().as_bytes());
    put(&mut out, event.stream_id.as_str().as_bytes());
    out.extend_from_slice(&event.revision.to_be_bytes());
    out.extend_from_slice(event.event_id.as_bytes());
    put(&mut out, event.event_type.as_bytes());
    out.extend_from_slice(&event.schema_version.to_be_bytes());
    put(&mut out, event.data.get().as_bytes());
    put(&mut out, event.metadata.get().as_bytes());
    out.extend_from_slice(&event.occurred_at.timestamp_micros().to_be_bytes());
    out.extend_from_slice(&event.recorded_at.timestamp_micros().to_be_bytes());
    out
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]): the root of the tree whose leaves have the hashes `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Why a proof cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf {index} is not in a tree of {size} leaves")]
    NoSuchLeaf { index: u64, size: u64 },
    /// A consistency proof from a size larger than the target, or from the empty tree.
    #[error("no consistency proof from a tree of {from} leaves to one of {to}")]
    NoSuchRange { from: u64, to: u64 },
    /// A stored subtree hash a proof needs was not found (`nodes`).
    #[error("the tree's node at level {level}, index {index} is not stored")]
    MissingNode { level: u32, index: u64 },
}

/// PATH(m, D[n]): the audit path of leaf `index` in the tree of `leaves`, from the leaf's
/// sibling up to the root's child.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    if index >= leaves.len() {
        return Err(ProofError::NoSuchLeaf {
            index: index as u64,
            size: leaves.len() as u64,
        });
    }
    let mut path = Vec::new();
    path_into(index, leaves, &mut path);
    Ok(path)
}

fn path_into(m: usize, leaves: &[Hash], path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_into(m, &leaves[..k], path);
        path.push(root(&leaves[k..]));
    } else {
        path_into(m - k, &leaves[k..], path);
        path.push(root(&leaves[..k]));
    }
}

/// PROOF(m, D[n]): the consistency proof from the tree of the first `from` leaves to the tree
/// of all `leaves` (`0 < from <= n`; empty when they are the same tree).
pub fn consistency_proof(from: usize, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    if from == 0 || from > leaves.len() {
        return Err(ProofError::NoSuchRange {
            from: from as u64,
            to: leaves.len() as u64,
        });
    }
    let mut proof = Vec::new();
    subproof(from, leaves, true, &mut proof);
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            proof.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, proof);
        proof.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, proof);
        proof.push(root(&leaves[..k]));
    }
}

/// RFC 9162 §2.1.3.2: whether `proof` shows a leaf with hash `leaf` at `index` in the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: whether `proof` shows that the tree of `size2` leaves with root `root2`
/// extends the tree of `size1` leaves with root `root1`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> bool {
    if size1 == 0 || size1 > size2 {
        return false;
    }
    if size1 == size2 {
        return proof.is_empty() && root1 == root2;
    }
    if proof.is_empty() {
        return false;
    }
    // When size1 is an exact power of two, the old root is the proof's implicit first node.
    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        nodes.push(*root1);
    }
    nodes.extend_from_slice(proof);
    let Some((first, rest)) = nodes.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (size1 - 1, size2 - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    f_r == *root1 && s_r == *root2 && s_n == 0
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first (one
/// per set bit of the size). Enough to add a leaf and to give the root in `O(log n)`, so a
/// worker keeps only this between batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Perfect-subtree roots, largest (leftmost) first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// A frontier as stored: `size` leaves and one peak per set bit of `size`, largest
    /// first; `None` when they do not fit together.
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Option<Frontier> {
        (peaks.len() == size.count_ones() as usize).then_some(Frontier { size, peaks })
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The peaks, largest first (what to store).
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Adds a leaf by its hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        // Each trailing one bit of the old size is a peak of the new leaf's height: merge.
        let mut size = self.size;
        while size & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                break;
            };
            carry = node_hash(&left, &carry);
            size >>= 1;
        }
        self.peaks.push(carry);
        self.size += 1;
    }

    /// MTH of the tree so far: the peaks folded from the smallest (rightmost) up.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

pub mod nodes;

#[cfg(test)]
mod tests;
