//! `crm-replay migrate-encrypt --from OLD --to NEW [--batch N]`: copies a store written
//! before personal fields were encrypted at rest (plain text in an append-only log, which
//! `crm-api serve` refuses) into a new store whose personal fields are sealed.
//!
//! 1. OLD is opened as stored (no key) and refused if it already has a key ring. Its head
//!    position is read and its hash chains verified; the result (intact or the first failure,
//!    events and streams checked, the head, the time) is recorded in NEW as the store fact
//!    `migrated_from`, with the hash of OLD's first event to recognise it by.
//! 2. NEW must be empty; it is opened with its master key as `serve` would open it
//!    (`CRM_MASTER_KEY`, `--master-key-file`, else for SQLite `master.key` beside it, created
//!    with a new key when missing).
//! 3. Every event up to OLD's head is appended, in position order, through the sealing store:
//!    consecutive events of one tenant in batches (`append_batch`, one transaction each) with
//!    the same event ids, types, schema versions, data, metadata and business times. NEW's
//!    chains are its own (recording times and hashes are new), and positions come out the
//!    same as OLD's. `CustomerErased` and `LeadErased` destroy the subjects' keys as they are
//!    copied, so whoever was erased stays erased; a personal field that already reads
//!    "[erased]" is copied as is, and a personal field of a subject erased earlier in the log
//!    is written as "[erased]" (what it reads in NEW anyway: its key is gone).
//! 4. The tenants' settings (SLA targets, retention rules) are copied; API keys are not (the
//!    first `serve` on NEW creates an admin key; create the others with `crm-api keys`).
//!
//! Run again after a kill it continues: a NEW holding a `migrated_from` fact of the same OLD
//! resumes after its head (events already there are duplicates by id). Exit codes: 0 migrated,
//! 1 migrated but OLD's verification failed (recorded in NEW), 2 refused or failed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use crm_core::catalog::personal_fields;
use crm_core::envelope::{NewEvent, Position, RecordedEvent, StreamId, TenantId, canonical_json};
use crm_core::privacy::{
    ERASED, KeySource, MASTER_KEY_ENV, PrivateStore, open_private_on, subject_of_data,
};
use crm_core::store::{
    Direction, EventStore, MAX_EVENTS_PER_APPEND, Scope, SharedStore, StoreError, StoreUrl,
    StreamStart, open_store, verify,
};
use crm_projections::ReadDb;
use crm_projections::db::{Col, SqliteOptions};
use serde::Serialize;
use uuid::Uuid;

use crate::output::outln;
use crate::progress::{Progress, human};

/// The store fact recording where a store was migrated from.
pub const FACT: &str = "migrated_from";
/// Events per `read_all` of OLD.
const READ_BATCH: usize = 2_000;

/// What the command was asked.
#[derive(Debug)]
pub struct Args {
    pub from: String,
    pub to: String,
    pub batch: usize,
    pub master_key_file: Option<PathBuf>,
    pub json: bool,
}

/// OLD's verification, as recorded in NEW.
#[derive(Debug, Clone, Serialize)]
struct Verification {
    intact: bool,
    /// The first broken place found (`null` when intact).
    first_failure: Option<crm_core::store::Finding>,
    events_checked: u64,
    streams_checked: u64,
    /// OLD's head position when it was read: what is copied.
    head_position: Position,
    verified_at: DateTime<Utc>,
}

/// The `migrated_from` fact.
#[derive(Debug, Clone, Serialize)]
struct MigratedFrom {
    /// OLD's URL (password removed).
    source: String,
    /// The hash of OLD's first event (hex), which recognises OLD on a rerun.
    source_first_event_hash: Option<String>,
    verification: Verification,
    /// `copying`, then `complete`.
    status: &'static str,
    started_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    /// Events of OLD present in NEW when the fact was written.
    events_copied: u64,
}

