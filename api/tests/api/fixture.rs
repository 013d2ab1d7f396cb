//! The application on a fresh store per test (SQLite file or PostgreSQL database), listening
//! on a free loopback port, with keys for two tenants and every role (each with and without
//! `--personal-data`), and a small HTTP client.

use std::time::Duration;

use crm_api::app::{Limits, Running, SharedState, router, start_with_signing};
use crm_api::keys::Role;
use crm_core::envelope::TenantId;
use crm_core::privacy::KeySource;
use crm_core::store::StoreUrl;
use crm_core::store::sqlite::Durability;
use crm_projections::RunnerHandle;
use crm_tests::postgres::TestDatabase;
use serde_json::Value;

pub const TENANT: &str = "acme";
pub const OTHER_TENANT: &str = "globex";

pub struct App {
    pub address: String,
    /// The store the app serves.
    pub url: StoreUrl,
    pub state: SharedState,
    pub client: reqwest::Client,
    /// `(tenant, role, reads personal data)` → key.
    keys: Vec<(String, Role, bool, String)>,
    /// The master-key file the app was started with.
    key_file: std::path::PathBuf,
    workers: Option<RunnerHandle>,
    /// The audit tree worker (stops when dropped).
    _tree: crm_projections::audit::TreeWorker,
    /// The workflow rule worker (stops when dropped).
    _workflows: crm_automation::workflows::Workflows,
    _sqlite_dir: Option<tempfile::TempDir>,
    _postgres: Option<TestDatabase>,
}

/// An answer: status, the content type, the read-position header, and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub read_position: Option<u64>,
    /// The `Retry-After` header.
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    /// Asserts a problem+json answer with this status whose detail holds every fragment.
    #[track_caller]
    pub fn problem(&self, status: u16, fragments: &[&str]) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "{:?}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        let detail = self.body["detail"].as_str().unwrap_or_default();
        for fragment in fragments {
            assert!(
                detail.contains(fragment),
                "detail {detail:?} lacks {fragment:?}"
            );
        }
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got {}: {}",
            self.status,
            self.body
        );
        &self.body
    }
}

impl App {
    pub async fn sqlite_with(_test: &str, limits: Limits) -> Option<App> {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = StoreUrl::Sqlite {
            path: dir.path().join("events.db"),
            durability: Durability::Normal,
        };
        Some(App::serve(url, limits, Some(dir), None).await)
    }

    pub async fn postgres_with(test: &str, limits: Limits) -> Option<App> {
        let database = TestDatabase::create(test).await?;
        let url = StoreUrl::Postgres {
            url: database.url().to_owned(),
        };
        // The master key of a PostgreSQL store is never beside it: a key file of the test's.
        let dir = tempfile::tempdir().expect("temp dir");
        Some(App::serve(url, limits, Some(dir), Some(database)).await)
    }

    async fn serve(
        url: StoreUrl,
        limits: Limits,
        dir: Option<tempfile::TempDir>,
        database: Option<TestDatabase>,
    ) -> App {
        if std::env::var_os("CRM_LOG").is_some() {
            crm_core::telemetry::init(); // logs only when asked for
        }
        let key_file = dir
            .as_ref()
            .expect("every app has a directory")
            .path()
            .join("master.key");
        App::serve_with_key(url, limits, key_file, dir, database).await
    }

    /// A second process on the same store, as another `crm-api serve` would be: its own
    /// store handles, read-model pool and projection runner (on standby while this app's
    /// runner holds the projections' leases) and its own keys. Drop it before `self`.
    pub async fn beside(&self) -> App {
        App::serve_with_key(
            self.url.clone(),
            Limits::default(),
            self.key_file.clone(),
            None,
            None,
        )
        .await
    }

    /// Stops this app's projection workers (they give their leases up), as a stopped
    /// process would; its HTTP routes keep answering.
    pub async fn stop_workers(&mut self) {
        if let Some(workers) = self.workers.take() {
            workers.shutdown().await.expect("the workers stop cleanly");
        }
    }

