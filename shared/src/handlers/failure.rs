//! Why a route's work did not get done: the one error every handler returns, which the
//! webhook pipeline turns into the answer (503 for a redelivery, 200 with the reason).

use crate::store::StoreError;

/// Why a route's work did not get done, and so whether a redelivery could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// DynamoDB, GitHub or @connections failed in a way that a redelivery may fix: 503.
    Transient(String),
    /// No redelivery will fix it (GitHub has no such commit or pull request, a stored item
    /// cannot be read): recorded as handled and answered 200 with the reason.
    Permanent(String),
}

impl Failure {
    /// A failure a redelivery may fix.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient(reason.into())
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Transient(error.to_string()),
            StoreError::Corrupt(_) => Self::Permanent(error.to_string()),
        }
    }
}
