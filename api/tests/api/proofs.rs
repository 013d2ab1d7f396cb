//! Issue 16 through the API: signed heads, inclusion and consistency proofs, checked here by
//! the RFC 9162 verification algorithms against the signed head (never by comparing with what
//! the server computed), for every event and several sizes; one tenant's tree holds only its
//! own events; roles; and bad parameters named.

use std::future::Future;

use base64::Engine;
use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_core::audit::{PublicKey, SignedHead};
use crm_core::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use serde_json::{Value, json};

use crate::fixture::{App, OTHER_TENANT, TENANT};
use crate::suite::Start;

macro_rules! app {
    ($start:expr) => {
        match $start(Limits::default()).await {
            Some(app) => app,
            None => return,
        }
    };
}

fn registered(id: &str) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": "CustomerRegistered",
           "data": {"customer_id": id, "kind": "person", "name": "Ada Lovelace",
                    "email": format!("{id}@example.com"), "segment": "smb", "owner": "u-7"}})
}

fn order(id: &str, n: u32) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": "OrderPlaced",
           "data": {"customer_id": id, "order_id": format!("o-{n}"), "amount": format!("{n}.50"),
                    "currency": "EUR"}})
}

fn hash(text: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).expect("a hex hash");
    out
}

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .expect("an array of hashes")
        .iter()
        .map(|h| hash(h.as_str().expect("hex")))
        .collect()
}

/// The signed head once the tree covers `position`, checked under the served public key.
async fn head(app: &App, tenant: &str, position: u64, key: &PublicKey) -> (SignedHead, Hash) {
    let answer = app
        .get_as(
            tenant,
            Role::Auditor,
            &format!("/v1/audit/head?min_position={position}"),
        )
        .await;
    let head: SignedHead = serde_json::from_value(answer.ok().clone()).expect("a signed head");
    let root = head
        .verify(key)
        .expect("the head verifies under the served key");
    (head, root)
}

/// Appends `count` events for `tenant` (a customer and orders), returns the last position
/// and the (stream, revision) of each.
async fn append(app: &App, tenant: &str, customer: &str, count: u32) -> (u64, Vec<(String, u64)>) {
    let mut events = vec![registered(customer)];
    events.extend((1..count).map(|n| order(customer, n)));
    let answer = app.ingest_as(tenant, Value::Array(events)).await;
    let body = answer.ok();
    let last = body["last_position"].as_u64().expect("last_position");
    let stream = format!("customer-{customer}");
    (
        last,
        (0..u64::from(count)).map(|r| (stream.clone(), r)).collect(),
    )
}

pub async fn heads_and_proofs_verify_for_every_event_and_size<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let served = app
        .get_as(TENANT, Role::Auditor, "/v1/audit/public-key")
        .await;
    let key = PublicKey::parse(served.ok()["public_key"].as_str().expect("public_key"))
        .expect("a public key");
    assert_eq!(
        PublicKey::parse(served.ok()["pem"].as_str().expect("pem")).expect("pem"),
        key
    );
    assert_eq!(served.ok()["key_id"], json!(key.key_id()));

    // Interleaved tenants: each tree counts only its own events.
    let (_, mut ours) = append(&app, TENANT, "c-1", 5).await;
    append(&app, OTHER_TENANT, "c-9", 7).await;
    let (at, more) = append(&app, TENANT, "c-2", 6).await;
    ours.extend(more);
    let (small, small_root) = head(&app, TENANT, at, &key).await;
    assert_eq!(small.tree_size, 11);
    let (theirs, _) = head(&app, OTHER_TENANT, at, &key).await;
    assert_eq!(
        theirs.tree_size, 7,
        "another tenant's tree holds only its events"
    );
    let (at, more) = append(&app, TENANT, "c-3", 9).await;
    ours.extend(more);
    let (large, large_root) = head(&app, TENANT, at, &key).await;
    assert_eq!(large.tree_size, 20);

    // Every event, in the larger tree and (those it holds) in the smaller one.
    for (leaf_index, (stream, revision)) in ours.iter().enumerate() {
        for (size, root) in [(large.tree_size, large_root), (small.tree_size, small_root)] {
            if leaf_index as u64 >= size {
                let answer = app
                    .get_as(
                        TENANT,
                        Role::Auditor,
                        &format!("/v1/audit/inclusion?stream={stream}&revision={revision}&tree_size={size}"),
                    )
                    .await;
                answer.problem(400, &["leaf", "tree_size="]);
                continue;
            }
            let answer = app
                .get_as(
                    TENANT,
                    Role::Auditor,
                    &format!(
                        "/v1/audit/inclusion?stream={stream}&revision={revision}&tree_size={size}"
                    ),
                )
                .await;
            let proof = answer.ok();
            assert_eq!(proof["leaf_index"], json!(leaf_index));
            assert_eq!(proof["event"]["stream_id"], json!(stream));
            assert_eq!(proof["event"]["revision"], json!(revision));
            // The personal fields are as at rest: sealed, never the plain name.
            assert!(!proof.to_string().contains("Ada Lovelace"), "{proof}");
            let data = base64::engine::general_purpose::STANDARD
                .decode(proof["leaf_data"].as_str().expect("leaf_data"))
                .expect("base64");
            let leaf = leaf_hash(&data);
            assert_eq!(proof["leaf_hash"], json!(hex::encode(leaf)));
            let path = hashes(&proof["audit_path"]);
            assert!(
                verify_inclusion(leaf_index as u64, size, &leaf, &path, &root),
                "event {leaf_index} in the tree of {size}"
            );
            let mut flipped = path.clone();
            if let Some(first) = flipped.first_mut() {
                first[0] ^= 1;
                assert!(!verify_inclusion(
                    leaf_index as u64,
                    size,
                    &leaf,
                    &flipped,
                    &root
                ));
            }
        }
    }

    // The larger tree extends the smaller one; and each size extends itself.
    let answer = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!(
                "/v1/audit/consistency?from={}&to={}",
                small.tree_size, large.tree_size
            ),
        )
        .await;
    let proof = answer.ok();
    assert_eq!(proof["from_root"], json!(small.root_hash));
    assert_eq!(proof["to_root"], json!(large.root_hash));
    let nodes = hashes(&proof["proof"]);
    assert!(verify_consistency(
        small.tree_size,
        large.tree_size,
        &small_root,
        &large_root,
        &nodes
    ));
    assert!(!verify_consistency(
        small.tree_size,
        large.tree_size,
        &large_root,
        &large_root,
        &nodes
    ));
    for from in 1..=large.tree_size {
        let answer = app
            .get_as(
                TENANT,
                Role::Auditor,
                &format!("/v1/audit/consistency?from={from}"),
            )
            .await;
        let proof = answer.ok();
        assert_eq!(proof["to"], json!(large.tree_size));
        assert!(
            verify_consistency(
                from,
                large.tree_size,
                &hash(proof["from_root"].as_str().expect("from_root")),
                &large_root,
                &hashes(&proof["proof"])
            ),
            "{from} → {}",
            large.tree_size
        );
    }

    // Another tenant cannot reach this tenant's events.
    let answer = app
        .get_as(
            OTHER_TENANT,
            Role::Auditor,
            "/v1/audit/inclusion?stream=customer-c-1&revision=0",
        )
        .await;
    answer.problem(404, &["customer-c-1", "revision 0"]);

    // Roles: auditors and admins; nobody else.
    for role in [Role::Ingest, Role::Analyst] {
        for path in [
            "/v1/audit/head",
            "/v1/audit/public-key",
            "/v1/audit/consistency?from=1",
        ] {
            app.get_as(TENANT, role, path).await.problem(403, &[]);
        }
    }
    app.get_as(TENANT, Role::Admin, "/v1/audit/head").await.ok();
}

