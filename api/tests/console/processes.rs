//! The processes the console's browser tests run: chromedriver (driving headless Chromium)
//! and the real `crm-api serve` on a temporary data directory, plus `crm-api keys` beside it
//! and the intruder who alters a stored event in the SQLite file while the server is down.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

/// Chromium and chromedriver, when this machine has both.
#[derive(Debug, Clone)]
pub struct BrowserTools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl BrowserTools {
    /// Finds both on `PATH` (or Debian's `/usr/bin`). Missing: a failure when
    /// `CRM_REQUIRE_BROWSER=1` (CI), else a loud message and `None`, so a fresh developer
    /// machine without Chromium still runs the rest of the suite.
    pub fn find_or_explain(test: &str) -> Option<BrowserTools> {
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|name| on_path(name));
        let chromedriver = on_path("chromedriver");
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => Some(BrowserTools {
                chromium,
                chromedriver,
            }),
            (chromium, chromedriver) => {
                let message = format!(
                    "{test}: NOT RUN: the console's browser tests need Chromium and chromedriver \
                     (found chromium: {chromium:?}, chromedriver: {chromedriver:?}); on Debian: \
                     `apt-get install chromium chromium-driver`"
                );
                assert!(
                    std::env::var("CRM_REQUIRE_BROWSER").as_deref() != Ok("1"),
                    "{message} (CRM_REQUIRE_BROWSER=1 makes this a failure)"
                );
                eprintln!("\n{}\n{message}\n{}\n", "!".repeat(78), "!".repeat(78));
                None
            }
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A port nobody listens on right now (the child binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut lines) = sink.lock() {
                lines.push(line);
            }
        }
    });
    lines
}

/// Stops a child we started: SIGTERM by its id, then SIGKILL after a grace period.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A chromedriver on a loopback port, stopped when dropped.
#[derive(Debug)]
pub struct Chromedriver {
    child: Child,
    pub url: String,
}

impl Chromedriver {
    pub async fn start(tools: &BrowserTools) -> Chromedriver {
        let port = free_port();
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/status", driver.url)).send().await;
            if let Ok(answer) = ready
                && answer.status().is_success()
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {}",
                driver.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The real `crm-api serve` on a data directory, stopped (SIGTERM) when dropped.
#[derive(Debug)]
pub struct Api {
    child: Child,
    /// `http://host:port`.
    pub origin: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Api {
    /// Starts the server and waits until it logs its address; `extra` arguments follow.
    pub fn start(dir: &Path, extra: &[&str]) -> Api {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            // Revocations reach sessions quickly (the default cache lives 2 s).
            .args(["--key-cache-ms", "300"])
            .args(extra)
            .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
            .env("CRM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crm-api");
        let log = collect(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let found = log.lock().expect("log").iter().find_map(|line| {
                let rest = line.split("address=").nth(1)?;
                line.contains("listening").then(|| {
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
            });
            if let Some(address) = found {
                break address;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "crm-api exited ({status}): {}",
                    log.lock().expect("log").join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "crm-api never listened: {}",
                log.lock().expect("log").join("\n")
            );
            std::thread::sleep(Duration::from_millis(30));
        };
        Api {
            child,
            origin: format!("http://{address}"),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) {
        stop(&mut self.child);
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            stop(&mut self.child);
        }
    }
}

/// `crm-api keys <args> --data-dir dir`: its stdout, or a failure naming its stderr.
pub fn keys(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .output()
        .expect("run crm-api keys");
    assert!(
        output.status.success(),
        "crm-api keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A new key of `tenant` with `role`, reading personal data when `personal`.
pub fn create_key(dir: &Path, tenant: &str, role: &str, personal: bool) -> String {
    let mut args = vec!["create", "--tenant", tenant, "--role", role];
    if personal {
        args.push("--personal-data");
    }
    keys(dir, &args)
}

/// The id part of a key (`crm_<id>_<secret>`), which `keys revoke` takes.
pub fn key_id(key: &str) -> &str {
    key.split('_').nth(1).expect("a key's id")
}

/// As an intruder with the server stopped: the append-only guards dropped, then the
/// metadata of the event at `revision` of `stream` (tenant `tenant`) changed in place. The
/// data stays readable; the stream's hash chain no longer matches. Returns its position.
pub async fn tamper(store: &Path, tenant: &str, stream: &str, revision: u64) -> i64 {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", store.display()))
        .await
        .expect("open the store file");
    sqlx::raw_sql(
        "DROP TRIGGER IF EXISTS crm_events_append_only_update; \
         DROP TRIGGER IF EXISTS crm_events_append_only_delete;",
    )
    .execute(&mut conn)
    .await
    .expect("drop the guards");
    let position: i64 = sqlx::query_scalar(
        "SELECT position FROM crm_events WHERE tenant = ? AND stream_id = ? AND revision = ?",
    )
    .bind(tenant)
    .bind(stream)
    .bind(revision as i64)
    .fetch_one(&mut conn)
    .await
    .expect("the event to alter");
    let done = sqlx::query(
        "UPDATE crm_events SET metadata = json_set(metadata, '$.forged', 1) WHERE position = ?",
    )
    .bind(position)
    .execute(&mut conn)
    .await
    .expect("alter the event");
    assert_eq!(done.rows_affected(), 1);
    conn.close().await.expect("close");
    position
}
