//! Fresh PostgreSQL databases for tests: one per test, dropped afterwards. When no server is
//! reachable, tests say so loudly and skip, unless `CRM_REQUIRE_POSTGRES=1` (set by CI), in
//! which case they fail.

use sqlx::{Connection, Executor, PgConnection};

/// The server tests use: `CRM_TEST_POSTGRES_URL`, or the local one with trust auth.
pub fn admin_url() -> String {
    std::env::var("CRM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn required() -> bool {
    std::env::var("CRM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v == "true")
}

/// A database created for one test and dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh database, or returns `None` after a loud notice when no server is
    /// reachable and PostgreSQL is not required. Panics when it is required.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let admin = admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(error) => {
                if required() {
                    panic!(
                        "PostgreSQL is required (CRM_REQUIRE_POSTGRES=1) but {admin} is unreachable: {error}"
                    );
                }
                eprintln!(
                    "\n!!!!! SKIPPED {test}: PostgreSQL is not reachable at {admin} ({error}).\n\
                     !!!!! Start it or set CRM_TEST_POSTGRES_URL; CI sets CRM_REQUIRE_POSTGRES=1 and fails instead.\n"
                );
                return None;
            }
        };
        let name = format!("crm_test_{}", uuid::Uuid::new_v4().simple());
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        let url = options_to_url(&admin, &name);
        Some(TestDatabase { name, url })
    }

    /// A URL for the fresh database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Replaces the database part of a URL.
fn options_to_url(admin: &str, database: &str) -> String {
    let (base, query) = admin.split_once('?').unwrap_or((admin, ""));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    if query.is_empty() {
        format!("{base}/{database}")
    } else {
        format!("{base}/{database}?{query}")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own to stay synchronous.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok(mut conn) = PgConnection::connect(&admin).await {
                        let _ = conn
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await;
                        let _ = conn.close().await;
                    }
                });
            }
        })
        .join();
    }
}

/// Asserts that `stderr` of a command refused for a database that does not exist is the one
/// sentence the binaries give: naming `database` once and how to create it, without the
/// driver's error repeated (`at line …`).
pub fn assert_names_the_missing_database(stderr: &str, database: &str, command: &str) {
    let text = stderr.trim();
    assert_eq!(text.lines().count(), 1, "{command}: {text}");
    assert!(
        text.contains(&format!(
            "the PostgreSQL database \"{database}\" does not exist"
        )),
        "{command}: {text}"
    );
    assert!(text.contains("createdb "), "{command}: {text}");
    assert!(
        text.contains(&format!("CREATE DATABASE \"{database}\"")),
        "{command}: {text}"
    );
    assert_eq!(
        text.matches("does not exist").count(),
        1,
        "{command}: {text}"
    );
    assert!(!text.contains("at line"), "{command}: {text}");
}

#[cfg(test)]
mod tests {
    use super::options_to_url;

    #[test]
    fn the_database_part_of_a_url_is_replaced() {
        assert_eq!(
            options_to_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            options_to_url("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            options_to_url("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