pub async fn bad_proof_requests_name_the_parameter<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let (at, _) = append(&app, TENANT, "c-1", 3).await;
    // Once the tree covers the append, the head counts it.
    let answer = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!("/v1/audit/head?min_position={at}"),
        )
        .await;
    assert_eq!(answer.ok()["tree_size"], json!(3));
    let get = |path: &'static str| app.get_as(TENANT, Role::Auditor, path);
    get("/v1/audit/inclusion?stream=customer-c-1&revision=0&tree_size=9")
        .await
        .problem(400, &["tree_size=9", "3 events"]);
    get("/v1/audit/inclusion?stream=customer-c-1&revision=0&tree_size=0")
        .await
        .problem(400, &["tree_size"]);
    get("/v1/audit/inclusion?stream=customer-c-1&revision=7")
        .await
        .problem(404, &["revision 7"]);
    get("/v1/audit/inclusion?stream=not%20a%20stream&revision=0")
        .await
        .problem(400, &["stream"]);
    get("/v1/audit/inclusion?stream=customer-c-1")
        .await
        .problem(400, &["revision"]);
    get("/v1/audit/consistency?from=0")
        .await
        .problem(400, &["from"]);
    get("/v1/audit/consistency?from=3&to=2")
        .await
        .problem(400, &["from=3", "to=2"]);
    get("/v1/audit/consistency?from=1&to=4")
        .await
        .problem(400, &["to=4", "3 events"]);
    get("/v1/audit/head?min_position=99999")
        .await
        .problem(400, &["min_position"]);
}

/// Two processes on one store (each with its tree worker): one tree, every event once, the
/// same signed root from either.
pub async fn two_processes_build_one_tree<F: Future<Output = Option<App>>>(start: impl Start<F>) {
    let app = app!(start);
    let other = app.beside().await;
    let served = other
        .get_as(TENANT, Role::Auditor, "/v1/audit/public-key")
        .await;
    let key = PublicKey::parse(served.ok()["public_key"].as_str().expect("public_key"))
        .expect("a public key");
    let mut expected = 0;
    let mut at = 0;
    for round in 0..6u32 {
        let writer = if round % 2 == 0 { &app } else { &other };
        let (last, events) = append(writer, TENANT, &format!("c-{round}"), 3 + round).await;
        expected += events.len() as u64;
        at = last;
    }
    let (one, one_root) = head(&app, TENANT, at, &key).await;
    let (two, two_root) = head(&other, TENANT, at, &key).await;
    assert_eq!(one.tree_size, expected);
    assert_eq!((two.tree_size, two_root), (one.tree_size, one_root));
    // Every event is exactly one leaf: the last one's index is the count less one.
    let answer = app
        .get_as(
            TENANT,
            Role::Auditor,
            "/v1/audit/inclusion?stream=customer-c-5&revision=7",
        )
        .await;
    assert_eq!(answer.ok()["leaf_index"], json!(expected - 1));
    // /healthz (no key) shows where the tree is.
    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert!(
        health["audit_tree"]["position"].as_u64() >= Some(at),
        "{health}"
    );
    assert_eq!(health["audit_tree"]["lag"], json!(0), "{health}");
    drop(other);
}
