//! The IMAP command AST. Names follow RFC 9051 §6 and §9 (formal syntax) with Rust
//! casing. Extensions: RFC 4466/4731 (ESEARCH), 5182 (SEARCHRES), 5258/5819
//! (LIST-EXTENDED, LIST-STATUS), 6154 (SPECIAL-USE, CREATE-SPECIAL-USE), 3502
//! (MULTIAPPEND), 3516 (BINARY), 6855 (UTF8=ACCEPT), 7888 (LITERAL+/-), 2971 (ID),
//! 5161 (ENABLE), 4959 (SASL-IR), 7162 (CONDSTORE/QRESYNC parameters), 5256
//! (SORT, THREAD), 5957 (SORT=DISPLAY), 5267 (ESORT), 5032 (WITHIN).

/// One client command: tag and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    // Any state — RFC 9051 §6.1
    Capability,
    Noop,
    Logout,
    /// RFC 2971 ID: `None` for `ID NIL`.
    Id(Option<Vec<(String, Option<String>)>>),

    // Not authenticated — §6.2
    StartTls,
    /// `AUTHENTICATE mech [initial-response]` (SASL-IR, RFC 4959). The initial
    /// response is kept as sent (base64, or "=" for empty).
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },
    Login {
        username: String,
        password: String,
    },

    // Authenticated — §6.3
    Enable(Vec<String>),
    Select {
        mailbox: String,
        params: SelectParams,
    },
    Examine {
        mailbox: String,
        params: SelectParams,
    },
    /// CREATE with optional `(USE (\Drafts ...))` (RFC 6154 §3).
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    Subscribe(String),
    Unsubscribe(String),
    List(ListCommand),
    /// rev1 LSUB (RFC 3501 §6.3.9).
    Lsub {
        reference: String,
        pattern: String,
    },
    Namespace,
    /// GETQUOTA quota-root (RFC 9208 §4.2).
    GetQuota(String),
    /// GETQUOTAROOT mailbox (RFC 9208 §4.3).
    GetQuotaRoot(String),
    /// SETQUOTA quota-root (resource limit ...) (RFC 9208 §4.1).
    SetQuota {
        root: String,
        limits: Vec<(String, u64)>,
    },
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    /// APPEND, one or more messages (MULTIAPPEND, RFC 3502).
    Append {
        mailbox: String,
        messages: Vec<AppendMessage>,
    },
    Idle,
    /// NOTIFY (RFC 5465 §3): `None` for `NOTIFY NONE`.
    Notify(Option<NotifySet>),

    // Selected — §6.4
    /// rev1 CHECK.
    Check,
    Close,
    Unselect,
    /// CANCELUPDATE — RFC 5267 §4.3.5: the tags whose updates end.
    CancelUpdate(Vec<String>),
    Expunge,
    /// UID EXPUNGE (RFC 4315 / RFC 9051 §6.4.9).
    UidExpunge(SequenceSet),
    Search {
        uid: bool,
        /// `RETURN (...)` options (ESEARCH, RFC 4731; SAVE, RFC 5182). `None` when
        /// no RETURN was given (a rev1-style SEARCH).
        returns: Option<Vec<SearchReturn>>,
        charset: Option<String>,
        criteria: SearchKey,
    },
    /// SORT / UID SORT — RFC 5256 §3; `RETURN (...)` is ESORT (RFC 5267 §3).
    Sort {
        uid: bool,
        /// ESORT return options; `None` for a plain SORT (`* SORT` reply).
        returns: Option<Vec<SearchReturn>>,
        keys: Vec<SortCriterion>,
        charset: String,
        criteria: SearchKey,
    },
    /// THREAD / UID THREAD — RFC 5256 §3.
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        criteria: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: FetchItems,
        /// `(CHANGEDSINCE n)` (RFC 7162 §3.1.4.1), parsed for later use.
        changed_since: Option<u64>,
        /// `(VANISHED)` with UID FETCH (RFC 7162 §3.2.6).
        vanished: bool,
        /// `(PARTIAL range)`: only these positions of the messages the set
        /// and CHANGEDSINCE select (RFC 9394 §3.3).
        partial: Option<PartialRange>,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        /// `(UNCHANGEDSINCE n)` (RFC 7162 §3.1.3).
        unchanged_since: Option<u64>,
        action: StoreAction,
        silent: bool,
        flags: Vec<String>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
}

