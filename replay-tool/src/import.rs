//! `crm-replay import FILE|- [--tenant T] [--batch N]`: appends JSON Lines events in batches,
//! each batch one `EventStore::append_batch` transaction (all of it or nothing).
//!
//! Two line formats, told apart by their members:
//! - the export format (`crm-replay export`: `tenant`, `stream_id`, `event_id`, `event_type`,
//!   `schema_version`, `data`, `metadata`, `occurred_at`; `revision` and `hash` are
//!   ignored, the store assigns its own; an event that lands at its exported `position`
//!   keeps its `recorded_at`, so restoring a whole export into an empty store gives the
//!   same chains and a byte-identical re-export). The data is checked
//!   against the catalog (upcast, then parsed) and must belong to the line's `stream_id`; it
//!   is stored as it was (canonical JSON), at its schema version.
//! - the API's ingest format (`{"id"?, "type", "data", "occurred_at"?, "metadata"?}`, the
//!   member rules of `POST /v1/events`), for the tenant given by `--tenant`. A line without
//!   an `id` gets one derived from the tenant, its line number and its text, so running the
//!   same file again finds the same ids.
//!
//! Event ids are the store's idempotency keys, so an import run again (after it was killed,
//! or after it stopped at an invalid line that was then fixed) skips what is stored as
//! duplicates. A batch holds one tenant and distinct ids; every line of a batch is checked
//! before the batch is appended, so an invalid line stops the import before its batch, with
//! the batches before it written. Lines are read and checked on a thread of their own while
//! the previous batch is being appended.
//!
//! Exit codes: 0 imported; 1 an invalid line or a refused append (`line N: ...` on stderr,
//! with how many events were written before); 2 the import could not run (no such file, bad
//! arguments, an unreadable input). Progress and the summary go to stderr; with `--json` the
//! summary is one JSON object on stdout.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use crm_core::catalog::{CatalogError, DomainEvent, upcast};
use crm_core::envelope::{
    EventMetadata, NewEvent, Restore, StreamId, TenantId, canonical_json, to_stored_precision,
};
use crm_core::store::{MAX_EVENTS_PER_APPEND, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::Ctx;
use crate::progress::{Progress, human};

/// Namespace of the ids derived for ingest-format lines without an `id`.
const LINE_NAMESPACE: Uuid = Uuid::from_u128(0x6372_6d2d_7265_706c_6179_2d69_6d70_6f72);
/// The store's limit on one event's data or metadata, checked per line so that the line is
/// named.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Input buffer size.
const READ_BUFFER: usize = 1 << 20;
/// Members of an exported event.
const EXPORT_MEMBERS: &[&str] = &[
    "tenant",
    "stream_id",
    "revision",
    "position",
    "event_id",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "occurred_at",
    "recorded_at",
    "hash",
];
/// Members of an event in the API's ingest format that an import accepts.
const INGEST_MEMBERS: &[&str] = &["id", "type", "data", "occurred_at", "metadata"];

/// One checked line, ready to append.
#[derive(Debug)]
struct Line {
    tenant: TenantId,
    stream: StreamId,
    event: NewEvent,
}

/// Lines for one `append_batch` call: one tenant, distinct ids.
#[derive(Debug)]
struct Batch {
    tenant: TenantId,
    events: Vec<(StreamId, NewEvent)>,
    /// The line number of each event.
    lines: Vec<u64>,
}

/// What the reading thread hands to the appender, in input order.
#[derive(Debug)]
enum Item {
    Batch(Batch),
    /// The input stops here: this line is invalid (nothing of its batch is handed over).
    Invalid {
        line: u64,
        reason: String,
    },
    /// The input could not be read.
    Unreadable(anyhow::Error),
}

/// What the import did, for the summary.
#[derive(Debug, Default, Serialize)]
struct Summary {
    /// `imported`, `invalid` (a line was refused) or `failed` (the store refused a batch).
    status: &'static str,
    events: u64,
    new: u64,
    duplicates: u64,
    seconds: f64,
    events_per_second: f64,
    /// The line that stopped the import.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn run(ctx: &Ctx, file: &str, tenant: Option<String>, batch: usize) -> Result<ExitCode> {
    if batch == 0 || batch > MAX_EVENTS_PER_APPEND {
        bail!("--batch {batch}: give 1 to {MAX_EVENTS_PER_APPEND} events per transaction");
    }
    let tenant = tenant
        .map(|t| TenantId::parse(&t))
        .transpose()
        .context("--tenant")?;
    let input: Box<dyn BufRead + Send> = if file == "-" {
        Box::new(BufReader::with_capacity(READ_BUFFER, io::stdin()))
    } else {
        let opened = File::open(file).with_context(|| format!("cannot open {file}"))?;
        Box::new(BufReader::with_capacity(READ_BUFFER, opened))
    };

    // A plain thread, not a runtime one: it may sit in a read of stdin when the import stops,
    // and the process must still be able to exit.
    let (items, mut received) = mpsc::channel::<Item>(2);
    std::thread::Builder::new()
        .name("import-reader".into())
        .spawn(move || read_batches(input, tenant, batch, &items))
        .context("cannot start the reading thread")?;

    let mut progress = Progress::new("import", None);
    let mut summary = Summary {
        status: "imported",
        ..Summary::default()
    };
    let mut unreadable = None;
    while let Some(item) = received.recv().await {
        match item {
            Item::Batch(batch) => {
                if let Err((line, error)) = append(ctx, batch, &mut summary).await {
                    summary.status = "failed";
                    summary.line = line;
                    summary.error = Some(error);
                    break;
                }
                progress.set(summary.new + summary.duplicates);
            }
            Item::Invalid { line, reason } => {
                summary.status = "invalid";
                summary.line = Some(line);
                summary.error = Some(format!("line {line}: {reason}"));
                break;
            }
            Item::Unreadable(error) => {
                unreadable = Some(error);
                break;
            }
        }
    }
    drop(received);
    progress.finish();
    summary.events = progress.done();
    summary.seconds = progress.elapsed().as_secs_f64();
    summary.events_per_second = if summary.seconds > 0.0 {
        summary.events as f64 / summary.seconds
    } else {
        0.0
    };
    if let Some(error) = unreadable {
        eprintln!(
            "crm-replay: the import stopped; the whole batches before it are stored: {} events \
             ({} new, {} duplicates)",
            summary.events, summary.new, summary.duplicates
        );
        return Err(error);
    }
    report(ctx, &summary)?;
    Ok(if summary.error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Appends one batch; on failure, the line to blame (if one can be) and the message.
async fn append(
    ctx: &Ctx,
    batch: Batch,
    summary: &mut Summary,
) -> Result<(), (Option<u64>, String)> {
    let ids: Vec<Uuid> = batch.events.iter().map(|(_, e)| e.event_id).collect();
    let count = ids.len() as u64;
    // An id already stored must come back with the same data (as the API decides).
    let pairs: Vec<(StreamId, Uuid)> = batch
        .events
        .iter()
        .map(|(stream, event)| (stream.clone(), event.event_id))
        .collect();
    let failed = |error: StoreError| (None, format!("the store did not answer: {error}"));
    let stored = ctx
        .store
        .find_events(&batch.tenant, &pairs)
        .await
        .map_err(failed)?;
    let candidates: Vec<(usize, &_, &NewEvent)> = batch
        .events
        .iter()
        .enumerate()
        .filter_map(|(index, (stream, event))| {
            stored
                .iter()
                .find(|s| s.stream_id == *stream && s.event_id == event.event_id)
                .filter(|s| s.event_type == event.event_type)
                .map(|s| (index, s, event))
        })
        .collect();
    let other = crm_core::privacy::replays::sent_with_other_data(
        ctx.store.as_ref(),
        &batch.tenant,
        &candidates,
    )
    .await
    .map_err(failed)?;
    if let Some(&index) = other.first() {
        let line = batch.lines.get(index).copied();
        let (stream, event) = &batch.events[index];
        return Err((
            line,
            format!(
                "line {}: event id {} is already stored in stream {stream} with other data; an \
                 event id names one event",
                line.unwrap_or_default(),
                event.event_id
            ),
        ));
    }
    match ctx
        .store
        .append_batch(&batch.tenant, Vec::new(), batch.events)
        .await
    {
        Ok(outcome) => {
            let duplicates = outcome.events.iter().filter(|e| e.duplicate).count() as u64;
            summary.duplicates += duplicates;
            summary.new += count - duplicates;
            Ok(())
        }
        Err(error) => {
            let blamed = match &error {
                StoreError::EventIdReused { event_id, .. } => ids
                    .iter()
                    .position(|id| id == event_id)
                    .and_then(|i| batch.lines.get(i).copied()),
                _ => None,
            };
            let message = match blamed {
                Some(line) => format!("line {line}: {error}"),
                None => format!(
                    "the batch of lines {}-{} was refused: {error}",
                    batch.lines.first().copied().unwrap_or_default(),
                    batch.lines.last().copied().unwrap_or_default()
                ),
            };
            Err((blamed, message))
        }
    }
}

fn report(ctx: &Ctx, summary: &Summary) -> Result<()> {
    if let Some(error) = &summary.error {
        eprintln!("crm-replay: {error}");
    }
    if ctx.json {
        println!("{}", serde_json::to_string(summary)?);
        return Ok(());
    }
    let counts = format!(
        "{} events ({} new, {} duplicates)",
        summary.events, summary.new, summary.duplicates
    );
    if summary.error.is_some() {
        eprintln!(
            "crm-replay: the import stopped; the whole batches before it are stored: {counts}; \
             fix the input and run it again: what is stored is skipped as duplicates"
        );
    } else {
        eprintln!(
            "imported {counts} in {}, {:.0} events/s",
            human(Duration::from_secs_f64(summary.seconds)),
            summary.events_per_second
        );
    }
    Ok(())
}

/// The reading thread: reads and checks lines, groups them into batches and hands each batch
/// over once all its lines are checked. Stops at the first invalid line, at the end of the
/// input, or when the appender has gone.
fn read_batches(
    mut input: Box<dyn BufRead + Send>,
    tenant: Option<TenantId>,
    batch_size: usize,
    items: &mpsc::Sender<Item>,
) {
    let mut buffer = Vec::with_capacity(4096);
    let mut number = 0u64;
    let mut current: Option<Batch> = None;
    let mut ids: HashSet<Uuid> = HashSet::with_capacity(batch_size);
    loop {
        buffer.clear();
        match input.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                let error = anyhow::Error::new(error)
                    .context(format!("cannot read line {} of the input", number + 1));
                let _ = items.blocking_send(Item::Unreadable(error));
                return;
            }
        }
        number += 1;
        let text = trim_line_end(&buffer);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = match parse_line(number, text, tenant.as_ref()) {
            Ok(line) => line,
            Err(reason) => {
                let _ = items.blocking_send(Item::Invalid {
                    line: number,
                    reason,
                });
                return;
            }
        };
        // A new batch on another tenant, when full, or when the id is already in this one
        // (the store refuses an id twice in one call; apart, the second is a duplicate or,
        // in another stream, another event).
        let full = current.as_ref().is_some_and(|batch| {
            batch.tenant != line.tenant
                || batch.events.len() >= batch_size
                || ids.contains(&line.event.event_id)
        });
        if full && let Some(batch) = current.take() {
            ids.clear();
            if items.blocking_send(Item::Batch(batch)).is_err() {
                return;
            }
        }
        let batch = current.get_or_insert_with(|| Batch {
            tenant: line.tenant,
            events: Vec::with_capacity(batch_size),
            lines: Vec::with_capacity(batch_size),
        });
        ids.insert(line.event.event_id);
        batch.events.push((line.stream, line.event));
        batch.lines.push(number);
    }
    if let Some(batch) = current {
        let _ = items.blocking_send(Item::Batch(batch));
    }
}

/// The line without its `\n` or `\r\n`.
fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Checks one line; the error names the member or field at fault.
fn parse_line(number: u64, bytes: &[u8], tenant: Option<&TenantId>) -> Result<Line, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the line is not UTF-8 ({e})"))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {}", json_error(&e)))?;
    let Value::Object(object) = value else {
        return Err("an event must be a JSON object".into());
    };
    // Members only the export format has; a `tenant` beside a `type` is an ingest line with
    // a member too many.
    let exported = ["event_type", "stream_id", "event_id"]
        .iter()
        .any(|member| object.contains_key(*member))
        || (object.contains_key("tenant") && !object.contains_key("type"));
    if exported {
        return parse_exported(object);
    }
    let Some(tenant) = tenant else {
        return Err(
            "an event in the API's ingest format (type, data, ...) needs --tenant; \
                    exported events carry their own tenant"
                .into(),
        );
    };
    parse_ingest(object, tenant, number, text)
}

