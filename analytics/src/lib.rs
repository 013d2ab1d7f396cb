//! Customer analytics math for the CRM (issue 17): pure functions, no I/O, no clock,
//! deterministic. Time is measured in days throughout.
//!
//! - [`summary`]: the per-customer BTYD summary (frequency, recency, T, monetary value).
//! - [`rfm`]: RFM quintile scores, the three-digit code and named segments.
//! - [`bgnbd`]: the BG/NBD purchase model (fit, P(alive), expected purchases, churn risk).
//! - [`gamma_gamma`]: the Gamma-Gamma spend model and customer lifetime value.
//! - [`score`]: all of a customer's figures in one call, with the churn bucket.
//! - [`simulate`]: seeded generation of customers from known parameters, for tests and benchmarks.
//! - [`special`], [`optimize`]: the numerics underneath (log-gamma, 2F1, Nelder-Mead).
//!
//! Likelihood sums over many customers use scoped threads on fixed chunks added in a fixed
//! order, so a fit gives bit-identical results on any number of cores. Every function
//! returns [`AnalyticsError`] on input it cannot answer (NaN, empty sets, undefined
//! parameters) and never panics. The `lifetimes` oracle is `analytics/oracle/run`.

pub mod bgnbd;
pub mod error;
pub mod gamma_gamma;
pub mod optimize;
mod parallel;
pub mod rfm;
pub mod score;
pub mod simulate;
pub mod special;
pub mod summary;

pub use error::AnalyticsError;
pub use summary::Summary;
