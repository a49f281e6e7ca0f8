//! Message submission (RFC 6409) against a real server, byte for byte: the login
//! policy, the sender binding, BDAT, PIPELINING, DSN parameters, limits, and local
//! delivery readable over POP3 right after the 250.

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const PASS: &str = "test-pw1";
/// base64 of "\0alice@example.org\0test-pw1"
const ALICE_PLAIN: &str = "AGFsaWNlQGV4YW1wbGUub3JnAHRlc3QtcHcx";

fn server(extra: &str) -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["submission", "submissions", "pop3s", "smtp"])
        .config(&format!(
            "hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n{extra}"
        ))
        .start();
    s.add_account("alice@example.org", PASS);
    s.add_account("bob@example.org", PASS);
    s
}

fn ehlo(c: &mut LineClient) -> Vec<String> {
    c.send_line("EHLO client.test");
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        assert!(l.starts_with("250"), "{l}");
        let last = l.starts_with("250 ");
        lines.push(l[4..].to_string());
        if last {
            return lines;
        }
    }
}

/// Logged in over implicit TLS.
fn submit(s: &TestServer) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("submissions"), &s.cert_path());
    c.expect("220");
    ehlo(&mut c);
    c.send_line(&format!("AUTH PLAIN {ALICE_PLAIN}"));
    c.expect("235 2.7.0");
    c
}

fn pop_bodies(s: &TestServer, user: &str) -> Vec<String> {
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {user}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("+OK");
    c.send_line("STAT");
    let n: usize = c.line().split(' ').nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        c.send_line(&format!("RETR {i}"));
        c.expect("+OK");
        out.push(c.dot_lines().join("\n"));
    }
    out
}

#[test]
fn auth_is_offered_only_after_starttls_and_required_before_mail() {
    let s = server("");
    let mut c = LineClient::connect(s.addr("submission"));
    assert_eq!(c.line(), "220 mail.test ESMTP casella ready");
    let caps = ehlo(&mut c);
    for want in [
        "SIZE 36700160",
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "DSN",
        "STARTTLS",
    ] {
        assert!(caps.iter().any(|l| l == want), "{want}: {caps:?}");
    }
    assert!(
        !caps.iter().any(|l| l.starts_with("AUTH")),
        "no AUTH before TLS: {caps:?}"
    );
    c.send_line(&format!("AUTH PLAIN {ALICE_PLAIN}"));
    c.expect("538 5.7.11");
    c.send_line("MAIL FROM:<alice@example.org>");
    assert_eq!(c.line(), "530 5.7.0 Authentication required");
    c.send_line("STARTTLS");
    c.expect("220");
    c.start_tls(&s.cert_path());
    let caps = ehlo(&mut c);
    assert!(
        caps.iter()
            .any(|l| l == "AUTH PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS"),
        "{caps:?}"
    );
    assert!(!caps.iter().any(|l| l == "STARTTLS"), "{caps:?}");
    // AUTH LOGIN without initial response (334 prompts in base64).
    c.send_line("AUTH LOGIN");
    assert_eq!(c.line(), "334 VXNlcm5hbWU6");
    c.send_line("YWxpY2VAZXhhbXBsZS5vcmc=");
    assert_eq!(c.line(), "334 UGFzc3dvcmQ6");
    c.send_line("d3Jvbmc=");
    c.expect("535 5.7.8");
    c.send_line("AUTH PLAIN");
    assert_eq!(c.line(), "334 ");
    c.send_line(ALICE_PLAIN);
    c.expect("235 2.7.0");
    c.send_line(&format!("AUTH PLAIN {ALICE_PLAIN}"));
    c.expect("503");
    c.send_line("MAIL FROM:<alice@example.org>");
    c.expect("250 2.1.0");
}

