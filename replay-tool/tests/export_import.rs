//! `crm-replay export` and `import` as the real binary runs them: a realistic two-tenant
//! history (every event type) exported, imported into a fresh store and exported again gives
//! the same events; the filters select exactly their events; an import cut mid-line, or
//! SIGKILLed mid-run, resumes without duplicates; invalid lines stop the import before their
//! batch, naming the line; ingest-format lines import with `--tenant`, idempotently; and the
//! round trip on PostgreSQL.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use crm_core::catalog::{DomainEvent, EVENT_TYPES};
use crm_core::envelope::{EventMetadata, RecordedEvent, TenantId};
use crm_core::store::{ExpectedRevision, Scope, SharedStore, StoreUrl};
use crm_tests::crm_data::{append_all, history};
use crm_tests::postgres::TestDatabase;
use serde_json::{Value, json};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

/// A fresh SQLite store in its own directory.
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("events.db").display())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs `crm-replay --store <url> <args>`.
fn replay(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .arg("--store")
        .arg(url)
        .args(args)
        .env_remove("CRM_STORE")
        .env_remove("CRM_LOG")
        .output()
        .expect("run crm-replay")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs and insists on exit 0.
fn replay_ok(url: &str, args: &[&str]) -> Output {
    let output = replay(url, args);
    assert!(
        output.status.success(),
        "crm-replay {args:?} failed ({:?}):\n{}",
        output.status,
        text(&output.stderr)
    );
    output
}

/// `crm-replay export <args>` as lines.
fn export(url: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let output = replay_ok(url, &all);
    text(&output.stdout).lines().map(str::to_owned).collect()
}

/// Runs an import of `file` and returns its exit code, its `--json` summary and its stderr.
fn import(url: &str, file: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["--json", "import", file.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let output = replay(url, &args);
    let code = output.status.code().expect("exit code");
    let stdout = text(&output.stdout);
    let summary = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}) from import (exit {code}): {stdout}\n{}",
            text(&output.stderr)
        )
    });
    (code, summary, text(&output.stderr))
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(path, body).expect("write lines");
}

/// What must survive a round trip: everything but `recorded_at` and `hash`, which a new
/// store assigns itself.
fn comparable(line: &str) -> Value {
    let mut value: Value = serde_json::from_str(line).expect("an exported line is JSON");
    let object = value
        .as_object_mut()
        .expect("an exported line is an object");
    assert!(object.remove("recorded_at").is_some(), "{line}");
    assert!(object.remove("hash").is_some(), "{line}");
    value
}

fn comparables(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| comparable(l)).collect()
}

/// The store as written (sealed personal fields stay sealed): what counting and comparing
/// stored events needs, with or without the data keys.
async fn open_raw(url: &str) -> SharedStore {
    crm_core::store::open_store(&StoreUrl::parse(url).expect("store url"))
        .await
        .expect("open store")
}

async fn open(url: &str) -> SharedStore {
    crm_tests::open_test_store(&StoreUrl::parse(url).expect("store url"))
        .await
        .expect("open store")
}

/// Every stored event, in position order.
async fn stored(store: &SharedStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &RecordedEvent| e.position);
        let batch = store
            .read_all(&Scope::AllTenants, after, 5_000)
            .await
            .expect("read_all");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// The store holds every event once: as many distinct ids as events, positions 1..=n.
async fn assert_exactly_once(store: &SharedStore, expected: usize) {
    let events = stored(store).await;
    assert_eq!(events.len(), expected, "events stored");
    let ids: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), expected, "distinct event ids");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.position, i as u64 + 1, "positions are gap-free");
    }
}

