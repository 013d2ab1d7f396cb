//! The API workloads of `docs/benchmarks.md` ("The workloads"), against the real `crm-api`
//! binary started on a free loopback port: Q1 (random `GET /v1/customers/{id}`, 8 connections) and
//! A1 (`POST /v1/events`, 500 events per request, 4 connections, every answer checked).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench_data::{CustomerEvents, Rng};

/// The `crm-api` binary beside the running one (`target/release/crm-api` for a release
/// `crm-bench`).
pub fn api_binary() -> Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("crm-api");
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p crm-api`",
            path.display()
        );
    }
    Ok(path)
}

/// A `crm-api serve` process, stopped when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub address: String,
    pub client: reqwest::Client,
    pub key: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Creates a key of `role` for `tenant` with `crm-api keys create`, then starts `serve` on
    /// the store and waits until it listens.
    /// Starts `crm-api serve` on `store` with the master key in `key_file` (created by the
    /// server on a new store).
    pub fn start(
        store: &str,
        data_dir: &Path,
        key_file: &Path,
        tenant: &str,
        role: &str,
    ) -> Result<Server> {
        Server::start_with(store, data_dir, key_file, tenant, role, &[])
    }

    /// [`Server::start`] with more `serve` arguments.
    pub fn start_with(
        store: &str,
        data_dir: &Path,
        key_file: &Path,
        tenant: &str,
        role: &str,
        serve_args: &[&str],
    ) -> Result<Server> {
        let binary = api_binary()?;
        let key = create_key(store, data_dir, tenant, role)?;
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
            .arg("--data-dir")
            .arg(data_dir)
            .args(serve_args)
            .env("CRM_MASTER_KEY_FILE", key_file)
            .env_remove("CRM_MASTER_KEY")
            .env("CRM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start crm-api serve")?;
        let stderr = child.stderr.take().context("stderr")?;
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let found = lines.lock().ok().and_then(|lines| {
                lines.iter().find_map(|line| {
                    let rest = line.split("address=").nth(1)?;
                    line.contains("listening").then(|| {
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned()
                    })
                })
            });
            if let Some(address) = found {
                break format!("http://{address}");
            }
            if Instant::now() > deadline {
                bail!("crm-api did not listen: {:?}", lines.lock().ok());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Server {
            child,
            address,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(16)
                .build()?,
            key,
        })
    }

    /// The server process's peak resident memory so far, in MiB (Linux `VmHWM`).
    pub fn peak_rss_mib(&self) -> Option<f64> {
        peak_rss_mib(&format!("/proc/{}/status", self.child.id()))
    }

    /// Waits until every projection is live with no lag.
    pub async fn wait_caught_up(&self, head: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let health: Value = self
                .client
                .get(format!("{}/healthz", self.address))
                .send()
                .await?
                .json()
                .await?;
            // Every read model live at the head, and the audit tree too: at 10M events the
            // tree worker may still be building after the read models are done, and a query
            // workload must not run beside it.
            let done = health["projections"].as_array().is_some_and(|all| {
                all.iter()
                    .all(|p| p["position"].as_u64() >= Some(head) && p["state"] == "live")
            }) && health["audit_tree"]["position"].as_u64() >= Some(head);
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the projections did not catch up: {health}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Latency percentiles of Q1.
#[derive(Debug, Clone)]
pub struct Latencies {
    pub requests: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Q1: `requests` random `GET /v1/customers/{id}` over `connections` connections; every
/// answer must be 200 with the asked customer.
pub async fn q1(
    server: &Server,
    customers: u64,
    requests: usize,
    connections: usize,
) -> Result<Latencies> {
    let mut rng = Rng::new(42);
    let ids: Vec<u64> = (0..requests).map(|_| rng.below(customers)).collect();
    let chunks: Vec<Vec<u64>> = ids
        .chunks(requests.div_ceil(connections))
        .map(<[u64]>::to_vec)
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let client = server.client.clone();
        let (address, key) = (server.address.clone(), server.key.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(chunk.len());
            for id in chunk {
                let sent = Instant::now();
                let response = client
                    .get(format!("{address}/v1/customers/{id}"))
                    .bearer_auth(&key)
                    .send()
                    .await?;
                let status = response.status();
                let body: Value = response.json().await?;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                if status != 200
                    || body["customer_id"]
                        .as_str()
                        .and_then(|s| s.parse::<u64>().ok())
                        != Some(id)
                {
                    bail!("GET /v1/customers/{id}: {status} {body}");
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
    Ok(Latencies {
        requests: all.len(),
        seconds,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}

/// A1: the data set as `POST /v1/events` bodies of `per_request` events, sent over
/// `connections` connections; every answer must be 201 with every event appended. Returns the
/// events appended and the seconds taken.
pub async fn a1(
    server: &Server,
    data: &[CustomerEvents],
    per_request: usize,
    connections: usize,
) -> Result<(usize, f64)> {
    let bodies = request_bodies(data, per_request)?;
    let total: usize = data.iter().map(|customer| customer.events.len()).sum();
    let queue = Arc::new(Mutex::new(bodies.into_iter().rev().collect::<Vec<_>>()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = server.client.clone();
        let (address, key, queue) = (server.address.clone(), server.key.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut appended = 0;
            loop {
                let Some(body) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return Ok::<_, anyhow::Error>(appended);
                };
                let sent = body.len();
                let response = client
                    .post(format!("{address}/v1/events"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let answer: Value = response.json().await?;
                let count = answer["appended"].as_u64().unwrap_or(0) as usize;
                let listed = answer["events"].as_array().map_or(0, Vec::len);
                if status != 201 || count == 0 || count != listed {
                    bail!("POST /v1/events ({sent} bytes): {status} {answer}");
                }
                appended += count;
            }
        }));
    }
    let mut appended = 0;
    for task in tasks {
        appended += task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    if appended != total {
        bail!("{appended} events appended of {total}");
    }
    Ok((appended, seconds))
}

/// The data set's events as `POST /v1/events` bodies of `per_request` events each, in order.
pub fn request_bodies(data: &[CustomerEvents], per_request: usize) -> Result<Vec<Vec<u8>>> {
    let events: Vec<Value> = data
        .iter()
        .flat_map(|customer| customer.events.iter())
        .map(|event| {
            json!({
                "id": event.event_id,
                "type": event.event_type,
                "data": serde_json::from_str::<Value>(event.data.get()).unwrap_or_default(),
                "occurred_at": event.occurred_at,
            })
        })
        .collect();
    Ok(events
        .chunks(per_request)
        .map(|chunk| serde_json::to_vec(&json!({ "events": chunk })))
        .collect::<Result<_, _>>()?)
}

/// Creates a key of `role` for `tenant` with `crm-api keys create` and returns it.
pub fn create_key(store: &str, data_dir: &Path, tenant: &str, role: &str) -> Result<String> {
    let output = Command::new(api_binary()?)
        .args([
            "keys", "create", "--tenant", tenant, "--role", role, "--store", store,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .context("run crm-api keys create")?;
    if !output.status.success() {
        bail!(
            "crm-api keys create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `VmHWM` (peak resident set) of a `/proc/<pid>/status` file, in MiB.
pub fn peak_rss_mib(status_file: &str) -> Option<f64> {
    status_mib(status_file, "VmHWM:")
}

/// `VmRSS` (resident set now) of a `/proc/<pid>/status` file, in MiB.
pub fn rss_mib(status_file: &str) -> Option<f64> {
    status_mib(status_file, "VmRSS:")
}

fn status_mib(status_file: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// Starts a new peak-memory window for this process (Linux: `VmHWM` restarts from the
/// current resident set); ignored where unsupported.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