/// serde's message, with the column instead of its "line 1".
fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&position) {
        Some(bare) => format!("{bare} (column {})", error.column()),
        None => message,
    }
}

/// A line of `crm-replay export`.
fn parse_exported(mut object: Map<String, Value>) -> Result<Line, String> {
    if let Some(other) = object
        .keys()
        .find(|key| !EXPORT_MEMBERS.contains(&key.as_str()))
    {
        return Err(format!(
            "unknown member {other:?}; an exported event has {}",
            EXPORT_MEMBERS.join(", ")
        ));
    }
    let tenant = TenantId::parse(string(&object, "tenant")?).map_err(|e| format!("tenant: {e}"))?;
    let stream =
        StreamId::parse(string(&object, "stream_id")?).map_err(|e| format!("stream_id: {e}"))?;
    let event_id = {
        let text = string(&object, "event_id")?;
        Uuid::parse_str(text).map_err(|e| format!("event_id: {text:?} is not a UUID ({e})"))?
    };
    let event_type = string(&object, "event_type")?.to_owned();
    let schema_version = match object.get("schema_version") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| format!("schema_version: {n} is not a schema version (1 or more)"))?,
        Some(_) => return Err("schema_version: must be an integer".into()),
        None => return Err("schema_version: missing".into()),
    };
    let occurred_at = match object.get("occurred_at") {
        Some(Value::String(text)) => rfc3339(text)?,
        Some(_) => return Err("occurred_at: must be an RFC 3339 string".into()),
        None => return Err("occurred_at: missing".into()),
    };
    // Where and when it was recorded: kept when it lands at the same position (a restore
    // into a store that holds exactly what preceded it), so its hash is the same.
    let restore = match (object.get("position"), object.get("recorded_at")) {
        (Some(Value::Number(position)), Some(Value::String(text))) => {
            match (position.as_u64(), rfc3339(text)) {
                (Some(position), Ok(recorded_at)) => Some(Restore {
                    position,
                    recorded_at,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    let metadata = match object.remove("metadata") {
        Some(value @ Value::Object(_)) => {
            let parsed =
                EventMetadata::deserialize(&value).map_err(|e| format!("metadata: {e}"))?;
            if let Some((path, reason)) = parsed.unstorable_value() {
                return Err(format!("{path}: {reason}"));
            }
            canonical_json(&value)
        }
        Some(_) => return Err("metadata: must be an object".into()),
        None => return Err("metadata: missing".into()),
    };
    let data = match object.remove("data") {
        Some(data @ Value::Object(_)) => data,
        Some(_) => return Err("data: must be an object".into()),
        None => return Err("data: missing".into()),
    };
    // Stored as it was exported, at its version; checked in its current form.
    let stored = canonical_json(&data);
    let current = upcast(&event_type, schema_version, data)
        .map_err(|e| catalog_error(e, "event_type", "schema_version"))?;
    let event = DomainEvent::parse(&event_type, &current)
        .map_err(|e| catalog_error(e, "event_type", "schema_version"))?;
    let belongs = event.stream();
    if belongs != stream {
        return Err(format!(
            "stream_id: {:?} does not match the event, which belongs to stream {:?}",
            stream.as_str(),
            belongs.as_str()
        ));
    }
    let event = NewEvent {
        event_id,
        event_type,
        schema_version,
        data: stored,
        metadata,
        occurred_at: Some(to_stored_precision(occurred_at)),
        restore,
    };
    check_size(&event)?;
    Ok(Line {
        tenant,
        stream,
        event,
    })
}

/// A line in the API's ingest format, with the member rules and messages of
/// `POST /v1/events` (api/src/ingest.rs `parse_event`), `line N: member: reason` instead of
/// `events[i].member: reason`.
fn parse_ingest(
    object: Map<String, Value>,
    tenant: &TenantId,
    number: u64,
    text: &str,
) -> Result<Line, String> {
    if object.contains_key("expected_revision") {
        return Err(
            "expected_revision: not supported by import, which appends the lines in \
                    file order whatever the streams' revisions; remove it"
                .into(),
        );
    }
    if let Some(other) = object
        .keys()
        .find(|key| !INGEST_MEMBERS.contains(&key.as_str()))
    {
        return Err(format!(
            "unknown member {other:?}; an event has {}",
            INGEST_MEMBERS.join(", ")
        ));
    }
    let event_type = match object.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err("type: must be a string".into()),
        None => return Err("type: missing".into()),
    };
    let data = match object.get("data") {
        Some(data @ Value::Object(_)) => data,
        Some(_) => return Err("data: must be an object".into()),
        None => return Err("data: missing".into()),
    };
    let event =
        DomainEvent::parse(event_type, data).map_err(|e| catalog_error(e, "type", "type"))?;
    let id = match object.get("id") {
        None | Some(Value::Null) => Uuid::new_v5(
            &LINE_NAMESPACE,
            format!("{tenant}\n{number}\n{text}").as_bytes(),
        ),
        Some(Value::String(text)) => {
            Uuid::parse_str(text).map_err(|e| format!("id: {text:?} is not a UUID ({e})"))?
        }
        Some(_) => return Err("id: must be a UUID string".into()),
    };
    let occurred_at = match object.get("occurred_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(rfc3339(text)?),
        Some(_) => return Err("occurred_at: must be an RFC 3339 string".into()),
    };
    let metadata = match object.get("metadata") {
        None | Some(Value::Null) => EventMetadata::default(),
        Some(value @ Value::Object(_)) => {
            EventMetadata::deserialize(value).map_err(|e| format!("metadata: {e}"))?
        }
        Some(_) => return Err("metadata: must be an object".into()),
    };
    if let Some(key) = metadata.unknown_key() {
        return Err(format!(
            "metadata: {}",
            EventMetadata::unknown_key_message(key)
        ));
    }
    if let Some((path, reason)) = metadata.unstorable_value() {
        return Err(format!("{path}: {reason}"));
    }
    let mut new = event.to_new_event().with_id(id).with_metadata(&metadata);
    if let Some(occurred_at) = occurred_at {
        new = new.with_occurred_at(occurred_at);
    }
    check_size(&new)?;
    Ok(Line {
        tenant: tenant.clone(),
        stream: event.stream(),
        event: new,
    })
}

fn string<'a>(object: &'a Map<String, Value>, member: &str) -> Result<&'a str, String> {
    match object.get(member) {
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(format!("{member}: must be a string")),
        None => Err(format!("{member}: missing")),
    }
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("occurred_at: {text:?} is not an RFC 3339 time ({e})"))
}