/// SELECT/EXAMINE parameters (RFC 4466 §2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    pub condstore: bool,
    /// QRESYNC (uidvalidity, modseq, known-uids, (seq-match)) — RFC 7162 §3.2.5.
    pub qresync: Option<QresyncParams>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QresyncParams {
    pub uid_validity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// LIST in all its forms — RFC 9051 §6.3.9, RFC 5258, RFC 5819, RFC 6154.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCommand {
    pub reference: String,
    /// One or more mailbox patterns (`%`, `*` wildcards).
    pub patterns: Vec<String>,
    /// Selection options: SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE.
    pub select: Vec<ListSelect>,
    /// Return options: SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS (items).
    pub returns: Vec<ListReturn>,
    /// True when the extended syntax was used (any selection/return option or a
    /// pattern list), which changes reply details (RFC 5258 §3).
    pub extended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSelect {
    Subscribed,
    Remote,
    RecursiveMatch,
    SpecialUse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    Status(Vec<StatusItem>),
}

/// STATUS data items — RFC 9051 §6.3.11, STATUS=SIZE (RFC 8438), CONDSTORE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    /// RFC 9208 §4.4: the size of the \Deleted messages (required with
    /// QUOTA=RES-STORAGE).
    DeletedStorage,
    Size,
    HighestModSeq,
}

/// `NOTIFY SET [STATUS] event-group…` — RFC 5465 §3.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySet {
    /// `STATUS`: a STATUS response now for each mailbox the groups name.
    pub status: bool,
    pub groups: Vec<NotifyGroup>,
}

/// `"(" filter-mailboxes SP events ")"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyGroup {
    pub filter: NotifyFilter,
    /// Empty for `NONE`.
    pub events: Vec<NotifyEvent>,
}

/// Which mailboxes a group covers — RFC 5465 §6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFilter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    /// The mailboxes and everything below them.
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

/// An event a client asks to hear of — RFC 5465 §5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// With the FETCH items to send for each new message (selected mailbox).
    MessageNew(Vec<FetchAttr>),
    MessageExpunge,
    FlagChange,
    MailboxName,
    SubscriptionChange,
    /// AnnotationChange, MailboxMetadataChange, ServerMetadataChange or an
    /// extension's: named, not supported.
    Other(String),
}

/// One message of an APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<String>,
    /// INTERNALDATE as Unix seconds (the date-time's zone applied).
    pub internal_date: Option<i64>,
    pub data: Vec<u8>,
    /// Sent as `~{n}` literal8 (BINARY, RFC 3516 §4.4).
    pub binary: bool,
    /// `CATENATE (...)` (RFC 4469): the message is put together from these
    /// parts; `data` is empty then.
    pub catenate: Option<Vec<CatenatePart>>,
}

/// One part of a CATENATE — RFC 4469 §5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatenatePart {
    /// `TEXT literal` (or literal8 with BINARY).
    Text { data: Vec<u8>, binary: bool },
    /// `URL "..."`: (part of) a message of the account, as an IMAP URL.
    Url(String),
}

/// An IMAP URL naming a message or part of one — RFC 5092 — as CATENATE
/// takes them: `imap://user@host/mailbox;UIDVALIDITY=n/;UID=n/;SECTION=s/;PARTIAL=o.l`
/// or the same from the first `/` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// The user of the `imap://user@host` form.
    pub user: Option<String>,
    /// The mailbox name, percent-decoded (otherwise as sent).
    pub mailbox: String,
    pub uid_validity: Option<u32>,
    pub uid: u32,
    pub section: Option<Section>,
    /// `;PARTIAL=offset[.length]`.
    pub partial: Option<(u32, Option<u32>)>,
}

