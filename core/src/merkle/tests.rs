use super::*;

fn hex32(text: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).expect("hex");
    out
}

/// The leaves of RFC 6962's reference tests (Certificate Transparency's `merkle_tree_test`).
fn reference_leaves() -> Vec<Hash> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|data| leaf_hash(&hex::decode(data).expect("hex")))
    .collect()
}

/// Leaves of a tree of any size, each different.
fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
        .collect()
}

#[test]
fn the_tree_hash_is_rfc_6962s_on_its_reference_vectors() {
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let leaves = reference_leaves();
    for (n, expected) in roots.iter().enumerate() {
        assert_eq!(hex::encode(root(&leaves[..n])), *expected, "size {n}");
    }
}

#[test]
fn proofs_are_rfc_6962s_on_its_reference_vectors() {
    let leaves = reference_leaves();
    let path: Vec<String> = inclusion_proof(0, &leaves)
        .expect("path")
        .iter()
        .map(hex::encode)
        .collect();
    assert_eq!(
        path,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ]
    );
    let proof: Vec<String> = consistency_proof(3, &leaves[..7])
        .expect("proof")
        .iter()
        .map(hex::encode)
        .collect();
    assert_eq!(
        proof,
        [
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e",
        ]
    );
    let root8 = hex32("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    let path = inclusion_proof(0, &leaves).expect("path");
    assert!(verify_inclusion(0, 8, &leaves[0], &path, &root8));
}

#[test]
fn every_inclusion_proof_verifies_and_no_altered_one_does() {
    for n in 1..=70 {
        let leaves = leaves(n);
        let top = root(&leaves);
        for m in 0..n {
            let proof = inclusion_proof(m, &leaves).expect("proof");
            let (index, size) = (m as u64, n as u64);
            assert!(
                verify_inclusion(index, size, &leaves[m], &proof, &top),
                "{m} of {n}"
            );
            // Another leaf, another index, another size, a changed or shortened path, a
            // changed root: all refused.
            let other = leaf_hash(b"not in the tree");
            assert!(!verify_inclusion(index, size, &other, &proof, &top));
            if n > 1 {
                assert!(!verify_inclusion(
                    (index + 1) % size,
                    size,
                    &leaves[m],
                    &proof,
                    &top
                ));
                assert!(!verify_inclusion(
                    index,
                    size,
                    &leaves[m],
                    &proof[1..],
                    &top
                ));
                let mut changed = proof.clone();
                changed[0][0] ^= 1;
                assert!(!verify_inclusion(index, size, &leaves[m], &changed, &top));
            }
            assert!(!verify_inclusion(index, size, &leaves[m], &proof, &other));
            assert!(!verify_inclusion(size, size, &leaves[m], &proof, &top));
        }
        assert_eq!(
            inclusion_proof(n, &leaves),
            Err(ProofError::NoSuchLeaf {
                index: n as u64,
                size: n as u64
            })
        );
    }
}

#[test]
fn every_consistency_proof_verifies_and_no_altered_one_does() {
    for n in 1..=70 {
        let all = leaves(n);
        let new_root = root(&all);
        for m in 1..=n {
            let old_root = root(&all[..m]);
            let proof = consistency_proof(m, &all).expect("proof");
            let (from, to) = (m as u64, n as u64);
            assert!(
                verify_consistency(from, to, &old_root, &new_root, &proof),
                "{m} to {n}"
            );
            assert!(!verify_consistency(from, to, &new_root, &old_root, &proof) || m == n);
            if !proof.is_empty() {
                let mut changed = proof.clone();
                let last = changed.len() - 1;
                changed[last][31] ^= 1;
                assert!(!verify_consistency(
                    from, to, &old_root, &new_root, &changed
                ));
                assert!(!verify_consistency(
                    from,
                    to,
                    &old_root,
                    &new_root,
                    &proof[..last]
                ));
            }
            // A tree whose first m leaves differ is not an extension.
            let mut forged = all.clone();
            forged[m - 1] = leaf_hash(b"forged");
            let forged_root = root(&forged[..m]);
            assert!(!verify_consistency(
                from,
                to,
                &forged_root,
                &new_root,
                &proof
            ));
        }
        assert!(consistency_proof(0, &all).is_err());
        assert!(consistency_proof(n + 1, &all).is_err());
    }
}

