//! crm-tests: helpers shared by the end-to-end and contract tests (fresh SQLite files, fresh
//! PostgreSQL databases), the benchmark data set, and the `crm-bench` binary.

pub mod api_bench;
pub mod baseline;
pub mod bench_data;
pub mod crm_data;
pub mod postgres;
