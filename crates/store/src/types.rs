//! The mail model's vocabulary: newtypes for the RFC's numbers and the records the
//! store hands out. Names follow RFC 9051 with Rust casing.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An account's row id in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(pub i64);

/// A mailbox's row id in the store (stable across renames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MailboxId(pub i64);

/// A message UID — RFC 9051 §2.3.1.1: non-zero, strictly ascending within a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Uid(pub u32);

/// RFC 9051 §2.3.1.1 UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UidValidity(pub u32);

/// RFC 7162 §3.1.1 mod-sequence: strictly increasing per mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModSeq(pub u64);

/// Content address of a message's bytes: lower-case hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobId(pub String);

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Special-use roles — RFC 6154 §2. casella creates one mailbox per role for each
/// account, with Exchange's folder names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
}

impl SpecialUse {
    /// The attribute as written in LIST replies, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }

    /// Parses an attribute such as `\Sent` (case-insensitive).
    pub fn from_attribute(s: &str) -> Option<SpecialUse> {
        let s = s.strip_prefix('\\')?;
        Some(match s.to_ascii_lowercase().as_str() {
            "all" => SpecialUse::All,
            "archive" => SpecialUse::Archive,
            "drafts" => SpecialUse::Drafts,
            "flagged" => SpecialUse::Flagged,
            "junk" => SpecialUse::Junk,
            "sent" => SpecialUse::Sent,
            "trash" => SpecialUse::Trash,
            _ => return None,
        })
    }
}

/// The folders every new account gets, Exchange's names with their roles.
pub const DEFAULT_MAILBOXES: &[(&str, Option<SpecialUse>)] = &[
    ("INBOX", None),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Sent Items", Some(SpecialUse::Sent)),
    ("Deleted Items", Some(SpecialUse::Trash)),
    ("Junk Email", Some(SpecialUse::Junk)),
    ("Archive", Some(SpecialUse::Archive)),
];

/// What POP3's DELE does for an account (the users' options issue lets users pick).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PopDeleteAction {
    /// RFC 1939: the message is removed for good at QUIT.
    #[default]
    Expunge,
    /// Moved to the account's Trash (Deleted Items) at QUIT.
    MoveToTrash,
    /// Kept, and only hidden from POP3: marked with [`POP3_DELETED_KEYWORD`] at
    /// QUIT (as Dovecot's pop3_deleted_flag), still there over IMAP.
    HideFromPop,
}

/// The keyword that hides a message from POP3 (`pop-dele = hide-from-pop`).
pub const POP3_DELETED_KEYWORD: &str = "$POP3Deleted";

/// Per-account POP3 options. Stored with the account so the POP3 service can honour
/// them without any schema change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PopOptions {
    /// Mailbox names POP3 serves, in order. INBOX by default.
    pub folders: Vec<String>,
    /// Set \Seen on messages retrieved with RETR.
    pub mark_read: bool,
    pub delete_action: PopDeleteAction,
}

impl Default for PopOptions {
    fn default() -> Self {
        PopOptions {
            folders: vec!["INBOX".to_string()],
            mark_read: false,
            delete_action: PopDeleteAction::Expunge,
        }
    }
}

/// How long one account's Deleted Items and Junk keep messages, in days from
/// when each was saved there (`0` keeps them); `None` follows the retention
/// settings of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionDays {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_items: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub junk: Option<u32>,
}

impl RetentionDays {
    pub fn is_default(&self) -> bool {
        *self == RetentionDays::default()
    }
}

/// Exchange's three storage quota levels and a message count limit. Each
/// `None`: not set here (the server's level applies, or none); `Some(0)`:
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaLimits {
    /// IssueWarningQuota: a warning message is delivered when usage passes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<u64>,
    /// ProhibitSendQuota: submission is refused above it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<u64>,
    /// ProhibitSendReceiveQuota: delivery, APPEND and COPY are refused too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive: Option<u64>,
    /// The most messages the mailboxes may hold (IMAP's MESSAGE resource).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
}

