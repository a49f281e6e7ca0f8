//! What Dovecot's imaptest checks (issue 18), byte for byte against a real
//! listening server: command lines at and over the size limit (group `id`),
//! MOVE into the selected mailbox (`move`), mailbox names that are not valid
//! modified UTF-7 (`atoms`), binary content kept as sent (`append-binary`),
//! subscriptions (`subscribe`, `listext`); and QRESYNC (RFC 7162 §3.2):
//! ENABLE, SELECT (QRESYNC …) with and without known UIDs, UID FETCH
//! (CHANGEDSINCE … VANISHED), VANISHED in place of EXPUNGE, [CLOSED], and a
//! client that reconnects to a 10,000-message mailbox after 20 changes and 5
//! expunges and is told exactly those.

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

/// UIDVALIDITY from a SELECT's replies.
fn uid_validity(lines: &[String]) -> u32 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("* OK [UIDVALIDITY "))
        .and_then(|r| r.split(']').next())
        .and_then(|v| v.parse().ok())
        .expect("UIDVALIDITY")
}

/// imaptest `id`: RFC 2971 §3.3 allows 30 field-value pairs, fields of at
/// most 30 octets and values of at most 1,024; such an ID is one line of
/// about 32 KiB, sent before login. A line over the limit ends with a tagged
/// BAD (not an untagged one the client cannot pair with its command), and
/// the session goes on.
#[test]
fn an_id_at_rfc_2971_maximum_is_taken_and_a_longer_line_gets_a_tagged_bad() {
    let s = server();
    let mut c = LineClient::connect(s.addr("imap"));
    c.expect("* OK");
    let pairs: Vec<String> = (0..30)
        .map(|i| format!("\"{:0>30}\" \"{}\"", i, "v".repeat(1024)))
        .collect();
    let id = format!("a ID ({})", pairs.join(" "));
    assert!(id.len() > 31_000, "{}", id.len());
    let r = c.imap("a", &id[2..]);
    assert!(r[0].starts_with("* ID ("), "{r:?}");
    assert_eq!(r.last().unwrap(), "a OK ID completed");

    // Over the limit (64 KiB): answered with the command's tag.
    c.send_line(&format!("b NOOP {}", "x".repeat(70_000)));
    assert_eq!(
        c.line(),
        "b BAD Command line too long (the limit is 65536 bytes)"
    );
    c.send_line("c NOOP");
    assert_eq!(c.line(), "c OK NOOP completed");

    // The same after login, and on the line after a literal.
    let mut c = login(&s);
    c.send_line(&format!("d NOOP {}", "y".repeat(70_000)));
    assert_eq!(
        c.line(),
        "d BAD Command line too long (the limit is 65536 bytes)"
    );
    c.send(b"e SELECT {5+}\r\nINBOX");
    c.send_line(&format!(" {}", "z".repeat(70_000)));
    assert_eq!(
        c.line(),
        "e BAD Command line too long (the limit is 65536 bytes)"
    );
    c.send_line("f NOOP");
    assert_eq!(c.line(), "f OK NOOP completed");
}

/// imaptest `move`: MOVE into the selected mailbox is performed (RFC 6851
/// §3.3 does not forbid it; Dovecot does it): new UIDs, COPYUID before the
/// EXPUNGE, then the new message's EXISTS (and RECENT: an IMAP4rev1 session).
#[test]
fn move_into_the_selected_mailbox_renumbers_the_messages() {
    let s = server();
    for i in 1..=2 {
        s.deliver(USER, format!("Subject: m{i}\r\n\r\n{i}\r\n").as_bytes());
    }
    let mut c = login(&s);
    let r = c.imap("s", "SELECT INBOX");
    let v = uid_validity(&r);
    assert_eq!(
        c.imap("m", "MOVE 1 INBOX"),
        [
            format!("* OK [COPYUID {v} 1 3] Moved"),
            "* 1 EXPUNGE".into(),
            "* 2 EXISTS".into(),
            "* 2 RECENT".into(),
            "m OK MOVE completed".into(),
        ]
    );
    assert_eq!(
        c.imap("u", "UID MOVE 2 INBOX"),
        [
            format!("* OK [COPYUID {v} 2 4] Moved"),
            "* 1 EXPUNGE".into(),
            "* 2 EXISTS".into(),
            "* 2 RECENT".into(),
            "u OK UID MOVE completed".into(),
        ]
    );
    assert_eq!(
        c.imap("f", "FETCH 1:* (UID BODY.PEEK[TEXT])"),
        [
            "* 1 FETCH (UID 3 BODY[TEXT] {3}",
            "1",
            ")",
            "* 2 FETCH (UID 4 BODY[TEXT] {3}",
            "2",
            ")",
            "f OK FETCH completed",
        ]
    );
}

