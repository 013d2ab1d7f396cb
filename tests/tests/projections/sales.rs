//! Issue 18's read models on real stores: the contact-link history answers, at every past
//! moment, exactly what the live read model answered then; tasks fold to the hand-computed
//! rows. (Rebuild = live for both is the suite's rebuild test: their tables are in
//! `all_projections` and the generated history links contacts and creates tasks.)

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_core::envelope::TenantId;
use crm_projections::accounts;
use crm_projections::asof::Cut;
use crm_projections::tasks::{self, TaskFilter, TaskOrder, TaskStatus};
use crm_tests::crm_data::{Emitted, append_all, history};
use serde_json::{Value, json};

use crate::fixture::Fixture;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time")
        .with_timezone(&Utc)
}

fn ev(event_type: &'static str, data: Value, occurred_at: &str) -> Emitted {
    Emitted {
        tenant: "t1",
        event_type,
        data,
        occurred_at: at(occurred_at),
        id: uuid::Uuid::new_v4(),
    }
}

/// Every account's current contacts as `(person, role)`, from the live rows.
async fn live_contacts(
    fixture: &Fixture,
    tenant: &str,
    accounts: &[String],
    cut: Option<Cut>,
) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    for account in accounts {
        let contacts = accounts::contacts(&fixture.db, tenant, account, cut, None, 10_000)
            .await
            .expect("contacts");
        out.insert(
            account.clone(),
            contacts
                .into_iter()
                .map(|c| (c.customer_id, c.role))
                .collect(),
        );
    }
    out
}

pub async fn contact_links_as_of_any_moment_agree_with_the_live_rows_then(fixture: &Fixture) {
    let events = history(5, 50, 1_000);
    let links = events
        .iter()
        .filter(|e| e.event_type == "ContactLinked" && e.tenant == "acme")
        .count();
    assert!(links >= 8, "the history links contacts: {links}");
    let accounts: Vec<String> = (0..50)
        .step_by(5)
        .filter(|n| n % 2 == 0)
        .map(|n| format!("c-{n}"))
        .chain((0..3).map(|k| format!("acct-acme-{k}")))
        .collect();
    // Cut among the tenant's link events, where business time moves on.
    let link_events: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.tenant == "acme" && e.event_type.starts_with("Contact"))
        .map(|(i, _)| i)
        .collect();
    let mut cuts = Vec::new();
    for part in 1..5 {
        let mut i = link_events[link_events.len() * part / 5];
        while i + 1 < events.len() && events[i].occurred_at == events[i - 1].occurred_at {
            i += 1;
        }
        if cuts.last() != Some(&i) {
            cuts.push(i);
        }
    }
    cuts.push(events.len());
    let tenant = TenantId::parse("acme").expect("tenant");
    let mut snapshots = Vec::new();
    let mut from = 0;
    for &cut in &cuts {
        append_all(fixture.store.as_ref(), &events[from..cut]).await;
        from = cut;
        fixture.catch_up().await;
        let head = fixture.head().await;
        let recorded = fixture
            .store
            .read_positions(&tenant, &[head])
            .await
            .expect("last event")
            .first()
            .map(|e| e.recorded_at);
        let live = live_contacts(fixture, "acme", &accounts, None).await;
        snapshots.push((head, events[cut - 1].occurred_at, recorded, live));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut changed = 0;
    for window in snapshots.windows(2) {
        changed += usize::from(window[0].3 != window[1].3);
    }
    assert!(changed >= 2, "the contacts changed between the cuts");
    for (head, occurred, recorded, live) in &snapshots {
        let mut cuts = vec![Cut::Position(*head), Cut::OccurredBy(*occurred)];
        if let Some(recorded) = recorded {
            cuts.push(Cut::RecordedBy(*recorded));
        }
        for cut in cuts {
            assert_eq!(
                &live_contacts(fixture, "acme", &accounts, Some(cut)).await,
                live,
                "contacts at {cut:?}"
            );
        }
        // Each person's account then is the one whose contacts list it.
        for (account, contacts) in live {
            for (person, role) in contacts {
                let link =
                    accounts::account_of(&fixture.db, "acme", person, Some(Cut::Position(*head)))
                        .await
                        .expect("account of")
                        .expect("linked");
                assert_eq!((&link.account_id, &link.role), (account, role));
            }
        }
    }
}

pub async fn tasks_fold_to_their_rows_and_list_in_both_orders(fixture: &Fixture) {
    let task = |id: &str, subject_type: &str, subject: &str, due: &str| {
        ev(
            "TaskCreated",
            json!({"task_id": id, "subject_type": subject_type, "subject_id": subject,
                   "owner": "u-1", "due_at": due, "title": "Call"}),
            "2026-01-01T00:00:00Z",
        )
    };
    let events = vec![
        task("t-1", "customer", "c-1", "2026-02-01T00:00:00Z"),
        task("t-2", "opportunity", "op-1", "2026-01-15T00:00:00Z"),
        ev(
            "TaskRescheduled",
            json!({"task_id": "t-2", "due_at": "2026-03-01T00:00:00Z"}),
            "2026-01-02T00:00:00Z",
        ),
        ev(
            "TaskCompleted",
            json!({"task_id": "t-1"}),
            "2026-01-03T00:00:00Z",
        ),
        task("t-3", "customer", "c-1", "2026-01-10T00:00:00Z"),
    ];
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;
    let now = at("2026-02-15T00:00:00Z");
    let list = |filter: TaskFilter| async move {
        tasks::list(&fixture.db, "t1", &filter, now)
            .await
            .expect("list")
            .into_iter()
            .map(|line| {
                (
                    line.task.task_id.map(|t| t.to_string()).unwrap_or_default(),
                    line.task.status,
                    line.overdue,
                )
            })
            .collect::<Vec<_>>()
    };
    let all = TaskFilter {
        limit: 10,
        ..TaskFilter::default()
    };
    assert_eq!(
        list(all.clone()).await,
        [
            ("t-1".to_owned(), TaskStatus::Completed, false),
            ("t-2".to_owned(), TaskStatus::Open, false),
            ("t-3".to_owned(), TaskStatus::Open, true),
        ]
    );
    let by_due = TaskFilter {
        order: TaskOrder::Due,
        ..all.clone()
    };
    let order: Vec<String> = list(by_due).await.into_iter().map(|t| t.0).collect();
    assert_eq!(order, ["t-3", "t-1", "t-2"]);
    let open = tasks::open_for(
        &fixture.db,
        "t1",
        crm_core::catalog::values::TaskSubjectKind::Customer,
        "c-1",
        now,
    )
    .await
    .expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].task.due_at, Some(at("2026-01-10T00:00:00Z")));
    assert!(open[0].overdue);
    let rescheduled = tasks::list(&fixture.db, "t1", &all, now)
        .await
        .expect("list");
    assert_eq!(rescheduled[1].task.due_at, Some(at("2026-03-01T00:00:00Z")));
    assert_eq!(rescheduled[1].task.reschedules, 1);
    assert_eq!(
        rescheduled[0].task.closed_at,
        Some(at("2026-01-03T00:00:00Z"))
    );
}

