//! What an attacker holding the database's files would read: every byte of a SQLite store
//! (the file and its WAL), or every relation file (tables, indexes, TOAST) of a PostgreSQL
//! database after a checkpoint, and a search of them for personal data in every form the
//! code derives from it.

use std::path::PathBuf;

use crm_core::store::StoreUrl;
use sqlx::{Connection, PgConnection};

/// The raw bytes of every file the store at `url` keeps its data in.
pub async fn stored_bytes(url: &StoreUrl) -> Vec<u8> {
    match url {
        StoreUrl::Sqlite { path, .. } => {
            let mut bytes = std::fs::read(path).expect("read the store file");
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            if let Ok(more) = std::fs::read(PathBuf::from(wal)) {
                bytes.extend(more);
            }
            bytes
        }
        StoreUrl::Postgres { url } => {
            let mut conn = PgConnection::connect(url).await.expect("connect");
            // Dirty pages reach the relation files.
            sqlx::query("CHECKPOINT")
                .execute(&mut conn)
                .await
                .expect("checkpoint");
            let data_dir: String = sqlx::query_scalar("SHOW data_directory")
                .fetch_one(&mut conn)
                .await
                .expect("data directory");
            let files: Vec<String> = sqlx::query_scalar(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND c.relkind IN ('r', 'i', 't') AND pg_relation_filepath(c.oid) IS NOT NULL",
            )
            .fetch_all(&mut conn)
            .await
            .expect("relation files");
            let mut bytes = Vec::new();
            for file in files {
                let base = PathBuf::from(&data_dir).join(&file);
                if let Ok(more) = std::fs::read(&base) {
                    bytes.extend(more);
                }
                for segment in 1.. {
                    let mut path = base.clone().into_os_string();
                    path.push(format!(".{segment}"));
                    match std::fs::read(PathBuf::from(path)) {
                        Ok(more) => bytes.extend(more),
                        Err(_) => break,
                    }
                }
            }
            assert!(!bytes.is_empty(), "no relation file was readable");
            bytes
        }
    }
}

/// Every form of `text` the code derives and stores (as is, lower-cased, a phone's digits).
pub fn derived_forms(text: &str) -> Vec<String> {
    let mut forms = vec![text.to_owned(), text.to_lowercase()];
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 6 {
        forms.push(digits);
    }
    forms.dedup();
    forms
}

/// The values (in any derived form) found in `bytes`.
pub fn found_in(bytes: &[u8], values: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for value in values {
        for form in derived_forms(value) {
            if bytes
                .windows(form.len())
                .any(|window| window == form.as_bytes())
            {
                found.push(form);
            }
        }
    }
    found
}
