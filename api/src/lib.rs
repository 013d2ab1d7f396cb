//! crm-api: the CRM core's HTTP service. [`app::router`] builds the axum application that
//! `crm-api serve` listens with; [`problem::Problem`] is its one error answer.

pub mod app;
pub mod problem;
