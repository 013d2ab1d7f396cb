//! The retention task of the real `crm-api serve`: shortly after a start it applies every
//! tenant's rule once, logs a report of counts (never names), and `GET
//! /v1/privacy/retention` shows it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

struct Server {
    child: Child,
    address: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(dir: &Path, delay_secs: u64) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(["--retention-delay-secs", &delay_secs.to_string()])
            .env_remove("CRM_STORE")
            .env_remove("CRM_MASTER_KEY")
            .env_remove("CRM_MASTER_KEY_FILE")
            .env("CRM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crm-api");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stream = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let found = stderr.lock().expect("lines").iter().find_map(|line| {
                line.contains("listening")
                    .then(|| line.split("address=").nth(1))
                    .flatten()
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            });
            if let Some(address) = found {
                break format!("http://{address}");
            }
            assert!(
                Instant::now() < deadline && child.try_wait().expect("wait").is_none(),
                "the server never listened: {:?}",
                stderr.lock().expect("lines")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            address,
            stderr,
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().expect("lines").join("\n")
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("crm-api did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }
}

fn ago(days: i64) -> String {
    (Utc::now() - chrono::Duration::days(days)).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_the_rules_shortly_after_start_and_reports_counts_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    // A first start (its task far off): history and the rule.
    let server = Server::start(dir.path(), 3_600);
    let admin = std::fs::read_to_string(dir.path().join("admin.key"))
        .expect("admin.key")
        .trim()
        .to_owned();
    let events = json!({"events": [
        {"type": "CustomerRegistered", "occurred_at": ago(760),
         "data": {"customer_id": "c-old", "kind": "person", "name": "Forgotten Person"}},
        {"type": "CustomerRegistered", "occurred_at": ago(760),
         "data": {"customer_id": "c-new", "kind": "person", "name": "Active Person"}},
        {"type": "InteractionLogged", "occurred_at": ago(30),
         "data": {"customer_id": "c-new", "interaction_id": "i-1", "channel": "email",
                  "direction": "inbound"}},
    ]});
    let answer = client
        .post(format!("{}/v1/events", server.address))
        .bearer_auth(&admin)
        .json(&events)
        .send()
        .await
        .expect("append");
    assert_eq!(answer.status(), 201);
    let set: Value = client
        .put(format!("{}/v1/privacy/retention", server.address))
        .bearer_auth(&admin)
        .json(&json!({"erase_after_years": 1}))
        .send()
        .await
        .expect("put")
        .json()
        .await
        .expect("json");
    assert_eq!(set["erase_after_years"], 1, "{set}");
    assert_eq!(set["last_run"], Value::Null);
    server.stop();

    // A start with the first run due at once.
    let server = Server::start(dir.path(), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let shown: Value = client
            .get(format!("{}/v1/privacy/retention", server.address))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if !shown["last_run"].is_null() {
            break shown["last_run"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no run within 60 s: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report["customers_erased"], 1, "{report}");
    assert_eq!(report["leads_erased"], 0);
    assert!(report["error"].is_null(), "{report}");
    let old: Value = client
        .get(format!("{}/v1/customers/c-old", server.address))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(old["status"], "erased", "{old}");
    let log = server.stop();
    let line = log
        .lines()
        .find(|l| l.contains("retention applied"))
        .unwrap_or_else(|| panic!("no report logged:\n{log}"));
    assert!(line.contains("customers_erased=1"), "{line}");
    assert!(
        !log.contains("Forgotten Person") && !log.contains("c-old"),
        "{log}"
    );
}
