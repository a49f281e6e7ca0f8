//! SORT, UID SORT, SORT=DISPLAY and THREAD (RFC 5256, RFC 5957), ESORT (RFC
//! 5267 §3) and WITHIN (RFC 5032), byte for byte against a real listening
//! server, and SORT/THREAD through Python's imaplib.
//!
//! The INBOX of these tests is built so that the RFCs' example answers come
//! out (RFC 5256 §3: `SORT (SUBJECT REVERSE DATE)` → `5 3 4 1 2`, an empty
//! `* SORT` and `* THREAD`; RFC 5267 §3: MIN/MAX/COUNT/ALL; RFC 5032 §3:
//! YOUNGER/OLDER).

use casella_testkit::clients::python;
use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "secret pw";

fn server() -> TestServer {
    TestServer::imap_with_account(BIN, USER, PASS)
}

fn login(s: &TestServer) -> LineClient {
    s.imap_login(USER, PASS)
}

/// Sends `command` with its tag; every line up to the tagged reply.
fn cmd(c: &mut LineClient, tag: &str, command: &str) -> Vec<String> {
    c.imap(tag, command)
}

/// The exact lines of one exchange.
#[track_caller]
fn exchange(c: &mut LineClient, tag: &str, command: &str, want: &[&str]) {
    let got = cmd(c, tag, command);
    assert_eq!(got, want, "C: {tag} {command}");
}

/// A message with `headers` and a body of `lines` lines of 100 bytes, so
/// that sizes order as the line counts do.
fn message(headers: &str, lines: usize) -> Vec<u8> {
    let mut m = headers.replace('\n', "\r\n").into_bytes();
    m.extend_from_slice(b"\r\n");
    for _ in 0..lines {
        m.extend_from_slice(&[b'x'; 98]);
        m.extend_from_slice(b"\r\n");
    }
    m
}

fn append(c: &mut LineClient, mailbox: &str, date: Option<&str>, raw: &[u8]) {
    let date = date.map(|d| format!(" \"{d}\"")).unwrap_or_default();
    let mut line = format!("ap APPEND {mailbox}{date} {{{}+}}\r\n", raw.len()).into_bytes();
    line.extend_from_slice(raw);
    line.extend_from_slice(b"\r\n");
    c.send(&line);
    c.expect_tagged("ap OK");
}

