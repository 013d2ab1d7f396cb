//! crm-tests: helpers shared by the end-to-end and contract tests (fresh SQLite files, fresh
//! PostgreSQL databases) and the `crm-bench` binary.

pub mod postgres;
