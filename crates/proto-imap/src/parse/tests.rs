//! Parser tests: a known-answer table (RFC examples among them), refusals with
//! their reasons, every-prefix and mutation robustness, and pseudo-random garbage.

use super::*;
use crate::types::{
    AppendMessage, CommandBody as B, Date, FetchAttr as F, FetchItems, ListCommand, ListReturn,
    ListSelect, NotifyEvent, NotifyFilter, NotifyGroup, NotifySet, Partial, PartialRange,
    QresyncParams, SearchKey as K, SearchReturn, Section, SectionText, SelectParams, SeqNumber,
    SeqRange, SequenceSet, SortCriterion, SortKey, StatusItem, StoreAction, ThreadAlgorithm,
};

// ---- helpers ----------------------------------------------------------------

fn v(n: u32) -> SeqNumber {
    SeqNumber::Value(n)
}

const STAR: SeqNumber = SeqNumber::Last;

fn set(ranges: &[(SeqNumber, SeqNumber)]) -> SequenceSet {
    SequenceSet::Ranges(
        ranges
            .iter()
            .map(|&(start, end)| SeqRange { start, end })
            .collect(),
    )
}

fn one(n: u32) -> SequenceSet {
    set(&[(v(n), v(n))])
}

fn range(a: u32, b: u32) -> SequenceSet {
    set(&[(v(a), v(b))])
}

fn s(x: &str) -> String {
    x.to_owned()
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| s(x)).collect()
}

fn select(mailbox: &str, params: SelectParams) -> B {
    B::Select {
        mailbox: s(mailbox),
        params,
    }
}

fn list(reference: &str, patterns: &[&str]) -> ListCommand {
    ListCommand {
        reference: s(reference),
        patterns: strings(patterns),
        ..ListCommand::default()
    }
}

fn fetch(uid: bool, set: SequenceSet, attrs: Vec<F>) -> B {
    B::Fetch {
        uid,
        set,
        items: FetchItems { attrs },
        changed_since: None,
        vanished: false,
        partial: None,
    }
}

fn body(peek: bool, part: &[u32], text: Option<SectionText>, partial: Option<(u32, u32)>) -> F {
    F::BodySection {
        peek,
        section: Section {
            part: part.to_vec(),
            text,
        },
        partial: partial.map(|(offset, count)| Partial { offset, count }),
    }
}

fn search(criteria: K) -> B {
    B::Search {
        uid: false,
        returns: None,
        charset: None,
        criteria,
    }
}

fn store(set: SequenceSet, action: StoreAction, silent: bool, flags: &[&str]) -> B {
    B::Store {
        uid: false,
        set,
        unchanged_since: None,
        action,
        silent,
        flags: strings(flags),
    }
}

fn msg(flags: &[&str], internal_date: Option<i64>, data: &[u8], binary: bool) -> AppendMessage {
    AppendMessage {
        flags: strings(flags),
        internal_date,
        data: data.to_vec(),
        binary,
        catenate: None,
    }
}

fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

fn not(k: K) -> K {
    K::Not(Box::new(k))
}

