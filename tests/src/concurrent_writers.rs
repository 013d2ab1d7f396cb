//! Concurrent writers and a reader following them (issue 21's gap test): many tasks append at
//! once, in one process or several (`crm-concurrent-writer`), while a reader reads the log
//! from its checkpoint over and over. [`check`] then proves that positions are gap-free, that
//! the reader saw every event exactly once and in position order (it never moved past a
//! position that was committed later), and that every acknowledged append is stored where
//! its acknowledgement said.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use crm_core::envelope::{NewEvent, Position, StreamId, TenantId};
use crm_core::store::{ExpectedRevision, Scope, SharedStore, StoreError};
use serde_json::json;
use uuid::Uuid;

/// One acknowledged event: where the store said it put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub event_id: Uuid,
    pub stream: String,
    pub revision: u64,
    pub position: Position,
}

impl Ack {
    /// The line `crm-concurrent-writer` prints for it.
    pub fn line(&self) -> String {
        format!(
            "ack {} {} {} {}",
            self.event_id, self.stream, self.revision, self.position
        )
    }

    /// Parses [`Ack::line`].
    pub fn parse(line: &str) -> Result<Ack> {
        let mut parts = line.split(' ');
        ensure!(parts.next() == Some("ack"), "not an ack line: {line}");
        let mut next = || {
            parts
                .next()
                .with_context(|| format!("short ack line: {line}"))
        };
        Ok(Ack {
            event_id: next()?.parse()?,
            stream: next()?.to_owned(),
            revision: next()?.parse()?,
            position: next()?.parse()?,
        })
    }
}

fn event(prefix: &str, client: usize, n: usize) -> NewEvent {
    NewEvent::new(
        "InteractionLogged",
        &json!({
            "customer_id": format!("{prefix}-{client}"),
            "interaction_id": format!("{prefix}-{client}-{n}"),
            "channel": "web",
        }),
    )
}

/// `clients` tasks on `store`, each making `per_client` single-event appends: to a stream of
/// its own per append (`NoStream`), every fourth one to its client's own stream with the exact
/// revision it expects, and after each tenth a deliberately stale one (`NoStream` on its
/// client stream), which must be refused alone while the appends beside it are written.
/// Returns every acknowledged event.
pub async fn write(
    store: &SharedStore,
    tenant: &TenantId,
    prefix: &str,
    clients: usize,
    per_client: usize,
) -> Result<Vec<Ack>> {
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let (store, tenant, prefix) = (Arc::clone(store), tenant.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::with_capacity(per_client);
            let own = StreamId::parse(&format!("{prefix}-c{client}"))?;
            let mut own_revision: Option<u64> = None;
            for n in 0..per_client {
                let (stream, expected) = if n % 4 == 0 {
                    let expected = match own_revision {
                        None => ExpectedRevision::NoStream,
                        Some(r) => ExpectedRevision::Exact(r),
                    };
                    (own.clone(), expected)
                } else {
                    let stream = StreamId::parse(&format!("{prefix}-{client}-{n}"))?;
                    (stream, ExpectedRevision::NoStream)
                };
                let new = event(&prefix, client, n);
                let event_id = new.event_id;
                let outcome = store
                    .append(&tenant, &stream, expected, vec![new])
                    .await
                    .with_context(|| format!("client {client} append {n} to {stream}"))?;
                let written = outcome.events.first().context("an empty outcome")?;
                ensure!(
                    written.event_id == event_id && !written.duplicate,
                    "client {client} append {n}: {outcome:?}"
                );
                if stream == own {
                    own_revision = Some(written.revision);
                }
                acks.push(Ack {
                    event_id,
                    stream: stream.as_str().to_owned(),
                    revision: written.revision,
                    position: written.position,
                });
                if n % 10 == 9 && own_revision.is_some() {
                    let stale = store
                        .append(
                            &tenant,
                            &own,
                            ExpectedRevision::NoStream,
                            vec![event(&prefix, client, per_client + n)],
                        )
                        .await;
                    match stale {
                        Err(StoreError::WrongExpectedRevision { actual, .. })
                            if actual == own_revision => {}
                        other => bail!("client {client}: a stale append answered {other:?}"),
                    }
                }
            }
            Ok::<_, anyhow::Error>(acks)
        }));
    }
    let mut acks = Vec::with_capacity(clients * per_client);
    for task in tasks {
        acks.extend(task.await??);
    }
    Ok(acks)
}

/// A reader following the whole log from position 0, as a projection does: reads after its
/// checkpoint, moves the checkpoint to the last event it got, again and again, until
/// `stop` is set and a read comes back empty. Returns (position, event id) in the order read.
pub async fn follow(store: SharedStore, stop: Arc<AtomicBool>) -> Result<Vec<(Position, Uuid)>> {
    let mut seen = Vec::new();
    let mut checkpoint: Position = 0;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let events = store.read_all(&Scope::AllTenants, checkpoint, 500).await?;
        if events.is_empty() {
            if stopping {
                return Ok(seen);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for event in events {
            checkpoint = event.position;
            seen.push((event.position, event.event_id));
        }
    }
}

/// Checks what the writers acknowledged against what the reader saw and the log holds;
/// `expected` is the number of events the log must hold.
pub async fn check(
    store: &SharedStore,
    acks: &[Ack],
    seen: &[(Position, Uuid)],
    expected: usize,
) -> Result<()> {
    ensure!(
        acks.len() == expected,
        "{} appends acknowledged, {expected} made",
        acks.len()
    );
    // The reader saw 1, 2, 3, ... N: no position skipped (read past before it committed),
    // none twice.
    for (index, (position, _)) in seen.iter().enumerate() {
        ensure!(
            *position == index as Position + 1,
            "the reader's event #{index} is at position {position}: a position was skipped or \
             seen twice"
        );
    }
    ensure!(
        seen.len() == expected,
        "the reader saw {} events, the writers acknowledged {expected}",
        seen.len()
    );
    let at: HashMap<Position, Uuid> = seen.iter().copied().collect();
    for ack in acks {
        ensure!(
            at.get(&ack.position) == Some(&ack.event_id),
            "event {} was acknowledged at position {} but the reader saw {:?} there",
            ack.event_id,
            ack.position,
            at.get(&ack.position)
        );
    }
    // Every stream's revisions run 0, 1, 2, ... in position order.
    let mut streams: HashMap<&str, Vec<(Position, u64)>> = HashMap::new();
    for ack in acks {
        streams
            .entry(ack.stream.as_str())
            .or_default()
            .push((ack.position, ack.revision));
    }
    for (stream, mut events) in streams {
        events.sort_unstable();
        for (index, (_, revision)) in events.iter().enumerate() {
            ensure!(
                *revision == index as u64,
                "stream {stream}: revision {revision} at index {index}"
            );
        }
    }
    // The log itself agrees, and its chains verify.
    let head = store.head_position().await?;
    ensure!(
        head == expected as Position,
        "the log's head is {head}, expected {expected}"
    );
    let report = crm_core::store::verify(store.as_ref(), &Scope::AllTenants).await?;
    ensure!(report.is_intact(), "the log does not verify: {report:?}");
    Ok(())
}
