//! The log's append-only guards: the triggers that refuse `UPDATE`, `DELETE` (and on
//! PostgreSQL `TRUNCATE`) on `crm_events`. Someone with the database can drop or disable them;
//! hash chains still expose an edit afterwards, but the service must not go on writing to a
//! store whose guard is gone without a word. [`ensure`] is what `crm-api serve` calls before it
//! opens the store: it names what is missing or altered and refuses, or, when told, restores
//! the guards exactly as the migration created them.

use rusqlite::{Connection, OpenFlags};
use sqlx::Connection as _;

use crate::store::{StoreError, StoreUrl, postgres};

/// SQLite's guards, as `0001_event_log.sql` creates them (compared with whitespace folded).
const SQLITE_GUARDS: &[(&str, &str)] = &[
    (
        "crm_events_append_only_update",
        "CREATE TRIGGER crm_events_append_only_update BEFORE UPDATE ON crm_events
BEGIN
    SELECT RAISE(ABORT, 'crm_events is append-only');
END",
    ),
    (
        "crm_events_append_only_delete",
        "CREATE TRIGGER crm_events_append_only_delete BEFORE DELETE ON crm_events
BEGIN
    SELECT RAISE(ABORT, 'crm_events is append-only');
END",
    ),
];

const PG_FUNCTION: &str = "CREATE OR REPLACE FUNCTION crm_events_append_only() RETURNS trigger \
     LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'crm_events is append-only';
END;
$$";
const PG_FUNCTION_BODY: &str = "BEGIN RAISE EXCEPTION 'crm_events is append-only'; END;";
const PG_TRIGGER: &str = "CREATE TRIGGER crm_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON crm_events
    FOR EACH STATEMENT EXECUTE FUNCTION crm_events_append_only()";

/// Checks the guards of the store at `url`. Returns the names of the guards that were missing
/// or altered and have been restored (`restore`), or nothing when all are in place (a store
/// that does not exist yet has nothing to check); refuses with
/// [`StoreError::GuardsMissing`] otherwise.
pub async fn ensure(url: &StoreUrl, restore: bool) -> Result<Vec<String>, StoreError> {
    let missing = missing(url).await?;
    if missing.is_empty() {
        return Ok(missing);
    }
    if !restore {
        return Err(StoreError::GuardsMissing {
            names: missing.join(", "),
        });
    }
    match url {
        StoreUrl::Sqlite { path, .. } => {
            let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let mut script = String::from("BEGIN IMMEDIATE;");
            for (name, sql) in SQLITE_GUARDS {
                script.push_str(&format!("DROP TRIGGER IF EXISTS {name}; {sql};"));
            }
            script.push_str("COMMIT;");
            conn.execute_batch(&script)?;
        }
        StoreUrl::Postgres { url } => {
            let mut conn = postgres::connect_one(&postgres::connect_options(url)?).await?;
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(PG_FUNCTION).execute(&mut *tx).await?;
            sqlx::raw_sql("DROP TRIGGER IF EXISTS crm_events_append_only ON crm_events")
                .execute(&mut *tx)
                .await?;
            sqlx::raw_sql(PG_TRIGGER).execute(&mut *tx).await?;
            tx.commit().await?;
        }
    }
    let still = self::missing(url).await?;
    if !still.is_empty() {
        return Err(StoreError::GuardsMissing {
            names: still.join(", "),
        });
    }
    Ok(missing)
}

/// The guards that are missing, disabled or altered, by name.
pub async fn missing(url: &StoreUrl) -> Result<Vec<String>, StoreError> {
    match url {
        StoreUrl::Sqlite { path, .. } => {
            if std::fs::metadata(path).map_or(true, |meta| meta.len() == 0) {
                return Ok(Vec::new());
            }
            let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            // The last connection to close would fold the WAL into the file: a check writes
            // nothing (a store refused for another reason stays byte for byte as it was).
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            sqlite_missing(&conn)
        }
        StoreUrl::Postgres { url } => {
            let mut conn = postgres::connect_one(&postgres::connect_options(url)?).await?;
            let found = pg_missing(&mut conn).await;
            let _ = conn.close().await;
            found
        }
    }
}

fn sqlite_missing(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let has_log: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'crm_events')",
        [],
        |row| row.get(0),
    )?;
    if !has_log {
        return Ok(Vec::new());
    }
    let mut missing = Vec::new();
    for (name, expected) in SQLITE_GUARDS {
        let stored: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1 \
                 AND tbl_name = 'crm_events'",
                [name],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|error| match error {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })?;
        if stored.as_deref().map(fold) != Some(fold(expected)) {
            missing.push((*name).to_owned());
        }
    }
    Ok(missing)
}