/// INBOX: a message appended and expunged first (so UIDs are sequence
/// numbers + 1), then five for sorting.
fn sort_inbox(c: &mut LineClient) {
    append(c, "INBOX", None, &message("Subject: gone", 0));
    let inbox: [(&str, &str, usize); 5] = [
        (
            "05-Jan-2024 00:00:00 +0000",
            "From: \"Zoe Z\" <zed@a.test>\nTo: bob@b.test\nSubject: Re: b\n\
             Date: Wed, 10 Jan 2024 10:00:00 +0000",
            40,
        ),
        (
            "01-Jan-2024 00:00:00 +0000",
            "From: amy@a.test\nTo: Zack <carl@b.test>\nCc: x@c.test\nSubject: b (fwd)\n\
             Date: Tue, 09 Jan 2024 10:00:00 +0000",
            10,
        ),
        (
            "04-Jan-2024 00:00:00 +0000",
            "From: Bea <mike@a.test>\nTo: al@b.test\nSubject: [list] A\n\
             Date: Sun, 07 Jan 2024 10:00:00 +0000",
            30,
        ),
        // No From, To or Date: DATE falls back to INTERNALDATE (3 Jan).
        ("03-Jan-2024 00:00:00 +0000", "Subject: Fwd: a", 20),
        (
            "02-Jan-2024 00:00:00 +0000",
            "From: Adam <yy@a.test>\nTo: dan@b.test\nCc: amy@c.test\nSubject: a\n\
             Date: Mon, 08 Jan 2024 10:00:00 +0000",
            50,
        ),
    ];
    for (date, headers, lines) in inbox {
        append(c, "INBOX", Some(date), &message(headers, lines));
    }
    let r = cmd(c, "s", "SELECT INBOX");
    assert!(r.contains(&"* 6 EXISTS".to_string()), "{r:?}");
    cmd(c, "d", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    exchange(
        c,
        "e",
        "EXPUNGE",
        &["* 1 EXPUNGE", "e OK EXPUNGE completed"],
    );
}

#[test]
fn capability_lists_sort_thread_esort_and_within() {
    let s = server();
    let mut c = login(&s);
    let caps = cmd(&mut c, "c", "CAPABILITY");
    assert!(
        caps[0].contains(" SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESORT WITHIN"),
        "{caps:?}"
    );
    // RFC 5267 §4 and RFC 9394 (tests/imap_context.rs).
    assert!(
        caps[0].contains(" CONTEXT=SEARCH CONTEXT=SORT PARTIAL"),
        "{caps:?}"
    );
}

#[test]
fn sort_and_uid_sort_by_every_key() {
    let s = server();
    let mut c = login(&s);
    sort_inbox(&mut c);
    let table: &[(&str, &str)] = &[
        // RFC 5256 §3's example answer.
        ("SORT (SUBJECT REVERSE DATE) UTF-8 ALL", "* SORT 5 3 4 1 2"),
        ("SORT (SUBJECT) UTF-8 ALL", "* SORT 3 4 5 1 2"),
        ("SORT (REVERSE SUBJECT) UTF-8 ALL", "* SORT 1 2 3 4 5"),
        ("SORT (ARRIVAL) US-ASCII ALL", "* SORT 2 5 4 3 1"),
        ("SORT (DATE) UTF-8 ALL", "* SORT 4 3 5 2 1"),
        ("SORT (REVERSE DATE) UTF-8 ALL", "* SORT 1 2 5 3 4"),
        ("SORT (FROM) UTF-8 ALL", "* SORT 4 2 3 5 1"),
        ("SORT (TO) UTF-8 ALL", "* SORT 4 3 1 2 5"),
        ("SORT (CC) UTF-8 ALL", "* SORT 1 3 4 5 2"),
        ("SORT (REVERSE CC) UTF-8 ALL", "* SORT 2 5 1 3 4"),
        ("SORT (SIZE) UTF-8 ALL", "* SORT 2 4 3 1 5"),
        ("SORT (REVERSE SIZE) UTF-8 ALL", "* SORT 5 1 3 4 2"),
        // RFC 5957: the display name, or the address without one.
        ("SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 4 5 2 3 1"),
        ("SORT (DISPLAYTO) UTF-8 ALL", "* SORT 4 3 1 5 2"),
        // A search program narrows what is sorted.
        ("SORT (SUBJECT) UTF-8 SINCE 3-Jan-2024", "* SORT 3 4 1"),
        ("SORT (DATE) UTF-8 OR FROM amy CC amy", "* SORT 5 2"),
        // RFC 5256 §3: nothing found is an empty SORT response.
        ("SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\"", "* SORT"),
        // UIDs are sequence numbers + 1 here.
        (
            "UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
            "* SORT 6 4 5 2 3",
        ),
        ("UID SORT (ARRIVAL) UTF-8 UID 3:5", "* SORT 3 5 4"),
    ];
    for (i, (command, answer)) in table.iter().enumerate() {
        let tag = format!("t{i}");
        let verb = if command.starts_with("UID") {
            "UID SORT"
        } else {
            "SORT"
        };
        exchange(
            &mut c,
            &tag,
            command,
            &[answer, &format!("{tag} OK {verb} completed")],
        );
    }
    exchange(
        &mut c,
        "b1",
        "SORT (SUBJECT) ISO-8859-1 ALL",
        &["b1 NO [BADCHARSET (UTF-8 US-ASCII)] Only UTF-8 and US-ASCII are supported"],
    );
    exchange(
        &mut c,
        "b2",
        "SORT (SUBJECT FOO) UTF-8 ALL",
        &["b2 BAD Unknown sort key FOO"],
    );
    exchange(
        &mut c,
        "b3",
        "SORT SUBJECT UTF-8 ALL",
        &["b3 BAD Expected '(' before sort criteria"],
    );
    exchange(&mut c, "b4", "UNSELECT", &["b4 OK UNSELECT completed"]);
    exchange(
        &mut c,
        "b5",
        "SORT (SUBJECT) UTF-8 ALL",
        &["b5 BAD No mailbox selected"],
    );
}

#[test]
fn esort_returns_min_max_count_all_in_sort_order() {
    let s = server();
    let mut c = login(&s);
    sort_inbox(&mut c);
    let table: &[(&str, &str)] = &[
        // RFC 5267 §3's examples, on this mailbox.
        (
            "SORT RETURN (MIN) (DATE) UTF-8 UNDELETED UNKEYWORD $Junk",
            "* ESEARCH (TAG \"x0\") MIN 4",
        ),
        (
            "UID SORT RETURN (MIN MAX) (DATE) UTF-8 UNDELETED",
            "* ESEARCH (TAG \"x1\") UID MIN 5 MAX 2",
        ),
        (
            "SORT RETURN (COUNT ALL) (DATE) UTF-8 ALL",
            "* ESEARCH (TAG \"x2\") COUNT 5 ALL 4,3,5,2,1",
        ),
        (
            "SORT RETURN (ALL) (REVERSE DATE) UTF-8 ALL",
            "* ESEARCH (TAG \"x3\") ALL 1:2,5,3:4",
        ),
        // RETURN () is ALL (RFC 4731 §3.1).
        (
            "SORT RETURN () (ARRIVAL) UTF-8 ALL",
            "* ESEARCH (TAG \"x4\") ALL 2,5,4,3,1",
        ),
        // Nothing found: no MIN, MAX or ALL; COUNT 0.
        (
            "SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 KEYWORD nothing",
            "* ESEARCH (TAG \"x5\") COUNT 0",
        ),
    ];
    for (i, (command, answer)) in table.iter().enumerate() {
        let tag = format!("x{i}");
        let verb = if command.starts_with("UID") {
            "UID SORT"
        } else {
            "SORT"
        };
        exchange(
            &mut c,
            &tag,
            command,
            &[answer, &format!("{tag} OK {verb} completed")],
        );
    }
    // SAVE with SORT (RFC 5182 §2.4): `$` is the set found, in UID order.
    exchange(
        &mut c,
        "v1",
        "SORT RETURN (SAVE) (DATE) UTF-8 FROM a.test",
        &["v1 OK SORT completed"],
    );
    exchange(
        &mut c,
        "v2",
        "UID SEARCH UID $",
        &["* SEARCH 2 3 4 6", "v2 OK UID SEARCH completed"],
    );
}

#[test]
fn within_older_and_younger() {
    let s = server();
    let mut c = login(&s);
    sort_inbox(&mut c);
    // Appended now: INTERNALDATE is the present.
    append(&mut c, "INBOX", None, &message("Subject: new", 1));
    cmd(&mut c, "n", "NOOP");
    exchange(
        &mut c,
        "w1",
        "SEARCH YOUNGER 3600",
        &["* SEARCH 6", "w1 OK SEARCH completed"],
    );
    exchange(
        &mut c,
        "w2",
        "SEARCH OLDER 3600",
        &["* SEARCH 1 2 3 4 5", "w2 OK SEARCH completed"],
    );
    exchange(
        &mut c,
        "w3",
        "UID SEARCH NOT OLDER 3600",
        &["* SEARCH 7", "w3 OK UID SEARCH completed"],
    );
    exchange(
        &mut c,
        "w4",
        "SORT (REVERSE ARRIVAL) UTF-8 YOUNGER 3600",
        &["* SORT 6", "w4 OK SORT completed"],
    );
    exchange(
        &mut c,
        "w5",
        "SEARCH YOUNGER 0",
        &["w5 BAD Invalid interval"],
    );
}

/// Folder "T": two conversations, one reply to a message not there, and a
/// lone message without a Message-ID.
fn thread_folder(c: &mut LineClient) {
    cmd(c, "cr", "CREATE T");
    let folder: [&str; 7] = [
        "Message-ID: <1@t>\nSubject: party\nDate: Mon, 01 Jan 2024 10:00:00 +0000",
        "Message-ID: <2@t>\nIn-Reply-To: <1@t>\nSubject: Re: party\n\
         Date: Wed, 03 Jan 2024 10:00:00 +0000",
        "Message-ID: <3@t>\nReferences: <1@t> <2@t>\nSubject: Re: party\n\
         Date: Thu, 04 Jan 2024 10:00:00 +0000",
        "Message-ID: <4@t>\nReferences: <gone@t>\nSubject: lunch\n\
         Date: Tue, 02 Jan 2024 10:00:00 +0000",
        "Message-ID: <5@t>\nSubject: Re: lunch\nDate: Fri, 05 Jan 2024 10:00:00 +0000",
        "Message-ID: <6@t>\nReferences: <1@t>\nSubject: Re: party\n\
         Date: Tue, 02 Jan 2024 11:00:00 +0000",
        "Subject: other\nDate: Sat, 06 Jan 2024 10:00:00 +0000",
    ];
    for headers in folder {
        append(c, "T", None, &message(headers, 1));
    }
    let r = cmd(c, "s", "SELECT T");
    assert!(r.contains(&"* 7 EXISTS".to_string()), "{r:?}");
}

#[test]
fn thread_references_and_orderedsubject() {
    let s = server();
    let mut c = login(&s);
    thread_folder(&mut c);
    exchange(
        &mut c,
        "h1",
        "THREAD REFERENCES UTF-8 ALL",
        &["* THREAD (1 (6)(2 3))(4 5)(7)", "h1 OK THREAD completed"],
    );
    exchange(
        &mut c,
        "h2",
        "THREAD ORDEREDSUBJECT UTF-8 ALL",
        &["* THREAD (1 (6)(2)(3))(4 5)(7)", "h2 OK THREAD completed"],
    );
    // Only what the search finds is threaded: 3's parent 2 is left out.
    exchange(
        &mut c,
        "h3",
        "UID THREAD REFERENCES US-ASCII NOT UID 2",
        &["* THREAD (1 (6)(3))(4 5)(7)", "h3 OK UID THREAD completed"],
    );
    // RFC 5256 §3: nothing found is an empty THREAD response.
    exchange(
        &mut c,
        "h4",
        "THREAD ORDEREDSUBJECT US-ASCII TEXT \"gewp\"",
        &["* THREAD", "h4 OK THREAD completed"],
    );
    exchange(
        &mut c,
        "h5",
        "THREAD REFS UTF-8 ALL",
        &["h5 BAD Unknown threading algorithm REFS"],
    );
    exchange(
        &mut c,
        "h6",
        "THREAD REFERENCES KOI8-R ALL",
        &["h6 NO [BADCHARSET (UTF-8 US-ASCII)] Only UTF-8 and US-ASCII are supported"],
    );
    // UIDs: message 2 expunged, the rest keep theirs.
    cmd(&mut c, "d", "STORE 2 +FLAGS.SILENT (\\Deleted)");
    cmd(&mut c, "e", "EXPUNGE");
    exchange(
        &mut c,
        "h7",
        "UID THREAD REFERENCES UTF-8 ALL",
        &["* THREAD (1 (6)(3))(4 5)(7)", "h7 OK UID THREAD completed"],
    );
    exchange(
        &mut c,
        "h8",
        "THREAD REFERENCES UTF-8 ALL",
        &["* THREAD (1 (5)(2))(3 4)(6)", "h8 OK THREAD completed"],
    );
}

/// Python's imaplib (`sort()`, `thread()`, `uid('SORT', ...)`) parses the
/// answers. Skipped with one line when python3 is missing, unless
/// `CASELLA_REQUIRE_CLIENTS=1`.
#[test]
fn imaplib_sorts_and_threads() {
    if !casella_testkit::clients::available("python3", "python3") {
        return;
    }
    let s = server();
    let mut c = login(&s);
    sort_inbox(&mut c);
    thread_folder(&mut c);
    let tmp = tempfile::tempdir().expect("temp dir");
    let cert = s.cert_path().to_string_lossy().into_owned();
    let port = s.port("imaps").to_string();
    let base = [
        "--port",
        &port,
        "--cert",
        &cert,
        "--user",
        USER,
        "--password",
        PASS,
    ];
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--mailbox",
        "INBOX",
        "--sort",
        "SUBJECT REVERSE DATE",
        "--sort",
        "DISPLAYFROM",
        "--uid-sort",
        "ARRIVAL",
    ]);
    let out = python("imap_sort_check.py", &args, tmp.path())
        .success()
        .out();
    let want = "capability: SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESORT WITHIN\n\
                sort SUBJECT REVERSE DATE: 5 3 4 1 2\n\
                sort DISPLAYFROM: 4 5 2 3 1\n\
                uid sort ARRIVAL: 3 6 5 4 2\n\
                PASS\n";
    assert_eq!(out, want);
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--mailbox",
        "T",
        "--thread",
        "REFERENCES",
        "--thread",
        "ORDEREDSUBJECT",
    ]);
    let out = python("imap_sort_check.py", &args, tmp.path())
        .success()
        .out();
    let want = "capability: SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESORT WITHIN\n\
                thread REFERENCES: (1 (6)(2 3))(4 5)(7)\n\
                thread ORDEREDSUBJECT: (1 (6)(2)(3))(4 5)(7)\n\
                PASS\n";
    assert_eq!(out, want);
}
