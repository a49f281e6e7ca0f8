//! Inbound SMTP (RFC 5321) and LMTP (RFC 2033) against a real listening server,
//! byte for byte.

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "test-pw1";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .config("hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[smtp]\nmax-message-size = 10000\nmax-recipients = 3\n")
        .start();
    s.add_account(USER, PASS);
    s.add_account("bob@example.org", PASS);
    s
}

fn ehlo(c: &mut LineClient) -> Vec<String> {
    c.send_line("EHLO client.test");
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        let last = l.starts_with("250 ");
        assert!(l.starts_with("250"), "{l}");
        lines.push(l[4..].to_string());
        if last {
            return lines;
        }
    }
}

/// Everything in `user`'s INBOX, read over POP3.
fn pop_messages(s: &TestServer, user: &str) -> Vec<Vec<u8>> {
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {user}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("+OK");
    c.send_line("STAT");
    let stat = c.line();
    let n: usize = stat.split(' ').nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        c.send_line(&format!("RETR {i}"));
        c.expect("+OK");
        let lines = c.dot_lines();
        let mut m = Vec::new();
        for l in lines {
            m.extend_from_slice(l.as_bytes());
            m.extend_from_slice(b"\r\n");
        }
        out.push(m);
    }
    c.send_line("QUIT");
    c.expect("+OK");
    out
}

#[test]
fn ehlo_advertises_the_extensions_and_starttls() {
    let s = server();
    let mut c = LineClient::connect(s.addr("smtp"));
    assert_eq!(c.line(), "220 mail.test ESMTP casella ready");
    let caps = ehlo(&mut c);
    assert_eq!(caps[0], "mail.test Hello client.test");
    for want in [
        "SIZE 10000",
        "8BITMIME",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "STARTTLS",
    ] {
        assert!(caps.iter().any(|l| l == want), "{want} missing: {caps:?}");
    }
    c.send_line("STARTTLS");
    c.expect("220 2.0.0");
    c.start_tls(&s.cert_path());
    let caps = ehlo(&mut c);
    assert!(!caps.iter().any(|l| l == "STARTTLS"));
    c.send_line("HELO again.test");
    assert_eq!(c.line(), "250 mail.test");
    c.send_line("QUIT");
    c.expect("221 2.0.0");
}

