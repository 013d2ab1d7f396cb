//! Proofs from stored nodes: the same RFC 9162 trees, roots, audit paths and consistency
//! proofs as the functions over a slice of leaves, computed from the hashes of the tree's
//! *perfect* subtrees (`2^level` leaves starting at leaf `index * 2^level`), which a worker
//! stores as its tree grows ([`Frontier::push_nodes`]). A proof needs `O(log n)` of them, so
//! a proof at a million leaves reads a few dozen stored hashes, not a million.
//!
//! Two passes: [`needed`] lists the perfect subtrees an answer reads (fetch them in one
//! query), then the same function runs over what was fetched. A node missing from the fetch
//! is [`ProofError::MissingNode`], never a wrong proof.

use std::collections::{BTreeSet, HashMap};

use super::{Frontier, Hash, ProofError, empty_root, node_hash, split};

/// A perfect subtree: `2^level` leaves starting at leaf `index << level`.
pub type NodeId = (u32, u64);

/// The perfect subtrees whose hashes `compute` reads.
pub fn needed<T>(compute: impl FnOnce(&mut dyn FnMut(NodeId) -> Option<Hash>) -> T) -> Vec<NodeId> {
    let mut wanted = BTreeSet::new();
    let mut record = |node: NodeId| {
        wanted.insert(node);
        Some([0u8; 32])
    };
    let _ = compute(&mut record);
    wanted.into_iter().collect()
}

/// A lookup over fetched nodes, for the second pass.
pub fn lookup(nodes: &HashMap<NodeId, Hash>) -> impl FnMut(NodeId) -> Option<Hash> + '_ {
    |node| nodes.get(&node).copied()
}

/// MTH(D[start : start + len]).
fn range_root(
    start: u64,
    len: u64,
    node: &mut dyn FnMut(NodeId) -> Option<Hash>,
) -> Result<Hash, ProofError> {
    if len == 0 {
        return Ok(empty_root());
    }
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros();
        return node((level, start >> level)).ok_or(ProofError::MissingNode {
            level,
            index: start >> level,
        });
    }
    let k = if len.is_power_of_two() {
        len / 2
    } else {
        split(len as usize) as u64
    };
    let left = range_root(start, k, node)?;
    let right = range_root(start + k, len - k, node)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root_at(
    size: u64,
    node: &mut dyn FnMut(NodeId) -> Option<Hash>,
) -> Result<Hash, ProofError> {
    range_root(0, size, node)
}

/// PATH(index, D[size]).
pub fn inclusion_path(
    index: u64,
    size: u64,
    node: &mut dyn FnMut(NodeId) -> Option<Hash>,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::NoSuchLeaf { index, size });
    }
    let mut path = Vec::new();
    path_in(index, 0, size, node, &mut path)?;
    Ok(path)
}

fn path_in(
    m: u64,
    start: u64,
    n: u64,
    node: &mut dyn FnMut(NodeId) -> Option<Hash>,
    path: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if n <= 1 {
        return Ok(());
    }
    let k = split(n as usize) as u64;
    if m < k {
        path_in(m, start, k, node, path)?;
        path.push(range_root(start + k, n - k, node)?);
    } else {
        path_in(m - k, start + k, n - k, node, path)?;
        path.push(range_root(start, k, node)?);
    }
    Ok(())
}

/// PROOF(from, D[to]) (`0 < from <= to`; empty when they are the same tree).
pub fn consistency_path(
    from: u64,
    to: u64,
    node: &mut dyn FnMut(NodeId) -> Option<Hash>,
) -> Result<Vec<Hash>, ProofError> {
    if from == 0 || from > to {
        return Err(ProofError::NoSuchRange { from, to });
    }
    let mut proof = Vec::new();
    subproof_in(from, 0, to, true, node, &mut proof)?;
    Ok(proof)
}

fn subproof_in(
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    node: &mut dyn FnMut(NodeId) -> Option<Hash>,
    proof: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if m == n {
        if !whole {
            proof.push(range_root(start, n, node)?);
        }
        return Ok(());
    }
    let k = split(n as usize) as u64;
    if m <= k {
        subproof_in(m, start, k, whole, node, proof)?;
        proof.push(range_root(start + k, n - k, node)?);
    } else {
        subproof_in(m - k, start + k, n - k, false, node, proof)?;
        proof.push(range_root(start, k, node)?);
    }
    Ok(())
}

/// A perfect subtree's hash where only every `stride`-th level is stored (0, `stride`,
/// `2 × stride`, …): a stored level is read from `stored`, any other is the node hash of its
/// two halves, down to a stored level. A worker that stores one level in four writes about
/// 1.07 rows per leaf instead of 2, and a proof reads at most `2^(stride-1)` stored nodes for
/// each it needs.
pub fn sparse(
    stored: &mut dyn FnMut(NodeId) -> Option<Hash>,
    stride: u32,
    (level, index): NodeId,
) -> Option<Hash> {
    if stride <= 1 || level.is_multiple_of(stride) {
        return stored((level, index));
    }
    let left = sparse(stored, stride, (level - 1, index * 2))?;
    let right = sparse(stored, stride, (level - 1, index * 2 + 1))?;
    Some(node_hash(&left, &right))
}

/// The perfect subtrees that make up the tree of `size` leaves, largest first: the nodes a
/// [`Frontier`] of that size holds.
pub fn peaks_of(size: u64) -> Vec<NodeId> {
    let mut peaks = Vec::new();
    let mut start = 0u64;
    for level in (0..64u32).rev() {
        if size & (1u64 << level) != 0 {
            peaks.push((level, start >> level));
            start += 1u64 << level;
        }
    }
    peaks
}

