//! The read-model database: the same SQLite file or PostgreSQL database as the event log,
//! reached through one small statement layer so every read model writes its SQL once.
//!
//! Statements use `?` placeholders and portable SQL (multi-row `VALUES`, `ON CONFLICT`,
//! row values); for PostgreSQL the placeholders are renumbered to `$n`. Values are only
//! integers, text and NULL: timestamps are microseconds since the epoch, money is minor units
//! beside its currency code, and documents are JSON text.
//!
//! SQLite is reached through rusqlite ([`sqlite`]), PostgreSQL through sqlx.

pub mod sqlite;
mod together;

use std::path::Path;

use crm_core::store::{StoreError, StoreUrl};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, Transaction};

pub use self::sqlite::{SQLITE_LOCK_WAIT, SqliteOptions, SqlitePool, SqliteTx};
pub use self::together::{Query, Rows};
use crate::error::ProjectionError;

/// Bound parameters per statement, below both backends' limits (SQLite 32766, PG 65535).
pub const MAX_PARAMS: usize = 30_000;

/// A value bound to, or read from, a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    /// A NULL text value.
    Null,
    /// A NULL integer (PostgreSQL types parameters, so the two NULLs differ there).
    NullInt,
    Int(i64),
    Text(String),
    /// A text array (PostgreSQL `= ANY(?)` lists; SQLite receives it as JSON text).
    TextArray(Vec<String>),
}

impl SqlValue {
    pub fn text(value: impl Into<String>) -> SqlValue {
        SqlValue::Text(value.into())
    }

    pub fn opt_text(value: Option<impl Into<String>>) -> SqlValue {
        value.map_or(SqlValue::Null, |v| SqlValue::Text(v.into()))
    }

    pub fn opt_int(value: Option<i64>) -> SqlValue {
        value.map_or(SqlValue::NullInt, SqlValue::Int)
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            SqlValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            SqlValue::Text(v) => Some(v),
            _ => None,
        }
    }

    pub fn into_text(self) -> Option<String> {
        match self {
            SqlValue::Text(v) => Some(v),
            _ => None,
        }
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::Int(value)
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        SqlValue::Text(value.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        SqlValue::Text(value)
    }
}

/// The type a selected column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Int,
    Text,
}

/// Which SQL dialect a statement is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The `application_name` of the sessions [`ReadDb::open_replica`] opens.
pub const REPLICA_APPLICATION_NAME: &str = "crm-api-read";

/// A pool on the read-model database.
#[derive(Debug, Clone)]
pub enum ReadDb {
    /// rusqlite connections (see [`sqlite`]).
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One read-model transaction. A SQLite transaction dropped without `commit` rolls back at
/// once; a PostgreSQL one when its connection is next used or returned.
#[derive(Debug)]
pub enum ReadTx {
    Sqlite(SqliteTx),
    Postgres(Transaction<'static, Postgres>),
}

impl ReadDb {
    /// Opens the database the store URL names for reading only (the tools that only read):
    /// nothing is created, and every transaction is read-only.
    pub async fn open_read_only(url: &StoreUrl) -> Result<ReadDb, ProjectionError> {
        match url {
            StoreUrl::Sqlite { path, durability } => {
                ReadDb::open_sqlite(
                    path,
                    SqliteOptions {
                        durability: *durability,
                        read_only: true,
                        ..SqliteOptions::default()
                    },
                )
                .await
            }
            StoreUrl::Postgres { url } => {
                use crm_core::store::postgres::{connect_options, connect_pool, pool_options};
                let options =
                    connect_options(url)?.options([("default_transaction_read_only", "on")]);
                let pool = connect_pool(pool_options(2), options).await?;
                Ok(ReadDb::Postgres(pool))
            }
        }
    }

