//! The console through the real binary over HTTP (the browser tests in `console_browser.rs`
//! drive the same pages in Chromium): sessions (sign-in, its refusals, the cookie's flags,
//! sign-out with its CSRF token, a revoked or expired key ending the session), what a key's
//! tenant and role show, personal fields masked as the API masks them, customers as of a
//! past day with every figure equal to the API's at that cut, and a tampered stream marked
//! broken on the timeline.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crm_tests::served::Served;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::Value;
use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

/// Where a test's server keeps its store: the data dir, and the store URL on PostgreSQL.
struct Store {
    dir: tempfile::TempDir,
    postgres: Option<crm_tests::postgres::TestDatabase>,
}

impl Store {
    /// The arguments that name the store, for `serve` and `keys`.
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_owned(),
            self.dir.path().display().to_string(),
        ];
        if let Some(database) = &self.postgres {
            args.extend(["--store".to_owned(), database.url().to_owned()]);
        }
        args
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn serve(store: &Store) -> Served {
    let admin = store.path().join("admin.key");
    Served::start(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(store.args())
            .env("CRM_MASTER_KEY_FILE", store.path().join("master.key")),
        move || admin.exists(),
    )
}

/// `crm-api keys create` on the store: the new key.
fn key(store: &Store, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(["keys", "create"])
        .args(args)
        .args(store.args())
        .output()
        .expect("run crm-api keys");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

struct Site {
    base: String,
    http: reqwest::Client,
}

impl Site {
    /// Signs in with `key`: the session cookie (`name=value`).
    async fn sign_in(&self, key: &str) -> String {
        let answer = self
            .http
            .post(format!("{}/console/sign-in", self.base))
            .form(&[("key", key)])
            .send()
            .await
            .expect("sign in");
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        assert_eq!(answer.headers()[LOCATION], "/console/customers");
        let cookie = answer.headers()[SET_COOKIE].to_str().expect("cookie");
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
            assert!(cookie.contains(flag), "{cookie}");
        }
        assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
        cookie.split(';').next().expect("pair").to_owned()
    }

    async fn page(&self, cookie: &str, path: &str) -> (StatusCode, String) {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .expect("page");
        let status = answer.status();
        if status.is_redirection() {
            let to = answer.headers()[LOCATION].to_str().expect("location");
            return (status, to.to_owned());
        }
        let csp = answer.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_owned();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(answer.headers()["cache-control"], "no-store");
        (status, answer.text().await.expect("body"))
    }

    async fn api(&self, key: &str, path: &str) -> Value {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("api");
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        answer.json().await.expect("json")
    }
}

/// The `data-figure` → `data-value` pairs of a page.
fn figures(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for piece in html.split("data-figure=\"").skip(1) {
        let (name, rest) = piece.split_once('"').expect("figure name");
        let value = rest
            .split_once("data-value=\"")
            .and_then(|(_, v)| v.split_once('"'))
            .map(|(v, _)| v)
            .expect("figure value");
        out.push((name.to_owned(), unescape(value)));
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value at a figure's dotted path in the API's view (currency entries by their code).
fn at_path<'a>(view: &'a Value, path: &str) -> &'a Value {
    let mut node = view;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        node = match node {
            Value::Array(items) => items
                .iter()
                .find(|i| i["currency"] == part)
                .unwrap_or(&Value::Null),
            other => &other[part],
        };
        if parts.peek().is_none() {
            break;
        }
    }
    node
}

