//! One error type for the core; the Python layer maps each variant to a named exception.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The request itself is malformed (empty prompt, bad role, too large...). `field` names
    /// the offending part, e.g. `messages[2].role`.
    #[error("{field}: {message}")]
    InvalidRequest { field: String, message: String },
    /// A constraint is out of range (NaN, negative, unknown model...).
    #[error("{field}: {message}")]
    InvalidConstraint { field: String, message: String },
    /// A model named by the caller is not in the catalog.
    #[error("unknown model {name:?}")]
    UnknownModel { name: String },
    /// Strict mode and no (model, tier) satisfies every constraint.
    #[error("no model fits: {reason}")]
    NoRoute { reason: String },
    /// A budget with the `reject` action has no room for the request (`scope` names the limit's
    /// scope, e.g. `tenant:acme`).
    #[error("budget exceeded: {message}")]
    BudgetExceeded { scope: String, message: String },
    /// A model or policy file could not be used; `file` names it.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A model's files (e.g. the sentence embedder's) are missing (`missing`) or unusable; `file`
    /// names the file or directory.
    #[error("{file}: {message}")]
    Model { file: String, message: String, missing: bool },
    /// A snapshot file could not be written, or is missing, truncated, corrupt or of another
    /// format version; `file` names it. State is left as it was.
    #[error("{file}: {message}")]
    Snapshot { file: String, message: String },
}

impl Error {
    pub fn invalid_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidRequest { field: field.into(), message: message.into() }
    }
    pub fn invalid_constraint(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidConstraint { field: field.into(), message: message.into() }
    }
    pub fn config(source: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { file: source.into(), message: message.into() }
    }
    pub fn model(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model { file: file.into(), message: message.into(), missing: false }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