/// The summary line.
#[derive(Debug, Default, Serialize)]
struct Summary {
    status: &'static str,
    source: String,
    target: String,
    /// Events of OLD accounted for (new + duplicates).
    events: u64,
    new: u64,
    duplicates: u64,
    /// Erasure events copied (their subjects' keys destroyed).
    erasures: u64,
    /// Personal fields of subjects erased earlier in the log, written as "[erased]".
    masked_fields: u64,
    settings_copied: u64,
    source_intact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_first_failure: Option<crm_core::store::Finding>,
    source_head_position: Position,
    target_head_position: Position,
    resumed: bool,
    seconds: f64,
    events_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_key_file: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    if args.batch == 0 || args.batch > MAX_EVENTS_PER_APPEND {
        bail!(
            "--batch {}: give 1 to {MAX_EVENTS_PER_APPEND} events per transaction",
            args.batch
        );
    }
    let from = StoreUrl::parse(&args.from).context("--from")?;
    let to = StoreUrl::parse(&args.to).context("--to")?;
    if same_store(&from, &to) {
        bail!("--from and --to name the same store: migrate-encrypt copies into a new one");
    }
    if let StoreUrl::Sqlite { path, .. } = &from
        && !path.exists()
    {
        bail!("no store at {} (--from)", path.display());
    }

    // OLD, as stored: refuse one that is already encrypted.
    let old = open_store(&from)
        .await
        .with_context(|| format!("cannot open the old store at {}", from.redacted()))?;
    if let Some(table) = old.key_table()
        && let Some(keyring) = table.keyring().await?
    {
        bail!(
            "the store at {} already has a key ring (crm_keyring, master key fingerprint {}): \
             its personal fields are encrypted at rest; serve it as it is",
            from.redacted(),
            keyring.fingerprint
        );
    }
    let old_head = old.head_position().await?;
    let first_hash = first_event_hash(&old).await?;

    // NEW: empty, or a migration of this same OLD that was interrupted.
    let new_raw = open_store(&to)
        .await
        .with_context(|| format!("cannot open the new store at {}", to.redacted()))?;
    let table = new_raw
        .key_table()
        .context("the new store keeps no key table, so it cannot hold personal data")?;
    let new_head = new_raw.head_position().await?;
    let resumed = match table.fact(FACT).await? {
        Some(fact) => {
            let recorded: serde_json::Value = serde_json::from_str(&fact)
                .with_context(|| format!("the new store's {FACT} fact is damaged"))?;
            let source_hash = recorded["source_first_event_hash"].as_str();
            if source_hash != first_hash.as_deref() {
                bail!(
                    "the store at {} was migrated from another store ({}): give a new, empty \
                     store as --to",
                    to.redacted(),
                    recorded["source"].as_str().unwrap_or("unknown")
                );
            }
            true
        }
        None if new_head > 0 => bail!(
            "the store at {} is not empty ({new_head} events): migrate-encrypt copies into a \
             new, empty store",
            to.redacted()
        ),
        None => false,
    };

    let started_at = Utc::now();
    let report = verify(old.as_ref(), &Scope::AllTenants)
        .await
        .context("cannot verify the old store")?;
    let verification = Verification {
        intact: report.is_intact(),
        first_failure: report.first_failure.clone(),
        events_checked: report.events_checked,
        streams_checked: report.streams_checked,
        head_position: old_head,
        verified_at: Utc::now(),
    };
    if let Some(failure) = &report.first_failure {
        eprintln!(
            "crm-replay: warning: the old store does not verify: {failure}; the copy goes on and \
             the failure is recorded in the new store"
        );
    }

    let source = KeySource {
        value: std::env::var(MASTER_KEY_ENV).ok(),
        file: args.master_key_file.clone(),
    };
    let opened = open_private_on(new_raw.clone(), &to, &source, true)
        .await
        .with_context(|| format!("cannot open the new store at {}", to.redacted()))?;
    if let Some(path) = &opened.created_key_file {
        eprintln!(
            "crm-replay: a new master key was written to {} (mode 0600); back it up apart \
             from the store: without it the personal data is lost",
            path.display()
        );
    }
    let private = opened.store;

