//! The real `crm-api` binary over real HTTP: the first start's admin key, `keys` commands run
//! beside a serving process, and a SIGTERM during appends that loses no acknowledged event.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crm_core::envelope::TenantId;
use crm_core::store::{Scope, StoreUrl, open_store};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

/// A running `crm-api serve` with its output collected.
struct Server {
    child: Child,
    address: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    lines
}

impl Server {
    fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            // A PostgreSQL store's master key lives in the test's directory (a SQLite store's
            // default key file is there too).
            .env("CRM_MASTER_KEY_FILE", dir.join("master.key"))
            .env("CRM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crm-api");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let found = stderr.lock().expect("lines").iter().find_map(|line| {
                line.contains("listening")
                    .then(|| line.split("address=").nth(1))
                    .flatten()
                    .map(|rest| {
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned()
                    })
            });
            if let Some(address) = found {
                break format!("http://{address}");
            }
            assert!(
                Instant::now() < deadline,
                "the server never listened: {:?}",
                stderr.lock().expect("lines")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Server {
            child,
            address,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("lines").clone()
    }

    /// SIGTERM, then the exit status and the log.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("crm-api did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        let log = self.stderr.lock().expect("lines").join("\n");
        (status, log)
    }
}

/// Runs `crm-api keys ...` on the data directory: (success, stdout, stderr).
fn keys(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run crm-api keys");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn registered(id: &str) -> Value {
    json!({"id": uuid::Uuid::now_v7(), "type": "CustomerRegistered",
           "data": {"customer_id": id, "kind": "person", "name": "Ada"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_prints_an_admin_key_and_keys_are_managed_beside_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let client = reqwest::Client::new();

    // The key is printed once on stdout, and written to admin.key for the owner only.
    let deadline = Instant::now() + Duration::from_secs(10);
    let admin = loop {
        if let Some(key) = server
            .stdout()
            .iter()
            .find(|l| l.starts_with("crm_"))
            .cloned()
        {
            break key;
        }
        assert!(
            Instant::now() < deadline,
            "no key printed: {:?}",
            server.stdout()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let file = dir.path().join("admin.key");
    assert_eq!(
        std::fs::read_to_string(&file).expect("admin.key").trim(),
        admin
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let answer = client
        .post(format!("{}/v1/events", server.address))
        .bearer_auth(&admin)
        .json(&json!({"events": [registered("c-1")]}))
        .send()
        .await
        .expect("append");
    assert_eq!(answer.status(), 201);

    // A key created by another process while the server runs works at once.
    let (ok, stdout, stderr) = keys(
        dir.path(),
        &[
            "create", "--tenant", "shop-2", "--role", "analyst", "--label", "bi team",
        ],
    );
    assert!(ok, "{stderr}");
    let analyst = stdout.trim().to_owned();
    assert!(analyst.starts_with("crm_"), "{stdout}");
    let listing = client
        .get(format!("{}/v1/customers", server.address))
        .bearer_auth(&analyst)
        .send()
        .await
        .expect("list");
    assert_eq!(listing.status(), 200);
    let body: Value = listing.json().await.expect("json");
    assert_eq!(
        body["items"],
        json!([]),
        "another tenant's key sees nothing of default"
    );

    // Listing shows ids, tenants and roles, never secrets.
    let (ok, listed, _) = keys(dir.path(), &["list", "--json"]);
    assert!(ok);
    let rows: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r["tenant"] == "shop-2" && r["role"] == "analyst" && r["label"] == "bi team")
    );
    for key in [&admin, &analyst] {
        let secret = key.rsplit('_').next().expect("secret");
        assert!(!listed.contains(secret), "a secret was listed");
    }
    let analyst_id = analyst.split('_').nth(1).expect("id").to_owned();

    // Revoked: refused within the cache's lifetime.
    let (ok, _, stderr) = keys(dir.path(), &["revoke", &analyst_id]);
    assert!(ok, "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client
            .get(format!("{}/v1/customers", server.address))
            .bearer_auth(&analyst)
            .send()
            .await
            .expect("list")
            .status();
        if status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "the revoked key still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, _, stderr) = keys(dir.path(), &["revoke", &analyst_id]);
    assert!(!ok && stderr.contains("no active key"), "{stderr}");
    let (ok, _, stderr) = keys(dir.path(), &["create", "--tenant", "t", "--role", "wizard"]);
    assert!(!ok && stderr.contains("unknown role"), "{stderr}");
    let (ok, _, stderr) = keys(
        dir.path(),
        &["create", "--tenant", "bad tenant", "--role", "admin"],
    );
    assert!(!ok && stderr.contains("tenant"), "{stderr}");

    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains(&admin), "the key was logged");
    assert!(!log.contains(&analyst), "a key was logged");

    // A second start creates no new key.
    let again = Server::start(dir.path());
    std::thread::sleep(Duration::from_millis(300));
    assert!(again.stdout().iter().all(|l| !l.starts_with("crm_")));
    assert_eq!(
        std::fs::read_to_string(&file).expect("admin.key").trim(),
        admin
    );
    let (status, log) = again.terminate();
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_the_first_start_key_works_and_reads_its_writes() {
    let Some(database) = crm_tests::postgres::TestDatabase::create("binary_first_start").await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // A PostgreSQL store's master key is never beside it: a key file of the test's.
    let key_file = dir.path().join("master.key");
    let key_file = key_file.to_str().expect("path");
    let store = ["--store", database.url(), "--master-key-file", key_file];
    let server = Server::start_with(dir.path(), &store);
    let key = std::fs::read_to_string(dir.path().join("admin.key"))
        .expect("admin.key")
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    let answer: Value = client
        .post(format!("{}/v1/events", server.address))
        .bearer_auth(&key)
        .json(&json!({"events": [registered("c-1")]}))
        .send()
        .await
        .expect("append")
        .json()
        .await
        .expect("json");
    let last = answer["last_position"].as_u64().expect("last_position");
    let view: Value = client
        .get(format!(
            "{}/v1/customers/c-1?min_position={last}",
            server.address
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(view["name"], "Ada", "{view}");
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    // A second process on the same database creates no second key.
    let again = Server::start_with(dir.path(), &store);
    std::thread::sleep(Duration::from_millis(300));
    assert!(again.stdout().iter().all(|l| !l.starts_with("crm_")));
    let (status, log) = again.terminate();
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_appends_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let admin = std::fs::read_to_string(dir.path().join("admin.key"))
        .expect("admin.key")
        .trim()
        .to_owned();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (address, admin, acknowledged) =
            (server.address.clone(), admin.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for round in 0.. {
                let events: Vec<Value> = (0..50)
                    .map(|n| registered(&format!("c-{writer}-{round}-{n}")))
                    .collect();
                let Ok(response) = client
                    .post(format!("{address}/v1/events"))
                    .bearer_auth(&admin)
                    .json(&json!({ "events": events }))
                    .send()
                    .await
                else {
                    return;
                };
                if response.status() != 201 {
                    return;
                }
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                let ids = body["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["id"].as_str().map(str::to_owned));
                acknowledged.lock().expect("ids").extend(ids);
            }
        }));
    }
    // A live event stream stays open; the stop must end it rather than wait for it.
    let live = reqwest::Client::new()
        .get(format!("{}/v1/events/live", server.address))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("live stream");
    assert_eq!(live.status(), 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopping = Instant::now();
    let (status, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("terminate");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "the stop waited {:?} (an open live stream must not hold it)",
        stopping.elapsed()
    );
    drop(live);
    for writer in writers {
        let _ = writer.await;
    }
    assert!(status.success(), "{log}");
    let acknowledged = acknowledged.lock().expect("ids").clone();
    assert!(
        !acknowledged.is_empty(),
        "no append was acknowledged before the stop"
    );

    let store = open_store(&StoreUrl::default_in(dir.path()))
        .await
        .expect("open the store");
    let mut stored = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let events = store
            .read_all(
                &Scope::Tenant(TenantId::parse("default").expect("tenant")),
                after,
                5_000,
            )
            .await
            .expect("read");
        let Some(last) = events.last() else { break };
        after = last.position;
        stored.extend(events.iter().map(|e| e.event_id.to_string()));
    }
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged event {id} was lost");
    }
    assert_eq!(stored.len() % 50, 0, "batches are whole: {}", stored.len());
}

/// `serve` and `keys` on a PostgreSQL database that does not exist yet: one sentence naming
/// the database and how to create it (never the driver's message twice), and a failure
/// exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_postgres_database_is_named_once_with_how_to_create_it() {
    let Some(database) =
        crm_tests::postgres::TestDatabase::create("api_missing_postgres_database").await
    else {
        return;
    };
    let missing = format!("{}_missing", database.name());
    let url = database.url().replace(database.name(), &missing);
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["keys", "list"],
        vec!["keys", "create", "--tenant", "acme", "--role", "analyst"],
    ] {
        let output = Command::new(BIN)
            .args(&args)
            .args(["--store", url.as_str(), "--data-dir"])
            .arg(dir.path())
            .env("CRM_MASTER_KEY_FILE", dir.path().join("master.key"))
            .env_remove("CRM_LOG")
            .output()
            .expect("run crm-api");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        crm_tests::postgres::assert_names_the_missing_database(
            &stderr,
            &missing,
            &format!("{args:?}"),
        );
    }
}
