//! Signed tree heads against an intruder who recomputes the hash chains, through the real
//! `crm-replay`: a store is filled in two halves, the audit tree built after each (the tree
//! worker, in-process) and a head taken with `crm-replay audit head` each time; then the log
//! is changed with plain SQL (guards dropped), every affected chain and stream head
//! recomputed so `crm-replay verify` finds nothing, and `crm-replay audit verify --head`
//! must still exit 1 naming the first event (stream and revision) or the tree size that
//! differs. `audit check-proof` accepts good proofs and refuses a flipped hash, a flipped
//! signature and another key. SQLite for every attack, PostgreSQL for (a) and (d).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crm_core::audit::HeadSigner;
use crm_core::envelope::{RecordedEvent, StreamId, TenantId};
use crm_core::store::chain::{ChainFields, GENESIS, event_hash};
use crm_core::store::{Direction, Scope, StoreUrl, StreamStart, open_store};
use crm_projections::ReadDb;
use crm_tests::crm_data::{append_all, history};
use crm_tests::postgres::TestDatabase;
use serde_json::Value;
use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `crm-replay ARGS` with a clean environment (the test master key, no signing key
/// from the environment).
async fn replay<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let mut command = Command::new(BIN);
    for name in [
        "CRM_STORE",
        "CRM_DATA_DIR",
        "CRM_MASTER_KEY_FILE",
        "CRM_SIGNING_KEY",
        "CRM_SIGNING_KEY_FILE",
    ] {
        command.env_remove(name);
    }
    command
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .env("CRM_LOG", "warn")
        .env("NO_COLOR", "1")
        .args(args);
    tokio::task::spawn_blocking(move || command.output().expect("run crm-replay"))
        .await
        .expect("join")
}

fn acme() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

fn store_arg(url: &StoreUrl) -> String {
    match url {
        StoreUrl::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        StoreUrl::Postgres { url } => url.clone(),
    }
}

