//! IMAP4rev2/rev1 against a real listening server, byte for byte: RFC 9051 and
//! RFC 3501 behaviour, literals (RFC 7888), several sessions on one mailbox, IDLE.

use std::time::{Duration, Instant};

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "secret pw";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["imap", "imaps", "smtp"])
        .config("hostname = \"mail.test\"\n[imap]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account(USER, PASS);
    s
}

/// Sends a tagged command and returns every line up to and including the tagged
/// reply.
fn cmd(c: &mut LineClient, tag: &str, command: &str) -> Vec<String> {
    c.send_line(&format!("{tag} {command}"));
    until_tagged(c, tag)
}

fn until_tagged(c: &mut LineClient, tag: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        let done = l.starts_with(&format!("{tag} "));
        lines.push(l);
        if done {
            return lines;
        }
    }
}

fn ok(c: &mut LineClient, tag: &str, command: &str) -> Vec<String> {
    let lines = cmd(c, tag, command);
    let last = lines.last().unwrap();
    assert!(
        last.starts_with(&format!("{tag} OK")),
        "{command}: {lines:?}"
    );
    lines
}

fn login(s: &TestServer) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    ok(&mut c, "l", &format!("LOGIN {USER} \"{PASS}\""));
    c
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l == want)
}

#[test]
fn greeting_capabilities_and_secure_login() {
    let s = server();
    let mut c = LineClient::connect(s.addr("imap"));
    let greeting = c.line();
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 "),
        "{greeting}"
    );
    assert!(
        greeting.contains("STARTTLS") && greeting.contains("LOGINDISABLED"),
        "{greeting}"
    );
    assert!(!greeting.contains("AUTH=PLAIN"), "{greeting}");
    let r = cmd(&mut c, "a1", &format!("LOGIN {USER} \"{PASS}\""));
    assert!(r[0].starts_with("a1 NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = cmd(
        &mut c,
        "a2",
        "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldCBwdw==",
    );
    assert!(r[0].starts_with("a2 NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = cmd(&mut c, "a3", "SELECT INBOX");
    assert!(r[0].starts_with("a3 BAD"), "{r:?}");
    ok(&mut c, "a4", "STARTTLS");
    c.start_tls(&s.cert_path());
    let r = ok(&mut c, "a5", "CAPABILITY");
    assert!(
        r[0].contains("AUTH=PLAIN")
            && !r[0].contains("STARTTLS")
            && !r[0].contains("LOGINDISABLED"),
        "{r:?}"
    );
    // SASL-IR (RFC 4959).
    let r = ok(
        &mut c,
        "a6",
        "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldCBwdw==",
    );
    assert!(
        r[0].starts_with("a6 OK [CAPABILITY IMAP4rev1 IMAP4rev2"),
        "{r:?}"
    );
    for ext in [
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "SPECIAL-USE",
        "LIST-STATUS",
        "ESEARCH",
        "SEARCHRES",
        "BINARY",
        "APPENDLIMIT=",
        "UTF8=ACCEPT",
        "MULTIAPPEND",
        "STATUS=SIZE",
    ] {
        assert!(r[0].contains(ext), "{ext} missing: {r:?}");
    }
    ok(&mut c, "a7", "LOGOUT");
}

#[test]
fn refused_logins_say_why() {
    let s = server();
    s.add_account("off@example.org", PASS);
    assert!(
        s.cli(&["account", "set", "off@example.org", "imap=off"], b"")
            .status
            .success()
    );
    assert!(
        s.cli(
            &[
                "account",
                "add",
                "admin@example.org",
                "--password-stdin",
                "--admin"
            ],
            b"admin-pw1\n"
        )
        .status
        .success()
    );
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    let r = cmd(&mut c, "1", &format!("LOGIN {USER} wrong"));
    assert_eq!(
        r[0],
        "1 NO [AUTHENTICATIONFAILED] Authentication failed: wrong user name or password"
    );
    let r = cmd(&mut c, "2", &format!("LOGIN off@example.org \"{PASS}\""));
    assert!(
        r[0].starts_with("2 NO [CONTACTADMIN] Login failure or IMAP disabled"),
        "{r:?}"
    );
    let r = cmd(&mut c, "3", "LOGIN admin@example.org admin-pw1");
    assert!(r[0].starts_with("3 NO [CONTACTADMIN]"), "{r:?}");
    let r = cmd(&mut c, "4", "LOGIN anonymous x");
    assert!(r[0].starts_with("4 NO"), "{r:?}");
    // AUTHENTICATE without initial response, then "*" cancels (RFC 9051 §6.2.2).
    c.send_line("5 AUTHENTICATE PLAIN");
    assert_eq!(c.line(), "+ ");
    c.send_line("*");
    c.expect("5 BAD");
    ok(&mut c, "6", &format!("LOGIN {USER} \"{PASS}\""));
}

#[test]
fn literals_sync_non_sync_split_at_every_byte_and_too_big() {
    let s = server();
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    // A synchronising literal waits for "+".
    c.send(b"a LOGIN {17}\r\n");
    c.expect("+ ");
    c.send(format!("{USER} {{9+}}\r\n{PASS}\r\n").as_bytes());
    c.expect("a OK");
    // APPEND with a literal, written one byte at a time.
    let message = b"Subject: split\r\n\r\nbytes one at a time\r\n";
    let command = format!("b APPEND INBOX {{{}+}}\r\n", message.len());
    let mut all = command.into_bytes();
    all.extend_from_slice(message);
    all.extend_from_slice(b"\r\n");
    for byte in all {
        c.send(&[byte]);
    }
    let r = until_tagged(&mut c, "b");
    assert!(r.last().unwrap().starts_with("b OK [APPENDUID "), "{r:?}");
    // A literal over APPENDLIMIT is refused before it is sent.
    c.send(b"c APPEND INBOX {999999999}\r\n");
    let l = c.line();
    assert!(l.starts_with("c NO [TOOBIG]"), "{l}");
    ok(&mut c, "d", "NOOP");
    ok(&mut c, "e", "SELECT INBOX");
    let r = ok(&mut c, "f", "FETCH 1 BODY[]");
    assert_eq!(r[0], "* 1 FETCH (BODY[] {39}");
}

#[test]
fn bad_commands_get_bad_and_the_session_goes_on() {
    let s = server();
    let mut c = login(&s);
    for (tag, line) in [
        ("1", "FROB"),
        ("2", "SELECT"),
        ("3", "FETCH 1 (FLAGS)"),
        ("4", "LIST \"\""),
        ("5", "UID BOGUS 1"),
    ] {
        let r = cmd(&mut c, tag, line);
        assert!(
            r.last().unwrap().starts_with(&format!("{tag} BAD")),
            "{line}: {r:?}"
        );
    }
    c.send_line(&format!("6 NOOP {}", "x".repeat(70_000)));
    c.expect("6 BAD Command line too long");
    ok(&mut c, "7", "SELECT INBOX");
    let r = cmd(&mut c, "8", "FETCH 5 FLAGS");
    assert!(
        r.last().unwrap().starts_with("8 BAD"),
        "sequence number past the end: {r:?}"
    );
    let r = cmd(&mut c, "9", "STORE 1:* +FLAGS (\\Bogus)");
    assert!(
        r.last().unwrap().starts_with("9 BAD") || r.last().unwrap().starts_with("9 OK"),
        "{r:?}"
    );
    ok(&mut c, "10", "NOOP");
}

#[test]
fn select_list_status_and_special_use() {
    let s = server();
    s.deliver(USER, b"Subject: one\r\n\r\n1\r\n");
    s.deliver(USER, b"Subject: two\r\n\r\n2\r\n");
    let mut c = login(&s);
    let r = ok(&mut c, "1", "LIST \"\" \"*\"");
    assert!(
        has(&r, "* LIST (\\HasNoChildren) \"/\" INBOX")
            || has(&r, "* LIST (\\HasNoChildren) \"/\" \"INBOX\""),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.contains("\\Sent") && l.contains("Sent Items")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.contains("\\Trash") && l.contains("Deleted Items")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.contains("\\Junk") && l.contains("Junk Email")),
        "{r:?}"
    );
    let r = ok(&mut c, "2", "LIST \"\" \"\"");
    assert!(has(&r, "* LIST (\\Noselect) \"/\" \"\""), "{r:?}");
    let r = ok(
        &mut c,
        "3",
        "LIST (SPECIAL-USE) \"\" \"*\" RETURN (STATUS (MESSAGES))",
    );
    assert!(
        !r.iter().any(|l| l.contains("INBOX")),
        "only special-use: {r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.starts_with("* STATUS") && l.contains("MESSAGES 0")),
        "{r:?}"
    );
    let r = ok(
        &mut c,
        "4",
        "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED RECENT)",
    );
    assert!(
        r[0].starts_with("* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UIDVALIDITY ")
            || r[0].starts_with("* STATUS \"INBOX\" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY "),
        "{r:?}"
    );
    assert!(
        r[0].contains("UNSEEN 2") && r[0].contains("DELETED 0") && r[0].contains("RECENT 2"),
        "{r:?}"
    );
    let r = ok(&mut c, "5", "SELECT inbox");
    assert!(has(&r, "* 2 EXISTS"), "{r:?}");
    assert!(has(&r, "* 2 RECENT"), "{r:?}");
    assert!(
        r.iter().any(|l| l.starts_with("* OK [UIDVALIDITY ")),
        "{r:?}"
    );
    assert!(has(&r, "* OK [UIDNEXT 3] Predicted next UID"), "{r:?}");
    assert!(has(&r, "* OK [UNSEEN 1] First unseen message"), "{r:?}");
    assert!(r.last().unwrap().starts_with("5 OK [READ-WRITE]"), "{r:?}");
    let r = ok(&mut c, "6", "EXAMINE INBOX");
    assert!(r.last().unwrap().starts_with("6 OK [READ-ONLY]"), "{r:?}");
    let r = cmd(&mut c, "7", "STORE 1 +FLAGS (\\Seen)");
    assert!(r.last().unwrap().starts_with("7 NO"), "{r:?}");
    let r = ok(&mut c, "8", "NAMESPACE");
    assert_eq!(r[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL");
    let r = cmd(&mut c, "9", "SELECT Nowhere");
    assert!(r[0].starts_with("9 NO [NONEXISTENT]"), "{r:?}");
    let r = cmd(&mut c, "10", "FETCH 1 FLAGS");
    assert!(
        r[0].starts_with("10 BAD"),
        "a failed SELECT deselects: {r:?}"
    );
}

#[test]
fn mailbox_management_and_names() {
    let s = server();
    let mut c = login(&s);
    ok(&mut c, "1", "CREATE Projects/2026/");
    let r = ok(&mut c, "2", "LIST \"\" \"Projects*\"");
    assert!(has(&r, "* LIST (\\HasChildren) \"/\" Projects"), "{r:?}");
    assert!(
        has(&r, "* LIST (\\HasNoChildren) \"/\" Projects/2026"),
        "{r:?}"
    );
    let r = ok(&mut c, "3", "LIST \"\" %");
    assert!(!r.iter().any(|l| l.contains("Projects/2026")), "{r:?}");
    let r = cmd(&mut c, "4", "CREATE Projects");
    assert!(r[0].starts_with("4 NO [ALREADYEXISTS]"), "{r:?}");
    let r = cmd(&mut c, "5", "DELETE Projects");
    assert!(r[0].starts_with("5 NO [HASCHILDREN]"), "{r:?}");
    ok(&mut c, "6", "RENAME Projects Old");
    let r = ok(&mut c, "7", "LIST \"\" \"Old/*\"");
    assert!(has(&r, "* LIST (\\HasNoChildren) \"/\" Old/2026"), "{r:?}");
    ok(&mut c, "8", "DELETE Old/2026");
    ok(&mut c, "9", "DELETE Old");
    let r = cmd(&mut c, "10", "DELETE INBOX");
    assert!(r[0].starts_with("10 NO"), "{r:?}");
    // CREATE-SPECIAL-USE (RFC 6154 §3).
    ok(&mut c, "11", "CREATE Later (USE (\\Archive))");
    let r = ok(&mut c, "12", "LIST \"\" Later");
    assert!(
        has(&r, "* LIST (\\HasNoChildren \\Archive) \"/\" Later"),
        "{r:?}"
    );
    let r = cmd(&mut c, "13", "CREATE Odd (USE (\\Bogus))");
    assert!(r[0].starts_with("13 NO [USE]"), "{r:?}");
    // Modified UTF-7 for rev1 (RFC 3501 §5.1.3), UTF-8 after ENABLE UTF8=ACCEPT.
    ok(&mut c, "14", "CREATE &ZeVnLIqe-");
    let r = ok(&mut c, "15", "LIST \"\" &ZeVnLIqe-");
    assert!(
        has(&r, "* LIST (\\HasNoChildren) \"/\" &ZeVnLIqe-"),
        "{r:?}"
    );
    let r = cmd(&mut c, "16", "CREATE &Jjo");
    assert!(r[0].starts_with("16 NO"), "invalid modified UTF-7: {r:?}");
    ok(&mut c, "17", "UNSUBSCRIBE Later");
    let r = ok(&mut c, "18", "LSUB \"\" *");
    assert!(
        !r.iter().any(|l| l.contains("Later")) && r.iter().any(|l| l.contains("INBOX")),
        "{r:?}"
    );
    let r = ok(&mut c, "19", "LIST (SUBSCRIBED) \"\" *");
    assert!(!r.iter().any(|l| l.contains("Later")), "{r:?}");
    let r = ok(&mut c, "20", "ENABLE UTF8=ACCEPT");
    assert_eq!(r[0], "* ENABLED UTF8=ACCEPT");
    let r = ok(&mut c, "21", "LIST \"\" \"日本語\"");
    assert!(
        has(&r, "* LIST (\\HasNoChildren) \"/\" \"日本語\""),
        "{r:?}"
    );
}

#[test]
fn rename_inbox_moves_its_messages() {
    let s = server();
    s.deliver(USER, b"Subject: a\r\n\r\na\r\n");
    s.deliver(USER, b"Subject: b\r\n\r\nb\r\n");
    let mut c = login(&s);
    ok(&mut c, "1", "RENAME INBOX Saved");
    let r = ok(&mut c, "2", "STATUS INBOX (MESSAGES)");
    assert!(r[0].ends_with("(MESSAGES 0)"), "{r:?}");
    let r = ok(&mut c, "3", "STATUS Saved (MESSAGES)");
    assert!(r[0].ends_with("(MESSAGES 2)"), "{r:?}");
}

#[test]
fn fetch_items_and_seen() {
    let s = server();
    let msg = "From: Ann <ann@example.net>\r\nTo: alice@example.org\r\nSubject: Fetch me\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <f1@example.net>\r\nContent-Type: multipart/mixed; boundary=XX\r\nMIME-Version: 1.0\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello part one\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--XX--\r\n";
    s.deliver(USER, msg.as_bytes());
    let mut c = login(&s);
    ok(&mut c, "1", "SELECT INBOX");
    let r = ok(&mut c, "2", "FETCH 1 (FLAGS RFC822.SIZE ENVELOPE)");
    assert!(r[0].starts_with(&format!("* 1 FETCH (FLAGS (\\Recent) RFC822.SIZE {} ENVELOPE (\"Mon, 23 Nov 2026 10:00:00 +0100\" \"Fetch me\" ((\"Ann\" NIL \"ann\" \"example.net\"))", msg.len())), "{r:?}");
    let r = ok(&mut c, "3", "FETCH 1 BODYSTRUCTURE");
    assert!(r[0].contains("\"mixed\" (\"boundary\" \"XX\")"), "{r:?}");
    let r = ok(
        &mut c,
        "4",
        "FETCH 1 (BODY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2])",
    );
    assert!(
        r[0].starts_with("* 1 FETCH (BODY[1] \"Hello part one\" BINARY[2] ~{4}"),
        "{r:?}"
    );
    let joined = r.join("\n");
    assert!(joined.contains("BINARY.SIZE[2] 4"), "{joined}");
    let r = ok(&mut c, "5", "FETCH 1 FLAGS");
    assert_eq!(
        r[0], "* 1 FETCH (FLAGS (\\Recent))",
        "PEEK leaves \\Seen alone"
    );
    let r = ok(&mut c, "6", "FETCH 1 BODY[1]<6.4>");
    assert!(r[0].starts_with("* 1 FETCH (BODY[1]<6> \"part\""), "{r:?}");
    assert!(
        r.join("\n").contains("FLAGS (\\Recent \\Seen)"),
        "BODY[] sets \\Seen and says so: {r:?}"
    );
    let r = ok(&mut c, "7", "UID FETCH 1 (INTERNALDATE)");
    assert!(
        r[0].starts_with("* 1 FETCH (UID 1 INTERNALDATE \""),
        "{r:?}"
    );
    let r = ok(&mut c, "8", "FETCH 1 BODY.PEEK[HEADER.FIELDS (subject)]");
    assert!(
        r[0].starts_with("* 1 FETCH (BODY[HEADER.FIELDS (subject)] {21}"),
        "{r:?}"
    );
}

#[test]
fn store_search_esearch_and_searchres() {
    let s = server();
    for i in 1..=5 {
        s.deliver(
            USER,
            format!("From: sender{i}@example.net\r\nSubject: number {i}\r\n\r\nbody {i}\r\n")
                .as_bytes(),
        );
    }
    let mut c = login(&s);
    ok(&mut c, "1", "SELECT INBOX");
    let r = ok(&mut c, "2", "STORE 2:3 +FLAGS (\\Flagged $Work)");
    assert!(
        has(&r, "* 2 FETCH (FLAGS (\\Recent \\Flagged $Work))"),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.starts_with("* FLAGS (") && l.contains("$Work")),
        "new keyword announced: {r:?}"
    );
    let r = ok(&mut c, "3", "STORE 3 -FLAGS.SILENT (\\Flagged)");
    assert_eq!(r.len(), 1, "silent: {r:?}");
    let r = ok(&mut c, "4", "SEARCH FLAGGED");
    assert_eq!(r[0], "* SEARCH 2");
    let r = ok(
        &mut c,
        "5",
        "SEARCH OR SUBJECT \"number 1\" FROM sender5 NOT KEYWORD $Work",
    );
    assert_eq!(r[0], "* SEARCH 1 5");
    let r = ok(&mut c, "6", "UID SEARCH RETURN (MIN MAX COUNT ALL) 1:*");
    assert_eq!(
        r[0],
        "* ESEARCH (TAG \"6\") UID MIN 1 MAX 5 COUNT 5 ALL 1:5"
    );
    let r = ok(&mut c, "7", "SEARCH RETURN (SAVE) KEYWORD $Work");
    assert_eq!(r.len(), 1, "SAVE alone returns no ESEARCH: {r:?}");
    let r = ok(&mut c, "8", "FETCH $ (UID)");
    assert!(
        has(&r, "* 2 FETCH (UID 2)") && has(&r, "* 3 FETCH (UID 3)"),
        "{r:?}"
    );
    let r = cmd(&mut c, "9", "SEARCH CHARSET KOI8-R ALL");
    assert!(r[0].starts_with("9 NO [BADCHARSET"), "{r:?}");
    let r = ok(&mut c, "10", "SEARCH CHARSET UTF-8 BODY \"body 4\"");
    assert_eq!(r[0], "* SEARCH 4");
    // RFC 5161 §3.1: ENABLE is for the authenticated state only.
    let r = cmd(&mut c, "11", "ENABLE IMAP4rev2");
    assert!(r[0].starts_with("11 BAD"), "{r:?}");
}

#[test]
fn rev2_search_answers_with_esearch() {
    let s = server();
    s.deliver(USER, b"Subject: x\r\n\r\nx\r\n");
    let mut c = login(&s);
    let r = ok(&mut c, "1", "ENABLE IMAP4rev2");
    assert_eq!(r[0], "* ENABLED IMAP4rev2");
    let r = ok(&mut c, "2", "SELECT INBOX");
    assert!(
        !r.iter().any(|l| l.contains("RECENT")),
        "no \\Recent in rev2: {r:?}"
    );
    let r = ok(&mut c, "3", "SEARCH ALL");
    assert_eq!(r[0], "* ESEARCH (TAG \"3\") ALL 1");
    let r = ok(&mut c, "4", "SEARCH SUBJECT nomatch");
    assert_eq!(r[0], "* ESEARCH (TAG \"4\")");
}

#[test]
fn copy_move_expunge_and_uidplus() {
    let s = server();
    for i in 1..=4 {
        s.deliver(USER, format!("Subject: m{i}\r\n\r\n{i}\r\n").as_bytes());
    }
    let mut c = login(&s);
    let r = ok(&mut c, "0", "SELECT INBOX");
    let validity: u32 = r
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let r = ok(&mut c, "1", "COPY 1:2 Archive");
    assert!(r.last().unwrap().starts_with("1 OK [COPYUID "), "{r:?}");
    assert!(r.last().unwrap().contains(" 1:2 1:2]"), "{r:?}");
    let r = cmd(&mut c, "2", "COPY 1 Nowhere");
    assert!(r[0].starts_with("2 NO [TRYCREATE]"), "{r:?}");
    let r = ok(&mut c, "3", "UID MOVE 2 Archive");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* OK [COPYUID ") && l.contains(" 2 3]")),
        "{r:?}"
    );
    assert!(has(&r, "* 2 EXPUNGE"), "{r:?}");
    ok(&mut c, "4", "STORE 1:2 +FLAGS.SILENT (\\Deleted)");
    let r = ok(&mut c, "5", "UID EXPUNGE 3");
    assert_eq!(r[0], "* 2 EXPUNGE", "{r:?}");
    assert_eq!(r.len(), 2, "only UID 3: {r:?}");
    let r = ok(&mut c, "6", "EXPUNGE");
    assert_eq!(r[0], "* 1 EXPUNGE");
    let r = ok(&mut c, "7", "UID SEARCH ALL");
    assert_eq!(r[0], "* SEARCH 4");
    c.send(b"8 APPEND INBOX (\\Seen) \"24-Nov-2026 10:00:00 +0100\" {17}\r\n");
    c.expect("+ ");
    c.send(b"Subject: new\r\n\r\nx\r\n");
    let r = until_tagged(&mut c, "8");
    assert!(r.last().unwrap().starts_with("8 OK [APPENDUID "), "{r:?}");
    let r = ok(&mut c, "8a", "UID FETCH 5 (FLAGS INTERNALDATE)");
    assert!(
        r.iter().any(
            |l| l.contains("INTERNALDATE \"24-Nov-2026 09:00:00 +0000\"") && l.contains("\\Seen")
        ),
        "{r:?}"
    );
    // MULTIAPPEND (RFC 3502): both or neither.
    c.send(b"9 APPEND Archive {12+}\r\nSubject: 1\r\n (\\Flagged) {12+}\r\nSubject: 2\r\n\r\n");
    let r = until_tagged(&mut c, "9");
    assert!(
        r.last().unwrap().starts_with("9 OK [APPENDUID ")
            && r.last().unwrap().ends_with(" 4:5] APPEND completed"),
        "{r:?}"
    );
    let _ = validity;
}

#[test]
fn other_sessions_changes_reach_this_one_at_the_allowed_points() {
    let s = server();
    s.deliver(USER, b"Subject: 1\r\n\r\n1\r\n");
    s.deliver(USER, b"Subject: 2\r\n\r\n2\r\n");
    let mut a = login(&s);
    let mut b = login(&s);
    ok(&mut a, "a1", "SELECT INBOX");
    ok(&mut b, "b1", "SELECT INBOX");
    // \Recent goes to one session only (RFC 3501 §2.3.2).
    let r = ok(&mut b, "b2", "FETCH 1:2 FLAGS");
    assert!(!r.iter().any(|l| l.contains("\\Recent")), "{r:?}");

    ok(&mut b, "b3", "STORE 1 +FLAGS (\\Flagged)");
    s.deliver(USER, b"Subject: 3\r\n\r\n3\r\n");
    ok(&mut b, "b4", "STORE 2 +FLAGS.SILENT (\\Deleted)");
    ok(&mut b, "b5", "EXPUNGE");
    // During FETCH, a may hear of the new message and the flag change, but not
    // of the expunge (RFC 9051 §7.5.1).
    let r = ok(&mut a, "a2", "FETCH 1:* (FLAGS)");
    assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    assert!(has(&r, "* 3 EXISTS"), "{r:?}");
    assert!(
        r.iter()
            .any(|l| l.starts_with("* 1 FETCH (FLAGS (\\Recent \\Flagged))")),
        "{r:?}"
    );
    let r = ok(&mut a, "a3", "NOOP");
    assert!(has(&r, "* 2 EXPUNGE"), "{r:?}");
    let r = ok(&mut a, "a4", "UID SEARCH ALL");
    assert_eq!(r[0], "* SEARCH 1 3");
    let r = ok(&mut a, "a5", "FETCH 2 (UID)");
    assert_eq!(
        r[0], "* 2 FETCH (UID 3)",
        "sequence numbers stay consistent"
    );
}

#[test]
fn idle_pushes_within_100_ms() {
    let s = server();
    let mut idle = login(&s);
    ok(&mut idle, "i1", "SELECT INBOX");
    idle.send_line("i2 IDLE");
    idle.expect("+ ");
    let mut other = login(&s);
    let mut worst = Duration::ZERO;
    for n in 1..=5u32 {
        other.send(format!("o{n} APPEND INBOX {{14+}}\r\nSubject: i\r\n\r\n\r\n").as_bytes());
        // From the commit (the APPEND's OK, after its fsync) to the push: the
        // fsync itself is the disk's time, not the push's (on a machine busy
        // writing back a build it took 245 ms).
        until_tagged(&mut other, &format!("o{n}"));
        let committed = Instant::now();
        let l = idle.line();
        let took = committed.elapsed();
        assert_eq!(l, format!("* {n} EXISTS"));
        assert_eq!(idle.line(), format!("* {n} RECENT"));
        worst = worst.max(took);
    }
    // Delivery by another process (casella deliver) is seen through the store's
    // watcher.
    let start = Instant::now();
    s.deliver(USER, b"Subject: cli\r\n\r\nx\r\n");
    // `deliver` itself takes a while to start; measure from its exit.
    let after_exit = Instant::now();
    assert_eq!(idle.line(), "* 6 EXISTS");
    let cli = after_exit.elapsed();
    idle.line();
    ok(&mut other, "o9", "SELECT INBOX");
    ok(&mut other, "o10", "STORE 1 +FLAGS (\\Seen)");
    let l = idle.line();
    assert!(l.starts_with("* 1 FETCH (FLAGS ("), "{l}");
    idle.send_line("DONE");
    idle.expect("i2 OK");
    assert!(
        worst < Duration::from_millis(100),
        "APPEND to EXISTS took {worst:?}"
    );
    assert!(
        cli < Duration::from_millis(100),
        "deliver to EXISTS took {cli:?} (total {:?})",
        start.elapsed()
    );
}

#[test]
fn pipelined_commands_and_logout() {
    let s = server();
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send(
        format!("1 LOGIN {USER} \"{PASS}\"\r\n2 SELECT INBOX\r\n3 NOOP\r\n4 LOGOUT\r\n").as_bytes(),
    );
    until_tagged(&mut c, "1");
    until_tagged(&mut c, "2");
    until_tagged(&mut c, "3");
    let r = until_tagged(&mut c, "4");
    assert!(r[0].starts_with("* BYE"), "{r:?}");
    assert!(c.is_closed());
}

#[test]
fn id_namespace_unselect_close() {
    let s = server();
    s.deliver(USER, b"Subject: c\r\n\r\nc\r\n");
    let mut c = login(&s);
    let r = ok(&mut c, "1", "ID (\"name\" \"test\" \"version\" \"1\")");
    assert!(r[0].starts_with("* ID (\"name\" \"casella\""), "{r:?}");
    ok(&mut c, "2", "SELECT INBOX");
    ok(&mut c, "3", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    ok(&mut c, "4", "UNSELECT");
    let r = ok(&mut c, "5", "STATUS INBOX (MESSAGES)");
    assert!(
        r[0].ends_with("(MESSAGES 1)"),
        "UNSELECT does not expunge: {r:?}"
    );
    ok(&mut c, "6", "SELECT INBOX");
    let r = ok(&mut c, "7", "CLOSE");
    assert_eq!(r.len(), 1, "CLOSE expunges silently: {r:?}");
    let r = ok(&mut c, "8", "STATUS INBOX (MESSAGES)");
    assert!(r[0].ends_with("(MESSAGES 0)"), "{r:?}");
}

/// With the text index on, SEARCH answers text keys from it and gives the same
/// results as reading every message (the same server, the index switched off),
/// both before the background indexer has read the new mail and after.
#[test]
fn search_with_the_text_index_gives_the_same_answers() {
    let queries = [
        "BODY engine",
        "TEXT \"analytical ENGINE\"",
        "FROM ada",
        "SUBJECT engines",
        "FROM ada BODY engines",
        "OR FROM babbage BODY \"to see\"",
        "NOT BODY engine",
        "BODY caf",
        "SUBJECT \"Café\"",
        "BODY zz",
        "TEXT example.net",
        "BODY engine SUBJECT lunch",
    ];
    let ask = |c: &mut LineClient, round: &str| -> Vec<String> {
        let mut answers = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            c.send_line(&format!("{round}{i} SEARCH {q}"));
            answers.push(c.line());
            c.expect_tagged(&format!("{round}{i} OK"));
        }
        answers
    };
    let mut results = Vec::new();
    for index in ["true", "false"] {
        let s = TestServer::builder(BIN)
            .protocols(&["imaps"])
            .config(&format!(
                "search-index = {index}\nhostname = \"mail.test\"\n[imap]\nauth-failure-delay-ms = 0\nsearch-index-min-messages = 0\n"
            ))
            .start();
        s.add_account("idx@example.org", "idx-pw-1");
        let bodies: [&[u8]; 4] = [
            b"From: Ada Lovelace <ada@example.org>\r\nSubject: Engines\r\n\r\nThe Analytical Engine weaves patterns\r\n",
            b"From: Charles Babbage <cb@example.org>\r\nSubject: Re: Engines\r\n\r\nDifference engine notes\r\n",
            b"From: ada@example.org\r\nSubject: lunch\r\nContent-Type: text/html\r\n\r\n<p>No <b>engines</b> today</p>\r\n",
            b"From: someone@example.net\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n\r\nnothing to see\r\n",
        ];
        for b in bodies {
            s.deliver("idx@example.org", b);
        }
        let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
        c.expect("* OK");
        c.send_line("a LOGIN idx@example.org idx-pw-1");
        c.expect_tagged("a OK");
        c.send_line("b SELECT INBOX");
        c.expect_tagged("b OK");
        results.push(ask(&mut c, "s"));
        if index == "true" {
            // Once the indexer has read everything: the same answers again.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let out = s.cli(&["search-index", "status"], b"");
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                assert!(text.contains("search index: on"), "{text}");
                if text.contains("waiting to be indexed: 0") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{text}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            results.push(ask(&mut c, "t"));
        }
    }
    assert_eq!(results[0], results[2]);
    assert_eq!(results[1], results[2]);
    assert_eq!(results[0][0], "* SEARCH 1 2 3");
    assert_eq!(results[0][2], "* SEARCH 1 3");
    assert_eq!(results[0][4], "* SEARCH 3");
}

/// STORE UNCHANGEDSINCE (RFC 7162 §3.1.3) is a conditional STORE: a message
/// changed after the client's MODSEQ is left alone and named in MODIFIED;
/// the others change, each reported with its new MODSEQ even with .SILENT.
/// Before, the condition was parsed and ignored: another client's change was
/// silently overwritten (issue 18).
#[test]
fn conditional_store_leaves_messages_changed_since_alone() {
    let s = server();
    for i in 1..=3 {
        s.deliver(
            USER,
            format!("Subject: m{i}\r\n\r\nbody {i}\r\n").as_bytes(),
        );
    }
    // The mailbox starts at MODSEQ 1; each delivery takes the next: 2, 3, 4.
    let mut a = login(&s);
    ok(&mut a, "1", "SELECT INBOX");
    let mut b = login(&s);
    ok(&mut b, "1", "SELECT INBOX");
    ok(&mut b, "2", "STORE 2 +FLAGS.SILENT (\\Flagged)");
    let r = cmd(
        &mut a,
        "2",
        "UID STORE 1:3 (UNCHANGEDSINCE 4) +FLAGS.SILENT (\\Deleted)",
    );
    assert!(has(&r, "* 1 FETCH (UID 1 MODSEQ (6))"), "{r:?}");
    assert!(has(&r, "* 3 FETCH (UID 3 MODSEQ (6))"), "{r:?}");
    assert_eq!(
        r.last().unwrap(),
        "2 OK [MODIFIED 2] Conditional STORE failed",
        "{r:?}"
    );
    let r = ok(&mut a, "3", "FETCH 1:3 FLAGS");
    assert!(has(&r, "* 1 FETCH (FLAGS (\\Recent \\Deleted))"), "{r:?}");
    assert!(
        has(&r, "* 2 FETCH (FLAGS (\\Recent \\Flagged))"),
        "left alone: {r:?}"
    );
    assert!(has(&r, "* 3 FETCH (FLAGS (\\Recent \\Deleted))"), "{r:?}");
    // UNCHANGEDSINCE 0 changes nothing (every MODSEQ is above it); sequence
    // numbers in MODIFIED for STORE.
    let r = cmd(
        &mut a,
        "4",
        "STORE 1:3 (UNCHANGEDSINCE 0) -FLAGS (\\Deleted)",
    );
    assert_eq!(r, ["4 OK [MODIFIED 1:3] Conditional STORE failed"], "{r:?}");
    // UNCHANGEDSINCE turned CONDSTORE on (RFC 7162 §3.1): a plain STORE's
    // answer now carries MODSEQ too.
    let r = ok(&mut a, "5", "STORE 1 -FLAGS (\\Deleted)");
    assert!(has(&r, "* 1 FETCH (FLAGS (\\Recent) MODSEQ (7))"), "{r:?}");
}

/// CONDSTORE (RFC 7162 §3.1): SELECT says HIGHESTMODSEQ; ENABLE CONDSTORE;
/// FETCH MODSEQ and FETCH (CHANGEDSINCE) give only what changed, with MODSEQ;
/// once on, flag changes from another session and STORE answers carry MODSEQ;
/// SEARCH MODSEQ says the highest MODSEQ found; STATUS HIGHESTMODSEQ; VANISHED
/// and SELECT (QRESYNC …) are refused (QRESYNC is not offered).
#[test]
fn condstore_select_fetch_changedsince_search_and_status() {
    let s = server();
    for i in 1..=3 {
        s.deliver(
            USER,
            format!("Subject: c{i}\r\n\r\nbody {i}\r\n").as_bytes(),
        );
    }
    // MODSEQs: the mailbox starts at 1, the deliveries take 2, 3, 4.
    let mut a = login(&s);
    let r = ok(&mut a, "1", "CAPABILITY");
    assert!(r[0].contains(" CONDSTORE"), "{r:?}");
    let r = ok(&mut a, "2", "ENABLE CONDSTORE");
    assert!(has(&r, "* ENABLED CONDSTORE"), "{r:?}");
    let r = ok(&mut a, "3", "EXAMINE INBOX");
    assert!(has(&r, "* OK [HIGHESTMODSEQ 4] Highest"), "{r:?}");
    ok(&mut a, "4", "SELECT INBOX");
    let r = ok(&mut a, "5", "FETCH 1:* (UID MODSEQ)");
    assert!(has(&r, "* 1 FETCH (UID 1 MODSEQ (2))"), "{r:?}");
    assert!(has(&r, "* 3 FETCH (UID 3 MODSEQ (4))"), "{r:?}");

    // Another session flags message 2: MODSEQ 5.
    let mut b = login(&s);
    ok(&mut b, "1", "SELECT INBOX");
    ok(&mut b, "2", "STORE 2 +FLAGS.SILENT (\\Flagged)");
    let r = ok(&mut a, "6", "NOOP");
    assert!(
        has(&r, "* 2 FETCH (FLAGS (\\Recent \\Flagged) MODSEQ (5))"),
        "{r:?}"
    );
    // RFC 7162 §3.1.4.1: only what changed after 4, MODSEQ implied.
    let r = ok(&mut a, "7", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 4)");
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        r[0],
        "* 2 FETCH (UID 2 FLAGS (\\Recent \\Flagged) MODSEQ (5))"
    );
    // STORE answers carry MODSEQ once CONDSTORE is on.
    let r = ok(&mut a, "8", "STORE 3 +FLAGS (\\Seen)");
    assert!(
        has(&r, "* 3 FETCH (FLAGS (\\Recent \\Seen) MODSEQ (6))"),
        "{r:?}"
    );
    // RFC 7162 §3.1.5.
    let r = ok(&mut a, "9", "SEARCH MODSEQ 5");
    assert_eq!(r[0], "* SEARCH 2 3 (MODSEQ 6)");
    let r = ok(&mut a, "10", "UID SEARCH RETURN (ALL) MODSEQ 6");
    assert_eq!(r[0], "* ESEARCH (TAG \"10\") UID ALL 3 MODSEQ 6");
    let r = ok(&mut a, "11", "SEARCH MODSEQ 7");
    assert_eq!(r[0], "* SEARCH");
    let r = ok(&mut b, "3", "STATUS INBOX (HIGHESTMODSEQ MESSAGES)");
    assert!(
        has(&r, "* STATUS INBOX (HIGHESTMODSEQ 6 MESSAGES 3)"),
        "{r:?}"
    );
    let r = cmd(
        &mut a,
        "12",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
    );
    assert!(r.last().unwrap().starts_with("12 BAD"), "{r:?}");
    let r = cmd(&mut a, "13", "SELECT INBOX (QRESYNC (1 2))");
    assert!(r.last().unwrap().starts_with("13 BAD"), "{r:?}");
}