impl Frontier {
    /// Adds a leaf by its hash and gives every perfect subtree it completes, the leaf itself
    /// first (level 0), then each larger one: what a worker stores to answer proofs later.
    pub fn push_nodes(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        let mut made = vec![((0u32, index), leaf)];
        let mut carry = leaf;
        let mut level = 0u32;
        let mut size = self.size;
        while size & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                break;
            };
            carry = node_hash(&left, &carry);
            size >>= 1;
            level += 1;
            made.push(((level, (index + 1) / (1u64 << level) - 1), carry));
        }
        self.peaks.push(carry);
        self.size += 1;
        made
    }
}

#[cfg(test)]
mod tests {
    use super::super::{consistency_proof, inclusion_proof, leaf_hash, root};
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64 * 7 + 1).to_be_bytes()))
            .collect()
    }

    /// Every perfect subtree of `leaves` as a worker would have stored it.
    fn stored(leaves: &[Hash]) -> HashMap<NodeId, Hash> {
        let mut frontier = Frontier::new();
        let mut nodes = HashMap::new();
        for leaf in leaves {
            nodes.extend(frontier.push_nodes(*leaf));
        }
        assert_eq!(frontier.root(), root(leaves));
        nodes
    }

    #[test]
    fn proofs_from_stored_nodes_equal_the_proofs_over_the_leaves_for_every_size_to_70() {
        let all = leaves(70);
        let nodes = stored(&all);
        for size in 1..=70usize {
            let prefix = &all[..size];
            let mut read = lookup(&nodes);
            assert_eq!(
                root_at(size as u64, &mut read),
                Ok(root(prefix)),
                "root {size}"
            );
            for index in 0..size {
                assert_eq!(
                    inclusion_path(index as u64, size as u64, &mut read),
                    inclusion_proof(index, prefix),
                    "inclusion of {index} at {size}"
                );
            }
            for from in 1..=size {
                assert_eq!(
                    consistency_path(from as u64, size as u64, &mut read),
                    consistency_proof(from, prefix),
                    "consistency {from} → {size}"
                );
            }
        }
    }

    #[test]
    fn the_first_pass_lists_exactly_the_nodes_the_second_reads() {
        let all = leaves(1000);
        let nodes = stored(&all);
        for (index, size) in [(0u64, 1000u64), (999, 1000), (513, 777), (5, 6)] {
            let wanted = needed(|node| inclusion_path(index, size, node));
            assert!(wanted.len() <= 2 * 64, "{} nodes", wanted.len());
            let fetched: HashMap<NodeId, Hash> = wanted.iter().map(|id| (*id, nodes[id])).collect();
            assert_eq!(
                inclusion_path(index, size, &mut lookup(&fetched)),
                inclusion_proof(index as usize, &all[..size as usize])
            );
        }
        let wanted = needed(|node| consistency_path(300, 1000, node));
        let mut fetched: HashMap<NodeId, Hash> = wanted.iter().map(|id| (*id, nodes[id])).collect();
        assert_eq!(
            consistency_path(300, 1000, &mut lookup(&fetched)),
            consistency_proof(300, &all)
        );
        // A node left out of the fetch is an error naming it, never a wrong proof.
        let first = wanted[0];
        fetched.remove(&first);
        assert_eq!(
            consistency_path(300, 1000, &mut lookup(&fetched)),
            Err(ProofError::MissingNode {
                level: first.0,
                index: first.1
            })
        );
    }

    #[test]
    fn proofs_from_every_fourth_level_equal_the_proofs_over_the_leaves() {
        let all = leaves(1100);
        let kept: HashMap<NodeId, Hash> = stored(&all)
            .into_iter()
            .filter(|((level, _), _)| level % 4 == 0)
            .collect();
        for size in (1..=1100usize).step_by(37).chain([1024, 1025, 1100]) {
            let prefix = &all[..size];
            let mut read = lookup(&kept);
            let mut node = |id: NodeId| sparse(&mut read, 4, id);
            assert_eq!(
                root_at(size as u64, &mut node),
                Ok(root(prefix)),
                "root {size}"
            );
            for index in (0..size).step_by(13).chain([size - 1]) {
                assert_eq!(
                    inclusion_path(index as u64, size as u64, &mut node),
                    inclusion_proof(index, prefix),
                    "inclusion of {index} at {size}"
                );
            }
            for from in (1..=size).step_by(29).chain([size]) {
                assert_eq!(
                    consistency_path(from as u64, size as u64, &mut node),
                    consistency_proof(from, prefix),
                    "consistency {from} → {size}"
                );
            }
        }
        // The first pass through `sparse` lists only stored levels.
        let wanted = needed(|node| inclusion_path(777, 1100, &mut |id| sparse(node, 4, id)));
        assert!(wanted.iter().all(|(level, _)| level % 4 == 0), "{wanted:?}");
        let fetched: HashMap<NodeId, Hash> = wanted.iter().map(|id| (*id, kept[id])).collect();
        let mut read = lookup(&fetched);
        assert_eq!(
            inclusion_path(777, 1100, &mut |id| sparse(&mut read, 4, id)),
            inclusion_proof(777, &all)
        );
    }

    #[test]
    fn peaks_are_the_frontiers_nodes() {
        let all = leaves(45);
        let nodes = stored(&all);
        let mut frontier = Frontier::new();
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(*leaf);
            let peaks: Vec<Hash> = peaks_of(i as u64 + 1).iter().map(|id| nodes[id]).collect();
            assert_eq!(frontier.peaks(), peaks.as_slice());
        }
        assert!(peaks_of(0).is_empty());
    }
}
