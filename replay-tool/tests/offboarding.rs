//! Offboarding and retention through the real binary, on SQLite and PostgreSQL:
//! `crm-replay erase-tenant T` leaves T's log verifiable and every personal field of T
//! reading "[erased]", another tenant untouched; `crm-replay retention --tenant T` applies
//! T's rule (none by default: nothing happens), `--dry-run` lists who is due and changes
//! nothing, a run erases exactly the customers and leads silent since the cutoff.

use std::process::{Command, Output};

use chrono::{Duration, Utc};
use crm_core::catalog::personal_fields;
use crm_core::envelope::{NewEvent, RecordedEvent, StreamId, TenantId};
use crm_core::privacy::{KeySource, open_private};
use crm_core::store::{EventStore, ExpectedRevision, Scope, StoreUrl, open_store};
use crm_projections::ReadDb;
use crm_projections::retention::{self, RetentionRule};
use crm_tests::postgres::TestDatabase;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

/// A store with its master key: SQLite with `master.key` beside it, or a PostgreSQL test
/// database with the key in `CRM_MASTER_KEY`.
struct Target {
    url: String,
    key: Option<String>,
    _dir: tempfile::TempDir,
    _db: Option<TestDatabase>,
}

impl Target {
    fn sqlite() -> Target {
        let dir = tempfile::tempdir().expect("temp dir");
        Target {
            url: format!("sqlite://{}", dir.path().join("events.db").display()),
            key: None,
            _dir: dir,
            _db: None,
        }
    }

    async fn postgres(test: &str) -> Option<Target> {
        let db = TestDatabase::create(test).await?;
        Some(Target {
            url: db.url().to_owned(),
            key: Some("5a".repeat(32)),
            _dir: tempfile::tempdir().expect("temp dir"),
            _db: Some(db),
        })
    }

    fn store_url(&self) -> StoreUrl {
        StoreUrl::parse(&self.url).expect("url")
    }

    fn source(&self) -> KeySource {
        KeySource {
            value: self.key.clone(),
            file: None,
        }
    }

    /// Runs `crm-replay ARGS --store URL`.
    fn replay(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--store")
            .arg(&self.url)
            .env_remove("CRM_STORE")
            .env_remove("CRM_MASTER_KEY")
            .env_remove("CRM_MASTER_KEY_FILE")
            .env("CRM_LOG", "warn");
        if let Some(key) = &self.key {
            command.env("CRM_MASTER_KEY", key);
        }
        command.output().expect("run crm-replay")
    }

