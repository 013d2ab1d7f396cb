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

/// `lines` imported into a fresh store, as the API's import format.
fn import_lines(store: &str, dir: &Path, lines: &[Value]) {
    let file = dir.join("lines.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
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

/// The log as the read models read it, opened beside the CLI.
async fn reader_of(store: &str) -> SharedStore {
    let opened = open_private(
        &StoreUrl::parse(store).expect("url"),
        &KeySource {
            value: Some(crm_tests::TEST_MASTER_KEY.into()),
            file: None,
        },
        false,
    )
    .await
    .expect("vault");
    Arc::new(
        opened
            .store
            .clone()
            .opening_only(crm_projections::PERSONAL_FIELDS_READ),
    )
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_funnel_come_from_the_log_and_equal_the_domain_decision() {
    use crm_tests::analytics_data::{
        FUNNEL_FROM, FUNNEL_TO, LIFECYCLE_AS_OF, LIFECYCLE_SINCE, lifecycle_history,
        pipeline_history,
    };
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite://{}", dir.path().join("events.db").display());
    let mut lines = lifecycle_history();
    lines.extend(pipeline_history());
    import_lines(&store, dir.path(), &lines);
    let reader = reader_of(&store).await;
    let tenant = TenantId::parse("default").expect("tenant");

    // Lifecycle: the hand-computed counts and moves (see lifecycle_history), p-cust (the
    // deals' customer, registered before since, no order) a lead at both ends.
    let lifecycle = json_of(&replay(
        &store,
        &[
            "--json",
            "analytics",
            "lifecycle",
            "--as-of",
            LIFECYCLE_AS_OF,
            "--since",
            LIFECYCLE_SINCE,
        ],
    ));
    assert_eq!(lifecycle["customers"], json!(14), "{lifecycle}");
    let counts: Vec<(String, u64)> = lifecycle["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().expect("stage").to_owned(),
                s["customers"].as_u64().expect("count"),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [
        ("lead", 4),
        ("new", 3),
        ("active", 1),
        ("at_risk", 2),
        ("lapsed", 2),
        ("won_back", 2),
    ]
    .iter()
    .map(|(s, n)| ((*s).to_owned(), *n))
    .collect();
    assert_eq!(counts, expected);
    let lead_to_lead = lifecycle["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .find(|t| t["from"] == json!("lead") && t["to"] == json!("lead"))
        .expect("lead -> lead")
        .clone();
    assert_eq!(
        lead_to_lead["customers"],
        json!(3),
        "l-lead, l-future, p-cust"
    );
    assert_eq!(
        lifecycle["transitions"][0],
        json!({"from": "none", "to": "lead", "customers": 1})
    );
    let in_process = crm_projections::analytics::lifecycle::lifecycle_report(
        &reader,
        &tenant,
        at(LIFECYCLE_AS_OF),
        Some(at(LIFECYCLE_SINCE)),
    )
    .await
    .expect("report");
    let in_process: Value =
        serde_json::from_str(&serde_json::to_string(&in_process).expect("json")).expect("json");
    assert_eq!(
        lifecycle, in_process,
        "the CLI answers what the domain decides"
    );

    // Funnel: the CLI's answer is the domain's, and the hand-computed figures.
    for owner in [None, Some("u-bob")] {
        let mut args = vec![
            "--json",
            "analytics",
            "funnel",
            "--from",
            FUNNEL_FROM,
            "--to",
            FUNNEL_TO,
        ];
        if let Some(owner) = owner {
            args.extend(["--owner", owner]);
        }
        let funnel = json_of(&replay(&store, &args));
        let in_process = crm_projections::analytics::funnel::funnel_report(
            &reader,
            &tenant,
            at(FUNNEL_FROM),
            at(FUNNEL_TO),
            owner,
        )
        .await
        .expect("report");
        let in_process: Value =
            serde_json::from_str(&serde_json::to_string(&in_process).expect("json")).expect("json");
        assert_eq!(funnel, in_process, "{owner:?}");
        let (opened, won, lost) = match owner {
            None => (8, 4, 2),
            Some(_) => (5, 2, 1),
        };
        assert_eq!(
            (
                funnel["opened"].clone(),
                funnel["won"].clone(),
                funnel["lost"].clone()
            ),
            (json!(opened), json!(won), json!(lost)),
            "{funnel}"
        );
    }
    let funnel = json_of(&replay(
        &store,
        &[
            "--json",
            "analytics",
            "funnel",
            "--from",
            FUNNEL_FROM,
            "--to",
            FUNNEL_TO,
        ],
    ));
    assert_eq!(funnel["cycle_days"], json!({"median": 15.0, "mean": 16.0}));
    assert_eq!(
        funnel["won_amount"],
        json!([{"currency": "EUR", "amount": "1600.00"}, {"currency": "USD", "amount": "700.00"}])
    );
    assert_eq!(funnel["steps"][0]["conversion"], json!(0.625));

    // The text forms say what they were computed from.
    let text = replay(
        &store,
        &["analytics", "lifecycle", "--as-of", LIFECYCLE_AS_OF],
    );
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.contains("14 customers") && shown.contains("won_back"),
        "{shown}"
    );
    let text = replay(
        &store,
        &[
            "analytics",
            "funnel",
            "--from",
            FUNNEL_FROM,
            "--to",
            FUNNEL_TO,
        ],
    );
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(
        shown.contains("8 opened: 4 won, 2 lost, 2 open") && shown.contains("owner u-bob"),
        "{shown}"
    );

    // Bad flags: exit 2 naming them.
    for (args, says) in [
        (
            vec![
                "analytics",
                "lifecycle",
                "--as-of",
                LIFECYCLE_SINCE,
                "--since",
                LIFECYCLE_AS_OF,
            ],
            "--since",
        ),
        (
            vec!["analytics", "lifecycle", "--since", "last week"],
            "--since",
        ),
        (
            vec![
                "analytics",
                "funnel",
                "--from",
                FUNNEL_TO,
                "--to",
                FUNNEL_FROM,
            ],
            "--from",
        ),
        (
            vec!["analytics", "funnel", "--from", "soon", "--to", FUNNEL_TO],
            "--from",
        ),
    ] {
        let output = replay(&store, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let missing = replay(&store, &["analytics", "funnel", "--from", FUNNEL_FROM]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--to"));
}
