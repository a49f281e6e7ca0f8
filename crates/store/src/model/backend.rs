//! What a backend provides to the mail model: a few transactional primitives
//! ([`MailTx`]), reads that need no rules, and where message bytes live
//! ([`crate::blob::BlobStore`]). Everything with a rule in it — UID, UIDVALIDITY
//! and MODSEQ allocation, flag arithmetic, which mailboxes may be deleted,
//! expunge grouping, publishing after commit — is in the model, written once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::blob::BlobStore;
use crate::changes::{Change, ChangeFeed};
use crate::error::StoreResult;
use crate::maildrop::MaildropLock;
use crate::model::caches::ParsedCaches;
use crate::model::prepare::PreparedMessage;
use crate::records::{ReadCost, SqlJob, SqlTx};
use crate::types::*;
use crate::{MessageStructure, SearchFields};

/// The future of a job run inside a transaction.
pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 't>>;

/// A job the model runs inside one backend transaction.
pub type TxJob<T> = Box<dyn for<'t> FnOnce(&'t mut dyn MailTx) -> TxFuture<'t, T> + Send>;

/// Boxes a closure as a [`TxJob`] (and lets the compiler infer its signature).
pub fn job<T, F>(f: F) -> TxJob<T>
where
    F: for<'t> FnOnce(&'t mut dyn MailTx) -> TxFuture<'t, T> + Send + 'static,
{
    Box::new(f)
}

/// A message row as the model writes it.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub uid: Uid,
    pub blob: BlobId,
    pub size: u32,
    pub internal_date: i64,
    /// When the message was saved to this mailbox (RFC 8514 SAVEDATE).
    pub save_date: i64,
    pub flags: FlagSet,
}

/// One open transaction. Every method runs inside it; nothing is visible to
/// others before the backend commits, and an error from the job rolls it all
/// back.
///
/// A job must not await anything but these methods: the embedded backend runs
/// jobs on its writer thread, where the primitives complete at once.
///
/// The same transaction runs SQL ([`SqlTx`]) for the records written once
/// over it (`crate::records`): an account and its default mailboxes, a
/// submission's local copies and its queue entry, commit together.
#[async_trait]
pub trait MailTx: SqlTx {
    /// The mailboxes, held for the rest of the transaction (no other
    /// transaction changes them meanwhile), taken in ascending id order — the
    /// one lock order, so transactions cannot deadlock. Returned in that order;
    /// `NotFound` when one does not exist.
    async fn lock_mailboxes(&mut self, ids: &[MailboxId]) -> StoreResult<Vec<Mailbox>>;
    /// The mailbox of `account` named exactly `name` (already canonical).
    async fn find_mailbox(
        &mut self,
        account: AccountId,
        name: &str,
    ) -> StoreResult<Option<Mailbox>>;
    /// The next UIDVALIDITY, unique in the store: at least `at_least` (the
    /// clock), and above every one handed out before.
    async fn next_uid_validity(&mut self, at_least: u32) -> StoreResult<UidValidity>;
    /// Removes a locked mailbox with its messages and expunge log; returns the
    /// blob of each message it held (a blob once per message).
    async fn remove_mailbox(&mut self, id: MailboxId) -> StoreResult<Vec<BlobId>>;
    /// The messages of `mailbox` among `uids` (in any order; missing ones left out).
    async fn messages(
        &mut self,
        mailbox: MailboxId,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageSummary>>;
    /// Inserts message rows, all with `modseq`.
    async fn insert_messages(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        rows: &[MessageRow],
    ) -> StoreResult<()>;
    /// Sets the flags of existing messages, giving each `modseq`.
    async fn update_flags(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        rows: &[(Uid, FlagSet)],
    ) -> StoreResult<()>;
    /// Deletes the messages among `uids` and records each as expunged at
    /// `modseq`; returns those that existed, with their blobs and sizes.
    async fn expunge_messages(
        &mut self,
        mailbox: MailboxId,
        modseq: ModSeq,
        uids: &[Uid],
    ) -> StoreResult<Vec<(Uid, BlobId, u32)>>;
    /// Adds `count` references to each new message's blob, storing its parsed
    /// metadata (and, where the backend keeps them with the metadata, its
    /// bytes) when the blob is new. Given in ascending blob order.
    async fn add_blobs(&mut self, blobs: &[(&PreparedMessage, i64)]) -> StoreResult<()>;
    /// Rewrites the header search fields (the `search` column, JSON of
    /// [`SearchFields`] without their text) of existing blobs, given in
    /// ascending blob order; a blob gone meanwhile is skipped. The model uses it
    /// to keep the SORT/THREAD keys of rows stored before they existed.
    async fn set_search_fields(&mut self, rows: &[(BlobId, String)]) -> StoreResult<()>;
    /// Changes reference counts of existing blobs (ascending blob order); a
    /// blob left with none becomes garbage for the backend to collect.
    async fn adjust_blob_refs(&mut self, deltas: &BTreeMap<BlobId, i64>) -> StoreResult<()>;
    /// Tells other nodes about the changes when this transaction commits (the
    /// shared backend's NOTIFY); the same process learns of them from the feed.
    fn announce(&mut self, _account: AccountId, _changes: &[Change]) {}
}

/// A storage backend of the mail model.
#[async_trait]
pub trait MailBackend: Send + Sync + 'static {
    /// Runs `job` in one transaction and commits it durably before returning
    /// its value; on an error from the job nothing of it stays.
    async fn transact<T: Send + 'static>(&self, job: TxJob<T>) -> StoreResult<T>;

