//! The console's pipeline, service, analytics and operations pages end to end: the app as
//! `crm-api serve` builds it on a fresh SQLite store, over real HTTP on a loopback port;
//! events seeded through `POST /v1/events`, a session opened by posting a key to
//! `/console/sign-in`, each page read with its cookie and held to what the API answers.

#[path = "api/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use chrono::{Duration, SecondsFormat, Utc};
use crm_api::app::Limits;
use crm_api::keys::Role;
use fixture::{App, OTHER_TENANT, TENANT};
use serde_json::{Value, json};

fn event(event_type: &str, data: Value, at: &str) -> Value {
    json!({"type": event_type, "occurred_at": at, "data": data})
}

fn deal(id: &str, owner: &str, amount: &str, stage: &str, close: &str) -> Value {
    event(
        "OpportunityOpened",
        json!({"opportunity_id": id, "customer_id": "c-1", "name": format!("Deal {id}"),
               "amount": amount, "currency": "EUR", "stage": stage,
               "close_date": close, "owner": owner}),
        "2026-01-02T09:00:00Z",
    )
}

fn ago(minutes: i64) -> String {
    (Utc::now() - Duration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A client that keeps the console's session cookie and follows no redirect.
struct Browser<'a> {
    app: &'a App,
    client: reqwest::Client,
    cookie: String,
}

/// A console answer: status, the CSP header, and the HTML.
struct Page {
    status: u16,
    csp: String,
    html: String,
}

impl<'a> Browser<'a> {
    async fn sign_in(app: &'a App, key: &str) -> Browser<'a> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let answer = client
            .post(app.url("/console/sign-in"))
            .form(&[("key", key)])
            .send()
            .await
            .expect("sign in");
        assert_eq!(answer.status().as_u16(), 303, "the key signs in");
        let cookie = answer
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("crm_console="))
            .and_then(|v| v.split(';').next())
            .expect("the session cookie")
            .to_owned();
        Browser {
            app,
            client,
            cookie,
        }
    }

    async fn get(&self, path: &str) -> Page {
        let answer = self
            .client
            .get(self.app.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("page");
        let status = answer.status().as_u16();
        let csp = answer
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let html = answer.text().await.expect("html");
        Page { status, csp, html }
    }

    /// A page that must be shown: 200, under the CSP, with no inline style anywhere.
    async fn page(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.html);
        assert!(
            page.csp.contains("style-src 'self'"),
            "{path}: {}",
            page.csp
        );
        assert!(!page.html.contains("style="), "{path}: an inline style");
        assert!(!page.html.contains("<style"), "{path}: a style element");
        assert!(!page.html.contains("<script"), "{path}: a script");
        assert_eq!(page.html.matches("<h1").count(), 1, "{path}: one h1");
        for tag in page.html.split('<').skip(1) {
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            assert!(tag.matches(" class=").count() <= 1, "{path}: <{tag}>");
            assert!(tag.matches(" id=").count() <= 1, "{path}: <{tag}>");
        }
        page.html
    }
}

/// The HTML from the tag holding `start` (its opening or an attribute) to the next `end`.
fn element<'h>(html: &'h str, start: &str, end: &str) -> &'h str {
    let found = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} is missing from {html}"));
    // From the opening of the tag that holds `start` (which may be an attribute).
    let from = html[..=found].rfind('<').expect("a tag");
    let rest = &html[from..];
    let to = rest.find(end).map_or(rest.len(), |i| i + end.len());
    &rest[..to]
}