/// Runs the tree worker over the raw store until the trees cover the log's head.
async fn build_tree(url: &StoreUrl) {
    let raw = open_store(url).await.expect("raw store");
    let head = raw.head_position().await.expect("head");
    let db = ReadDb::open(url).await.expect("read db");
    let worker = crm_projections::audit::spawn(raw, db.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while crm_projections::audit::covered(&db).await.unwrap_or(0) < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tree worker did not reach {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await;
    db.close().await;
}

/// A store over tenants acme and globex with two heads of acme, taken after each half of
/// the history.
struct Fixture {
    url: StoreUrl,
    dir: tempfile::TempDir,
    key_file: PathBuf,
    public_key: PathBuf,
    heads: PathBuf,
    head1: PathBuf,
    head2: PathBuf,
    size1: u64,
    size2: u64,
    /// Acme's events as stored, in log order.
    events: Vec<RecordedEvent>,
    _database: Option<TestDatabase>,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = StoreUrl::Sqlite {
            path: dir.path().join("events.db"),
            durability: crm_core::store::sqlite::Durability::Normal,
        };
        Fixture::fill(url, dir, None).await
    }

    async fn postgres(test: &str) -> Option<Fixture> {
        let database = TestDatabase::create(test).await?;
        let url = StoreUrl::parse(database.url()).expect("url");
        let dir = tempfile::tempdir().expect("temp dir");
        Some(Fixture::fill(url, dir, Some(database)).await)
    }

    async fn fill(url: StoreUrl, dir: tempfile::TempDir, database: Option<TestDatabase>) -> Self {
        let key_file = dir.path().join("keys").join("signing.key");
        HeadSigner::generate()
            .expect("key")
            .write_new_file(&key_file)
            .expect("write key");
        let store = crm_tests::open_test_store(&url).await.expect("store");
        let events = history(7, 24, 240);
        let half = events.len() / 2;
        let heads = dir.path().join("heads");
        let mut fixture = Fixture {
            url,
            key_file,
            public_key: dir.path().join("public.json"),
            head1: heads.join("acme").join("head-1.json"),
            head2: heads.join("acme").join("head-2.json"),
            heads,
            dir,
            size1: 0,
            size2: 0,
            events: Vec::new(),
            _database: database,
        };
        std::fs::create_dir_all(fixture.heads.join("acme")).expect("heads dir");
        append_all(store.as_ref(), &events[..half]).await;
        fixture.size1 = fixture.take_head(&fixture.head1.clone()).await;
        append_all(store.as_ref(), &events[half..]).await;
        fixture.size2 = fixture.take_head(&fixture.head2.clone()).await;
        assert!(fixture.size1 > 10 && fixture.size2 > fixture.size1);

        let output = fixture
            .audit(&["public-key", "--json"], &fixture.key_args())
            .await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        std::fs::write(&fixture.public_key, &output.stdout).expect("public key");
        let raw = open_store(&fixture.url).await.expect("raw store");
        fixture.events = raw
            .read_all(&Scope::Tenant(acme()), 0, 100_000)
            .await
            .expect("read");
        assert_eq!(fixture.events.len() as u64, fixture.size2);
        fixture
    }

    fn key_args(&self) -> Vec<String> {
        vec![
            "--signing-key-file".into(),
            self.key_file.display().to_string(),
        ]
    }

    /// `crm-replay audit ARGS EXTRA --store STORE`.
    async fn audit(&self, args: &[&str], extra: &[String]) -> Output {
        let mut all: Vec<String> = vec!["audit".into()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all.extend(extra.iter().cloned());
        all.push("--store".into());
        all.push(store_arg(&self.url));
        replay(&all).await
    }

    /// Builds the tree and takes a head of acme into `out`; returns its tree size.
    async fn take_head(&self, out: &Path) -> u64 {
        build_tree(&self.url).await;
        let out_arg = out.display().to_string();
        let output = self
            .audit(
                &["head", "--tenant", "acme", "--out", &out_arg],
                &self.key_args(),
            )
            .await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        let head: Value =
            serde_json::from_str(&std::fs::read_to_string(out).expect("head")).expect("json");
        head["tree_size"].as_u64().expect("tree_size")
    }

    /// `audit verify --tenant acme --head HEADS_DIR --public-key PUBLIC`.
    async fn verify_heads(&self, json: bool) -> Output {
        let heads = self.heads.display().to_string();
        let public = self.public_key.display().to_string();
        let json: &[&str] = if json { &["--json"] } else { &[] };
        self.verify_against_with(&heads, &public, json).await
    }

    /// `audit verify --tenant acme --head HEAD --public-key KEY`.
    async fn verify_against(&self, head: &str, key: &str) -> Output {
        self.verify_against_with(head, key, &[]).await
    }

    async fn verify_against_with(&self, head: &str, key: &str, more: &[&str]) -> Output {
        let mut args = vec![
            "verify",
            "--tenant",
            "acme",
            "--head",
            head,
            "--public-key",
            key,
        ];
        args.extend_from_slice(more);
        self.audit(&args, &[]).await
    }

    /// `crm-replay verify --tenant acme`: the chains alone.
    async fn chains_verify(&self) -> Output {
        replay(&[
            "verify",
            "--tenant",
            "acme",
            "--store",
            &store_arg(&self.url),
        ])
        .await
    }

    /// An acme event of `event_type` covered by the first head; with `middle`, one with
    /// events of its stream before and after it.
    fn victim(&self, event_type: &str, middle: bool) -> &RecordedEvent {
        self.events[..self.size1 as usize]
            .iter()
            .filter(|e| e.event_type == event_type)
            .find(|e| {
                !middle
                    || (e.revision > 0
                        && self
                            .stream(&e.stream_id)
                            .iter()
                            .any(|later| later.revision > e.revision))
            })
            .unwrap_or_else(|| panic!("an acme {event_type} (middle: {middle})"))
    }

    fn stream(&self, stream: &StreamId) -> Vec<&RecordedEvent> {
        self.events
            .iter()
            .filter(|e| e.stream_id == *stream)
            .collect()
    }

    async fn intruder(&self) -> Intruder {
        Intruder::connect(&self.url).await
    }
}

/// A value bound to a statement.
enum Arg {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Plain SQL on the store with the append-only guard dropped (SQLite) or disabled
/// (PostgreSQL), and the chain recomputation a thorough intruder adds.
enum Intruder {
    Sqlite(sqlx::SqliteConnection, StoreUrl),
    Postgres(sqlx::PgConnection, StoreUrl),
}

impl Intruder {
    async fn connect(url: &StoreUrl) -> Intruder {
        match url {
            StoreUrl::Sqlite { path, .. } => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .expect("connect");
                sqlx::raw_sql(
                    "DROP TRIGGER IF EXISTS crm_events_append_only_update; \
                     DROP TRIGGER IF EXISTS crm_events_append_only_delete;",
                )
                .execute(&mut conn)
                .await
                .expect("drop the guard");
                Intruder::Sqlite(conn, url.clone())
            }
            StoreUrl::Postgres { url: pg } => {
                let mut conn = sqlx::PgConnection::connect(pg).await.expect("connect");
                sqlx::raw_sql("ALTER TABLE crm_events DISABLE TRIGGER crm_events_append_only")
                    .execute(&mut conn)
                    .await
                    .expect("disable the guard");
                Intruder::Postgres(conn, url.clone())
            }
        }
    }

    /// Runs the SQLite or the PostgreSQL form of a statement; returns the rows affected.
    async fn exec(&mut self, sqlite: &str, postgres: &str, args: Vec<Arg>) -> u64 {
        match self {
            Intruder::Sqlite(conn, _) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sqlite.to_owned()));
                for arg in args {
                    query = match arg {
                        Arg::Int(v) => query.bind(v),
                        Arg::Text(v) => query.bind(v),
                        Arg::Bytes(v) => query.bind(v),
                    };
                }
                query
                    .execute(&mut *conn)
                    .await
                    .expect("tamper")
                    .rows_affected()
            }
            Intruder::Postgres(conn, _) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(postgres.to_owned()));
                for arg in args {
                    query = match arg {
                        Arg::Int(v) => query.bind(v),
                        Arg::Text(v) => query.bind(v),
                        Arg::Bytes(v) => query.bind(v),
                    };
                }
                query
                    .execute(&mut *conn)
                    .await
                    .expect("tamper")
                    .rows_affected()
            }
        }
    }

    fn url(&self) -> &StoreUrl {
        match self {
            Intruder::Sqlite(_, url) | Intruder::Postgres(_, url) => url,
        }
    }

    /// Recomputes `stream`'s chain from its stored rows and sets its recorded head, so the
    /// hash chains verify again.
    async fn rechain(&mut self, tenant: &TenantId, stream: &StreamId) {
        let raw = open_store(self.url()).await.expect("raw store");
        let events = raw
            .read_stream(
                tenant,
                stream,
                Direction::Forwards,
                StreamStart::Boundary,
                100_000,
            )
            .await
            .expect("read stream");
        let mut previous = GENESIS;
        for event in &events {
            let hash = event_hash(
                &previous,
                &ChainFields {
                    tenant: event.tenant.as_str(),
                    stream_id: event.stream_id.as_str(),
                    revision: event.revision,
                    position: event.position,
                    event_id: event.event_id,
                    event_type: &event.event_type,
                    schema_version: event.schema_version,
                    data: event.data.get(),
                    metadata: event.metadata.get(),
                    occurred_at_micros: event.occurred_at.timestamp_micros(),
                    recorded_at_micros: event.recorded_at.timestamp_micros(),
                },
            );
            self.exec(
                "UPDATE crm_events SET hash = ? WHERE position = ?",
                "UPDATE crm_events SET hash = $1 WHERE position = $2",
                vec![Arg::Bytes(hash.to_vec()), Arg::Int(event.position as i64)],
            )
            .await;
            previous = hash;
        }
        let keys = || {
            vec![
                Arg::Text(tenant.as_str().to_owned()),
                Arg::Text(stream.as_str().to_owned()),
            ]
        };
        match events.last() {
            Some(last) => {
                let mut args = vec![
                    Arg::Int(last.revision as i64),
                    Arg::Bytes(previous.to_vec()),
                ];
                args.extend(keys());
                let done = self
                    .exec(
                        "UPDATE crm_streams SET revision = ?, hash = ? \
                         WHERE tenant = ? AND stream_id = ?",
                        "UPDATE crm_streams SET revision = $1, hash = $2 \
                         WHERE tenant = $3 AND stream_id = $4",
                        args,
                    )
                    .await;
                assert_eq!(done, 1, "the stream's recorded head");
            }
            None => {
                self.exec(
                    "DELETE FROM crm_streams WHERE tenant = ? AND stream_id = ?",
                    "DELETE FROM crm_streams WHERE tenant = $1 AND stream_id = $2",
                    keys(),
                )
                .await;
            }
        }
    }

    async fn close(self) {
        match self {
            Intruder::Sqlite(conn, _) => conn.close().await.expect("close"),
            Intruder::Postgres(conn, _) => conn.close().await.expect("close"),
        }
    }
}

