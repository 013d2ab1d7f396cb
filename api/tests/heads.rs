//! Issue 16 through the real binary: the embedded store's head-signing key made on first
//! start (0600, announced), `serve --publish-heads DIR --every` writing each tenant's signed
//! head once per tree size and never replacing one, and PostgreSQL without a key serving
//! proofs but no heads (503 naming the flag) until it is given one.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crm_core::audit::{HeadSigner, SignedHead};
use crm_tests::served::Served;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crm-api");

fn serve(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("CRM_MASTER_KEY_FILE", dir.join("master.key"))
        .env_remove("CRM_SIGNING_KEY")
        .env_remove("CRM_SIGNING_KEY_FILE");
    for (name, value) in env {
        command.env(name, value);
    }
    let admin = dir.join("admin.key");
    Served::start(&mut command, move || admin.exists())
}

fn admin(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin.key"))
        .expect("admin.key")
        .trim()
        .to_owned()
}

async fn append(
    client: &reqwest::Client,
    served: &Served,
    key: &str,
    customer: &str,
    orders: u32,
) -> u64 {
    let mut events = vec![json!({"type": "CustomerRegistered",
        "data": {"customer_id": customer, "kind": "person", "name": "Ada"}})];
    for n in 0..orders {
        events.push(
            json!({"type": "OrderPlaced", "data": {"customer_id": customer,
            "order_id": format!("o-{n}"), "amount": "10.00", "currency": "EUR"}}),
        );
    }
    let answer: Value = client
        .post(format!("http://{}/v1/events", served.address))
        .bearer_auth(key)
        .json(&json!({ "events": events }))
        .send()
        .await
        .expect("append")
        .json()
        .await
        .expect("json");
    answer["last_position"].as_u64().expect("last_position")
}

/// Waits until `dir` holds a head file of `size` and returns every head file's (name, bytes).
fn wait_for_head(dir: &Path, size: u64) -> Vec<(String, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            std::fs::read(e.path()).expect("read head"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        if files
            .iter()
            .any(|(name, _)| name == &format!("head-{size:020}.json"))
        {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "no head of size {size} in {}: {files:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_are_published_once_per_size_and_never_replaced() {
    let dir = tempfile::tempdir().expect("dir");
    let heads = dir.path().join("heads");
    let heads_arg = heads.to_str().expect("utf-8").to_owned();
    let served = serve(
        dir.path(),
        &["--publish-heads", &heads_arg, "--every", "1s"],
        &[],
    );
    // The embedded default made its signing key, 0600, and said so (never printing it).
    let key_file = dir.path().join("signing.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("signing.key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let secret = std::fs::read_to_string(&key_file).expect("read key");
    let public = HeadSigner::parse(&secret, "signing.key")
        .expect("key")
        .public();
    assert!(
        served.log().contains("head-signing key was written"),
        "{}",
        served.log()
    );
    assert!(
        !served.log().contains(secret.trim()),
        "the key is never logged"
    );

    let client = reqwest::Client::new();
    let key = admin(dir.path());
    append(&client, &served, &key, "c-1", 4).await;
    let tenant_dir = heads.join("default");
    let first = wait_for_head(&tenant_dir, 5);
    append(&client, &served, &key, "c-2", 2).await;
    let second = wait_for_head(&tenant_dir, 8);
    // The first file is still there, byte for byte, beside the new one.
    for (name, bytes) in &first {
        let kept = second
            .iter()
            .find(|(n, _)| n == name)
            .expect("never removed");
        assert_eq!(&kept.1, bytes, "{name} was rewritten");
    }
    for (name, bytes) in &second {
        let head: SignedHead =
            serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        head.verify(&public).expect("a published head verifies");
        assert_eq!(name, &format!("head-{:020}.json", head.tree_size));
        assert_eq!(head.tenant, "default");
    }
    // A restart on the same directory publishes nothing new for the same size.
    drop(served);
    let served = serve(
        dir.path(),
        &["--publish-heads", &heads_arg, "--every", "1s"],
        &[],
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = wait_for_head(&tenant_dir, 8);
    assert_eq!(
        again, second,
        "a restart replaced or added heads without new events"
    );
    assert!(
        !served.log().contains("head-signing key was written"),
        "made once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serves_proofs_without_a_key_and_heads_only_with_one() {
    let Some(db) = crm_tests::postgres::TestDatabase::create("serve_heads").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let store = ["--store", db.url()];
    // No key: --publish-heads is refused before serving.
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(store)
        .args(["--publish-heads", "heads"])
        .env("CRM_MASTER_KEY_FILE", dir.path().join("master.key"))
        .env_remove("CRM_SIGNING_KEY")
        .env_remove("CRM_SIGNING_KEY_FILE")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--publish-heads needs a head-signing key"),
        "{stderr}"
    );

    let served = serve(dir.path(), &store, &[]);
    assert!(
        served.log().contains("no head-signing key"),
        "{}",
        served.log()
    );
    assert!(
        !dir.path().join("signing.key").exists(),
        "PostgreSQL never makes one up"
    );
    let client = reqwest::Client::new();
    let key = admin(dir.path());
    let position = append(&client, &served, &key, "c-1", 2).await;
    let get = |path: String| {
        let request = client
            .get(format!("http://{}{path}", served.address))
            .bearer_auth(&key);
        async move {
            let answer = request.send().await.expect("get");
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.expect("json"),
            )
        }
    };
    let (status, body) = get(format!("/v1/audit/head?min_position={position}")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("--signing-key-file"),
        "{body}"
    );
    assert_eq!(get("/v1/audit/public-key".into()).await.0, 503);
    // Proofs need no key: the tree is built all the same.
    let deadline = Instant::now() + Duration::from_secs(30);
    let proof = loop {
        let (status, body) = get("/v1/audit/inclusion?stream=customer-c-1&revision=2".into()).await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(proof["tree_size"], json!(3));
    assert_eq!(proof["leaf_index"], json!(2));
    drop(served);

    // The key given in the environment: heads are signed with it.
    let signer = HeadSigner::generate().expect("key");
    let file = dir.path().join("given.key");
    signer.write_new_file(&file).expect("write");
    let given = std::fs::read_to_string(&file).expect("read");
    let served = serve(dir.path(), &store, &[("CRM_SIGNING_KEY", given.trim())]);
    let answer = client
        .get(format!(
            "http://{}/v1/audit/head?min_position={position}",
            served.address
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("head");
    assert_eq!(answer.status().as_u16(), 200);
    let head: SignedHead = answer.json().await.expect("a head");
    head.verify(&signer.public())
        .expect("signed with the given key");
    assert_eq!(head.tree_size, 3);
}

#[test]
fn a_zero_interval_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--publish-heads", "heads", "--every", "0s"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--every must be at least 1s"));
}
