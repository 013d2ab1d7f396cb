//! A fresh store per test, plus the raw-SQL access tests need to tamper with it.

use std::path::PathBuf;
use std::sync::Arc;

use crm_core::store::SharedStore;
use crm_core::store::postgres::PostgresEventStore;
use crm_core::store::sqlite::SqliteEventStore;
use crm_tests::postgres::TestDatabase;
use sqlx::{Connection, Executor};

pub struct Fixture {
    pub store: SharedStore,
    backend: Backend,
}

enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        db: TestDatabase,
    },
}

impl Fixture {
    pub async fn sqlite(_test: &str) -> Option<Fixture> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.db");
        let store = SqliteEventStore::open(&path)
            .await
            .expect("open sqlite store");
        Some(Fixture {
            store: Arc::new(store),
            backend: Backend::Sqlite { _dir: dir, path },
        })
    }

    pub async fn postgres(test: &str) -> Option<Fixture> {
        let db = TestDatabase::create(test).await?;
        let store = PostgresEventStore::connect(db.url())
            .await
            .expect("open postgres store");
        Some(Fixture {
            store: Arc::new(store),
            backend: Backend::Postgres { db },
        })
    }

    /// A second, independent handle on the same store, as another process would have.
    pub async fn reopen(&self) -> SharedStore {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                Arc::new(SqliteEventStore::open(path).await.expect("reopen sqlite"))
            }
            Backend::Postgres { db } => Arc::new(
                PostgresEventStore::connect(db.url())
                    .await
                    .expect("reopen postgres"),
            ),
        }
    }

    /// The PostgreSQL store itself, for tests of PostgreSQL-only behaviour.
    pub async fn postgres_store(&self) -> Option<PostgresEventStore> {
        match &self.backend {
            Backend::Postgres { db } => Some(
                PostgresEventStore::connect(db.url())
                    .await
                    .expect("connect postgres"),
            ),
            Backend::Sqlite { .. } => None,
        }
    }

    /// Runs SQL straight against the database, as an intruder with file or superuser access
    /// would, with or without first disabling the append-only guard.
    pub async fn raw_sql(&self, sql: &str, disable_guard: bool) -> Result<(), sqlx::Error> {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let url = format!("sqlite://{}", path.display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await?;
                if disable_guard {
                    conn.execute(
                        "DROP TRIGGER crm_events_append_only_update; \
                         DROP TRIGGER crm_events_append_only_delete;",
                    )
                    .await?;
                }
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            }
            Backend::Postgres { db } => {
                let mut conn = sqlx::PgConnection::connect(db.url()).await?;
                if disable_guard {
                    conn.execute("ALTER TABLE crm_events DISABLE TRIGGER crm_events_append_only")
                        .await?;
                }
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            }
        }
    }

    /// A fresh random 16-byte event id in this backend's SQL.
    pub fn random_id_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "randomblob(16)",
            Backend::Postgres { .. } => "gen_random_uuid()",
        }
    }
}
