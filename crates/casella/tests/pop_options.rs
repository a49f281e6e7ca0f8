//! Each user's POP3 options (`casella account set … pop-folders= pop-mark-read=
//! pop-dele=`), seen through Python's poplib and imaplib: which folders POP3
//! serves, whether RETR marks a message read, and what DELE does.

use casella_testkit::TestServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "test-pw1";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["pop3s", "imaps"])
        .config("[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account(USER, PASS);
    s
}

fn account_set(s: &TestServer, pairs: &[&str]) {
    let mut args = vec!["account", "set", USER];
    args.extend_from_slice(pairs);
    let out = s.cli(&args, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dump(s: &TestServer, command: &str, extra: &[&str]) -> serde_json::Value {
    let out = casella_testkit::clients::mailbox_dump(s, command, USER, PASS, extra);
    serde_json::from_slice(&out).expect("mailbox_dump.py prints JSON")
}

fn subjects(pop: &Value) -> Vec<String> {
    pop["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m.as_str()
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Appends a message to `mailbox` over IMAP (creating the mailbox).
fn append(s: &TestServer, mailbox: &str, subject: &str) {
    let mut c = casella_testkit::LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect_tagged("a OK");
    c.send_line(&format!("b CREATE \"{mailbox}\""));
    c.line();
    let msg = format!("Subject: {subject}\r\n\r\nbody\r\n");
    c.send_line(&format!("c APPEND \"{mailbox}\" {{{}+}}", msg.len()));
    c.send(msg.as_bytes());
    c.send_line("");
    c.expect_tagged("c OK");
}

#[test]
fn folders_served_with_stable_uidls() {
    let s = server();
    s.deliver(USER, b"Subject: inbox one\r\n\r\n1\r\n");
    append(&s, "Junk Email", "junk one");
    let pop = dump(&s, "pop", &[]);
    assert_eq!(subjects(&pop), ["inbox one"], "INBOX only by default");
    let inbox_uidl = pop["uidl"][0][1].clone();

    account_set(&s, &["pop-folders=INBOX,Junk Email"]);
    let pop = dump(&s, "pop", &[]);
    assert_eq!(subjects(&pop), ["inbox one", "junk one"]);
    assert_eq!(
        pop["uidl"][0][1], inbox_uidl,
        "UIDLs stay when folders are added"
    );
    assert_ne!(pop["uidl"][0][1], pop["uidl"][1][1]);
    let again = dump(&s, "pop", &[]);
    assert_eq!(again["uidl"], pop["uidl"], "stable across sessions");
}

#[test]
fn mark_read_is_seen_over_imap() {
    let s = server();
    s.deliver(USER, b"Subject: one\r\n\r\n1\r\n");
    dump(&s, "pop", &[]);
    let imap = dump(&s, "imap", &[]);
    let flags = imap["messages"][0]["flags"].to_string();
    assert!(
        !flags.contains("\\\\Seen"),
        "default: RETR does not mark read: {flags}"
    );
    account_set(&s, &["pop-mark-read=on"]);
    dump(&s, "pop", &[]);
    let imap = dump(&s, "imap", &[]);
    let flags = imap["messages"][0]["flags"].to_string();
    assert!(flags.contains("\\\\Seen"), "{flags}");
}

#[test]
fn dele_deletes_moves_or_hides() {
    let s = server();
    for i in 1..=3 {
        s.deliver(USER, format!("Subject: m{i}\r\n\r\n{i}\r\n").as_bytes());
    }
    // Default: DELE removes for good.
    dump(&s, "pop", &["--dele", "1"]);
    let imap = dump(&s, "imap", &[]);
    assert_eq!(imap["messages"].as_array().unwrap().len(), 2);

    // Move to Deleted Items.
    account_set(&s, &["pop-dele=move-to-deleted-items"]);
    append(&s, "Deleted Items", "placeholder");
    let out = s.cli(&["account", "show", USER], b"");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("pop-dele: move-to-deleted-items"), "{shown}");
    dump(&s, "pop", &["--dele", "1"]);
    let pop = dump(&s, "pop", &[]);
    assert_eq!(subjects(&pop), ["m3"]);

    // Keep, only hide from POP3: gone from POP3, still there over IMAP.
    account_set(&s, &["pop-dele=hide-from-pop"]);
    dump(&s, "pop", &["--dele", "1"]);
    let pop = dump(&s, "pop", &[]);
    assert!(subjects(&pop).is_empty(), "{pop}");
    let imap = dump(&s, "imap", &[]);
    let messages = imap["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{imap}");
    assert!(
        messages[0]["body"]
            .as_str()
            .unwrap()
            .contains("Subject: m3")
    );
}