impl QuotaLimits {
    pub fn is_default(&self) -> bool {
        *self == QuotaLimits::default()
    }
}

/// Per-account settings kept as one document, so later issues add fields with a
/// serde default instead of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountSettings {
    pub pop: PopOptions,
    /// Keep a copy of every submitted message in Sent Items (off by default: most
    /// clients save their own copy over IMAP).
    pub save_sent_copy: bool,
    /// The site whose back ends serve this mailbox (a name in the front ends'
    /// `[sites]`); `None`: the front ends' `default-backend`. Only front ends read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Overrides the protocols' `message-retrieval-format` for this account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval_format: Option<casella_mime::RetrievalFormat>,
    /// Overrides the protocols' `suppress-read-receipt` for this account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppress_read_receipt: Option<bool>,
    /// Overrides the retention section's days for Deleted Items and Junk.
    #[serde(skip_serializing_if = "RetentionDays::is_default")]
    pub retention: RetentionDays,
    /// Overrides the server's quota levels for this account.
    #[serde(skip_serializing_if = "QuotaLimits::is_default")]
    pub quota: QuotaLimits,
    /// When the last "mailbox almost full" warning was delivered (Unix
    /// seconds): one a week at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_warned_at: Option<i64>,
    /// Every login refused (POP3, IMAP, SMTP and the web pages); mail is still
    /// delivered. Set with `casella account set ADDRESS enabled=off`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// SCRAM-SHA-256 keys derived from the password (RFC 5802 §3), so SCRAM logins
    /// never need the clear password; `None` until the password is next set or used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scram: Option<ScramSecret>,
    /// The user's app passwords (hashes only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub app_passwords: Vec<AppPassword>,
    /// The account's web-session generation: a web session stays valid only
    /// while it equals the value read when the session started. A password
    /// change, `enabled=off` and "sign out of all devices" raise it (see
    /// [`AccountSettings::end_web_sessions`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub session_generation: u64,
    /// How many times the account was saved: `update_account` writes only
    /// when the stored value is still the one this copy was read with, and
    /// raises it. Two read-modify-writes that overlap cannot undo each other
    /// (a stale copy cannot restore an old password, a lifted disable or an
    /// old session generation); the later one fails with a temporary error
    /// and is retried from a fresh read.
    #[serde(skip_serializing_if = "is_zero")]
    pub revision: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// StoredKey and ServerKey of SCRAM-SHA-256 with their salt (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramSecret {
    pub salt: String,
    pub iterations: u32,
    pub stored_key: String,
    pub server_key: String,
}

/// An app password: made by the server, shown once, limited to some protocols.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPassword {
    pub id: String,
    pub name: String,
    /// SHA-256 (hex) of the password without spaces, lower-case.
    pub hash: String,
    /// `imap`, `pop`, `submission`, `web`.
    pub protocols: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created: i64,
}

impl AccountSettings {
    /// The settings as `update_account` stores them: the next revision,
    /// serialised.
    pub fn next_revision_json(&self) -> Result<String, serde_json::Error> {
        let mut next = self.clone();
        next.revision = self.revision.wrapping_add(1);
        serde_json::to_string(&next)
    }

    /// Ends every web session of the account (they check the generation at
    /// each request); the caller saves the account.
    pub fn end_web_sessions(&mut self) {
        self.session_generation = self.session_generation.wrapping_add(1);
    }

    /// How this account's messages are shown to POP3/IMAP clients: the protocol's
    /// setting, with this account's overrides (Set-CASMailbox).
    pub fn presentation(
        &self,
        protocol_default: casella_mime::Presentation,
    ) -> casella_mime::Presentation {
        casella_mime::Presentation {
            format: self.retrieval_format.unwrap_or(protocol_default.format),
            suppress_read_receipt: self
                .suppress_read_receipt
                .unwrap_or(protocol_default.suppress_read_receipt),
        }
    }
}

/// One login attempt on an account, for the user's "recent activity" list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRecord {
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// `IMAP`, `POP3`, `SMTP`, `Web`.
    pub protocol: String,
    /// The client's IP address.
    pub remote: String,
    pub success: bool,
    /// The client's name, when it sent one (IMAP ID, RFC 2971).
    pub client: Option<String>,
}