fn or(a: K, b: K) -> K {
    K::Or(Box::new(a), Box::new(b))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Known answers: the command after `TAG SP`, and what it parses to.
fn cases() -> Vec<(&'static [u8], B)> {
    use StatusItem::*;
    vec![
        // Any state.
        (b"CAPABILITY", B::Capability),
        (b"capability", B::Capability),
        (b"NOOP", B::Noop),
        (b"LOGOUT", B::Logout),
        (b"ID NIL", B::Id(None)),
        (b"ID ()", B::Id(Some(vec![]))),
        // RFC 2971 §4.
        (
            b"ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \"Pink Floyd Music Limited\")",
            B::Id(Some(vec![
                (s("name"), Some(s("sodr"))),
                (s("version"), Some(s("19.34"))),
                (s("vendor"), Some(s("Pink Floyd Music Limited"))),
            ])),
        ),
        (
            b"ID (\"name\" NIL \"os\" {5}\r\nLinux)",
            B::Id(Some(vec![(s("name"), None), (s("os"), Some(s("Linux")))])),
        ),
        // Not authenticated.
        (b"STARTTLS", B::StartTls),
        (
            b"AUTHENTICATE PLAIN",
            B::Authenticate {
                mechanism: s("PLAIN"),
                initial: None,
            },
        ),
        (
            b"authenticate scram-sha-256",
            B::Authenticate {
                mechanism: s("SCRAM-SHA-256"),
                initial: None,
            },
        ),
        // RFC 4959 §3.
        (
            b"AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
            B::Authenticate {
                mechanism: s("PLAIN"),
                initial: Some(s("dGVzdAB0ZXN0AHRlc3Q=")),
            },
        ),
        (
            b"AUTHENTICATE EXTERNAL =",
            B::Authenticate {
                mechanism: s("EXTERNAL"),
                initial: Some(s("=")),
            },
        ),
        (
            b"LOGIN SMITH SESAME",
            B::Login {
                username: s("SMITH"),
                password: s("SESAME"),
            },
        ),
        (
            b"LOGIN \"fred foobar\" \"fat\\\"cat\\\\\"",
            B::Login {
                username: s("fred foobar"),
                password: s("fat\"cat\\"),
            },
        ),
        (
            b"LOGIN {5}\r\nalice {3+}\r\npwd",
            B::Login {
                username: s("alice"),
                password: s("pwd"),
            },
        ),
        (
            b"LOGIN ~{5}\r\nalice \"p\xc3\xa4ss\"",
            B::Login {
                username: s("alice"),
                password: s("p\u{e4}ss"),
            },
        ),
        (
            b"LOGIN {0}\r\n {2}\r\n{}",
            B::Login {
                username: s(""),
                password: s("{}"),
            },
        ),
        (
            b"LOGIN a]b \"\"",
            B::Login {
                username: s("a]b"),
                password: s(""),
            },
        ),
        // Authenticated.
        (b"ENABLE CONDSTORE", B::Enable(strings(&["CONDSTORE"]))),
        (
            b"ENABLE QRESYNC utf8=accept",
            B::Enable(strings(&["QRESYNC", "utf8=accept"])),
        ),
        (b"SELECT INBOX", select("INBOX", SelectParams::default())),
        (b"select inbox", select("INBOX", SelectParams::default())),
        (b"SELECT \"InBoX\"", select("INBOX", SelectParams::default())),
        (b"SELECT {5}\r\niNbOx", select("INBOX", SelectParams::default())),
        (b"SELECT inbox.Sent", select("inbox.Sent", SelectParams::default())),
        (b"SELECT inboxes", select("inboxes", SelectParams::default())),
        (
            b"SELECT \"&ZeVnLIqe-\"",
            select("&ZeVnLIqe-", SelectParams::default()),
        ),
        (
            b"SELECT \"\xe5\x8f\xb0\xe5\x8c\x97\"",
            select("\u{53f0}\u{5317}", SelectParams::default()),
        ),
        // RFC 7162 §3.1.8.
        (
            b"SELECT INBOX (CONDSTORE)",
            select(
                "INBOX",
                SelectParams {
                    condstore: true,
                    qresync: None,
                },
            ),
        ),
        // RFC 7162 §3.2.5.1.
        (
            b"SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
            select(
                "INBOX",
                SelectParams {
                    condstore: false,
                    qresync: Some(QresyncParams {
                        uid_validity: 67_890_007,
                        modseq: 20_050_715_194_045_000,
                        known_uids: Some(set(&[
                            (v(41), v(41)),
                            (v(43), v(211)),
                            (v(214), v(541)),
                        ])),
                        seq_match: None,
                    }),
                },
            ),
        ),
        (
            b"SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
            select(
                "INBOX",
                SelectParams {
                    condstore: false,
                    qresync: Some(QresyncParams {
                        uid_validity: 67_890_007,
                        modseq: 90_060_115_194_045_000,
                        known_uids: Some(range(1, 29_997)),
                        seq_match: Some((
                            set(&[
                                (v(5000), v(5000)),
                                (v(7500), v(7500)),
                                (v(9000), v(9000)),
                                (v(9990), v(9999)),
                            ]),
                            set(&[
                                15000, 22500, 27000, 29970, 29973, 29976, 29979, 29982, 29985,
                                29988, 29991, 29994, 29997,
                            ]
                            .map(|n| (v(n), v(n)))),
                        )),
                    }),
                },
            ),
        ),
        (
            b"EXAMINE blurdybloop (QRESYNC (1 0) CONDSTORE)",
            B::Examine {
                mailbox: s("blurdybloop"),
                params: SelectParams {
                    condstore: true,
                    qresync: Some(QresyncParams {
                        uid_validity: 1,
                        modseq: 0,
                        known_uids: None,
                        seq_match: None,
                    }),
                },
            },
        ),
        (
            b"examine x (qresync (5 7 (1:2 10:11)))",
            B::Examine {
                mailbox: s("x"),
                params: SelectParams {
                    condstore: false,
                    qresync: Some(QresyncParams {
                        uid_validity: 5,
                        modseq: 7,
                        known_uids: None,
                        seq_match: Some((range(1, 2), range(10, 11))),
                    }),
                },
            },
        ),
        (
            b"CREATE owatagusiam/",
            B::Create {
                mailbox: s("owatagusiam/"),
                special_use: vec![],
            },
        ),
        // RFC 6154 §5.2.
        (
            b"CREATE MySpecialArchive (USE (\\Archive))",
            B::Create {
                mailbox: s("MySpecialArchive"),
                special_use: strings(&["\\Archive"]),
            },
        ),
        (
            b"create X (use (\\drafts \\SENT \\Important))",
            B::Create {
                mailbox: s("X"),
                special_use: strings(&["\\Drafts", "\\Sent", "\\Important"]),
            },
        ),
        (
            b"CREATE X (USE ())",
            B::Create {
                mailbox: s("X"),
                special_use: vec![],
            },
        ),
        (b"DELETE blurdybloop", B::Delete(s("blurdybloop"))),
        (
            b"RENAME blurdybloop sarasota",
            B::Rename {
                from: s("blurdybloop"),
                to: s("sarasota"),
            },
        ),
        (
            b"RENAME Inbox {4}\r\nOld ",
            B::Rename {
                from: s("INBOX"),
                to: s("Old "),
            },
        ),
        (b"SUBSCRIBE #news.comp.mail.mime", B::Subscribe(s("#news.comp.mail.mime"))),
        (b"UNSUBSCRIBE \"a b\"", B::Unsubscribe(s("a b"))),
        // RFC 9051 §6.3.9.
        (b"LIST \"\" \"\"", B::List(list("", &[""]))),
        (
            b"LIST #news.comp.mail.misc \"\"",
            B::List(list("#news.comp.mail.misc", &[""])),
        ),
        (b"LIST ~/Mail/ %", B::List(list("~/Mail/", &["%"]))),
        (b"LIST \"\" *", B::List(list("", &["*"]))),
        (b"LIST \"\" foo/%/b*r]", B::List(list("", &["foo/%/b*r]"]))),
        (b"LIST \"\" {3}\r\nfo%", B::List(list("", &["fo%"]))),
        (b"LIST inbox %", B::List(list("inbox", &["%"]))),
        // RFC 5258 §5.
        (
            b"LIST (SUBSCRIBED) \"\" \"*\"",
            B::List(ListCommand {
                select: vec![ListSelect::Subscribed],
                extended: true,
                ..list("", &["*"])
            }),
        ),
        (
            b"LIST () \"\" \"%\" RETURN (CHILDREN)",
            B::List(ListCommand {
                returns: vec![ListReturn::Children],
                extended: true,
                ..list("", &["%"])
            }),
        ),
        (
            b"LIST (REMOTE SUBSCRIBED) \"/\" \"*\"",
            B::List(ListCommand {
                select: vec![ListSelect::Remote, ListSelect::Subscribed],
                extended: true,
                ..list("/", &["*"])
            }),
        ),
        (
            b"LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)",
            B::List(ListCommand {
                select: vec![ListSelect::Subscribed, ListSelect::RecursiveMatch],
                returns: vec![ListReturn::Children],
                extended: true,
                ..list("", &["%"])
            }),
        ),
        (
            b"LIST \"\" (\"Foo/*\" Bar/% {3}\r\nBaz)",
            B::List(ListCommand {
                extended: true,
                ..list("", &["Foo/*", "Bar/%", "Baz"])
            }),
        ),
        (
            b"LIST \"\" % RETURN ()",
            B::List(ListCommand {
                extended: true,
                ..list("", &["%"])
            }),
        ),
        // RFC 5819 §3.
        (
            b"LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))",
            B::List(ListCommand {
                returns: vec![ListReturn::Status(vec![Messages, Unseen])],
                extended: true,
                ..list("", &["%"])
            }),
        ),
        // RFC 6154 §5.1.
        (
            b"list (special-use recursivematch) \"\" \"*\" return (subscribed special-use status (size))",
            B::List(ListCommand {
                select: vec![ListSelect::SpecialUse, ListSelect::RecursiveMatch],
                returns: vec![
                    ListReturn::Subscribed,
                    ListReturn::SpecialUse,
                    ListReturn::Status(vec![Size]),
                ],
                extended: true,
                ..list("", &["*"])
            }),
        ),
        (
            b"LSUB #news. news.comp.mail.*",
            B::Lsub {
                reference: s("#news."),
                pattern: s("news.comp.mail.*"),
            },
        ),
        (
            b"LSUB \"\" \"\"",
            B::Lsub {
                reference: s(""),
                pattern: s(""),
            },
        ),
        (b"NAMESPACE", B::Namespace),
        (b"GETQUOTA \"\"", B::GetQuota(String::new())),
        (b"GETQUOTAROOT INBOX", B::GetQuotaRoot("INBOX".into())),
        (
            b"SETQUOTA \"\" (STORAGE 512 MESSAGE 1000)",
            B::SetQuota {
                root: String::new(),
                limits: vec![("STORAGE".into(), 512), ("MESSAGE".into(), 1000)],
            },
        ),
        (
            b"STATUS blurdybloop (UIDNEXT MESSAGES)",
            B::Status {
                mailbox: s("blurdybloop"),
                items: vec![UidNext, Messages],
            },
        ),
        (
            b"status inbox (messages recent uidnext uidvalidity unseen deleted size highestmodseq)",
            B::Status {
                mailbox: s("INBOX"),
                items: vec![
                    Messages,
                    Recent,
                    UidNext,
                    UidValidity,
                    Unseen,
                    Deleted,
                    Size,
                    HighestModSeq,
                ],
            },
        ),
        // NOTIFY (RFC 5465 §3.1's examples).
        (b"NOTIFY NONE", B::Notify(None)),
        (
            b"notify set status (selected (MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge)) (subtree Lists (MessageNew MessageExpunge)) (mailboxes (a \"b c\") none) (personal (MailboxName SubscriptionChange AnnotationChange))",
            B::Notify(Some(NotifySet {
                status: true,
                groups: vec![
                    NotifyGroup {
                        filter: NotifyFilter::Selected,
                        events: vec![
                            NotifyEvent::MessageNew(vec![
                                F::Uid,
                                F::BodySection {
                                    peek: true,
                                    section: Section {
                                        part: vec![],
                                        text: Some(SectionText::HeaderFields {
                                            not: false,
                                            fields: strings(&["from", "to", "subject"]),
                                        }),
                                    },
                                    partial: None,
                                },
                            ]),
                            NotifyEvent::MessageExpunge,
                        ],
                    },
                    NotifyGroup {
                        filter: NotifyFilter::Subtree(strings(&["Lists"])),
                        events: vec![
                            NotifyEvent::MessageNew(vec![]),
                            NotifyEvent::MessageExpunge,
                        ],
                    },
                    NotifyGroup {
                        filter: NotifyFilter::Mailboxes(strings(&["a", "b c"])),
                        events: vec![],
                    },
                    NotifyGroup {
                        filter: NotifyFilter::Personal,
                        events: vec![
                            NotifyEvent::MailboxName,
                            NotifyEvent::SubscriptionChange,
                            NotifyEvent::Other("AnnotationChange".into()),
                        ],
                    },
                ],
            })),
        ),
        // CATENATE (RFC 4469 §5): text literals and URLs, several messages.
        (
            b"APPEND x (\\Seen) CATENATE (URL \"/INBOX;UIDVALIDITY=3/;UID=2/;SECTION=HEADER\" TEXT {3}\r\nabc TEXT ~{1}\r\n\0) CATENATE (URL /a/;uid=1)",
            B::Append {
                mailbox: "x".into(),
                messages: vec![
                    AppendMessage {
                        flags: strings(&["\\Seen"]),
                        internal_date: None,
                        data: Vec::new(),
                        binary: false,
                        catenate: Some(vec![
                            CatenatePart::Url("/INBOX;UIDVALIDITY=3/;UID=2/;SECTION=HEADER".into()),
                            CatenatePart::Text {
                                data: b"abc".to_vec(),
                                binary: false,
                            },
                            CatenatePart::Text {
                                data: b"\0".to_vec(),
                                binary: true,
                            },
                        ]),
                    },
                    AppendMessage {
                        flags: Vec::new(),
                        internal_date: None,
                        data: Vec::new(),
                        binary: false,
                        catenate: Some(vec![CatenatePart::Url("/a/;uid=1".into())]),
                    },
                ],
            },
        ),
        (
            b"APPEND saved-messages (\\Seen) {11}\r\nHello\r\nBody",
            B::Append {
                mailbox: s("saved-messages"),
                messages: vec![msg(&["\\Seen"], None, b"Hello\r\nBody", false)],
            },
        ),
        (
            b"APPEND inbox {0}\r\n",
            B::Append {
                mailbox: s("INBOX"),
                messages: vec![msg(&[], None, b"", false)],
            },
        ),
        (
            b"APPEND x \"17-Jul-1996 02:44:25 -0700\" {2+}\r\nhi",
            B::Append {
                mailbox: s("x"),
                messages: vec![msg(&[], Some(837_596_665), b"hi", false)],
            },
        ),
        (
            b"APPEND x (\\seen $Forwarded) \"29-feb-2024 23:59:59 +0530\" ~{3}\r\na\0b",
            B::Append {
                mailbox: s("x"),
                messages: vec![msg(
                    &["\\Seen", "$Forwarded"],
                    Some(1_709_231_399),
                    b"a\0b",
                    true,
                )],
            },
        ),
        (
            b"APPEND x \"01-Jan-1970 00:00:00 +0000\" {1}\r\nz",
            B::Append {
                mailbox: s("x"),
                messages: vec![msg(&[], Some(0), b"z", false)],
            },
        ),
        (
            b"APPEND x \"5-Jan-2020 12:00:00 +0000\" {1}\r\nz",
            B::Append {
                mailbox: s("x"),
                messages: vec![msg(&[], Some(1_578_225_600), b"z", false)],
            },
        ),
        // RFC 3502 §6 (MULTIAPPEND), with a space-padded day.
        (
            b"APPEND saved-messages (\\Seen) {3}\r\none (\\Seen \\Draft) \" 1-Jul-2002 22:35:00 -0700\" {3}\r\ntwo {5+}\r\nthree",
            B::Append {
                mailbox: s("saved-messages"),
                messages: vec![
                    msg(&["\\Seen"], None, b"one", false),
                    msg(
                        &["\\Seen", "\\Draft"],
                        Some(1_025_588_100),
                        b"two",
                        false,
                    ),
                    msg(&[], None, b"three", false),
                ],
            },
        ),
        // RFC 6855 §4.
        (
            b"APPEND x () UTF8 (~{4}\r\n\xc3\xa9t\xc3)",
            B::Append {
                mailbox: s("x"),
                messages: vec![msg(&[], None, b"\xc3\xa9t\xc3", true)],
            },
        ),
        (b"IDLE", B::Idle),
        // Selected.
        (b"CHECK", B::Check),
        (b"CLOSE", B::Close),
        (b"UNSELECT", B::Unselect),
        (b"EXPUNGE", B::Expunge),
        (b"UID EXPUNGE 3000:3002", B::UidExpunge(range(3000, 3002))),
        (b"uid expunge $", B::UidExpunge(SequenceSet::Saved)),
        // Sequence sets.
        (
            b"FETCH 1,2:4,*,5:*,*:7,4294967295 UID",
            fetch(
                false,
                set(&[
                    (v(1), v(1)),
                    (v(2), v(4)),
                    (STAR, STAR),
                    (v(5), STAR),
                    (STAR, v(7)),
                    (v(u32::MAX), v(u32::MAX)),
                ]),
                vec![F::Uid],
            ),
        ),
        (b"FETCH $ FLAGS", fetch(false, SequenceSet::Saved, vec![F::Flags])),
        // FETCH macros and attributes.
        (
            b"FETCH 1 ALL",
            fetch(
                false,
                one(1),
                vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope],
            ),
        ),
        (
            b"fetch 1 fast",
            fetch(false, one(1), vec![F::Flags, F::InternalDate, F::Rfc822Size]),
        ),
        (
            b"FETCH 1 FULL",
            fetch(
                false,
                one(1),
                vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope, F::Body],
            ),
        ),
        (
            b"FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
            fetch(
                false,
                range(2, 4),
                vec![
                    F::Flags,
                    body(
                        false,
                        &[],
                        Some(SectionText::HeaderFields {
                            not: false,
                            fields: strings(&["DATE", "FROM"]),
                        }),
                        None,
                    ),
                ],
            ),
        ),
        (
            b"FETCH 1 (ENVELOPE FLAGS INTERNALDATE SAVEDATE RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE BODY BODYSTRUCTURE UID MODSEQ)",
            fetch(
                false,
                one(1),
                vec![
                    F::Envelope,
                    F::Flags,
                    F::InternalDate,
                    F::SaveDate,
                    F::Rfc822,
                    F::Rfc822Header,
                    F::Rfc822Text,
                    F::Rfc822Size,
                    F::Body,
                    F::BodyStructure,
                    F::Uid,
                    F::ModSeq,
                ],
            ),
        ),
        (
            b"FETCH 1 BODY[]",
            fetch(false, one(1), vec![body(false, &[], None, None)]),
        ),
        (
            b"FETCH 1 body.peek[]<0.2048>",
            fetch(false, one(1), vec![body(true, &[], None, Some((0, 2048)))]),
        ),
        (
            b"FETCH 1 (BODY[HEADER] BODY.PEEK[TEXT] BODY[1] BODY[1.2.3] BODY[1.MIME] BODY[2.HEADER] BODY[3.1.TEXT])",
            fetch(
                false,
                one(1),
                vec![
                    body(false, &[], Some(SectionText::Header), None),
                    body(true, &[], Some(SectionText::Text), None),
                    body(false, &[1], None, None),
                    body(false, &[1, 2, 3], None, None),
                    body(false, &[1], Some(SectionText::Mime), None),
                    body(false, &[2], Some(SectionText::Header), None),
                    body(false, &[3, 1], Some(SectionText::Text), None),
                ],
            ),
        ),
        (
            b"FETCH 1 BODY.PEEK[4.2.HEADER.FIELDS.NOT (Received \"X-Spam\" {4}\r\nDKIM)]<10.4294967296>",
            fetch(
                false,
                one(1),
                vec![body(
                    true,
                    &[4, 2],
                    Some(SectionText::HeaderFields {
                        not: true,
                        fields: strings(&["Received", "X-Spam", "DKIM"]),
                    }),
                    Some((10, u32::MAX)),
                )],
            ),
        ),
        // RFC 3516 §4.2.
        (
            b"FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.100> BINARY.SIZE[3] binary.size[])",
            fetch(
                false,
                one(1),
                vec![
                    F::Binary {
                        peek: false,
                        part: vec![],
                        partial: None,
                    },
                    F::Binary {
                        peek: true,
                        part: vec![1, 2],
                        partial: Some(Partial {
                            offset: 0,
                            count: 100,
                        }),
                    },
                    F::BinarySize { part: vec![3] },
                    F::BinarySize { part: vec![] },
                ],
            ),
        ),
        (
            b"UID FETCH 4827313:4828442 FLAGS",
            fetch(true, range(4_827_313, 4_828_442), vec![F::Flags]),
        ),
        // RFC 7162 §3.1.4.1 and §3.2.6.
        (
            b"FETCH 1:* (UID FLAGS) (CHANGEDSINCE 12345)",
            B::Fetch {
                uid: false,
                set: set(&[(v(1), STAR)]),
                items: FetchItems {
                    attrs: vec![F::Uid, F::Flags],
                },
                changed_since: Some(12345),
                vanished: false,
                partial: None,
            },
        ),
        (
            b"UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
            B::Fetch {
                uid: true,
                set: range(300, 500),
                items: FetchItems {
                    attrs: vec![F::Flags],
                },
                changed_since: Some(12345),
                vanished: true,
                partial: None,
            },
        ),
        // RFC 9394 §3.3.
        (
            b"UID FETCH 1:* (FLAGS) (PARTIAL -1:-30 CHANGEDSINCE 7)",
            B::Fetch {
                uid: true,
                set: set(&[(v(1), STAR)]),
                items: FetchItems {
                    attrs: vec![F::Flags],
                },
                changed_since: Some(7),
                vanished: false,
                partial: Some(PartialRange {
                    from_end: true,
                    low: 1,
                    high: 30,
                }),
            },
        ),
        // RFC 5267 §4.2–4.4 and RFC 9394 §3.1: UPDATE, CONTEXT, PARTIAL.
        (
            b"SEARCH RETURN (UPDATE COUNT CONTEXT PARTIAL 4:2) ALL",
            B::Search {
                uid: false,
                returns: Some(vec![
                    SearchReturn::Update,
                    SearchReturn::Count,
                    SearchReturn::Context,
                    SearchReturn::Partial(PartialRange {
                        from_end: false,
                        low: 2,
                        high: 4,
                    }),
                ]),
                charset: None,
                criteria: K::All,
            },
        ),
        (
            b"UID SEARCH RETURN (PARTIAL -100:-1) UNDELETED",
            B::Search {
                uid: true,
                returns: Some(vec![SearchReturn::Partial(PartialRange {
                    from_end: true,
                    low: 1,
                    high: 100,
                })]),
                charset: None,
                criteria: K::Undeleted,
            },
        ),
        (
            b"CANCELUPDATE \"A1\" \"b 2\"",
            B::CancelUpdate(vec![s("A1"), s("b 2")]),
        ),
        // STORE.
        (
            b"STORE 2:4 +FLAGS (\\Deleted)",
            store(range(2, 4), StoreAction::Add, false, &["\\Deleted"]),
        ),
        (
            b"store 1 flags \\seen \\ANSWERED \\flagged \\draft \\deleted $Junk",
            store(
                one(1),
                StoreAction::Replace,
                false,
                &[
                    "\\Seen",
                    "\\Answered",
                    "\\Flagged",
                    "\\Draft",
                    "\\Deleted",
                    "$Junk",
                ],
            ),
        ),
        (
            b"STORE 1 -FLAGS.SILENT ()",
            store(one(1), StoreAction::Remove, true, &[]),
        ),
        // What Dovecot's doveadm sync sends (issue 18): extra spaces inside.
        (
            b"STORE 1 +FLAGS ( Custom-Kw)",
            store(one(1), StoreAction::Add, false, &["Custom-Kw"]),
        ),
        (
            b"STORE 1 +FLAGS ( a  \\seen )",
            store(one(1), StoreAction::Add, false, &["a", "\\Seen"]),
        ),
        (
            b"STORE 1 FLAGS ( )",
            store(one(1), StoreAction::Replace, false, &[]),
        ),
        (
            b"STORE $ +flags.silent (foo[bar \\X-Ext)",
            store(
                SequenceSet::Saved,
                StoreAction::Add,
                true,
                &["foo[bar", "\\X-Ext"],
            ),
        ),
        // RFC 7162 §3.1.3.
        (
            b"UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)",
            B::Store {
                uid: true,
                set: set(&[(v(6), v(6)), (v(4), v(4)), (v(8), v(8))]),
                unchanged_since: Some(12_121_230_045),
                action: StoreAction::Add,
                silent: true,
                flags: strings(&["\\Deleted"]),
            },
        ),
        (
            b"STORE 7 (UNCHANGEDSINCE 0) FLAGS.SILENT \\Seen",
            B::Store {
                uid: false,
                set: one(7),
                unchanged_since: Some(0),
                action: StoreAction::Replace,
                silent: true,
                flags: strings(&["\\Seen"]),
            },
        ),
        // COPY / MOVE.
        (
            b"COPY 2:4 MEHITABEL",
            B::Copy {
                uid: false,
                set: range(2, 4),
                mailbox: s("MEHITABEL"),
            },
        ),
        (
            b"UID COPY 1:* inbox",
            B::Copy {
                uid: true,
                set: set(&[(v(1), STAR)]),
                mailbox: s("INBOX"),
            },
        ),
        (
            b"MOVE 1 \"Deleted Items\"",
            B::Move {
                uid: false,
                set: one(1),
                mailbox: s("Deleted Items"),
            },
        ),
        (
            b"UID MOVE 42:69 {3}\r\nfoo",
            B::Move {
                uid: true,
                set: range(42, 69),
                mailbox: s("foo"),
            },
        ),
        // SEARCH — RFC 9051 §6.4.4 examples.
        (
            b"SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
            search(K::And(vec![
                K::Flagged,
                K::Since(date(1994, 2, 1)),
                not(K::From(s("Smith"))),
            ])),
        ),
        (
            b"SEARCH OR BODY \"hello world\" SUBJECT hi",
            search(or(K::Body(s("hello world")), K::Subject(s("hi")))),
        ),
        (
            b"SEARCH TEXT \"string not in mailbox\"",
            search(K::Text(s("string not in mailbox"))),
        ),
        (
            b"SEARCH CHARSET UTF-8 TEXT {10}\r\n\xd1\x82\xd0\xb5\xd0\xba\xd1\x81\xd1\x82",
            B::Search {
                uid: false,
                returns: None,
                charset: Some(s("UTF-8")),
                criteria: K::Text(s("\u{442}\u{435}\u{43a}\u{441}\u{442}")),
            },
        ),
        (
            b"SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
            B::Search {
                uid: false,
                returns: Some(vec![SearchReturn::Min, SearchReturn::Count]),
                charset: None,
                criteria: K::And(vec![
                    K::Flagged,
                    K::Since(date(1994, 2, 1)),
                    not(K::From(s("Smith"))),
                ]),
            },
        ),
        (
            b"SEARCH RETURN () FLAGGED",
            B::Search {
                uid: false,
                returns: Some(vec![SearchReturn::All]),
                charset: None,
                criteria: K::Flagged,
            },
        ),
        (
            b"UID SEARCH RETURN (save min max all count) CHARSET \"us-ascii\" UID 1:100 $",
            B::Search {
                uid: true,
                returns: Some(vec![
                    SearchReturn::Save,
                    SearchReturn::Min,
                    SearchReturn::Max,
                    SearchReturn::All,
                    SearchReturn::Count,
                ]),
                charset: Some(s("us-ascii")),
                criteria: K::And(vec![
                    K::Uid(range(1, 100)),
                    K::SequenceSet(SequenceSet::Saved),
                ]),
            },
        ),
        (
            b"SEARCH ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN",
            search(K::And(vec![
                K::All,
                K::Answered,
                K::Deleted,
                K::Draft,
                K::Flagged,
                K::New,
                K::Old,
                K::Recent,
                K::Seen,
                K::Unanswered,
                K::Undeleted,
                K::Undraft,
                K::Unflagged,
                K::Unseen,
            ])),
        ),
        (
            b"search bcc a cc \"b\" from {1}\r\nc to d subject e text f body g header X-Mailer \"\"",
            search(K::And(vec![
                K::Bcc(s("a")),
                K::Cc(s("b")),
                K::From(s("c")),
                K::To(s("d")),
                K::Subject(s("e")),
                K::Text(s("f")),
                K::Body(s("g")),
                K::Header(s("X-Mailer"), s("")),
            ])),
        ),
        (
            b"SEARCH BEFORE 1-Jan-2000 ON \"29-Feb-2000\" SINCE 31-dec-1999 SENTBEFORE 02-Mar-2001 SENTON 15-JUN-2010 SENTSINCE \"7-Jul-2007\"",
            search(K::And(vec![
                K::Before(date(2000, 1, 1)),
                K::On(date(2000, 2, 29)),
                K::Since(date(1999, 12, 31)),
                K::SentBefore(date(2001, 3, 2)),
                K::SentOn(date(2010, 6, 15)),
                K::SentSince(date(2007, 7, 7)),
            ])),
        ),
        (
            b"SEARCH SAVEDBEFORE 1-Jan-2000 SAVEDON 29-Feb-2000 SAVEDSINCE 31-Dec-1999 SAVEDATESUPPORTED",
            search(K::And(vec![
                K::SavedBefore(date(2000, 1, 1)),
                K::SavedOn(date(2000, 2, 29)),
                K::SavedSince(date(1999, 12, 31)),
                K::SaveDateSupported,
            ])),
        ),
        (
            b"SEARCH KEYWORD $Forwarded UNKEYWORD Junk LARGER 100 SMALLER 99999999999",
            search(K::And(vec![
                K::Keyword(s("$Forwarded")),
                K::Unkeyword(s("Junk")),
                K::Larger(100),
                K::Smaller(u32::MAX),
            ])),
        ),
        (
            b"SEARCH 1:5,7 (SEEN FLAGGED) (DELETED) NOT (OR 1 2) $ *",
            search(K::And(vec![
                K::SequenceSet(set(&[(v(1), v(5)), (v(7), v(7))])),
                K::And(vec![K::Seen, K::Flagged]),
                K::Deleted,
                not(or(
                    K::SequenceSet(one(1)),
                    K::SequenceSet(one(2)),
                )),
                K::SequenceSet(SequenceSet::Saved),
                K::SequenceSet(set(&[(STAR, STAR)])),
            ])),
        ),
        (
            b"SEARCH OR (FROM a TO b) OR SEEN (NOT ANSWERED)",
            search(or(
                K::And(vec![K::From(s("a")), K::To(s("b"))]),
                or(K::Seen, not(K::Answered)),
            )),
        ),
        // RFC 7162 §3.1.5.
        (
            b"SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338",
            search(K::ModSeq(620_162_338)),
        ),
        (
            b"SEARCH OR NOT MODSEQ 720162338 LARGER 50000",
            search(or(not(K::ModSeq(720_162_338)), K::Larger(50000))),
        ),
        // A charset other than UTF-8 decodes lossily; the session refuses it.
        (
            b"SEARCH CHARSET ISO-8859-1 SUBJECT \"caf\xe9\"",
            B::Search {
                uid: false,
                returns: None,
                charset: Some(s("ISO-8859-1")),
                criteria: K::Subject(s("caf\u{fffd}")),
            },
        ),
        // RFC 5256 §3 examples.
        (
            b"SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994",
            B::Sort {
                uid: false,
                returns: None,
                keys: vec![SortCriterion {
                    reverse: false,
                    key: SortKey::Subject,
                }],
                charset: s("UTF-8"),
                criteria: K::Since(date(1994, 2, 1)),
            },
        ),
        (
            b"UID SORT (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk",
            B::Sort {
                uid: true,
                returns: None,
                keys: vec![SortCriterion {
                    reverse: true,
                    key: SortKey::Date,
                }],
                charset: s("UTF-8"),
                criteria: K::And(vec![K::Undeleted, K::Unkeyword(s("$Junk"))]),
            },
        ),
        (
            b"sort (arrival cc date from size subject to displayfrom reverse displayto) \"us-ascii\" all",
            B::Sort {
                uid: false,
                returns: None,
                keys: [
                    SortKey::Arrival,
                    SortKey::Cc,
                    SortKey::Date,
                    SortKey::From,
                    SortKey::Size,
                    SortKey::Subject,
                    SortKey::To,
                    SortKey::DisplayFrom,
                    SortKey::DisplayTo,
                ]
                .into_iter()
                .map(|key| SortCriterion {
                    reverse: key == SortKey::DisplayTo,
                    key,
                })
                .collect(),
                charset: s("us-ascii"),
                criteria: K::All,
            },
        ),
        // RFC 5267 §3 (ESORT).
        (
            b"UID SORT RETURN (MIN MAX) (DATE) UTF-8 UNDELETED",
            B::Sort {
                uid: true,
                returns: Some(vec![SearchReturn::Min, SearchReturn::Max]),
                keys: vec![SortCriterion {
                    reverse: false,
                    key: SortKey::Date,
                }],
                charset: s("UTF-8"),
                criteria: K::Undeleted,
            },
        ),
        (
            b"THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000",
            B::Thread {
                uid: false,
                algorithm: ThreadAlgorithm::OrderedSubject,
                charset: s("UTF-8"),
                criteria: K::Since(date(2000, 3, 5)),
            },
        ),
        (
            b"UID THREAD REFERENCES US-ASCII ALL",
            B::Thread {
                uid: true,
                algorithm: ThreadAlgorithm::References,
                charset: s("US-ASCII"),
                criteria: K::All,
            },
        ),
        // RFC 5032 §4 (WITHIN).
        (
            b"SEARCH UNSEEN YOUNGER 259200",
            search(K::And(vec![K::Unseen, K::Younger(259_200)])),
        ),
        (b"SEARCH OLDER 1", search(K::Older(1))),
    ]
}