/// A sequence set — RFC 9051 §9 `sequence-set`, or `$` (SEARCHRES, RFC 5182).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Vec<SeqRange>),
    /// `$`: the result saved by the last `SEARCH RETURN (SAVE)`.
    Saved,
}

/// `a:b`, `a`, `*`, `a:*` … Bounds as written; the session resolves `*` and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqNumber,
    pub end: SeqNumber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNumber {
    Value(u32),
    /// `*`: the largest number in use.
    Last,
}

/// What FETCH asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchItems {
    pub attrs: Vec<FetchAttr>,
}

/// FETCH data items — RFC 9051 §6.4.5; RFC822* for rev1 (RFC 3501 §6.4.5);
/// BINARY (RFC 3516); MODSEQ (RFC 7162).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    Flags,
    InternalDate,
    /// When the message was saved to its mailbox (RFC 8514 §4).
    SaveDate,
    Rfc822Size,
    Envelope,
    /// `BODY` without a section: the non-extensible body structure.
    Body,
    BodyStructure,
    Uid,
    ModSeq,
    /// `RFC822` = `BODY[]` but sets \Seen and answers as `RFC822`.
    Rfc822,
    /// `RFC822.HEADER` = `BODY.PEEK[HEADER]`, answered as `RFC822.HEADER`.
    Rfc822Header,
    /// `RFC822.TEXT` = `BODY[TEXT]`, answered as `RFC822.TEXT`.
    Rfc822Text,
    /// `BODY[section]<partial>` / `BODY.PEEK[...]`.
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` / `BINARY.PEEK[...]`.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize {
        part: Vec<u32>,
    },
}

/// `<offset.count>`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub offset: u32,
    pub count: u32,
}

/// A body section specifier — RFC 9051 §6.4.5: part numbers, then an optional text
/// specifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// `1.2.3`; empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// `HEADER.FIELDS (a b)` or `HEADER.FIELDS.NOT (a b)`; names as sent.
    HeaderFields {
        not: bool,
        fields: Vec<String>,
    },
    Text,
    /// `MIME`: only valid with a part number.
    Mime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAction {
    Replace,
    Add,
    Remove,
}

/// A calendar date as in SEARCH (RFC 9051 §9 `date`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// SEARCH criteria — RFC 9051 §6.4.4, plus MODSEQ (RFC 7162 §3.1.5). A list of
/// keys is an `And`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    Header(String, String),
    Keyword(String),
    Larger(u32),
    /// rev1: `NEW` = RECENT UNSEEN.
    New,
    Not(Box<SearchKey>),
    /// rev1: `OLD` = NOT RECENT.
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    /// rev1 only.
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u32),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    /// A bare sequence set (message numbers), or `$`.
    SequenceSet(SequenceSet),
    And(Vec<SearchKey>),
    ModSeq(u64),
    /// WITHIN (RFC 5032): INTERNALDATE more than this many seconds ago.
    Older(u32),
    /// WITHIN (RFC 5032): INTERNALDATE at most this many seconds ago.
    Younger(u32),
    /// RFC 8514 §5: the save date's date part before, on or since.
    SavedBefore(Date),
    SavedOn(Date),
    SavedSince(Date),
    /// RFC 8514 §5: every message, when the mailbox keeps save dates.
    SaveDateSupported,
}

/// One sort criterion — RFC 5256 §3 `sort-criterion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

/// RFC 5256 §3 sort keys; DISPLAYFROM/DISPLAYTO from RFC 5957.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// RFC 5256 §3 threading algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

/// ESEARCH return options — RFC 4731 §3.1, SAVE from RFC 5182; UPDATE,
/// CONTEXT and PARTIAL from RFC 5267 §4 (PARTIAL as RFC 9394 §3.1 widens it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
    /// Keep the result up to date with ADDTO/REMOVEFROM (RFC 5267 §4.3).
    Update,
    /// A hint that the result will be used again (RFC 5267 §4.2).
    Context,
    /// Only the messages at these positions of the result.
    Partial(PartialRange),
}