/// A login block as the store shares it between nodes (see the directory's
/// throttle): `key` is `source IP`, `account ADDRESS` or `pair IP ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlock {
    pub key: String,
    /// Seconds since the Unix epoch when it ends.
    pub until: i64,
    pub reason: String,
}

/// "Sign out of all devices" for one account, recorded in the store so that
/// every node (and the server, when the CLI recorded it) ends the account's open
/// sessions: see [`crate::MailStore::record_signout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signout {
    /// Increases with every record (never reused).
    pub seq: u64,
    /// The account's address (lower-case).
    pub address: String,
    /// Seconds since the Unix epoch, by the recorder's clock.
    pub at: i64,
}

/// A text field SEARCH matches on (RFC 9051 §6.4.4), for a store's text index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    From,
    To,
    Cc,
    Bcc,
    Subject,
    /// BODY: the decoded text parts.
    Body,
    /// TEXT: the header fields or the body.
    Text,
}

/// A text index's answer for one search in one mailbox, by message content
/// (the caller knows which of its messages hold which blob, so the index need
/// not look the messages up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextCandidates {
    /// Indexed blobs that contain the text: exactly those (blobs of other
    /// mailboxes may be among them).
    pub matched: Vec<BlobId>,
    /// Blobs of the mailbox the index has not read yet: they may contain it or not.
    pub unindexed: Vec<BlobId>,
}

/// How many logins are kept per account.
pub const LOGIN_HISTORY: usize = 50;

/// An account as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// Lower-case `local@domain`.
    pub address: String,
    /// PHC string (argon2id). Never logged.
    pub password_hash: String,
    /// Administrators are barred from POP3 and IMAP (Exchange policy).
    pub is_admin: bool,
    pub pop_enabled: bool,
    pub imap_enabled: bool,
    pub submission_enabled: bool,
    pub settings: AccountSettings,
}

impl Account {
    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

/// What `create_account` needs.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub address: String,
    pub password_hash: String,
    pub is_admin: bool,
}

/// A mailbox (folder) with its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub id: MailboxId,
    pub account: AccountId,
    /// Full hierarchical name with `/` as separator; INBOX is always `INBOX`.
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub uid_validity: UidValidity,
    pub uid_next: Uid,
    pub highest_modseq: ModSeq,
    /// Messages with a UID above this are \Recent for the next session that claims
    /// them (see `MailStore::claim_recent`).
    pub recent_watermark: Uid,
    /// The sum of its messages' sizes and their number, kept by every write
    /// (quota usage without a scan).
    pub total_size: u64,
    pub message_count: u64,
}

/// A message flag — RFC 9051 §2.3.2. `\Recent` is per session and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// A keyword such as `$Forwarded` or `$Junk`, kept as the client wrote it.
    Keyword(String),
}

impl Flag {
    /// Parses `\Seen`, `$Label`, … System flags are case-insensitive.
    pub fn parse(s: &str) -> Option<Flag> {
        if let Some(sys) = s.strip_prefix('\\') {
            return Some(match sys.to_ascii_lowercase().as_str() {
                "seen" => Flag::Seen,
                "answered" => Flag::Answered,
                "flagged" => Flag::Flagged,
                "deleted" => Flag::Deleted,
                "draft" => Flag::Draft,
                _ => return None,
            });
        }
        if s.is_empty() {
            return None;
        }
        Some(Flag::Keyword(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Keyword(k) => k,
        }
    }
}

/// A message's flags and keywords.
pub type FlagSet = BTreeSet<Flag>;

/// Encodes a flag set the way the store keeps it: space-separated.
pub fn flags_to_string(flags: &FlagSet) -> String {
    let mut out = String::new();
    for f in flags {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(f.as_str());
    }
    out
}

/// Decodes what `flags_to_string` wrote.
pub fn flags_from_string(s: &str) -> FlagSet {
    s.split(' ').filter_map(Flag::parse).collect()
}

/// One message of a mailbox as listings show it: enough for POP3 and IMAP FLAGS,
/// RFC822.SIZE, INTERNALDATE and UID without reading the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    pub uid: Uid,
    pub modseq: ModSeq,
    pub size: u32,
    /// INTERNALDATE, seconds since the Unix epoch.
    pub internal_date: i64,
    /// When the message was saved to this mailbox (APPEND, delivery, COPY or
    /// MOVE; RFC 8514 SAVEDATE), seconds since the Unix epoch.
    pub save_date: i64,
    pub flags: FlagSet,
    pub blob: BlobId,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The message bytes. Bare LF line ends are stored as CRLF, unless
    /// `binary`.
    pub raw: Vec<u8>,
    /// INTERNALDATE; `None` means now.
    pub internal_date: Option<i64>,
    pub flags: FlagSet,
    /// The bytes are stored exactly as given, bare LFs included: a message
    /// sent as binary (IMAP's literal8, RFC 3516 §4.4), whose binary parts
    /// are octets, not lines.
    pub binary: bool,
}

