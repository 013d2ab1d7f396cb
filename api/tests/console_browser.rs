//! The web console (issue 22) in a real headless Chromium, driven through chromedriver, on
//! the real `crm-api serve` seeded over HTTP with a whole CRM history of two tenants: sign
//! in, search, a customer live and as of past dates (every figure equal to the API's answer
//! for that moment), a tampered stream marked broken on the timeline, the pipeline, service,
//! analytics and operations pages, sign-out, tenant isolation and a revoked key's session
//! ending. Every page passes the same checks: same origin only, no CSP violation, no axe-core
//! violation of impact serious or critical. Without Chromium the test says so loudly and
//! returns, unless `CRM_REQUIRE_BROWSER=1` (CI), which makes that a failure.

#[path = "console/browser.rs"]
mod browser;
#[path = "console/processes.rs"]
mod processes;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use crm_tests::crm_data::Emitted;
use crm_tests::crm_full::{api_event, full_history};
use serde_json::{Value, json};

use browser::{Browser, CSP};
use processes::{Api, BrowserTools, Chromedriver, create_key, key_id, keys, tamper};

/// The API beside the browser: plain HTTP with a key.
struct Http {
    client: reqwest::Client,
    origin: String,
}

impl Http {
    /// Redirects are not followed: a 303 to sign-in is an answer to check.
    fn new(origin: &str) -> Http {
        Http {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            origin: origin.to_owned(),
        }
    }