    let mut fact = MigratedFrom {
        source: from.redacted(),
        source_first_event_hash: first_hash,
        verification,
        status: "copying",
        started_at,
        completed_at: None,
        events_copied: new_head,
    };
    table
        .record_fact(FACT, &serde_json::to_string(&fact)?)
        .await?;

    let mut summary = Summary {
        status: "migrated",
        source: from.redacted(),
        target: to.redacted(),
        source_intact: report.is_intact(),
        source_first_failure: report.first_failure,
        source_head_position: old_head,
        resumed,
        created_key_file: opened.created_key_file,
        ..Summary::default()
    };
    let start = if resumed {
        resume_point(&old, &new_raw, new_head).await?
    } else {
        0
    };
    summary.duplicates = start;
    let mut progress = Progress::new("migrate-encrypt", Some(old_head));
    progress.set(start);
    let mut after = start;
    while after < old_head {
        let events = old
            .read_all(&Scope::AllTenants, after, READ_BATCH)
            .await
            .with_context(|| format!("cannot read the old store after position {after}"))?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        let events: Vec<RecordedEvent> = events
            .into_iter()
            .filter(|e| e.position <= old_head)
            .collect();
        for run in tenant_runs(events) {
            for chunk in run.chunks(args.batch) {
                copy(&private, &old, chunk, resumed, &mut summary).await?;
            }
        }
        after = last.min(old_head);
        progress.set(after);
    }
    progress.finish();
    if summary.erasures > 0 {
        crm_core::privacy::erase::scrub_keys(&private).await?;
    }
    summary.settings_copied = copy_settings(&from, &to).await?;
    summary.events = summary.new + summary.duplicates;
    summary.target_head_position = new_raw.head_position().await?;
    summary.seconds = progress.elapsed().as_secs_f64();
    summary.events_per_second = if summary.seconds > 0.0 {
        summary.events.saturating_sub(start) as f64 / summary.seconds
    } else {
        0.0
    };