/// Positions in a search or sort result — RFC 5267 §4.4 and RFC 9394 §3.1:
/// `low:high` counted from the first message (1 is the first), or, when
/// `from_end`, `-low:-high` counted from the last (-1 is the last). Kept
/// with `low <= high` (`4:2` means `2:4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialRange {
    pub from_end: bool,
    pub low: u32,
    pub high: u32,
}

impl PartialRange {
    /// The zero-based indices it covers in a result of `len` messages (empty
    /// when it lies past the end).
    pub fn indices(&self, len: usize) -> std::ops::Range<usize> {
        let low = (self.low as usize).min(len + 1);
        let high = (self.high as usize).min(len);
        if low > high {
            return 0..0;
        }
        if self.from_end {
            len - high..len + 1 - low
        } else {
            low - 1..high
        }
    }
}

impl std::fmt::Display for PartialRange {
    /// As RFC 9394 writes it: `2:4`, `-1:-100`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.from_end { "-" } else { "" };
        write!(f, "{sign}{}:{sign}{}", self.low, self.high)
    }
}

impl SeqNumber {
    /// The number, with `*` standing for `largest` (RFC 9051 §9: `*` is the largest
    /// number in use; in an empty mailbox nothing matches it).
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNumber::Value(n) => n,
            SeqNumber::Last => largest,
        }
    }
}

impl SeqRange {
    /// Low and high ends, ordered (`4:2` is `2:4`).
    pub fn bounds(&self, largest: u32) -> (u32, u32) {
        let a = self.start.resolve(largest);
        let b = self.end.resolve(largest);
        (a.min(b), a.max(b))
    }

    pub fn contains(&self, n: u32, largest: u32) -> bool {
        let (lo, hi) = self.bounds(largest);
        lo <= n && n <= hi
    }
}

impl SequenceSet {
    /// Whether `n` is in the set; `largest` resolves `*`. `$` (Saved) is resolved by
    /// the session, so it never matches here.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        match self {
            SequenceSet::Ranges(r) => r.iter().any(|r| r.contains(n, largest)),
            SequenceSet::Saved => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_sets_resolve_star_and_reversed_ranges() {
        let set = SequenceSet::Ranges(vec![
            SeqRange {
                start: SeqNumber::Value(4),
                end: SeqNumber::Value(2),
            },
            SeqRange {
                start: SeqNumber::Value(9),
                end: SeqNumber::Last,
            },
        ]);
        assert!(set.contains(3, 20));
        assert!(!set.contains(5, 20));
        assert!(set.contains(20, 20));
        assert!(!set.contains(21, 20));
        // `*` in a range with a larger number: 30:* in a mailbox of 20 is 20:30.
        let r = SeqRange {
            start: SeqNumber::Value(30),
            end: SeqNumber::Last,
        };
        assert_eq!(r.bounds(20), (20, 30));
    }
}

#[cfg(test)]
mod partial_range_tests {
    use super::PartialRange;

    fn range(from_end: bool, low: u32, high: u32) -> PartialRange {
        PartialRange {
            from_end,
            low,
            high,
        }
    }

    #[test]
    fn indices_count_from_either_end() {
        // RFC 9394 §3.1: 1 is the first, -1 the last.
        assert_eq!(range(false, 2, 4).indices(5), 1..4);
        assert_eq!(range(false, 1, 6).indices(5), 0..5);
        assert_eq!(range(false, 6, 6).indices(5), 0..0);
        assert_eq!(range(true, 1, 2).indices(5), 3..5);
        assert_eq!(range(true, 1, 100).indices(5), 0..5);
        assert_eq!(range(true, 5, 9).indices(5), 0..1);
        assert_eq!(range(true, 6, 9).indices(5), 0..0);
        assert_eq!(range(false, 1, 1).indices(0), 0..0);
        assert_eq!(range(true, 1, 1).indices(0), 0..0);
    }

    #[test]
    fn shown_as_written() {
        assert_eq!(range(false, 2, 4).to_string(), "2:4");
        assert_eq!(range(true, 1, 100).to_string(), "-1:-100");
    }
}
