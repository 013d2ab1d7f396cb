//! Several read-model queries answered together: one statement on PostgreSQL, one snapshot
//! on either backend.
//!
//! A page such as the customer 360 view reads six read models. As separate statements that
//! is six round trips, six statement executions and six pool acquisitions, and on
//! PostgreSQL most of a request's CPU went to that per-statement overhead rather than to any
//! scan (docs/benchmarks.md, issue 21, "Q1 on PostgreSQL"). [`ReadDb::fetch_together`]
//! sends them as one:
//!
//! - **PostgreSQL**: each query becomes one column of a single `SELECT`, its rows an
//!   `ARRAY(SELECT row_to_json(q) FROM (<query>) q)` turned into JSON text, in the query's own
//!   order; the placeholders of all the queries are numbered in turn. One statement is one
//!   snapshot.
//! - **SQLite**: the queries run one after another on one pooled connection inside one
//!   read transaction (one snapshot), in one turn of the calling thread.
//!
//! Each query's rows come back decoded as its `cols` say, exactly as [`ReadDb::fetch`] would
//! have decoded them.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{Backend, Col, ReadDb, SqlValue, bind_pg, render};
use crate::error::ProjectionError;

/// One query of a [`ReadDb::fetch_together`] batch: portable SQL with `?` placeholders, its
/// arguments, and how to read each selected column.
#[derive(Debug, Clone)]
pub struct Query {
    pub sql: String,
    pub args: Vec<SqlValue>,
    pub cols: Vec<Col>,
}

impl Query {
    pub fn new(sql: impl Into<String>, args: Vec<SqlValue>, cols: &[Col]) -> Query {
        Query {
            sql: sql.into(),
            args,
            cols: cols.to_vec(),
        }
    }
}

/// The rows of one query.
pub type Rows = Vec<Vec<SqlValue>>;

impl ReadDb {
    /// Runs `queries` together (module docs) and returns each one's rows, in the order given.
    pub async fn fetch_together(&self, queries: Vec<Query>) -> Result<Vec<Rows>, ProjectionError> {
        match self {
            ReadDb::Sqlite(pool) => {
                let rendered: Vec<(String, Query)> = queries
                    .into_iter()
                    .map(|q| (render(Backend::Sqlite, &q.sql), q))
                    .collect();
                pool.fetch_together(&rendered).await
            }
            ReadDb::Postgres(pool) => {
                if queries.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = render(Backend::Postgres, &postgres_statement(&queries));
                // The arguments move into the one statement; each query keeps its columns.
                let mut args = Vec::new();
                let mut cols = Vec::with_capacity(queries.len());
                for query in queries {
                    args.extend(query.args);
                    cols.push(query.cols);
                }
                let row = bind_pg(&sql, args).fetch_one(pool).await?;
                let mut out = Vec::with_capacity(cols.len());
                for (i, cols) in cols.iter().enumerate() {
                    use sqlx::Row;
                    let text: String = row.try_get(i)?;
                    out.push(decode_json_rows(&text, cols)?);
                }
                Ok(out)
            }
        }
    }
}

/// The single PostgreSQL statement: one JSON-text column per query (module docs).
fn postgres_statement(queries: &[Query]) -> String {
    let columns: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            format!(
                "array_to_json(ARRAY(SELECT row_to_json(q{i}) FROM ({}) q{i}))::text",
                q.sql
            )
        })
        .collect();
    format!("SELECT {}", columns.join(", "))
}

