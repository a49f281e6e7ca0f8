//! The one login pipeline, seen from the protocols (issue 16, finding 10):
//! a cancelled SASL exchange is a BAD / -ERR / 501 at once (RFC 4954 §4), not
//! a wrong password after the failure delay; aliases log in with every
//! mechanism; `USER name password` never reaches a log; the administrator
//! chooses which SASL mechanisms each protocol offers. Exact bytes.

use std::time::{Duration, Instant};

use base64::Engine;
use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "alice-password";
const ALIAS: &str = "sales@example.org";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["imaps", "pop3s", "submissions"])
        .config("hostname = \"mail.test\"\n")
        .start();
    s.add_account(USER, PASS);
    let out = s.cli(&["account", "alias", "add", USER, ALIAS], b"");
    assert!(out.status.success(), "{out:?}");
    // A failure delay long enough to tell a cancel (answered at once) from a
    // failed login (answered after it).
    for p in ["imap", "pop", "submission"] {
        s.set_settings(p, &["auth-failure-delay=2s"]);
    }
    s.wait_for_settings();
    s
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn a_cancelled_scram_exchange_is_answered_at_once_on_every_protocol() {
    let s = server();
    let cert = s.cert_path();
    let first = b64(&format!("n,,n={USER},r=abcdefghijklmnop"));

    let mut c = LineClient::connect_tls(s.addr("imaps"), &cert);
    c.expect("* OK");
    c.send_line(&format!("a AUTHENTICATE SCRAM-SHA-256 {first}"));
    c.expect("+ ");
    let t = Instant::now();
    c.send_line("*");
    assert_eq!(c.line(), "a BAD Authentication cancelled");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    c.send_line("b NOOP");
    c.expect_tagged("b OK");

    let mut c = LineClient::connect_tls(s.addr("pop3s"), &cert);
    c.expect("+OK");
    c.send_line("AUTH SCRAM-SHA-256");
    c.expect("+ ");
    let t = Instant::now();
    c.send_line("*");
    assert_eq!(c.line(), "-ERR Authentication cancelled");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    let mut c = LineClient::connect_tls(s.addr("submissions"), &cert);
    c.expect("220 ");
    c.send_line("EHLO client.test");
    c.expect_tagged("250 ");
    c.send_line(&format!("AUTH SCRAM-SHA-256 {first}"));
    c.expect("334 ");
    let t = Instant::now();
    c.send_line("*");
    assert_eq!(c.line(), "501 5.7.0 Authentication cancelled");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // Nothing was counted or logged as a failed login, and no mechanism name
    // stands in a user field.
    let log = s.log();
    assert!(!log.contains("authentication failed"), "{log}");
    assert!(!log.contains("user=SCRAM"), "{log}");
}