/// A realistic history over two tenants, plus the types it lacks (campaigns, a disqualified
/// lead, tenant settings), some with metadata, so that every catalog type is exported.
async fn seed(url: &str, customers: usize, steps: usize) -> usize {
    let store = open(url).await;
    let events = history(21, customers, steps);
    append_all(store.as_ref(), &events).await;
    let at = Utc
        .with_ymd_and_hms(2025, 9, 1, 9, 30, 0)
        .single()
        .expect("time");
    let extras = [
        (
            "LeadCaptured",
            json!({"lead_id": "l-dq", "email": "dq@example.com", "source": "referral"}),
        ),
        (
            "LeadDisqualified",
            json!({"lead_id": "l-dq", "reason": "no budget"}),
        ),
        (
            "CampaignLaunched",
            json!({"campaign_id": "cmp-1", "name": "Spring sale", "channel": "email"}),
        ),
        (
            "CampaignMemberAdded",
            json!({"campaign_id": "cmp-1", "customer_id": "c-1"}),
        ),
        (
            "CampaignMemberResponded",
            json!({"campaign_id": "cmp-1", "lead_id": "l-dq", "response": "clicked"}),
        ),
        (
            "CampaignCostRecorded",
            json!({"campaign_id": "cmp-1", "amount": "99.95", "currency": "EUR"}),
        ),
        // No reason: a personal field on a case stream is sealed under the customer its
        // opening names, and this case has none.
        ("CasePaused", json!({"case_id": "k-paused"})),
        ("CaseResumed", json!({"case_id": "k-paused"})),
        // Tenant settings, last, so no judgement above depends on them.
        ("ConsentRegimeSet", json!({"regime": "opt_in"})),
        (
            "SlaTargetsSet",
            json!({"low": {"first_response_minutes": 1440, "resolution_minutes": 10080}, "normal": {"first_response_minutes": 480, "resolution_minutes": 4320}, "high": {"first_response_minutes": 240, "resolution_minutes": 1440}, "urgent": {"first_response_minutes": 60, "resolution_minutes": 240}}),
        ),
        (
            "BusinessCalendarSet",
            json!({"time_zone": "Europe/Paris", "hours": {"monday": [["09:00", "17:30"]], "tuesday": [["09:00", "17:30"]], "wednesday": [["09:00", "17:30"]], "thursday": [["09:00", "17:30"]], "friday": [["09:00", "17:00"]], "saturday": [], "sunday": []}, "holidays": ["2026-12-25"]}),
        ),
        ("BusinessCalendarCleared", json!({})),
        (
            "ComplaintCategoriesSet",
            json!({"categories": ["billing"], "causes": ["pricing_error"]}),
        ),
        // Complaint and CSAT on a case without its opening: no personal field.
        (
            "CaseMarkedComplaint",
            json!({"case_id": "k-paused", "category": "billing"}),
        ),
        ("CsatRecorded", json!({"case_id": "k-paused", "score": 4})),
        (
            "WorkflowRuleSet",
            json!({"rule_id": "assign", "name": "Assign new cases",
                "trigger": {"event": "CaseOpened"},
                "actions": [{"append": {"type": "CaseAssigned",
                    "data": {"case_id": "{{data.case_id}}", "agent": {"round_robin": ["ana", "ben"]}}}}]}),
        ),
        ("WorkflowRuleRemoved", json!({"rule_id": "assign"})),
        (
            "NpsAnswered",
            json!({"customer_id": "c-nps", "answer_id": "nps-1", "score": 9, "comment": "Would recommend"}),
        ),
    ];
    let mut count = events.len();
    for tenant in ["acme", "globex"] {
        let tenant = TenantId::parse(tenant).expect("tenant");
        for (i, (event_type, data)) in extras.iter().enumerate() {
            let event = DomainEvent::parse(event_type, data).expect("valid extra");
            let mut metadata = EventMetadata {
                actor: Some(format!("u-{i}")),
                source: Some("seed".into()),
                correlation_id: Some(format!("corr-{i}")),
                ..EventMetadata::default()
            };
            metadata
                .extra
                .insert("note".into(), json!({"ünï": [1, 2.5]}));
            let new = event
                .to_new_event()
                .with_metadata(&metadata)
                .with_occurred_at(at + chrono::Duration::microseconds(i as i64 * 1_234_567));
            store
                .append(&tenant, &event.stream(), ExpectedRevision::Any, vec![new])
                .await
                .expect("append extra");
            count += 1;
        }
    }
    count
}