fn raw(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A served store with the CI fixture's events applied; on PostgreSQL (`postgres` names
/// the test's database) `None` when no server is reachable and none is required.
async fn seeded(postgres: Option<&str>) -> Option<(Store, Served, Site, String)> {
    let postgres = match postgres {
        None => None,
        Some(name) => Some(crm_tests::postgres::TestDatabase::create(name).await?),
    };
    let store = Store {
        dir: tempfile::tempdir().expect("dir"),
        postgres,
    };
    let served = serve(&store);
    let admin = std::fs::read_to_string(store.path().join("admin.key"))
        .expect("admin key")
        .trim()
        .to_owned();
    let site = Site {
        base: format!("http://{}", served.address),
        http: client(),
    };
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.ci/fixture-events.json"
        ))
        .expect("fixture"),
    )
    .expect("fixture json");
    let answer = site
        .http
        .post(format!("{}/v1/events", site.base))
        .bearer_auth(&admin)
        .json(&fixture)
        .send()
        .await
        .expect("append");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let head: Value = answer.json().await.expect("append answer");
    let last = head["last_position"].as_u64().expect("last position");
    // Read models caught up before any page is asked for.
    site.api(&admin, &format!("/v1/customers/c-1?min_position={last}"))
        .await;
    site.api(
        &admin,
        &format!("/v1/customers/c-1/timeline?min_position={last}"),
    )
    .await;
    Some((store, served, site, admin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_made_from_a_key_and_ends_with_sign_out_revocation_or_expiry() {
    sessions(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_session_is_made_from_a_key_and_ends_with_sign_out_revocation_or_expiry() {
    sessions(Some("console_sessions")).await;
}

async fn sessions(postgres: Option<&str>) {
    let Some((store, _served, site, admin)) = seeded(postgres).await else {
        return;
    };

    // No cookie: to the sign-in page, which shows the form.
    let (status, to) = site.page("", "/console/customers").await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    let (status, form) = site.page("", "/console/sign-in").await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("id=\"key\"") && form.contains("type=\"password\""));

    // A wrong key is refused on the page, with no cookie.
    let wrong = site
        .http
        .post(format!("{}/console/sign-in", site.base))
        .form(&[("key", "crm_0000000000000000_nope")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.expect("body").contains("not valid"));
    // A form posted from another site is refused.
    let forged = site
        .http
        .post(format!("{}/console/sign-in", site.base))
        .header(ORIGIN, "https://evil.example")
        .form(&[("key", admin.as_str())])
        .send()
        .await
        .expect("sign in");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get(SET_COOKIE).is_none());

    let cookie = site.sign_in(&admin).await;
    let (status, list) = site.page(&cookie, "/console/customers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("data-customer=\"c-1\"") && list.contains("Ada Lovelace"));
    // A cookie that names no session goes to sign-in.
    let (status, _) = site
        .page(
            &format!("crm_console={}", "ab".repeat(32)),
            "/console/customers",
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Sign-out needs the page's CSRF token; without it the session stays.
    let csrf = list
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    let refused = site
        .http
        .post(format!("{}/console/sign-out", site.base))
        .header(COOKIE, &cookie)
        .form(&[("csrf", "0")])
        .send()
        .await
        .expect("sign out");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        site.page(&cookie, "/console/customers").await.0,
        StatusCode::OK
    );
    let out = site
        .http
        .post(format!("{}/console/sign-out", site.base))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .expect("cookie")
            .contains("Max-Age=0")
    );
    let (status, to) = site.page(&cookie, "/console/customers").await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );

    // A revoked key's session ends (within the key cache's 2 s).
    let analyst = key(&store, &["--tenant", "default", "--role", "analyst"]);
    let cookie = site.sign_in(&analyst).await;
    assert_eq!(
        site.page(&cookie, "/console/customers").await.0,
        StatusCode::OK
    );
    let revoked = Command::new(BIN)
        .args(["keys", "revoke", &analyst])
        .args(store.args())
        .output()
        .expect("revoke");
    assert!(revoked.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = site.page(&cookie, "/console/customers").await;
        if status == StatusCode::SEE_OTHER {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked key's session still answers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // So does an expired key's.
    let brief = key(
        &store,
        &[
            "--tenant",
            "default",
            "--role",
            "analyst",
            "--expires-in",
            "3s",
        ],
    );
    let cookie = site.sign_in(&brief).await;
    assert_eq!(
        site.page(&cookie, "/console/customers").await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if site.page(&cookie, "/console/customers").await.0 == StatusCode::SEE_OTHER {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired key's session still answers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_tenant_and_role_decide_what_the_pages_show() {
    tenants_and_roles(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_keys_tenant_and_role_decide_what_the_pages_show() {
    tenants_and_roles(Some("console_roles")).await;
}

async fn tenants_and_roles(postgres: Option<&str>) {
    let Some((store, _served, site, _admin)) = seeded(postgres).await else {
        return;
    };

    // An analyst without personal data: names masked as the API masks them, no search.
    let masked = key(&store, &["--tenant", "default", "--role", "analyst"]);
    let cookie = site.sign_in(&masked).await;
    let (status, list) = site.page(&cookie, "/console/customers?search=Ada").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("data-customer=\"c-1\""));
    assert!(!list.contains("Ada Lovelace") && !list.contains("ada@example.com"));
    assert!(list.contains("[redacted]") && list.contains("may not search"));
    let (status, page) = site.page(&cookie, "/console/customers/c-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("ada@example.com") && !page.contains("+44 20"));
    // It reads timelines but may not verify chains.
    let (status, timeline) = site.page(&cookie, "/console/customers/c-1/timeline").await;
    assert_eq!(status, StatusCode::OK);
    assert!(timeline.contains("data-status=\"unchecked\""));
    assert!(!timeline.contains("ada@example.com"));

    // An auditor: no customer pages (the API's 403, with its reason), timelines verified.
    let auditor = key(&store, &["--tenant", "default", "--role", "auditor"]);
    let cookie = site.sign_in(&auditor).await;
    let (status, refused) = site.page(&cookie, "/console/customers").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(refused.contains("may not read customers"), "{refused}");
    let (status, timeline) = site.page(&cookie, "/console/customers/c-1/timeline").await;
    assert_eq!(status, StatusCode::OK);
    assert!(timeline.contains("data-stream=\"customer-c-1\" data-status=\"intact\""));
    let (status, proof) = site
        .page(&cookie, "/console/proofs?stream=customer-c-1&revision=0")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        proof.contains("Leaf hash") && proof.contains("Root hash"),
        "{proof}"
    );

    // Another tenant's key sees none of it.
    let other = key(
        &store,
        &["--tenant", "other", "--role", "analyst", "--personal-data"],
    );
    let cookie = site.sign_in(&other).await;
    let (status, list) = site.page(&cookie, "/console/customers?search=Ada").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("No customer matches"), "{list}");
    assert!(
        !list.contains("data-customer") && !list.contains("Lovelace"),
        "{list}"
    );
    let (status, _) = site.page(&cookie, "/console/customers/c-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = site.page(&cookie, "/console/customers/c-1/timeline").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad input is a 400 page naming it.
    let (status, page) = site
        .page(&cookie, "/console/customers/c-1?date=03/01/2026")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("date=") && page.contains("role=\"alert\""));
    let (status, page) = site.page(&cookie, "/console/no-such-page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("no such page"));
    let (status, page) = site
        .page(&cookie, "/console/customers?churn_risk=high")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("churn_risk needs currency") && page.contains("id=\"customer-search\""));
    let (status, _) = site.page(&cookie, "/console/customers/a%2Fb").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_as_of_a_past_day_shows_the_logs_figures_then_and_a_tampered_stream_shows_broken()
 {
    let (store, served, site, admin) = seeded(None).await.expect("a SQLite store");
    let cookie = site.sign_in(&admin).await;

    let mut seen_counts = Vec::new();
    for (query, api) in [
        ("", String::new()),
        ("?date=2026-02-15", "?as_of=2026-02-15T23:59:59Z".to_owned()),
        ("?date=2026-03-02", "?as_of=2026-03-02T23:59:59Z".to_owned()),
    ] {
        let (status, page) = site
            .page(&cookie, &format!("/console/customers/c-1{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        let view = site.api(&admin, &format!("/v1/customers/c-1{api}")).await;
        let shown = figures(&page);
        assert!(shown.len() > 10, "{query}: only {shown:?}");
        for (path, value) in &shown {
            // Live figures evaluated "now" may move between the two reads; the rest may not.
            if query.is_empty() && path.starts_with("analytics") {
                continue;
            }
            assert_eq!(value, &raw(at_path(&view, path)), "{query}: {path}");
        }
        let count = shown
            .iter()
            .find(|(p, _)| p == "orders.count")
            .map(|(_, v)| v.clone());
        seen_counts.push(count);
    }
    assert_eq!(
        seen_counts,
        vec![Some("2".into()), Some("0".into()), Some("1".into())]
    );
    // Recording time: nothing of c-1 was recorded by 2026-02-15 (it was all appended now):
    // the page says so and keeps the picker.
    let (status, page) = site
        .page(
            &cookie,
            "/console/customers/c-1?date=2026-02-15&time=recorded",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("id=\"as-of\"") && page.contains("no event within the cut"));

    // Alter a stored event of customer c-1's stream: its chain no longer verifies.
    let (_, timeline) = site.page(&cookie, "/console/customers/c-1/timeline").await;
    assert!(timeline.contains("data-stream=\"customer-c-1\" data-status=\"intact\""));
    let mut conn = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        store.path().join("events.db").display()
    ))
    .await
    .expect("open the store's file");
    sqlx::raw_sql(
        "DROP TRIGGER IF EXISTS crm_events_append_only_update; \
         DROP TRIGGER IF EXISTS crm_events_append_only_delete;",
    )
    .execute(&mut conn)
    .await
    .expect("drop the guard");
    let done = sqlx::query(
        "UPDATE crm_events SET data = json_set(data, '$.segment', 'forged') \
         WHERE stream_id = 'customer-c-1' AND revision = 0",
    )
    .execute(&mut conn)
    .await
    .expect("tamper");
    assert_eq!(done.rows_affected(), 1);
    conn.close().await.expect("close");
    let (status, timeline) = site.page(&cookie, "/console/customers/c-1/timeline").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        timeline.contains("data-stream=\"customer-c-1\" data-status=\"broken\""),
        "{}",
        served.log()
    );
    assert!(timeline.contains("does not verify"));
}