#[test]
fn an_alias_logs_in_with_login_plain_and_user_pass() {
    let s = server();
    let cert = s.cert_path();
    let mut c = LineClient::connect_tls(s.addr("imaps"), &cert);
    c.expect("* OK");
    c.send_line(&format!("a LOGIN {ALIAS} {PASS}"));
    c.expect_tagged("a OK");

    let mut c = LineClient::connect_tls(s.addr("imaps"), &cert);
    c.expect("* OK");
    c.send_line(&format!(
        "a AUTHENTICATE PLAIN {}",
        b64(&format!("\0SALES@example.org\0{PASS}"))
    ));
    c.expect_tagged("a OK");

    let mut c = LineClient::connect_tls(s.addr("pop3s"), &cert);
    c.expect("+OK");
    c.send_line(&format!("USER {ALIAS}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("+OK");

    let mut c = LineClient::connect_tls(s.addr("submissions"), &cert);
    c.expect("220 ");
    c.send_line("EHLO client.test");
    c.expect_tagged("250 ");
    c.send_line("AUTH LOGIN");
    c.expect("334 VXNlcm5hbWU6");
    c.send_line(&b64(ALIAS));
    c.expect("334 UGFzc3dvcmQ6");
    c.send_line(&b64(PASS));
    c.expect("235 ");
}

#[test]
fn user_with_a_password_on_its_line_is_refused_and_never_logged() {
    let s = server();
    s.set_settings("pop", &["protocol-log=on"]);
    s.wait_for_settings();
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {USER} hunter2-secret"));
    assert_eq!(
        c.line(),
        "-ERR [AUTH] A user name has no spaces; send the password with PASS"
    );
    c.send_line("QUIT");
    c.expect("+OK");
    let mut logs = s.log();
    let dir = s.data_dir().join("logs").join("pop");
    for entry in std::fs::read_dir(&dir).expect("protocol log directory") {
        let path = entry.expect("entry").path();
        logs.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    }
    assert!(logs.contains("USER alice@example.org ****"), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
}

#[test]
fn the_administrator_chooses_the_mechanisms_each_protocol_offers() {
    let s = server();
    let cert = s.cert_path();
    let caps = |s: &TestServer| {
        let mut c = LineClient::connect_tls(s.addr("imaps"), &cert);
        c.expect("* OK");
        c.send_line("c CAPABILITY");
        let line = c.expect("* CAPABILITY");
        c.expect_tagged("c OK");
        line
    };
    assert!(caps(&s).contains("AUTH=SCRAM-SHA-256-PLUS"));
    let out = s.cli(
        &["settings", "imap", "set", "sasl-mechanisms=plain,cram-md5"],
        b"",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mechanism CRAM-MD5"));
    s.set_settings("imap", &["sasl-mechanisms=PLAIN LOGIN SCRAM-SHA-256"]);
    s.wait_for_settings();
    let line = caps(&s);
    assert!(
        line.contains("AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256"),
        "{line}"
    );
    assert!(!line.contains("SCRAM-SHA-256-PLUS"), "{line}");
    let mut c = LineClient::connect_tls(s.addr("imaps"), &cert);
    c.expect("* OK");
    c.send_line("a AUTHENTICATE SCRAM-SHA-256-PLUS");
    assert_eq!(
        c.line(),
        "a NO [CANNOT] Unsupported authentication mechanism"
    );
    // POP3 is untouched.
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &cert);
    c.expect("+OK");
    c.send_line("CAPA");
    let capa = c.dot_lines();
    assert!(
        capa.iter().any(|l| l.contains("SCRAM-SHA-256-PLUS")),
        "{capa:?}"
    );
}

#[test]
fn switching_an_account_off_or_resetting_its_password_ends_its_mail_sessions() {
    // Review of issue 16: enabled=off ended only the web sessions; an IMAP
    // IDLE went on. Now the CLI records a sign-out that every server acts on.
    let s = server();
    let cert = s.cert_path();
    let idle = |s: &TestServer| {
        let mut c = LineClient::connect_tls(s.addr("imaps"), &cert);
        c.expect("* OK");
        c.send_line(&format!("a LOGIN {USER} {PASS}"));
        c.expect_tagged("a OK");
        c.send_line("b SELECT INBOX");
        c.expect_tagged("b OK");
        c.send_line("c IDLE");
        c.expect("+ ");
        c
    };
    let ended = |c: &mut LineClient| {
        let start = Instant::now();
        let line = c.line();
        assert!(line.starts_with("* BYE"), "{line}");
        assert!(start.elapsed() < Duration::from_secs(5));
    };
    let mut c = idle(&s);
    let out = s.cli(&["account", "set", USER, "enabled=off"], b"");
    assert!(out.status.success(), "{out:?}");
    ended(&mut c);
    let out = s.cli(&["account", "set", USER, "enabled=on"], b"");
    assert!(out.status.success(), "{out:?}");
    let mut c = idle(&s);
    let out = s.cli(
        &["account", "passwd", USER, "--password-stdin"],
        b"a-new-password\n",
    );
    assert!(out.status.success(), "{out:?}");
    ended(&mut c);
}
