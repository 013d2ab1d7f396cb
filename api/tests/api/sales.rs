//! Issue 18, accounts and tasks: contacts linked to a company customer (checked against the
//! account's stream at ingest), summed on the account's 360 view live and as of a past time,
//! listed by `GET /v1/accounts/{id}/contacts`; tasks listed by `GET /v1/tasks` with every
//! filter and both orders, open tasks on the 360 view and on `GET /v1/opportunities/{id}`.

use std::future::Future;

use crm_api::app::Limits;
use serde_json::{Value, json};

use crate::fixture::App;
use crate::suite::Start;

macro_rules! app {
    ($start:expr) => {
        match $start(Limits::default()).await {
            Some(app) => app,
            None => return,
        }
    };
}

fn event(event_type: &str, data: Value, at: &str) -> Value {
    json!({"type": event_type, "occurred_at": at, "data": data})
}

fn registered(id: &str, kind: &str, at: &str) -> Value {
    event(
        "CustomerRegistered",
        json!({"customer_id": id, "kind": kind, "name": format!("Name of {id}")}),
        at,
    )
}

fn linked(person: &str, account: &str, role: &str, at: &str) -> Value {
    event(
        "ContactLinked",
        json!({"customer_id": person, "account_id": account, "role": role}),
        at,
    )
}

fn ids(body: &Value, member: &str) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item[member].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn money(amount: &str, currency: &str) -> Value {
    json!({"amount": amount, "currency": currency})
}

async fn last_position(app: &App, events: Value) -> u64 {
    app.ingest(events).await.ok()["last_position"]
        .as_u64()
        .expect("last_position")
}

