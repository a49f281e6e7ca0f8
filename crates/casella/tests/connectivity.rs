//! `casella test-connectivity` against a running server: success with a table or
//! JSON, and a Failure that says why when the password is wrong or the protocol is
//! switched off for the mailbox.

use casella_testkit::TestServer;

const USER: &str = "alice@example.org";
const PASS: &str = "test-pw1";

fn server() -> TestServer {
    let s = TestServer::builder(env!("CARGO_BIN_EXE_casella"))
        .protocols(&["pop3", "pop3s", "imap", "imaps", "submission", "submissions"])
        .config("hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account(USER, PASS);
    s
}

fn test(
    s: &TestServer,
    protocol: &str,
    listener: &str,
    kind: &str,
    password: &str,
    json: bool,
) -> (bool, String) {
    let server = s.addr(listener).to_string();
    let imap = s.addr("imaps").to_string();
    let mut args = vec![
        "test-connectivity",
        "--imap-server",
        &imap,
        "--protocol",
        protocol,
        "--server",
        &server,
        "--connection-type",
        kind,
        "--user",
        USER,
        "--password-stdin",
    ];
    if json {
        args.push("--json");
    }
    let out = s.cli(&args, format!("{password}\n").as_bytes());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn every_protocol_and_connection_type_succeeds() {
    let s = server();
    s.deliver(USER, b"Subject: hello\r\n\r\nx\r\n");
    for (protocol, listener, kind) in [
        ("pop", "pop3s", "ssl"),
        ("pop", "pop3", "tls"),
        ("imap", "imaps", "ssl"),
        ("imap", "imap", "tls"),
        ("submission", "submissions", "ssl"),
        ("submission", "submission", "tls"),
    ] {
        let (ok, out) = test(&s, protocol, listener, kind, PASS, false);
        assert!(ok, "{protocol} {kind}: {out}");
        assert!(out.contains("Success") && !out.contains("Failure"), "{out}");
    }
    // Submission sent a probe to itself and found it over IMAP, then removed it.
    let (ok, out) = test(&s, "imap", "imaps", "ssl", PASS, true);
    assert!(ok, "{out}");
    let rows: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(
        rows.iter()
            .all(|r| r["result"] == "Success" && r["latency_ms"].is_u64()),
        "{out}"
    );
    assert_eq!(rows[0]["connection_type"], "ssl");
}

#[test]
fn failures_say_why() {
    let s = server();
    let (ok, out) = test(&s, "pop", "pop3s", "ssl", "wrong", false);
    assert!(!ok);
    assert!(
        out.contains("Failure") && out.contains("-ERR [AUTH]") && out.contains("Skipped"),
        "{out}"
    );
    assert!(
        s.cli(&["account", "set", USER, "imap=off"], b"")
            .status
            .success()
    );
    let (ok, out) = test(&s, "imap", "imaps", "ssl", PASS, false);
    assert!(!ok);
    assert!(out.contains("Login failure or IMAP disabled"), "{out}");
    // Plaintext against the SecureLogin default: the log-on fails with the reason.
    let (ok, out) = test(&s, "pop", "pop3", "plaintext", PASS, false);
    assert!(!ok);
    assert!(out.contains("STLS"), "{out}");
    // Nothing listening.
    let out = s.cli(
        &[
            "test-connectivity",
            "--protocol",
            "pop",
            "--server",
            "127.0.0.1:1",
            "--connection-type",
            "ssl",
        ],
        b"",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Failure"));
}