/// What an append created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub mailbox: MailboxId,
    pub uid_validity: UidValidity,
    pub uid: Uid,
    pub modseq: ModSeq,
    pub size: u32,
}

/// What a local delivery stored: a copy per account asked for (in that
/// order), and the queue entry for the remote recipients if there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub appended: Vec<Appended>,
    pub queued: Option<QueueId>,
}

/// A message named by mailbox and UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageRef {
    pub mailbox: MailboxId,
    pub uid: Uid,
}

/// How `store_flags` changes flags — RFC 9051 §6.4.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Replace,
    Add,
    Remove,
}

/// A flag change that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    pub uid: Uid,
    pub flags: FlagSet,
    pub modseq: ModSeq,
}

/// What a STORE did: the flag changes made, and the messages left alone
/// because they changed after the client's UNCHANGEDSINCE (RFC 7162 §3.1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagChanges {
    pub updates: Vec<FlagUpdate>,
    /// UIDs whose MODSEQ was above UNCHANGEDSINCE: not changed. Ascending.
    pub modified: Vec<Uid>,
}

/// An outbound queue entry's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub i64);

/// Where one recipient of a queued message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecipientState {
    Pending,
    Delivered,
    /// Permanently failed (a 5xx, or the queue lifetime ran out).
    Failed,
}

/// One recipient of a queued message, with its DSN parameters (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    pub address: String,
    /// ORCPT, as given.
    pub orcpt: Option<String>,
    /// NOTIFY, as given (e.g. "FAILURE,DELAY" or "NEVER").
    pub notify: Option<String>,
    pub state: RecipientState,
    /// The last reply or error for this recipient.
    pub last_reply: Option<String>,
}

/// A message to put on the outbound queue.
#[derive(Debug, Clone)]
pub struct NewQueued {
    /// The reverse path (MAIL FROM), empty for bounces.
    pub sender: String,
    /// The account that submitted it (bounces go to its INBOX).
    pub account: Option<AccountId>,
    pub recipients: Vec<QueuedRecipient>,
    pub message: Vec<u8>,
    /// DSN ENVID and RET (RFC 3461 §4).
    pub envid: Option<String>,
    pub ret: Option<String>,
    /// When to give up (Unix seconds).
    pub expires: i64,
}

/// A message on the outbound queue (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: QueueId,
    pub sender: String,
    pub account: Option<AccountId>,
    pub recipients: Vec<QueuedRecipient>,
    pub size: u64,
    pub envid: Option<String>,
    pub ret: Option<String>,
    pub created: i64,
    pub expires: i64,
    pub next_attempt: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// While a runner holds the entry for a delivery attempt: when its claim
    /// lapses (Unix seconds). `None` when no attempt is in progress.
    pub claimed_until: Option<i64>,
}

/// What `queue retry` did (see [`crate::MailStore::queue_retry`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueRetried {
    /// Entries now due.
    pub due: u64,
    /// Entries left alone because a delivery attempt holds them right now.
    pub in_delivery: u64,
}
