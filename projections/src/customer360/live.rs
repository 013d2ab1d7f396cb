//! The live 360 view with every member `GET /v1/customers/{id}` takes from the read models,
//! read together: the customer's row, its newest timeline entries, the account it is a
//! contact of, its open tasks, its consent record and its latest CSAT and NPS answers.
//!
//! They go out as one [`ReadDb::fetch_together`]: on PostgreSQL one statement (one round
//! trip, one snapshot) instead of eight, on SQLite one connection and one snapshot. Eight
//! statements per view were most of a request's cost (docs/benchmarks.md, issue 21, "Q1 on
//! PostgreSQL").
//!
//! The consent record and the satisfaction answers cover the customer and the customers
//! merged into it, whose ids only the row names. They are asked for the customer alone in
//! the same read; a row that names merged customers (rare) has both read again for every
//! id. What is shown is the same either way.

use chrono::{DateTime, Utc};
use crm_core::catalog::values::TaskSubjectKind;

use super::{Customer360, CustomerView, get_query, recent_query, view_from};
use crate::db::{ReadDb, Rows};
use crate::error::ProjectionError;
use crate::{accounts, consent, service_quality, tasks};

/// The live view of `customer` evaluated at `at`, with `contact_of`, `open_tasks`,
/// `consent_record` and `satisfaction` filled, and the stored state it was made from;
/// `None` when the customer has no row. (The analytics and a company's account summary are
/// the caller's.)
pub async fn live_view(
    db: &ReadDb,
    tenant: &str,
    customer: &str,
    at: DateTime<Utc>,
) -> Result<Option<(CustomerView, Customer360)>, ProjectionError> {
    let alone = [customer];
    let mut queries = vec![
        get_query(tenant, customer),
        recent_query(tenant, customer),
        accounts::account_of_query(tenant, customer, None),
        tasks::open_for_query(tenant, TaskSubjectKind::Customer, customer),
    ];
    queries.extend(consent::record_queries(tenant, &alone, None));
    queries.extend(service_quality::latest_queries(tenant, &alone, None));
    let asked = queries.len();
    let answers: [Rows; 8] =
        db.fetch_together(queries)
            .await?
            .try_into()
            .map_err(|answers: Vec<Rows>| {
                ProjectionError::Decode(format!(
                    "{asked} queries read together gave {} answers",
                    answers.len()
                ))
            })?;
    let [
        state,
        recent,
        account,
        open_tasks,
        changes,
        contacts,
        csat,
        nps,
    ] = answers;
    let Some((mut view, state)) = view_from(tenant, customer, at, state, recent)? else {
        return Ok(None);
    };
    view.contact_of = accounts::account_of_from(account);
    view.open_tasks = Some(tasks::lines_from(tenant, open_tasks, at)?);
    if view.merged_ids.is_empty() {
        view.consent_record = Some(consent::record_from(vec![changes, contacts]));
        view.satisfaction = Some(service_quality::latest_from(tenant, vec![csat, nps])?);
    } else {
        let mut ids = vec![customer];
        ids.extend(view.merged_ids.iter().map(String::as_str));
        view.consent_record = Some(consent::record(db, tenant, &ids, None).await?);
        view.satisfaction = Some(service_quality::latest(db, tenant, &ids, None).await?);
    }
    Ok(Some((view, state)))
}