/// The chains alone verify (the intruder recomputed them); the heads do not, and the first
/// line of `audit verify` contains `named`.
async fn heads_catch(fixture: &Fixture, named: &str) -> Value {
    let chains = fixture.chains_verify().await;
    assert_eq!(
        chains.status.code(),
        Some(0),
        "the intruder fooled the chains: {}{}",
        text(&chains.stdout),
        text(&chains.stderr)
    );
    let output = fixture.verify_heads(false).await;
    let shown = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{shown}{}",
        text(&output.stderr)
    );
    let first = shown.lines().next().unwrap_or_default();
    assert!(first.starts_with("BROKEN: "), "{shown}");
    assert!(
        first.contains(named),
        "first line {first:?} should name {named:?}:\n{shown}"
    );
    let output = fixture.verify_heads(true).await;
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["chains"]["first_failure"], Value::Null, "{report}");
    report
}

fn named_event(event: &RecordedEvent) -> String {
    format!("revision {} of stream {}", event.revision, event.stream_id)
}

/// (a) An order's amount changed, its chain and stream head recomputed.
async fn changed_amount(fixture: Fixture) {
    let victim = fixture.victim("OrderPlaced", false).clone();
    let mut intruder = fixture.intruder().await;
    let done = intruder
        .exec(
            "UPDATE crm_events SET data = json_set(data, '$.amount', ?) WHERE position = ?",
            "UPDATE crm_events SET data = jsonb_set(data::jsonb, '{amount}', to_jsonb($1::text))::json \
             WHERE position = $2",
            vec![
                Arg::Text("987654.00".into()),
                Arg::Int(victim.position as i64),
            ],
        )
        .await;
    assert_eq!(done, 1);
    intruder.rechain(&acme(), &victim.stream_id).await;
    intruder.close().await;
    let report = heads_catch(&fixture, &named_event(&victim)).await;
    let first = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["kind"] == "first_changed_event")
        .unwrap_or_else(|| panic!("the changed event is named: {report}"));
    assert_eq!(first["stream"], victim.stream_id.as_str(), "{report}");
    assert_eq!(first["revision"], victim.revision, "{report}");
    assert_eq!(first["position"], victim.position, "{report}");
}