/// imaptest `atoms`: a name that is not valid modified UTF-7 (RFC 9051
/// §5.1.3) is a well-formed command naming no mailbox: NO for SELECT, an
/// empty OK for LIST and LSUB (not BAD).
#[test]
fn names_that_are_not_modified_utf7_name_no_mailbox() {
    let s = server();
    let mut c = login(&s);
    assert_eq!(
        c.imap("1", "SELECT &Jjo"),
        ["1 NO [CANNOT] Mailbox name \"&Jjo\" is not valid modified UTF-7"]
    );
    assert_eq!(
        c.imap("2", "SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}"),
        [
            "2 NO [CANNOT] Mailbox name \"!#$&'+,-.0123456789:;<=>?@^_`|[}\" is not valid modified UTF-7"
        ]
    );
    assert_eq!(
        c.imap("3", "LIST \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*"),
        ["3 OK LIST completed"]
    );
    assert_eq!(c.imap("4", "LIST &Jjo *"), ["4 OK LIST completed"]);
    assert_eq!(c.imap("5", "LSUB \"\" &Jjo"), ["5 OK LSUB completed"]);
    assert_eq!(
        c.imap("6", "SELECT ~foo"),
        ["6 NO [NONEXISTENT] No such mailbox"]
    );
    assert_eq!(c.imap("7", "LIST \"\" ~foo"), ["7 OK LIST completed"]);
}

/// imaptest `append-binary`: a message sent as literal8 (RFC 3516 §4.4) is
/// kept octet for octet (its bare LFs are content, not line ends); BINARY
/// gives the part back as sent, in a literal8 since it holds NUL; BODY, a
/// plain literal, cannot carry NUL (RFC 9051 §9) and sends it as 0x80.
#[test]
fn binary_append_keeps_its_bytes_and_nul_never_goes_in_a_plain_literal() {
    let s = server();
    let mut c = login(&s);
    let part: &[u8] = b"\0-\xe4\n\r\n\n";
    let mut message = b"From: user@example.org\r\n\
        Content-Type: application/octet-stream\r\n\
        Content-Transfer-Encoding: binary\r\n\r\n"
        .to_vec();
    message.extend_from_slice(part);
    let mut append = format!("a APPEND INBOX ~{{{}+}}\r\n", message.len()).into_bytes();
    append.extend_from_slice(&message);
    append.extend_from_slice(b"\r\n");
    c.send(&append);
    c.expect_tagged("a OK [APPENDUID ");
    c.imap("s", "SELECT INBOX");

    c.send_line("b FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])");
    let mut want = b"* 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n".to_vec();
    want.extend_from_slice(part);
    want.extend_from_slice(b")\r\nb OK FETCH completed\r\n");
    assert_eq!(
        String::from_utf8_lossy(&c.read_until(b"b OK FETCH completed\r\n")),
        String::from_utf8_lossy(&want)
    );

    c.send_line("c FETCH 1 (RFC822.SIZE BODY.PEEK[1])");
    let size = message.len();
    let mut want = format!("* 1 FETCH (RFC822.SIZE {size} BODY[1] {{7}}\r\n").into_bytes();
    want.extend_from_slice(b"\x80-\xe4\n\r\n\n");
    want.extend_from_slice(b")\r\nc OK FETCH completed\r\n");
    let got = c.read_until(b"c OK FETCH completed\r\n");
    assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&got));
}

