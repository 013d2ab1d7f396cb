//! Webhooks and the operator's commands (issue 20), through the real `crm-replay`:
//! `rotate-master` re-seals every webhook secret under the new key (the same secret opens
//! under it, not under the old one; a rerun after an interruption leaves it as it is), and
//! `erase-tenant` deletes the tenant's subscriptions, delivery log and queued calls, and only
//! the tenant's.

use std::path::Path;
use std::process::Command;

use crm_automation::webhooks::{RuleCall, enqueue_call, manage, secrets, tables};
use crm_core::privacy::MasterKey;
use crm_core::store::StoreUrl;
use crm_core::store::sqlite::Durability;
use crm_projections::ReadDb;
use crm_projections::db::Col;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

fn replay(store: &Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite://{}", store.display()))
        .arg("--json")
        .args(args)
        .env("CRM_LOG", "warn")
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .env_remove("CRM_MASTER_KEY_FILE")
        .output()
        .expect("run crm-replay");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("json")
}

async fn count(db: &ReadDb, table: &str, tenant: &str) -> i64 {
    db.fetch(
        &format!("SELECT COUNT(*) FROM {table} WHERE tenant = ?"),
        vec![tenant.into()],
        &[Col::Int],
    )
    .await
    .expect("count")[0][0]
        .as_int()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_master_reseals_webhook_secrets_and_erase_tenant_deletes_them() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.db");
    let url = StoreUrl::Sqlite {
        path: path.clone(),
        durability: Durability::Normal,
    };
    // A store with its key ring, and subscriptions of two tenants.
    crm_tests::open_test_store(&url).await.expect("store");
    let old = MasterKey::parse(crm_tests::TEST_MASTER_KEY, "test").expect("key");
    let db = ReadDb::open(&url).await.expect("db");
    tables::create(&db).await.expect("tables");
    let body = json!({"url": "https://hooks.example.com/in"});
    let acme = manage::create(&db, &old, "acme", &body, 0)
        .await
        .expect("acme");
    let globex = manage::create(&db, &old, "globex", &body, 0)
        .await
        .expect("globex");
    let acme_secret = acme.secret.expect("shown").to_string();
    let globex_secret = globex.secret.expect("shown").to_string();
    let payload = json!({"n": 1});
    for (tenant, id) in [
        ("acme", &acme.subscription.id),
        ("globex", &globex.subscription.id),
    ] {
        let mut tx = db.begin().await.expect("tx");
        let call = RuleCall {
            tenant,
            webhook_id: id,
            call_id: "c-1",
            payload: &payload,
            trigger_position: None,
            rule_id: "r",
            rule_version: 1,
        };
        assert!(enqueue_call(&mut tx, &call).await.expect("enqueue"));
        tables::record_attempt(
            &mut tx,
            &tables::Attempt {
                tenant,
                webhook_id: id,
                message_id: "msg_1",
                source: "rule",
                position: None,
                event_id: "c-1",
                status: "delivered",
                failures: 0,
                last_status: Some(200),
                last_error: None,
                latency_ms: 3,
                at: 1,
                next_attempt_at: None,
            },
        )
        .await
        .expect("a delivery row");
        tx.commit().await.expect("commit");
    }

    let new_key_file = dir.path().join("new.key");
    let rotated = replay(
        &path,
        &[
            "rotate-master",
            "--new-key-file",
            new_key_file.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(rotated["webhook_secrets_resealed"], 2, "{rotated}");
    let new = MasterKey::parse(
        &std::fs::read_to_string(&new_key_file).expect("new key"),
        "new key file",
    )
    .expect("new key");
    for (tenant, id, shown) in [
        ("acme", &acme.subscription.id, &acme_secret),
        ("globex", &globex.subscription.id, &globex_secret),
    ] {
        let stored = tables::get(&db, tenant, id)
            .await
            .expect("get")
            .expect("row");
        let opened = secrets::open(&new, tenant, id, &stored.sealed_secret).expect("opens");
        assert_eq!(opened.shown().as_str(), shown.as_str(), "the same secret");
        assert!(
            secrets::open(&old, tenant, id, &stored.sealed_secret).is_err(),
            "no longer under the old key"
        );
    }
    // A rerun (as after an interruption before the key ring moved) changes nothing.
    assert_eq!(
        secrets::reseal_all(&db, &old, &new).await.expect("again"),
        0
    );

    // erase-tenant: acme's subscription, delivery log and calls go; globex's stay.
    let output = Command::new(BIN)
        .arg("--store")
        .arg(format!("sqlite://{}", path.display()))
        .args(["--json", "erase-tenant", "acme"])
        .env("CRM_LOG", "warn")
        .env("CRM_MASTER_KEY", new.encoded().as_str())
        .env_remove("CRM_MASTER_KEY_FILE")
        .output()
        .expect("run crm-replay");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(report["webhooks_deleted"], 1, "{report}");
    for table in [
        "crm_webhooks",
        "crm_webhook_calls",
        "crm_webhook_deliveries",
    ] {
        assert_eq!(count(&db, table, "acme").await, 0, "{table}");
    }
    assert_eq!(count(&db, "crm_webhooks", "globex").await, 1);
    assert_eq!(count(&db, "crm_webhook_calls", "globex").await, 1);
    assert_eq!(count(&db, "crm_webhook_deliveries", "globex").await, 1);
    assert!(tables::list(&db, "acme").await.expect("list").is_empty());
    db.close().await;
}
