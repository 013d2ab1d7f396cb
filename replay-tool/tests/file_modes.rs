//! Every file `crm-replay` writes that can hold personal data or keys is readable by its
//! owner only (mode 0600), whatever the umask: the store and its WAL, exports (`--out`,
//! stored or decrypted, even over an existing file), the key file of `--keys-out`,
//! snapshots, a new master-key file (`rotate-master`), and a store and key created by
//! `import`.

use std::path::Path;
use std::process::Command;

use chrono::{TimeZone, Utc};
use crm_core::catalog::DomainEvent;
use crm_core::envelope::TenantId;
use crm_core::privacy::{KeySource, open_private};
use crm_core::store::{EventStore, ExpectedRevision, StoreUrl};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_crm-replay");

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs `crm-replay ARGS` under `umask 000`, so only the program's own modes protect files.
#[track_caller]
fn replay(args: &[&str]) {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args)
        .env_remove("CRM_STORE")
        .env_remove("CRM_MASTER_KEY")
        .env_remove("CRM_MASTER_KEY_FILE")
        .env("CRM_LOG", "warn");
    let output = command.output().expect("run crm-replay");
    assert!(
        output.status.success(),
        "crm-replay {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_crm_replay_writes_is_the_owners_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name);
    let text = |name: &str| path(name).to_str().expect("path").to_owned();
    let url = format!("sqlite://{}", text("events.db"));
    {
        let opened = open_private(
            &StoreUrl::parse(&url).expect("url"),
            &KeySource::default(),
            true,
        )
        .await
        .expect("a new store");
        let tenant = TenantId::parse("acme").expect("tenant");
        for (n, name) in ["Ada Lovelace", "Grace Hopper"].iter().enumerate() {
            let event = DomainEvent::parse(
                "CustomerRegistered",
                &json!({"customer_id": format!("c-{n}"), "kind": "person", "name": name}),
            )
            .expect("event");
            let new = event.to_new_event().with_occurred_at(
                Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                    .single()
                    .expect("time"),
            );
            opened
                .store
                .append(&tenant, &event.stream(), ExpectedRevision::Any, vec![new])
                .await
                .expect("append");
        }
        assert_eq!(opened.created_key_file, Some(path("master.key")));
    }
    assert_eq!(mode(&path("master.key")), 0o600);
    assert_eq!(mode(&path("events.db")), 0o600);

    replay(&["--store", &url, "export", "--out", &text("stored.jsonl")]);
    // An existing, world-readable file is narrowed before anything is written into it.
    std::fs::write(path("plain.jsonl"), "old\n").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path("plain.jsonl"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    replay(&[
        "--store",
        &url,
        "export",
        "--decrypt",
        "--force",
        "--out",
        &text("plain.jsonl"),
    ]);
    assert!(
        std::fs::read_to_string(path("plain.jsonl"))
            .expect("export")
            .contains("Ada Lovelace")
    );
    replay(&[
        "--store",
        &url,
        "export",
        "--out",
        &text("with-keys.jsonl"),
        "--keys-out",
        &text("keys.jsonl"),
    ]);
    replay(&[
        "--store",
        &url,
        "snapshot",
        "--position",
        "2",
        "--out",
        &text("snapshot.db"),
    ]);
    replay(&[
        "--store",
        &url,
        "rotate-master",
        "--new-key-file",
        &text("rotated.key"),
    ]);
    let imported = path("imported").join("events.db");
    replay(&[
        "--store",
        &format!("sqlite://{}", imported.display()),
        "import",
        &text("plain.jsonl"),
    ]);

    let mut checked = 0;
    for name in [
        "events.db",
        "events.db-wal",
        "events.db-shm",
        "stored.jsonl",
        "plain.jsonl",
        "with-keys.jsonl",
        "keys.jsonl",
        "snapshot.db",
        "snapshot.db-wal",
        "snapshot.db-journal",
        "rotated.key",
        "imported/events.db",
        "imported/events.db-wal",
        "imported/master.key",
    ] {
        let file = path(name);
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} files were there");
    for name in [
        "stored.jsonl",
        "plain.jsonl",
        "with-keys.jsonl",
        "keys.jsonl",
        "snapshot.db",
        "rotated.key",
        "imported/events.db",
        "imported/master.key",
    ] {
        assert!(path(name).exists(), "{name} was not written");
    }
}