/// imaptest `subscribe` and `listext`: subscriptions are a list of names
/// (RFC 9051 §6.3.7). CREATE does not subscribe; a deleted mailbox stays
/// subscribed and is listed `\NonExistent`; LSUB `%` gives an unsubscribed
/// parent of subscribed names as `\Noselect`; RECURSIVEMATCH reports
/// `CHILDINFO ("SUBSCRIBED")` for parents of subscriptions the pattern does
/// not reach (RFC 5258 §3.5).
#[test]
fn subscriptions_are_names_and_lists_show_them() {
    let s = server();
    let mut c = login(&s);
    for (i, name) in ["b/test", "b/test2/test", "b/test3/test3", "b/gone"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            c.imap(&format!("c{i}"), &format!("CREATE {name}")),
            [format!("c{i} OK CREATE completed")]
        );
    }
    assert_eq!(
        c.imap("1", "LSUB \"\" b/*"),
        ["1 OK LSUB completed"],
        "CREATE does not subscribe"
    );
    for (i, name) in ["b/test", "b/test2/test", "b/test3/test3", "b/gone"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            c.imap(&format!("s{i}"), &format!("SUBSCRIBE {name}")),
            [format!("s{i} OK SUBSCRIBE completed")]
        );
    }
    assert_eq!(c.imap("2", "DELETE b/gone"), ["2 OK DELETE completed"]);
    assert_eq!(
        c.imap("3", "LSUB \"\" b/%"),
        [
            "* LSUB (\\Noselect) \"/\" b/gone",
            "* LSUB () \"/\" b/test",
            "* LSUB (\\Noselect) \"/\" b/test2",
            "* LSUB (\\Noselect) \"/\" b/test3",
            "3 OK LSUB completed",
        ]
    );
    assert_eq!(
        c.imap("4", "LIST (SUBSCRIBED) \"\" b/*"),
        [
            "* LIST (\\NonExistent \\Subscribed) \"/\" b/gone",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" b/test",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" b/test2/test",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" b/test3/test3",
            "4 OK LIST completed",
        ]
    );
    assert_eq!(
        c.imap(
            "5",
            "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" b/test2% RETURN (CHILDREN)"
        ),
        [
            "* LIST (\\HasChildren) \"/\" b/test2 (\"CHILDINFO\" (\"SUBSCRIBED\"))",
            "5 OK LIST completed",
        ]
    );
    // A subscription that needs no mailbox, and one that goes.
    assert_eq!(
        c.imap("6", "SUBSCRIBE later/maybe"),
        ["6 OK SUBSCRIBE completed"]
    );
    assert_eq!(
        c.imap("7", "UNSUBSCRIBE b/gone"),
        ["7 OK UNSUBSCRIBE completed"]
    );
    assert_eq!(
        c.imap("8", "LSUB \"\" l*e"),
        [
            "* LSUB (\\Noselect) \"/\" later/maybe",
            "8 OK LSUB completed"
        ]
    );
    // Plain LIST lists mailboxes, not subscriptions.
    assert_eq!(c.imap("9", "LIST \"\" later*"), ["9 OK LIST completed"]);
    // RENAME carries the subscription along.
    assert_eq!(
        c.imap("10", "RENAME b/test b/renamed"),
        ["10 OK RENAME completed"]
    );
    assert_eq!(
        c.imap("11", "LSUB \"\" b/%"),
        [
            "* LSUB () \"/\" b/renamed",
            "* LSUB (\\Noselect) \"/\" b/test2",
            "* LSUB (\\Noselect) \"/\" b/test3",
            "11 OK LSUB completed",
        ]
    );
}

// ---- QRESYNC (RFC 7162 §3.2) ----

/// The number in a response code `[NAME n]` among `lines`.
fn code(lines: &[String], name: &str) -> u64 {
    let prefix = format!("* OK [{name} ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|r| r.split(']').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {lines:?}"))
}