    /// Where message bytes are kept.
    fn blobs(&self) -> &dyn BlobStore;
    /// The change feed of this process.
    fn feed(&self) -> &ChangeFeed;
    /// What was parsed from messages read lately.
    fn caches(&self) -> &ParsedCaches;
    /// The model's time: when messages are saved and expunged.
    fn clock(&self) -> &crate::Clock;

    // ---- reads (no rules in them) ----

    /// The account's mailboxes, by name.
    async fn mailboxes(&self, account: AccountId) -> StoreResult<Vec<Mailbox>>;
    async fn mailbox(&self, id: MailboxId) -> StoreResult<Mailbox>;
    /// The mailbox of `account` named exactly `name` (already canonical).
    async fn find_mailbox(&self, account: AccountId, name: &str) -> StoreResult<Option<Mailbox>>;
    /// Every message of the mailbox by UID; `NotFound` for no such mailbox.
    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageSummary>>;
    /// Messages with a MODSEQ above `since`, by UID.
    async fn changed_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> StoreResult<Vec<MessageSummary>>;
    /// UIDs expunged with a MODSEQ above `since`, ascending.
    async fn expunged_since(&self, mailbox: MailboxId, since: ModSeq) -> StoreResult<Vec<Uid>>;
    /// The structures stored with these blobs (same order; `None` for one gone).
    async fn structures(&self, blobs: Vec<BlobId>) -> StoreResult<Vec<Option<MessageStructure>>>;
    /// The search fields stored with these blobs; without `text`, the header
    /// fields only.
    async fn search_fields(
        &self,
        blobs: Vec<BlobId>,
        text: bool,
    ) -> StoreResult<Vec<Option<SearchFields>>>;
    /// See [`crate::MailStore::text_candidates`].
    async fn text_candidates(
        &self,
        _mailbox: MailboxId,
        _field: TextField,
        _needle: &str,
    ) -> StoreResult<Option<TextCandidates>> {
        Ok(None)
    }

    /// \Recent (IMAP4rev1): raises the mailbox's watermark to `up_to`, never
    /// lowering it, and returns the previous one — atomically, in one
    /// statement where the backend can. `NotFound` for no such mailbox.
    async fn raise_recent(&self, mailbox: MailboxId, up_to: Uid) -> StoreResult<Uid>;

    // ---- outside the model ----

    /// Runs `job` over a reader connection, outside any transaction (each
    /// statement sees what was committed before it): the directory's and the
    /// queue's reads (`crate::records`).
    async fn read_records<T: Send + 'static>(
        &self,
        cost: ReadCost,
        job: SqlJob<T>,
    ) -> StoreResult<T>;
    /// This node's name, on the queue entries its relay claims.
    fn node_name(&self) -> &str;

    /// See [`crate::MailStore::lock_maildrop`].
    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<MaildropLock>;
    /// Removes blobs no message refers to any more, when the backend leaves
    /// that for later.
    async fn collect_garbage(&self) -> StoreResult<()> {
        Ok(())
    }
}
