//! `crm-replay analytics rfm|clv` through the real binary (issue 17, first slice): the
//! summaries folded from the log (purchase days, free orders, refunds, a merge), RFM
//! segments at the extremes, the fitted models and every customer's figures, the CLI's answer
//! equal to `crm_projections::analytics` in-process (the decision the API will serve), an
//! evaluation time in the past, and bad flags refused naming them.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_analytics::score::ScoreOptions;
use crm_core::envelope::TenantId;
use crm_core::money::currency::Currency;
use crm_core::privacy::{KeySource, open_private};
use crm_core::store::{SharedStore, StoreUrl};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

fn replay(store: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("CRM_MASTER_KEY", crm_tests::TEST_MASTER_KEY)
        .env_remove("CRM_STORE")
        .env_remove("CRM_LOG")
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run crm-replay")
}

fn json_of(output: &Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

fn import(store: &str, dir: &Path) {
    let file = dir.join("history.jsonl");
    let text: String = crm_tests::analytics_data::history()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, text).expect("write");
    let output = replay(
        store,
        &[
            "import",
            file.to_str().expect("utf-8"),
            "--tenant",
            "default",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const AS_OF: &str = "2026-01-01T00:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfm_and_clv_come_from_the_log_and_equal_the_domain_decision() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.db");
    let store = format!("sqlite://{}", path.display());
    import(&store, dir.path());

    // RFM: 63 customers bought in EUR (c-dup merged into c-free); every one scored once.
    let rfm = json_of(&replay(
        &store,
        &[
            "--json",
            "analytics",
            "rfm",
            "--currency",
            "EUR",
            "--as-of",
            AS_OF,
        ],
    ));
    assert_eq!(rfm["customers"], json!(63), "{rfm}");
    assert_eq!(rfm["currency"], json!("EUR"));
    assert_eq!(rfm["as_of"], json!("2026-01-01T00:00:00Z"));
    assert!(rfm["position"].as_u64() > Some(0));
    let scores = rfm["scores"].as_array().expect("scores");
    assert_eq!(scores.len(), 63);
    let counted: u64 = rfm["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["customers"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted, 63);
    let of = |id: &str| {
        scores
            .iter()
            .find(|s| s["customer_id"] == json!(id))
            .unwrap_or_else(|| panic!("{id} scored"))
            .clone()
    };
    assert_eq!(of("champion")["code"], json!(555), "{}", of("champion"));
    assert_eq!(of("champion")["segment"], json!("Champions"));
    assert_eq!(of("gone")["code"], json!(111), "{}", of("gone"));
    assert_eq!(of("gone")["segment"], json!("Lost"));
    assert!(
        scores.iter().all(|s| s["customer_id"] != json!("c-dup")),
        "merged away"
    );

    // c-free: purchase days 10 (40.00), 20 (free: 0.00), 40 (c-dup's 12.00, merged in); day 30
    // was refunded in full and is not one; USD stays apart.
    let raw = crm_core::store::open_store(&StoreUrl::parse(&store).expect("url"))
        .await
        .expect("store");
    let opened = open_private(
        &StoreUrl::parse(&store).expect("url"),
        &KeySource {
            value: Some(crm_tests::TEST_MASTER_KEY.into()),
            file: None,
        },
        false,
    )
    .await
    .expect("vault");
    drop(raw);
    let reader: SharedStore = Arc::new(
        opened
            .store
            .clone()
            .opening_only(crm_projections::PERSONAL_FIELDS_READ),
    );
    let tenant = TenantId::parse("default").expect("tenant");
    let eur = Currency::parse("EUR").expect("EUR");
    let as_of = DateTime::parse_from_rfc3339(AS_OF)
        .expect("time")
        .with_timezone(&Utc);
    let (_, summaries) = crm_projections::analytics::summaries(&reader, &tenant, eur, as_of)
        .await
        .expect("summaries");
    let free = summaries
        .iter()
        .find(|s| s.customer_id == "c-free")
        .expect("c-free");
    assert_eq!(
        (free.frequency, free.recency, free.t, free.monetary_value),
        (2.0, 30.0, 355.0, 6.0),
        "{free:?}"
    );

    // CLV: the models converge; every customer has figures in range; the CLI's answer is the
    // domain decision's, number for number.
    let clv = json_of(&replay(
        &store,
        &[
            "--json",
            "analytics",
            "clv",
            "--currency",
            "EUR",
            "--as-of",
            AS_OF,
        ],
    ));
    assert_eq!(
        clv["model"]["bg_nbd"]["converged"],
        json!(true),
        "{}",
        clv["model"]
    );
    assert_eq!(clv["model"]["gamma_gamma"]["converged"], json!(true));
    let customers = clv["scores"].as_array().expect("scores");
    assert_eq!(customers.len(), 63);
    for customer in customers {
        let p = customer["p_alive"].as_f64().expect("p_alive");
        let churn = customer["churn_risk"].as_f64().expect("churn");
        assert!(
            (0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&churn),
            "{customer}"
        );
        assert!(customer["clv"].as_f64().expect("clv") >= 0.0, "{customer}");
    }
    let in_process = crm_projections::analytics::clv_report(
        &reader,
        &tenant,
        eur,
        as_of,
        ScoreOptions {
            horizon_days: 90.0,
            months: 12,
            discount: 0.01,
        },
    )
    .await
    .expect("report");
    // Through the same text, so both sides parse the floats alike.
    let in_process: Value =
        serde_json::from_str(&serde_json::to_string(&in_process).expect("json")).expect("json");
    assert!(
        in_process == clv,
        "the CLI answers what the domain decides: {}",
        in_process["model"]
    );
    let champion = customers
        .iter()
        .find(|c| c["customer_id"] == json!("champion"))
        .expect("champion");
    let gone = customers
        .iter()
        .find(|c| c["customer_id"] == json!("gone"))
        .expect("gone");
    assert!(champion["clv"].as_f64() > gone["clv"].as_f64());
    assert_eq!(champion["churn_bucket"], json!("low"), "{champion}");

    // As of a past time: only what had happened by then.
    let early = json_of(&replay(
        &store,
        &[
            "--json",
            "analytics",
            "rfm",
            "--currency",
            "EUR",
            "--as-of",
            &crm_tests::analytics_data::day(15),
        ],
    ));
    assert!(
        early["customers"].as_u64() < Some(63),
        "{}",
        early["customers"]
    );
    assert!(early["customers"].as_u64() > Some(0));

    // Profitability and cohorts: the CLI's answers are the domain's.
    for (report, expected) in [
        (
            "profitability",
            serde_json::to_string(
                &crm_projections::analytics::profitability_report(&reader, &tenant, eur, as_of)
                    .await
                    .expect("report"),
            )
            .expect("json"),
        ),
        (
            "cohorts",
            serde_json::to_string(
                &crm_projections::analytics::cohorts_report(&reader, &tenant, eur, as_of)
                    .await
                    .expect("report"),
            )
            .expect("json"),
        ),
    ] {
        let shown = json_of(&replay(
            &store,
            &[
                "--json",
                "analytics",
                report,
                "--currency",
                "EUR",
                "--as-of",
                AS_OF,
            ],
        ));
        let expected: Value = serde_json::from_str(&expected).expect("json");
        assert!(shown == expected, "{report}: {shown}");
        assert_eq!(shown["customers"], json!(63), "{report}");
    }

    // Bad flags: exit 2 naming them.
    for (args, says) in [
        (vec!["analytics", "rfm", "--currency", "XYZ"], "--currency"),
        (
            vec![
                "analytics",
                "rfm",
                "--currency",
                "EUR",
                "--as-of",
                "yesterday",
            ],
            "--as-of",
        ),
        (
            vec!["analytics", "clv", "--currency", "EUR", "--discount", "1.5"],
            "--discount",
        ),
        (
            vec!["analytics", "clv", "--currency", "EUR", "--months", "0"],
            "--months",
        ),
        (
            vec!["analytics", "clv", "--currency", "EUR", "--horizon-days=-3"],
            "--horizon-days",
        ),
        // Too few customers for a model: named, not a wrong fit.
        (vec!["analytics", "clv", "--currency", "USD"], "at least 10"),
    ] {
        let output = replay(&store, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
