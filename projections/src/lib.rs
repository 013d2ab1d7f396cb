//! crm-projections: read models built from the event log by a checkpointed runner.
//!
//! - [`runner`]: reads the log in batches from each projection's checkpoint, applies a batch
//!   and moves the checkpoint in one transaction, follows the log live, rebuilds blue/green.
//! - [`projection`]: the [`Projection`] trait and the generation-suffixed tables behind the
//!   views readers query.
//! - Read models: [`customer360`], [`pipeline`], [`backlog`], [`timeline`], [`leads`], [`campaigns`],
//!   [`accounts`] (contact links), [`tasks`], [`consent`], [`service_quality`] (complaints
//!   and satisfaction); [`asof`] folds
//!   one customer at any past moment.
//! - [`db`]: the statement layer shared by SQLite and PostgreSQL; [`bookkeeping`]: the
//!   runner's tables; [`lease`]: one runner per projection across processes.
//! - [`parking`]: a failure stays with its tenant: an event a projection cannot apply parks
//!   its tenant for that projection (recorded, replayed in log order on the next set-up).
//! - [`retention`]: the per-tenant retention rule and the decision who is due under it.

pub mod accounts;
pub mod analytics;
pub mod asof;
pub mod attribution;
pub mod audit;
pub mod backlog;
pub mod bookkeeping;
pub mod campaigns;
pub mod consent;
pub mod customer360;
pub mod db;
mod error;
pub mod event;
pub mod leads;
pub mod lease;
pub mod orders;
pub mod parking;
pub mod pipeline;
pub mod projection;
pub mod quotas;
pub mod retention;
pub mod rows;
pub mod runner;
pub mod service_quality;
pub mod tasks;
#[cfg(test)]
mod testing;
pub mod timeline;

use std::sync::Arc;

pub use db::ReadDb;

/// The personal fields the read models fold, as `(event type, field)`: customer profiles, deal
/// names and lost reasons, case subjects, lead disqualification reasons, CSAT and NPS
/// comments. The runner reads the log through a handle that opens
/// only these (`PrivateStore::opening_only`); every other personal field (interaction
/// summaries, case descriptions, refund reasons, lead details) is never decrypted to project.
/// A projection that starts to read another personal field must be added here (the
/// replay tool's `a_snapshot_at_a_past_position_equals_a_rebuild_of_the_log_cut_there`, which
/// compares a snapshot built through this handle with a rebuild that opens every field, fails
/// otherwise).
pub const PERSONAL_FIELDS_READ: &[(&str, &str)] = &[
    ("CustomerRegistered", "name"),
    ("CustomerRegistered", "email"),
    ("CustomerRegistered", "phone"),
    ("CustomerProfileUpdated", "name"),
    ("CustomerProfileUpdated", "email"),
    ("CustomerProfileUpdated", "phone"),
    ("OpportunityOpened", "name"),
    ("OpportunityUpdated", "name"),
    ("OpportunityLost", "reason"),
    ("CaseOpened", "subject"),
    ("LeadDisqualified", "reason"),
    ("CsatRecorded", "comment"),
    ("NpsAnswered", "comment"),
];
pub use error::ProjectionError;
pub use event::{ProjectedEvent, TimelineEntry};
pub use projection::Projection;
pub use runner::{ProjectionStatus, RunState, RunnerHandle, RunnerOptions};

/// Every read model the CRM serves, in the order they are reported.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(customer360::Customer360Projection),
        Arc::new(pipeline::PipelineProjection),
        Arc::new(backlog::BacklogProjection),
        Arc::new(timeline::TimelineProjection),
        Arc::new(leads::LeadsProjection),
        Arc::new(campaigns::CampaignsProjection),
        Arc::new(accounts::AccountsProjection),
        Arc::new(tasks::TasksProjection),
        Arc::new(orders::OrderLinesProjection),
        Arc::new(quotas::QuotasProjection),
        Arc::new(consent::ConsentProjection),
        Arc::new(service_quality::ServiceQualityProjection),
    ]
}

/// The projections named (all of them for an empty list), or which name is unknown.
pub fn select_projections(names: &[String]) -> Result<Vec<Arc<dyn Projection>>, ProjectionError> {
    let all = all_projections();
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|p| p.name() == name)
                .cloned()
                .ok_or_else(|| {
                    ProjectionError::UnknownProjection(
                        name.clone(),
                        all.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
                    )
                })
        })
        .collect()
}