#[test]
fn disabled_submission_and_plaintext_login_policy() {
    let s = server("login-type = \"plaintext-login\"\n");
    assert!(
        s.cli(
            &["account", "set", "bob@example.org", "submission=off"],
            b""
        )
        .status
        .success()
    );
    let mut c = LineClient::connect(s.addr("submission"));
    c.expect("220");
    let caps = ehlo(&mut c);
    assert!(
        caps.iter().any(|l| l == "AUTH PLAIN LOGIN SCRAM-SHA-256"),
        "plaintext-login offers AUTH (no -PLUS without TLS): {caps:?}"
    );
    // base64("\0bob@example.org\0test-pw1")
    c.send_line("AUTH PLAIN AGJvYkBleGFtcGxlLm9yZwB0ZXN0LXB3MQ==");
    let l = c.line();
    assert!(
        l.starts_with("535 5.7.8 Login failure or SMTP disabled"),
        "{l}"
    );
    c.send_line(&format!("AUTH PLAIN {ALICE_PLAIN}"));
    c.expect("235");
}

#[test]
fn the_sender_is_bound_to_the_login_and_its_aliases() {
    let s = server("");
    let out = s.cli(
        &[
            "account",
            "alias",
            "add",
            "alice@example.org",
            "sales@shop.example",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = submit(&s);
    c.send_line("MAIL FROM:<bob@example.org>");
    assert_eq!(
        c.line(),
        "553 5.7.1 Sender address rejected: not owned by authenticated user"
    );
    c.send_line("MAIL FROM:<>");
    assert_eq!(
        c.line(),
        "553 5.7.1 Sender address rejected: not owned by authenticated user"
    );
    // Own address, but a spoofed From: header.
    c.send_line("MAIL FROM:<alice@example.org>");
    c.expect("250");
    c.send_line("RCPT TO:<bob@example.org>");
    c.expect("250");
    c.send_line("DATA");
    c.expect("354");
    c.send(b"From: The CEO <ceo@example.org>\r\nSubject: pay now\r\n\r\nx\r\n.\r\n");
    assert_eq!(
        c.line(),
        "553 5.7.1 Sender address rejected: not owned by authenticated user"
    );
    // The alias, in both places.
    c.send_line("MAIL FROM:<Sales@Shop.Example>");
    c.expect("250");
    c.send_line("RCPT TO:<bob@example.org>");
    c.expect("250");
    c.send_line("DATA");
    c.expect("354");
    c.send(b"From: Sales <sales@shop.example>\r\nSubject: offer\r\n\r\nbuy\r\n.\r\n");
    c.expect("250 2.0.0");
    // The alias receives mail too (inbound SMTP).
    let mut inbound = LineClient::connect(s.addr("smtp"));
    inbound.expect("220");
    inbound.send_line("HELO x");
    inbound.expect("250");
    inbound.send_line("MAIL FROM:<x@remote.test>");
    inbound.expect("250");
    inbound.send_line("RCPT TO:<sales@shop.example>");
    inbound.expect("250");
    let bob = pop_bodies(&s, "bob@example.org");
    assert_eq!(bob.len(), 1, "the spoofed message was not delivered");
    assert!(bob[0].contains("Subject: offer"));
}

#[test]
fn headers_are_completed_and_the_trace_names_no_secret() {
    let s = server("");
    let mut c = submit(&s);
    c.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    c.expect("250");
    c.expect("250");
    c.expect("354");
    c.send(b"Subject: bare\r\n\r\n..dot\r\n.\r\n");
    c.expect("250 2.0.0 Ok: queued as ");
    // Readable over POP3 right after the 250.
    let m = &pop_bodies(&s, "bob@example.org")[0];
    assert!(m.starts_with("Received: from client.test ([127.0.0.1])\n\t(authenticated sender: alice@example.org)\n\tby mail.test (casella) with ESMTPSA id "), "{m}");
    assert!(
        m.contains("\nDate: ")
            && m.contains("\nMessage-ID: <")
            && m.contains("\nFrom: <alice@example.org>"),
        "{m}"
    );
    assert!(m.ends_with("Subject: bare\n\n.dot"), "{m}");
    assert!(
        !m.contains(ALICE_PLAIN) && !m.contains(&format!("{PASS}\n")),
        "no secret: {m}"
    );
}

#[test]
fn bdat_chunks_pipelining_and_smtputf8() {
    let s = server("");
    let mut c = submit(&s);
    // RFC 3030: BDAT with PIPELINING, chunks read exactly, no dot-stuffing.
    let part1 = b"From: alice@example.org\r\nSubject: chunks\r\n\r\n.not stuffed\r\n";
    let part2 = "Grüße — 8-bit\r\n".as_bytes();
    let mut wire =
        b"MAIL FROM:<alice@example.org> BODY=BINARYMIME SMTPUTF8\r\nRCPT TO:<bob@example.org>\r\n"
            .to_vec();
    wire.extend_from_slice(format!("BDAT {}\r\n", part1.len()).as_bytes());
    wire.extend_from_slice(part1);
    wire.extend_from_slice(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    wire.extend_from_slice(part2);
    c.send(&wire);
    c.expect("250 2.1.0");
    c.expect("250 2.1.5");
    c.expect(&format!("250 2.0.0 {} octets", part1.len()));
    c.expect("250 2.0.0 Ok");
    // BDAT without a transaction: the chunk is still consumed, the session goes on.
    c.send(b"BDAT 5 LAST\r\nhello");
    c.expect("503");
    c.send_line("NOOP");
    c.expect("250");
    let m = &pop_bodies(&s, "bob@example.org")[0];
    assert!(m.ends_with(".not stuffed\nGrüße — 8-bit"), "{m}");
    // RFC 6531 §3.7.3: the trace names the SMTPUTF8 transaction (issue 23, finding 4).
    assert!(m.contains(" with UTF8SMTPSA id "), "{m}");
}

#[test]
fn dsn_parameters_and_remote_recipients_are_queued_durably() {
    let mut s = server("");
    let mut c = submit(&s);
    c.send_line("MAIL FROM:<alice@example.org> RET=HDRS ENVID=abc123 SIZE=100");
    c.expect("250");
    c.send_line("RCPT TO:<far@remote.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;far@remote.test");
    c.expect("250");
    c.send_line("RCPT TO:<bob@example.org> NOTIFY=NEVER");
    c.expect("250");
    c.send_line("RCPT TO:<x@remote.test> NOTIFY=SOMETIMES");
    c.expect("501");
    c.send_line("DATA");
    c.expect("354");
    c.send(b"From: alice@example.org\r\nSubject: out\r\n\r\nto the world\r\n.\r\n");
    c.expect("250");
    // Acknowledged, so it must survive a SIGKILL.
    s.kill9();
    let out = s.cli(&["queue", "list"], b"");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("from alice@example.org") && list.contains("far@remote.test\tpending"),
        "{list}"
    );
    assert!(
        !list.contains("bob@example.org"),
        "local recipients are not queued: {list}"
    );
    let id = list.split('\t').next().unwrap().trim().to_string();
    let out = s.cli(&["queue", "delete", &id], b"");
    assert!(out.status.success());
    let out = s.cli(&["queue", "list"], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("The outbound queue is empty."));
}

#[test]
fn limits_size_recipients_and_rate() {
    let s =
        server("max-messages-per-hour = 2\n[smtp]\nmax-message-size = 2000\nmax-recipients = 2\n");
    let mut c = submit(&s);
    c.send_line("MAIL FROM:<alice@example.org> SIZE=5000");
    c.expect("552 5.3.4");
    for i in 0..2 {
        c.send_line("MAIL FROM:<alice@example.org>");
        c.expect("250");
        c.send_line("RCPT TO:<bob@example.org>");
        c.expect("250");
        c.send_line("RCPT TO:<bob@example.org>");
        c.expect("250");
        c.send_line("RCPT TO:<bob@example.org>");
        c.expect("452 4.5.3");
        c.send_line("DATA");
        c.expect("354");
        c.send(format!("Subject: {i}\r\n\r\nx\r\n.\r\n").as_bytes());
        c.expect("250");
    }
    c.send_line("MAIL FROM:<alice@example.org>");
    c.expect("450 4.7.1");
}

#[test]
fn saved_copies_land_in_sent_items_when_asked() {
    let s = TestServer::builder(BIN)
        .protocols(&["submissions", "imaps"])
        .config("hostname = \"mail.test\"\n[imap]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account("alice@example.org", PASS);
    s.add_account("bob@example.org", PASS);
    let sent_count = |s: &TestServer| {
        let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
        c.expect("* OK");
        c.send_line(&format!("a LOGIN alice@example.org {PASS}"));
        c.expect("a OK");
        c.send_line("b STATUS \"Sent Items\" (MESSAGES UNSEEN)");
        let status = c.line();
        c.expect("b OK");
        status
    };
    let send = |s: &TestServer| {
        let mut c = submit(s);
        c.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
        c.expect("250");
        c.expect("250");
        c.expect("354");
        c.send(b"Subject: keep a copy\r\n\r\nx\r\n.\r\n");
        c.expect("250");
    };
    send(&s);
    assert!(
        sent_count(&s).ends_with("(MESSAGES 0 UNSEEN 0)"),
        "off by default"
    );
    assert!(
        s.cli(
            &["account", "set", "alice@example.org", "save-sent=on"],
            b""
        )
        .status
        .success()
    );
    send(&s);
    let status = sent_count(&s);
    assert!(
        status.ends_with("(MESSAGES 1 UNSEEN 0)"),
        "one copy, read: {status}"
    );
}

// Issue 23, finding 5: RFC 5322 §2.1.1 / RFC 5321 §4.5.3.1.6 — a line may hold at
// most 998 characters before its CRLF. Submission refuses a longer one with a
// 5.6.0-class reply (the sender's mail program is told at once) instead of
// relaying it for the next server to refuse; exactly 998 is fine.
#[test]
fn lines_over_998_characters_are_refused_at_submission() {
    let s = server("");
    let mut c = submit(&s);
    let ok_line = "a".repeat(998);
    let long_line = "b".repeat(999);
    let send = |c: &mut LineClient, to: &str, header: &str, body: &str| {
        c.send(
            format!(
                "MAIL FROM:<alice@example.org>\r\nRCPT TO:<{to}>\r\nDATA\r\n\
                 From: alice@example.org\r\nSubject: width\r\n{header}\r\n{body}\r\nend\r\n.\r\n"
            )
            .as_bytes(),
        );
        c.expect("250 2.1.0");
        c.expect("250 2.1.5");
        c.expect("354");
        c.line()
    };
    // To a remote recipient (the relay would hand it on) and a local one alike.
    for to in ["far@remote.test", "bob@example.org"] {
        let r = send(&mut c, to, "", &long_line);
        assert!(r.starts_with("554 5.6.0 "), "{r}");
        assert!(r.contains("998"), "the reply says what is wrong: {r}");
        let r = send(&mut c, to, &format!("X-Long: {long_line}\r\n"), "short");
        assert!(r.starts_with("554 5.6.0 "), "a header line too: {r}");
    }
    // The transaction ended; the session goes on, and 998 is accepted.
    let r = send(&mut c, "bob@example.org", "", &ok_line);
    assert!(r.starts_with("250 2.0.0"), "{r}");
    // BDAT is held to the same rule.
    let body = format!("From: alice@example.org\r\nSubject: chunked\r\n\r\n{long_line}\r\n");
    c.send(
        format!(
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<far@remote.test>\r\nBDAT {} LAST\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.expect("250 2.1.0");
    c.expect("250 2.1.5");
    let r = c.line();
    assert!(r.starts_with("554 5.6.0 "), "{r}");
    c.send_line("QUIT");
    c.expect("221");
    let bodies = pop_bodies(&s, "bob@example.org");
    assert_eq!(bodies.len(), 1, "only the 998 one was delivered");
    assert!(bodies[0].contains(&ok_line));
    let list = String::from_utf8_lossy(&s.cli(&["queue", "list"], b"").stdout).into_owned();
    assert!(list.contains("empty"), "nothing was queued: {list}");
}