    #[track_caller]
    fn replay_ok(&self, args: &[&str]) -> Output {
        let output = self.replay(args);
        assert!(
            output.status.success(),
            "crm-replay {args:?} failed ({:?}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.replay_ok(args);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "crm-replay {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// `export --decrypt` of one tenant, as JSON lines.
    fn decrypted(&self, tenant: &str) -> Vec<Value> {
        let output = self.replay_ok(&["export", "--decrypt", "--tenant", tenant]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("json line"))
            .collect()
    }

    /// Appends events through the sealing store (creating the key ring, and for SQLite the
    /// key file, on first use).
    async fn append(&self, tenant: &str, events: Vec<(&str, Value, i64)>) {
        let opened = open_private(&self.store_url(), &self.source(), true)
            .await
            .expect("open the store with its key");
        let tenant = TenantId::parse(tenant).expect("tenant");
        for (event_type, data, days_ago) in events {
            let event = crm_core::catalog::DomainEvent::parse(event_type, &data)
                .unwrap_or_else(|e| panic!("{event_type}: {e}"));
            let stream: StreamId = event.stream();
            let new: NewEvent = event
                .to_new_event()
                .with_occurred_at(Utc::now() - Duration::days(days_ago));
            opened
                .store
                .append(&tenant, &stream, ExpectedRevision::Any, vec![new])
                .await
                .expect("append");
        }
    }

    async fn raw_events(&self) -> Vec<RecordedEvent> {
        open_store(&self.store_url())
            .await
            .expect("store")
            .read_all(&Scope::AllTenants, 0, 10_000)
            .await
            .expect("read")
    }
}

fn registered(id: &str, name: &str) -> (&'static str, Value) {
    (
        "CustomerRegistered",
        json!({"customer_id": id, "kind": "person", "name": name,
               "email": format!("{id}@example.com"), "phone": "+1 555 0100"}),
    )
}

fn interaction(id: &str) -> (&'static str, Value) {
    (
        "InteractionLogged",
        json!({"customer_id": id, "interaction_id": format!("i-{}", uuid::Uuid::now_v7().simple()),
               "channel": "phone", "direction": "inbound", "summary": "Asked about an invoice"}),
    )
}

fn lead(id: &str) -> (&'static str, Value) {
    (
        "LeadCaptured",
        json!({"lead_id": id, "name": format!("Lead {id}"), "company": "Acme Ltd",
               "source": "web_form"}),
    )
}

fn at((event_type, data): (&'static str, Value), days_ago: i64) -> (&'static str, Value, i64) {
    (event_type, data, days_ago)
}

/// Every personal field value in these exported events.
fn personal_values(events: &[Value]) -> Vec<(String, Value)> {
    let mut values = Vec::new();
    for event in events {
        let event_type = event["event_type"].as_str().expect("type");
        for field in personal_fields(event_type) {
            let value = &event["data"][*field];
            if !value.is_null() {
                values.push((format!("{event_type}.{field}"), value.clone()));
            }
        }
    }
    values
}

async fn erase_tenant_leaves_its_log_verifiable_and_unreadable(target: Target) {
    target
        .append(
            "acme",
            vec![
                at(registered("c-1", "Ada Lovelace"), 10),
                at(interaction("c-1"), 9),
                at(registered("c-2", "Charles Babbage"), 8),
                at(lead("l-1"), 7),
                (
                    "CaseOpened",
                    json!({"case_id": "k-1", "customer_id": "c-2", "subject": "Broken gear",
                           "channel": "email", "priority": "low", "description": "It grinds"}),
                    6,
                ),
            ],
        )
        .await;
    target
        .append("globex", vec![at(registered("g-1", "Grace Hopper"), 5)])
        .await;
    let before = target.raw_events().await;
    assert!(
        personal_values(&target.decrypted("acme"))
            .iter()
            .any(|(_, v)| v == "Ada Lovelace")
    );

    // The rule worker's state of both tenants (as a server running rules leaves it).
    let db = ReadDb::open(&target.store_url())
        .await
        .expect("read models");
    crm_automation::workflows::tables::create(&db)
        .await
        .expect("workflow tables");
    for tenant in ["acme", "globex"] {
        db.execute(
            "INSERT INTO crm_workflow_facts (tenant, kind, entity, at, anchor, data) \
             VALUES (?, 'customer', 'c-1', 0, 'a', '{}')",
            vec![tenant.into()],
        )
        .await
        .expect("a fact");
    }

    let report = target.json(&["erase-tenant", "acme", "--json"]);
    assert_eq!(report["tenant"], "acme");
    assert_eq!(report["keys_destroyed"], 3, "{report}");
    let facts = db
        .fetch(
            "SELECT tenant FROM crm_workflow_facts ORDER BY tenant",
            vec![],
            &[crm_projections::db::Col::Text],
        )
        .await
        .expect("facts");
    assert_eq!(
        facts.len(),
        1,
        "only the other tenant's workflow state stays"
    );
    assert_eq!(facts[0][0].as_text(), Some("globex"));
    db.close().await;

    // The log is untouched and verifies; every personal field of acme reads "[erased]".
    let after = target.raw_events().await;
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((a.position, a.hash), (b.position, b.hash));
        assert_eq!(a.data.get(), b.data.get());
    }
    let verify = target.replay_ok(&["verify"]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact"));
    let acme = target.decrypted("acme");
    assert_eq!(acme.len(), 5);
    let values = personal_values(&acme);
    assert!(values.len() >= 10, "{values:?}");
    for (field, value) in &values {
        assert_eq!(value, "[erased]", "{field}");
    }
    // Money-free facts remain readable: ids, kinds, channels.
    assert_eq!(acme[0]["data"]["customer_id"], "c-1");
    assert_eq!(acme[4]["data"]["priority"], "low");

    // The other tenant is untouched.
    let globex = target.decrypted("globex");
    assert_eq!(globex[0]["data"]["name"], "Grace Hopper");
    assert_eq!(globex[0]["data"]["email"], "g-1@example.com");

    // Again: nothing left to destroy.
    let again = target.json(&["erase-tenant", "acme", "--json"]);
    assert_eq!(again["keys_destroyed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_erase_tenant_leaves_its_log_verifiable_and_unreadable() {
    erase_tenant_leaves_its_log_verifiable_and_unreadable(Target::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_erase_tenant_leaves_its_log_verifiable_and_unreadable() {
    let Some(target) = Target::postgres("erase_tenant").await else {
        return;
    };
    erase_tenant_leaves_its_log_verifiable_and_unreadable(target).await;
}

/// Two years back, one month back.
const OLD: i64 = 730;
const RECENT: i64 = 30;

async fn retention_applies_the_tenants_rule(target: Target) {
    target
        .append(
            "acme",
            vec![
                at(registered("c-old", "Old Customer"), OLD + 10),
                at(interaction("c-old"), OLD),
                at(registered("c-new", "Recent Customer"), OLD + 10),
                at(interaction("c-new"), RECENT),
                at(lead("l-old"), OLD),
                at(lead("l-new"), RECENT),
            ],
        )
        .await;
    target
        .append(
            "globex",
            vec![at(registered("g-old", "Other Customer"), OLD)],
        )
        .await;

    // No rule: nothing to do.
    let off = target.json(&["retention", "--tenant", "acme", "--json"]);
    assert_eq!(off["erase_after_years"], Value::Null, "{off}");
    let name_of = |events: &[Value], stream: &str| {
        events
            .iter()
            .find(|e| e["stream_id"] == stream && e["event_type"] == "CustomerRegistered")
            .map(|e| e["data"]["name"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        name_of(&target.decrypted("acme"), "customer-c-old"),
        "Old Customer"
    );

    let db = ReadDb::open(&target.store_url())
        .await
        .expect("read models");
    retention::set_rule(
        &db,
        "acme",
        &RetentionRule {
            erase_after_years: Some(1),
        },
    )
    .await
    .expect("set the rule");
    retention::set_rule(
        &db,
        "globex",
        &RetentionRule {
            erase_after_years: None,
        },
    )
    .await
    .expect("set the rule");

    // A dry run lists who is due and changes nothing.
    let head = target.raw_events().await.len();
    let dry = target.json(&["retention", "--tenant", "acme", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["due"]["customers"], json!(["c-old"]));
    assert_eq!(dry["due"]["leads"], json!(["l-old"]));
    assert_eq!(dry["customers_erased"], 0);
    assert_eq!(target.raw_events().await.len(), head);
    assert_eq!(
        retention::last_report(&db, "acme").await.expect("report"),
        None
    );

    let run = target.json(&["retention", "--tenant", "acme", "--json"]);
    assert_eq!(run["erase_after_years"], 1, "{run}");
    assert_eq!(run["customers_due"], 1);
    assert_eq!(run["leads_due"], 1);
    assert_eq!(run["customers_erased"], 1);
    assert_eq!(run["leads_erased"], 1);
    assert_eq!(run["skipped"], 0);
    assert!(run.get("due").is_none(), "a real run names nobody: {run}");

    let acme = target.decrypted("acme");
    assert_eq!(name_of(&acme, "customer-c-old"), "[erased]");
    assert_eq!(name_of(&acme, "customer-c-new"), "Recent Customer");
    let lead_name = |id: &str| {
        acme.iter()
            .find(|e| e["stream_id"] == format!("lead-{id}") && e["event_type"] == "LeadCaptured")
            .map(|e| e["data"]["name"].clone())
            .unwrap_or_default()
    };
    assert_eq!(lead_name("l-old"), "[erased]");
    assert_eq!(lead_name("l-new"), "Lead l-new");
    assert!(
        acme.iter()
            .any(|e| e["event_type"] == "CustomerErased" && e["data"]["customer_id"] == "c-old")
    );
    assert!(
        acme.iter()
            .any(|e| e["event_type"] == "LeadErased" && e["data"]["lead_id"] == "l-old")
    );
    assert_eq!(
        name_of(&target.decrypted("globex"), "customer-g-old"),
        "Other Customer"
    );
    target.replay_ok(&["verify"]);

    let report = retention::last_report(&db, "acme")
        .await
        .expect("report")
        .expect("recorded");
    assert_eq!((report.customers_erased, report.leads_erased), (1, 1));
    assert!(!report.dry_run);

    // Run again: nobody is due any more.
    let again = target.json(&["retention", "--tenant", "acme", "--json"]);
    assert_eq!(again["customers_due"], 0, "{again}");
    assert_eq!(again["leads_due"], 0);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retention_applies_the_tenants_rule() {
    retention_applies_the_tenants_rule(Target::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_retention_applies_the_tenants_rule() {
    let Some(target) = Target::postgres("retention_cli").await else {
        return;
    };
    retention_applies_the_tenants_rule(target).await;
}
