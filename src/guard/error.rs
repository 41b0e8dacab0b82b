//! What a guard step can end in besides going on.

use super::rules::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("a shared limit refuses: {0:?}")]
    Refused(Refusal),
    #[error("the guard's table cannot be used: {0}")]
    Unavailable(String),
}
