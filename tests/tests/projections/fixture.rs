//! A fresh store and read-model database per test, on either backend.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crm_core::store::sqlite::{Durability, SqliteEventStore};
use crm_core::store::{SharedStore, StoreUrl, postgres::PostgresEventStore};
use crm_projections::db::SqlValue;
use crm_projections::runner::{self, ProjectionStatus, RunnerHandle, RunnerOptions};
use crm_projections::{ReadDb, all_projections};
use crm_tests::postgres::TestDatabase;

pub struct Fixture {
    pub store: SharedStore,
    pub url: StoreUrl,
    pub db: ReadDb,
    _sqlite_dir: Option<tempfile::TempDir>,
    _postgres: Option<TestDatabase>,
}

impl Fixture {
    pub async fn sqlite(_test: &str) -> Option<Fixture> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("events.db");
        let store = SqliteEventStore::open(&path)
            .await
            .expect("open sqlite store");
        let url = StoreUrl::Sqlite {
            path,
            durability: Durability::Normal,
        };
        let db = ReadDb::open(&url).await.expect("open read db");
        Some(Fixture {
            store: Arc::new(store),
            url,
            db,
            _sqlite_dir: Some(dir),
            _postgres: None,
        })
    }

    pub async fn postgres(test: &str) -> Option<Fixture> {
        let database = TestDatabase::create(test).await?;
        let store = PostgresEventStore::connect(database.url())
            .await
            .expect("open postgres store");
        let url = StoreUrl::Postgres {
            url: database.url().to_owned(),
        };
        let db = ReadDb::open(&url).await.expect("open read db");
        Some(Fixture {
            store: Arc::new(store),
            url,
            db,
            _sqlite_dir: None,
            _postgres: Some(database),
        })
    }

    /// A fresh, empty fixture on the same backend as this one (`name` names its PostgreSQL
    /// database).
    pub async fn another(&self, name: &str) -> Fixture {
        let fresh = match self.url {
            StoreUrl::Sqlite { .. } => Fixture::sqlite(name).await,
            _ => Fixture::postgres(name).await,
        };
        fresh.expect("a fresh fixture on the same backend")
    }

    /// Options that exercise batch boundaries and notice takeovers quickly.
    pub fn options() -> RunnerOptions {
        RunnerOptions {
            batch_size: 97,
            catch_up_batch_size: 97,
            poll_interval: Duration::from_millis(50),
            lease_ttl: Duration::from_millis(400),
            stop_when_caught_up: false,
        }
    }

    /// A runner of every projection, as another process would start it (its own database
    /// handle).
    pub async fn start_runner(&self) -> RunnerHandle {
        let db = ReadDb::open(&self.url).await.expect("second read db");
        runner::start(self.store.clone(), db, all_projections(), Self::options())
    }

    /// Brings every projection up to the head and returns their status.
    pub async fn catch_up(&self) -> Vec<ProjectionStatus> {
        tokio::time::timeout(
            Duration::from_secs(120),
            runner::run_until_caught_up(
                self.store.clone(),
                self.db.clone(),
                all_projections(),
                Self::options(),
            ),
        )
        .await
        .expect("catch-up finished in time")
        .expect("catch-up succeeded")
    }

    /// Every row of every read model, by table.
    pub async fn dump(&self) -> BTreeMap<&'static str, Vec<Vec<SqlValue>>> {
        let mut tables = BTreeMap::new();
        for projection in all_projections() {
            for def in projection.tables() {
                let rows = self.db.dump(def.name, "1, 2, 3").await.expect("dump");
                tables.insert(def.name, rows);
            }
        }
        tables
    }

    pub async fn head(&self) -> u64 {
        self.store.head_position().await.expect("head")
    }
}