/// (d) A middle event of a stream deleted, the later ones renumbered, the chain recomputed.
async fn deleted_middle(fixture: Fixture) {
    let victim = fixture.victim("OrderPlaced", true).clone();
    let later: Vec<RecordedEvent> = fixture
        .stream(&victim.stream_id)
        .into_iter()
        .filter(|e| e.revision > victim.revision)
        .cloned()
        .collect();
    assert!(!later.is_empty(), "a middle event");
    let mut intruder = fixture.intruder().await;
    let done = intruder
        .exec(
            "DELETE FROM crm_events WHERE position = ?",
            "DELETE FROM crm_events WHERE position = $1",
            vec![Arg::Int(victim.position as i64)],
        )
        .await;
    assert_eq!(done, 1);
    for event in &later {
        intruder
            .exec(
                "UPDATE crm_events SET revision = revision - 1 WHERE position = ?",
                "UPDATE crm_events SET revision = revision - 1 WHERE position = $1",
                vec![Arg::Int(event.position as i64)],
            )
            .await;
    }
    intruder.rechain(&acme(), &victim.stream_id).await;
    intruder.close().await;
    let report = heads_catch(&fixture, &named_event(&victim)).await;
    assert_eq!(report["log_size"], fixture.size2 - 1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untampered_store_holds_against_every_head() {
    let fixture = Fixture::sqlite().await;
    let output = fixture.verify_heads(false).await;
    let shown = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{shown}{}",
        text(&output.stderr)
    );
    assert!(shown.starts_with("intact: "), "{shown}");
    assert!(
        shown.contains(&format!("tree sizes {}, {}", fixture.size1, fixture.size2)),
        "{shown}"
    );
    let output = fixture.verify_heads(true).await;
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["log_size"], fixture.size2, "{report}");
    assert_eq!(
        report["heads"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );

    // Heads named one by one, and no --public-key: the local key, said on stderr.
    let (one, two) = (
        fixture.head1.display().to_string(),
        fixture.head2.display().to_string(),
    );
    let output = fixture
        .audit(
            &["verify", "--tenant", "acme", "--head", &one, "--head", &two],
            &fixture.key_args(),
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("local signing key"),
        "{}",
        text(&output.stderr)
    );

    // A head of another tenant named as a file is a finding; a directory holding only
    // other tenants' heads is refused.
    let output = fixture
        .audit(
            &["verify", "--tenant", "globex", "--head", &one],
            &fixture.key_args(),
        )
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("tenant acme's, not globex's"),
        "{}",
        text(&output.stdout)
    );
    let heads = fixture.heads.display().to_string();
    let output = fixture
        .audit(
            &["verify", "--tenant", "globex", "--head", &heads],
            &fixture.key_args(),
        )
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("no head of tenant globex"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_under_another_key_or_with_a_flipped_signature_are_refused() {
    let fixture = Fixture::sqlite().await;
    // A second key signs a head of the same store: checked under the first key it fails.
    let other_key = fixture.dir.path().join("other.key");
    HeadSigner::generate()
        .expect("key")
        .write_new_file(&other_key)
        .expect("write");
    let other_head = fixture.dir.path().join("other-head.json");
    let out = other_head.display().to_string();
    let output = fixture
        .audit(
            &["head", "--tenant", "acme", "--out", &out],
            &["--signing-key-file".into(), other_key.display().to_string()],
        )
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let public = fixture.public_key.display().to_string();
    let output = fixture.verify_against(&out, &public).await;
    let shown = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.starts_with("BROKEN: signature: "), "{shown}");
    assert!(shown.contains("names the signing key"), "{shown}");

    // A flipped signature under the right key.
    let mut head: Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture.head2).expect("head"))
            .expect("json");
    let signature = head["signature"].as_str().expect("signature").to_owned();
    let flipped = flip_base64(&signature);
    head["signature"] = Value::from(flipped);
    let forged = fixture.dir.path().join("forged-head.json");
    std::fs::write(&forged, head.to_string()).expect("write");
    let forged_arg = forged.display().to_string();
    let output = fixture.verify_against(&forged_arg, &public).await;
    let shown = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(shown.contains("does not verify"), "{shown}");

    // An existing --out is never overwritten without --force.
    let before = std::fs::read(&fixture.head1).expect("head");
    let head1 = fixture.head1.display().to_string();
    let output = fixture
        .audit(
            &["head", "--tenant", "acme", "--out", &head1],
            &fixture.key_args(),
        )
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--force"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read(&fixture.head1).expect("head"), before);
    // Never over the signing key, even forced: the one named, or the default beside the store.
    let beside = fixture.dir.path().join("signing.key");
    std::fs::copy(&fixture.key_file, &beside).expect("copy");
    let key_before = std::fs::read(&fixture.key_file).expect("key");
    for target in [&fixture.key_file, &beside] {
        let target_arg = target.display().to_string();
        let output = fixture
            .audit(
                &["head", "--tenant", "acme", "--force", "--out", &target_arg],
                &fixture.key_args(),
            )
            .await;
        assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
        assert!(
            text(&output.stderr).contains("store's own file"),
            "{}",
            text(&output.stderr)
        );
        assert_eq!(std::fs::read(target).expect("key"), key_before);
    }
}