async fn round_trip(source: &str, target: &str, dir: &Path) {
    let exported = dir.join("all.jsonl");
    // To a file with --json: the summary is the one line on stdout.
    let output = replay_ok(
        source,
        &[
            "--json",
            "export",
            "--out",
            exported.to_str().expect("utf-8"),
        ],
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("export summary");
    let lines: Vec<String> = std::fs::read_to_string(&exported)
        .expect("read export")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(summary["events"], json!(lines.len()), "{summary}");
    assert_eq!(summary["first_position"], json!(1));
    assert_eq!(summary["last_position"], json!(lines.len()));

    let types: BTreeSet<String> = lines
        .iter()
        .map(|l| {
            comparable(l)["event_type"]
                .as_str()
                .expect("type")
                .to_owned()
        })
        .collect();
    let catalog: BTreeSet<String> = EVENT_TYPES.iter().map(|t| t.name.to_owned()).collect();
    assert_eq!(types, catalog, "the history holds every event type");
    let tenants: BTreeSet<String> = lines
        .iter()
        .map(|l| comparable(l)["tenant"].as_str().expect("tenant").to_owned())
        .collect();
    assert_eq!(tenants.len(), 2);

    let (code, summary, stderr) = import(target, &exported, &["--batch", "250"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["status"], "imported");
    assert_eq!(summary["new"], json!(lines.len()));
    assert_eq!(summary["duplicates"], json!(0));

    // A whole export restored into an empty store lands every event at its position with its
    // recording time: the same hashes, a byte-identical re-export (personal fields sealed).
    let again = export(target, &[]);
    assert_eq!(comparables(&again), comparables(&lines));
    assert!(again == lines, "the re-export is byte-identical");
    let verified = replay_ok(target, &["verify"]);
    assert!(text(&verified.stdout).starts_with("intact"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_through_a_fresh_sqlite_store_keeps_every_event() {
    let source = Sqlite::new();
    let target = Sqlite::new();
    seed(&source.url(), 60, 2_500).await;
    round_trip(&source.url(), &target.url(), source.dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_through_a_fresh_postgres_store_keeps_every_event() {
    let Some(source) = TestDatabase::create("replay_round_trip_source").await else {
        return;
    };
    let Some(target) = TestDatabase::create("replay_round_trip_target").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    seed(source.url(), 40, 1_500).await;
    round_trip(source.url(), target.url(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filters_select_exactly_their_events() {
    let store = Sqlite::new();
    let count = seed(&store.url(), 30, 1_200).await;
    let url = store.url();
    let all = comparables(&export(&url, &[]));
    assert_eq!(all.len(), count);
    let pick = |keep: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        all.iter().filter(|e| keep(e)).cloned().collect()
    };
    let position = |e: &Value| e["position"].as_u64().expect("position");

    let range = comparables(&export(&url, &["--from", "100", "--to", "250"]));
    assert_eq!(range, pick(&|e| position(e) > 100 && position(e) <= 250));
    assert_eq!(range.len(), 150);
    let from = comparables(&export(&url, &["--from", "1000"]));
    assert_eq!(from, pick(&|e| position(e) > 1000));
    let to = comparables(&export(&url, &["--to", "7"]));
    assert_eq!(to, pick(&|e| position(e) <= 7));
    assert!(export(&url, &["--from", &count.to_string()]).is_empty());

    let types = comparables(&export(
        &url,
        &["--type", "OrderPlaced", "--type", "CaseOpened"],
    ));
    let wanted = pick(&|e| e["event_type"] == "OrderPlaced" || e["event_type"] == "CaseOpened");
    assert!(!wanted.is_empty());
    assert_eq!(types, wanted);

    let tenant = comparables(&export(&url, &["--tenant", "globex"]));
    let wanted = pick(&|e| e["tenant"] == "globex");
    assert!(!wanted.is_empty() && wanted.len() < all.len());
    assert_eq!(tenant, wanted);

    let everything = comparables(&export(
        &url,
        &[
            "--tenant",
            "acme",
            "--type",
            "InteractionLogged",
            "--from",
            "50",
            "--to",
            "900",
        ],
    ));
    let wanted = pick(&|e| {
        e["tenant"] == "acme"
            && e["event_type"] == "InteractionLogged"
            && position(e) > 50
            && position(e) <= 900
    });
    assert!(!wanted.is_empty());
    assert_eq!(everything, wanted);

    // --to below --from is refused as a bad argument.
    assert_eq!(
        replay(&url, &["export", "--from", "9", "--to", "3"])
            .status
            .code(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_into_a_closed_pipe_ends_quietly() {
    let store = Sqlite::new();
    seed(&store.url(), 40, 2_000).await;
    let mut child = Command::new(BIN)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .args(["--store", &store.url(), "export"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start export");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    comparable(first.trim_end());
    drop(stdout);
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        text(&output.stderr)
    );
    assert!(
        !text(&output.stderr).contains("error"),
        "{}",
        text(&output.stderr)
    );
}

/// How many of these lines (by tenant) are in batches of `size` that are closed, i.e. all but
/// the last: a batch ends when full or when the tenant changes.
fn closed_batches(tenants: &[String], size: usize) -> usize {
    let mut start = 0;
    for i in 1..tenants.len() {
        if tenants[i] != tenants[i - 1] || i - start >= size {
            start = i;
        }
    }
    start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_cut_mid_line_resumes_without_duplicates() {
    let source = Sqlite::new();
    let count = seed(&source.url(), 40, 1_500).await;
    let lines = export(&source.url(), &[]);
    let whole = source.file("all.jsonl");
    write_lines(&whole, &lines);

    // The first 730 lines and half of line 731, as a killed copy would leave it.
    let cut = source.file("cut.jsonl");
    let mut body = lines[..730].join("\n");
    body.push('\n');
    body.push_str(&lines[730][..lines[730].len() / 2]);
    std::fs::write(&cut, body).expect("write cut file");

    // Batches of 100 that also end where the tenant changes: those closed before line 731
    // are written.
    let tenants: Vec<String> = lines[..730]
        .iter()
        .map(|l| comparable(l)["tenant"].as_str().expect("tenant").to_owned())
        .collect();
    let written = closed_batches(&tenants, 100);
    assert!(written > 0 && written < 730, "{written}");

    let target = Sqlite::new();
    let (code, summary, stderr) = import(&target.url(), &cut, &["--batch", "100"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("line 731: invalid JSON"), "{stderr}");
    assert_eq!(summary["status"], "invalid");
    assert_eq!(summary["line"], json!(731));
    assert_eq!(summary["events"], json!(written), "{summary}");
    let store = open_raw(&target.url()).await;
    assert_exactly_once(&store, written).await;

    let (code, summary, stderr) = import(&target.url(), &whole, &["--batch", "100"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["new"], json!(count - written));
    assert_eq!(summary["duplicates"], json!(written));
    assert_exactly_once(&store, count).await;
    assert_eq!(
        comparables(&export(&target.url(), &[])),
        comparables(&lines)
    );

    // Once more, in other batch sizes: nothing new.
    let (code, summary, stderr) = import(&target.url(), &whole, &["--batch", "333"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["new"], json!(0));
    assert_eq!(summary["duplicates"], json!(count));
    assert_exactly_once(&store, count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_import_resumes_without_duplicates() {
    let source = Sqlite::new();
    let count = seed(&source.url(), 80, 5_000).await;
    let lines = export(&source.url(), &[]);
    let whole = source.file("all.jsonl");
    write_lines(&whole, &lines);

    let target = Sqlite::new();
    let store = open_raw(&target.url()).await;
    for round in 0..3 {
        // Feed most of the file through stdin and SIGKILL the import while it appends.
        let mut child = Command::new(BIN)
            .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
            .args(["--store", &target.url(), "import", "-", "--batch", "20"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start import");
        let mut stdin = child.stdin.take().expect("stdin");
        let share = lines.len() * (round + 2) / 5;
        let mut body = lines[..share].join("\n");
        body.push('\n');
        let feeder = std::thread::spawn(move || {
            // The import may be killed before it read everything: a broken pipe is fine.
            let _ = stdin.write_all(body.as_bytes());
            stdin
        });
        let before = stored(&store).await.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.head_position().await.expect("head") as usize <= before + 100 {
            assert!(Instant::now() < deadline, "the import never appended");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "still running"
        );
        let status = Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = child.wait().expect("wait");
        assert!(!exit.success());
        drop(feeder.join().expect("feeder"));
        let events = stored(&store).await;
        // Whatever was written is a prefix of the source, whole batches only.
        assert!(events.len() < lines.len());
        assert_eq!(
            events
                .iter()
                .map(|e| comparable(&serde_json::to_string(e).expect("json")))
                .collect::<Vec<_>>(),
            comparables(&lines[..events.len()])
        );
    }

    let (code, summary, stderr) = import(&target.url(), &whole, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["events"], json!(count));
    assert_exactly_once(&store, count).await;
    assert_eq!(
        comparables(&export(&target.url(), &[])),
        comparables(&lines)
    );
    replay_ok(&target.url(), &["verify"]);
}

/// One invalid line as line 251 of 300, in batches of 100.
fn refused(lines: &[String], bad: &str, extra: &[&str], expected: &[&str]) {
    refused_after(lines, bad, extra, expected, 200);
}

/// As [`refused`], with `stored` events stored before the line.
fn refused_after(lines: &[String], bad: &str, extra: &[&str], expected: &[&str], stored: u64) {
    let target = Sqlite::new();
    let file = target.file("bad.jsonl");
    let mut body: Vec<String> = lines[..250].to_vec();
    body.push(bad.to_owned());
    body.extend_from_slice(&lines[250..300]);
    write_lines(&file, &body);
    let mut args = vec!["--batch", "100"];
    args.extend_from_slice(extra);
    let (code, summary, stderr) = import(&target.url(), &file, &args);
    assert_eq!(code, 1, "{bad}: {stderr}");
    assert!(stderr.contains("line 251: "), "{bad}: {stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{bad}: {part:?} not in {stderr}");
    }
    assert_eq!(summary["line"], json!(251));
    assert_eq!(summary["events"], json!(stored), "{summary}");
    // Nothing of the refused line's batch is stored.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = open_raw(&target.url()).await;
        assert_exactly_once(&store, stored as usize).await;
    });
}

fn edited(line: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut value: Value = serde_json::from_str(line).expect("json");
    edit(value.as_object_mut().expect("object"));
    value.to_string()
}

#[test]
fn invalid_lines_stop_the_import_before_their_batch() {
    let source = Sqlite::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(seed(&source.url(), 30, 1_200));
    // One tenant, so that the batches are exactly 100 lines.
    let mut lines = export(&source.url(), &["--tenant", "acme"]);
    lines.truncate(300);
    assert_eq!(lines.len(), 300);
    let model = &lines[250];

    refused(
        &lines,
        r#"{"tenant":"acme","stream_id":"#,
        &[],
        &["invalid JSON", "EOF"],
    );
    refused(&lines, "[1, 2]", &[], &["must be a JSON object"]);
    refused(
        &lines,
        &edited(model, |e| {
            e.insert("event_type".into(), json!("NoSuchEvent"));
        }),
        &[],
        &["event_type: unknown event type `NoSuchEvent`"],
    );
    refused(
        &lines,
        &edited(model, |e| {
            e.remove("stream_id");
        }),
        &[],
        &["stream_id: missing"],
    );
    refused(
        &lines,
        &edited(model, |e| {
            e.remove("occurred_at");
        }),
        &[],
        &["occurred_at: missing"],
    );
    refused(
        &lines,
        &json!({
            "tenant": "acme", "stream_id": "customer-c-1", "event_id": Uuid::new_v4(),
            "event_type": "OrderPlaced", "schema_version": 1,
            "data": {"customer_id": "c-1", "order_id": "o-x", "currency": "USD"},
            "metadata": {}, "occurred_at": "2025-03-01T10:00:00Z"
        })
        .to_string(),
        &[],
        &["OrderPlaced: data.amount", "missing"],
    );
    refused(
        &lines,
        &edited(model, |e| {
            e.insert("stream_id".into(), json!("customer-somebody-else"));
        }),
        &[],
        &["stream_id: \"customer-somebody-else\" does not match the event"],
    );
    refused(
        &lines,
        &edited(model, |e| {
            e.insert("schema_version".into(), json!(7));
        }),
        &[],
        &["schema_version: ", "schema version 7 is not supported"],
    );
    refused(
        &lines,
        &edited(model, |e| {
            e.insert("metadata".into(), json!({"actor": 5}));
        }),
        &[],
        &["metadata: "],
    );
    refused(
        &lines,
        &edited(model, |e| {
            e.insert("comment".into(), json!("hi"));
        }),
        &[],
        &["unknown member \"comment\""],
    );
    let ingest = r#"{"type":"LeadCaptured","data":{"lead_id":"l-77","email":"x@example.com","source":"referral"}}"#;
    refused(&lines, ingest, &[], &["needs --tenant"]);
    refused(
        &lines,
        r#"{"type":"LeadCaptured","data":{"lead_id":"l-77","email":"x@example.com","source":"referral"},"occurred_at":"yesterday"}"#,
        &["--tenant", "acme"],
        &["occurred_at: \"yesterday\" is not an RFC 3339 time"],
    );

    // An id reused with another type in its stream: the ingest decision refuses it, and the
    // line is named. An API-format line among exported ones starts a batch of its own (the
    // API's decision judges and appends it), so the 50 exported lines before it are stored.
    let id = Uuid::new_v4();
    let mut with_capture = lines.clone();
    with_capture[10] = json!({"id": id, "type": "LeadCaptured",
        "data": {"lead_id": "l-reuse", "email": "r@example.com", "source": "referral"}})
    .to_string();
    let reuse = json!({"id": id, "type": "LeadQualified", "data": {"lead_id": "l-reuse"}});
    refused_after(
        &with_capture,
        &reuse.to_string(),
        &["--tenant", "acme"],
        &["is already used by a LeadCaptured event"],
        250,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_format_lines_import_with_a_tenant_and_again_as_duplicates() {
    let target = Sqlite::new();
    let fixed = Uuid::parse_str("0195d7a4-0000-7000-8000-000000000042").expect("uuid");
    let exported_other_tenant = json!({
        "tenant": "globex", "stream_id": "lead-l-g1", "revision": 0, "position": 99,
        "event_id": Uuid::from_u128(7), "event_type": "LeadCaptured", "schema_version": 1,
        "data": {"source": "referral", "lead_id": "l-g1", "email": "g@example.com"},
        "metadata": {"actor": "u-9"}, "occurred_at": "2025-02-03T04:05:06.123456789Z",
        "recorded_at": "2025-02-03T04:05:07Z", "hash": "00"
    });
    let lines = [
        json!({"id": fixed, "type": "CustomerRegistered",
            "data": {"customer_id": "c-900", "kind": "person", "name": "Ada Lovelace",
                     "email": "ada@example.com"},
            "occurred_at": "2026-03-02T10:15:00+01:00",
            "metadata": {"actor": "u-1", "source": "import-test", "correlation_id": "b1"}})
        .to_string(),
        r#"{"type":"CustomerProfileUpdated","data":{"customer_id":"c-900","segment":"enterprise","owner":"u-2"},"occurred_at":"2026-03-02T10:15:00Z"}"#.to_owned(),
        String::new(),
        "   ".to_owned(),
        exported_other_tenant.to_string(),
        r#"{"id":null,"type":"OrderPlaced","data":{"customer_id":"c-900","order_id":"o-1001","amount":"11.77","currency":"USD"}}"#.to_owned(),
        // The same text again on another line is another event (one the rules allow twice:
        // the same interaction id again would be refused, as the API refuses it).
        r#"{"type":"CustomerProfileUpdated","data":{"customer_id":"c-900","segment":"enterprise","owner":"u-2"},"occurred_at":"2026-03-02T10:15:00Z"}"#.to_owned(),
    ];
    let file = target.file("ingest.jsonl");
    write_lines(&file, &lines);

    let (code, summary, stderr) = import(&target.url(), &file, &["--tenant", "acme"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["new"], json!(5), "{summary}");
    assert_eq!(summary["duplicates"], json!(0));
    let store = open(&target.url()).await;
    let events = stored(&store).await;
    let first = &events[0];
    assert_eq!(first.event_id, fixed);
    assert_eq!(first.tenant.as_str(), "acme");
    assert_eq!(first.stream_id.as_str(), "customer-c-900");
    assert_eq!(first.occurred_at.to_rfc3339(), "2026-03-02T09:15:00+00:00");
    assert_eq!(
        first.metadata.get(),
        r#"{"actor":"u-1","correlation_id":"b1","source":"import-test"}"#
    );
    let other = &events[2];
    assert_eq!(other.tenant.as_str(), "globex");
    assert_eq!(other.event_id, Uuid::from_u128(7));
    assert_eq!(
        other.data.get(),
        r#"{"email":"g@example.com","lead_id":"l-g1","source":"referral"}"#
    );
    assert_eq!(other.metadata.get(), r#"{"actor":"u-9"}"#);
    assert_eq!(
        other.occurred_at.to_rfc3339(),
        "2025-02-03T04:05:06.123456+00:00"
    );
    assert_eq!(other.position, 3, "the store assigns its own position");
    assert_eq!(events[4].stream_id.as_str(), "customer-c-900");
    assert_eq!(events[4].revision, 3);
    assert_ne!(events[1].event_id, events[4].event_id);

    // Derived ids are stable: a second run stores nothing.
    let (code, summary, stderr) = import(&target.url(), &file, &["--tenant", "acme"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["new"], json!(0), "{summary}");
    assert_eq!(summary["duplicates"], json!(5));
    assert_exactly_once(&store, 5).await;

    // From stdin, too.
    let mut child = Command::new(BIN)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .args(["--store", &target.url(), "--json", "import", "-"])
        .args(["--tenant", "acme"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start import");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(std::fs::read(&file).expect("read").as_slice())
        .expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["duplicates"], json!(5), "{summary}");
    assert_exactly_once(&store, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2() {
    let target = Sqlite::new();
    let file = target.file("empty.jsonl");
    std::fs::write(&file, "").expect("write");
    let path = file.to_str().expect("utf-8");
    for args in [
        vec!["import", path, "--batch", "0"],
        vec!["import", path, "--batch", "10001"],
        vec!["import", path, "--tenant", "a/b"],
        vec!["import", "/nonexistent/file.jsonl"],
    ] {
        let output = replay(&target.url(), &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    // An empty file imports nothing, successfully.
    let (code, summary, stderr) = import(&target.url(), &file, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["events"], json!(0));
}

/// The benchmark store: `crm_tests::bench_data::generate(CRM_BENCH_CUSTOMERS (100000), 42)`
/// (ten events per customer, one tenant) appended to the SQLite store at `CRM_BENCH_STORE`;
/// or, with `CRM_BENCH_HISTORY_STEPS=n`, the two-tenant `crm_data::history` of about n events,
/// whose tenants interleave (so an import of it runs in short batches). Run with
/// `cargo test --release -p crm-replay --test export_import -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds a large store for timing export and import"]
async fn build_the_benchmark_store() {
    let Ok(path) = std::env::var("CRM_BENCH_STORE") else {
        eprintln!("set CRM_BENCH_STORE=/path/events.db");
        return;
    };
    let number = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let store = open(&format!("sqlite://{path}")).await;
    let started = Instant::now();
    let steps = number("CRM_BENCH_HISTORY_STEPS", 0);
    if steps > 0 {
        append_all(store.as_ref(), &history(42, steps / 20, steps)).await;
    } else {
        let customers = number("CRM_BENCH_CUSTOMERS", 100_000) as u64;
        let tenant = TenantId::parse("bench").expect("tenant");
        for chunk in crm_tests::bench_data::generate(customers, 42).chunks(100) {
            let events = chunk
                .iter()
                .flat_map(|c| c.events.iter().map(|e| (c.stream.clone(), e.clone())))
                .collect();
            store
                .append_batch(&tenant, Vec::new(), events)
                .await
                .expect("append");
        }
    }
    eprintln!(
        "{} events in {:.1}s",
        store.head_position().await.expect("head"),
        started.elapsed().as_secs_f64()
    );
}