/// The live 360 view read together (`customer360::live`, one statement on PostgreSQL) is the
/// view the separate reads make: for every customer of a whole generated history (consents,
/// marketing contacts, cases with CSAT, NPS, contact links, tasks, merges), member by member.
pub async fn the_live_view_read_together_equals_each_read_alone(fixture: &Fixture) {
    use crm_core::catalog::values::TaskSubjectKind;
    use crm_projections::customer360::{self, live};
    use crm_projections::{consent, service_quality};

    let mut events = crm_tests::crm_full::full_history(11, 60, 3_000);
    // Outbound marketing emails (the history has none): marketing contacts, judged against
    // the customers' consents.
    let last = events.last().expect("events").occurred_at;
    let registered: Vec<(&'static str, String)> = events
        .iter()
        .filter(|e| e.event_type == "CustomerRegistered")
        .map(|e| {
            (
                e.tenant,
                e.data["customer_id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    for (n, (tenant, id)) in registered.iter().enumerate().step_by(3) {
        events.push(Emitted {
            tenant,
            event_type: "InteractionLogged",
            data: json!({"customer_id": id, "interaction_id": format!("mk-{n}"),
                         "channel": "email", "direction": "outbound", "subject": "Offer",
                         "summary": "Spring offer", "purpose": "marketing"}),
            occurred_at: last + chrono::Duration::hours(n as i64),
            id: uuid::Uuid::new_v4(),
        });
    }
    append_all(fixture.store.as_ref(), &events).await;
    fixture.catch_up().await;
    let now = Utc::now();
    let mut customers: Vec<(&str, String)> = events
        .iter()
        .filter(|e| e.event_type == "CustomerRegistered")
        .map(|e| {
            (
                e.tenant,
                e.data["customer_id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    customers.sort();
    customers.dedup();
    assert!(customers.len() >= 50, "{} customers", customers.len());
    let (mut history, mut contacts, mut satisfied, mut linked, mut tasked, mut merged) =
        (0, 0, 0, 0, 0, 0);
    for (tenant, id) in &customers {
        let (view, state) = live::live_view(&fixture.db, tenant, id, now)
            .await
            .expect("live view")
            .expect("a registered customer has a row");
        let (alone, alone_state) = customer360::view_and_state(&fixture.db, tenant, id, now)
            .await
            .expect("view")
            .expect("row");
        let mut ids = vec![id.as_str()];
        ids.extend(alone.merged_ids.iter().map(String::as_str));
        let record = consent::record(&fixture.db, tenant, &ids, None)
            .await
            .expect("consent");
        let answers = service_quality::latest(&fixture.db, tenant, &ids, None)
            .await
            .expect("satisfaction");
        let link = accounts::account_of(&fixture.db, tenant, id, None)
            .await
            .expect("account_of");
        let open = tasks::open_for(&fixture.db, tenant, TaskSubjectKind::Customer, id, now)
            .await
            .expect("open tasks");
        assert_eq!(state, alone_state, "{tenant}/{id}: state");
        assert_eq!(
            view.recent_timeline, alone.recent_timeline,
            "{tenant}/{id}: recent timeline"
        );
        assert_eq!(view.consent_record.as_ref(), Some(&record), "{tenant}/{id}");
        assert_eq!(view.satisfaction.as_ref(), Some(&answers), "{tenant}/{id}");
        assert_eq!(view.contact_of, link, "{tenant}/{id}");
        assert_eq!(view.open_tasks.as_ref(), Some(&open), "{tenant}/{id}");
        history += usize::from(!record.history.is_empty());
        contacts += usize::from(record.marketing_contacts > 0);
        satisfied += usize::from(answers.latest_csat.is_some() || answers.latest_nps.is_some());
        linked += usize::from(link.is_some());
        tasked += usize::from(!open.is_empty());
        merged += usize::from(!view.merged_ids.is_empty());
    }
    // The history gives every member something to compare.
    for (what, count) in [
        ("consent history", history),
        ("marketing contacts", contacts),
        ("satisfaction answers", satisfied),
        ("contact links", linked),
        ("open tasks", tasked),
        ("merged customers", merged),
    ] {
        assert!(count > 0, "no customer has {what}");
    }
    let unknown = live::live_view(&fixture.db, "acme", "c-nobody", now)
        .await
        .expect("live view");
    assert!(unknown.is_none());
}
