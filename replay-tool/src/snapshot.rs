//! `crm-replay snapshot`: every read model as it stood at a past moment, written into a new
//! SQLite file that any SQLite tool opens.
//!
//! The moment is a cut of the log (`crm_projections::asof::Cut`, the same cuts as the API's
//! `as_of`, `known_at` and `position`): `--position N` keeps the events up to and including
//! position N; `--as-of T` keeps every event that occurred by T (`occurred_at <= T`, business
//! time: what had happened by T, including events recorded later with an earlier
//! `occurred_at`); `--known-at T` keeps every event recorded by T (`recorded_at <= T`: what
//! the CRM knew at T). The read models are not copied from the live tables (they only know the
//! present): the projection runner replays the cut log, in log order, into the new file,
//! through a [`CutStore`] that presents the real store as if the log held only the cut. The
//! file then holds the views `rm_*` on their generation tables, the runner's bookkeeping, and
//! a `crm_snapshot` row saying what it is; its WAL is checkpointed and it is switched to a
//! rollback journal, so the one file is complete on its own.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use crm_core::envelope::{Position, RecordedEvent, StreamId, TenantId};
use crm_core::store::sqlite::Durability;
use crm_core::store::{
    BatchOutcome, Direction, EventStore, Scope, SharedStore, StoreError, StoreUrl, StoredEventRef,
    StreamExpectation, StreamHead, StreamStart,
};
use crm_projections::asof::Cut;
use crm_projections::db::{Col, SqliteOptions};
use crm_projections::runner::{self, RunnerOptions};
use crm_projections::{ReadDb, all_projections};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;

use crate::Ctx;
use crate::output::outln;
use crate::progress::{Progress, human};

/// Events read per call while looking for the end of a time cut.
const SCAN_BATCH: usize = 5_000;

/// The cut's name in the summary and the `crm_snapshot` table: the flag that asked for it.
fn kind(cut: &Cut) -> &'static str {
    match cut {
        Cut::Position(_) => "position",
        Cut::OccurredBy(_) => "as_of",
        Cut::RecordedBy(_) => "known_at",
    }
}

fn value(cut: &Cut) -> String {
    match cut {
        Cut::Position(position) => position.to_string(),
        Cut::OccurredBy(at) | Cut::RecordedBy(at) => {
            at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        }
    }
}

/// The real store as it stood at a cut: reads see only the events within the cut, the head
/// is the cut's last position and never moves, and appends are refused.
///
/// `stream_heads`, `stream_heads_of` and `stream_head` report the store's current heads (the
/// chain anchors verification compares against), not the cut's; `find_events` leaves out
/// events above the cut's last position. The projection runner uses only `read_all`,
/// `head_position` and `head_changes`.
#[derive(Debug)]
pub struct CutStore {
    inner: SharedStore,
    /// The highest position within the cut (0: the cut is empty).
    last: Position,
    /// For a time cut: the events below `last` it leaves out (those that occurred later, or
    /// were recorded later after a clock stepped back).
    cut: Option<Cut>,
    /// Kept so that `head_changes` receivers stay open (and never fire).
    head: watch::Sender<Position>,
}

impl CutStore {
    /// A store cut at `last`, with the time cut that also filters the events below it.
    pub fn new(inner: SharedStore, last: Position, cut: Option<Cut>) -> CutStore {
        let (head, _) = watch::channel(last);
        CutStore {
            inner,
            last,
            cut,
            head,
        }
    }

    fn contains(&self, event: &RecordedEvent) -> bool {
        event.position <= self.last && self.cut.is_none_or(|cut| cut.contains(event))
    }

    fn refuse<T>(&self) -> Result<T, StoreError> {
        Err(StoreError::InvalidInput(
            "a snapshot's cut of the log is read-only".to_owned(),
        ))
    }
}

#[async_trait]
impl EventStore for CutStore {
    async fn append_batch(
        &self,
        _tenant: &TenantId,
        _expectations: Vec<StreamExpectation>,
        _events: Vec<(StreamId, crm_core::envelope::NewEvent)>,
    ) -> Result<BatchOutcome, StoreError> {
        self.refuse()
    }