    /// Opens a PostgreSQL read replica (a hot standby of the store's database) for the
    /// read-model queries only: nothing is created, every transaction is read-only, and its
    /// sessions carry `application_name` = [`REPLICA_APPLICATION_NAME`] so operators can
    /// tell them apart in `pg_stat_activity`. One connection is made at once, so a replica
    /// that cannot be reached is an error here, not at the first query.
    pub async fn open_replica(url: &StoreUrl, max: u32) -> Result<ReadDb, ProjectionError> {
        match url {
            StoreUrl::Sqlite { .. } => Err(ProjectionError::Store(StoreError::Config(
                "a read replica must be a PostgreSQL database (postgres://...)".to_owned(),
            ))),
            StoreUrl::Postgres { url } => {
                use crm_core::store::postgres::{
                    connect_one, connect_options, connect_pool, pool_options,
                };
                use sqlx::Connection;
                let options = connect_options(url)?
                    .application_name(REPLICA_APPLICATION_NAME)
                    .options([("default_transaction_read_only", "on")]);
                // One attempt first: the pool retries until its acquire timeout and then
                // reports only that, not why the server could not be reached.
                connect_one(&options).await?.close().await?;
                let pool = connect_pool(pool_options(max.max(1)), options).await?;
                Ok(ReadDb::Postgres(pool))
            }
        }
    }

    /// Whether a table exists (a store never served has no read-model tables).
    pub async fn has_table(&self, table: &str) -> Result<bool, ProjectionError> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
            }
            Backend::Postgres => "SELECT COUNT(*) FROM pg_tables WHERE tablename = ?",
        };
        let rows = self.fetch(sql, vec![table.into()], &[Col::Int]).await?;
        Ok(rows.first().and_then(|row| row[0].as_int()).unwrap_or(0) > 0)
    }

    /// Opens the database the store URL names, creating the projection bookkeeping tables.
    pub async fn open(url: &StoreUrl) -> Result<ReadDb, ProjectionError> {
        match url {
            StoreUrl::Sqlite { path, durability } => {
                ReadDb::open_sqlite(
                    path,
                    SqliteOptions {
                        durability: *durability,
                        ..SqliteOptions::default()
                    },
                )
                .await
            }
            StoreUrl::Postgres { url } => {
                use crm_core::store::postgres::{connect_options, connect_pool, pool_options};
                let pool = connect_pool(pool_options(8), connect_options(url)?).await?;
                let db = ReadDb::Postgres(pool);
                crate::bookkeeping::create(&db).await?;
                Ok(db)
            }
        }
    }

    /// Opens a SQLite file (WAL) as a read-model database; unless read-only, creates the
    /// projection bookkeeping tables.
    pub async fn open_sqlite(
        path: &Path,
        options: SqliteOptions,
    ) -> Result<ReadDb, ProjectionError> {
        let db = ReadDb::Sqlite(SqlitePool::open(path, options).await?);
        if !options.read_only {
            crate::bookkeeping::create(&db).await?;
        }
        Ok(db)
    }

    /// Waits for every connection to come back and closes them (on SQLite the last one
    /// folds the WAL into the file). Later use fails.
    pub async fn close(&self) {
        match self {
            ReadDb::Sqlite(pool) => pool.close().await,
            ReadDb::Postgres(pool) => pool.close().await,
        }
    }

    /// On SQLite, folds the write-ahead log into the database file and empties it (the
    /// whole file: the store's log and the read models share it); PostgreSQL has nothing to
    /// fold. `crm-api serve` calls it last on a clean stop, whichever of its connections
    /// closes last (a read-only one folds nothing), so the file alone holds every commit and
    /// a later process that only opens the store (a refused start, a read-only tool) finds
    /// nothing to fold and leaves the file as it was.
    pub async fn fold_wal(&self) -> Result<(), ProjectionError> {
        match self {
            ReadDb::Sqlite(pool) => pool.fold_wal().await,
            ReadDb::Postgres(_) => Ok(()),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            ReadDb::Sqlite(_) => Backend::Sqlite,
            ReadDb::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so it never fails half-way on a lock upgrade.
    pub async fn begin(&self) -> Result<ReadTx, ProjectionError> {
        Ok(match self {
            ReadDb::Sqlite(pool) => ReadTx::Sqlite(SqliteTx::begin(pool, true).await?),
            ReadDb::Postgres(pool) => ReadTx::Postgres(pool.begin().await?),
        })
    }

    /// Starts a read transaction: one consistent snapshot for several statements.
    pub async fn begin_read(&self) -> Result<ReadTx, ProjectionError> {
        Ok(match self {
            ReadDb::Sqlite(pool) => ReadTx::Sqlite(SqliteTx::begin(pool, false).await?),
            ReadDb::Postgres(pool) => ReadTx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
        })
    }

    /// Runs one statement outside a transaction.
    pub async fn execute(&self, sql: &str, args: Vec<SqlValue>) -> Result<u64, ProjectionError> {
        let sql = render(self.backend(), sql);
        Ok(match self {
            ReadDb::Sqlite(pool) => pool.execute(&sql, &args).await?,
            ReadDb::Postgres(pool) => bind_pg(&sql, args).execute(pool).await?.rows_affected(),
        })
    }

    /// Runs a query outside a transaction, reading each row's columns as `cols` says.
    pub async fn fetch(
        &self,
        sql: &str,
        args: Vec<SqlValue>,
        cols: &[Col],
    ) -> Result<Vec<Vec<SqlValue>>, ProjectionError> {
        let sql = render(self.backend(), sql);
        match self {
            ReadDb::Sqlite(pool) => pool.fetch(&sql, &args, Some(cols)).await,
            ReadDb::Postgres(pool) => bind_pg(&sql, args)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| decode_pg(row, cols))
                .collect(),
        }
    }
}