/// One bit of the first decoded byte flipped, re-encoded.
fn flip_base64(text: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(text).expect("base64");
    bytes[0] ^= 1;
    engine.encode(bytes)
}

/// One hex digit of a hash changed.
fn flip_hex(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars[0] = if chars[0] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_amount_with_recomputed_chains_is_named() {
    changed_amount(Fixture::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_changed_amount_with_recomputed_chains_is_named() {
    let Some(fixture) =
        Fixture::postgres("postgres_a_changed_amount_with_recomputed_chains_is_named").await
    else {
        return;
    };
    // A PostgreSQL store has no default key file: the key must be given.
    let output = replay(&["audit", "public-key", "--store", &store_arg(&fixture.url)]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("no default key file"),
        "{}",
        text(&output.stderr)
    );
    changed_amount(fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_middle_event_with_recomputed_chains_is_named() {
    deleted_middle(Fixture::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_deleted_middle_event_with_recomputed_chains_is_named() {
    let Some(fixture) =
        Fixture::postgres("postgres_a_deleted_middle_event_with_recomputed_chains_is_named").await
    else {
        return;
    };
    deleted_middle(fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_customer_name_with_recomputed_chains_is_named() {
    let fixture = Fixture::sqlite().await;
    let registered: Vec<&RecordedEvent> = fixture.events[..fixture.size1 as usize]
        .iter()
        .filter(|e| e.event_type == "CustomerRegistered")
        .collect();
    assert!(registered.len() >= 2);
    let victim = registered[1].clone();
    // The sealed name of another customer: valid-looking ciphertext, not this one's.
    let donor: Value = serde_json::from_str(registered[0].data.get()).expect("data");
    let sealed = donor["name"].clone();
    assert_ne!(sealed, Value::Null);
    assert!(
        !sealed.to_string().contains("Customer "),
        "the name is sealed at rest"
    );
    for forged in [sealed.to_string(), "\"Mallory Forged\"".to_owned()] {
        let mut intruder = fixture.intruder().await;
        let done = intruder
            .exec(
                "UPDATE crm_events SET data = json_set(data, '$.name', json(?)) WHERE position = ?",
                "",
                vec![Arg::Text(forged), Arg::Int(victim.position as i64)],
            )
            .await;
        assert_eq!(done, 1);
        intruder.rechain(&acme(), &victim.stream_id).await;
        intruder.close().await;
        heads_catch(&fixture, &named_event(&victim)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_last_event_is_named() {
    let fixture = Fixture::sqlite().await;
    let victim = fixture.events.last().expect("events").clone();
    let mut intruder = fixture.intruder().await;
    let done = intruder
        .exec(
            "DELETE FROM crm_events WHERE position = ?",
            "",
            vec![Arg::Int(victim.position as i64)],
        )
        .await;
    assert_eq!(done, 1);
    intruder.rechain(&acme(), &victim.stream_id).await;
    intruder.close().await;
    let report = heads_catch(&fixture, &named_event(&victim)).await;
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"missing_events"), "{report}");
    assert!(kinds.contains(&"first_missing_event"), "{report}");
    // The first head still holds: the log extends it.
    assert_eq!(report["heads"][0]["holds"], true, "{report}");
    assert_eq!(report["heads"][1]["holds"], false, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_reimported_with_an_edited_amount_and_a_rebuilt_tree_is_caught() {
    let fixture = Fixture::sqlite().await;
    let store = store_arg(&fixture.url);
    let victim = fixture.victim("OrderPlaced", false).clone();
    let dir = fixture.dir.path();
    let (export, keys) = (dir.join("export.jsonl"), dir.join("keys.json"));
    let output = replay(&[
        "export".into(),
        "--out".into(),
        export.display().to_string(),
        "--keys-out".into(),
        keys.display().to_string(),
        "--store".into(),
        store.clone(),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    // One amount edited in the JSON Lines.
    let exported = std::fs::read_to_string(&export).expect("export");
    let mut edited = 0;
    let lines: Vec<String> = exported
        .lines()
        .map(|line| {
            let mut event: Value = serde_json::from_str(line).expect("line");
            if event["position"] == victim.position {
                assert_eq!(event["stream_id"], victim.stream_id.as_str());
                // The attacker rewrites the order whole: an amount its lines (if it had
                // any) would contradict is refused on import.
                event["data"]["amount"] = Value::from("987654.00");
                if let Some(data) = event["data"].as_object_mut() {
                    data.remove("lines");
                    data.remove("discount");
                }
                edited += 1;
                event.to_string()
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(edited, 1);
    std::fs::write(&export, lines.join("\n") + "\n").expect("write");

    // Imported into a new store, which then replaces the old one, its tree rebuilt.
    let new_dir = dir.join("new");
    std::fs::create_dir_all(&new_dir).expect("dir");
    let new_store = format!("sqlite://{}", new_dir.join("events.db").display());
    let output = replay(&[
        "import".into(),
        export.display().to_string(),
        "--keys-in".into(),
        keys.display().to_string(),
        "--store".into(),
        new_store,
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    for suffix in ["", "-wal", "-shm"] {
        let old = dir.join(format!("events.db{suffix}"));
        let _ = std::fs::remove_file(&old);
        let new = new_dir.join(format!("events.db{suffix}"));
        if new.exists() {
            std::fs::copy(&new, &old).expect("replace");
        }
    }
    build_tree(&fixture.url).await;

    let report = heads_catch(&fixture, &format!("{} events", fixture.size1)).await;
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"root_differs"), "{report}");
    assert!(kinds.contains(&"tree_rewritten"), "{report}");
    assert_eq!(
        report["findings"][0]["tree_size"], fixture.size1,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proof_accepts_good_proofs_and_refuses_flipped_ones_without_a_store() {
    let fixture = Fixture::sqlite().await;
    let db = ReadDb::open(&fixture.url).await.expect("read db");
    let raw = open_store(&fixture.url).await.expect("raw store");
    let event = fixture.victim("OrderPlaced", false).clone();
    let inclusion = crm_projections::audit::inclusion(
        &db,
        &raw,
        &acme(),
        &event.stream_id,
        event.revision,
        Some(fixture.size1),
    )
    .await
    .expect("inclusion proof");
    let consistency =
        crm_projections::audit::consistency(&db, &acme(), fixture.size1, Some(fixture.size2))
            .await
            .expect("consistency proof");
    let dir = fixture.dir.path();
    let write = |name: &str, value: &Value| {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).expect("write");
        path.display().to_string()
    };
    let inclusion_json = serde_json::to_value(&inclusion).expect("json");
    let consistency_json = serde_json::to_value(&consistency).expect("json");
    let good_inclusion = write("inclusion.json", &inclusion_json);
    let good_consistency = write("consistency.json", &consistency_json);
    let public = fixture.public_key.display().to_string();
    let (head1, head2) = (
        fixture.head1.display().to_string(),
        fixture.head2.display().to_string(),
    );
    // No store: the --store named does not exist, and nothing is opened.
    let check = |proof: String, head: String, key: String| async move {
        replay(&[
            "audit",
            "check-proof",
            "--proof",
            &proof,
            "--head",
            &head,
            "--public-key",
            &key,
            "--store",
            "sqlite:///nonexistent/events.db",
        ])
        .await
    };

    let output = check(good_inclusion.clone(), head1.clone(), public.clone()).await;
    let shown = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{shown}{}",
        text(&output.stderr)
    );
    assert!(
        shown.contains(&format!(
            "event stream {} revision {} is leaf {} of tenant acme's tree of {} events signed",
            event.stream_id, event.revision, inclusion.leaf_index, fixture.size1
        )),
        "{shown}"
    );
    let output = check(good_consistency.clone(), head2.clone(), public.clone()).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout).contains("extends its tree of"),
        "{}",
        text(&output.stdout)
    );

    // With the earlier head held: its signature, size and root must match the proof's start.
    let with_from = |from_head: String| {
        let (proof, head, key) = (good_consistency.clone(), head2.clone(), public.clone());
        async move {
            replay(&[
                "audit",
                "check-proof",
                "--proof",
                &proof,
                "--head",
                &head,
                "--from-head",
                &from_head,
                "--public-key",
                &key,
                "--store",
                "sqlite:///nonexistent/events.db",
            ])
            .await
        }
    };
    let output = with_from(head1.clone()).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout).contains("extends, unchanged, its tree of"),
        "{}",
        text(&output.stdout)
    );
    refused(&with_from(head2.clone()).await, "ask for the proof from=");
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture.head1).expect("read head"))
            .expect("head json");
    forged["root_hash"] = Value::from(consistency.to_root.clone());
    let forged = write("forged-head1.json", &forged);
    refused(
        &with_from(forged).await,
        "earlier head (--from-head) does not verify",
    );

    // The inclusion proof at size1 against the head at size2: cannot be checked there.
    let output = check(good_inclusion.clone(), head2.clone(), public.clone()).await;
    refused(&output, "cannot be checked against this head");

    // One hash flipped in each proof.
    let mut flipped = inclusion_json.clone();
    let node = flipped["audit_path"][0]
        .as_str()
        .expect("a path node")
        .to_owned();
    flipped["audit_path"][0] = Value::from(flip_hex(&node));
    let output = check(
        write("flipped-inclusion.json", &flipped),
        head1.clone(),
        public.clone(),
    )
    .await;
    refused(&output, "audit path does not lead");
    let mut flipped = consistency_json.clone();
    let node = flipped["proof"][0]
        .as_str()
        .expect("a proof node")
        .to_owned();
    flipped["proof"][0] = Value::from(flip_hex(&node));
    let output = check(
        write("flipped-consistency.json", &flipped),
        head2.clone(),
        public.clone(),
    )
    .await;
    refused(&output, "does not show");
    // The event's amount changed in the proof: its leaf no longer matches.
    let forged_text = std::fs::read_to_string(&good_inclusion)
        .expect("read")
        .replacen("\"amount\":\"", "\"amount\":\"9", 1);
    let forged_path = dir.join("forged-event.json");
    std::fs::write(&forged_path, forged_text).expect("write");
    let output = check(
        forged_path.display().to_string(),
        head1.clone(),
        public.clone(),
    )
    .await;
    refused(&output, "leaf_data is not");

    // A head with a flipped signature, and a head checked under another key.
    let mut head: Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture.head1).expect("head"))
            .expect("json");
    let signature = head["signature"].as_str().expect("signature").to_owned();
    head["signature"] = Value::from(flip_base64(&signature));
    let output = check(
        good_inclusion.clone(),
        write("flipped-head.json", &head),
        public.clone(),
    )
    .await;
    refused(&output, "the head does not verify");
    let other = HeadSigner::generate().expect("key").public();
    let output = check(good_inclusion.clone(), head1.clone(), other.base64()).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout).contains(&other.key_id()),
        "{}",
        text(&output.stdout)
    );
    // --json gives the verdict.
    let output = replay(&[
        "audit",
        "check-proof",
        "--json",
        "--proof",
        &good_inclusion,
        "--head",
        &head1,
        "--public-key",
        &public,
    ])
    .await;
    let verdict: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["kind"], "inclusion", "{verdict}");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_key_comes_from_the_key_beside_the_store_and_is_never_made_up() {
    let fixture = Fixture::sqlite().await;
    let store = store_arg(&fixture.url);
    // No key given, none beside the store: exit 2 naming how to give one, nothing created.
    let output = replay(&["audit", "public-key", "--store", &store]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--signing-key-file") && stderr.contains("CRM_SIGNING_KEY"),
        "{stderr}"
    );
    let beside = fixture.dir.path().join("signing.key");
    assert!(!beside.exists(), "never created");
    // The default key file beside the store.
    std::fs::copy(&fixture.key_file, &beside).expect("copy");
    let output = replay(&["audit", "public-key", "--json", "--store", &store]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let given: Value = serde_json::from_slice(&output.stdout).expect("json");
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture.public_key).expect("key"))
            .expect("json");
    assert_eq!(given, published);
    assert_eq!(given["algorithm"], "Ed25519");
    let output = replay(&["audit", "public-key", "--store", &store]).await;
    let shown = text(&output.stdout);
    assert!(
        shown.contains(given["key_id"].as_str().expect("key id")),
        "{shown}"
    );
    assert!(shown.contains("-----BEGIN PUBLIC KEY-----"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_head_is_signed_over_a_broken_chain_or_an_empty_tenant() {
    let fixture = Fixture::sqlite().await;
    let victim = fixture.victim("OrderPlaced", false).clone();
    // Changed without recomputing the chain: the chain names it, and no head is signed.
    let mut intruder = fixture.intruder().await;
    intruder
        .exec(
            "UPDATE crm_events SET data = json_set(data, '$.amount', '1.00') WHERE position = ?",
            "",
            vec![Arg::Int(victim.position as i64)],
        )
        .await;
    intruder.close().await;
    let out = fixture.dir.path().join("refused-head.json");
    let out_arg = out.display().to_string();
    let output = fixture
        .audit(
            &["head", "--tenant", "acme", "--out", &out_arg],
            &fixture.key_args(),
        )
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with(&format!(
            "BROKEN: Changed in stream {} at revision {}",
            victim.stream_id, victim.revision
        )),
        "{}",
        text(&output.stdout)
    );
    assert!(!out.exists(), "no head written");
    // audit verify reports the heads' finding and the chain's.
    let output = fixture.verify_heads(true).await;
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        report["chains"]["first_failure"]["position"], victim.position,
        "{report}"
    );
    let output = fixture.verify_heads(false).await;
    let shown = text(&output.stdout);
    assert!(shown.contains("hash_chain: Changed in stream"), "{shown}");
    // A tenant without events has nothing to sign.
    let output = fixture
        .audit(&["head", "--tenant", "initech"], &fixture.key_args())
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("tenant initech has no events"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_audit_tree_a_change_is_named_by_the_size_it_breaks() {
    // A store never served has no tree tables: heads are taken from the log alone.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = StoreUrl::Sqlite {
        path: dir.path().join("events.db"),
        durability: crm_core::store::sqlite::Durability::Normal,
    };
    let store = crm_tests::open_test_store(&url).await.expect("store");
    append_all(store.as_ref(), &history(3, 10, 80)).await;
    drop(store);
    let key = dir.path().join("signing.key");
    let signer = HeadSigner::generate().expect("key");
    signer.write_new_file(&key).expect("write");
    let store_arg = store_arg(&url);
    let head = dir.path().join("head.json");
    let head_arg = head.display().to_string();
    // The key beside the store is the default; CRM_SIGNING_KEY (the key itself) overrides it.
    let output = replay(&[
        "audit", "head", "--tenant", "acme", "--out", &head_arg, "--store", &store_arg,
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let db = ReadDb::open_read_only(&url).await.expect("db");
    assert!(!db.has_table("crm_audit_trees").await.expect("tables"));
    db.close().await;
    let size = head_size(&head);
    let public = signer.public().pem().expect("pem");
    let check = || async {
        replay(&[
            "audit",
            "verify",
            "--tenant",
            "acme",
            "--head",
            &head_arg,
            "--public-key",
            &public,
            "--store",
            &store_arg,
        ])
        .await
    };
    let output = check().await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );

    let raw = open_store(&url).await.expect("raw");
    let events = raw
        .read_all(&Scope::Tenant(acme()), 0, 10_000)
        .await
        .expect("read");
    drop(raw);
    let victim = events[events.len() / 2].clone();
    let mut intruder = Intruder::connect(&url).await;
    intruder
        .exec(
            "UPDATE crm_events SET metadata = json_set(metadata, '$.actor', 'mallory') \
             WHERE position = ?",
            "",
            vec![Arg::Int(victim.position as i64)],
        )
        .await;
    intruder.rechain(&acme(), &victim.stream_id).await;
    intruder.close().await;
    let output = check().await;
    let shown = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.starts_with(&format!("BROKEN: root_differs: the first {size} events")),
        "{shown}"
    );

    // CRM_SIGNING_KEY takes precedence over the file beside the store.
    let mut command = Command::new(BIN);
    command
        .env_remove("CRM_SIGNING_KEY_FILE")
        .env("CRM_SIGNING_KEY", "0f".repeat(32))
        .args(["audit", "public-key", "--json", "--store", &store_arg]);
    let output = command.output().expect("run");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let given: Value = serde_json::from_slice(&output.stdout).expect("json");
    let expected = HeadSigner::parse(&"0f".repeat(32), "test")
        .expect("key")
        .public();
    assert_eq!(given["key_id"], expected.key_id());
    assert_ne!(given["key_id"], signer.public().key_id());
}

/// A head file's tree size.
fn head_size(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).expect("head");
    crm_core::audit::SignedHead::from_json(&text)
        .expect("head")
        .tree_size
}

/// The command exited 1 and its output says `says`.
#[track_caller]
fn refused(output: &std::process::Output, says: &str) {
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(says), "{stdout}");
}