    async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        direction: Direction,
        start: StreamStart,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Page until `limit` events of the cut are found: reading backwards from the end
        // first meets the events beyond the cut.
        let mut out = Vec::new();
        let mut start = start;
        while out.len() < limit {
            let want = limit - out.len();
            let page = self
                .inner
                .read_stream(tenant, stream, direction, start, want)
                .await?;
            let full = page.len() == want;
            let Some(edge) = page.last().map(|e| e.revision) else {
                break;
            };
            let beyond = page.iter().any(|e| e.position > self.last);
            out.extend(page.into_iter().filter(|e| self.contains(e)));
            start = match direction {
                // Positions grow with revisions: past the first event beyond the cut there
                // is nothing more of it.
                Direction::Forwards if beyond => break,
                Direction::Forwards => StreamStart::Revision(edge + 1),
                Direction::Backwards if edge == 0 => break,
                Direction::Backwards => StreamStart::Revision(edge - 1),
            };
            if !full {
                break;
            }
        }
        Ok(out)
    }

    async fn read_all(
        &self,
        scope: &Scope,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Returns `limit` events unless the cut ends first: the runner takes a short read
        // for having caught up.
        let mut out = Vec::new();
        let mut after = after;
        while out.len() < limit && after < self.last {
            let chunk = (limit - out.len()).max(256);
            let page = self.inner.read_all(scope, after, chunk).await?;
            let read = page.len();
            let Some(end) = page.last().map(|e| e.position) else {
                break;
            };
            for event in page {
                if out.len() == limit {
                    return Ok(out);
                }
                if self.contains(&event) {
                    out.push(event);
                }
            }
            after = end;
            if read < chunk {
                break;
            }
        }
        Ok(out)
    }

    async fn read_positions(
        &self,
        tenant: &TenantId,
        positions: &[Position],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let within: Vec<Position> = positions
            .iter()
            .copied()
            .filter(|&p| p <= self.last)
            .collect();
        if within.is_empty() {
            return Ok(Vec::new());
        }
        let events = self.inner.read_positions(tenant, &within).await?;
        Ok(events.into_iter().filter(|e| self.contains(e)).collect())
    }

    async fn find_events(
        &self,
        tenant: &TenantId,
        pairs: &[(StreamId, uuid::Uuid)],
    ) -> Result<Vec<StoredEventRef>, StoreError> {
        let found = self.inner.find_events(tenant, pairs).await?;
        Ok(found
            .into_iter()
            .filter(|e| e.position <= self.last)
            .collect())
    }

    async fn stream_heads_of(
        &self,
        tenant: &TenantId,
        streams: &[StreamId],
    ) -> Result<Vec<StreamHead>, StoreError> {
        self.inner.stream_heads_of(tenant, streams).await
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        Ok(self.last)
    }

    async fn stream_heads(
        &self,
        scope: &Scope,
        after: Option<(&TenantId, &StreamId)>,
        limit: usize,
    ) -> Result<Vec<StreamHead>, StoreError> {
        self.inner.stream_heads(scope, after, limit).await
    }

    async fn stream_head(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<Option<StreamHead>, StoreError> {
        self.inner.stream_head(tenant, stream).await
    }

    fn head_changes(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}

/// The one-line summary, also the `--json` object.
#[derive(Debug, Serialize)]
struct Summary {
    command: &'static str,
    out: String,
    cut: &'static str,
    value: String,
    /// The last log position within the cut.
    position: Position,
    /// Events projected.
    events: u64,
    /// The log's head when the snapshot started.
    source_head: Position,
    read_models: Vec<&'static str>,
    seconds: f64,
    events_per_second: f64,
}

/// Where to cut, as the command line gives it: exactly one of the three.
#[derive(Debug, Default)]
pub struct CutArgs {
    pub as_of: Option<String>,
    pub known_at: Option<String>,
    pub position: Option<Position>,
}

impl CutArgs {
    fn cut(self) -> Result<Cut> {
        let time = |flag: &str, text: String| -> Result<DateTime<Utc>> {
            Ok(DateTime::parse_from_rfc3339(&text)
                .with_context(|| {
                    format!("{flag} {text:?} is not an RFC 3339 time (e.g. 2025-03-01T12:00:00Z)")
                })?
                .with_timezone(&Utc))
        };
        Ok(match (self.as_of, self.known_at, self.position) {
            (Some(text), None, None) => Cut::OccurredBy(time("--as-of", text)?),
            (None, Some(text), None) => Cut::RecordedBy(time("--known-at", text)?),
            (None, None, Some(position)) => Cut::Position(position),
            _ => bail!("give exactly one of --as-of, --known-at and --position"),
        })
    }
}

pub async fn run(ctx: &Ctx, cut: CutArgs, out: &Path) -> Result<ExitCode> {
    let cut = cut.cut()?;
    let started = Instant::now();
    let head = ctx
        .store
        .head_position()
        .await
        .context("cannot read the log's head")?;
    if let Cut::Position(position) = cut
        && position > head
    {
        bail!("--position {position} is beyond the head of the log (position {head})");
    }
    // Checked first so a long scan does not end in a refusal; the file is created
    // atomically later, so an existing file is never touched.
    if out.exists() {
        bail!(already_exists(out));
    }
    let (last, events) = match cut {
        // Positions have no gaps: the cut holds events 1..=N.
        Cut::Position(position) => (position, position),
        Cut::OccurredBy(_) | Cut::RecordedBy(_) => scan(&ctx.store, cut, head).await?,
    };
    // Readable by its owner only: it holds the read models' personal fields.
    let created = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
    };
    match created {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::AlreadyExists => bail!(already_exists(out)),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot create {}", out.display()));
        }
    }
    let mut partial = PartialFile(Some(out.to_path_buf()));
    let summary = write(ctx, cut, (last, events), head, out, started).await?;
    partial.keep();
    if ctx.json {
        outln!("{}", serde_json::to_string(&summary)?);
    } else {
        let cut = match cut {
            Cut::Position(_) => format!("at position {}", summary.position),
            Cut::OccurredBy(_) => format!(
                "as of {} (business time; last position {})",
                summary.value, summary.position
            ),
            Cut::RecordedBy(_) => {
                format!("known at {} (position {})", summary.value, summary.position)
            }
        };
        outln!(
            "snapshot of {} {cut}, {} events, written to {} in {} ({:.0} events/s)",
            summary.read_models.join(", "),
            summary.events,
            summary.out,
            human(Duration::from_secs_f64(summary.seconds)),
            summary.events_per_second,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes a snapshot file (and its WAL companions) that was not finished.
struct PartialFile(Option<PathBuf>);

impl PartialFile {
    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut name = path.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(name));
            }
        }
    }
}

