//! The mail model's API: mailboxes and messages, as every protocol sees them.
//! Written once, for every backend, in [`crate::model`].

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::changes::Change;
use crate::error::{StoreError, StoreResult};
use crate::maildrop::MaildropLock;
use crate::types::*;
use crate::{MessageStructure, SearchFields};

/// Mailboxes and messages. All methods are safe to call concurrently from many
/// sessions (and, for shared backends, from many nodes).
#[async_trait]
pub trait MailStore: Send + Sync + 'static {
    /// From a text index: the messages (by blob) whose `field` contains
    /// `needle` (case-insensitively, Unicode simple case folding), and those of
    /// `mailbox` the index has not read yet, which the caller checks itself. `None` when this
    /// store has no index for such a search; the caller then looks at every
    /// message.
    async fn text_candidates(
        &self,
        _mailbox: MailboxId,
        _field: TextField,
        _needle: &str,
    ) -> StoreResult<Option<TextCandidates>> {
        Ok(None)
    }

    // ---- mailboxes ----

    async fn list_mailboxes(&self, account: AccountId) -> StoreResult<Vec<Mailbox>>;
    async fn mailbox(&self, id: MailboxId) -> StoreResult<Mailbox>;
    /// Looks a mailbox up by name; `INBOX` matches case-insensitively.
    async fn mailbox_by_name(&self, account: AccountId, name: &str)
    -> StoreResult<Option<Mailbox>>;
    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> StoreResult<Mailbox>;
    /// Deletes the mailbox and its messages. INBOX cannot be deleted.
    async fn delete_mailbox(&self, id: MailboxId) -> StoreResult<()>;
    /// Renames the mailbox. The new name gets a fresh UIDVALIDITY only if it is
    /// reused later; the mailbox keeps its own.
    async fn rename_mailbox(&self, id: MailboxId, new_name: &str) -> StoreResult<()>;

    // ---- subscriptions (RFC 9051 §6.3.7: a list of names, not a mark on a
    // mailbox; names without a mailbox may be on it, and stay when a mailbox
    // is deleted) ----

    /// The account's subscribed names, in order.
    async fn subscriptions(&self, account: AccountId) -> StoreResult<Vec<String>>;
    /// Adds `name` to the subscription list or takes it off (either is a
    /// no-op when already so).
    async fn set_subscribed(
        &self,
        account: AccountId,
        name: &str,
        subscribed: bool,
    ) -> StoreResult<()>;

    // ---- messages ----

    /// Appends messages durably, all or nothing (MULTIAPPEND), in order.
    async fn append_batch(
        &self,
        mailbox: MailboxId,
        messages: Vec<NewMessage>,
    ) -> StoreResult<Vec<Appended>>;
    /// Messages whose MODSEQ is greater than `since` (new or changed), by UID.
    async fn changed_since(
        &self,
        mailbox: MailboxId,
        since: ModSeq,
    ) -> StoreResult<Vec<MessageSummary>>;
    /// \Recent (IMAP4rev1): the first session to claim a message sees it as recent.
    /// Raises the mailbox's watermark to `up_to` and returns the previous one; the
    /// caller's recent messages are those with UIDs above it, up to `up_to`.
    async fn claim_recent(&self, mailbox: MailboxId, up_to: Uid) -> StoreResult<Uid>;
    /// Moves messages (RFC 6851) in one transaction: copies them into `to` and
    /// expunges them from `from`. Returns (source UID, new UID) pairs.
    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>>;
    /// All messages of the mailbox in ascending UID order.
    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageSummary>>;
    /// The structure parsed at delivery (ENVELOPE, BODYSTRUCTURE, part offsets)
    /// of the messages with these bytes, in one store round trip (none when all
    /// are in the store's memory); `None` for a blob that is gone (its messages
    /// were expunged meanwhile). Same order as `blobs`.
    async fn structures(&self, blobs: &[BlobId])
    -> StoreResult<Vec<Option<Arc<MessageStructure>>>>;
    /// The decoded fields SEARCH matches, parsed at delivery; as `structures`.
    /// Without `text`, `header_text` and `body_text` are left empty: the
    /// header fields alone are small and usually in the store's memory.
    async fn search_fields(
        &self,
        blobs: &[BlobId],
        text: bool,
    ) -> StoreResult<Vec<Option<Arc<SearchFields>>>>;
    /// The header fields (as `search_fields` without `text`) with the keys
    /// SORT and THREAD compare: [`SearchFields::sort`] is `Some` in every
    /// answer. Read from what was parsed at delivery; a row stored before the
    /// keys existed has its header parsed once and the keys written back.
    async fn sort_fields(&self, blobs: &[BlobId]) -> StoreResult<Vec<Option<Arc<SearchFields>>>>;
    /// The message bytes exactly as stored.
    async fn read_blob(&self, blob: &BlobId) -> StoreResult<Vec<u8>>;
    /// Several messages' bytes (same order; `None` for one that is gone or
    /// unreadable), in one trip where the backend can.
    async fn read_blobs(&self, blobs: &[BlobId]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(blobs.len());
        for b in blobs {
            out.push(self.read_blob(b).await.ok());
        }
        Ok(out)
    }
    /// The header block of each message (up to and including the blank line
    /// that ends it), for FETCH of headers; as `read_blobs`. Backends may keep
    /// recent ones in memory (blobs never change).
    async fn read_headers(&self, blobs: &[BlobId]) -> StoreResult<Vec<Option<Arc<[u8]>>>> {
        Ok(self
            .read_blobs(blobs)
            .await?
            .into_iter()
            .map(|raw| raw.map(|r| std::sync::Arc::from(&r[..casella_mime::header_len(&r)])))
            .collect())
    }
    /// Changes flags of the given UIDs (missing UIDs are skipped), in one
    /// transaction. With `unchanged_since` (RFC 7162 §3.1.3, STORE
    /// UNCHANGEDSINCE), a message whose MODSEQ is above it is left alone and
    /// listed in `modified`; the test and the change are atomic. Changed
    /// messages share the command's one new MODSEQ.
    async fn store_flags_if(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &FlagSet,
        unchanged_since: Option<ModSeq>,
    ) -> StoreResult<FlagChanges>;
    /// Removes the messages, all or nothing, even across mailboxes of the account.
    /// Returns the messages that existed and are now gone.
    async fn expunge(
        &self,
        account: AccountId,
        messages: &[MessageRef],
    ) -> StoreResult<Vec<MessageRef>>;
    /// Copies messages into another mailbox (flags and INTERNALDATE kept); returns
    /// (source UID, new UID) pairs in source order.
    async fn copy(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> StoreResult<Vec<(Uid, Uid)>>;
    /// UIDs expunged from the mailbox with a MODSEQ greater than `since`.
    async fn expunged_since(&self, mailbox: MailboxId, since: ModSeq) -> StoreResult<Vec<Uid>>;

    // ---- sessions ----

    /// Takes the account's POP3 maildrop lock, or `InUse` when another session holds it.
    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<MaildropLock>;
    /// The change feed of the account's mailboxes.
    fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Change>;

    /// Local delivery of one message to several accounts' INBOXes (the local
    /// recipients of one SMTP/LMTP transaction), all or nothing: one store
    /// transaction, the bytes stored once. Same order as `accounts`; an account
    /// named twice gets one copy. With `queued`, the message for the remote
    /// recipients goes on the outbound queue in the same transaction, so a
    /// failure leaves neither and the client's retry duplicates nothing.
    async fn deliver_and_queue(
        &self,
        accounts: &[AccountId],
        raw: Vec<u8>,
        queued: Option<NewQueued>,
    ) -> StoreResult<Delivered>;

    // ---- conveniences built on the above ----

    /// `deliver_and_queue` without a queue entry.
    async fn deliver_to_all(
        &self,
        accounts: &[AccountId],
        raw: Vec<u8>,
    ) -> StoreResult<Vec<Appended>> {
        Ok(self.deliver_and_queue(accounts, raw, None).await?.appended)
    }

    /// Changes flags unconditionally; returns the messages whose flags changed.
    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &FlagSet,
    ) -> StoreResult<Vec<FlagUpdate>> {
        Ok(self
            .store_flags_if(mailbox, uids, op, flags, None)
            .await?
            .updates)
    }

    /// Appends one message durably and returns its UID.
    async fn append(&self, mailbox: MailboxId, message: NewMessage) -> StoreResult<Appended> {
        let mut v = self.append_batch(mailbox, vec![message]).await?;
        v.pop()
            .ok_or_else(|| StoreError::Internal("append returned nothing".into()))
    }

    /// Local delivery: append to the account's INBOX.
    async fn deliver(&self, account: AccountId, raw: Vec<u8>) -> StoreResult<Appended> {
        self.deliver_to_all(&[account], raw)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Internal("delivery returned nothing".into()))
    }
}