/// A catalog refusal, led by the member at fault when the message does not name a field.
fn catalog_error(error: CatalogError, type_member: &str, version_member: &str) -> String {
    match error {
        CatalogError::UnknownEventType { .. } => {
            format!("{type_member}: {error}; the catalog is in docs/events.md")
        }
        CatalogError::UnsupportedSchemaVersion { .. } | CatalogError::MissingUpcaster { .. } => {
            format!("{version_member}: {error}")
        }
        CatalogError::InvalidData { .. } => error.to_string(),
    }
}

fn check_size(event: &NewEvent) -> Result<(), String> {
    for (member, json) in [("data", &event.data), ("metadata", &event.metadata)] {
        if json.get().len() > MAX_EVENT_BYTES {
            return Err(format!(
                "{member}: {} bytes; the store takes at most {MAX_EVENT_BYTES} per event",
                json.get().len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").expect("tenant")
    }

    #[test]
    fn json_errors_name_the_column_not_a_line_of_one() {
        let error = parse_line(3, br#"{"type": "#, Some(&acme())).expect_err("invalid");
        assert!(error.starts_with("invalid JSON: "), "{error}");
        assert!(error.contains("(column "), "{error}");
        assert!(!error.contains("line 1"), "{error}");
    }

    #[test]
    fn ingest_lines_without_an_id_get_a_stable_one_from_tenant_line_and_text() {
        let text = r#"{"type":"LeadCaptured","data":{"lead_id":"l-1","email":"ada@example.com","source":"referral"}}"#;
        let a = parse_line(7, text.as_bytes(), Some(&acme())).expect("valid");
        let b = parse_line(7, text.as_bytes(), Some(&acme())).expect("valid");
        let c = parse_line(8, text.as_bytes(), Some(&acme())).expect("valid");
        assert_eq!(a.event.event_id, b.event.event_id);
        assert_ne!(a.event.event_id, c.event.event_id);
        assert_eq!(a.stream.as_str(), "lead-l-1");
    }

    #[test]
    fn expected_revisions_are_refused_by_name() {
        let text = r#"{"type":"LeadCaptured","data":{"lead_id":"l-1","email":"ada@example.com","source":"referral"},"expected_revision":0}"#;
        let error = parse_line(1, text.as_bytes(), Some(&acme())).expect_err("refused");
        assert!(error.starts_with("expected_revision: "), "{error}");
    }

    #[test]
    fn the_format_follows_the_members() {
        let error = parse_line(1, br#"{"tenant": 1}"#, None).expect_err("invalid");
        assert_eq!(error, "tenant: must be a string");
        let error = parse_line(1, br#"{"tenant": "acme", "type": "X"}"#, Some(&acme()))
            .expect_err("invalid");
        assert!(error.starts_with("unknown member \"tenant\""), "{error}");
        let error = parse_line(1, br#"{"event_type": "LeadCaptured"}"#, None).expect_err("invalid");
        assert_eq!(error, "tenant: missing");
    }

    #[test]
    fn text_no_backend_can_store_is_refused_naming_the_field() {
        let text = r#"{"type":"CustomerRegistered","data":{"customer_id":"c-1","kind":"person","name":"evil\u0000name"}}"#;
        let error = parse_line(1, text.as_bytes(), Some(&acme())).expect_err("refused");
        assert!(
            error.contains("data.name") && error.contains("NUL"),
            "{error}"
        );
        let text = r#"{"type":"CustomerRegistered","metadata":{"actor":"u\u00001"},"data":{"customer_id":"c-1","kind":"person","name":"Ada"}}"#;
        let error = parse_line(1, text.as_bytes(), Some(&acme())).expect_err("refused");
        assert!(
            error.starts_with("metadata.actor: ") && error.contains("NUL"),
            "{error}"
        );
        let exported = r#"{"tenant":"acme","stream_id":"customer-c-1","event_id":"0190a1b2-0000-7000-8000-000000000001","event_type":"CustomerRegistered","schema_version":1,"data":{"customer_id":"c-1","kind":"person","name":"Ada"},"metadata":{"api_key_id":"k\u0000"},"occurred_at":"2026-01-01T00:00:00Z"}"#;
        let error = parse_line(1, exported.as_bytes(), None).expect_err("refused");
        assert!(error.starts_with("metadata.api_key_id: "), "{error}");
    }

    #[test]
    fn line_ends_are_trimmed() {
        assert_eq!(trim_line_end(b"{}\r\n"), b"{}");
        assert_eq!(trim_line_end(b"{}\n"), b"{}");
        assert_eq!(trim_line_end(b"{}"), b"{}");
    }
}
