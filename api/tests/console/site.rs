//! The seeded site the console's browser tests look at: the real `crm-api serve` on a
//! temporary data directory, its keys, the whole two-tenant history sent through
//! `POST /v1/events`, the customer the tests follow; the API beside the browser (plain HTTP
//! with a key or the session's cookie), and how a page's figures are compared with the API's
//! answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use crm_tests::crm_data::Emitted;
use crm_tests::crm_full::{api_event, full_history};
use serde_json::{Value, json};

use crate::processes::{Api, create_key, tamper};

/// The server, its data directory and its keys (all reading personal data).
pub struct Site {
    pub dir: tempfile::TempDir,
    /// Always a running server, except within [`Site::alter_stopped`].
    api: Option<Api>,
    pub http: Http,
    pub admin: String,
    pub analyst: String,
    /// An analyst of the other tenant, `globex`.
    pub stranger: String,
    /// An analyst of `acme` whose key is revoked while signed in.
    pub doomed: String,
    pub customer: Followed,
}

/// The acme customer the tests follow: active (a name to search for), with orders on at
/// least two days; the one with the most orders.
pub struct Followed {
    pub id: String,
    pub name: String,
    pub first_order: NaiveDate,
    pub last_order: NaiveDate,
}

impl Site {
    /// A fresh server with the history of `steps` generator steps (`CRM_CONSOLE_TEST_STEPS`
    /// overrides), every read model caught up.
    pub async fn seeded(steps: usize) -> Site {
        let dir = tempfile::tempdir().expect("data dir");
        let api = Api::start(dir.path(), &[]);
        let http = Http::new(&api.origin);
        let admin = create_key(dir.path(), "acme", "admin", true);
        let admin_globex = create_key(dir.path(), "globex", "admin", true);
        let steps = std::env::var("CRM_CONSOLE_TEST_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(steps);
        // Customers in proportion, or merges and erasures use them all up on long runs.
        let events = full_history(22, (steps / 25).max(240), steps);
        let of = |tenant: &str| -> Vec<&Emitted> {
            events.iter().filter(|e| e.tenant == tenant).collect()
        };
        http.seed(&admin, &of("acme")).await;
        let head = http.seed(&admin_globex, &of("globex")).await;
        http.caught_up(&admin, head).await;
        Site {
            analyst: create_key(dir.path(), "acme", "analyst", true),
            stranger: create_key(dir.path(), "globex", "analyst", true),
            doomed: create_key(dir.path(), "acme", "analyst", true),
            customer: follow(&events),
            admin,
            dir,
            api: Some(api),
            http,
        }
    }

    /// `http://host:port` of the running server.
    pub fn origin(&self) -> &str {
        &self.http.origin
    }

    /// What the running server logged.
    pub fn log(&self) -> String {
        self.api.as_ref().map(Api::log).unwrap_or_default()
    }

    /// As an intruder: the server stopped (SIGTERM), the event at `revision` of `stream` of
    /// tenant `acme` altered in the SQLite file, the server started again (restoring the
    /// append-only guards the intruder dropped) on a new port.
    pub async fn alter_stopped(&mut self, stream: &str, revision: u64) {
        if let Some(api) = self.api.take() {
            api.stop();
        }
        tamper(&self.dir.path().join("events.db"), "acme", stream, revision).await;
        let api = Api::start(self.dir.path(), &["--restore-guards"]);
        self.http = Http::new(&api.origin);
        self.api = Some(api);
    }
}

pub struct Http {
    client: reqwest::Client,
    origin: String,
}

impl Http {
    /// Redirects are not followed: a 303 to sign-in is an answer to check.
    pub fn new(origin: &str) -> Http {
        Http {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            origin: origin.to_owned(),
        }
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let answer = self
            .client
            .get(format!("{}{path}", self.origin))
            .bearer_auth(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// A console page with the browser's session cookie: (status, CSP header, body).
    pub async fn console(&self, cookie: &str, path: &str) -> (u16, String, String) {
        let answer = self
            .client
            .get(format!("{}{path}", self.origin))
            .header("cookie", format!("crm_console={cookie}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let csp = answer
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let status = answer.status().as_u16();
        (status, csp, answer.text().await.unwrap_or_default())
    }

    /// Sends one tenant's events in order, 500 a request; the last position.
    async fn seed(&self, key: &str, events: &[&Emitted]) -> u64 {
        let mut last = 0;
        for batch in events.chunks(500) {
            let body = json!({"events": batch.iter().map(|e| api_event(e)).collect::<Vec<_>>()});
            let answer = self
                .client
                .post(format!("{}/v1/events", self.origin))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("POST /v1/events");
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "seeding refused ({status}): {body}");
            last = body["last_position"].as_u64().unwrap_or(last);
        }
        last
    }

    /// Waits until every read model has folded the log up to `position`.
    async fn caught_up(&self, admin: &str, position: u64) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (status, body) = self.get(admin, "/v1/projections").await;
            let lines = body["projections"].as_array().cloned().unwrap_or_default();
            if status == 200
                && !lines.is_empty()
                && lines
                    .iter()
                    .all(|l| l["position"].as_u64().unwrap_or(0) >= position)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the read models never caught up: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The value at a figure's dotted path in an API answer: object members by name, array
/// entries by index or by their `currency` (or `code`) member.
fn at_path<'a>(answer: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(answer, |value, part| match value {
        Value::Object(members) => members.get(part),
        Value::Array(items) => part
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get(i))
            .or_else(|| {
                items.iter().find(|item| {
                    item["currency"].as_str() == Some(part) || item["code"].as_str() == Some(part)
                })
            }),
        _ => None,
    })
}

/// A JSON value as the console writes it into `data-value`: strings unquoted.
fn raw(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Every figure on the page equals the API's value at its path; the figures' map.
pub fn figures_match(
    page: &str,
    figures: &[(String, String)],
    answer: &Value,
) -> Vec<(String, String)> {
    assert!(!figures.is_empty(), "{page}: no [data-figure] on the page");
    for (path, shown) in figures {
        let expected = at_path(answer, path)
            .unwrap_or_else(|| panic!("{page}: figure {path} is not in the API's answer {answer}"));
        assert_eq!(
            shown,
            &raw(expected),
            "{page}: figure {path} shows {shown}, the API says {expected}"
        );
    }
    figures.to_vec()
}

fn follow(events: &[Emitted]) -> Followed {
    let mut gone = BTreeSet::new();
    let mut orders: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
    let mut names = BTreeMap::new();
    for e in events.iter().filter(|e| e.tenant == "acme") {
        let id = e.data["customer_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match e.event_type {
            "CustomerRegistered" => {
                names.insert(id, e.data["name"].as_str().unwrap_or_default().to_owned());
            }
            "CustomerMerged" | "CustomerErased" => {
                gone.insert(id.clone());
                if let Some(into) = e.data["into_customer_id"].as_str() {
                    gone.insert(into.to_owned());
                }
            }
            "OrderPlaced" => orders
                .entry(id)
                .or_default()
                .push(e.occurred_at.date_naive()),
            _ => {}
        }
    }
    let (id, dates) = orders
        .into_iter()
        .filter(|(id, dates)| {
            !gone.contains(id)
                && names.contains_key(id)
                && dates.first() != dates.last()
                && id.starts_with("c-")
        })
        .max_by_key(|(_, dates)| dates.len())
        .expect("an active acme customer with orders on two days");
    Followed {
        name: names[&id].clone(),
        first_order: dates[0],
        last_order: *dates.last().expect("orders"),
        id,
    }
}