pub async fn contacts_are_linked_moved_and_summed_on_the_account<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let last = last_position(
        &app,
        json!([
            registered("acme", "company", "2026-01-01T00:00:00Z"),
            registered("globex", "company", "2026-01-01T00:00:00Z"),
            registered("p-1", "person", "2026-01-02T00:00:00Z"),
            registered("p-2", "person", "2026-01-02T00:00:00Z"),
            registered("p-3", "person", "2026-01-02T00:00:00Z"),
            event(
                "InteractionLogged",
                json!({"customer_id": "p-1", "interaction_id": "i-1",
                "channel": "phone", "direction": "inbound"}),
                "2026-01-03T00:00:00Z"
            ),
            event(
                "InteractionLogged",
                json!({"customer_id": "p-1", "interaction_id": "i-2",
                "channel": "email", "direction": "outbound"}),
                "2026-01-03T01:00:00Z"
            ),
            event(
                "OrderPlaced",
                json!({"customer_id": "p-1", "order_id": "o-1",
                "amount": "100.00", "currency": "USD"}),
                "2026-01-04T00:00:00Z"
            ),
            event(
                "OrderRefunded",
                json!({"customer_id": "p-1", "order_id": "o-1",
                "amount": "10.00", "currency": "USD"}),
                "2026-01-05T00:00:00Z"
            ),
            event(
                "OrderPlaced",
                json!({"customer_id": "p-2", "order_id": "o-2",
                "amount": "50.00", "currency": "EUR"}),
                "2026-01-04T00:00:00Z"
            ),
            event(
                "OpportunityOpened",
                json!({"opportunity_id": "op-1", "customer_id": "p-2",
                "name": "Deal", "amount": "1000.00", "currency": "USD",
                "stage": "Prospecting", "close_date": "2026-06-30"}),
                "2026-01-04T00:00:00Z"
            ),
            event(
                "CaseOpened",
                json!({"case_id": "k-1", "customer_id": "p-2",
                "subject": "Help", "channel": "email", "priority": "high"}),
                "2026-01-04T00:00:00Z"
            ),
            event(
                "InteractionLogged",
                json!({"customer_id": "acme", "interaction_id": "i-3",
                "channel": "meeting", "direction": "inbound"}),
                "2026-01-03T00:00:00Z"
            ),
            event(
                "OrderPlaced",
                json!({"customer_id": "acme", "order_id": "o-3",
                "amount": "200.00", "currency": "USD"}),
                "2026-01-04T00:00:00Z"
            ),
            event(
                "OrderPlaced",
                json!({"customer_id": "p-3", "order_id": "o-4",
                "amount": "7.00", "currency": "USD"}),
                "2026-01-04T00:00:00Z"
            ),
            linked("p-1", "acme", "buyer", "2026-01-10T00:00:00Z"),
            linked("p-2", "acme", "billing", "2026-01-11T00:00:00Z"),
            linked("p-3", "acme", "technical", "2026-01-12T00:00:00Z"),
            // A move: the link to globex ends the link to acme.
            linked("p-3", "globex", "buyer", "2026-01-13T00:00:00Z"),
        ]),
    )
    .await;

    // The rules: the account must be a registered company; the contact a registered person.
    app.ingest(json!([linked(
        "p-1",
        "p-2",
        "buyer",
        "2026-01-20T00:00:00Z"
    )]))
    .await
    .problem(
        409,
        &["events[0]", "account p-2 is a person, not a company"],
    );
    app.ingest(json!([linked(
        "p-1",
        "nobody",
        "buyer",
        "2026-01-20T00:00:00Z"
    )]))
    .await
    .problem(409, &["account nobody is not a registered customer"]);
    app.ingest(json!([linked(
        "acme",
        "globex",
        "buyer",
        "2026-01-20T00:00:00Z"
    )]))
    .await
    .problem(
        409,
        &["customer acme cannot be linked to account globex: it is a company"],
    );
    app.ingest(json!([linked(
        "p-1",
        "acme",
        "buyer",
        "2026-01-20T00:00:00Z"
    )]))
    .await
    .problem(409, &["it is already a contact of account acme as buyer"]);
    app.ingest(json!([event("ContactUnlinked",
        json!({"customer_id": "p-1", "account_id": "globex"}), "2026-01-20T00:00:00Z")]))
        .await
        .problem(409, &["customer p-1 cannot be unlinked from account globex: it is not a contact of account globex"]);
    app.ingest(json!([linked(
        "p-1",
        "p-1",
        "buyer",
        "2026-01-20T00:00:00Z"
    )]))
    .await
    .problem(
        422,
        &[
            "data.account_id",
            "a customer cannot be a contact of itself",
        ],
    );
    // An account registered earlier in the same batch counts.
    let last = last_position(
        &app,
        json!([
            registered("initech", "company", "2026-01-21T00:00:00Z"),
            linked("p-1", "initech", "buyer", "2026-01-21T00:00:00Z"),
            linked("p-1", "acme", "buyer", "2026-01-22T00:00:00Z"),
        ]),
    )
    .await
    .max(last);

    let view = app
        .get(&format!("/v1/customers/acme?min_position={last}"))
        .await;
    let account = &view.ok()["account"];
    assert_eq!(account["contact_count"], 2);
    assert_eq!(
        account["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .map(|c| (
                c["customer_id"].as_str().unwrap_or_default(),
                c["role"].as_str().unwrap_or_default()
            ))
            .collect::<Vec<_>>(),
        [("p-1", "buyer"), ("p-2", "billing")]
    );
    assert_eq!(account["contacts"][0]["linked_at"], "2026-01-22T00:00:00Z");
    let contacts = &account["contacts_figures"];
    assert_eq!(contacts["interactions"], 2);
    assert_eq!(contacts["inbound"], 1);
    assert_eq!(contacts["outbound"], 1);
    assert_eq!(contacts["orders"], 2);
    assert_eq!(
        contacts["orders_by_currency"],
        json!([
            {"currency": "EUR", "count": 1, "gross": money("50.00", "EUR"),
             "refunded": money("0.00", "EUR"), "net": money("50.00", "EUR")},
            {"currency": "USD", "count": 1, "gross": money("100.00", "USD"),
             "refunded": money("10.00", "USD"), "net": money("90.00", "USD")},
        ])
    );
    assert_eq!(contacts["open_opportunities"], 1);
    assert_eq!(
        contacts["open_opportunity_totals"],
        json!([money("1000.00", "USD")])
    );
    assert_eq!(contacts["won_opportunities"], 0);
    assert_eq!(contacts["open_cases"], 1);
    let combined = &account["combined"];
    assert_eq!(combined["interactions"], 3);
    assert_eq!(combined["inbound"], 2);
    assert_eq!(combined["orders"], 3);
    assert_eq!(
        combined["orders_by_currency"][1],
        json!({"currency": "USD", "count": 2, "gross": money("300.00", "USD"),
               "refunded": money("10.00", "USD"), "net": money("290.00", "USD")})
    );
    assert_eq!(view.body["open_tasks"], json!([]));
    // A person shows the account it is a contact of; a company has no contact_of.
    let p1 = app.get("/v1/customers/p-1").await;
    assert_eq!(
        p1.ok()["contact_of"],
        json!({"account_id": "acme", "role": "buyer", "linked_at": "2026-01-22T00:00:00Z"})
    );
    assert_eq!(p1.body.get("account"), None);
    assert_eq!(view.body.get("contact_of"), None);

    // The contacts list, in pages by customer id.
    let page = app.get("/v1/accounts/acme/contacts?limit=1").await;
    assert_eq!(ids(page.ok(), "customer_id"), ["p-1"]);
    assert_eq!(page.body["next_after"], "p-1");
    let page = app
        .get("/v1/accounts/acme/contacts?limit=1&after=p-1")
        .await;
    assert_eq!(ids(page.ok(), "customer_id"), ["p-2"]);
    let globex = app.get("/v1/accounts/globex/contacts").await;
    assert_eq!(ids(globex.ok(), "customer_id"), ["p-3"]);
    assert_eq!(globex.body["items"][0]["role"], "buyer");
    assert_eq!(globex.body.get("next_after"), None);
    app.get("/v1/accounts/nobody/contacts")
        .await
        .problem(404, &["customer nobody not found"]);
    app.get("/v1/accounts/acme/contacts?limit=0")
        .await
        .problem(400, &["limit=0"]);

    // As of a past business time: the links in force then, each contact folded then.
    let past = app
        .get("/v1/customers/acme?as_of=2026-01-12T12:00:00Z")
        .await;
    let account = &past.ok()["account"];
    assert_eq!(account["contact_count"], 3);
    assert_eq!(
        ids(&json!({"items": account["contacts"]}), "customer_id"),
        ["p-1", "p-2", "p-3"]
    );
    assert_eq!(account["contacts"][0]["linked_at"], "2026-01-10T00:00:00Z");
    assert_eq!(account["contacts_figures"]["orders"], 3);
    assert_eq!(
        past.body["open_tasks"],
        json!([]),
        "the account had no task then"
    );
    let earlier = app
        .get("/v1/customers/acme?as_of=2026-01-10T12:00:00Z")
        .await;
    assert_eq!(
        ids(
            &json!({"items": earlier.ok()["account"]["contacts"]}),
            "customer_id"
        ),
        ["p-1"]
    );
    let p3 = app
        .get("/v1/customers/p-3?as_of=2026-01-12T12:00:00Z")
        .await;
    assert_eq!(p3.ok()["contact_of"]["account_id"], "acme");
    // As of now, the same as live.
    let now = app
        .get(&format!("/v1/customers/acme?position={last}"))
        .await;
    assert_eq!(now.ok()["account"], view.body["account"]);
}