fn already_exists(out: &Path) -> String {
    format!(
        "{} already exists; a snapshot is only written to a new file",
        out.display()
    )
}

/// Projects the cut (its last position and event count) into `out`; `started` is when the
/// command began, so the summary's time includes the scan of a time cut.
async fn write(
    ctx: &Ctx,
    cut: Cut,
    (last, events): (Position, u64),
    head: Position,
    out: &Path,
    started: Instant,
) -> Result<Summary> {
    let store: SharedStore = Arc::new(CutStore::new(
        ctx.projection_store(),
        last,
        match cut {
            Cut::OccurredBy(_) | Cut::RecordedBy(_) => Some(cut),
            Cut::Position(_) => None,
        },
    ));
    let url = StoreUrl::Sqlite {
        path: out.to_path_buf(),
        durability: Durability::Normal,
    };
    let db = ReadDb::open(&url)
        .await
        .with_context(|| format!("cannot open {} as a SQLite database", out.display()))?;
    let projections = all_projections();
    let read_models = projections.iter().map(|p| p.name()).collect();

    let mut progress = Progress::new("snapshot", Some(last));
    let handle = runner::start(
        store,
        db.clone(),
        projections,
        RunnerOptions {
            stop_when_caught_up: true,
            ..RunnerOptions::default()
        },
    );
    let mut statuses = handle.subscribe();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            changed = statuses.changed() => {
                // The runner ends once caught up, dropping its statuses.
                if changed.is_err() {
                    break;
                }
                let done = statuses
                    .borrow_and_update()
                    .iter()
                    .map(|s| s.position)
                    .min()
                    .unwrap_or(0);
                progress.set(done);
            }
            _ = &mut interrupt => {
                progress.finish();
                let _ = handle.shutdown().await;
                db.close().await;
                bail!("interrupted; the unfinished {} is removed", out.display());
            }
        }
    }
    let result = handle.join().await;
    progress.finish();
    result.context("projecting the cut log failed")?;
    let statuses = statuses.borrow().clone();
    let reached = statuses.iter().map(|s| s.position).min().unwrap_or(0);
    if reached != last {
        bail!("the read models stopped at position {reached}, not at the cut's {last}");
    }
    let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    db.execute(
        "CREATE TABLE crm_snapshot (
            cut_kind TEXT NOT NULL,
            cut_value TEXT NOT NULL,
            position INTEGER NOT NULL,
            events INTEGER NOT NULL,
            source_head INTEGER NOT NULL,
            source_store TEXT NOT NULL,
            created_at TEXT NOT NULL,
            tool_version TEXT NOT NULL
        )",
        vec![],
    )
    .await
    .context("cannot write the crm_snapshot table")?;
    db.execute(
        "INSERT INTO crm_snapshot VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            kind(&cut).into(),
            value(&cut).into(),
            to_i64(last).into(),
            to_i64(events).into(),
            to_i64(head).into(),
            ctx.url.redacted().into(),
            created_at.into(),
            env!("CARGO_PKG_VERSION").into(),
        ],
    )
    .await
    .context("cannot write the crm_snapshot table")?;
    finish_file(db, out).await?;

    let seconds = started.elapsed().as_secs_f64();
    Ok(Summary {
        command: "snapshot",
        out: out.display().to_string(),
        cut: kind(&cut),
        value: value(&cut),
        position: last,
        events,
        source_head: head,
        read_models,
        seconds,
        events_per_second: if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        },
    })
}