    fact.status = "complete";
    fact.completed_at = Some(Utc::now());
    fact.events_copied = summary.events;
    table
        .record_fact(FACT, &serde_json::to_string(&fact)?)
        .await?;
    report_summary(&summary, args.json)?;
    Ok(if summary.source_intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// True when the two URLs plainly name one store.
fn same_store(a: &StoreUrl, b: &StoreUrl) -> bool {
    match (a, b) {
        (StoreUrl::Sqlite { path: a, .. }, StoreUrl::Sqlite { path: b, .. }) => {
            let canonical = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            canonical(a) == canonical(b)
        }
        (StoreUrl::Postgres { url: a }, StoreUrl::Postgres { url: b }) => a == b,
        _ => false,
    }
}

/// The hash of the store's first event (hex), if it has one.
async fn first_event_hash(store: &SharedStore) -> Result<Option<String>> {
    let first = store.read_all(&Scope::AllTenants, 0, 1).await?;
    Ok(first.first().map(|e| hex::encode(e.hash)))
}

/// Where an interrupted copy continues: after NEW's head when the event there is OLD's
/// event at the same position (the copy keeps positions), else from the start (what is
/// stored then shows up as duplicates).
async fn resume_point(old: &SharedStore, new: &SharedStore, new_head: Position) -> Result<u64> {
    if new_head == 0 {
        return Ok(0);
    }
    let theirs = old.read_all(&Scope::AllTenants, new_head - 1, 1).await?;
    let ours = new.read_all(&Scope::AllTenants, new_head - 1, 1).await?;
    let same = match (theirs.first(), ours.first()) {
        (Some(a), Some(b)) => {
            a.position == b.position
                && a.tenant == b.tenant
                && a.stream_id == b.stream_id
                && a.event_id == b.event_id
        }
        _ => false,
    };
    Ok(if same { new_head } else { 0 })
}

/// Splits events (in position order) into runs of one tenant.
fn tenant_runs(events: Vec<RecordedEvent>) -> Vec<Vec<RecordedEvent>> {
    let mut runs: Vec<Vec<RecordedEvent>> = Vec::new();
    for event in events {
        match runs.last_mut() {
            Some(run) if run.first().is_some_and(|e| e.tenant == event.tenant) => run.push(event),
            _ => runs.push(vec![event]),
        }
    }
    runs
}

/// The event as appended to NEW: the same id, type, schema version, data, metadata and
/// business time, and (landing at the same position) the same recording time, so views as
/// they were known at a past time read the same on the new store.
fn to_new(event: &RecordedEvent) -> (StreamId, NewEvent) {
    (
        event.stream_id.clone(),
        NewEvent {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data: event.data.clone(),
            metadata: event.metadata.clone(),
            occurred_at: Some(event.occurred_at),
            restore: Some(crm_core::envelope::Restore {
                position: event.position,
                recorded_at: event.recorded_at,
            }),
        },
    )
}

/// Appends one tenant's chunk of events through the sealing store.
async fn copy(
    private: &PrivateStore,
    old: &SharedStore,
    chunk: &[RecordedEvent],
    resumed: bool,
    summary: &mut Summary,
) -> Result<()> {
    let Some(first) = chunk.first() else {
        return Ok(());
    };
    let tenant = first.tenant.clone();
    let range = format!(
        "positions {}-{} (tenant {tenant})",
        first.position,
        chunk.last().map_or(first.position, |e| e.position)
    );
    let mut batch: Vec<(StreamId, NewEvent)> = chunk.iter().map(to_new).collect();
    if resumed {
        // Leave out what is stored already: no sealing work, and no refusal for an event of
        // a subject erased later in the log.
        let pairs: Vec<(StreamId, Uuid)> =
            batch.iter().map(|(s, e)| (s.clone(), e.event_id)).collect();
        let stored: HashSet<(StreamId, Uuid)> = private
            .find_events(&tenant, &pairs)
            .await?
            .into_iter()
            .map(|found| (found.stream_id, found.event_id))
            .collect();
        let before = batch.len();
        batch.retain(|(s, e)| !stored.contains(&(s.clone(), e.event_id)));
        summary.duplicates += (before - batch.len()) as u64;
        if batch.is_empty() {
            return Ok(());
        }
    }
    let mut masked: HashSet<String> = HashSet::new();
    loop {
        match private
            .append_batch(&tenant, Vec::new(), batch.clone())
            .await
        {
            Ok(outcome) => {
                for (appended, (_, event)) in outcome.events.iter().zip(&batch) {
                    if appended.duplicate {
                        summary.duplicates += 1;
                    } else {
                        summary.new += 1;
                        if matches!(event.event_type.as_str(), "CustomerErased" | "LeadErased") {
                            summary.erasures += 1;
                        }
                    }
                }
                return Ok(());
            }
            Err(StoreError::SubjectErased { subject }) if masked.insert(subject.clone()) => {
                let count = mask(old, &tenant, &mut batch, &subject).await?;
                if count == 0 {
                    bail!(
                        "cannot copy {range}: {subject} is erased, and no event of the batch \
                         carries its personal fields"
                    );
                }
                summary.masked_fields += count;
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!("cannot copy {range}")));
            }
        }
    }
}

/// Writes "[erased]" into the personal fields of the batch's events of `subject` (erased
/// earlier in the log); returns how many fields changed.
async fn mask(
    old: &SharedStore,
    tenant: &TenantId,
    batch: &mut [(StreamId, NewEvent)],
    subject: &str,
) -> Result<u64> {
    let mut count = 0;
    for (stream, event) in batch.iter_mut() {
        let personal = personal_fields(&event.event_type);
        if personal.is_empty() {
            continue;
        }
        let of = match subject_of_data(stream, event.data.get()) {
            Some(of) => Some(of),
            None => opening_subject(old, tenant, stream).await?,
        };
        if of.as_deref() != Some(subject) {
            continue;
        }
        let mut data: serde_json::Value = serde_json::from_str(event.data.get())
            .with_context(|| format!("event {} has invalid data", event.event_id))?;
        let Some(members) = data.as_object_mut() else {
            continue;
        };
        for field in personal {
            if let Some(value) = members.get_mut(*field)
                && !value.is_null()
                && value.as_str() != Some(ERASED)
            {
                *value = serde_json::Value::String(ERASED.into());
                count += 1;
            }
        }
        event.data = canonical_json(&data);
    }
    Ok(count)
}

