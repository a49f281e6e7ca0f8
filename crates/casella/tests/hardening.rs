//! Bad input on every protocol: each malformed command gets a clear BAD / NO /
//! -ERR / 5xx (or a timed-out close), the session and the server go on, and no
//! mailbox name reaches another account's data. Exact bytes, on a live server.

use std::io::Write;
use std::time::{Duration, Instant};

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["imaps", "pop3s", "smtp"])
        .config("hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account(ALICE, "alice-pw");
    s.add_account(BOB, "bob-pw-1");
    s.deliver(ALICE, b"Subject: one\r\n\r\n1\r\n");
    s.deliver(ALICE, b"Subject: two\r\n\r\n2\r\n");
    s.deliver(BOB, b"Subject: bob's secret\r\n\r\nfor bob only\r\n");
    s
}

fn imap(s: &TestServer, user: &str, pass: &str) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("l LOGIN {user} {pass}"));
    c.expect_tagged("l OK");
    c
}

/// Sends raw bytes (a line with CRLF) and returns the tagged reply.
fn raw(c: &mut LineClient, tag: &str, bytes: &[u8]) -> String {
    let mut line = bytes.to_vec();
    line.extend_from_slice(b"\r\n");
    c.send(&line);
    c.expect_tagged(&format!("{tag} "))
}

/// Every line up to and including the tagged reply.
fn until_tagged(c: &mut LineClient, tag: &str) -> String {
    let mut all = String::new();
    loop {
        let l = c.line();
        all.push_str(&l);
        all.push('\n');
        if l.starts_with(tag) {
            return all;
        }
    }
}

fn is_refusal(reply: &str, tag: &str) -> bool {
    reply.starts_with(&format!("{tag} BAD")) || reply.starts_with(&format!("{tag} NO"))
}

