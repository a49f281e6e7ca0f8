//! casella-store: the mail model behind one trait, [`MailStore`].
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
//! Backends: [`sqlite::SqliteStore`] (the embedded default) and
//! [`postgres::PgStore`] (shared by many nodes). Every backend must pass
//! [`conformance::run_all`].

pub mod blob;
pub mod changes;
pub mod conformance;
mod error;
pub mod mailbox_rules;
mod parsed_cache;
pub mod postgres;
mod search_columns;
pub mod sqlite;
mod types;

pub use casella_mime::{MessageStructure, ParsedMessage, SearchFields};
pub use changes::Change;
pub use error::{StoreError, StoreResult};
pub use types::*;

/// How long a sign-out record is kept (a day): long enough for any node that
/// polls to see it, short enough that the table stays a few rows.
pub const SIGNOUT_KEPT_SECS: i64 = 86_400;

use async_trait::async_trait;
use tokio::sync::broadcast;

/// Held while a POP3 session owns an account's maildrop (RFC 1939 §8: exclusive
/// access). Dropping it releases the lock.
///
/// A lock in a shared database can be lost while its session runs (the node lost
/// the database for longer than the lock's lease). Such a session must ask
/// [`MaildropLock::check`] before each command and end when it fails, and make its
/// writes through [`MaildropLock::fenced_store`], which refuses them (`InUse`) in
/// their own transaction once the lock has passed to another session.
pub struct MaildropLock {
    hold: Box<dyn MaildropHold>,
}

/// A backend's maildrop lock; dropping it releases the lock.
pub trait MaildropHold: Send + Sync {
    /// `Ok` while the lock is held. Once lost it stays lost, and the error says
    /// why: `InUse` (another session has it now) or `Temporary` (it could not be
    /// kept, e.g. the database was out of reach for longer than the lease).
    fn check(&self) -> StoreResult<()> {
        Ok(())
    }
    /// The store to write through while holding the lock: each write checks in
    /// its own transaction that the lock is still held. `None`: the lock cannot
    /// be lost while held (one process), write to the store itself.
    fn fenced_store(&self) -> Option<std::sync::Arc<dyn MailStore>> {
        None
    }
}

/// A lock that cannot be lost while held: only its release on drop.
struct Unlosable {
    _release: Box<dyn Send + Sync>,
}

impl MaildropHold for Unlosable {}

impl MaildropLock {
    /// A lock that holds until dropped (one process); dropping `release` releases it.
    pub fn new(release: Box<dyn Send + Sync>) -> MaildropLock {
        MaildropLock {
            hold: Box::new(Unlosable { _release: release }),
        }
    }

    /// A lock that can be lost while held (a lease in a shared database).
    pub fn with_hold(hold: Box<dyn MaildropHold>) -> MaildropLock {
        MaildropLock { hold }
    }

    /// See [`MaildropHold::check`].
    pub fn check(&self) -> StoreResult<()> {
        self.hold.check()
    }

    /// See [`MaildropHold::fenced_store`].
    pub fn fenced_store(&self) -> Option<std::sync::Arc<dyn MailStore>> {
        self.hold.fenced_store()
    }
}

