//! QRESYNC (RFC 7162 §3.2) against a real listening server, byte for byte:
//! ENABLE, SELECT (QRESYNC …) with and without known UIDs, UID FETCH
//! (CHANGEDSINCE … VANISHED), VANISHED in place of EXPUNGE, [CLOSED], and a
//! client that reconnects to a 10,000-message mailbox after 20 changes and 5
//! expunges and is told exactly those.

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
        cmd(&mut c, "1", "SELECT INBOX (QRESYNC (1 1))"),
        ["1 BAD QRESYNC parameter requires ENABLE QRESYNC first"]
    );
    assert_eq!(
        cmd(&mut c, "2", "ENABLE QRESYNC"),
        ["* ENABLED QRESYNC", "2 OK ENABLE completed"]
    );
    let selected = cmd(&mut c, "3", "SELECT INBOX");
    let validity = code(&selected, "UIDVALIDITY");
    let known = code(&selected, "HIGHESTMODSEQ");
    // Changes after what the client knows: a flag, an expunge.
    // RFC 7162 §3.1.3: with CONDSTORE on, even .SILENT tells the MODSEQ.
    let r = cmd(&mut c, "4", "UID STORE 2 +FLAGS.SILENT (\\Seen)");
    assert!(r[0].starts_with("* 2 FETCH (UID 2 MODSEQ ("), "{r:?}");
    cmd(&mut c, "5", "UID STORE 3 +FLAGS.SILENT (\\Deleted)");
    // RFC 7162 §3.2.10: VANISHED, not EXPUNGE, once QRESYNC is on; the tagged
    // OK says the MODSEQ now reached.
    let r = cmd(&mut c, "6", "EXPUNGE");
    assert_eq!(r[0], "* VANISHED 3");
    assert!(
        r[1].starts_with("6 OK [HIGHESTMODSEQ ") && r[1].ends_with("] EXPUNGE completed"),
        "{r:?}"
    );
    // UID FETCH … (CHANGEDSINCE m VANISHED): what vanished in the set, then
    // what changed.
    let r = cmd(
        &mut c,
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
        cmd(
            &mut c,
            "8",
            "UID FETCH 4:5 (FLAGS) (CHANGEDSINCE 1 VANISHED)"
        )
        .iter()
        .filter(|l| l.contains("VANISHED"))
        .count(),
        0,
        "3 is not in 4:5"
    );
    // Reselecting with what the client knew: [CLOSED] for the old
    // selection, the change as FETCH (UID FLAGS MODSEQ), the expunge as
    // VANISHED (EARLIER).
    let r = cmd(
        &mut c,
        "9",
        &format!("SELECT INBOX (QRESYNC ({validity} {known}))"),
    );
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
    let r = cmd(
        &mut c,
        "10",
        &format!("EXAMINE INBOX (QRESYNC ({validity} {known} 4:5))"),
    );
    assert!(
        !r.iter()
            .any(|l| l.contains("FETCH") || l.contains("VANISHED")),
        "{r:?}"
    );
    // Another UIDVALIDITY: a plain SELECT.
    let r = cmd(
        &mut c,
        "11",
        &format!("EXAMINE INBOX (QRESYNC ({} 1))", validity + 1),
    );
    assert!(
        !r.iter()
            .any(|l| l.contains("FETCH") || l.contains("VANISHED")),
        "{r:?}"
    );
    // Another session's expunge reaches this one as VANISHED too.
    cmd(&mut c, "12", "SELECT INBOX");
    let mut other = login(&s);
    cmd(&mut other, "o1", "SELECT INBOX");
    cmd(&mut other, "o2", "UID STORE 4:5 +FLAGS.SILENT (\\Deleted)");
    cmd(&mut other, "o3", "EXPUNGE");
    let r = cmd(&mut c, "13", "NOOP");
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
    let selected = cmd(&mut c, "1", "EXAMINE INBOX");
    assert!(selected.contains(&"* 10000 EXISTS".to_string()));
    let validity = code(&selected, "UIDVALIDITY");
    let known = code(&selected, "HIGHESTMODSEQ");
    cmd(&mut c, "2", "LOGOUT");

    let changed: Vec<u32> = (1..=20).map(|i| i * 487).collect();
    let expunged: Vec<u32> = vec![3, 4, 5000, 9998, 10_000];
    let mut other = login(&s);
    cmd(&mut other, "o1", "SELECT INBOX");
    for (i, uid) in changed.iter().enumerate() {
        // One command each: 20 changes, 20 MODSEQs.
        cmd(
            &mut other,
            &format!("f{i}"),
            &format!("UID STORE {uid} +FLAGS.SILENT (\\Flagged)"),
        );
    }
    let set = expunged
        .iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(",");
    cmd(
        &mut other,
        "o2",
        &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
    );
    cmd(&mut other, "o3", &format!("UID EXPUNGE {set}"));

    let mut c = login(&s);
    cmd(&mut c, "3", "ENABLE QRESYNC");
    let r = cmd(
        &mut c,
        "4",
        &format!("SELECT INBOX (QRESYNC ({validity} {known}))"),
    );
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
