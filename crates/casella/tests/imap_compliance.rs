//! What Dovecot's imaptest checks (issue 18), byte for byte against a real
//! listening server: command lines at and over the size limit (group `id`),
//! MOVE into the selected mailbox (`move`), mailbox names that are not valid
//! modified UTF-7 (`atoms`), and binary content kept as sent (`append-binary`).

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "secret pw";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["imap", "imaps"])
        .config("hostname = \"mail.test\"\n[imap]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account(USER, PASS);
    s
}

fn login(s: &TestServer) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("l LOGIN {USER} \"{PASS}\""));
    c.expect_tagged("l OK");
    c
}

/// Sends `command` with its tag; every line up to the tagged reply.
fn cmd(c: &mut LineClient, tag: &str, command: &str) -> Vec<String> {
    c.send_line(&format!("{tag} {command}"));
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
    let r = cmd(&mut c, "a", &id[2..]);
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
    let r = cmd(&mut c, "s", "SELECT INBOX");
    let v = uid_validity(&r);
    assert_eq!(
        cmd(&mut c, "m", "MOVE 1 INBOX"),
        [
            format!("* OK [COPYUID {v} 1 3] Moved"),
            "* 1 EXPUNGE".into(),
            "* 2 EXISTS".into(),
            "* 2 RECENT".into(),
            "m OK MOVE completed".into(),
        ]
    );
    assert_eq!(
        cmd(&mut c, "u", "UID MOVE 2 INBOX"),
        [
            format!("* OK [COPYUID {v} 2 4] Moved"),
            "* 1 EXPUNGE".into(),
            "* 2 EXISTS".into(),
            "* 2 RECENT".into(),
            "u OK UID MOVE completed".into(),
        ]
    );
    assert_eq!(
        cmd(&mut c, "f", "FETCH 1:* (UID BODY.PEEK[TEXT])"),
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
        cmd(&mut c, "1", "SELECT &Jjo"),
        ["1 NO [CANNOT] Mailbox name \"&Jjo\" is not valid modified UTF-7"]
    );
    assert_eq!(
        cmd(&mut c, "2", "SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}"),
        [
            "2 NO [CANNOT] Mailbox name \"!#$&'+,-.0123456789:;<=>?@^_`|[}\" is not valid modified UTF-7"
        ]
    );
    assert_eq!(
        cmd(&mut c, "3", "LIST \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*"),
        ["3 OK LIST completed"]
    );
    assert_eq!(cmd(&mut c, "4", "LIST &Jjo *"), ["4 OK LIST completed"]);
    assert_eq!(cmd(&mut c, "5", "LSUB \"\" &Jjo"), ["5 OK LSUB completed"]);
    assert_eq!(
        cmd(&mut c, "6", "SELECT ~foo"),
        ["6 NO [NONEXISTENT] No such mailbox"]
    );
    assert_eq!(cmd(&mut c, "7", "LIST \"\" ~foo"), ["7 OK LIST completed"]);
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
    cmd(&mut c, "s", "SELECT INBOX");

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
            cmd(&mut c, &format!("c{i}"), &format!("CREATE {name}")),
            [format!("c{i} OK CREATE completed")]
        );
    }
    assert_eq!(
        cmd(&mut c, "1", "LSUB \"\" b/*"),
        ["1 OK LSUB completed"],
        "CREATE does not subscribe"
    );
    for (i, name) in ["b/test", "b/test2/test", "b/test3/test3", "b/gone"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            cmd(&mut c, &format!("s{i}"), &format!("SUBSCRIBE {name}")),
            [format!("s{i} OK SUBSCRIBE completed")]
        );
    }
    assert_eq!(cmd(&mut c, "2", "DELETE b/gone"), ["2 OK DELETE completed"]);
    assert_eq!(
        cmd(&mut c, "3", "LSUB \"\" b/%"),
        [
            "* LSUB (\\Noselect) \"/\" b/gone",
            "* LSUB () \"/\" b/test",
            "* LSUB (\\Noselect) \"/\" b/test2",
            "* LSUB (\\Noselect) \"/\" b/test3",
            "3 OK LSUB completed",
        ]
    );
    assert_eq!(
        cmd(&mut c, "4", "LIST (SUBSCRIBED) \"\" b/*"),
        [
            "* LIST (\\NonExistent \\Subscribed) \"/\" b/gone",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" b/test",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" b/test2/test",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" b/test3/test3",
            "4 OK LIST completed",
        ]
    );
    assert_eq!(
        cmd(
            &mut c,
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
        cmd(&mut c, "6", "SUBSCRIBE later/maybe"),
        ["6 OK SUBSCRIBE completed"]
    );
    assert_eq!(
        cmd(&mut c, "7", "UNSUBSCRIBE b/gone"),
        ["7 OK UNSUBSCRIBE completed"]
    );
    assert_eq!(
        cmd(&mut c, "8", "LSUB \"\" l*e"),
        [
            "* LSUB (\\Noselect) \"/\" later/maybe",
            "8 OK LSUB completed"
        ]
    );
    // Plain LIST lists mailboxes, not subscriptions.
    assert_eq!(
        cmd(&mut c, "9", "LIST \"\" later*"),
        ["9 OK LIST completed"]
    );
    // RENAME carries the subscription along.
    assert_eq!(
        cmd(&mut c, "10", "RENAME b/test b/renamed"),
        ["10 OK RENAME completed"]
    );
    assert_eq!(
        cmd(&mut c, "11", "LSUB \"\" b/%"),
        [
            "* LSUB () \"/\" b/renamed",
            "* LSUB (\\Noselect) \"/\" b/test2",
            "* LSUB (\\Noselect) \"/\" b/test3",
            "11 OK LSUB completed",
        ]
    );
}