fn task(id: &str, subject_type: &str, subject: &str, owner: &str, due: &str) -> Value {
    event(
        "TaskCreated",
        json!({"task_id": id, "subject_type": subject_type, "subject_id": subject,
               "owner": owner, "due_at": due, "title": format!("Title of {id}")}),
        "2026-01-01T00:00:00Z",
    )
}

pub async fn tasks_filter_page_and_show_on_their_subjects<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let last = last_position(
        &app,
        json!([
            registered("c-1", "person", "2026-01-01T00:00:00Z"),
            event(
                "OpportunityOpened",
                json!({"opportunity_id": "op-1", "customer_id": "c-1",
                "name": "Deal", "amount": "10.00", "currency": "USD",
                "stage": "Proposal", "close_date": "2026-06-30"}),
                "2026-01-01T00:00:00Z"
            ),
            event(
                "CaseOpened",
                json!({"case_id": "k-1", "customer_id": "c-1", "subject": "Help",
                "channel": "email", "priority": "normal"}),
                "2026-01-01T00:00:00Z"
            ),
            event(
                "LeadCaptured",
                json!({"lead_id": "l-1", "name": "Lead one", "source": "web"}),
                "2026-01-01T00:00:00Z"
            ),
            task("t-1", "opportunity", "op-1", "u-1", "2020-01-01T00:00:00Z"),
            task("t-2", "customer", "c-1", "u-1", "2099-01-01T00:00:00+02:00"),
            task("t-3", "customer", "c-1", "u-2", "2020-06-01T00:00:00Z"),
            event(
                "TaskCompleted",
                json!({"task_id": "t-3"}),
                "2026-01-02T00:00:00Z"
            ),
            task("t-4", "case", "k-1", "u-2", "2021-01-01T00:00:00Z"),
            event(
                "TaskRescheduled",
                json!({"task_id": "t-4", "due_at": "2098-01-01T00:00:00Z"}),
                "2026-01-02T00:00:00Z"
            ),
            task("t-5", "lead", "l-1", "u-1", "2019-01-01T00:00:00Z"),
            event(
                "TaskCancelled",
                json!({"task_id": "t-5"}),
                "2026-01-02T00:00:00Z"
            ),
        ]),
    )
    .await;
    // A completed or cancelled task cannot change again.
    app.ingest(json!([event(
        "TaskCompleted",
        json!({"task_id": "t-3"}),
        "2026-01-03T00:00:00Z"
    )]))
    .await
    .problem(409, &["task t-3 cannot be completed: it was completed"]);
    app.ingest(json!([event(
        "TaskRescheduled",
        json!({"task_id": "t-5", "due_at": "2030-01-01T00:00:00Z"}),
        "2026-01-03T00:00:00Z"
    )]))
    .await
    .problem(409, &["task t-5 cannot be rescheduled: it was cancelled"]);
    app.ingest(json!([event(
        "TaskCompleted",
        json!({"task_id": "t-9"}),
        "2026-01-03T00:00:00Z"
    )]))
    .await
    .problem(409, &["task t-9 cannot be completed: it was never created"]);
    // A task's subject must hold an event (in the log, or earlier in the batch).
    app.ingest(json!([task(
        "t-6",
        "opportunity",
        "op-9",
        "u-1",
        "2030-01-01T00:00:00Z"
    )]))
    .await
    .problem(
        409,
        &["task t-6 cannot be created: its subject opportunity op-9 has no event"],
    );
    app.ingest(json!([task(
        "t-6",
        "deal",
        "op-1",
        "u-1",
        "2030-01-01T00:00:00Z"
    )]))
    .await
    .problem(422, &["data.subject_type"]);
    app.ingest(json!([task("t-6", "case", "k-1", "u-1", "tomorrow")]))
        .await
        .problem(422, &["data.due_at", "RFC 3339"]);

    let all = app.get(&format!("/v1/tasks?min_position={last}")).await;
    assert_eq!(
        ids(all.ok(), "task_id"),
        ["t-1", "t-2", "t-3", "t-4", "t-5"]
    );
    let t2 = &all.body["items"][1];
    assert_eq!(t2["subject_type"], "customer");
    assert_eq!(t2["subject_id"], "c-1");
    assert_eq!(t2["owner"], "u-1");
    assert_eq!(t2["due_at"], "2098-12-31T22:00:00Z", "kept in UTC");
    assert_eq!(t2["title"], "Title of t-2");
    assert_eq!(t2["status"], "open");
    assert_eq!(t2["overdue"], false);
    assert_eq!(all.body["items"][0]["overdue"], true);
    assert_eq!(all.body["items"][3]["reschedules"], 1);
    assert_eq!(all.body["items"][2]["closed_at"], "2026-01-02T00:00:00Z");
    for (query, expected) in [
        ("owner=u-1", vec!["t-1", "t-2", "t-5"]),
        ("status=open", vec!["t-1", "t-2", "t-4"]),
        ("status=cancelled", vec!["t-5"]),
        ("overdue=true", vec!["t-1"]),
        ("overdue=false", vec!["t-2", "t-3", "t-4", "t-5"]),
        ("due_before=2050-01-01T00:00:00Z", vec!["t-1", "t-3", "t-5"]),
        ("subject=customer:c-1", vec!["t-2", "t-3"]),
        ("owner=u-2&status=open", vec!["t-4"]),
        ("order=due", vec!["t-5", "t-1", "t-3", "t-4", "t-2"]),
        ("limit=2&after=t-2", vec!["t-3", "t-4"]),
    ] {
        let answer = app.get(&format!("/v1/tasks?{query}")).await;
        assert_eq!(ids(answer.ok(), "task_id"), expected, "{query}");
    }
    // Pages by due time: the cursor is the last (due time, id).
    let page = app.get("/v1/tasks?order=due&limit=2").await;
    assert_eq!(ids(page.ok(), "task_id"), ["t-5", "t-1"]);
    assert_eq!(page.body["next_after"], "2020-01-01T00:00:00Z,t-1");
    let page = app
        .get("/v1/tasks?order=due&limit=2&after=2020-01-01T00:00:00Z,t-1")
        .await;
    assert_eq!(ids(page.ok(), "task_id"), ["t-3", "t-4"]);

    // Bad values are named.
    for (query, named) in [
        ("overdue=yes", "overdue"),
        ("status=done", "status"),
        ("order=owner", "order"),
        ("subject=deal:op-1", "subject"),
        ("subject=op-1", "subject"),
        ("due_before=tomorrow", "due_before"),
        ("order=due&after=t-1", "after"),
        ("colour=red", "colour"),
    ] {
        app.get(&format!("/v1/tasks?{query}"))
            .await
            .problem(400, &[named]);
    }

    // Open tasks on the 360 view and on the opportunity.
    let view = app.get("/v1/customers/c-1").await;
    assert_eq!(
        ids(&json!({"items": view.ok()["open_tasks"]}), "task_id"),
        ["t-2"]
    );
    // As of a past time: the tasks open then (t-3 was completed on 2 January), each
    // overdue at that time.
    let past = app
        .get("/v1/customers/c-1?as_of=2026-01-01T12:00:00Z")
        .await;
    assert_eq!(
        ids(&json!({"items": past.ok()["open_tasks"]}), "task_id"),
        ["t-3", "t-2"]
    );
    assert_eq!(past.body["open_tasks"][0]["overdue"], true);
    assert_eq!(past.body["open_tasks"][1]["overdue"], false);
    let deal = app.get("/v1/opportunities/op-1").await;
    assert_eq!(deal.ok()["opportunity_id"], "op-1");
    assert_eq!(deal.body["stage"], "Proposal");
    assert_eq!(
        ids(&json!({"items": deal.body["open_tasks"]}), "task_id"),
        ["t-1"]
    );
    assert_eq!(deal.body["open_tasks"][0]["overdue"], true);
    app.get("/v1/opportunities/op-9")
        .await
        .problem(404, &["opportunity op-9 not found"]);
}
