//! Mail brought in from elsewhere with its identity kept — UIDVALIDITY,
//! UIDs, MODSEQs, flags and INTERNALDATEs — so IMAP clients keep their caches
//! and POP3 UIDLs stay the same: `casella migrate` (embedded store →
//! PostgreSQL) and `casella import maildir` (a Dovecot Maildir). Written once
//! for every backend (`crate::model::import`).

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::types::*;

/// A mailbox as the source had it.
#[derive(Debug, Clone)]
pub struct ImportMailbox {
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub uid_validity: UidValidity,
    pub uid_next: Uid,
    pub highest_modseq: ModSeq,
}

/// A message as the source had it.
#[derive(Debug, Clone)]
pub struct ImportMessage {
    pub uid: Uid,
    pub modseq: ModSeq,
    pub internal_date: i64,
    pub flags: FlagSet,
    pub raw: Vec<u8>,
}

#[async_trait]
pub trait ImportStore: Send + Sync + 'static {
    /// Creates the mailbox with the source's UIDVALIDITY, UIDNEXT and
    /// HIGHESTMODSEQ. A mailbox of that name that never held a message (as
    /// the default mailboxes `create_account` made) takes them over; one with
    /// messages or expunge history is `Exists`. Later UIDVALIDITYs of this
    /// store stay above the imported one.
    async fn import_mailbox(&self, account: AccountId, m: ImportMailbox) -> StoreResult<Mailbox>;
    /// Inserts messages with their source UIDs, MODSEQs, flags and
    /// INTERNALDATEs, all or nothing; a UID the mailbox has already is
    /// `Exists`. UIDNEXT and HIGHESTMODSEQ rise to cover them (they never
    /// fall); sessions on the mailbox see them arrive.
    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<ImportMessage>,
    ) -> StoreResult<()>;
    /// Records UIDs the source had expunged, with their MODSEQs (for
    /// QRESYNC's VANISHED); HIGHESTMODSEQ rises to cover them.
    async fn import_expunged(
        &self,
        mailbox: MailboxId,
        expunged: &[(Uid, ModSeq)],
    ) -> StoreResult<()>;
}
