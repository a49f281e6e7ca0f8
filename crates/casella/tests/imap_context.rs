//! CONTEXT=SEARCH, CONTEXT=SORT (RFC 5267 §4) and PARTIAL (RFC 9394), byte
//! for byte against a real listening server, and once through Python's
//! imaplib: updating searches and sorts told of this session's changes,
//! another session's, expunges (REMOVEFROM before EXPUNGE) and new mail
//! (ADDTO after EXISTS), also while IDLE; message numbers in the criteria
//! fixed when the search ran; CANCELUPDATE; NOUPDATE; PARTIAL ranges from
//! either end for SEARCH, SORT and FETCH.

use casella_testkit::clients::python;
use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "carol@example.org";
const PASS: &str = "secret pw";

fn server() -> TestServer {
    TestServer::imap_with_account(BIN, USER, PASS)
}

fn message(subject: &str) -> Vec<u8> {
    format!("From: a@remote.test\r\nSubject: {subject}\r\n\r\n{subject}\r\n").into_bytes()
}

/// Logged in, IMAP4rev2 (no \Recent in the flags), INBOX selected.
fn selected(s: &TestServer) -> LineClient {
    let mut c = s.imap_login(USER, PASS);
    c.imap("e", "ENABLE IMAP4rev2");
    c.imap("s", "SELECT INBOX");
    c
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|l| l.to_string()).collect()
}