/// The storage API every protocol uses. All methods are safe to call concurrently
/// from many sessions (and, for shared backends, from many nodes).
#[async_trait]
pub trait MailStore: Send + Sync + 'static {
    // ---- accounts ----

    /// Creates the account and its default mailboxes ([`DEFAULT_MAILBOXES`]).
    /// `Exists` if the address is taken (addresses compare case-insensitively).
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account>;
    /// Removes the account with all its mailboxes and messages.
    async fn delete_account(&self, id: AccountId) -> StoreResult<()>;
    async fn account(&self, id: AccountId) -> StoreResult<Account>;
    async fn account_by_address(&self, address: &str) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// Writes the account's password hash, switches and settings.
    async fn update_account(&self, account: &Account) -> StoreResult<()>;
    /// A domain is local when some account has an address in it.
    async fn is_local_domain(&self, domain: &str) -> StoreResult<bool>;

    /// Adds an alias (another address the account owns: it receives mail and may
    /// send as it). `Exists` if the address is an account or alias already.
    async fn add_alias(&self, account: AccountId, alias: &str) -> StoreResult<()>;
    async fn remove_alias(&self, alias: &str) -> StoreResult<()>;
    async fn aliases(&self, account: AccountId) -> StoreResult<Vec<String>>;

    /// Records login attempts (oldest first) in one transaction, keeping the
    /// newest [`LOGIN_HISTORY`] per account.
    async fn record_logins(&self, logins: Vec<(AccountId, LoginRecord)>) -> StoreResult<()>;
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

    /// The newest logins of an account, newest first.
    async fn recent_logins(&self, account: AccountId) -> StoreResult<Vec<LoginRecord>>;

    /// Saves (or extends) a login block.
    async fn save_block(&self, block: StoredBlock) -> StoreResult<()>;
    /// The blocks that have not ended yet (ended ones are removed).
    async fn blocks(&self, now: i64) -> StoreResult<Vec<StoredBlock>>;
    /// Lifts a block; false when there was none.
    async fn delete_block(&self, key: &str) -> StoreResult<bool>;
    /// Records "sign out of all devices" for `address` at `at` (seconds since
    /// the epoch) and returns its sequence number; records older than a day are
    /// dropped on the way.
    async fn record_signout(&self, address: &str, at: i64) -> StoreResult<u64>;
    /// The sign-outs recorded at or after `since`, oldest first. Nodes poll it
    /// and remember the sequence numbers they have acted on.
    async fn signouts_since(&self, since: i64) -> StoreResult<Vec<Signout>>;
    /// The account an address belongs to: its own address or one of its aliases.
    async fn account_for_address(&self, address: &str) -> StoreResult<Option<Account>>;

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
    async fn set_subscribed(&self, id: MailboxId, subscribed: bool) -> StoreResult<()>;

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
    async fn structures(
        &self,
        blobs: &[BlobId],
    ) -> StoreResult<Vec<Option<std::sync::Arc<MessageStructure>>>>;
    /// The decoded fields SEARCH matches, parsed at delivery; as `structures`.
    /// Without `text`, `header_text` and `body_text` are left empty: the
    /// header fields alone are small and usually in the store's memory.
    async fn search_fields(
        &self,
        blobs: &[BlobId],
        text: bool,
    ) -> StoreResult<Vec<Option<std::sync::Arc<SearchFields>>>>;
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
    async fn read_headers(
        &self,
        blobs: &[BlobId],
    ) -> StoreResult<Vec<Option<std::sync::Arc<[u8]>>>> {
        Ok(self
            .read_blobs(blobs)
            .await?
            .into_iter()
            .map(|raw| raw.map(|r| std::sync::Arc::from(&r[..casella_mime::header_len(&r)])))
            .collect())
    }
    /// Changes flags of the given UIDs (missing UIDs are skipped) and returns the
    /// messages whose flags changed, each with its new MODSEQ.
    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &FlagSet,
    ) -> StoreResult<Vec<FlagUpdate>>;
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

    // ---- the outbound queue ----

    /// Puts a message on the outbound queue durably, due at once.
    async fn enqueue(&self, new: NewQueued) -> StoreResult<QueueId>;
    /// Claims up to `limit` entries due at `now`: they are returned and held for
    /// `lease` seconds so no other runner takes them meanwhile; the runner then
    /// records the outcome with `queue_update` or `queue_remove`, which ends the
    /// claim.
    async fn queue_claim(&self, now: i64, lease: i64, limit: usize) -> StoreResult<Vec<Queued>>;
    /// Takes back the claims this node holds (called when its relay starts, after a
    /// crash or restart, so claimed entries need not wait for their lease).
    async fn queue_release_claims(&self) -> StoreResult<()>;
    /// When the earliest unclaimed entry is due (Unix seconds), if any.
    async fn queue_next_attempt(&self) -> StoreResult<Option<i64>>;
    /// Every entry, oldest first.
    async fn queue_list(&self) -> StoreResult<Vec<Queued>>;
    async fn queue_message(&self, id: QueueId) -> StoreResult<Vec<u8>>;
    /// Writes recipients' states, attempts, next attempt and last error, and ends
    /// the claim: for the runner that claimed the entry, after its attempt.
    async fn queue_update(&self, entry: &Queued) -> StoreResult<()>;
    /// `queue retry`: makes entry `id` (every entry when `None`) due at `now`, in
    /// one conditional update that touches only the next attempt of entries no
    /// runner holds. A claimed entry (its lease not yet run out) is left alone and
    /// counted in `in_delivery`: the attempt in progress is the retry, and
    /// rewriting it would end the claim and let another runner send it again.
    /// `NotFound` when `id` names no entry.
    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> StoreResult<QueueRetried>;
    async fn queue_remove(&self, id: QueueId) -> StoreResult<()>;

    // ---- sessions ----

    /// Takes the account's POP3 maildrop lock, or `InUse` when another session holds it.
    async fn lock_maildrop(&self, account: AccountId) -> StoreResult<MaildropLock>;
    /// The change feed of the account's mailboxes.
    fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Change>;

    // ---- conveniences built on the above ----

    /// Appends one message durably and returns its UID.
    async fn append(&self, mailbox: MailboxId, message: NewMessage) -> StoreResult<Appended> {
        let mut v = self.append_batch(mailbox, vec![message]).await?;
        v.pop()
            .ok_or_else(|| StoreError::Internal("append returned nothing".into()))
    }

    /// Local delivery: append to the account's INBOX.
    async fn deliver(&self, account: AccountId, raw: Vec<u8>) -> StoreResult<Appended> {
        let inbox = self
            .mailbox_by_name(account, "INBOX")
            .await?
            .ok_or_else(|| StoreError::NotFound("INBOX".into()))?;
        self.append(
            inbox.id,
            NewMessage {
                raw,
                internal_date: None,
                flags: FlagSet::new(),
            },
        )
        .await
    }
}

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
