//! The access log: which key received which data subject's personal fields in plain text,
//! through which route, when. One row per (answer, subject); never a field value.
//!
//! [`crate::disclosure`] records a row set before an answer carrying plaintext personal fields
//! leaves the server (one insert per answer, or per batch of the live stream); an answer it
//! cannot record is not sent. Redacted answers carry no personal fields and are not
//! recorded. The table `crm_access_log` is created beside the key table
//! ([`crate::keys::KeyStore::open`]); triggers refuse UPDATE and DELETE on both backends, so
//! the log is append-only like the event log.
//!
//! `GET /v1/audit/access?subject=&key_id=&from=&to=&after=&limit=` (auditor) reads it.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use crm_core::ids::EntityId;
use crm_projections::ReadDb;
use crm_projections::db::{Col, MAX_PARAMS, SqlValue};
use serde::{Deserialize, Serialize};

use crate::app::SharedState;
use crate::extract::{Caller, Params};
use crate::keys::{Principal, Role};
use crate::problem::Problem;
use crate::queries::{page_size, parse_time};

/// Columns of one access-log insert row.
const COLUMNS: usize = 5;

/// Records that `principal` received the personal fields of `subjects` through `route`, in
/// one statement (one per [`MAX_PARAMS`] worth of rows, for a page of many thousands).
pub async fn record(
    db: &ReadDb,
    principal: &Principal,
    route: &str,
    subjects: &BTreeSet<String>,
) -> Result<(), crm_projections::ProjectionError> {
    if subjects.is_empty() {
        return Ok(());
    }
    let at = Utc::now().timestamp_micros();
    let subjects: Vec<&String> = subjects.iter().collect();
    for chunk in subjects.chunks(MAX_PARAMS / COLUMNS) {
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut args = Vec::with_capacity(chunk.len() * COLUMNS);
        for subject in chunk {
            args.extend([
                SqlValue::Int(at),
                principal.tenant.as_str().into(),
                principal.key_id.as_str().into(),
                subject.as_str().into(),
                route.into(),
            ]);
        }
        db.execute(
            &format!(
                "INSERT INTO crm_access_log (at, tenant, key_id, subject, route) VALUES {rows}"
            ),
            args,
        )
        .await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccessParams {
    /// `customer:<id>` or `lead:<id>`; a bare id means the customer.
    subject: Option<String>,
    /// A key id (16 hex digits).
    key_id: Option<String>,
    /// Reads at or after this time (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Reads before this time (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Rows after this id (the `next_after` of the previous page).
    after: Option<i64>,
    /// Page size, 1 to the server's maximum (1,000 by default); 50 when absent.
    #[param(minimum = 1)]
    limit: Option<usize>,
}

/// One recorded read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessLine {
    /// Increasing in recording order; the cursor of `after`.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub key_id: String,
    pub subject: String,
    /// The route template and method, e.g. `GET /v1/customers/{id}`.
    pub route: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AccessPage {
    items: Vec<AccessLine>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
}

/// `subject` as stored: `customer:<id>` or `lead:<id>`; a bare id is a customer's.
fn parse_subject(value: &str) -> Result<String, Problem> {
    let (kind, id) = value.split_once(':').unwrap_or(("customer", value));
    let valid = matches!(kind, "customer" | "lead") && EntityId::parse(id).is_ok();
    if valid {
        Ok(format!("{kind}:{id}"))
    } else {
        Err(Problem::bad_request(format!(
            "query string: subject={value:?} is not a data subject; give customer:<id>, \
             lead:<id> or a customer id"
        )))
    }
}

fn parse_key_id(value: &str) -> Result<String, Problem> {
    let id = crate::keys::key_id_of(value);
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(Problem::bad_request(format!(
            "query string: key_id={value:?} is not a key id (16 hex digits, as `crm-api keys \
             list` shows)"
        )))
    }
}

/// `GET /v1/audit/access`: the tenant's access log, oldest first, filtered, in pages.
#[utoipa::path(
    get,
    path = "/v1/audit/access",
    operation_id = "listAccessLog",
    tag = "audit",
    summary = "The access log: which key received whose personal fields, through which route, when (role auditor)",
    description = "One row per answer and data subject whose personal fields a key received in plain text (never a value), oldest first. Append-only: the database refuses to change or remove rows.",
    params(AccessParams),
    responses((status = 200, description = "A page of the access log.", body = AccessPage))
)]
pub async fn access_log(
    State(state): State<SharedState>,
    caller: Caller,
    Params(params): Params<AccessParams>,
) -> Result<Response, Problem> {
    let principal = caller.require(&[Role::Auditor], "read the access log")?;
    let limit = page_size(&state, params.limit)?;
    let mut sql =
        "SELECT id, at, key_id, subject, route FROM crm_access_log WHERE tenant = ?".to_owned();
    let mut args: Vec<SqlValue> = vec![principal.tenant.as_str().into()];
    if let Some(subject) = &params.subject {
        sql.push_str(" AND subject = ?");
        args.push(parse_subject(subject)?.into());
    }
    if let Some(key_id) = &params.key_id {
        sql.push_str(" AND key_id = ?");
        args.push(parse_key_id(key_id)?.into());
    }
    let from = params
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?;
    let to = params
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(Problem::bad_request(
            "query string: from is later than to; give from <= to",
        ));
    }
    if let Some(from) = from {
        sql.push_str(" AND at >= ?");
        args.push(SqlValue::Int(from.timestamp_micros()));
    }
    if let Some(to) = to {
        sql.push_str(" AND at < ?");
        args.push(SqlValue::Int(to.timestamp_micros()));
    }
    if let Some(after) = params.after {
        sql.push_str(" AND id > ?");
        args.push(SqlValue::Int(after));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    let rows = state
        .db
        .fetch(
            &sql,
            args,
            &[Col::Int, Col::Int, Col::Text, Col::Text, Col::Text],
        )
        .await
        .map_err(Problem::from)?;
    let items: Vec<AccessLine> = rows
        .into_iter()
        .map(|row| {
            let mut row = row.into_iter();
            let mut next = || row.next().unwrap_or(SqlValue::Null);
            let id = next().as_int().unwrap_or(0);
            let at = next()
                .as_int()
                .and_then(DateTime::from_timestamp_micros)
                .unwrap_or_default();
            AccessLine {
                id,
                at,
                key_id: next().into_text().unwrap_or_default(),
                subject: next().into_text().unwrap_or_default(),
                route: next().into_text().unwrap_or_default(),
            }
        })
        .collect();
    let next_after = (items.len() == limit)
        .then(|| items.last().map(|line| line.id))
        .flatten();
    Ok(axum::Json(AccessPage { items, next_after }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_key_ids_are_checked() {
        assert_eq!(parse_subject("c-1").ok().as_deref(), Some("customer:c-1"));
        assert_eq!(
            parse_subject("customer:c-1").ok().as_deref(),
            Some("customer:c-1")
        );
        assert_eq!(parse_subject("lead:l-1").ok().as_deref(), Some("lead:l-1"));
        for bad in ["", "case:k-1", "customer:", "c 1", "lead:a b"] {
            assert!(parse_subject(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_key_id("0123456789ABCDEF").ok().as_deref(),
            Some("0123456789abcdef")
        );
        assert!(parse_key_id("0123").is_err());
    }
}