#[test]
fn updating_searches_follow_every_change() {
    let s = server();
    for n in 1..=4 {
        s.deliver(USER, &message(&format!("m{n}")));
    }
    let mut c = selected(&s);
    let mut other = selected(&s);
    c.imap("0", "STORE 1 +FLAGS.SILENT (\\Seen)");
    // §4.3: UPDATE alone gives only the tag; with COUNT, the count.
    assert_eq!(
        c.imap("A1", "SEARCH RETURN (UPDATE) UNSEEN"),
        lines(&["* ESEARCH (TAG \"A1\")", "A1 OK SEARCH completed"])
    );
    assert_eq!(
        c.imap("A2", "UID SEARCH RETURN (UPDATE COUNT) UNSEEN"),
        lines(&[
            "* ESEARCH (TAG \"A2\") UID COUNT 3",
            "A2 OK UID SEARCH completed"
        ])
    );
    // This session's STORE: the FETCH, then the updates.
    assert_eq!(
        c.imap("A3", "STORE 1 -FLAGS (\\Seen)"),
        lines(&[
            "* 1 FETCH (FLAGS ())",
            "* ESEARCH (TAG \"A1\") ADDTO (0 1)",
            "* ESEARCH (TAG \"A2\") UID ADDTO (0 1)",
            "A3 OK STORE completed"
        ])
    );
    // Another session's STORE and new mail, told at NOOP: ADDTO after EXISTS.
    other.imap("o1", "STORE 2 +FLAGS.SILENT (\\Seen)");
    s.deliver(USER, &message("m5"));
    assert_eq!(
        c.imap("A4", "NOOP"),
        lines(&[
            "* 2 FETCH (FLAGS (\\Seen))",
            "* 5 EXISTS",
            "* ESEARCH (TAG \"A1\") REMOVEFROM (0 2) ADDTO (0 5)",
            "* ESEARCH (TAG \"A2\") UID REMOVEFROM (0 2) ADDTO (0 5)",
            "A4 OK NOOP completed"
        ])
    );
    // §4.3.4: REMOVEFROM names expunged messages by the numbers the client
    // still knows, before their EXPUNGE.
    assert_eq!(
        c.imap("A5", "STORE 3 +FLAGS.SILENT (\\Deleted)"),
        lines(&["A5 OK STORE completed"])
    );
    assert_eq!(
        c.imap("A6", "EXPUNGE"),
        lines(&[
            "* ESEARCH (TAG \"A1\") REMOVEFROM (0 3)",
            "* ESEARCH (TAG \"A2\") UID REMOVEFROM (0 3)",
            "* 3 EXPUNGE",
            "A6 OK EXPUNGE completed"
        ])
    );
    // Now: 1 (UID 1, unseen), 2 (UID 2, seen), 3 (UID 4), 4 (UID 5).
    // Message numbers in the criteria mean the messages they named when the
    // search ran (UIDs 4 and 5 here), however they are renumbered later.
    assert_eq!(
        c.imap("A7", "SEARCH RETURN (UPDATE ALL) 3:* UNSEEN"),
        lines(&["* ESEARCH (TAG \"A7\") ALL 3:4", "A7 OK SEARCH completed"])
    );
    s.deliver(USER, &message("m6"));
    other.imap("o2", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    other.imap("o3", "EXPUNGE");
    assert_eq!(
        c.imap("A8", "NOOP"),
        lines(&[
            "* 5 EXISTS",
            "* ESEARCH (TAG \"A1\") REMOVEFROM (0 1)",
            "* ESEARCH (TAG \"A2\") UID REMOVEFROM (0 1)",
            "* 1 EXPUNGE",
            "* ESEARCH (TAG \"A1\") ADDTO (0 4)",
            "* ESEARCH (TAG \"A2\") UID ADDTO (0 6)",
            "A8 OK NOOP completed"
        ])
    );
    // Now: 1 (UID 2, seen), 2 (UID 4), 3 (UID 5), 4 (UID 6).
    assert_eq!(
        c.imap("A9", "STORE 2 +FLAGS (\\Seen)"),
        lines(&[
            "* 2 FETCH (FLAGS (\\Seen))",
            "* ESEARCH (TAG \"A1\") REMOVEFROM (0 2)",
            "* ESEARCH (TAG \"A2\") UID REMOVEFROM (0 4)",
            "* ESEARCH (TAG \"A7\") REMOVEFROM (0 2)",
            "A9 OK STORE completed"
        ])
    );

    // §4.3.5: CANCELUPDATE takes quoted tags; one it does not know ends none.
    assert!(c.imap("B1", "CANCELUPDATE A1")[0].starts_with("B1 BAD "));
    assert_eq!(
        c.imap("B2", "CANCELUPDATE \"A1\" \"X9\""),
        lines(&["B2 NO No updating search has the tag \"X9\""])
    );
    assert_eq!(
        c.imap("B3", "CANCELUPDATE \"A1\" \"A7\""),
        lines(&["B3 OK CANCELUPDATE completed"])
    );
    // §4.3: a tag that names an updating search cannot start another.
    assert_eq!(
        c.imap("A2", "SEARCH RETURN (UPDATE) ALL"),
        lines(&["A2 BAD This tag names an updating search already"])
    );
    // §4.3.1: past ten contexts, and with PARTIAL, the answer comes without
    // updates.
    for n in 1..=9 {
        c.imap(&format!("C{n}"), "SEARCH RETURN (UPDATE) FLAGGED");
    }
    assert_eq!(
        c.imap("C10", "SEARCH RETURN (UPDATE COUNT) ALL"),
        lines(&[
            "* ESEARCH (TAG \"C10\") COUNT 4",
            "* NO [NOUPDATE \"C10\"] Too many updating searches; CANCELUPDATE one first",
            "C10 OK SEARCH completed"
        ])
    );
    c.imap("B4", "CANCELUPDATE \"C1\"");
    assert_eq!(
        c.imap("C11", "SEARCH RETURN (UPDATE PARTIAL 1:2) ALL"),
        lines(&[
            "* ESEARCH (TAG \"C11\") PARTIAL (1:2 1:2)",
            "* NO [NOUPDATE \"C11\"] Updates are not kept for PARTIAL results",
            "C11 OK SEARCH completed"
        ])
    );
    // Updates end with the selection.
    c.imap("D1", "UNSELECT");
    c.imap("D2", "SELECT INBOX");
    assert_eq!(
        c.imap("D3", "STORE 1 -FLAGS (\\Seen)"),
        lines(&["* 1 FETCH (FLAGS ())", "D3 OK STORE completed"])
    );
    assert!(c.imap("D4", "CANCELUPDATE \"A2\"")[0].starts_with("D4 NO "));
}

/// CONTEXT=SORT: positions in sort order, removals from the last position
/// down, additions from the first up (RFC 5267 §4.3.2).
#[test]
fn updating_sorts_say_where_messages_go() {
    let s = server();
    s.deliver(USER, &message("b"));
    s.deliver(USER, &message("d"));
    let mut c = selected(&s);
    assert_eq!(
        c.imap("S1", "SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 ALL"),
        lines(&["* ESEARCH (TAG \"S1\") ALL 1:2", "S1 OK SORT completed"])
    );
    assert_eq!(
        c.imap(
            "S2",
            "UID SORT RETURN (UPDATE MIN) (REVERSE SUBJECT) UTF-8 UNSEEN"
        ),
        lines(&[
            "* ESEARCH (TAG \"S2\") UID MIN 2",
            "S2 OK UID SORT completed"
        ])
    );
    s.deliver(USER, &message("c"));
    s.deliver(USER, &message("a"));
    // By subject: a (4) b (1) c (3) d (2); reversed: d c b a.
    assert_eq!(
        c.imap("S3", "NOOP"),
        lines(&[
            "* 4 EXISTS",
            "* ESEARCH (TAG \"S1\") ADDTO (1 4 3 3)",
            "* ESEARCH (TAG \"S2\") UID ADDTO (2 3 4 4)",
            "S3 OK NOOP completed"
        ])
    );
    assert_eq!(
        c.imap("S4", "STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)"),
        lines(&[
            "* ESEARCH (TAG \"S2\") UID REMOVEFROM (3 1)",
            "S4 OK STORE completed"
        ])
    );
    assert_eq!(
        c.imap("S5", "EXPUNGE"),
        lines(&[
            "* ESEARCH (TAG \"S1\") REMOVEFROM (2 1)",
            "* 1 EXPUNGE",
            "S5 OK EXPUNGE completed"
        ])
    );
}

/// RFC 9394: PARTIAL from the first or the last message, for SEARCH, SORT
/// and FETCH; a range past the end gives NIL (RFC 5267 §4.4).
#[test]
fn partial_results_from_either_end() {
    let s = server();
    for n in 1..=5 {
        s.deliver(USER, &message(&format!("p{n}")));
    }
    let mut c = selected(&s);
    let caps = c.imap("0", "CAPABILITY");
    assert!(
        caps[0].contains(" CONTEXT=SEARCH CONTEXT=SORT PARTIAL"),
        "{caps:?}"
    );
    let cases: &[(&str, &[&str])] = &[
        (
            "SEARCH RETURN (PARTIAL -1:-2) ALL",
            &["* ESEARCH (TAG \"1\") PARTIAL (-1:-2 4:5)"],
        ),
        (
            "UID SEARCH RETURN (COUNT PARTIAL 3:2) ALL",
            &["* ESEARCH (TAG \"2\") UID COUNT 5 PARTIAL (2:3 2:3)"],
        ),
        (
            "SEARCH RETURN (PARTIAL 6:9) ALL",
            &["* ESEARCH (TAG \"3\") PARTIAL (6:9 NIL)"],
        ),
        (
            "SORT RETURN (PARTIAL 1:3) (REVERSE SUBJECT) UTF-8 ALL",
            &["* ESEARCH (TAG \"4\") PARTIAL (1:3 5,4,3)"],
        ),
        (
            "UID FETCH 1:* (FLAGS) (PARTIAL -1:-2)",
            &["* 4 FETCH (UID 4 FLAGS ())", "* 5 FETCH (UID 5 FLAGS ())"],
        ),
        (
            "FETCH 2:* (UID) (PARTIAL 1:2)",
            &["* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)"],
        ),
    ];
    for (n, (command, untagged)) in cases.iter().enumerate() {
        let tag = (n + 1).to_string();
        let r = c.imap(&tag, command);
        assert_eq!(&r[..r.len() - 1], *untagged, "{command}");
        assert!(
            r.last().unwrap().starts_with(&format!("{tag} OK ")),
            "{command}: {r:?}"
        );
    }
    assert!(c.imap("7", "SEARCH RETURN (PARTIAL 1:*) ALL")[0].starts_with("7 BAD "));
    assert!(c.imap("8", "SEARCH RETURN (ALL PARTIAL 1:2) ALL")[0].starts_with("8 BAD "));
}

/// Updates are pushed while IDLE, as EXISTS and FETCH are.
#[test]
fn updates_reach_an_idling_client() {
    let s = server();
    s.deliver(USER, &message("one"));
    let mut c = selected(&s);
    c.imap("1", "UID SEARCH RETURN (UPDATE) UNSEEN");
    c.send_line("2 IDLE");
    c.expect("+ ");
    s.deliver(USER, &message("two"));
    let r = c.until_prefix("* ESEARCH");
    assert_eq!(
        r,
        lines(&["* 2 EXISTS", "* ESEARCH (TAG \"1\") UID ADDTO (0 2)"])
    );
    let mut other = selected(&s);
    other.imap("o1", "STORE 1 +FLAGS.SILENT (\\Seen)");
    let r = c.until_prefix("* ESEARCH");
    assert_eq!(
        r,
        lines(&[
            "* 1 FETCH (FLAGS (\\Seen))",
            "* ESEARCH (TAG \"1\") UID REMOVEFROM (0 1)"
        ])
    );
    c.send_line("DONE");
    c.until_tagged("2");
}

/// Python's imaplib, a client we did not write, reads the updates and
/// PARTIAL answers (tests/clients/imap_context_check.py).
#[test]
fn imaplib_reads_updates_and_partial_results() {
    let s = server();
    for n in 1..=4 {
        s.deliver(USER, &message(&format!("i{n}")));
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = s.addr("imaps").port().to_string();
    let cert = s.cert_path().to_string_lossy().into_owned();
    let args = [
        "--port",
        &port,
        "--cert",
        &cert,
        "--user",
        USER,
        "--password",
        PASS,
    ];
    let out = python("imap_context_check.py", &args, tmp.path())
        .success()
        .out();
    let tag = out
        .lines()
        .find_map(|l| l.strip_prefix("started: (TAG \""))
        .and_then(|r| r.split('"').next())
        .expect("the updating search's tag")
        .to_string();
    let want = format!(
        "capability: CONTEXT=SEARCH CONTEXT=SORT PARTIAL\n\
         started: (TAG \"{tag}\") UID\n\
         update: (TAG \"{tag}\") UID REMOVEFROM (0 1) ADDTO (0 5)\n\
         partial: (TAG \"{partial}\") UID PARTIAL (-1:-2 4:5)\n\
         fetch partial: 4 5\n\
         cancelled: OK\n\
         after cancel: none\n\
         PASS\n",
        partial = partial_tag(&out)
    );
    assert_eq!(out, want);
}

fn partial_tag(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("partial: (TAG \""))
        .and_then(|r| r.split('"').next())
        .unwrap_or("?")
        .to_string()
}