    async fn get(&self, key: &str, path: &str) -> (u16, Value) {
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
    async fn console(&self, cookie: &str, path: &str) -> (u16, String, String) {
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
fn figures_match(
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

/// An acme customer to look at: still active (a name to search for), with orders on at
/// least two days; the one with the most orders. Its id, name and two order dates.
fn pick_customer(events: &[Emitted]) -> (String, String, NaiveDate, NaiveDate) {
    let mut gone = BTreeSet::new();
    let mut orders: std::collections::BTreeMap<String, Vec<NaiveDate>> = Default::default();
    let mut names = std::collections::BTreeMap::new();
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
    let first = dates[0];
    let last = *dates.last().expect("orders");
    let name = names[&id].clone();
    (id, name, first, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_customers_as_of_any_date_marks_broken_streams_and_ends_sessions() {
    let Some(tools) = BrowserTools::find_or_explain("console_browser") else {
        return;
    };
    let dir = tempfile::tempdir().expect("data dir");
    let api = Api::start(dir.path(), &[]);
    let http = Http::new(&api.origin);
    let admin_acme = create_key(dir.path(), "acme", "admin", true);
    let admin_globex = create_key(dir.path(), "globex", "admin", true);
    let analyst = create_key(dir.path(), "acme", "analyst", true);
    let stranger = create_key(dir.path(), "globex", "analyst", true);
    let doomed = create_key(dir.path(), "acme", "analyst", true);

    let steps = std::env::var("CRM_CONSOLE_TEST_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6_000);
    let events = full_history(22, 240, steps);
    let acme: Vec<&Emitted> = events.iter().filter(|e| e.tenant == "acme").collect();
    let globex: Vec<&Emitted> = events.iter().filter(|e| e.tenant == "globex").collect();
    http.seed(&admin_acme, &acme).await;
    let head = http.seed(&admin_globex, &globex).await;
    http.caught_up(&admin_acme, head).await;
    let (customer, name, first_order, last_order) = pick_customer(&events);

    let driver = Chromedriver::start(&tools).await;
    let mut browser = Browser::open(&tools, &driver, &api.origin).await;

    // Sign-in: the page, then a wrong key is refused with an error.
    browser.visit("/console/sign-in", Some("sign-in")).await;
    browser
        .must_have("sign-in", "#sign-in-form input#key[type=password]")
        .await;
    browser.sign_in("crm_nope_nope").await;
    browser
        .must_have("sign-in with a wrong key", "#error")
        .await;
    browser.check_page("sign-in with a wrong key").await;

    // The analyst signs in and lands on the customers list; the cookie is the session's.
    browser.sign_in(&analyst).await;
    assert!(
        browser
            .wait_for_location("/console/customers", Duration::from_secs(10))
            .await,
        "signed in, the browser is at {}: {:?}",
        browser.location().await,
        browser.text_of("#error").await
    );
    let cookie = browser
        .client
        .get_named_cookie("crm_console")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true), "HttpOnly session cookie");
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_eq!(cookie.path(), Some("/console"));
    let session = cookie.value().to_owned();
    browser.visit("/console/customers", Some("customers")).await;
    browser
        .must_have("customers", "table#customers tr[data-customer]")
        .await;

    // Search by name, then open the customer from its row.
    browser.type_into("#search", &name).await;
    browser
        .client
        .find(fantoccini::Locator::Css("#customer-search"))
        .await
        .expect("the search form")
        .find(fantoccini::Locator::Css("button, input[type=submit]"))
        .await
        .expect("the search button")
        .click()
        .await
        .expect("search");
    let row = format!("tr[data-customer=\"{customer}\"]");
    browser.must_have("customers, searched", &row).await;
    browser.check_page("customers, searched").await;
    browser.click(&format!("{row} a")).await;
    let page = format!("/console/customers/{customer}");
    assert!(
        browser
            .wait_for_location(&page, Duration::from_secs(10))
            .await,
        "the row led to {}",
        browser.location().await
    );
    browser.visit(&page, Some("customer")).await;
    for section in [
        "#profile",
        "#consents",
        "#figures",
        "#analytics",
        "#deals",
        "#cases",
        "#tasks",
        "#cut",
        "a#timeline-link",
    ] {
        browser.must_have("customer", section).await;
    }
    let (status, live) = http
        .get(&analyst, &format!("/v1/customers/{customer}"))
        .await;
    assert_eq!(status, 200, "{live}");
    figures_match("customer, live", &browser.figures().await, &live);

    // As of two dates, through the form: each figure is the API's for that moment, and the
    // order count differs between them.
    let mut counts = Vec::new();
    for (date, shot) in [(first_order, Some("customer-as-of")), (last_order, None)] {
        browser.goto(&page).await;
        browser.set_value("#as-of-date", &date.to_string()).await;
        browser.click("#as-of-apply").await;
        let wanted = format!("date={date}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !browser.location().await.contains(&wanted) {
            assert!(
                Instant::now() < deadline,
                "the as-of form did not go to {date}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let label = format!("customer as of {date}");
        browser.check_page(&label).await;
        let cut = browser.text_of("#cut").await.unwrap_or_default();
        assert!(cut.contains(&date.to_string()), "{label}: #cut says {cut}");
        let (status, then) = http
            .get(
                &analyst,
                &format!("/v1/customers/{customer}?as_of={date}T23:59:59Z"),
            )
            .await;
        assert_eq!(status, 200, "{then}");
        let figures = figures_match(&label, &browser.figures().await, &then);
        let count = figures
            .iter()
            .find(|(path, _)| path == "orders.count")
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("{label}: no orders.count figure"));
        counts.push(count);
        if let Some(name) = shot {
            browser.screenshot(name).await;
        }
    }
    assert_ne!(
        counts[0], counts[1],
        "orders.count on {first_order} and {last_order}"
    );

    // At phone width the customer page has no horizontal scroll.
    browser
        .client
        .set_window_size(375, 812)
        .await
        .expect("phone width");
    browser.goto(&page).await;
    let widths = browser
        .client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("widths");
    let (scroll, inner) = (
        widths[0].as_u64().unwrap_or(0),
        widths[1].as_u64().unwrap_or(0),
    );
    assert!(
        (300..=420).contains(&inner),
        "the window is phone-wide: {inner}"
    );
    assert!(
        scroll <= inner,
        "horizontal scroll at {inner} px: {scroll} px wide"
    );
    browser
        .client
        .set_window_size(1280, 900)
        .await
        .expect("desktop width");

    // The timeline, read by an analyst: the streams are listed, unchecked (no auditor role).
    browser.click("a#timeline-link").await;
    let timeline = format!("/console/customers/{customer}/timeline");
    assert!(
        browser
            .wait_for_location(&timeline, Duration::from_secs(10))
            .await
    );
    browser.visit(&timeline, None).await;
    browser
        .must_have("timeline", "table#timeline tr[data-position]")
        .await;
    browser
        .must_have("timeline", "table#streams tr[data-status=unchecked]")
        .await;

    // Every page answers with the contract's CSP.
    let (status, csp, _) = http.console("", "/console/sign-in").await;
    assert_eq!(
        (status, csp.as_str()),
        (200, CSP),
        "the sign-in page's CSP header"
    );
    for path in ["/console/customers", page.as_str(), timeline.as_str()] {
        let (status, csp, _) = http.console(&session, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(csp, CSP, "{path}: the CSP header");
    }

    // Sign-out ends the session: the list now sends the browser to sign-in.
    browser.sign_out().await;
    browser.goto("/console/customers").await;
    assert!(
        browser.location().await.starts_with("/console/sign-in"),
        "signed out, the list is at {}",
        browser.location().await
    );
    let (status, _, _) = http.console(&session, "/console/customers").await;
    assert_eq!(status, 303, "the old cookie after sign-out");

    // An intruder alters the customer's stream in the stopped server's file; after a
    // restart the admin's timeline marks that stream broken.
    let stream = format!("customer-{customer}");
    api.stop();
    tamper(&dir.path().join("events.db"), "acme", &stream, 1).await;
    let api = Api::start(dir.path(), &["--restore-guards"]);
    browser.origin = api.origin.clone();
    let http = Http::new(&api.origin);
    browser.sign_in(&admin_acme).await;
    assert!(
        browser
            .wait_for_location("/console/customers", Duration::from_secs(10))
            .await
    );
    // The page itself says the chain does not verify (`#error` as an alert), so it is
    // loaded and checked without `visit`, which takes `#error` for a failed page.
    browser.goto(&timeline).await;
    browser
        .must_have("timeline of a tampered stream", "main#main h1")
        .await;
    browser.check_page("timeline of a tampered stream").await;
    browser.screenshot("timeline-broken").await;
    let broken = format!("table#streams tr[data-stream=\"{stream}\"][data-status=broken]");
    browser
        .must_have("timeline of a tampered stream", &broken)
        .await;
    browser.must_have("timeline for an admin", "a.proof").await;
    browser.sign_out().await;

    // A key of another tenant sees none of acme's customers.
    browser.sign_in(&stranger).await;
    assert!(
        browser
            .wait_for_location("/console/customers", Duration::from_secs(10))
            .await
    );
    browser
        .visit(
            &format!("/console/customers?search={}", name.replace(' ', "+")),
            None,
        )
        .await;
    assert!(!browser.has(&row).await, "globex found acme's {customer}");
    let stranger_session = browser.session_cookie().await.expect("globex session");
    let (status, _, body) = http.console(&stranger_session, &page).await;
    assert_eq!(status, 404, "acme's customer for globex: {body}");
    browser.goto(&page).await;
    browser
        .must_have("another tenant's customer", "#error")
        .await;
    browser.check_page("another tenant's customer").await;
    browser.sign_out().await;

    // A revoked key's session ends within the key cache's lifetime.
    browser.sign_in(&doomed).await;
    assert!(
        browser
            .wait_for_location("/console/customers", Duration::from_secs(10))
            .await
    );
    keys(dir.path(), &["revoke", key_id(&doomed)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        browser.goto("/console/customers").await;
        if browser.location().await.starts_with("/console/sign-in") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked key's session goes on"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The pages that came last (pipeline, service, analytics, operations), after the
    // rest: each with its promised parts, as the analyst and then as the admin.
    browser.sign_in(&analyst).await;
    assert!(
        browser
            .wait_for_location("/console/customers", Duration::from_secs(10))
            .await
    );
    let session = browser
        .session_cookie()
        .await
        .expect("the analyst's session");
    browser.visit("/console/pipeline", Some("pipeline")).await;
    for part in [
        "#funnel-chart svg",
        "#funnel-chart figcaption",
        "#forecast-chart svg",
        "#forecast-chart figcaption",
        "table#funnel",
        "table#forecast",
        "#win-rate",
    ] {
        browser.must_have("pipeline", part).await;
    }
    browser.visit("/console/service", Some("service")).await;
    for part in ["table#backlog", "#agents", "#satisfaction"] {
        browser.must_have("service", part).await;
    }
    let slas = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#backlog tr[data-case]')).map(r => r.getAttribute('data-sla'));",
            vec![],
        )
        .await
        .expect("sla marks");
    for sla in slas.as_array().cloned().unwrap_or_default() {
        assert!(
            ["breached", "warning", "ok"].contains(&sla.as_str().unwrap_or_default()),
            "service: data-sla {sla}"
        );
    }
    browser.visit("/console/analytics", Some("analytics")).await;
    for part in ["#rfm-grid", "#cohorts", "#lifecycle", "#pareto-chart"] {
        browser.must_have("analytics", part).await;
    }
    // Operations is for admins: the analyst gets the error page.
    browser.goto("/console/operations").await;
    browser
        .must_have("operations as an analyst", "#error")
        .await;
    assert!(!browser.has("#keys").await, "an analyst saw the keys");
    let (status, _, _) = http.console(&session, "/console/operations").await;
    assert_eq!(status, 403, "operations for an analyst");

    for path in [
        "/console/pipeline",
        "/console/service",
        "/console/analytics",
    ] {
        let (status, csp, _) = http.console(&session, path).await;
        assert_eq!(
            (status, csp.as_str()),
            (200, CSP),
            "{path}: status and CSP header"
        );
    }
    browser.sign_out().await;
    browser.sign_in(&admin_acme).await;
    assert!(
        browser
            .wait_for_location("/console/customers", Duration::from_secs(10))
            .await
    );
    browser
        .visit("/console/operations", Some("operations"))
        .await;
    for part in ["#read-models", "#audit-tree", "#keys"] {
        browser.must_have("operations", part).await;
    }
    let source = browser.client.source().await.expect("page source");
    for key in [&admin_acme, &analyst, &doomed] {
        let secret = key.rsplit('_').next().expect("secret");
        assert!(!source.contains(secret), "operations shows a key's secret");
    }
    assert!(
        source.contains(key_id(&analyst)),
        "operations lists the analyst's key"
    );
    browser.client.close().await.expect("close the browser");
    assert!(!api.log().contains(&analyst), "a key was logged");
}
