//! A webhook receiver on loopback for end-to-end tests and the benchmark: `POST /{name}`
//! records each delivery after checking its Standard Webhooks signature with its own
//! HMAC-SHA256 (a delivery whose signature does not verify is counted, never recorded as
//! good), and answers as the endpoint's [`Mode`] says: 200, 500, or never (it hangs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    Fail,
    /// Never answers (the sender's timeout ends the attempt).
    Hang,
}

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub endpoint: String,
    /// `webhook-id`.
    pub id: String,
    pub timestamp: i64,
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
    /// The answer it got.
    pub mode: Mode,
}

impl Delivery {
    /// The event's log position (`data.position`), if it is an event.
    pub fn position(&self) -> Option<u64> {
        self.body["data"]["position"].as_u64()
    }
}

#[derive(Debug, Default)]
struct Inner {
    secrets: Mutex<HashMap<String, Vec<u8>>>,
    modes: Mutex<HashMap<String, Mode>>,
    got: Mutex<Vec<Delivery>>,
    bad_signatures: AtomicUsize,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Receiver {
    /// Listens on a free loopback port (on the current tokio runtime).
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new()
            .route("/{name}", axum::routing::post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, base }
    }

    /// The URL of endpoint `name`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// The secret (`whsec_...`) signatures to `name` are checked with.
    pub fn set_secret(&self, name: &str, secret: &str) {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .expect("a whsec_ secret");
        self.inner
            .secrets
            .lock()
            .expect("secrets")
            .insert(name.to_owned(), key);
    }

    pub fn set_mode(&self, name: &str, mode: Mode) {
        self.inner
            .modes
            .lock()
            .expect("modes")
            .insert(name.to_owned(), mode);
    }

    /// Every delivery to `name` with a valid signature, in arrival order.
    pub fn deliveries(&self, name: &str) -> Vec<Delivery> {
        self.inner
            .got
            .lock()
            .expect("got")
            .iter()
            .filter(|d| d.endpoint == name)
            .cloned()
            .collect()
    }

    /// How many deliveries to `name` arrived (without copying them).
    pub fn count(&self, name: &str) -> usize {
        self.inner
            .got
            .lock()
            .expect("got")
            .iter()
            .filter(|d| d.endpoint == name)
            .count()
    }

    /// When the first and the last delivery to `name` arrived.
    pub fn span(&self, name: &str) -> Option<(Instant, Instant)> {
        let got = self.inner.got.lock().expect("got");
        let mut at = got.iter().filter(|d| d.endpoint == name).map(|d| d.at);
        let first = at.next()?;
        Some((first, at.next_back().unwrap_or(first)))
    }

    /// Deliveries whose signature did not verify (or came without one).
    pub fn bad_signatures(&self) -> usize {
        self.inner.bad_signatures.load(Ordering::SeqCst)
    }
}

/// The Standard Webhooks check: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
/// among the space-separated signatures.
pub fn verify(key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    header
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|given| {
            let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
                return false;
            };
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            mac.verify_slice(&given).is_ok()
        })
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let key = inner.secrets.lock().expect("secrets").get(&name).cloned();
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    let good = fresh
        && key.is_some_and(|key| verify(&key, &id, &timestamp, &body, &signature))
        && id.starts_with("msg_");
    if !good {
        inner.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let mode = inner
        .modes
        .lock()
        .expect("modes")
        .get(&name)
        .copied()
        .unwrap_or(Mode::Ok);
    inner.got.lock().expect("got").push(Delivery {
        endpoint: name,
        id,
        timestamp: timestamp.parse().unwrap_or_default(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
        mode,
    });
    match mode {
        Mode::Ok => StatusCode::OK,
        Mode::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            StatusCode::OK
        }
    }
}
