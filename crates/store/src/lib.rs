//! casella-store: the mail model, the directory data and the outbound queue.
//!
//! Owns: accounts, mailboxes, messages (UIDs, MODSEQ, flags, INTERNALDATE), the
//! message bytes (content-addressed blobs), the metadata parsed once at delivery
//! (envelope, body structure, search fields), the change feed and the POP3 maildrop
//! lock.
//! Must not: know any protocol's syntax. Sessions call this API and nothing below it.
//! Invariants:
//! - Nothing is reported as done before it is durable: every mutating method returns
//!   only after its transaction committed with a synchronous write, and a message's
//!   blob is synced to disk before the metadata that names it.
//! - UIDs in a mailbox are strictly ascending and never reused; UIDNEXT only grows.
//! - Every change to a mailbox takes a new MODSEQ, strictly greater than all before,
//!   and expunged UIDs are remembered with their MODSEQ (for QRESYNC's VANISHED).
//! - Changes are published on the feed after commit, never before.
//!
//! Layers (see [`model`]): the APIs — [`MailStore`] (the mail model),
//! [`DirectoryStore`] (accounts and what belongs to them), [`QueueStore`] (the
//! outbound queue), together [`Store`]; the mail model written once over
//! [`model::MailBackend`] / [`model::MailTx`]; the directory and the queue
//! written once as SQL over [`records::SqlTx`]; message bytes behind
//! [`blob::BlobStore`]. Backends: [`sqlite::SqliteStore`] (the embedded
//! default) and [`postgres::PgStore`] (shared by many nodes); each passes the
//! conformance rules (`conformance`, feature `conformance`).

pub mod blob;
pub mod changes;
mod clock;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod directory_store;
mod error;
mod import_store;
mod lifecycle_store;
mod mail_store;
mod maildrop;
pub mod model;
mod parsed_cache;
pub mod postgres;
mod queue_store;
pub mod records;
mod search_columns;
pub mod sqlite;
mod types;

pub use casella_mime::{AddressKey, MessageStructure, ParsedMessage, SearchFields, SortKeys};
pub use changes::Change;
pub use clock::Clock;
pub use directory_store::DirectoryStore;
pub use error::{StoreError, StoreResult};
pub use import_store::{ImportMailbox, ImportMessage, ImportStore};
pub use lifecycle_store::{
    LifecycleStore, RecoverFilter, RecoverableItem, Restored, RetentionRun, Usage,
};
pub use mail_store::MailStore;
pub use maildrop::{MaildropHold, MaildropLock};
pub use model::mailbox_rules;
pub use queue_store::QueueStore;
pub use types::*;

/// What the fuzz targets reach that the API does not offer (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::sqlite::TextIndexProbe;
}

/// How long a sign-out record is kept (a day): long enough for any node that
/// polls to see it, short enough that the table stays a few rows.
pub const SIGNOUT_KEPT_SECS: i64 = 86_400;

/// Everything a server node opens: the mail model, the directory and the
/// outbound queue, usually in one database.
pub trait Store: MailStore + DirectoryStore + QueueStore + LifecycleStore + ImportStore {}

impl<T: MailStore + DirectoryStore + QueueStore + LifecycleStore + ImportStore> Store for T {}

/// Stores line ends as CRLF: a bare LF becomes CRLF, everything else is kept.
/// POP3 and IMAP both send CRLF, so sizes and bytes on the wire equal the stored ones.
pub fn normalize_line_ends(raw: Vec<u8>) -> Vec<u8> {
    let bare = raw
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + bare);
    let mut prev = 0u8;
    for &b in &raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::normalize_line_ends;

    #[test]
    fn bare_lf_becomes_crlf_and_crlf_is_kept() {
        assert_eq!(
            normalize_line_ends(b"a\nb\r\nc\n".to_vec()),
            b"a\r\nb\r\nc\r\n"
        );
        assert_eq!(normalize_line_ends(b"\n".to_vec()), b"\r\n");
        assert_eq!(normalize_line_ends(b"x\r\n".to_vec()), b"x\r\n");
        assert_eq!(normalize_line_ends(b"a\rb".to_vec()), b"a\rb");
    }
}
