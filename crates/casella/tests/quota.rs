//! Storage quotas (issue 19) over a real server with Python's own imaplib
//! and smtplib (tests/clients/quota_check.py): Exchange's three levels set
//! per account with `casella account set`; IMAP QUOTA (RFC 9208)
//! GETQUOTAROOT/GETQUOTA equal to the sum of the messages' sizes after
//! APPEND, delivery, MOVE and EXPUNGE; the warning delivered once; submission
//! refused with 552 5.2.2 above ProhibitSendQuota; APPEND and COPY answered
//! NO [OVERQUOTA] and SMTP delivery 552 5.2.2 at ProhibitSendReceiveQuota.

use casella_testkit::TestServer;
use casella_testkit::clients::python;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "full@example.org";
const PASS: &str = "correct horse battery staple";

fn check(s: &TestServer, step: &str) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<String> = ["imaps", "smtp", "submission"]
        .iter()
        .map(|p| s.port(p).to_string())
        .collect();
    let cert = s.cert_path().display().to_string();
    let args = [
        step,
        "127.0.0.1",
        &ports[0],
        &ports[1],
        &ports[2],
        &cert,
        USER,
        PASS,
    ];
    let out = python("quota_check.py", &args, tmp.path()).success();
    serde_json::from_slice(&out.stdout).expect("quota_check.py prints JSON")
}

fn set(s: &TestServer, pairs: &[&str]) {
    let mut args = vec!["account", "set", USER];
    args.extend_from_slice(pairs);
    let out = s.cli(&args, b"");
    assert!(out.status.success(), "{out:?}");
}

/// KiB as RFC 9208 §5.1 counts STORAGE: rounded up.
fn kib(bytes: &Value) -> u64 {
    bytes.as_u64().unwrap().div_ceil(1024)
}

#[test]
fn three_levels_over_imap_smtp_and_submission() {
    let s = TestServer::builder(BIN)
        .protocols(&["imaps", "smtp", "submission"])
        .config("hostname = \"mail.test\"\n")
        .start();
    s.add_account(USER, PASS);
    set(
        &s,
        &["quota-warning=3KB", "quota-send=5KB", "quota-receive=9KB"],
    );

    let fill = check(&s, "fill");
    assert_eq!(fill["before"]["used_kib"], 0, "{fill}");
    assert_eq!(fill["before"]["limit_kib"], 9, "{fill}");
    assert_eq!(
        fill["root"],
        serde_json::json!(["INBOX \"\"", "\"\" (STORAGE 0 9)"]),
        "one root, \"\", over every mailbox: {fill}"
    );
    assert_eq!(fill["deliveries"], serde_json::json!([250, 250]), "{fill}");
    assert_eq!(
        fill["after"]["used_kib"].as_u64(),
        Some(kib(&fill["sum"])),
        "{fill}"
    );
    let warnings = fill["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.as_str() == Some("Your mailbox is almost full"))
        .count();
    assert_eq!(warnings, 1, "the warning once: {fill}");
    assert_eq!(fill["count"], 5, "{fill}");
    let shown = s.cli(&["account", "show", USER], b"");
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains("usage: "), "{shown}");
    assert!(shown.contains("in 5 messages"), "{shown}");
    assert!(shown.contains("receiving at 9 KB"), "{shown}");

    let limits = check(&s, "limits");
    let sub = &limits["submission"];
    assert_eq!(sub[0], 552, "{limits}");
    assert!(
        sub[1].as_str().unwrap().starts_with("5.2.2 Mailbox full"),
        "{limits}"
    );
    assert!(
        limits["append"][1]
            .as_str()
            .unwrap()
            .contains("[OVERQUOTA]"),
        "{limits}"
    );
    assert_eq!(limits["copy"][0], "NO", "{limits}");
    assert!(
        limits["copy"][1].as_str().unwrap().contains("[OVERQUOTA]"),
        "{limits}"
    );
    assert_eq!(limits["move"], "OK", "MOVE adds nothing: {limits}");

    set(&s, &["quota-receive=4KB"]);
    let receive = check(&s, "receive");
    assert_eq!(receive["delivery"][0], 552, "{receive}");
    assert!(
        receive["delivery"][1]
            .as_str()
            .unwrap()
            .starts_with("5.2.2 <full@example.org>: Mailbox full"),
        "{receive}"
    );

    set(&s, &["quota-receive=default"]);
    // The limit: the server's, none. Put one back to see GETQUOTA again.
    set(&s, &["quota-receive=1GB"]);
    let emptied = check(&s, "expunge");
    assert_eq!(
        emptied["count"], 1,
        "the moved one in Deleted Items: {emptied}"
    );
    assert_eq!(
        emptied["after"]["used_kib"].as_u64(),
        Some(kib(&emptied["sum"])),
        "expunged (recoverable) mail does not count: {emptied}"
    );
}