    async fn serve_with_key(
        url: StoreUrl,
        limits: Limits,
        key_file: std::path::PathBuf,
        dir: Option<tempfile::TempDir>,
        database: Option<TestDatabase>,
    ) -> App {
        let source = KeySource::file(key_file.clone());
        // One head-signing key per store, beside the master key, shared by `beside`.
        let signing_file = key_file.with_file_name("signing.key");
        if !signing_file.exists() {
            crm_core::audit::HeadSigner::generate()
                .expect("signing key")
                .write_new_file(&signing_file)
                .expect("write the signing key");
        }
        let signing = crm_core::audit::SigningKeySource {
            value: None,
            file: Some(signing_file),
        };
        let Running {
            state,
            workers,
            tree,
            workflows,
            ..
        } = start_with_signing(&url, limits, &source, &signing)
            .await
            .expect("start the app");
        let mut keys = Vec::new();
        for tenant in [TENANT, OTHER_TENANT] {
            for role in Role::ALL {
                for personal in [false, true] {
                    let key = state
                        .keys
                        .create(
                            &TenantId::parse(tenant).expect("tenant"),
                            role,
                            personal,
                            None,
                        )
                        .await
                        .expect("create key");
                    keys.push((tenant.to_owned(), role, personal, key.token));
                }
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        App {
            address,
            url,
            state,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            keys,
            key_file,
            workers: Some(workers),
            _tree: tree,
            _workflows: workflows,
            _sqlite_dir: dir,
            _postgres: database,
        }
    }

    /// The key of `tenant` and `role` created with `--personal-data`: it reads personal
    /// fields in plain text.
    pub fn key(&self, tenant: &str, role: Role) -> &str {
        self.key_with(tenant, role, true)
    }

    /// The key of `tenant` and `role` created without `--personal-data`: personal fields
    /// read "[redacted]" (an admin key reads them all the same).
    pub fn redacted_key(&self, tenant: &str, role: Role) -> &str {
        self.key_with(tenant, role, false)
    }

    pub fn key_with(&self, tenant: &str, role: Role, personal: bool) -> &str {
        self.keys
            .iter()
            .find(|(t, r, p, _)| t == tenant && *r == role && *p == personal)
            .map(|(_, _, _, key)| key.as_str())
            .expect("key")
    }

    /// The key id (the public part) of a key.
    pub fn key_id(key: &str) -> &str {
        key.split('_')
            .nth(1)
            .expect("a key reads crm_<id>_<secret>")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let read_position = response
            .headers()
            .get("crm-read-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            content_type,
            read_position,
            retry_after,
            body,
        }
    }

    /// `GET path` with the key of `tenant` and `role`.
    pub async fn get_as(&self, tenant: &str, role: Role, path: &str) -> Answer {
        self.send(
            self.client
                .get(self.url(path))
                .bearer_auth(self.key(tenant, role)),
        )
        .await
    }

    /// `GET path` with a key.
    pub async fn get_with(&self, key: &str, path: &str) -> Answer {
        self.send(self.client.get(self.url(path)).bearer_auth(key))
            .await
    }

    /// `GET path` as the main tenant's analyst (reading personal data).
    pub async fn get(&self, path: &str) -> Answer {
        self.get_as(TENANT, Role::Analyst, path).await
    }

    /// `POST /v1/events` with `{"events": events}` as `tenant`'s ingest key.
    pub async fn ingest_as(&self, tenant: &str, events: Value) -> Answer {
        self.send(
            self.client
                .post(self.url("/v1/events"))
                .bearer_auth(self.key(tenant, Role::Ingest))
                .json(&serde_json::json!({ "events": events })),
        )
        .await
    }

    pub async fn ingest(&self, events: Value) -> Answer {
        self.ingest_as(TENANT, events).await
    }

    /// `POST path` (no body) with the key of `tenant` and `role`.
    pub async fn post_as(&self, tenant: &str, role: Role, path: &str) -> Answer {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(self.key(tenant, role)),
        )
        .await
    }

    /// Stops the projection workers: what is appended from now on stays unprojected.
    pub fn stop_projections(&mut self) {
        if let Some(workers) = self.workers.take() {
            workers.abort();
        }
    }

    /// The log's head.
    pub async fn head(&self) -> u64 {
        self.state.store.head_position().await.expect("head")
    }
}
