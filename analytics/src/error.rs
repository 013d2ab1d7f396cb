//! The one error type of the crate: every function that can meet bad input returns it
//! instead of panicking or answering NaN.

/// Why an analytics computation could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyticsError {
    /// A customer summary breaks the BTYD definition (`index` is its position in the input).
    #[error("summary {index} is invalid: {reason}")]
    InvalidSummary { index: usize, reason: &'static str },
    /// An argument (horizon, discount rate, penalizer, parameter) is out of its domain.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument {
        name: &'static str,
        reason: &'static str,
    },
    /// A model cannot be fitted on this data (for example no customer with a repeat purchase).
    #[error("cannot fit {model}: {reason}")]
    NotEnoughData {
        model: &'static str,
        reason: &'static str,
    },
    /// The fitted parameters leave a quantity undefined (for example Gamma-Gamma q <= 1).
    #[error("undefined for these parameters: {0}")]
    Undefined(&'static str),
    /// A series or computation did not reach a finite answer.
    #[error("numerical failure: {0}")]
    Numerical(&'static str),
}