/// Every `<th>` of `html` carries a scope, every table a caption, every control a label.
fn accessible(html: &str) {
    for cell in html.split("<th").skip(1) {
        let tag = &cell[..cell.find('>').expect("tag end")];
        if tag.starts_with("ead") {
            continue; // <thead>
        }
        assert!(
            tag.contains("scope=\""),
            "a header cell without scope: <th{tag}>"
        );
    }
    assert_eq!(
        html.matches("<table").count(),
        html.matches("<caption").count(),
        "a table without caption"
    );
    for control in html
        .split("<input")
        .skip(1)
        .chain(html.split("<select").skip(1))
    {
        let tag = &control[..control.find('>').expect("tag end")];
        if tag.contains("type=\"hidden\"") {
            continue;
        }
        let id = tag
            .split("id=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .expect("a control has an id");
        assert!(
            html.contains(&format!("<label for=\"{id}\"")),
            "no label for {id}"
        );
    }
}

/// A fresh SQLite app with the seed.
async fn seeded_app() -> App {
    let app = App::sqlite_with("console_pages", Limits::default())
        .await
        .expect("a SQLite app");
    seed(app).await
}

/// Deals across stages (two owners, won and lost ones), cases breached, warned and on time,
/// a CSAT answer, ten buyers in EUR; one deal of the other tenant. Waits until the read
/// models hold it all.
async fn seed(app: App) -> App {
    let mut events = vec![
        deal("op-1", "u-1", "1000.00", "Prospecting", "2030-06-15"),
        deal("op-2", "u-2", "500.00", "Prospecting", "2030-06-20"),
        deal("op-6", "u-2", "300.00", "Proposal", "2030-06-25"),
        deal("op-3", "u-1", "2000.00", "Negotiation", "2030-07-10"),
        deal("op-4", "u-1", "400.00", "Proposal", "2030-05-01"),
        event(
            "OpportunityWon",
            json!({"opportunity_id": "op-4"}),
            "2026-01-12T09:00:00Z",
        ),
        deal("op-5", "u-2", "100.00", "Qualification", "2030-05-01"),
        event(
            "OpportunityLost",
            json!({"opportunity_id": "op-5", "reason": "price"}),
            "2026-01-22T09:00:00Z",
        ),
        // Long past its targets: breached. Opened 50 minutes ago as urgent: past the warning
        // (75 % of 60 minutes), not yet due. Opened a minute ago as low: on time.
        event(
            "CaseOpened",
            json!({"case_id": "k-old", "customer_id": "c-1", "subject": "Old case",
                   "channel": "email", "priority": "normal"}),
            "2026-01-01T09:00:00Z",
        ),
        event(
            "CaseAssigned",
            json!({"case_id": "k-old", "agent": "a-1"}),
            "2026-01-01T09:05:00Z",
        ),
        event(
            "CaseOpened",
            json!({"case_id": "k-warn", "customer_id": "c-2", "subject": "Urgent case",
                   "channel": "phone", "priority": "urgent"}),
            &ago(50),
        ),
        event(
            "CaseOpened",
            json!({"case_id": "k-ok", "customer_id": "c-3", "subject": "Low case",
                   "channel": "email", "priority": "low"}),
            &ago(1),
        ),
        event(
            "CsatRecorded",
            json!({"case_id": "k-old", "score": 5, "comment": "fine"}),
            &ago(30),
        ),
    ];
    // Ten buyers in EUR: p-01..p-05 first buy in January 2025, p-06..p-10 in February;
    // the even ones buy again in March.
    for n in 1..=10u32 {
        let customer = format!("p-{n:02}");
        events.push(json!({"type": "CustomerRegistered",
            "data": {"customer_id": customer, "kind": "company", "name": format!("P{n}")}}));
        let first = if n <= 5 {
            "2025-01-10T10:00:00Z"
        } else {
            "2025-02-10T10:00:00Z"
        };
        events.push(event(
            "OrderPlaced",
            json!({"customer_id": customer, "order_id": "o-1",
                   "amount": format!("{}.00", n * 100 - 10), "currency": "EUR"}),
            first,
        ));
        if n % 2 == 0 {
            events.push(event(
                "OrderPlaced",
                json!({"customer_id": customer, "order_id": "o-2", "amount": "10.00",
                       "currency": "EUR"}),
                "2025-03-05T10:00:00Z",
            ));
        }
    }
    let answer = app.ingest(Value::Array(events)).await;
    let last = answer.ok()["last_position"].as_u64().expect("position");
    let other = app
        .ingest_as(
            OTHER_TENANT,
            json!([deal(
                "op-g1",
                "u-9",
                "777.00",
                "Qualification",
                "2030-06-01"
            )]),
        )
        .await;
    let other_last = other.ok()["last_position"].as_u64().expect("position");
    // The pages read the read models as they stand: wait until they hold the seed.
    let head = last.max(other_last);
    let satisfaction = format!(
        "/v1/service/satisfaction?from=2020-01-01T00:00:00Z&to={}",
        (Utc::now() + Duration::days(1)).to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    for path in [
        "/v1/pipeline?owner=u-1",
        "/v1/service/backlog?limit=1",
        "/v1/cases?limit=1",
        satisfaction.as_str(),
    ] {
        let waited = app.get(&format!("{path}&min_position={head}")).await;
        waited.ok();
    }
    app
}

#[tokio::test]
async fn the_console_pages_show_what_the_api_answers_the_session_key() {
    pages_show_what_the_api_answers(seeded_app().await).await;
}

#[tokio::test]
async fn on_postgresql_the_console_pages_show_what_the_api_answers_the_session_key() {
    // Skipped, loudly, without a PostgreSQL server (CI requires one).
    let Some(app) = App::postgres_with("console_pages", Limits::default()).await else {
        return;
    };
    pages_show_what_the_api_answers(seed(app).await).await;
}

async fn pages_show_what_the_api_answers(app: App) {
    let analyst = Browser::sign_in(&app, app.key(TENANT, Role::Analyst)).await;

    // Pipeline: open deals by stage, as a chart and a table.
    let html = analyst.page("/console/pipeline").await;
    accessible(&html);
    let funnel = element(&html, "<figure id=\"funnel-chart\"", "</figure>");
    assert!(funnel.contains("<svg") && funnel.contains("role=\"img\""));
    assert!(funnel.contains("<figcaption"));
    for (stage, count) in [
        ("Prospecting", 2),
        ("Proposal", 1),
        ("Negotiation", 1),
        ("Closed Won", 1),
        ("Closed Lost", 1),
    ] {
        let row = element(
            &html,
            &format!("<tr data-stage=\"{stage}\" data-currency=\"EUR\""),
            "</tr>",
        );
        assert!(row.contains(&format!("data-count=\"{count}\"")), "{row}");
        assert!(
            funnel.contains(&format!(">\n{stage}\n</text>")),
            "{stage} in the chart"
        );
    }
    // The forecast table holds the chart's data: the API's weighted amounts per month.
    let summary = app.get("/v1/pipeline").await;
    let forecast = summary.ok()["forecast"]
        .as_array()
        .expect("forecast")
        .clone();
    let month_total = |month: &str| -> i64 {
        forecast
            .iter()
            .filter(|l| l["close_month"] == month)
            .map(|l| {
                let amount = l["weighted"]["amount"].as_str().expect("amount");
                amount.replace('.', "").parse::<i64>().expect("cents")
            })
            .sum()
    };
    // Prospecting 10 % of 1500.00, Proposal 50 % of 300.00; Negotiation 80 % of 2000.00.
    assert_eq!(month_total("2030-06"), 30_000);
    assert_eq!(month_total("2030-07"), 160_000);
    let chart = element(&html, "<figure id=\"forecast-chart\"", "</figure>");
    for (month, weighted) in [("2030-06", "300.00"), ("2030-07", "1600.00")] {
        let row = element(
            &html,
            &format!("<tr data-month=\"{month}\" data-currency=\"EUR\""),
            "</tr>",
        );
        assert!(
            row.contains(&format!("class=\"num weighted\" data-value=\"{weighted}\"")),
            "{row}"
        );
        assert!(
            chart.contains(&format!(">\n{month}\n</text>")),
            "{month} in the chart"
        );
    }
    let mut months: Vec<&str> = forecast
        .iter()
        .filter_map(|l| l["close_month"].as_str())
        .collect();
    months.dedup();
    assert_eq!(
        chart.matches("<rect").count(),
        months.len(),
        "one bar per month: {chart}"
    );
    let win = element(&html, "<table id=\"win-rate\"", "</table>");
    assert!(win.contains("50.0 %"), "one won, one lost: {win}");
    // Filtered by owner through the GET form.
    let form = element(&html, "id=\"pipeline-filter\"", "</form>");
    assert!(
        form.contains("method=\"get\"") && form.contains("name=\"owner\""),
        "{form}"
    );
    let html = analyst.page("/console/pipeline?owner=u-1").await;
    let row = element(
        &html,
        "<tr data-stage=\"Prospecting\" data-currency=\"EUR\"",
        "</tr>",
    );
    assert!(row.contains("data-count=\"1\""), "only u-1's deal: {row}");
    assert!(!html.contains("data-month=\"2030-06\"") || !html.contains("300.00"));

    // Service: the backlog by due time, its SLA state in words and as an attribute.
    let html = analyst.page("/console/service").await;
    accessible(&html);
    let backlog = element(&html, "<table id=\"backlog\"", "</table>");
    let order: Vec<&str> = backlog
        .split("data-case=\"")
        .skip(1)
        .map(|t| t.split('"').next().expect("id"))
        .collect();
    assert_eq!(order, ["k-old", "k-warn", "k-ok"], "by due time");
    let old = element(backlog, "<tr data-case=\"k-old\"", "</tr>");
    assert!(old.contains("data-sla=\"breached\""), "{old}");
    assert!(
        old.contains("Breached: first response, resolution"),
        "{old}"
    );
    let warn = element(backlog, "<tr data-case=\"k-warn\"", "</tr>");
    assert!(warn.contains("data-sla=\"warning\""), "{warn}");
    assert!(warn.contains("Warning: first response due soon"), "{warn}");
    let ok = element(backlog, "<tr data-case=\"k-ok\"", "</tr>");
    assert!(
        ok.contains("data-sla=\"ok\"") && ok.contains("On time"),
        "{ok}"
    );
    let agents = element(&html, "<table id=\"agents\"", "</table>");
    let a1 = element(agents, "<tr data-agent=\"a-1\"", "</tr>");
    assert!(a1.contains(">1<"), "{a1}");
    let unassigned = element(agents, "<tr data-agent=\"\"", "</tr>");
    assert!(unassigned.contains(">2<"), "{unassigned}");
    let satisfaction = element(&html, "<table id=\"satisfaction\"", "</table>");
    assert!(satisfaction.contains("100.0 %"), "{satisfaction}");

    // Analytics: lifecycle, RFM grid, cohorts as a heat map with rates in words, Pareto.
    let html = analyst.page("/console/analytics?currency=EUR").await;
    accessible(&html);
    assert!(html.contains("<table id=\"lifecycle\""), "{html}");
    let rfm = app.get("/v1/analytics/rfm?currency=EUR&limit=1000").await;
    let customers = rfm.ok()["customers"].as_u64().expect("customers");
    assert_eq!(customers, 10);
    let grid = element(&html, "<table id=\"rfm-grid\"", "</table>");
    let counted: u64 = grid
        .split("data-f=\"")
        .skip(1)
        .map(|cell| {
            let value = &cell[cell.find('>').expect("cell") + 1..];
            value[..value.find('<').expect("end")]
                .parse::<u64>()
                .expect("count")
        })
        .sum();
    assert_eq!(counted, customers, "every customer in one cell: {grid}");
    let cohorts = element(&html, "id=\"cohorts\"", "</table>");
    let january = element(cohorts, "<tr data-cohort=\"2025-01\"", "</tr>");
    assert!(
        january.contains("class=\"num heat-4\" data-month=\"0\" data-value=\"1.0\""),
        "{january}"
    );
    assert!(january.contains("100.0 %"), "the rate as text: {january}");
    let profitability = app.get("/v1/analytics/profitability?currency=EUR").await;
    let top = profitability.ok()["top_20_percent_share"]
        .as_f64()
        .expect("share");
    let pareto = element(&html, "<figure id=\"pareto-chart\"", "</figure>");
    assert!(pareto.contains("<svg") && pareto.contains("<polyline"));
    assert!(
        pareto.contains(&format!("{:.1} %", top * 100.0)),
        "{pareto}"
    );
    // A currency nobody bought in: the sections say so, the page still answers.
    let html = analyst.page("/console/analytics?currency=JPY").await;
    for id in ["rfm-grid", "cohorts"] {
        let said = element(&html, &format!("id=\"{id}\""), "</p>");
        assert!(
            said.contains("No customer bought in this currency."),
            "{said}"
        );
    }
    assert!(!html.contains("id=\"top-20\""), "no share of nothing");
    assert!(html.contains("No data for this chart."));
    // A code that is no currency: one refusal naming it, not a page of failed sections.
    let refused = analyst.get("/console/analytics?currency=E%3CX").await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    assert!(
        refused.html.contains("currency=&quot;E&lt;X&quot;"),
        "{}",
        refused.html
    );

    // Operations: admin only.
    let refused = analyst.get("/console/operations").await;
    assert_eq!(refused.status, 403, "{}", refused.html);
    assert!(refused.html.contains("id=\"error\""));
    let admin_key = app.key(TENANT, Role::Admin);
    let admin = Browser::sign_in(&app, admin_key).await;
    let html = admin.page("/console/operations").await;
    accessible(&html);
    let models = element(&html, "<table id=\"read-models\"", "</table>");
    let listed = app.get("/v1/projections").await;
    for model in listed.ok()["projections"].as_array().expect("models") {
        let name = model["name"].as_str().expect("name");
        assert!(
            models.contains(&format!("<tr data-model=\"{name}\"")),
            "{name}"
        );
    }
    let tree = element(&html, "id=\"audit-tree\"", "</dl>");
    assert!(tree.contains("data-figure=\"audit_tree.lag\""), "{tree}");
    let signed = app
        .get_as(
            TENANT,
            Role::Auditor,
            &format!("/v1/audit/head?min_position={}", app.head().await),
        )
        .await;
    let size = signed.ok()["tree_size"].as_u64().expect("tree size");
    // The tenant's 38 seeded events, not the other tenant's deal.
    assert_eq!(size, 38);
    let html = admin.page("/console/operations").await;
    let head = element(&html, "id=\"signed-head\"", "</dl>");
    assert!(
        head.contains(&format!("data-figure=\"tree_size\" data-value=\"{size}\"")),
        "{size}: {head}"
    );
    let keys = element(&html, "<table id=\"keys\"", "</table>");
    assert!(keys.contains(App::key_id(admin_key)));
    assert!(!html.contains(admin_key), "a secret is shown");
    assert!(
        !keys.contains(App::key_id(app.key(OTHER_TENANT, Role::Admin))),
        "another tenant's key"
    );
}

#[tokio::test]
async fn another_tenants_key_sees_none_of_the_first_tenants_deals() {
    let app = seeded_app().await;
    let other = Browser::sign_in(&app, app.key(OTHER_TENANT, Role::Analyst)).await;
    let html = other.page("/console/pipeline").await;
    let row = element(
        &html,
        "<tr data-stage=\"Qualification\" data-currency=\"EUR\"",
        "</tr>",
    );
    assert!(
        row.contains("data-count=\"1\"") && row.contains("777.00"),
        "{row}"
    );
    for theirs in ["Prospecting", "Negotiation", "1000.00", "2030-07"] {
        assert!(!html.contains(theirs), "{theirs} leaked");
    }
    let html = other.page("/console/service").await;
    assert!(!html.contains("k-old") && !html.contains("k-warn"));
    let mine = Browser::sign_in(&app, app.key(TENANT, Role::Analyst)).await;
    let html = mine.page("/console/pipeline").await;
    assert!(!html.contains("777.00"));
}

#[tokio::test]
async fn the_apis_role_checks_hold_on_every_page() {
    let app = seeded_app().await;
    // An ingest key may append, not read: each page answers the API's 403 with its reason.
    let ingest = Browser::sign_in(&app, app.key(TENANT, Role::Ingest)).await;
    for path in [
        "/console/pipeline",
        "/console/service",
        "/console/analytics",
        "/console/operations",
    ] {
        let page = ingest.get(path).await;
        assert_eq!(page.status, 403, "{path}: {}", page.html);
        let error = element(&page.html, "id=\"error\"", "</p>");
        assert!(error.contains("ingest"), "{path}: {error}");
    }
    // An auditor reads read-model state through the API, but the page is for admins.
    let auditor = Browser::sign_in(&app, app.key(TENANT, Role::Auditor)).await;
    let page = auditor.get("/console/operations").await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(page.html.contains("needs an admin key"), "{}", page.html);
}