#[test]
fn local_mail_is_accepted_and_nothing_is_relayed() {
    let s = server();
    let mut c = LineClient::connect(s.addr("smtp"));
    c.expect("220");
    c.send_line("MAIL FROM:<x@remote.test>");
    c.expect("503 5.5.1");
    ehlo(&mut c);
    c.send_line("RCPT TO:<alice@example.org>");
    c.expect("503 5.5.1");
    c.send_line("DATA");
    c.expect("503 5.5.1");
    c.send_line("MAIL FROM:<x@remote.test>");
    c.expect("250 2.1.0");
    c.send_line("MAIL FROM:<x@remote.test>");
    c.expect("503 5.5.1");
    c.send_line("RCPT TO:<someone@gmail.com>");
    assert_eq!(c.line(), "550 5.7.1 <someone@gmail.com>: Relaying denied");
    c.send_line("RCPT TO:<nobody@example.org>");
    assert_eq!(
        c.line(),
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
    );
    c.send_line("DATA");
    c.expect("554 5.5.1");
    c.send_line("MAIL FROM:<x@remote.test>");
    c.expect("250");
    c.send_line("RCPT TO:<Alice@EXAMPLE.org>");
    c.expect("250 2.1.5");
    c.send_line("RCPT TO:<bob+lists@example.org>");
    c.expect("250 2.1.5");
    c.send_line("DATA");
    c.expect("354");
    c.send(b"Subject: hello\r\n\r\n..stuffed\r\nplain\r\n.\r\n");
    c.expect("250 2.0.0 Ok: queued as ");
    c.send_line("VRFY alice");
    c.expect("502 5.5.1");
    c.send_line("EXPN staff");
    c.expect("502 5.5.1");
    c.send_line("BOGUS");
    c.expect("500 5.5.2");
    c.send_line("QUIT");
    c.expect("221");

    for user in [USER, "bob@example.org"] {
        let msgs = pop_messages(&s, user);
        assert_eq!(msgs.len(), 1, "{user}");
        let m = String::from_utf8_lossy(&msgs[0]).into_owned();
        assert!(m.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mail.test (casella) with ESMTP id "), "{m}");
        assert!(
            m.ends_with("Subject: hello\r\n\r\n.stuffed\r\nplain\r\n"),
            "dot-unstuffed: {m:?}"
        );
    }
}

#[test]
fn limits_size_and_recipients() {
    let s = server();
    let mut c = LineClient::connect(s.addr("smtp"));
    c.expect("220");
    ehlo(&mut c);
    c.send_line("MAIL FROM:<x@remote.test> SIZE=20000");
    c.expect("552 5.3.4");
    c.send_line("MAIL FROM:<x@remote.test> SIZE=100 BODY=8BITMIME SMTPUTF8");
    c.expect("250");
    c.send_line("RCPT TO:<alice@example.org> NOTIFY=NEVER");
    c.expect("555 5.5.4");
    for _ in 0..3 {
        c.send_line("RCPT TO:<alice@example.org>");
        c.expect("250");
    }
    c.send_line("RCPT TO:<bob@example.org>");
    c.expect("452 4.5.3");
    c.send_line("DATA");
    c.expect("354");
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..200 {
        big.extend_from_slice(&[b'x'; 98]);
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b".\r\n");
    c.send(&big);
    c.expect("552 5.3.4");
    // The session continues after an oversized message.
    c.send_line("NOOP");
    c.expect("250");
    c.send_line(&format!("MAIL FROM:<{}@remote.test>", "x".repeat(5000)));
    c.expect("500 5.5.2 Line too long");
    c.send_line("RSET");
    c.expect("250");
    assert!(pop_messages(&s, USER).is_empty(), "nothing delivered");
}

#[test]
fn pipelined_transaction_gets_replies_in_order() {
    let s = server();
    let mut c = LineClient::connect(s.addr("smtp"));
    c.expect("220");
    ehlo(&mut c);
    // RFC 2920: MAIL, RCPT… and DATA may be sent in one group.
    c.send(
        b"MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n",
    );
    c.expect("250 2.1.0");
    c.expect("250 2.1.5");
    c.expect("550 5.1.1");
    c.expect("354");
    c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    c.expect("250 2.0.0");
    c.expect("221");
    let msgs = pop_messages(&s, USER);
    assert_eq!(msgs.len(), 1);
}

#[test]
fn eight_bit_and_utf8_addresses() {
    let s = server();
    s.add_account("jose@example.org", PASS);
    let mut c = LineClient::connect(s.addr("smtp"));
    c.expect("220");
    ehlo(&mut c);
    c.send_line("MAIL FROM:<josé@exämple.test> SMTPUTF8 BODY=8BITMIME");
    c.expect("250");
    c.send_line("RCPT TO:<jose@example.org>");
    c.expect("250");
    c.send_line("DATA");
    c.expect("354");
    c.send("Subject: café\r\n\r\nÜbergrößenträger\r\n.\r\n".as_bytes());
    c.expect("250");
    let msgs = pop_messages(&s, "jose@example.org");
    assert!(msgs[0].ends_with("Subject: café\r\n\r\nÜbergrößenträger\r\n".as_bytes()));
}

#[test]
fn lmtp_answers_per_recipient() {
    let s = server();
    let mut c = LineClient::connect(s.addr("lmtp"));
    assert_eq!(c.line(), "220 mail.test LMTP casella ready");
    c.send_line("EHLO mta.test");
    c.expect("500");
    c.send_line("LHLO mta.test");
    loop {
        if c.line().starts_with("250 ") {
            break;
        }
    }
    c.send_line("MAIL FROM:<sender@remote.test>");
    c.expect("250");
    c.send_line("RCPT TO:<alice@example.org>");
    c.expect("250");
    c.send_line("RCPT TO:<ghost@example.org>");
    c.expect("550 5.1.1");
    c.send_line("RCPT TO:<bob@example.org>");
    c.expect("250");
    c.send_line("DATA");
    c.expect("354");
    c.send(b"Subject: lmtp\r\n\r\nhi\r\n.\r\n");
    // RFC 2033 §4.2: one reply per accepted recipient, in order.
    assert!(c.line().starts_with("250 2.0.0 <alice@example.org>"));
    assert!(c.line().starts_with("250 2.0.0 <bob@example.org>"));
    c.send_line("QUIT");
    c.expect("221");
    assert_eq!(pop_messages(&s, USER).len(), 1);
    let m = &pop_messages(&s, "bob@example.org")[0];
    assert!(String::from_utf8_lossy(m).contains("with LMTP id"));
}

#[test]
fn postmaster_without_domain_reaches_the_postmaster() {
    let s = server();
    let mut c = LineClient::connect(s.addr("smtp"));
    c.expect("220");
    ehlo(&mut c);
    c.send_line("MAIL FROM:<x@remote.test>");
    c.expect("250");
    c.send_line("RCPT TO:<postmaster>");
    c.expect("550 5.1.1");
    s.add_account("postmaster@example.org", PASS);
    c.send_line("RCPT TO:<Postmaster>");
    c.expect("250");
}

/// Starts a transaction to `rcpts` (each answered with the code given), on an
/// SMTP or LMTP session past its greeting and EHLO/LHLO.
fn envelope(c: &mut LineClient, rcpts: &[(&str, &str)]) {
    c.send_line("MAIL FROM:<sender@remote.test>");
    c.expect("250");
    for (rcpt, code) in rcpts {
        c.send_line(&format!("RCPT TO:<{rcpt}>"));
        c.expect(code);
    }
}

/// Sends the message of the transaction (its final dot included).
fn data(c: &mut LineClient, message: &[u8]) {
    c.send_line("DATA");
    c.expect("354");
    c.send(message);
}

/// Issue 17: all local recipients of an SMTP transaction are stored in one
/// store transaction. When the third cannot be stored (its account was
/// removed between RCPT and DATA, so its INBOX is gone inside the
/// transaction), none is and the client is told to try again; the retry
/// stores exactly one copy each, whose one Received field names no recipient
/// (RFC 5321 §4.4). Before, alice's and bob's copies were stored and the
/// retry stored them again.
#[test]
fn smtp_delivery_to_several_recipients_is_all_or_nothing() {
    let s = server();
    let third = "third@example.org";
    s.add_account(third, PASS);
    let mut c = LineClient::connect(s.addr("smtp"));
    c.expect("220");
    ehlo(&mut c);
    let message = b"Subject: to three\r\n\r\nhello\r\n.\r\n";
    envelope(
        &mut c,
        &[(USER, "250"), ("bob@example.org", "250"), (third, "250")],
    );
    let removed = s.cli(&["account", "remove", third], b"");
    assert!(removed.status.success(), "{removed:?}");
    data(&mut c, message);
    c.expect("451 4.3.0");
    assert!(
        pop_messages(&s, USER).is_empty(),
        "nothing stored for alice"
    );
    assert!(
        pop_messages(&s, "bob@example.org").is_empty(),
        "nor for bob"
    );

    // The client's retry: the third recipient is unknown now.
    c.send_line("RSET");
    c.expect("250");
    envelope(
        &mut c,
        &[
            (USER, "250"),
            ("bob@example.org", "250"),
            (third, "550 5.1.1"),
        ],
    );
    data(&mut c, message);
    c.expect("250 2.0.0");
    c.send_line("QUIT");
    c.expect("221");
    for user in [USER, "bob@example.org"] {
        let msgs = pop_messages(&s, user);
        assert_eq!(msgs.len(), 1, "exactly one copy for {user}");
        let text = String::from_utf8_lossy(&msgs[0]).to_string();
        assert_eq!(text.matches("Received:").count(), 1, "{text}");
        assert!(!text.contains("\tfor <"), "no recipient named: {text}");
    }
}

/// LMTP answers per recipient (RFC 2033 §4.2): when the one store
/// transaction fails because of one recipient, the others are stored one by
/// one and answered 250, the failing one 451 — nothing is stored twice, and
/// the MTA retries only that recipient.
#[test]
fn lmtp_delivery_fails_only_the_recipient_that_fails() {
    let s = server();
    let third = "third@example.org";
    s.add_account(third, PASS);
    let mut c = LineClient::connect(s.addr("lmtp"));
    c.expect("220");
    c.send_line("LHLO mta.test");
    while !c.line().starts_with("250 ") {}
    envelope(
        &mut c,
        &[(USER, "250"), ("bob@example.org", "250"), (third, "250")],
    );
    let removed = s.cli(&["account", "remove", third], b"");
    assert!(removed.status.success(), "{removed:?}");
    data(&mut c, b"Subject: to three\r\n\r\nhello\r\n.\r\n");
    assert!(c.line().starts_with("250 2.0.0 <alice@example.org>"));
    assert!(c.line().starts_with("250 2.0.0 <bob@example.org>"));
    assert!(c.line().starts_with("451 4.3.0 <third@example.org>"));
    // The MTA's retry of the third: unknown now.
    c.send_line("MAIL FROM:<sender@remote.test>");
    c.expect("250");
    c.send_line("RCPT TO:<third@example.org>");
    c.expect("550 5.1.1");
    c.send_line("QUIT");
    c.expect("221");
    for user in [USER, "bob@example.org"] {
        let msgs = pop_messages(&s, user);
        assert_eq!(msgs.len(), 1, "exactly one copy for {user}");
        let text = String::from_utf8_lossy(&msgs[0]).to_string();
        assert!(text.contains(&format!("for <{user}>")), "{text}");
    }
}