/// The last position within a time cut, and how many events it holds, among positions up to
/// `head`. Business times follow no order in the log (a backdated event is recorded late), and
/// recording times follow positions only until a clock steps back, so the whole log up to
/// `head` is read rather than stopping at the first event beyond the cut.
async fn scan(store: &SharedStore, cut: Cut, head: Position) -> Result<(Position, u64)> {
    let mut progress = Progress::new("scan", Some(head));
    let mut after = 0;
    let mut last = 0;
    let mut count = 0u64;
    while after < head {
        let page = store
            .read_all(&Scope::AllTenants, after, SCAN_BATCH)
            .await
            .context("cannot read the log")?;
        let Some(end) = page.last().map(|e| e.position) else {
            break;
        };
        for event in page.iter().filter(|e| e.position <= head) {
            if cut.contains(event) {
                last = event.position;
                count += 1;
            }
        }
        after = end;
        progress.set(after.min(head));
        if page.len() < SCAN_BATCH {
            break;
        }
    }
    progress.finish();
    Ok((last, count))
}

/// Closes the pool, folds the WAL into the main file and switches it to a rollback journal:
/// the file is then complete on its own and opens read-only anywhere.
async fn finish_file(db: ReadDb, out: &Path) -> Result<()> {
    db.close().await;
    let db = ReadDb::open_sqlite(
        out,
        SqliteOptions {
            create_if_missing: false,
            max_connections: 1,
            ..SqliteOptions::default()
        },
    )
    .await
    .with_context(|| format!("cannot reopen {}", out.display()))?;
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)", vec![])
        .await
        .context("cannot checkpoint the snapshot's WAL")?;
    let mode = db
        .fetch("PRAGMA journal_mode = DELETE", vec![], &[Col::Text])
        .await
        .context("cannot switch the snapshot to a rollback journal")?
        .into_iter()
        .next()
        .and_then(|mut row| row.pop())
        .and_then(|mode| mode.into_text())
        .unwrap_or_default();
    if !mode.eq_ignore_ascii_case("delete") {
        bail!("the snapshot file stayed in journal mode {mode}");
    }
    db.close().await;
    Ok(())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_core::envelope::NewEvent;
    use crm_core::store::ExpectedRevision;
    use serde_json::json;

    async fn store_with(dir: &Path, groups: &[u64]) -> (SharedStore, Vec<DateTime<Utc>>) {
        let store = crm_core::store::open_store(&StoreUrl::Sqlite {
            path: dir.join("events.db"),
            durability: Durability::Normal,
        })
        .await
        .expect("open store");
        let tenant = TenantId::parse("acme").expect("tenant");
        let stream = StreamId::parse("customer-c-1").expect("stream");
        let mut between = Vec::new();
        let mut n = 0;
        for &size in groups {
            for _ in 0..size {
                n += 1;
                store
                    .append(
                        &tenant,
                        &stream,
                        ExpectedRevision::Any,
                        vec![NewEvent::new("Noted", &json!({ "n": n }))],
                    )
                    .await
                    .expect("append");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            between.push(Utc::now());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (store, between)
    }

    fn positions(events: &[RecordedEvent]) -> Vec<Position> {
        events.iter().map(|e| e.position).collect()
    }

    #[tokio::test]
    async fn a_position_cut_ends_the_log_there_and_refuses_appends() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = store_with(dir.path(), &[30]).await;
        let cut = CutStore::new(store, 17, None);
        assert_eq!(cut.head_position().await.expect("head"), 17);
        assert_eq!(*cut.head_changes().borrow(), 17);
        let all = &Scope::AllTenants;
        assert_eq!(
            positions(&cut.read_all(all, 0, 5).await.expect("read")),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(
            positions(&cut.read_all(all, 15, 10).await.expect("read")),
            vec![16, 17]
        );
        assert!(cut.read_all(all, 17, 10).await.expect("read").is_empty());
        let tenant = TenantId::parse("acme").expect("tenant");
        let stream = StreamId::parse("customer-c-1").expect("stream");
        assert_eq!(
            positions(
                &cut.read_positions(&tenant, &[3, 17, 18, 30])
                    .await
                    .expect("read")
            ),
            vec![3, 17]
        );
        let error = cut
            .append(
                &tenant,
                &stream,
                ExpectedRevision::Any,
                vec![NewEvent::new("Noted", &json!({}))],
            )
            .await
            .expect_err("read-only");
        assert!(matches!(error, StoreError::InvalidInput(_)), "{error}");
    }

    #[tokio::test]
    async fn stream_reads_page_past_the_events_beyond_the_cut() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = store_with(dir.path(), &[10]).await;
        let cut = CutStore::new(store, 6, None);
        let tenant = TenantId::parse("acme").expect("tenant");
        let stream = StreamId::parse("customer-c-1").expect("stream");
        let backwards = cut
            .read_stream(
                &tenant,
                &stream,
                Direction::Backwards,
                StreamStart::Boundary,
                2,
            )
            .await
            .expect("read");
        assert_eq!(positions(&backwards), vec![6, 5]);
        let forwards = cut
            .read_stream(
                &tenant,
                &stream,
                Direction::Forwards,
                StreamStart::Revision(3),
                100,
            )
            .await
            .expect("read");
        assert_eq!(positions(&forwards), vec![4, 5, 6]);
    }

    #[tokio::test]
    async fn a_time_cut_keeps_what_was_recorded_by_then_and_reads_full_batches() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, between) = store_with(dir.path(), &[7, 5]).await;
        let (last, count) = scan(&store, Cut::RecordedBy(between[0]), 12)
            .await
            .expect("scan");
        assert_eq!((last, count), (7, 7));
        let cut = CutStore::new(store.clone(), last, Some(Cut::RecordedBy(between[0])));
        let all = &Scope::AllTenants;
        assert_eq!(
            positions(&cut.read_all(all, 0, 3).await.expect("read")),
            vec![1, 2, 3]
        );
        assert_eq!(
            positions(&cut.read_all(all, 3, 100).await.expect("read")),
            vec![4, 5, 6, 7]
        );
        // Before the first event: an empty cut.
        let early = between[0] - chrono::Duration::days(1);
        assert_eq!(
            scan(&store, Cut::RecordedBy(early), 12)
                .await
                .expect("scan"),
            (0, 0)
        );
    }

    #[tokio::test]
    async fn a_business_time_cut_keeps_a_backdated_event_recorded_after_later_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let store = crm_core::store::open_store(&StoreUrl::Sqlite {
            path: dir.path().join("events.db"),
            durability: Durability::Normal,
        })
        .await
        .expect("open store");
        let tenant = TenantId::parse("acme").expect("tenant");
        let stream = StreamId::parse("customer-c-1").expect("stream");
        let at = |day: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 3, day)
                .and_then(|d| d.and_hms_opt(12, 0, 0))
                .expect("date")
                .and_utc()
        };
        // Positions 1..=4 occurred on days 1, 10, 20 and (backdated) 5.
        for (n, day) in [1, 10, 20, 5].into_iter().enumerate() {
            store
                .append(
                    &tenant,
                    &stream,
                    ExpectedRevision::Any,
                    vec![NewEvent::new("Noted", &json!({ "n": n })).with_occurred_at(at(day))],
                )
                .await
                .expect("append");
        }
        let cut = Cut::OccurredBy(at(6));
        assert_eq!(scan(&store, cut, 4).await.expect("scan"), (4, 2));
        let cut_store = CutStore::new(store.clone(), 4, Some(cut));
        assert_eq!(
            positions(
                &cut_store
                    .read_all(&Scope::AllTenants, 0, 100)
                    .await
                    .expect("read")
            ),
            vec![1, 4]
        );
        // Recorded just now, all four are known; none had happened by day 0.
        assert_eq!(
            scan(&store, Cut::RecordedBy(Utc::now()), 4)
                .await
                .expect("scan"),
            (4, 4)
        );
        assert_eq!(
            scan(
                &store,
                Cut::OccurredBy(at(1) - chrono::Duration::days(1)),
                4
            )
            .await
            .expect("scan"),
            (0, 0)
        );
    }
}