async fn pg_missing(conn: &mut sqlx::PgConnection) -> Result<Vec<String>, StoreError> {
    let has_log: Option<String> = sqlx::query_scalar("SELECT to_regclass('crm_events')::text")
        .fetch_one(&mut *conn)
        .await?;
    if has_log.is_none() {
        return Ok(Vec::new());
    }
    let trigger: Option<(String, String, String)> = sqlx::query_as(
        "SELECT t.tgenabled::text, pg_get_triggerdef(t.oid), p.prosrc \
         FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
         WHERE t.tgrelid = 'crm_events'::regclass AND t.tgname = 'crm_events_append_only'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let intact = trigger.is_some_and(|(enabled, definition, body)| {
        let definition = fold(&definition);
        // 'O' fires in normal sessions, 'A' always; 'D' is disabled, 'R' only on replicas.
        matches!(enabled.as_str(), "O" | "A")
            && ["UPDATE", "DELETE", "TRUNCATE", "FOR EACH STATEMENT"]
                .iter()
                .all(|part| definition.contains(part))
            && !definition.contains(" WHEN ")
            && definition.ends_with("EXECUTE FUNCTION crm_events_append_only()")
            && fold(&body) == PG_FUNCTION_BODY
    });
    Ok(if intact {
        Vec::new()
    } else {
        vec!["crm_events_append_only".to_owned()]
    })
}

/// SQL with every run of whitespace folded to one space, trimmed.
fn fold(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guards_checked_are_the_ones_the_migrations_create() {
        let sqlite = fold(include_str!("sqlite/0001_event_log.sql"));
        for (_, sql) in SQLITE_GUARDS {
            assert!(sqlite.contains(&fold(sql)), "{sql}");
        }
        let postgres = fold(include_str!("postgres/0001_event_log.sql"));
        assert!(postgres.contains(&fold(PG_TRIGGER)));
        assert!(postgres.contains(&fold(PG_FUNCTION_BODY)));
        assert!(postgres.contains(&fold(&PG_FUNCTION.replace("CREATE OR REPLACE", "CREATE"))));
    }

    #[tokio::test]
    async fn a_dropped_sqlite_guard_is_named_refused_and_restored_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.db");
        let url = StoreUrl::Sqlite {
            path: path.clone(),
            durability: crate::store::sqlite::Durability::Normal,
        };
        assert!(missing(&url).await.expect("no file yet").is_empty());
        let store = crate::store::sqlite::SqliteEventStore::open(&path)
            .await
            .expect("open");
        let stream = crate::envelope::StreamId::parse("customer-c-1").expect("stream");
        crate::store::EventStore::append(
            &store,
            &crate::envelope::TenantId::parse("t1").expect("tenant"),
            &stream,
            crate::store::ExpectedRevision::NoStream,
            vec![crate::envelope::NewEvent::new(
                "CustomerRegistered",
                &serde_json::json!({"customer_id": "c-1"}),
            )],
        )
        .await
        .expect("append");
        drop(store);
        assert!(ensure(&url, false).await.expect("intact").is_empty());

        let conn = Connection::open(&path).expect("open file");
        conn.execute_batch("DROP TRIGGER crm_events_append_only_delete")
            .expect("drop");
        drop(conn);
        let error = ensure(&url, false).await.expect_err("refused").to_string();
        assert!(error.contains("crm_events_append_only_delete"), "{error}");
        assert!(!error.contains("crm_events_append_only_update"), "{error}");

        // A trigger of the same name that does nothing counts as missing too.
        let conn = Connection::open(&path).expect("open file");
        conn.execute_batch(
            "DROP TRIGGER crm_events_append_only_update;
             CREATE TRIGGER crm_events_append_only_update BEFORE UPDATE ON crm_events
             BEGIN SELECT 1; END;",
        )
        .expect("replace");
        drop(conn);
        let mut restored = ensure(&url, true).await.expect("restored");
        restored.sort();
        assert_eq!(
            restored,
            [
                "crm_events_append_only_delete",
                "crm_events_append_only_update"
            ]
        );
        assert!(missing(&url).await.expect("check").is_empty());
        let conn = Connection::open(&path).expect("open file");
        let refused = conn
            .execute_batch("DELETE FROM crm_events")
            .expect_err("the guard is back");
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
}
