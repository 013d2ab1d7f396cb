//! crm-core: the event envelope, the event catalog, the aggregates' rules, and the event
//! store with its SQLite and PostgreSQL backends. Nothing here knows about HTTP.

pub mod aggregates;
pub mod audit;
pub mod automation;
pub mod catalog;
pub mod command;
pub mod envelope;
pub mod ids;
pub mod merkle;
pub mod money;
pub mod privacy;
pub mod sla;
pub mod store;
#[cfg(feature = "telemetry")]
pub mod telemetry;