/// Longest a scrub waits for older snapshots to end.
const SCRUB_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl ReadDb {
    /// After an erasure: leaves no overwritten personal data in the read models' files.
    /// SQLite zeroes freed space itself (`secure_delete` on every connection; the store's
    /// scrub then truncates the shared WAL); PostgreSQL keeps dead row versions, and plain
    /// VACUUM leaves their bytes in the pages' free space, so every read-model table is
    /// rewritten with `VACUUM FULL` (each briefly locked against reads).
    pub async fn scrub(&self) -> Result<(), ProjectionError> {
        let ReadDb::Postgres(pool) = self else {
            return Ok(());
        };
        // VACUUM FULL copies row versions some open transaction may still see: wait (up to
        // SCRUB_WAIT) for the transactions of this database that hold a snapshot to end, so
        // the versions the erasure overwrote are dead to everyone.
        let deadline = std::time::Instant::now() + SCRUB_WAIT;
        loop {
            let holding: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)",
            )
            .fetch_one(pool)
            .await?;
            if holding == 0 || std::time::Instant::now() > deadline {
                if holding > 0 {
                    tracing::warn!(
                        transactions = holding,
                        "scrub: transactions still hold old snapshots; rows they see survive \
                         until the next scrub"
                    );
                }
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables \
             WHERE schemaname = current_schema() AND tablename LIKE 'rm\\_%'",
        )
        .fetch_all(pool)
        .await?;
        for table in tables {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM FULL \"{table}\"")))
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// After an erasure the read models have applied: the read models' files scrubbed first
    /// (on PostgreSQL this waits for older snapshots to end), then the key table's, so
    /// neither keeps what the erasure overwrote. The API's erase route, retention and
    /// `crm-replay erase` all end with it.
    pub async fn scrub_after_erasure(
        &self,
        store: &crm_core::privacy::PrivateStore,
    ) -> Result<(), ProjectionError> {
        self.scrub().await?;
        crm_core::privacy::erase::scrub_keys(store).await?;
        Ok(())
    }

    /// Every row of `table` (a read model's view) with every column, integers and text
    /// decoded as such, ordered by the given columns. For comparisons and snapshots.
    pub async fn dump(
        &self,
        table: &str,
        order_by: &str,
    ) -> Result<Vec<Vec<SqlValue>>, ProjectionError> {
        let sql = format!("SELECT * FROM {table} ORDER BY {order_by}");
        match self {
            ReadDb::Sqlite(pool) => pool.fetch(&sql, &[], None).await,
            ReadDb::Postgres(pool) => sqlx::query(AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| (0..row.len()).map(|i| any_pg_column(row, i)).collect())
                .collect(),
        }
    }
}

/// A column read as an integer if it is one, else as text.
fn any_pg_column(row: &PgRow, i: usize) -> Result<SqlValue, ProjectionError> {
    if let Ok(value) = row.try_get::<Option<i64>, _>(i) {
        return Ok(SqlValue::opt_int(value));
    }
    Ok(SqlValue::opt_text(row.try_get::<Option<String>, _>(i)?))
}