/// Appends `count` small messages to INBOX with MULTIAPPEND and LITERAL+,
/// `batch` per command.
fn fill(c: &mut LineClient, count: usize, batch: usize) {
    let mut n = 0;
    while n < count {
        let mut command = b"fill APPEND INBOX".to_vec();
        for _ in 0..batch.min(count - n) {
            n += 1;
            let msg = format!("Subject: message {n}\r\n\r\nbody {n}\r\n");
            command.extend_from_slice(format!(" {{{}+}}\r\n", msg.len()).as_bytes());
            command.extend_from_slice(msg.as_bytes());
        }
        command.extend_from_slice(b"\r\n");
        c.send(&command);
        c.expect_tagged("fill OK");
    }
}

#[test]
fn qresync_select_fetch_vanished_and_expunge() {
    let s = server();
    let mut c = login(&s);
    fill(&mut c, 5, 5);
    // Not enabled yet: the parameter is refused.
    assert_eq!(
        c.imap("1", "SELECT INBOX (QRESYNC (1 1))"),
        ["1 BAD QRESYNC parameter requires ENABLE QRESYNC first"]
    );
    assert_eq!(
        c.imap("2", "ENABLE QRESYNC"),
        ["* ENABLED QRESYNC", "2 OK ENABLE completed"]
    );
    let selected = c.imap("3", "SELECT INBOX");
    let validity = code(&selected, "UIDVALIDITY");
    let known = code(&selected, "HIGHESTMODSEQ");
    // Changes after what the client knows: a flag, an expunge.
    // RFC 7162 §3.1.3: with CONDSTORE on, even .SILENT tells the MODSEQ.
    let r = c.imap("4", "UID STORE 2 +FLAGS.SILENT (\\Seen)");
    assert!(r[0].starts_with("* 2 FETCH (UID 2 MODSEQ ("), "{r:?}");
    c.imap("5", "UID STORE 3 +FLAGS.SILENT (\\Deleted)");
    // RFC 7162 §3.2.10: VANISHED, not EXPUNGE, once QRESYNC is on; the tagged
    // OK says the MODSEQ now reached.
    let r = c.imap("6", "EXPUNGE");
    assert_eq!(r[0], "* VANISHED 3");
    assert!(
        r[1].starts_with("6 OK [HIGHESTMODSEQ ") && r[1].ends_with("] EXPUNGE completed"),
        "{r:?}"
    );
    // UID FETCH … (CHANGEDSINCE m VANISHED): what vanished in the set, then
    // what changed.
    let r = c.imap(
        "7",
        &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)"),
    );
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r[0], "* VANISHED (EARLIER) 3");
    // (\Recent too: this is a rev1 session, and the messages are new to it.)
    assert!(
        r[1].starts_with("* 2 FETCH (UID 2 FLAGS (\\Recent \\Seen) MODSEQ ("),
        "{r:?}"
    );
    assert_eq!(
        c.imap("8", "UID FETCH 4:5 (FLAGS) (CHANGEDSINCE 1 VANISHED)")
            .iter()
            .filter(|l| l.contains("VANISHED"))
            .count(),
        0,
        "3 is not in 4:5"
    );
    // Reselecting with what the client knew: [CLOSED] for the old
    // selection, the change as FETCH (UID FLAGS MODSEQ), the expunge as
    // VANISHED (EARLIER).
    let r = c.imap("9", &format!("SELECT INBOX (QRESYNC ({validity} {known}))"));
    assert_eq!(r[0], "* OK [CLOSED] Previous mailbox closed");
    let fetches: Vec<&String> = r.iter().filter(|l| l.contains(" FETCH ")).collect();
    assert_eq!(fetches.len(), 1, "{r:?}");
    assert!(
        fetches[0].starts_with("* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ ("),
        "no longer \\Recent for a second SELECT: {r:?}"
    );
    assert!(r.contains(&"* VANISHED (EARLIER) 3".to_string()), "{r:?}");
    assert!(r.last().unwrap().starts_with("9 OK [READ-WRITE]"), "{r:?}");
    // Known UIDs limit both.
    let r = c.imap(
        "10",
        &format!("EXAMINE INBOX (QRESYNC ({validity} {known} 4:5))"),
    );
    assert!(
        !r.iter()
            .any(|l| l.contains("FETCH") || l.contains("VANISHED")),
        "{r:?}"
    );
    // Another UIDVALIDITY: a plain SELECT.
    let r = c.imap(
        "11",
        &format!("EXAMINE INBOX (QRESYNC ({} 1))", validity + 1),
    );
    assert!(
        !r.iter()
            .any(|l| l.contains("FETCH") || l.contains("VANISHED")),
        "{r:?}"
    );
    // Another session's expunge reaches this one as VANISHED too.
    c.imap("12", "SELECT INBOX");
    let mut other = login(&s);
    other.imap("o1", "SELECT INBOX");
    other.imap("o2", "UID STORE 4:5 +FLAGS.SILENT (\\Deleted)");
    other.imap("o3", "EXPUNGE");
    let r = c.imap("13", "NOOP");
    assert!(r.contains(&"* VANISHED 4:5".to_string()), "{r:?}");
}