/// A JSON array of row objects, each object's members read in the order they were written
/// (the query's column order; names may repeat), as `cols` say: integers as `Int`
/// (`NullInt` for null), text as `Text` (`Null` for null; a number read as text is its
/// digits, as on SQLite).
fn decode_json_rows(text: &str, cols: &[Col]) -> Result<Rows, ProjectionError> {
    let rows: Vec<OrderedRow> = serde_json::from_str(text).map_err(|e| {
        ProjectionError::Decode(format!("a query answered together is not JSON rows: {e}"))
    })?;
    rows.into_iter()
        .map(|OrderedRow(values)| {
            if values.len() < cols.len() {
                return Err(ProjectionError::Decode(format!(
                    "a query answered together gave {} columns, {} were asked for",
                    values.len(),
                    cols.len()
                )));
            }
            cols.iter()
                .zip(values)
                .map(|(col, value)| json_value(*col, value))
                .collect()
        })
        .collect()
}

fn json_value(col: Col, value: Value) -> Result<SqlValue, ProjectionError> {
    Ok(match (col, value) {
        (Col::Int, Value::Null) => SqlValue::NullInt,
        (Col::Int, Value::Number(n)) => SqlValue::Int(
            n.as_i64()
                .ok_or_else(|| ProjectionError::Decode(format!("{n} is not a 64-bit integer")))?,
        ),
        (Col::Text, Value::Null) => SqlValue::Null,
        (Col::Text, Value::String(s)) => SqlValue::Text(s),
        (Col::Text, Value::Number(n)) => SqlValue::Text(n.to_string()),
        (col, other) => {
            return Err(ProjectionError::Decode(format!(
                "a query answered together gave {other} where {col:?} was asked for"
            )));
        }
    })
}

/// One row object's values in the order they were written.
struct OrderedRow(Vec<Value>);

impl<'de> serde::Deserialize<'de> for OrderedRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = OrderedRow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedRow, A::Error> {
                let mut values = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((_, value)) = map.next_entry::<serde::de::IgnoredAny, Value>()? {
                    values.push(value);
                }
                Ok(OrderedRow(values))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_the_placeholders_of_every_query_in_turn() {
        let queries = vec![
            Query::new("SELECT a FROM t WHERE b = ?", vec![1.into()], &[Col::Int]),
            Query::new(
                "SELECT c, d FROM u WHERE e = ? AND f = ? ORDER BY c DESC LIMIT ?",
                vec!["x".into(), "y".into(), 3.into()],
                &[Col::Text, Col::Int],
            ),
        ];
        assert_eq!(
            render(Backend::Postgres, &postgres_statement(&queries)),
            "SELECT array_to_json(ARRAY(SELECT row_to_json(q0) FROM (SELECT a FROM t WHERE b = \
             $1) q0))::text, array_to_json(ARRAY(SELECT row_to_json(q1) FROM (SELECT c, d FROM \
             u WHERE e = $2 AND f = $3 ORDER BY c DESC LIMIT $4) q1))::text"
        );
    }

    #[test]
    fn json_rows_are_read_in_column_order_even_with_repeated_names() {
        let rows = decode_json_rows(
            r#"[{"id":"b","id":7,"n":null,"m":null},{"id":"a","id":-1,"n":2,"m":"t"}]"#,
            &[Col::Text, Col::Int, Col::Int, Col::Text],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![
                    SqlValue::text("b"),
                    SqlValue::Int(7),
                    SqlValue::NullInt,
                    SqlValue::Null
                ],
                vec![
                    SqlValue::text("a"),
                    SqlValue::Int(-1),
                    SqlValue::Int(2),
                    SqlValue::text("t")
                ],
            ]
        );
        assert_eq!(
            decode_json_rows("[]", &[Col::Int]).unwrap(),
            Vec::<Vec<_>>::new()
        );
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_an_error_not_a_guess() {
        assert!(decode_json_rows(r#"[{"a":"x"}]"#, &[Col::Int]).is_err());
        assert!(decode_json_rows(r#"[{"a":1.5}]"#, &[Col::Int]).is_err());
        assert!(decode_json_rows(r#"[{"a":1}]"#, &[Col::Int, Col::Int]).is_err());
        assert_eq!(
            decode_json_rows(r#"[{"a":12}]"#, &[Col::Text]).unwrap(),
            vec![vec![SqlValue::text("12")]]
        );
    }
}
