//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 7677) on IMAP, POP3 and
//! submission, with the independent client implementation of Python's `scramp`
//! package (tests/clients/scram_check.py), including channel binding to the TLS
//! connection (tls-server-end-point). The server keeps only SCRAM keys.

use casella_testkit::TestServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "correct horse battery staple";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["imaps", "pop3s", "submission"])
        .config("hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account(USER, PASS);
    s.set_settings("security", &["trusted-networks=127.0.0.0/8"]);
    s.wait_for_settings();
    s
}

fn login(s: &TestServer, proto: &str, mech: &str, password: &str) -> Value {
    let out =
        casella_testkit::clients::sasl_login("scram_check.py", s, proto, mech, USER, password);
    serde_json::from_slice(&out).expect("scram_check.py prints JSON")
}

#[test]
fn scram_with_and_without_channel_binding_on_every_protocol() {
    if !casella_testkit::clients::python_module("scramp", "python3 -m pip install scramp") {
        return;
    }
    let s = server();
    for proto in ["imap", "pop", "smtp"] {
        for mech in ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"] {
            let r = login(&s, proto, mech, PASS);
            assert_eq!(r["ok"], true, "{proto} {mech}: {r}");
            assert!(r["caps"].to_string().contains(mech), "{proto}: {r}");
            let r = login(&s, proto, mech, "wrong password");
            assert_eq!(r["ok"], false, "{proto} {mech} with a wrong password: {r}");
        }
    }
    // Only the derived keys are stored, never the password.
    let out = s.cli(&["account", "show", USER], b"");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PASS));
}