#[test]
fn the_frontier_gives_the_tree_hash_at_every_size_and_round_trips() {
    let all = leaves(300);
    let mut frontier = Frontier::new();
    assert_eq!(frontier.root(), empty_root());
    for (i, leaf) in all.iter().enumerate() {
        frontier.push(*leaf);
        assert_eq!(frontier.size(), i as u64 + 1);
        assert_eq!(frontier.root(), root(&all[..=i]), "size {}", i + 1);
        let stored = Frontier::from_parts(frontier.size(), frontier.peaks().to_vec());
        assert_eq!(stored.as_ref(), Some(&frontier));
    }
    assert!(Frontier::from_parts(3, vec![[0; 32]]).is_none());
}

#[test]
fn leaf_data_changes_with_every_stored_field() {
    use crate::envelope::{RecordedEvent, StreamId, TenantId};
    let event =
        |tenant: &str, stream: &str, revision: u64, data: &str, metadata: &str| RecordedEvent {
            tenant: TenantId::parse(tenant).expect("tenant"),
            stream_id: StreamId::parse(stream).expect("stream"),
            revision,
            position: 7,
            event_id: uuid::Uuid::from_u128(1),
            event_type: "OrderPlaced".into(),
            schema_version: 1,
            data: serde_json::value::RawValue::from_string(data.into()).expect("raw"),
            metadata: serde_json::value::RawValue::from_string(metadata.into()).expect("raw"),
            occurred_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            recorded_at: chrono::DateTime::from_timestamp(1_700_000_001, 0).expect("time"),
            hash: [0; 32],
        };
    let base = event("acme", "customer-c-1", 0, r#"{"a":1}"#, "{}");
    let same = leaf_data(&base);
    let mut moved = base.clone();
    moved.position = 8;
    assert_eq!(
        leaf_data(&moved),
        same,
        "the global position is not in the leaf"
    );
    let mut rehashed = base.clone();
    rehashed.hash = [1; 32];
    assert_eq!(
        leaf_data(&rehashed),
        same,
        "a stored hash column is not trusted"
    );
    let mut kinds = base.clone();
    kinds.event_type = "OrderRefunded".into();
    let mut versions = base.clone();
    versions.schema_version = 2;
    let mut ids = base.clone();
    ids.event_id = uuid::Uuid::from_u128(2);
    let mut occurred = base.clone();
    occurred.occurred_at = base.recorded_at;
    let mut recorded = base.clone();
    recorded.recorded_at = base.occurred_at;
    for other in [
        event("acme2", "customer-c-1", 0, r#"{"a":1}"#, "{}"),
        event("acme", "customer-c-2", 0, r#"{"a":1}"#, "{}"),
        event("acme", "customer-c-1", 1, r#"{"a":1}"#, "{}"),
        event("acme", "customer-c-1", 0, r#"{"a":2}"#, "{}"),
        event("acme", "customer-c-1", 0, r#"{"a":1}"#, r#"{"actor":"x"}"#),
        kinds,
        versions,
        ids,
        occurred,
        recorded,
    ] {
        assert_ne!(leaf_data(&other), same, "{other:?}");
    }
    // Length prefixes: moving a byte from one field to the next changes the leaf.
    let a = event("acme", "customer-c-1", 0, r#"{"a":1}"#, "{}");
    let b = event("acmec", "ustomer-c-1", 0, r#"{"a":1}"#, "{}");
    assert_ne!(leaf_data(&a), leaf_data(&b));
}
