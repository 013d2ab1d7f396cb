//! The CRM core's HTTP service: the application ([`app`]), its API keys ([`keys`]), event
//! ingest ([`ingest`]), read-model queries ([`queries`]), the log ([`log`]), personal fields in
//! answers ([`disclosure`]) and the access log ([`access`]), the data subject's rights
//! ([`privacy`]), metrics, the OpenAPI document ([`openapi`]) and its page ([`docs_page`]); the bounds on what a client may cost
//! ([`edge`]).

pub mod access;
pub mod app;
pub mod console;
pub mod disclosure;
pub mod docs_page;
pub mod edge;
pub mod extract;
pub mod heads;
pub mod ingest;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod privacy;
pub mod problem;
pub mod proofs;
pub mod queries;
pub mod retention;
pub mod webhooks;
pub mod workflows;
