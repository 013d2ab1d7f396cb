//! crm-tests: helpers shared by the end-to-end and contract tests (fresh SQLite files, fresh
//! PostgreSQL databases), the benchmark data set, and the `crm-bench` binary.

pub mod analytics_data;
pub mod api_bench;
pub mod baseline;
pub mod bench_data;
pub mod concurrent_bench;
pub mod concurrent_writers;
pub mod console_bench;
pub mod crm_data;
pub mod crm_full;
pub mod ladder;
pub mod mixed_bench;
pub mod multi_api_bench;
pub mod postgres;
pub mod raw_bytes;
pub mod score_bench;
pub mod served;
pub mod tree_bench;
pub mod webhook_bench;
pub mod webhook_receiver;

/// The master key the end-to-end tests give the stores they fill and the binaries they run
/// (`CRM_MASTER_KEY`): a fixed test value, never used outside tests.
pub const TEST_MASTER_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Opens the store at `url` as the binaries do, sealing personal fields under
/// [`TEST_MASTER_KEY`] (creating its key ring on a new store).
pub async fn open_test_store(
    url: &crm_core::store::StoreUrl,
) -> Result<crm_core::store::SharedStore, crm_core::privacy::PrivacyError> {
    let source = crm_core::privacy::KeySource {
        value: Some(TEST_MASTER_KEY.to_owned()),
        file: None,
    };
    let opened = crm_core::privacy::open_private(url, &source, true).await?;
    Ok(std::sync::Arc::new(opened.store))
}
