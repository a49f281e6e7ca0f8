//! Brute force and password spray on loopback (bounded in count and time): the
//! attackers are stopped within a few attempts, refused before any password is
//! checked, while real users — from another address, or from the attacker's
//! address on an account they logged in to before — keep logging in.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "alice-pw";
/// Bound on every attack loop.
const LIMIT: Duration = Duration::from_secs(60);

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["pop3s", "imaps", "submission"])
        .config("hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\nlogin-type = \"plaintext-login\"\n")
        .start();
    s.add_account(USER, PASS);
    // Small delays keep the test short; the thresholds are the defaults.
    s.set_settings("security", &["failure-delay=5ms", "max-failure-delay=50ms"]);
    s.wait_for_settings();
    s
}

fn imap_login(s: &TestServer, from: &str, user: &str, pass: &str) -> String {
    let from: IpAddr = from.parse().unwrap();
    let mut c = LineClient::connect_tls_from(s.addr("imaps"), from, &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("a LOGIN {user} {pass}"));
    c.expect_tagged("a ")
}

#[test]
fn two_thousand_guesses_from_one_address_are_stopped_within_twenty() {
    let s = server();
    let start = Instant::now();
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    let mut first_refusal = None;
    let mut refused = 0;
    for attempt in 1..=2000 {
        if start.elapsed() > LIMIT {
            break;
        }
        c.send_line(&format!("USER {USER}"));
        c.expect("+OK");
        c.send_line(&format!("PASS guess{attempt}"));
        let reply = c.line();
        if reply == "-ERR [SYS/TEMP] Too many failed logins, try again later" {
            first_refusal.get_or_insert(attempt);
            refused += 1;
        } else {
            assert!(
                first_refusal.is_none(),
                "a guess was checked after the block: {reply}"
            );
            assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
        }
    }
    let first = first_refusal.expect("the guesses were never stopped");
    assert!(first <= 20, "stopped only at attempt {first}");
    assert!(refused >= 100, "only {refused} refusals in the time limit");
    // The right password from the same address is refused too: nothing is checked.
    c.send_line(&format!("USER {USER}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("-ERR [SYS/TEMP] Too many failed logins");
    // A real user from another address logs in.
    assert!(imap_login(&s, "127.0.0.2", USER, PASS).starts_with("a OK"));
    // One line per failure, for fail2ban.
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains(
            "authentication failed: remote=127.0.0.1 user=alice@example.org protocol=POP3"
        )),
        "{}",
        &log[log.len().saturating_sub(2000)..]
    );
    assert!(!log.contains("guess1 "), "passwords never reach the log");
}

#[test]
fn one_password_against_five_hundred_accounts_is_stopped() {
    let s = server();
    // A user who logged in from the sprayer's address before (same NAT).
    assert!(imap_login(&s, "127.0.0.1", USER, PASS).starts_with("a OK"));
    let start = Instant::now();
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    let mut stopped = None;
    for i in 0..500 {
        if start.elapsed() > LIMIT {
            break;
        }
        c.send_line(&format!("s{i} LOGIN user{i}@example.org Summer2026!"));
        let reply = c.expect_tagged(&format!("s{i} "));
        if reply.contains("NO [UNAVAILABLE] Too many failed logins") {
            stopped.get_or_insert(i);
        } else {
            assert!(stopped.is_none(), "checked after the block: {reply}");
        }
    }
    let stopped = stopped.expect("spray not stopped");
    assert!(stopped <= 10, "stopped after {stopped} accounts");
    // Alice logged in from this address before: she still can.
    assert!(imap_login(&s, "127.0.0.1", USER, PASS).starts_with("a OK"));
    // Another account from this address: blocked. From elsewhere: fine.
    let out = s.cli(
        &["account", "add", "bob@example.org", "--password-stdin"],
        b"bob-pw-1\n",
    );
    assert!(out.status.success());
    assert!(
        imap_login(&s, "127.0.0.1", "bob@example.org", "bob-pw-1")
            .contains("Too many failed logins")
    );
    assert!(imap_login(&s, "127.0.0.2", "bob@example.org", "bob-pw-1").starts_with("a OK"));

    // Submission refuses with 421 and closes.
    let mut smtp = LineClient::connect(s.addr("submission"));
    smtp.expect("220");
    smtp.send_line("EHLO attacker");
    while smtp.line().starts_with("250-") {}
    smtp.send_line("AUTH PLAIN AGJvYkBleGFtcGxlLm9yZwBib2ItcHctMQ==");
    assert_eq!(
        smtp.line(),
        "421 4.7.0 Too many failed logins, try again later"
    );
    assert!(smtp.is_closed());

    // The block is listed and can be lifted.
    std::thread::sleep(Duration::from_millis(500));
    let out = s.cli(&["security", "blocks"], b"");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains("source 127.0.0.1") && listed.contains("password spray"),
        "{listed}"
    );
    let out = s.cli(&["security", "unblock", "127.0.0.1"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    loop {
        if imap_login(&s, "127.0.0.1", "bob@example.org", "bob-pw-1").starts_with("a OK") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "unblock did not reach the server"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn trusted_networks_are_never_blocked_and_settings_are_checked() {
    let s = server();
    let out = s.cli(
        &["settings", "security", "set", "trusted-networks=nonsense"],
        b"",
    );
    assert!(!out.status.success());
    s.set_settings("security", &["trusted-networks=127.0.0.0/8"]);
    let out = s.cli(&["settings", "security", "get", "trusted-networks"], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "127.0.0.0/8");
    s.wait_for_settings();
    for i in 0..30 {
        let reply = imap_login(&s, "127.0.0.1", USER, &format!("wrong{i}"));
        assert!(reply.contains("AUTHENTICATIONFAILED"), "{reply}");
    }
    assert!(imap_login(&s, "127.0.0.1", USER, PASS).starts_with("a OK"));
}

#[test]
fn a_remembered_password_is_forgotten_when_it_changes() {
    let s = server();
    // Verified once with argon2, then remembered: imaplib logs in both times.
    for _ in 0..2 {
        let dump = casella_testkit::clients::mailbox_dump(&s, "imap", USER, PASS, &[]);
        assert!(!dump.is_empty());
    }
    let out = s.cli(
        &["account", "passwd", USER, "--password-stdin"],
        b"new-alice-pw\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server reads the account at every login: the old password, remembered
    // a moment ago, is refused at once; the new one works.
    let reply = imap_login(&s, "127.0.0.2", USER, PASS);
    assert!(reply.contains("AUTHENTICATIONFAILED"), "{reply}");
    assert!(imap_login(&s, "127.0.0.2", USER, "new-alice-pw").starts_with("a OK"));
    assert!(imap_login(&s, "127.0.0.2", USER, "new-alice-pw").starts_with("a OK"));

    // password-cache is a duration; 0 turns the memory off.
    let out = s.cli(&["settings", "security", "set", "password-cache=soon"], b"");
    assert!(!out.status.success());
    s.set_settings("security", &["password-cache=0"]);
    let out = s.cli(&["settings", "security", "get", "password-cache"], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0s");
    s.wait_for_settings();
    assert!(imap_login(&s, "127.0.0.2", USER, "new-alice-pw").starts_with("a OK"));
}