// ---- known answers -----------------------------------------------------------

#[test]
fn known_answers() {
    let mut failures = Vec::new();
    for (input, want) in cases() {
        let mut line = b"A001 ".to_vec();
        line.extend_from_slice(input);
        let want = Command {
            tag: s("A001"),
            body: want,
        };
        match parse_command(&line) {
            Ok(got) if got == want => {}
            got => failures.push(format!("{}\n  got  {got:?}\n  want {want:?}", text(&line))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tags() {
    for tag in [
        "a",
        "A001",
        "x.y-z_1",
        "a]",
        "~tag",
        "$1!#&'-./:;<=>?@[^_`|}~",
    ] {
        let cmd = parse_command(format!("{tag} NOOP").as_bytes()).unwrap();
        assert_eq!(cmd.tag, tag);
    }
    for input in [
        &b""[..],
        b" NOOP",
        b"+ NOOP",
        b"a+ NOOP",
        b"* NOOP",
        b"a% NOOP",
        b"a( NOOP",
        b"a\"b NOOP",
        b"a{1}\r\nx NOOP",
        b"a\\b NOOP",
        b"\xc3\xa9 NOOP",
        b"a\x01 NOOP",
    ] {
        let e = parse_command(input).unwrap_err();
        assert_eq!(e.tag, None, "{}", text(input));
    }
}

// ---- refusals ------------------------------------------------------------------

/// Inputs (after `t SP`) that must be refused, and the reason given.
const REFUSALS: &[(&[u8], &str)] = &[
    (b"", "Missing command"),
    (b"FOO", "Unknown command FOO"),
    (b"(", "Invalid command"),
    (b"NOOP x", "Unexpected data after end of command"),
    (b"NOOP ", "Unexpected data after end of command"),
    (b"CAPABILITY(", "Unexpected data after end of command"),
    (b" NOOP", "Invalid command"),
    (b"ID", "Missing ID parameters"),
    (b"ID (\"a\")", "Expected space before ID field value"),
    (b"ID (\"a\" \"b\"", "Expected ')' after ID parameters"),
    (b"AUTHENTICATE", "Missing authentication mechanism"),
    (b"AUTHENTICATE PLAIN a=b", "Invalid initial response"),
    (b"AUTHENTICATE PLAIN a!", "Invalid initial response"),
    (b"AUTHENTICATE PLAIN ", "Missing initial response"),
    (b"LOGIN alice", "Missing password"),
    (b"LOGIN alice ", "Missing password"),
    (b"LOGIN alice  pw", "Invalid password"),
    (
        b"LOGIN alice pw extra",
        "Unexpected data after end of command",
    ),
    (b"LOGIN {5}\r\nali", "Literal is truncated"),
    (b"LOGIN {5}", "Missing CRLF after literal length"),
    (b"LOGIN {5}\nalice b", "Missing CRLF after literal length"),
    (b"LOGIN {x}\r\nalice b", "Invalid literal length"),
    (
        b"LOGIN {99999999999999999999999}\r\na b",
        "Invalid literal length",
    ),
    (
        b"LOGIN {18446744073709551615}\r\na b",
        "Literal is truncated",
    ),
    (b"LOGIN \"a\\x\" b", "Invalid escape in user name"),
    (b"LOGIN \"abc b", "Unterminated quoted user name"),
    (b"LOGIN a \"p\0w\"", "Invalid character in password"),
    (b"LOGIN a {3}\r\np\0w", "NUL not allowed in password"),
    (b"LOGIN a \"\xff\"", "Invalid UTF-8 in password"),
    (b"LOGIN a \"x\ry\"", "Invalid character in password"),
    (b"ENABLE", "Missing capability"),
    (b"ENABLE \"x\"", "Invalid capability"),
    (b"SELECT", "Missing mailbox name"),
    (b"SELECT ", "Missing mailbox name"),
    (b"SELECT (x)", "Invalid mailbox name"),
    (b"SELECT INBOX ()", "Invalid SELECT parameter"),
    (b"SELECT INBOX (FOO)", "Unknown SELECT parameter FOO"),
    (
        b"SELECT INBOX (CONDSTORE",
        "Expected ')' after SELECT parameters",
    ),
    (b"SELECT INBOX (QRESYNC (0 1))", "Invalid UIDVALIDITY"),
    (
        b"SELECT INBOX (QRESYNC (1 9223372036854775808))",
        "Invalid mod-sequence",
    ),
    (
        b"SELECT INBOX (QRESYNC (1 2 3:4 (1:2)))",
        "Expected space before known UIDs",
    ),
    (b"CREATE x (USE (Drafts))", "Invalid special-use attribute"),
    (b"CREATE x (FOO)", "Unknown CREATE parameter FOO"),
    (b"RENAME a", "Missing new mailbox name"),
    (b"LIST \"\"", "Missing mailbox pattern"),
    (b"LIST \"\" ()", "Invalid mailbox pattern"),
    (
        b"LIST (RECURSIVEMATCH) \"\" *",
        "RECURSIVEMATCH requires another selection option",
    ),
    (
        b"LIST (REMOTE RECURSIVEMATCH) \"\" *",
        "RECURSIVEMATCH requires another selection option",
    ),
    (b"LIST (FOO) \"\" *", "Unknown LIST selection option FOO"),
    (b"LIST \"\" * (CHILDREN)", "Expected RETURN options"),
    (
        b"LIST \"\" * RETURN (FOO)",
        "Unknown LIST return option FOO",
    ),
    (b"LIST \"\" * RETURN (STATUS ())", "Invalid status item"),
    (b"LSUB \"\"", "Missing mailbox pattern"),
    (b"STATUS INBOX", "Missing status items"),
    (b"STATUS INBOX ()", "Invalid status item"),
    (b"STATUS INBOX (MESSAGES FOO)", "Unknown status item FOO"),
    (b"APPEND INBOX", "Missing message literal"),
    (b"APPEND INBOX \"hello\"", "Invalid date-time"),
    (b"APPEND INBOX hello", "Message must be sent as a literal"),
    (b"APPEND INBOX (\\Seen)", "Missing message literal"),
    (
        b"APPEND INBOX (\\*) {1}\r\nx",
        "\\* is not a valid flag here",
    ),
    (
        b"APPEND INBOX \"32-Jan-2020 00:00:00 +0000\" {1}\r\nx",
        "Invalid date-time",
    ),
    (
        b"APPEND INBOX \"29-Feb-2023 00:00:00 +0000\" {1}\r\nx",
        "Invalid date-time",
    ),
    (
        b"APPEND INBOX \"01-Foo-2020 00:00:00 +0000\" {1}\r\nx",
        "Invalid date-time",
    ),
    (
        b"APPEND INBOX \"01-Jan-2020 24:00:00 +0000\" {1}\r\nx",
        "Invalid date-time",
    ),
    (
        b"APPEND INBOX \"01-Jan-2020 00:00:00 0000\" {1}\r\nx",
        "Invalid date-time",
    ),
    (
        b"APPEND INBOX \"01-Jan-20 00:00:00 +0000\" {1}\r\nx",
        "Invalid date-time",
    ),
    (
        b"APPEND INBOX {1}\r\nxy",
        "Expected space before message literal",
    ),
    (b"APPEND INBOX {1}\r\nx ", "Missing message literal"),
    (
        b"APPEND INBOX UTF8 ({1}\r\nx)",
        "UTF8 message data must be a literal8",
    ),
    (b"UID", "Missing UID command"),
    (b"UID FOO 1", "Unknown UID command FOO"),
    (b"UID EXPUNGE", "Missing sequence set"),
    (b"UID EXPUNGE 0", "Invalid sequence set"),
    (b"FETCH 0 FLAGS", "Invalid sequence set"),
    (b"FETCH 4294967296 FLAGS", "Invalid sequence set"),
    (b"FETCH 1: FLAGS", "Invalid sequence set"),
    (b"FETCH 1, FLAGS", "Invalid sequence set"),
    (b"FETCH :1 FLAGS", "Invalid sequence set"),
    (b"FETCH 1:2:3 FLAGS", "Invalid sequence set"),
    (b"FETCH $,1 FLAGS", "Invalid sequence set"),
    (b"FETCH 1,$ FLAGS", "Invalid sequence set"),
    (b"FETCH -1 FLAGS", "Invalid sequence set"),
    (b"FETCH 1", "Missing fetch attributes"),
    (b"FETCH 1 ()", "Invalid fetch attribute"),
    (b"FETCH 1 (FLAGS", "Expected ')' after fetch attributes"),
    (b"FETCH 1 (ALL)", "Unknown fetch attribute ALL"),
    (b"FETCH 1 FOO", "Unknown fetch attribute FOO"),
    (b"FETCH 1 BODY[MIME]", "MIME requires a part number"),
    (b"FETCH 1 BODY[0]", "Invalid section part"),
    (b"FETCH 1 BODY[1.]", "Invalid section"),
    (b"FETCH 1 BODY[1HEADER]", "Invalid section"),
    (
        b"FETCH 1 BODY[HEADER.FIELDS ()]",
        "Invalid header field name",
    ),
    (
        b"FETCH 1 BODY[HEADER.FIELDS]",
        "Expected space before header field list",
    ),
    (b"FETCH 1 BODY[FOO]", "Invalid section"),
    (b"FETCH 1 BODY[", "Invalid section"),
    (b"FETCH 1 BODY.PEEK", "Missing section"),
    (b"FETCH 1 BODY[]<0.0>", "Invalid partial range"),
    (b"FETCH 1 BODY[]<0>", "Invalid partial range"),
    (b"FETCH 1 BODY[]<x.1>", "Invalid partial range"),
    (b"FETCH 1 BODY<0.1>", "Invalid fetch attribute"),
    (b"FETCH 1 BINARY[TEXT]", "Invalid section part"),
    (b"FETCH 1 BINARY.SIZE[1]<0.1>", "Invalid fetch attribute"),
    (b"FETCH 1 FLAGS (FOO)", "Unknown FETCH modifier FOO"),
    (b"FETCH 1 FLAGS (CHANGEDSINCE x)", "Invalid mod-sequence"),
    (
        b"FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)",
        "VANISHED is only allowed with UID FETCH",
    ),
    (
        b"UID FETCH 1 FLAGS (VANISHED)",
        "VANISHED requires CHANGEDSINCE",
    ),
    (b"STORE 1 FLAGS", "Missing flags"),
    (b"STORE 1 FLAGS (\\*)", "\\* is not a valid flag here"),
    (b"STORE 1 FLAGS \\*", "\\* is not a valid flag here"),
    (b"STORE 1 FLAGS (\\)", "Invalid flag"),
    (b"APPEND x CATENATE ()", "Invalid CATENATE part"),
    (b"NOTIFY", "Missing NOTIFY NONE or SET"),
    (b"NOTIFY SET", "Missing event group"),
    (b"NOTIFY SET (bogus (MessageNew))", "Invalid NOTIFY filter"),
    (
        b"NOTIFY SET (selected (MessageNew)",
        "Expected ')' after the events",
    ),
    (
        b"APPEND x CATENATE (TEXT abc)",
        "CATENATE text must be a literal",
    ),
    (
        b"APPEND x CATENATE (URL /a/;uid=1 BOGUS)",
        "Invalid CATENATE part",
    ),
    (b"STORE 1 FLAGS (a]b)", "Invalid flag"),
    (b"STORE 1 FLAGS (\\Seen", "Expected ')' after flags"),
    (b"STORE 1 FLAGS \\Seen ", "Missing flag"),
    (b"STORE 1 LABELS (x)", "Unknown message data item LABELS"),
    (b"STORE 1 *FLAGS (x)", "Unknown message data item "),
    (b"STORE 1 (FOO 1) FLAGS (x)", "Unknown STORE modifier FOO"),
    (b"STORE 1", "Missing message data item"),
    (b"COPY 1", "Missing mailbox name"),
    (b"MOVE x y", "Invalid sequence set"),
    (b"SEARCH", "Missing search criteria"),
    (b"SEARCH ", "Missing search criteria"),
    (b"SEARCH FOO", "Unknown search criterion FOO"),
    (b"SEARCH ALL ", "Missing search criteria"),
    (b"SEARCH ()", "Invalid search criteria"),
    (b"SEARCH (ALL", "Expected ')' after search criteria"),
    (b"SEARCH ALL)", "Unexpected data after end of command"),
    (b"SEARCH OR ALL", "Missing search criteria"),
    (b"SEARCH SINCE 30-Feb-2020", "Invalid date"),
    (b"SEARCH SINCE 1-Feb-20", "Invalid date"),
    (b"SEARCH SINCE \"1-Feb-2020", "Invalid date"),
    (b"SEARCH SINCE", "Missing date"),
    (b"SEARCH KEYWORD \\Seen", "Invalid keyword"),
    (b"SEARCH LARGER x", "Invalid size"),
    (b"SEARCH LARGER 1x", "Invalid LARGER criterion"),
    (b"SEARCH UID x", "Invalid sequence set"),
    (b"SEARCH 1:x", "Invalid sequence set"),
    (b"SEARCH SEENx", "Unknown search criterion SEENX"),
    (b"SEARCH SUBJECT", "Missing SUBJECT string"),
    (
        b"SEARCH MODSEQ \"/flags/\\\\draft\" both 1",
        "Invalid entry type",
    ),
    (
        b"SEARCH RETURN (FOO) ALL",
        "Unknown search return option FOO",
    ),
    (b"SEARCH RETURN (MIN)", "Missing search criteria"),
    (b"SEARCH CHARSET", "Missing charset"),
    (b"SEARCH CHARSET UTF-8", "Missing search criteria"),
    (
        b"SEARCH CHARSET UTF-8 SUBJECT \"\xff\"",
        "Invalid UTF-8 in SUBJECT string",
    ),
    (b"SORT (FOO) UTF-8 ALL", "Unknown sort key FOO"),
    (b"SORT () UTF-8 ALL", "Missing sort key"),
    (
        b"SORT SUBJECT UTF-8 ALL",
        "Expected '(' before sort criteria",
    ),
    (b"SORT (SUBJECT UTF-8 ALL", "Unknown sort key UTF-8"),
    (
        b"SORT (REVERSE) UTF-8 ALL",
        "Expected space before sort key",
    ),
    (b"SORT (SUBJECT) UTF-8", "Missing search criteria"),
    (b"SORT (SUBJECT)", "Missing charset"),
    (
        b"SORT RETURN (FOO) (SUBJECT) UTF-8 ALL",
        "Unknown search return option FOO",
    ),
    (b"THREAD FOO UTF-8 ALL", "Unknown threading algorithm FOO"),
    (b"THREAD REFERENCES", "Missing charset"),
    (b"THREAD REFERENCES UTF-8", "Missing search criteria"),
    (b"SEARCH OLDER 0", "Invalid interval"),
    (b"SEARCH YOUNGER", "Missing interval"),
    // RFC 5267 §4.4 and RFC 9394 §4: a range is n:m or -n:-m.
    (
        b"SEARCH RETURN (PARTIAL 1) ALL",
        "Invalid partial range (expected n:m or -n:-m)",
    ),
    (
        b"SEARCH RETURN (PARTIAL 1:*) ALL",
        "Invalid partial range (expected n:m or -n:-m)",
    ),
    (
        b"SEARCH RETURN (PARTIAL *:1) ALL",
        "Invalid partial range (expected n:m or -n:-m)",
    ),
    (
        b"SEARCH RETURN (PARTIAL 0:3) ALL",
        "Invalid partial range (expected n:m or -n:-m)",
    ),
    (
        b"SEARCH RETURN (PARTIAL -1:3) ALL",
        "Invalid partial range (expected n:m or -n:-m)",
    ),
    (
        b"SEARCH RETURN (PARTIAL 1:2 ALL) ALL",
        "PARTIAL and ALL cannot be used together",
    ),
    (
        b"SEARCH RETURN (UPDATE UPDATE) ALL",
        "Search return option UPDATE given twice",
    ),
    (
        b"SORT RETURN (PARTIAL 1) (ARRIVAL) US-ASCII ALL",
        "Invalid partial range (expected n:m or -n:-m)",
    ),
    (b"CANCELUPDATE", "CANCELUPDATE needs at least one tag"),
    (b"CANCELUPDATE A1", "CANCELUPDATE takes quoted tags"),
    (b"CANCELUPDATE {2}\r\nA1", "CANCELUPDATE takes quoted tags"),
];

#[test]
fn refusals() {
    let mut failures = Vec::new();
    for (input, reason) in REFUSALS {
        let mut line = b"t ".to_vec();
        line.extend_from_slice(input);
        match parse_command(&line) {
            Err(e) if e.tag.as_deref() == Some("t") && e.message == *reason => {
                assert_eq!(e.to_string(), *reason);
            }
            got => failures.push(format!(
                "{}\n  got  {got:?}\n  want {reason:?}",
                text(&line)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_tokens_are_shown_safely() {
    let mut line = b"t ".to_vec();
    line.extend(std::iter::repeat_n(b'X', 100));
    let e = parse_command(&line).unwrap_err();
    assert_eq!(e.message, format!("Unknown command {}...", "X".repeat(32)));
    let e = parse_command(b"t SEARCH \x7fFOO").unwrap_err();
    assert_eq!(e.message, "Invalid search criteria");
}

#[test]
fn nesting_is_bounded() {
    for (open, close) in [("(", ")"), ("NOT ", ""), ("OR ALL ", "")] {
        let depth = search::MAX_DEPTH - 1;
        let ok = format!("t SEARCH {}ALL{}", open.repeat(depth), close.repeat(depth));
        assert!(parse_command(ok.as_bytes()).is_ok(), "{open}");
        let deep = format!(
            "t SEARCH {}ALL{}",
            open.repeat(depth + 1),
            close.repeat(depth + 1)
        );
        assert_eq!(
            parse_command(deep.as_bytes()).unwrap_err().message,
            "Search criteria nested too deeply"
        );
        // Far deeper than the limit: refused, not a stack overflow.
        let huge = format!("t SEARCH {}ALL", open.repeat(100_000));
        assert!(parse_command(huge.as_bytes()).is_err());
    }
}

// ---- robustness ----------------------------------------------------------------

/// Every message is printable ASCII (it goes on the wire after `tag BAD`), and a
/// returned tag is a valid tag.
fn check_error(e: &ParseError, input: &[u8]) {
    assert!(
        !e.message.is_empty() && e.message.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{:?} for {}",
        e.message,
        text(input)
    );
    if let Some(tag) = &e.tag {
        assert!(!tag.is_empty() && tag.bytes().all(cursor::is_tag_char));
    }
}

fn parse_checked(input: &[u8]) -> Option<Command> {
    match parse_command(input) {
        Ok(cmd) => Some(cmd),
        Err(e) => {
            check_error(&e, input);
            None
        }
    }
}

#[test]
fn every_prefix_parses_or_errors() {
    let mut valid_prefixes = 0;
    for (input, _) in cases() {
        let mut line = b"A001 ".to_vec();
        line.extend_from_slice(input);
        for len in 0..line.len() {
            if parse_checked(&line[..len]).is_some() {
                valid_prefixes += 1;
            }
        }
    }
    // e.g. `SEARCH 1:5,7` from `SEARCH 1:5,7 (SEEN ...`: some prefixes are
    // commands in their own right.
    assert!(valid_prefixes > 0);
}

#[test]
fn every_prefix_of_a_refusal_errors_or_parses() {
    for (input, _) in REFUSALS {
        let mut line = b"t ".to_vec();
        line.extend_from_slice(input);
        for len in 0..line.len() {
            parse_checked(&line[..len]);
        }
    }
}

#[test]
fn single_byte_mutations_do_not_panic() {
    const REPLACEMENTS: &[u8] = b" ()[]<>{}\"\\*%$+-~.:,0159aZ\r\n\0\x7f\xff";
    for (input, _) in cases() {
        let mut line = b"A001 ".to_vec();
        line.extend_from_slice(input);
        for i in 0..line.len() {
            let original = line[i];
            for &r in REPLACEMENTS {
                line[i] = r;
                parse_checked(&line);
            }
            line[i] = original;
            // Deletion and duplication of byte i.
            let mut shorter = line.clone();
            shorter.remove(i);
            parse_checked(&shorter);
            let mut longer = line.clone();
            longer.insert(i, original);
            parse_checked(&longer);
        }
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn pseudo_random_garbage_does_not_panic() {
    const TOKENS: &[&[u8]] = &[
        b" ",
        b" ",
        b" ",
        b"(",
        b")",
        b"[",
        b"]",
        b"<",
        b">",
        b".",
        b"\"",
        b"\\",
        b"*",
        b"%",
        b"$",
        b"+",
        b"-",
        b":",
        b",",
        b"~",
        b"{",
        b"}",
        b"\r\n",
        b"{3}\r\n",
        b"{0}\r\n",
        b"~{2}\r\n",
        b"{4+}\r\n",
        b"{99}\r\n",
        b"0",
        b"1",
        b"7",
        b"4294967295",
        b"4294967296",
        b"99999999999999999999999",
        b"1:*",
        b"2,4:6",
        b"NIL",
        b"INBOX",
        b"UID",
        b"FETCH",
        b"STORE",
        b"SEARCH",
        b"SELECT",
        b"EXAMINE",
        b"LIST",
        b"LSUB",
        b"APPEND",
        b"LOGIN",
        b"AUTHENTICATE",
        b"ID",
        b"ENABLE",
        b"CREATE",
        b"STATUS",
        b"COPY",
        b"MOVE",
        b"EXPUNGE",
        b"RETURN",
        b"CHARSET",
        b"BODY",
        b"BODY.PEEK",
        b"BINARY",
        b"BINARY.SIZE",
        b"HEADER",
        b"HEADER.FIELDS",
        b"HEADER.FIELDS.NOT",
        b"TEXT",
        b"MIME",
        b"FLAGS",
        b"+FLAGS.SILENT",
        b"\\Seen",
        b"\\*",
        b"OR",
        b"NOT",
        b"SINCE",
        b"1-Feb-1994",
        b"\"29-Feb-2024\"",
        b"\" 1-Jul-2002 22:35:00 -0700\"",
        b"MODSEQ",
        b"CHANGEDSINCE",
        b"VANISHED",
        b"UNCHANGEDSINCE",
        b"QRESYNC",
        b"CONDSTORE",
        b"USE",
        b"STATUS",
        b"MESSAGES",
        b"UTF8",
        b"\xc3\xa9",
        b"\xff",
        b"\0",
        b"\x7f",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for round in 0..40_000 {
        let mut input = Vec::new();
        if round % 4 != 0 {
            input.extend_from_slice(b"a ");
        }
        if round % 3 == 0 {
            let (cmd, _) = &cases()[rng.below(cases().len())];
            input.extend_from_slice(cmd);
        }
        for _ in 0..rng.below(24) {
            if rng.below(5) == 0 {
                input.push(rng.next() as u8);
            } else {
                input.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
            }
        }
        if parse_checked(&input).is_some() {
            parsed += 1;
        }
    }
    assert!(parsed > 0);
}

/// The session loop described in [`crate::frame`], over an in-memory stream.
fn frame_commands(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut commands = Vec::new();
    let mut command = Vec::new();
    while let Some(eol) = stream.windows(2).position(|w| w == b"\r\n") {
        let line = &stream[..eol];
        stream = &stream[eol + 2..];
        command.extend_from_slice(line);
        match crate::frame::literal_at_end(line) {
            Some(literal) => {
                let (bytes, rest) = stream.split_at(literal.len as usize);
                command.extend_from_slice(b"\r\n");
                command.extend_from_slice(bytes);
                stream = rest;
            }
            None => commands.push(std::mem::take(&mut command)),
        }
    }
    commands
}

#[test]
fn framed_commands_parse() {
    // The APPEND literal holds a CRLF and a `{3}` of its own: literal bytes are
    // never scanned for announcements.
    let stream = b"a LOGIN {5}\r\nalice {3+}\r\npwd\r\n\
        b APPEND x (\\Seen) {12}\r\nline1\r\n{3}\r\n ~{2}\r\n\0\n\r\n\
        c NOOP\r\n";
    let commands: Vec<Command> = frame_commands(stream)
        .iter()
        .map(|c| parse_command(c).unwrap())
        .collect();
    assert_eq!(
        commands,
        vec![
            Command {
                tag: s("a"),
                body: B::Login {
                    username: s("alice"),
                    password: s("pwd"),
                },
            },
            Command {
                tag: s("b"),
                body: B::Append {
                    mailbox: s("x"),
                    messages: vec![
                        msg(&["\\Seen"], None, b"line1\r\n{3}\r\n", false),
                        msg(&[], None, b"\0\n", true),
                    ],
                },
            },
            Command {
                tag: s("c"),
                body: B::Noop,
            },
        ]
    );
}
