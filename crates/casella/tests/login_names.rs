//! Logins by user name (issue 19): with `default-domain` set (`casella
//! settings security set default-domain=example.org`), `alice` logs in as
//! `alice@example.org` — and Exchange's `DOMAIN\alice` form as `alice` — on
//! IMAP, POP3, submission and the web, by the same rules for every mechanism,
//! aliases included. Driven with Python's own imaplib, poplib and smtplib
//! (tests/clients/login_names_check.py) and curl.

use casella_testkit::TestServer;
use casella_testkit::clients::{curl, python};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "correct horse battery staple";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["https", "imaps", "pop3s", "submission"])
        .config(
            "hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\n\
             auth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n",
        )
        .start();
    s.add_account(USER, PASS);
    let out = s.cli(&["account", "alias", "add", USER, "sales@example.org"], b"");
    assert!(out.status.success(), "{out:?}");
    // Many wrong names from one address below: no throttling here.
    s.set_settings("security", &["trusted-networks=127.0.0.0/8"]);
    s.wait_for_settings();
    s
}

/// Which of the five ways in let `user` in (imaplib LOGIN and PLAIN, poplib
/// USER/PASS, smtplib PLAIN and LOGIN).
fn logins(s: &TestServer, user: &str) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let (imaps, pop3s, submission) = (
        s.port("imaps").to_string(),
        s.port("pop3s").to_string(),
        s.port("submission").to_string(),
    );
    let cert = s.cert_path().display().to_string();
    let args = ["127.0.0.1", &imaps, &pop3s, &submission, &cert, user, PASS];
    let out = python("login_names_check.py", &args, tmp.path()).success();
    serde_json::from_slice(&out.stdout).expect("login_names_check.py prints JSON")
}

fn all(value: &Value, want: bool) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.len() == 5 && m.values().all(|v| v.as_bool() == Some(want)))
}

/// The status of a web sign-in as `user`.
fn web_login(s: &TestServer, user: &str) -> u16 {
    let tmp = tempfile::tempdir().unwrap();
    let port = s.port("https");
    let cert = s.cert_path().display().to_string();
    let resolve = format!("mail.test:{port}:127.0.0.1");
    let address = format!("address={user}");
    let password = format!("password={PASS}");
    let url = format!("https://mail.test:{port}/login");
    let run = curl(
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &cert,
            "--resolve",
            &resolve,
            "--data-urlencode",
            &address,
            "--data-urlencode",
            &password,
            &url,
        ],
        tmp.path(),
    )
    .success();
    run.out().trim().parse().expect("a status code")
}

#[test]
fn short_names_log_in_once_a_default_domain_is_set() {
    let s = server();
    // Without a default domain only whole addresses name an account.
    assert!(all(&logins(&s, USER), true), "{}", logins(&s, USER));
    for name in ["alice", "CORP\\alice"] {
        let r = logins(&s, name);
        assert!(all(&r, false), "{name} without a default domain: {r}");
    }
    assert_eq!(web_login(&s, "alice"), 401);

    s.set_settings("security", &["default-domain=Example.ORG"]);
    s.wait_for_settings();
    let out = s.cli(&["settings", "security", "get"], b"");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("default-domain") && shown.contains("example.org"),
        "{shown}"
    );

    for name in [
        "alice",
        "Alice",
        "CORP\\alice",
        "sales",
        USER,
        "sales@example.org",
    ] {
        let r = logins(&s, name);
        assert!(all(&r, true), "{name}: {r}");
    }
    for name in ["bob", "anonymous", "alice@other.test"] {
        let r = logins(&s, name);
        assert!(all(&r, false), "{name}: {r}");
    }
    assert_eq!(web_login(&s, "alice"), 303);
    assert_eq!(web_login(&s, "CORP\\alice"), 303);
    assert_eq!(web_login(&s, "bob"), 401);

    // Something that is not a domain is refused, and the setting stays.
    let out = s.cli(
        &["settings", "security", "set", "default-domain=not a domain"],
        b"",
    );
    assert!(!out.status.success(), "{out:?}");
    let out = s.cli(&["settings", "security", "get"], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("example.org"));

    // Off again: short names stop working.
    s.set_settings("security", &["default-domain=none"]);
    s.wait_for_settings();
    let r = logins(&s, "alice");
    assert!(all(&r, false), "after default-domain=none: {r}");
}
