//! The audit tree's benchmark pieces (issue 16), for `crm-bench`: the tree worker run beside
//! appends (`W1+tree`, `W2+tree`), its own catch-up rate from position 0 (T1), and the time
//! to produce inclusion and consistency proofs (P1).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_core::envelope::{StreamId, TenantId};
use crm_core::store::{SharedStore, StoreUrl};
use crm_projections::ReadDb;
use crm_projections::audit::{self, TreeWorker};

/// A tree worker running on `store` with its tables in `url`'s database.
pub struct Running {
    pub db: ReadDb,
    pub worker: TreeWorker,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tree_bench::Running")
    }
}

/// Starts the worker (tables created first).
pub async fn start(store: &SharedStore, url: &StoreUrl) -> Result<Running> {
    let db = ReadDb::open(url).await?;
    audit::create(&db).await?;
    let worker = audit::spawn(store.clone(), db.clone());
    Ok(Running { db, worker })
}

/// Waits until the worker's trees cover `head`.
pub async fn wait_for(running: &Running, head: u64) -> Result<()> {
    let mut position = running.worker.position();
    let deadline = Instant::now() + Duration::from_secs(3_600);
    while *position.borrow_and_update() < head {
        if Instant::now() > deadline {
            bail!("the tree worker did not reach {head} within an hour");
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), position.changed()).await;
    }
    Ok(())
}

/// Latencies of one kind of proof, in milliseconds.
#[derive(Debug)]
pub struct Latencies {
    pub count: usize,
    pub total_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn latencies(mut samples: Vec<f64>) -> Latencies {
    samples.sort_by(f64::total_cmp);
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    Latencies {
        count: samples.len(),
        total_ms: samples.iter().sum(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

/// `count` inclusion proofs of random events (customer `n`'s stream `customer-<n>`, revision
/// 0–9) in the current tree of `tenant`, each one checked against the tree's root.
pub async fn inclusion_proofs(
    running: &Running,
    store: &SharedStore,
    tenant: &TenantId,
    customers: u64,
    count: usize,
    seed: u64,
) -> Result<Latencies> {
    let mut rng = seed.max(1);
    let mut next = move || {
        // xorshift64: deterministic, no dependency.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let tree = audit::tree(&running.db, tenant.as_str()).await?;
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let customer = next() % customers;
        let revision = next() % 10;
        let stream = StreamId::parse(&format!("customer-{customer}"))?;
        let started = Instant::now();
        let proof = audit::inclusion(&running.db, store, tenant, &stream, revision, None).await?;
        samples.push(started.elapsed().as_secs_f64() * 1_000.0);
        let leaf = hex32(&proof.leaf_hash)?;
        let path = proof
            .audit_path
            .iter()
            .map(|h| hex32(h))
            .collect::<Result<Vec<_>>>()?;
        if !crm_core::merkle::verify_inclusion(
            proof.leaf_index,
            tree.size,
            &leaf,
            &path,
            &tree.root,
        ) {
            bail!("the proof of {stream}@{revision} does not verify");
        }
    }
    Ok(latencies(samples))
}

/// `count` consistency proofs from random sizes to the current tree, each checked.
pub async fn consistency_proofs(
    running: &Running,
    tenant: &TenantId,
    count: usize,
    seed: u64,
) -> Result<Latencies> {
    let tree = audit::tree(&running.db, tenant.as_str()).await?;
    let mut rng = seed.max(1);
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let from = 1 + rng % tree.size;
        let started = Instant::now();
        let proof = audit::consistency(&running.db, tenant, from, None).await?;
        samples.push(started.elapsed().as_secs_f64() * 1_000.0);
        let nodes = proof
            .proof
            .iter()
            .map(|h| hex32(h))
            .collect::<Result<Vec<_>>>()?;
        let old = hex32(&proof.from_root)?;
        if !crm_core::merkle::verify_consistency(from, tree.size, &old, &tree.root, &nodes) {
            bail!("the consistency proof from {from} does not verify");
        }
    }
    Ok(latencies(samples))
}

fn hex32(text: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).context("a hash in a proof")?;
    Ok(out)
}