impl ReadTx {
    pub fn backend(&self) -> Backend {
        match self {
            ReadTx::Sqlite(_) => Backend::Sqlite,
            ReadTx::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn execute(
        &mut self,
        sql: &str,
        args: Vec<SqlValue>,
    ) -> Result<u64, ProjectionError> {
        let sql = render(self.backend(), sql);
        Ok(match self {
            ReadTx::Sqlite(tx) => tx.execute(&sql, &args).await?,
            ReadTx::Postgres(tx) => bind_pg(&sql, args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch(
        &mut self,
        sql: &str,
        args: Vec<SqlValue>,
        cols: &[Col],
    ) -> Result<Vec<Vec<SqlValue>>, ProjectionError> {
        let sql = render(self.backend(), sql);
        match self {
            ReadTx::Sqlite(tx) => tx.fetch(&sql, &args, cols).await,
            ReadTx::Postgres(tx) => bind_pg(&sql, args)
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|row| decode_pg(row, cols))
                .collect(),
        }
    }

    /// Inserts `rows` (each `columns.len()` values). `suffix` follows the `VALUES` list
    /// (e.g. an `ON CONFLICT` clause). On SQLite one prepared statement of a few rows
    /// ([`SQLITE_ROWS_PER_INSERT`]) runs per chunk and a single-row one for the rest (rows
    /// apply in order, as one statement per row would; in-process, that is cheaper than
    /// parsing a statement of thousands of placeholders); on PostgreSQL one `UNNEST` statement takes every row, or, when a
    /// column mixes integers and text, multi-row `VALUES` under the parameter limit.
    pub async fn insert_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: Vec<Vec<SqlValue>>,
        suffix: &str,
    ) -> Result<(), ProjectionError> {
        if rows.is_empty() || columns.is_empty() {
            return Ok(());
        }
        let tx = match self {
            ReadTx::Sqlite(tx) => {
                let tuple = format!("({})", placeholders(columns.len()));
                let statement = |rows: usize| {
                    format!(
                        "INSERT INTO {table} ({}) VALUES {} {suffix}",
                        columns.join(", "),
                        vec![tuple.as_str(); rows].join(",")
                    )
                };
                let per_statement =
                    (SQLITE_ROWS_PER_INSERT * 16 / columns.len()).clamp(1, SQLITE_ROWS_PER_INSERT);
                return tx
                    .insert_rows(&statement(1), &statement(per_statement), &rows)
                    .await;
            }
            ReadTx::Postgres(tx) => tx,
        };
        if let Some(arrays) = pg_columns(columns.len(), &rows) {
            // One array per column through UNNEST: a fixed, small statement that PostgreSQL
            // prepares once, instead of a VALUES list of thousands of parameters.
            let casts: Vec<String> = arrays
                .iter()
                .enumerate()
                .map(|(i, array)| match array {
                    PgArray::Int(_) => format!("${}::bigint[]", i + 1),
                    PgArray::Text(_) => format!("${}::text[]", i + 1),
                })
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({}) SELECT * FROM UNNEST({}) {suffix}",
                columns.join(", "),
                casts.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for array in arrays {
                query = match array {
                    PgArray::Int(values) => query.bind(values),
                    PgArray::Text(values) => query.bind(values),
                };
            }
            query.execute(&mut **tx).await?;
            return Ok(());
        }
        let per_statement = (MAX_PARAMS / columns.len()).max(1);
        let tuple = format!("({})", vec!["?"; columns.len()].join(","));
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<SqlValue>> = rows.by_ref().take(per_statement).collect();
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
            sql.push_str(&vec![tuple.as_str(); chunk.len()].join(","));
            sql.push(' ');
            sql.push_str(suffix);
            let args = chunk.into_iter().flatten().collect();
            self.execute(&sql, args).await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), ProjectionError> {
        match self {
            ReadTx::Sqlite(tx) => tx.commit().await?,
            ReadTx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), ProjectionError> {
        match self {
            ReadTx::Sqlite(tx) => tx.rollback().await?,
            ReadTx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// One column of rows as a PostgreSQL array.
enum PgArray {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
}

/// The rows as one typed array per column, or `None` if a column mixes integers and text.
fn pg_columns(width: usize, rows: &[Vec<SqlValue>]) -> Option<Vec<PgArray>> {
    (0..width)
        .map(|j| {
            let is_int = rows
                .iter()
                .any(|row| matches!(row.get(j), Some(SqlValue::Int(_) | SqlValue::NullInt)));
            let is_text = rows
                .iter()
                .any(|row| matches!(row.get(j), Some(SqlValue::Text(_) | SqlValue::Null)));
            match (is_int, is_text) {
                (true, true) => None,
                (true, false) => Some(PgArray::Int(
                    rows.iter()
                        .map(|row| row.get(j).and_then(SqlValue::as_int))
                        .collect(),
                )),
                (false, _) => Some(PgArray::Text(
                    rows.iter()
                        .map(|row| {
                            row.get(j)
                                .and_then(|v| v.as_text())
                                .map(|t| pg_text(t.to_owned()))
                        })
                        .collect(),
                )),
            }
        })
        .collect()
}

/// `column IN (values)` in chunks: on PostgreSQL one `= ANY(?)` with an array (one statement
/// shape whatever the count), on SQLite placeholder lists under the parameter limit. Each
/// item is the condition and its arguments.
pub fn in_clauses(backend: Backend, column: &str, values: &[&str]) -> Vec<(String, Vec<SqlValue>)> {
    match backend {
        Backend::Postgres => vec![(
            format!("{column} = ANY(?)"),
            vec![SqlValue::TextArray(
                values.iter().map(|v| (*v).to_owned()).collect(),
            )],
        )],
        Backend::Sqlite => values
            .chunks(MAX_PARAMS - 8)
            .map(|chunk| {
                (
                    format!("{column} IN ({})", placeholders(chunk.len())),
                    chunk.iter().map(|v| SqlValue::text(*v)).collect(),
                )
            })
            .collect(),
    }
}

/// `n` placeholders separated by commas, for `IN (...)` lists.
/// Rows per multi-row `INSERT` on SQLite (fewer for wide rows: at most 16 values a row
/// times this in one statement): one statement run per chunk opens the table's and its
/// indexes' cursors once, not once per row.
const SQLITE_ROWS_PER_INSERT: usize = 32;

pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// The statement for `backend`: `?` becomes `$1, $2, ...` on PostgreSQL, and the `TEXTKEY`
/// column type becomes byte-ordered text there (SQLite's TEXT already compares bytes), so
/// listings sort the same on both backends. `WITHOUT_ROWID` after a table definition makes
/// SQLite store small rows in their primary-key B-tree alone (one write instead of two).
pub fn render(backend: Backend, sql: &str) -> String {
    match backend {
        Backend::Sqlite => sql
            .replace("TEXTKEY", "TEXT")
            .replace("WITHOUT_ROWID", "WITHOUT ROWID"),
        Backend::Postgres => {
            let sql = sql
                .replace("TEXTKEY", "TEXT COLLATE \"C\"")
                .replace("WITHOUT_ROWID", "");
            let mut out = String::with_capacity(sql.len() + 16);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind_pg(sql: &str, args: Vec<SqlValue>) -> PgQuery<'static> {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
    for arg in args {
        query = match arg {
            SqlValue::Null => query.bind(None::<String>),
            SqlValue::NullInt => query.bind(None::<i64>),
            SqlValue::Int(v) => query.bind(v),
            SqlValue::Text(v) => query.bind(pg_text(v)),
            SqlValue::TextArray(v) => query.bind(v.into_iter().map(pg_text).collect::<Vec<_>>()),
        };
    }
    query
}

/// Text as PostgreSQL can store it. The catalog refuses NUL in new events
/// (`crm_core::catalog::text`), but a log may hold events accepted before that rule: their
/// NULs are written as U+FFFD in PostgreSQL read models (SQLite keeps them), so every stored
/// event stays projectable.
fn pg_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

fn decode_pg(row: &PgRow, cols: &[Col]) -> Result<Vec<SqlValue>, ProjectionError> {
    cols.iter()
        .enumerate()
        .map(|(i, col)| {
            Ok(match col {
                Col::Int => SqlValue::opt_int(row.try_get::<Option<i64>, _>(i)?),
                Col::Text => SqlValue::opt_text(row.try_get::<Option<String>, _>(i)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_statements_number_their_placeholders_and_sort_keys_bytewise() {
        assert_eq!(
            render(
                Backend::Postgres,
                "SELECT a FROM t WHERE b = ? AND c IN (?,?)"
            ),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2,$3)"
        );
        assert_eq!(render(Backend::Sqlite, "k TEXTKEY"), "k TEXT");
        assert_eq!(
            render(Backend::Postgres, "k TEXTKEY"),
            "k TEXT COLLATE \"C\""
        );
    }
}
