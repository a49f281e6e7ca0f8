//! A message's life after delete (issue 19), over a real server with Python's
//! own imaplib and poplib (tests/clients/recovery_check.py): SAVEDATE (RFC
//! 8514) on FETCH and SEARCH; what IMAP EXPUNGE and POP3 DELE remove stays
//! recoverable, `casella account recover` lists it and `--restore` puts it
//! back with a new UID and its flags; the retention settings and `casella
//! retention run|status`; the users' "Recover deleted items" page and the
//! admin API (urllib, tests/clients/recover_web_check.py). (Retention by age, with a clock the test moves, is
//! tested beside the job: `src/retention.rs`, and in the store's conformance
//! rules.)

use casella_testkit::TestServer;
use casella_testkit::clients::python;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "rosa@example.org";
const PASS: &str = "correct horse battery staple";

fn check(s: &TestServer, step: &str) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let (imaps, pop3s) = (s.port("imaps").to_string(), s.port("pop3s").to_string());
    let cert = s.cert_path().display().to_string();
    let args = [step, "127.0.0.1", &imaps, &pop3s, &cert, USER, PASS];
    let out = python("recovery_check.py", &args, tmp.path()).success();
    serde_json::from_slice(&out.stdout).expect("recovery_check.py prints JSON")
}

fn cli(s: &TestServer, args: &[&str]) -> String {
    let out = s.cli(args, b"");
    assert!(out.status.success(), "casella {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deleted_mail_is_listed_and_restored_with_a_new_uid() {
    let s = TestServer::builder(BIN)
        .protocols(&["imaps", "pop3s"])
        .config("hostname = \"mail.test\"\n")
        .start();
    s.add_account(USER, PASS);

    let done = check(&s, "delete");
    assert_eq!(done["capability"], true, "{done}");
    let dates = done["savedates"].as_array().unwrap();
    assert_eq!(dates.len(), 2, "{done}");
    assert!(
        dates.iter().all(|d| d.as_str().unwrap().ends_with("+0000")),
        "{done}"
    );
    assert_eq!(done["saved_since_today"], 2, "{done}");
    assert_eq!(done["saved_before_2000"], 0, "{done}");
    assert_eq!(done["supported"], 2, "{done}");
    assert_eq!(done["pop_count"], 1, "POP3 sees what IMAP left: {done}");
    let old_uids: Vec<u64> = done["uids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_u64().unwrap())
        .collect();
    assert!(
        check(&s, "look")["messages"].as_array().unwrap().is_empty(),
        "both are gone from IMAP"
    );

    let list = cli(&s, &["account", "recover", USER]);
    assert!(list.contains("first to go"), "{list}");
    assert!(list.contains("second to go"), "{list}");
    assert!(list.contains("2 recoverable"), "{list}");
    let none = cli(&s, &["account", "recover", USER, "--folder", "Sent Items"]);
    assert!(none.contains("no recoverable items"), "{none}");
    let recent = cli(
        &s,
        &[
            "account", "recover", USER, "--since", "1h", "--folder", "inbox",
        ],
    );
    assert!(recent.contains("2 recoverable"), "{recent}");
    let future = cli(&s, &["account", "recover", USER, "--since", "2999-01-01"]);
    assert!(future.contains("no recoverable items"), "{future}");
    let bad = s.cli(&["account", "recover", USER, "--since", "someday"], b"");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("a date such as"),
        "{bad:?}"
    );

    let first = list
        .lines()
        .find(|l| l.contains("first to go"))
        .and_then(|l| l.split('\t').next())
        .unwrap()
        .to_string();
    let restored = cli(
        &s,
        &["account", "recover", USER, "--id", &first, "--restore"],
    );
    assert!(restored.contains("1 restored"), "{restored}");
    let back = check(&s, "look");
    let messages = back["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{back}");
    let m = &messages[0];
    assert_eq!(m["subject"], "first to go");
    assert!(
        m["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "\\Flagged"),
        "flags kept: {back}"
    );
    assert!(
        !m["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "\\Deleted"),
        "not \\Deleted any more, or the next EXPUNGE takes it again: {back}"
    );
    let max_old = old_uids.iter().max().copied().unwrap();
    assert!(
        m["uid"].as_u64().unwrap() > max_old,
        "a new UID above every earlier one: {back}"
    );
    let left = cli(&s, &["account", "recover", USER]);
    assert!(left.contains("1 recoverable"), "{left}");
    assert!(!left.contains("first to go"), "{left}");
}

#[test]
fn retention_settings_and_a_pass_on_demand() {
    let s = TestServer::builder(BIN)
        .protocols(&["imaps"])
        .config("hostname = \"mail.test\"\n")
        .start();
    s.add_account(USER, PASS);
    let get = cli(&s, &["settings", "retention", "get"]);
    assert!(get.contains("deleted-items = 30d"), "{get}");
    assert!(get.contains("junk = 10d"), "{get}");
    assert!(get.contains("recoverable = 14d"), "{get}");
    cli(
        &s,
        &["settings", "retention", "set", "junk=5", "recoverable=0"],
    );
    let junk = cli(&s, &["settings", "retention", "get", "junk"]);
    assert_eq!(junk.trim(), "5d");
    let bad = s.cli(&["settings", "retention", "set", "junk=soon"], b"");
    assert!(!bad.status.success());
    let own = cli(&s, &["account", "set", USER, "retention-deleted-items=60"]);
    assert!(!own.is_empty());
    let shown = cli(&s, &["account", "show", USER]);
    assert!(shown.contains("retention-deleted-items"), "{shown}");
    assert!(shown.contains("60d"), "{shown}");

    let before = cli(&s, &["retention", "status"]);
    assert!(before.contains("last run: never"), "{before}");
    let run = cli(&s, &["retention", "run"]);
    assert_eq!(run.trim(), "expired 0, purged 0");
    let after = cli(&s, &["retention", "status"]);
    assert!(after.contains("last run: "), "{after}");
    assert!(!after.contains("never"), "{after}");
    assert!(after.contains("junk = 5d"), "{after}");
}

#[test]
fn the_recover_page_and_the_admin_api_restore_deleted_mail() {
    let s = TestServer::builder(BIN)
        .protocols(&["imaps", "pop3s", "http"])
        .config("hostname = \"mail.test\"\n")
        .start();
    s.add_account(USER, PASS);
    check(&s, "delete");
    let token = cli(&s, &["admin", "token", "create", "--name", "tests"]);
    let tmp = tempfile::tempdir().unwrap();
    let base = format!("http://{}", s.addr("http"));
    let args = [base.as_str(), USER, PASS, token.trim()];
    let out = python("recover_web_check.py", &args, tmp.path()).success();
    let web: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(web["nav_link"], true, "{web}");
    assert_eq!(web["page_items"], 2, "{web}");
    // Newest first: POP3 deleted the second after IMAP expunged the first.
    let subjects = web["page_subjects"].as_array().unwrap();
    assert!(subjects.iter().any(|s| s == "second to go"), "{web}");
    assert_eq!(web["outcome"], "1 message restored to INBOX.", "{web}");
    assert_eq!(web["page_items_after"], 1, "{web}");
    assert_eq!(web["api_folders"], serde_json::json!(["INBOX"]), "{web}");
    assert_eq!(web["api_restored"].as_array().unwrap().len(), 1, "{web}");
    assert_eq!(web["api_left"], 0, "{web}");
    let back = check(&s, "look");
    let mut subjects: Vec<&str> = back["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["first to go", "second to go"], "{back}");
}
