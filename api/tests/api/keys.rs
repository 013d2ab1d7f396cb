//! Issue 15 (keys that expire and rotate): an expired key is refused saying only that it
//! expired; `keys rotate` (the real binary, beside the running app) gives a new key while the
//! old one works until its grace period ends; `keys list` shows `expires_at`,
//! `last_used_at` and `rotated_from`; key tables made before these columns gain them.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use crm_api::app::Limits;
use crm_api::keys::{KeyInfo, Role};
use crm_core::envelope::TenantId;
use crm_core::store::StoreUrl;
use serde_json::Value;

use crate::fixture::{App, TENANT};
use crate::suite::Start;

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

/// The app, trusting what it read about a key for 50 ms only (a rotation made by another
/// process is seen at once).
macro_rules! app {
    ($start:expr) => {
        match $start(Limits {
            key_cache: Duration::from_millis(50),
            ..Limits::default()
        })
        .await
        {
            Some(app) => app,
            None => return,
        }
    };
}

fn store_arg(app: &App) -> String {
    match &app.url {
        StoreUrl::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
        StoreUrl::Postgres { url } => url.clone(),
    }
}

/// `crm-api keys ARGS --store <the app's store>`: stdout, or the failure.
fn cli(app: &App, args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(BIN)
        .arg("keys")
        .args(args)
        .arg("--store")
        .arg(store_arg(app))
        .env_remove("CRM_STORE")
        .env_remove("CRM_DATA_DIR")
        .output()
        .expect("run crm-api");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

/// `keys list --json`, as printed.
fn listed(app: &App) -> Vec<Value> {
    cli(app, &["list", "--json"])
        .expect("keys list")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect()
}

fn listed_key(app: &App, key_id: &str) -> Value {
    listed(app)
        .into_iter()
        .find(|key| key["key_id"] == key_id)
        .expect("listed")
}

async fn stored(app: &App, key_id: &str) -> KeyInfo {
    app.state
        .keys
        .list(None)
        .await
        .expect("list")
        .into_iter()
        .find(|key| key.key_id == key_id)
        .expect("stored")
}

/// A key created to expire is served until then and refused after it with a 401 that says
/// only that it expired (a wrong secret for the same id is still just "not valid"); a key
/// whose expiry is set in the past is refused at once; `keys create --expires-in` stores
/// the expiry, and bad lifetimes are refused naming the flag.
pub async fn an_expired_key_is_refused_saying_so<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let expiring = app
        .state
        .keys
        .create_until(
            &tenant,
            Role::Analyst,
            false,
            Some("short-lived"),
            Some(Utc::now() + chrono::Duration::milliseconds(1_500)),
        )
        .await
        .expect("create");
    app.get_with(&expiring.token, "/v1/customers").await.ok();
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let answer = app.get_with(&expiring.token, "/v1/customers").await;
    answer.problem(401, &["expired"]);
    assert_eq!(
        answer.body["detail"],
        "the API key has expired; ask for a new one"
    );
    let wrong = format!("{}0", &expiring.token[..expiring.token.len() - 1]);
    let wrong = if wrong == expiring.token {
        format!("{}1", &expiring.token[..expiring.token.len() - 1])
    } else {
        wrong
    };
    app.get_with(&wrong, "/v1/customers")
        .await
        .problem(401, &["not valid"]);

    // Set in the past through the key store: refused at once.
    let key = app.key(TENANT, Role::Auditor).to_owned();
    app.get_with(&key, "/v1/verify").await;
    assert!(
        app.state
            .keys
            .set_expiry(&key, Some(Utc::now() - chrono::Duration::seconds(1)))
            .await
            .expect("set expiry")
    );
    app.get_with(&key, "/v1/verify")
        .await
        .problem(401, &["expired"]);

    // The CLI: --expires-in stores the expiry, shown by `keys list`.
    let before = Utc::now();
    let token = cli(
        &app,
        &[
            "create",
            "--tenant",
            TENANT,
            "--role",
            "ingest",
            "--expires-in",
            "90d",
        ],
    )
    .expect("create");
    let key_id = App::key_id(token.trim());
    let expires_at = listed_key(&app, key_id)["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse::<chrono::DateTime<Utc>>()
        .expect("RFC 3339");
    let ninety_days = chrono::Duration::days(90);
    assert!(expires_at >= before + ninety_days - chrono::Duration::seconds(1));
    assert!(expires_at <= Utc::now() + ninety_days);
    let text = cli(&app, &["list"]).expect("list");
    let line = text.lines().find(|l| l.starts_with(key_id)).expect("line");
    assert!(
        line.contains(&format!(
            "expires {}",
            expires_at.format("%Y-%m-%dT%H:%M:%SZ")
        )),
        "{line}"
    );
    for bad in ["90", "1.5d", "3w"] {
        let error = cli(
            &app,
            &[
                "create",
                "--tenant",
                TENANT,
                "--role",
                "ingest",
                "--expires-in",
                bad,
            ],
        )
        .expect_err(bad);
        assert!(error.contains("--expires-in"), "{error}");
    }
    let error = cli(
        &app,
        &[
            "create",
            "--tenant",
            TENANT,
            "--role",
            "ingest",
            "--expires-at",
            "2001-01-01T00:00:00Z",
        ],
    )
    .expect_err("past");
    assert!(error.contains("not in the future"), "{error}");
}

/// `keys rotate KEY_ID --grace 3s` (the real binary, beside the app): a new key with the
/// old one's tenant, role, personal-data flag and label, `rotated_from` naming it; both keys
/// work within the grace period, the old one is refused (expired) after it; a revoked key
/// cannot be rotated.
pub async fn a_rotated_key_works_until_its_grace_period_ends<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let old = app
        .state
        .keys
        .create(&tenant, Role::Analyst, true, Some("dashboard"))
        .await
        .expect("create");
    app.get_with(&old.token, "/v1/customers").await.ok();

    let new_token = cli(&app, &["rotate", &old.info.key_id, "--grace", "3s"]).expect("rotate");
    let new_token = new_token.trim();
    let new_id = App::key_id(new_token);
    assert_ne!(new_id, old.info.key_id);
    let new = stored(&app, new_id).await;
    assert_eq!(new.rotated_from.as_deref(), Some(old.info.key_id.as_str()));
    assert_eq!(new.tenant, TENANT);
    assert_eq!(new.role, Role::Analyst);
    assert!(new.personal_data);
    assert_eq!(new.label.as_deref(), Some("dashboard"));
    assert_eq!(new.expires_at, None, "the old key never expired");
    let old_until = stored(&app, &old.info.key_id)
        .await
        .expires_at
        .expect("the old key now expires");
    let grace = old_until - Utc::now();
    assert!(
        grace > chrono::Duration::zero() && grace <= chrono::Duration::seconds(3),
        "{grace}"
    );

    // Within the grace period both work (the new one reads personal data, as the old did).
    assert!(Utc::now() < old_until);
    app.get_with(&old.token, "/v1/customers").await.ok();
    app.get_with(new_token, "/v1/customers").await.ok();
    let listed = listed_key(&app, new_id);
    assert_eq!(listed["rotated_from"], old.info.key_id.as_str());

    // After it the old key is refused as expired; the new one still works.
    let wait = (old_until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
    app.get_with(&old.token, "/v1/customers")
        .await
        .problem(401, &["expired"]);
    app.get_with(new_token, "/v1/customers").await.ok();

    // An expired or revoked key is not rotated.
    let error = cli(&app, &["rotate", &old.info.key_id]).expect_err("expired");
    assert!(error.contains("expired"), "{error}");
    assert!(app.state.keys.revoke(new_token).await.expect("revoke"));
    let error = app
        .state
        .keys
        .rotate(new_id, Duration::from_secs(60), None)
        .await
        .expect_err("revoked")
        .to_string();
    assert!(error.contains("revoked"), "{error}");

    // A key that expires is rotated into one with the same lifetime from now.
    let lifetime = chrono::Duration::days(30);
    let expiring = app
        .state
        .keys
        .create_until(
            &tenant,
            Role::Ingest,
            false,
            None,
            Some(Utc::now() + lifetime),
        )
        .await
        .expect("create");
    let rotated = app
        .state
        .keys
        .rotate(&expiring.token, Duration::from_secs(3_600), None)
        .await
        .expect("rotate");
    let new_expiry = rotated.new.info.expires_at.expect("expires");
    let expected = rotated.new.info.created_at + lifetime;
    assert!(
        (new_expiry - expected).abs() < chrono::Duration::seconds(2),
        "{new_expiry} vs {expected}"
    );
}

/// `last_used_at` is empty for a key never used, set by its first accepted request, not
/// rewritten by the next one within the minute, and shown by `keys list` (text and JSON);
/// a refused request does not set it. A key table made before the expiry, rotation and
/// last-use columns gains them on the next open, its keys never expiring.
pub async fn last_use_is_recorded_and_listed<F: Future<Output = Option<App>>>(
    start: impl Start<F>,
) {
    let app = app!(start);
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let key = app
        .state
        .keys
        .create(&tenant, Role::Analyst, false, None)
        .await
        .expect("create");
    let id = key.info.key_id.as_str();
    assert_eq!(listed_key(&app, id)["last_used_at"], Value::Null);
    let line = cli(&app, &["list"]).expect("list");
    let line = line.lines().find(|l| l.starts_with(id)).expect("line");
    assert!(line.contains("last used never"), "{line}");
    assert!(line.contains("expires never"), "{line}");

    let wrong = format!(
        "{}{}",
        &key.token[..key.token.len() - 1],
        if key.token.ends_with('0') { "1" } else { "0" }
    );
    app.get_with(&wrong, "/v1/customers")
        .await
        .problem(401, &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stored(&app, id).await.last_used_at,
        None,
        "refused: not used"
    );

    let before = crm_core::envelope::to_stored_precision(Utc::now());
    app.get_with(&key.token, "/v1/customers").await.ok();
    let mut first = None;
    for _ in 0..100 {
        first = stored(&app, id).await.last_used_at;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.expect("last_used_at is written");
    assert!(first >= before && first <= Utc::now(), "{first}");

    app.get_with(&key.token, "/v1/customers").await.ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stored(&app, id).await.last_used_at,
        Some(first),
        "not written again within the minute"
    );
    let shown = listed_key(&app, id)["last_used_at"]
        .as_str()
        .expect("listed")
        .parse::<chrono::DateTime<Utc>>()
        .expect("RFC 3339");
    assert_eq!(shown, first);
    let text = cli(&app, &["list"]).expect("list");
    let line = text.lines().find(|l| l.starts_with(id)).expect("line");
    assert!(
        line.contains(&format!("last used {}", first.format("%Y-%m-%dT%H:%M:%SZ"))),
        "{line}"
    );

    // An older key table gains the columns; its keys never expire and keep working.
    for column in ["expires_at", "last_used_at", "rotated_from"] {
        app.state
            .db
            .execute(
                &format!("ALTER TABLE crm_api_keys DROP COLUMN {column}"),
                vec![],
            )
            .await
            .expect("drop the column");
    }
    for _ in 0..2 {
        crm_api::keys::KeyStore::open(app.state.db.clone())
            .await
            .expect("reopen the key table");
    }
    let keys = app.state.keys.list(None).await.expect("list");
    assert!(
        keys.iter().all(|k| k.expires_at.is_none()
            && k.last_used_at.is_none()
            && k.rotated_from.is_none())
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.get_with(&key.token, "/v1/customers").await.ok();
}