/// The subject named by a stream's opening event in OLD.
async fn opening_subject(
    old: &SharedStore,
    tenant: &TenantId,
    stream: &StreamId,
) -> Result<Option<String>> {
    let first = old
        .read_stream(
            tenant,
            stream,
            Direction::Forwards,
            StreamStart::Boundary,
            1,
        )
        .await?;
    Ok(first
        .first()
        .and_then(|event| subject_of_data(stream, event.data.get())))
}

/// Copies the tenants' settings (SLA targets, retention rules and reports) from OLD's read
/// models to NEW's; returns how many.
async fn copy_settings(from: &StoreUrl, to: &StoreUrl) -> Result<u64> {
    // A SQLite OLD is only read (a store that never served has no settings table).
    let old = match from {
        StoreUrl::Sqlite { path, .. } => ReadDb::open_sqlite(
            path,
            SqliteOptions {
                read_only: true,
                create_if_missing: false,
                max_connections: 1,
                ..SqliteOptions::default()
            },
        )
        .await
        .context("cannot open the old store's read models")?,
        StoreUrl::Postgres { .. } => ReadDb::open(from)
            .await
            .context("cannot open the old store's read models")?,
    };
    if let StoreUrl::Sqlite { .. } = from {
        let tables = old
            .fetch(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                 AND name = 'crm_tenant_settings'",
                Vec::new(),
                &[Col::Int],
            )
            .await?;
        if tables.first().and_then(|row| row[0].as_int()) != Some(1) {
            old.close().await;
            return Ok(0);
        }
    }
    let rows = old
        .fetch(
            "SELECT tenant, setting, value FROM crm_tenant_settings ORDER BY tenant, setting",
            Vec::new(),
            &[Col::Text, Col::Text, Col::Text],
        )
        .await
        .context("cannot read the old store's tenant settings")?;
    old.close().await;
    if rows.is_empty() {
        return Ok(0);
    }
    let new = ReadDb::open(to)
        .await
        .context("cannot open the new store's read models")?;
    let mut copied = 0;
    for row in &rows {
        let (Some(tenant), Some(setting), Some(value)) =
            (row[0].as_text(), row[1].as_text(), row[2].as_text())
        else {
            continue;
        };
        crm_projections::bookkeeping::set_tenant_setting(&new, tenant, setting, value).await?;
        copied += 1;
    }
    new.close().await;
    Ok(copied)
}

fn report_summary(summary: &Summary, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string(summary)?);
        return Ok(());
    }
    let verified = match &summary.source_first_failure {
        None => "it verified intact".to_owned(),
        Some(failure) => format!("it did NOT verify ({failure})"),
    };
    eprintln!(
        "migrated {} events ({} new, {} duplicates, {} erasures) from {} to {} in {}, {:.0} \
         events/s; {verified}, recorded in the new store as the fact `{FACT}`; {} tenant \
         settings copied (API keys are not: the first serve creates an admin key)",
        summary.events,
        summary.new,
        summary.duplicates,
        summary.erasures,
        summary.source,
        summary.target,
        human(Duration::from_secs_f64(summary.seconds)),
        summary.events_per_second,
        summary.settings_copied,
    );
    if summary.masked_fields > 0 {
        eprintln!(
            "{} personal fields of subjects erased earlier in the log were written as \
             \"[erased]\"",
            summary.masked_fields
        );
    }
    Ok(())
}
