//! The store's one error vocabulary. Each protocol maps it to its reply codes in one
//! function (POP3 `-ERR [SYS/TEMP]`, IMAP `NO [NONEXISTENT]`, SMTP `451 4.3.0`, …).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The account, mailbox or message does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A mailbox or account of that name exists already.
    #[error("already exists: {0}")]
    Exists(String),
    /// The request itself is wrong (bad name, reserved mailbox, …).
    #[error("invalid: {0}")]
    Invalid(String),
    /// Another session holds the lock (POP3 maildrop).
    #[error("in use: {0}")]
    InUse(String),
    /// The message or request is larger than allowed.
    #[error("too big: {0}")]
    TooBig(String),
    /// A transient failure: retrying later may succeed.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// A bug or a broken store; details are logged, never shown to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn internal(e: impl std::fmt::Display) -> StoreError {
        StoreError::Internal(e.to_string())
    }

    /// `update_account` on a copy older than the stored account (see
    /// `AccountSettings::revision`): read it again and redo the change.
    pub fn account_changed(address: &str) -> StoreError {
        StoreError::Temporary(format!(
            "account {address} changed meanwhile; read it again"
        ))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Internal(format!("i/o: {e}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
