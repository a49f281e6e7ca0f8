//! A message's life after it is deleted: retention by folder (old messages
//! leave Deleted Items and Junk), recoverable items (what is expunged stays
//! for a while, invisible to IMAP and POP3, and can be restored), and the
//! retention job's record. Written once for every backend
//! (`crate::model::lifecycle`).

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::types::*;

/// An expunged message kept recoverable (Exchange's Recoverable Items).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverableItem {
    pub id: i64,
    pub account: AccountId,
    /// The name of the mailbox it was expunged from; a restore puts it back
    /// there (creating the mailbox again when it is gone).
    pub folder: String,
    pub blob: BlobId,
    pub size: u32,
    pub internal_date: i64,
    pub flags: FlagSet,
    /// When it was expunged (Unix seconds).
    pub deleted_at: i64,
}

/// Which recoverable items to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverFilter {
    /// Only those expunged at or after this time.
    pub since: Option<i64>,
    /// Only those from the mailbox of this name.
    pub folder: Option<String>,
}

/// A recoverable item put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub id: i64,
    pub mailbox: MailboxId,
    pub folder: String,
    /// Its new UID in `mailbox` (a restored message is a new message there).
    pub uid: Uid,
}

/// What an account's mailboxes hold (recoverable items not counted, as in
/// Exchange, where they have a quota of their own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The sum of the messages' sizes, in octets.
    pub bytes: u64,
    pub messages: u64,
}

/// One pass of the retention job, as `casella retention status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRun {
    pub node: String,
    pub started: i64,
    pub finished: i64,
    /// Messages taken out of Deleted Items and Junk (they became recoverable).
    pub expired: u64,
    /// Recoverable items removed for good.
    pub purged: u64,
    pub error: Option<String>,
}

#[async_trait]
pub trait LifecycleStore: Send + Sync + 'static {
    /// The time the mail model reads (SAVEDATE, expunge times): the system's,
    /// unless a test sets it.
    fn time_source(&self) -> &crate::Clock;
    /// The UIDs of up to `limit` messages of `mailbox` saved to it before
    /// `saved_before` (RFC 8514 SAVEDATE), ascending. Read outside any
    /// write, so finding them never holds the writer.
    async fn saved_before(
        &self,
        mailbox: MailboxId,
        saved_before: i64,
        limit: usize,
    ) -> StoreResult<Vec<Uid>>;
    /// Removes up to `limit` recoverable items expunged before
    /// `deleted_before`, for good (their bytes are freed when nothing else
    /// refers to them); returns how many.
    async fn purge_recoverable(&self, deleted_before: i64, limit: usize) -> StoreResult<u64>;
    /// The account's recoverable items that match, oldest first.
    async fn recoverable(
        &self,
        account: AccountId,
        filter: &RecoverFilter,
    ) -> StoreResult<Vec<RecoverableItem>>;
    /// Puts the account's recoverable items `ids` back in their mailboxes
    /// with new UIDs, flags and INTERNALDATE kept, in one transaction; ids
    /// that are not the account's (or gone) are left out.
    async fn restore_recoverable(
        &self,
        account: AccountId,
        ids: &[i64],
    ) -> StoreResult<Vec<Restored>>;
    /// What the account's mailboxes hold now: the sum of the totals each
    /// mailbox keeps (no scan of messages).
    async fn usage(&self, account: AccountId) -> StoreResult<Usage>;
    /// Records a pass of the retention job (the last 100 are kept).
    async fn record_retention_run(&self, run: &RetentionRun) -> StoreResult<()>;
    /// The latest passes, newest first.
    async fn retention_runs(&self, limit: usize) -> StoreResult<Vec<RetentionRun>>;
}