#[test]
fn imap_survives_malformed_commands_and_keeps_accounts_apart() {
    let s = server();
    let mut c = imap(&s, ALICE, "alice-pw");
    c.send_line("s SELECT INBOX");
    c.expect_tagged("s OK");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("n1", b"n1 FETCH 1:4294967295 FLAGS".to_vec()),
        ("n2", b"n2 FETCH 4294967296 FLAGS".to_vec()),
        ("n3", b"n3 FETCH 0 FLAGS".to_vec()),
        ("n4", b"n4 SELECT \"IN\0BOX\"".to_vec()),
        ("n5", b"n5 CREATE \"\xff\xfe\"".to_vec()),
        ("n6", b"n6 STORE 1 +FLAGS (\\Seen\0)".to_vec()),
        ("n7", b"n7 SEARCH CHARSET X-NOSUCH TEXT a".to_vec()),
        ("n8", b"n8 FETCH 1 (BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30.31.32.33.34.35.36.37.38.39.40.41.42.43.44.45.46.47.48.49.50.51.52.53.54.55.56.57.58.59.60.61.62.63.64.65])".to_vec()),
        ("n9", b"n9 APPEND INBOX {99999999999}".to_vec()),
        ("n10", b"n10 FETCH 1 (BODY[HEADER.FIELDS ()])".to_vec()),
        ("n11", b"n11 UID EXPUNGE 1:*:3".to_vec()),
        ("n12", b"n12 LIST \"\" \"%\0\"".to_vec()),
    ];
    for (tag, bytes) in &cases {
        let reply = raw(&mut c, tag, bytes);
        // n8/n10 may legitimately answer OK with empty data; the rest refuse.
        if *tag != "n8" && *tag != "n10" {
            assert!(
                is_refusal(&reply, tag),
                "{:?} -> {reply}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    // A line over the limit: a tagged BAD (the line's start is kept for
    // its tag), and the session goes on.
    c.send_line(&format!("t1 NOOP {}", "x".repeat(70_000)));
    assert!(c.line().starts_with("t1 BAD Command line too long"));
    c.send_line("t1 NOOP");
    c.expect_tagged("t1 OK");
    // Thousands of overlapping ranges cost no more than one.
    let ranges = vec!["1:*"; 2000].join(",");
    let start = Instant::now();
    let reply = raw(
        &mut c,
        "t2",
        format!("t2 UID FETCH {ranges} UID").as_bytes(),
    );
    assert!(reply.starts_with("t2 OK"), "{reply}");
    assert!(start.elapsed() < Duration::from_secs(5));

    // Names that look like paths or patterns stay inside Alice's account.
    for (i, name) in [
        "../bob@example.org/INBOX",
        "..",
        "%",
        "*",
        "bob@example.org",
        "/INBOX",
        "INBOX/../../x",
    ]
    .iter()
    .enumerate()
    {
        let tag = format!("p{i}");
        let reply = raw(&mut c, &tag, format!("{tag} CREATE \"{name}\"").as_bytes());
        assert!(
            reply.starts_with(&format!("{tag} OK")) || is_refusal(&reply, &tag),
            "{name}: {reply}"
        );
        let reply = raw(&mut c, &tag, format!("{tag} SELECT \"{name}\"").as_bytes());
        if reply.starts_with(&format!("{tag} OK")) {
            // Whatever was created is Alice's and empty — never Bob's INBOX.
            c.send_line(&format!("{tag}f FETCH 1:* BODY.PEEK[]"));
            let seen = until_tagged(&mut c, &format!("{tag}f "));
            assert!(!seen.contains("for bob only"), "{name}: {seen}");
        }
    }
    c.send_line("z SELECT INBOX");
    c.expect_tagged("z OK");
    c.send_line("y SEARCH TEXT \"bob's secret\"");
    assert_eq!(c.line(), "* SEARCH");
    c.expect_tagged("y OK");
    drop(c);
    // Bob's mailbox is as it was.
    let mut b = imap(&s, BOB, "bob-pw-1");
    b.send_line("s SELECT INBOX");
    let mut exists = String::new();
    loop {
        let l = b.line();
        if l.ends_with(" EXISTS") {
            exists = l.clone();
        }
        if l.starts_with("s ") {
            break;
        }
    }
    assert_eq!(exists, "* 1 EXISTS");
}

#[test]
fn imap_stores_pathological_messages_without_harm() {
    let s = server();
    let mut c = imap(&s, ALICE, "alice-pw");
    // A 1 MB header line, and MIME nested 1,000 levels deep.
    let mut huge = b"Subject: big\r\nX-Long: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge.extend_from_slice(b"\r\n\r\nbody\r\n");
    let mut deep = Vec::new();
    for i in 0..1000 {
        write!(
            deep,
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        )
        .unwrap();
    }
    deep.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
    for i in (0..1000).rev() {
        write!(deep, "--b{i}--\r\n").unwrap();
    }
    for (tag, msg) in [("a1", &huge), ("a2", &deep)] {
        c.send_line(&format!("{tag} APPEND INBOX {{{}+}}", msg.len()));
        c.send(msg);
        c.send_line("");
        c.expect_tagged(&format!("{tag} OK"));
    }
    c.send_line("s SELECT INBOX");
    c.expect_tagged("s OK");
    c.send_line("f FETCH 3:4 (ENVELOPE BODYSTRUCTURE RFC822.SIZE)");
    let reply = c.expect_tagged("f ");
    assert!(reply.starts_with("f OK"), "{reply}");
    c.send_line("g SEARCH BODY deep");
    c.expect_tagged("g OK");
}

#[test]
fn pop3_and_smtp_refuse_malformed_commands_and_go_on() {
    let s = server();
    let mut p = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    p.expect("+OK");
    for bad in [
        b"USER al\0ice@example.org".to_vec(),
        b"USER \xff\xfe".to_vec(),
        format!("USER {}", "x".repeat(2000)).into_bytes(),
        b"\0\0\0".to_vec(),
    ] {
        let mut line = bad.clone();
        line.extend_from_slice(b"\r\n");
        p.send(&line);
        let r = p.line();
        assert!(
            r.starts_with("-ERR") || r.starts_with("+OK"),
            "{:?} -> {r}",
            String::from_utf8_lossy(&bad)
        );
    }
    p.send_line(&format!("USER {ALICE}"));
    p.expect("+OK");
    p.send_line("PASS alice-pw");
    p.expect("+OK");
    for bad in [
        "RETR 4294967296",
        "RETR -1",
        "RETR 0",
        "TOP 1 99999999999999",
        "DELE 99",
        "LIST 1 2 3",
        "UIDL x",
    ] {
        p.send_line(bad);
        let r = p.line();
        assert!(r.starts_with("-ERR"), "{bad} -> {r}");
    }
    p.send_line("QUIT");
    p.expect("+OK");

    let mut m = LineClient::connect(s.addr("smtp"));
    m.expect("220");
    m.send_line("EHLO client.example");
    while m.line().starts_with("250-") {}
    for bad in [
        b"MAIL FROM:<a\0b@example.org>".to_vec(),
        b"MAIL FROM:<\xff@example.org>".to_vec(),
        format!("MAIL FROM:<{}@example.org>", "a".repeat(5000)).into_bytes(),
        b"RCPT TO:<alice@example.org>".to_vec(),
    ] {
        let mut line = bad.clone();
        line.extend_from_slice(b"\r\n");
        m.send(&line);
        let r = m.line();
        assert!(
            r.starts_with('5'),
            "{:?} -> {r}",
            String::from_utf8_lossy(&bad)
        );
    }
    m.send_line("MAIL FROM:<sender@example.net>");
    m.expect("250");
    m.send_line("RCPT TO:<alice@example.org>");
    m.expect("250");
    m.send_line("DATA");
    m.expect("354");
    let mut body = b"Subject: long\r\nX-Long: ".to_vec();
    body.extend(std::iter::repeat_n(b'b', 1 << 20));
    body.extend_from_slice(b"\r\n\r\nok\r\n.\r\n");
    m.send(&body);
    let r = m.line();
    assert!(r.starts_with("250") || r.starts_with("5"), "{r}");
    m.send_line("QUIT");
    m.expect("221");
}

#[test]
fn slowloris_clients_are_closed_when_the_line_does_not_finish_in_time() {
    let s = server();
    s.set_settings("imap", &["preauth-timeout=2s"]);
    s.wait_for_settings();
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    let start = Instant::now();
    // One byte every half second: never a whole line; after the 2 s the server
    // says goodbye and closes.
    for b in b"a LO".iter() {
        c.send(&[*b]);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let closed = match c.try_line() {
        Some(l) => l.starts_with("* BYE") && c.is_closed(),
        None => true,
    };
    assert!(closed, "the dribbling client was not closed");
    assert!(start.elapsed() < Duration::from_secs(10));
}
