//! Nothing acknowledged is lost: the server is killed with SIGKILL right after its
//! acknowledgements, and everything acknowledged is there after a restart.

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const PASS: &str = "pw";

fn pop_login(s: &TestServer, user: &str) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {user}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("+OK");
    c
}

fn bodies(s: &TestServer, user: &str) -> Vec<String> {
    let mut c = pop_login(s, user);
    c.send_line("STAT");
    let n: usize = c.line().split(' ').nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        c.send_line(&format!("RETR {i}"));
        c.expect("+OK");
        out.push(c.dot_lines().last().cloned().unwrap_or_default());
    }
    c.send_line("QUIT");
    c.expect("+OK");
    out
}

#[test]
fn smtp_and_lmtp_acknowledged_messages_survive_sigkill() {
    let mut s = TestServer::builder(BIN).start();
    s.add_account("a@example.org", PASS);
    s.add_account("b@example.org", PASS);

    let mut smtp = LineClient::connect(s.addr("smtp"));
    smtp.expect("220");
    smtp.send_line("HELO t");
    smtp.expect("250");
    let mut lmtp = LineClient::connect(s.addr("lmtp"));
    lmtp.expect("220");
    lmtp.send_line("LHLO t");
    while !lmtp.line().starts_with("250 ") {}
    let n = 25;
    for i in 0..n {
        smtp.send(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n");
        smtp.expect("250");
        smtp.expect("250");
        smtp.expect("354");
        smtp.send(format!("Subject: s{i}\r\n\r\nsmtp {i}\r\n.\r\n").as_bytes());
        smtp.expect("250 2.0.0");
        lmtp.send(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
        lmtp.expect("250");
        lmtp.expect("250");
        lmtp.expect("250");
        lmtp.expect("354");
        lmtp.send(format!("Subject: l{i}\r\n\r\nlmtp {i}\r\n.\r\n").as_bytes());
        lmtp.expect("250 2.0.0");
        lmtp.expect("250 2.0.0");
    }
    // The last acknowledgement was just read: kill at once.
    s.kill9();
    s.restart();
    let a = bodies(&s, "a@example.org");
    let b = bodies(&s, "b@example.org");
    for i in 0..n {
        assert!(a.contains(&format!("smtp {i}")), "smtp {i} lost");
        assert!(a.contains(&format!("lmtp {i}")), "lmtp {i} lost for a");
        assert!(b.contains(&format!("lmtp {i}")), "lmtp {i} lost for b");
    }
    assert_eq!(a.len(), 2 * n);
    assert_eq!(b.len(), n);
}

#[test]
fn pop3_quit_acknowledged_deletions_survive_sigkill() {
    let mut s = TestServer::builder(BIN).start();
    s.add_account("a@example.org", PASS);
    for i in 0..5 {
        s.deliver(
            "a@example.org",
            format!("Subject: {i}\r\n\r\nm{i}\r\n").as_bytes(),
        );
    }
    let mut c = pop_login(&s, "a@example.org");
    for i in [1, 3, 5] {
        c.send_line(&format!("DELE {i}"));
        c.expect("+OK");
    }
    c.send_line("QUIT");
    c.expect("+OK");
    s.kill9();
    s.restart();
    assert_eq!(bodies(&s, "a@example.org"), vec!["m1", "m3"]);
}

#[test]
fn cli_delivery_is_durable_once_it_exits() {
    let mut s = TestServer::builder(BIN).start();
    s.add_account("a@example.org", PASS);
    s.deliver("a@example.org", b"Subject: cli\r\n\r\nvia deliver\r\n");
    s.kill9();
    s.restart();
    assert_eq!(bodies(&s, "a@example.org"), vec!["via deliver"]);
    let out = s.cli(&["deliver", "--to", "nobody@example.org"], b"x");
    assert_eq!(out.status.code(), Some(67), "unknown user: EX_NOUSER");
}