/// The resync: a client knows UIDVALIDITY and HIGHESTMODSEQ of a
/// 10,000-message mailbox; after 20 flag changes and 5 expunges elsewhere it
/// reselects with QRESYNC and is told exactly those.
#[test]
fn a_client_resyncs_a_10000_message_mailbox_with_exactly_the_changes() {
    let s = server();
    let mut c = login(&s);
    fill(&mut c, 10_000, 1_000);
    let selected = c.imap("1", "EXAMINE INBOX");
    assert!(selected.contains(&"* 10000 EXISTS".to_string()));
    let validity = code(&selected, "UIDVALIDITY");
    let known = code(&selected, "HIGHESTMODSEQ");
    c.imap("2", "LOGOUT");

    let changed: Vec<u32> = (1..=20).map(|i| i * 487).collect();
    let expunged: Vec<u32> = vec![3, 4, 5000, 9998, 10_000];
    let mut other = login(&s);
    other.imap("o1", "SELECT INBOX");
    for (i, uid) in changed.iter().enumerate() {
        // One command each: 20 changes, 20 MODSEQs.
        other.imap(
            &format!("f{i}"),
            &format!("UID STORE {uid} +FLAGS.SILENT (\\Flagged)"),
        );
    }
    let set = expunged
        .iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(",");
    other.imap("o2", &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"));
    other.imap("o3", &format!("UID EXPUNGE {set}"));

    let mut c = login(&s);
    c.imap("3", "ENABLE QRESYNC");
    let r = c.imap("4", &format!("SELECT INBOX (QRESYNC ({validity} {known}))"));
    assert!(r.contains(&"* 9995 EXISTS".to_string()), "{:?}", &r[..5]);
    let fetched: Vec<u32> = r
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .map(|l| {
            assert!(
                l.contains("FLAGS (\\Flagged)") && l.contains(" MODSEQ ("),
                "{l}"
            );
            l.split("(UID ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|u| u.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        })
        .collect();
    assert_eq!(fetched, changed);
    let vanished: Vec<&String> = r.iter().filter(|l| l.contains("VANISHED")).collect();
    assert_eq!(
        vanished,
        [&"* VANISHED (EARLIER) 3:4,5000,9998,10000".to_string()]
    );
    assert!(r.last().unwrap().starts_with("4 OK [READ-WRITE]"), "{r:?}");
    // Nothing else per message: the answer is the changes, not the mailbox.
    assert!(r.len() < 40, "{} lines", r.len());
}

// ---- CATENATE (RFC 4469) ----

/// Sends `APPEND` `args` where each `{}` in `args` is replaced by a
/// synchronising-free literal (LITERAL+) of the next of `literals`.
fn append_with_literals(
    c: &mut LineClient,
    tag: &str,
    args: &str,
    literals: &[&str],
) -> Vec<String> {
    let mut command = format!("{tag} APPEND ");
    let mut rest = args;
    for lit in literals {
        let (before, after) = rest.split_once("{}").expect("a {} per literal");
        command.push_str(before);
        command.push_str(&format!("{{{}+}}\r\n{lit}", lit.len()));
        rest = after;
    }
    command.push_str(rest);
    command.push_str("\r\n");
    c.send(command.as_bytes());
    c.until_tagged(tag)
}

/// The bytes of `BODY.PEEK[]` of UID `uid` in the selected mailbox.
fn body_of(c: &mut LineClient, tag: &str, uid: u32) -> String {
    c.send_line(&format!("{tag} UID FETCH {uid} (BODY.PEEK[])"));
    let head = c.line();
    // A short body without line ends comes as a quoted string.
    if let Some(quoted) = head.split("BODY[] \"").nth(1) {
        c.expect_tagged(&format!("{tag} OK"));
        return quoted
            .trim_end_matches(")")
            .trim_end_matches('"')
            .to_string();
    }
    let n: usize = head
        .rsplit('{')
        .next()
        .and_then(|r| r.strip_suffix('}'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{head}"));
    let mut body = Vec::new();
    while body.len() < n {
        body.extend_from_slice(c.line().as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    c.expect_tagged(&format!("{tag} OK"));
    String::from_utf8(body[..n].to_vec()).unwrap()
}

#[test]
fn catenate_puts_messages_together_from_text_and_urls() {
    let s = server();
    let mut c = login(&s);
    let original = "From: a@example.org\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n";
    let r = append_with_literals(&mut c, "1", "INBOX {}", &[original]);
    assert!(r[0].starts_with("1 OK [APPENDUID "), "{r:?}");
    let validity: u32 = r[0].split(' ').nth(3).unwrap().parse().unwrap();
    c.imap("2", "CREATE Drafts/new");
    // RFC 4469 §3's use: a forward made of the original's header, new text
    // and one of its parts.
    let r = append_with_literals(
        &mut c,
        "3",
        &format!(
            "Drafts/new (\\Draft) CATENATE (URL \"/INBOX;UIDVALIDITY={validity}/;UID=1/;SECTION=HEADER\" TEXT {{}} URL \"/INBOX/;UID=1/;SECTION=2\" URL \"imap://alice@example.org/INBOX/;UID=1/;SECTION=1/;PARTIAL=0.5\" TEXT {{}})"
        ),
        &["new text: ", "\r\n"],
    );
    assert!(r.last().unwrap().starts_with("3 OK [APPENDUID "), "{r:?}");
    c.imap("4", "SELECT Drafts/new");
    assert_eq!(
        body_of(&mut c, "5", 1),
        "From: a@example.org\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\nnew text: second partfirst\r\n"
    );
    // MULTIAPPEND of a CATENATE and a plain literal.
    let r = append_with_literals(
        &mut c,
        "6",
        "Drafts/new CATENATE (URL \"/INBOX/;UID=1/;SECTION=1\") {}",
        &["Subject: plain\r\n\r\nplain\r\n"],
    );
    assert!(r.last().unwrap().contains("APPENDUID"), "{r:?}");
    assert_eq!(body_of(&mut c, "7", 2), "first part");
    // A URL that names nothing fails the whole APPEND; nothing is stored.
    for (tag, url) in [
        ("8", format!("/INBOX;UIDVALIDITY={}/;UID=1", validity + 1)),
        ("9", "/INBOX/;UID=99".to_string()),
        ("10", "/Nowhere/;UID=1".to_string()),
        ("11", "/INBOX/;UID=1/;SECTION=7".to_string()),
        ("12", "imap://mallory@example.org/INBOX/;UID=1".to_string()),
    ] {
        let r = append_with_literals(
            &mut c,
            tag,
            &format!("Drafts/new CATENATE (TEXT {{}} URL \"{url}\")"),
            &["x"],
        );
        assert!(
            r.last()
                .unwrap()
                .starts_with(&format!("{tag} NO [BADURL {url}] ")),
            "{r:?}"
        );
    }
    let r = c.imap("13", "STATUS Drafts/new (MESSAGES)");
    assert_eq!(r[0], "* STATUS Drafts/new (MESSAGES 3)");
    // The destination is looked at first.
    let r = append_with_literals(&mut c, "14", "Nowhere CATENATE (TEXT {})", &["x"]);
    assert!(r.last().unwrap().starts_with("14 NO [TRYCREATE]"), "{r:?}");
}

// ---- NOTIFY (RFC 5465) ----

#[test]
fn notify_tells_of_changes_between_commands() {
    let s = server();
    let mut c = login(&s);
    let mut other = login(&s);
    c.imap("1", "CREATE Lists");
    append_with_literals(&mut c, "2", "Lists {}", &["Subject: one\r\n\r\none\r\n"]);
    let r = c.imap("3", "STATUS Lists (UIDVALIDITY)");
    let validity = r[0]
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    // §3.1: STATUS now for the mailboxes the groups name.
    assert_eq!(
        c.imap(
            "4",
            "NOTIFY SET STATUS (mailboxes Lists (MessageNew MessageExpunge))"
        ),
        [
            format!("* STATUS Lists (MESSAGES 1 UIDNEXT 2 UIDVALIDITY {validity})"),
            "4 OK NOTIFY completed".to_string()
        ]
    );
    // Unsupported events and broken groups are refused.
    let r = c.imap(
        "5",
        "NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))",
    );
    assert!(r[0].starts_with("5 NO [BADEVENT ("), "{r:?}");
    let r = c.imap(
        "6",
        "NOTIFY SET (personal (MessageNew (UID) MessageExpunge))",
    );
    assert!(r[0].starts_with("6 BAD "), "{r:?}");
    c.imap("7", "SELECT INBOX");
    assert_eq!(
        c.imap(
            "8",
            "NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) \
             (personal (MessageNew MessageExpunge MailboxName SubscriptionChange))"
        ),
        ["8 OK NOTIFY completed"]
    );
    // No command from this client from here on: everything comes unasked.
    s.deliver(USER, b"Subject: new\r\n\r\nnew\r\n");
    let r = c.until_prefix("* 1 FETCH");
    assert!(r.contains(&"* 1 EXISTS".to_string()), "{r:?}");
    assert!(
        r.last().unwrap().starts_with("* 1 FETCH (UID 1 FLAGS ("),
        "{r:?}"
    );
    append_with_literals(
        &mut other,
        "o1",
        "Lists {}",
        &["Subject: two\r\n\r\ntwo\r\n"],
    );
    let r = c.until_prefix("* STATUS Lists");
    assert_eq!(r.last().unwrap(), "* STATUS Lists (MESSAGES 2 UIDNEXT 3)");
    other.imap("o2", "CREATE Fresh");
    assert_eq!(
        c.until_prefix("* LIST").last().unwrap(),
        "* LIST () \"/\" Fresh"
    );
    other.imap("o3", "RENAME Fresh Fresher");
    assert_eq!(
        c.until_prefix("* LIST").last().unwrap(),
        "* LIST () \"/\" Fresher (\"OLDNAME\" (Fresh))"
    );
    other.imap("o4", "SUBSCRIBE Fresher");
    assert_eq!(
        c.until_prefix("* LIST").last().unwrap(),
        "* LIST (\\Subscribed) \"/\" Fresher"
    );
    other.imap("o5", "DELETE Fresher");
    assert_eq!(
        c.until_prefix("* LIST").last().unwrap(),
        "* LIST (\\NonExistent) \"/\" Fresher"
    );
    other.imap("o6", "SELECT INBOX");
    other.imap("o7", "STORE 1 +FLAGS (\\Flagged)");
    let r = c.until_prefix("* 1 FETCH");
    assert!(r.last().unwrap().contains("\\Flagged"), "{r:?}");
    other.imap("o8", "STORE 1 +FLAGS (\\Deleted)");
    other.imap("o9", "EXPUNGE");
    c.until_prefix("* 1 EXPUNGE");
    // NOTIFY NONE: back to being told at commands only.
    assert_eq!(c.imap("9", "NOTIFY NONE"), ["9 OK NOTIFY completed"]);
    append_with_literals(
        &mut other,
        "o10",
        "INBOX {}",
        &["Subject: later\r\n\r\nlater\r\n"],
    );
    let r = c.imap("10", "NOOP");
    assert_eq!(
        r.iter().filter(|l| l.ends_with(" EXISTS")).count(),
        1,
        "{r:?}"
    );
}
