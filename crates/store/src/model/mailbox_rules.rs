//! Rules about which mailboxes may be deleted or renamed, whatever the
//! backend: the model checks them inside the transaction that would change
//! the mailbox.

use crate::error::{StoreError, StoreResult};
use crate::types::{DEFAULT_MAILBOXES, Mailbox};

/// Whether `mb` is one of the folders every account is made with (INBOX and
/// the special-use folders of [`DEFAULT_MAILBOXES`]): the server relies on
/// them (POP3's DELE moves to Deleted Items, `save-sent` keeps copies in Sent
/// Items, retention empties Deleted Items and Junk Email), so, as in
/// Exchange, they cannot be deleted or renamed. A folder a client made with
/// a special-use role (RFC 6154 CREATE-SPECIAL-USE) under another name is the
/// client's to delete.
pub fn is_default_folder(mb: &Mailbox) -> bool {
    DEFAULT_MAILBOXES
        .iter()
        .any(|(name, role)| mb.name == *name && mb.special_use == *role)
}

/// DELETE: refused for INBOX (RFC 9051 §6.3.5) and the default folders.
pub fn check_delete(mb: &Mailbox) -> StoreResult<()> {
    if mb.name == "INBOX" {
        return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
    }
    if is_default_folder(mb) {
        return Err(StoreError::Invalid(format!(
            "{} is a default folder and cannot be deleted",
            mb.name
        )));
    }
    Ok(())
}

/// RENAME of the mailbox itself: refused for the default folders. (RENAME of
/// INBOX, RFC 9051 §6.3.6, moves its messages to a new mailbox instead; the
/// session does that without renaming INBOX.)
pub fn check_rename(mb: &Mailbox) -> StoreResult<()> {
    if is_default_folder(mb) {
        return Err(StoreError::Invalid(format!(
            "{} is a default folder and cannot be renamed",
            mb.name
        )));
    }
    Ok(())
}
