//! `casella import maildir` and `casella export maildir` (issue 19) against
//! Dovecot itself: a Maildir that Dovecot wrote (`doveadm save`, `doveadm
//! flags`, `doveadm expunge`) comes into casella with its folders,
//! UIDVALIDITY, UIDs, flags and keywords, as Python's imaplib sees them, so a
//! client that synced with Dovecot (mbsync, Thunderbird) finds nothing new;
//! a second import takes nothing twice; what casella exports Dovecot reads
//! back with the same UIDVALIDITY, UIDs and flags, and importing the export
//! into another account gives the same mailboxes (sizes and dates too); and
//! mbsync, synced with the account, finds nothing to download on a server the
//! account moved to by export and import (UIDVALIDITY and UIDs kept).
//! Needs `doveadm` (Debian's dovecot-core) and `mbsync` (isync): skipped with
//! a line when one is missing, unless `CASELLA_REQUIRE_CLIENTS=1`.

use std::collections::BTreeMap;

use casella_testkit::TestServer;
use casella_testkit::clients::{self, python};
use casella_testkit::doveadm::{self, Doveadm};
use casella_testkit::mbsync::Mbsync;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const PASS: &str = "correct horse battery staple";

fn message(n: u32) -> Vec<u8> {
    format!(
        "From: sender{n}@example.net\r\nTo: {ALICE}\r\nSubject: message {n}\r\n\
         Date: Mon, 7 Dec 2026 10:0{n}:00 +0000\r\n\r\nBody of message {n}.\r\n"
    )
    .into_bytes()
}

/// What Dovecot says of a folder: UIDVALIDITY, and "uid flags" per message
/// (flags sorted).
fn dovecot_view(d: &Doveadm, mailbox: &str) -> (u64, Vec<(u64, Vec<String>)>) {
    let status = d
        .run(
            &["-f", "flow", "mailbox", "status", "uidvalidity", mailbox],
            None,
        )
        .success()
        .out();
    let validity = status
        .trim()
        .rsplit('=')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("uidvalidity of {mailbox}: {status}"));
    let fetched = d
        .run(
            &["-f", "flow", "fetch", "uid flags", "mailbox", mailbox],
            None,
        )
        .success()
        .out();
    let mut messages = Vec::new();
    for line in fetched.lines() {
        // uid=1 flags=\Seen $Label1
        let Some(rest) = line.trim().strip_prefix("uid=") else {
            continue;
        };
        let (uid, flags) = rest.split_once(" flags=").unwrap_or((rest, ""));
        let mut flags: Vec<String> = flags
            .split_whitespace()
            .filter(|f| *f != "\\Recent")
            .map(str::to_string)
            .collect();
        flags.sort();
        messages.push((uid.trim().parse().unwrap(), flags));
    }
    (validity, messages)
}

/// The same as casella's IMAP shows it to imaplib.
fn casella_view(s: &TestServer, user: &str) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let port = s.port("imaps").to_string();
    let cert = s.cert_path().display().to_string();
    let out = python(
        "mailbox_view.py",
        &["127.0.0.1", &port, &cert, user, PASS],
        tmp.path(),
    )
    .success();
    serde_json::from_slice(&out.stdout).expect("mailbox_view.py prints JSON")
}

fn as_dovecot(view: &Value, mailbox: &str) -> (u64, Vec<(u64, Vec<String>)>) {
    let mb = &view[mailbox];
    let messages = mb["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no {mailbox} in {view}"))
        .iter()
        .map(|m| {
            let flags = m[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect();
            (m[0].as_u64().unwrap(), flags)
        })
        .collect();
    (mb["uidvalidity"].as_u64().unwrap(), messages)
}

fn transfer(s: &TestServer, verb: &str, user: &str, dir: &std::path::Path) -> Value {
    let dir = dir.display().to_string();
    let out = s.cli(&[verb, "maildir", user, &dir, "--json"], b"");
    assert!(out.status.success(), "{verb}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

#[test]
fn a_dovecot_maildir_comes_in_with_its_uids_and_goes_back_out() {
    if !doveadm::available() {
        return;
    }
    let d = Doveadm::new("");
    for n in 1..=3 {
        d.run(&["save", "-m", "INBOX"], Some(&message(n))).success();
    }
    d.run(&["mailbox", "create", "Archive/2024"], None)
        .success();
    for n in 4..=5 {
        d.run(&["save", "-m", "Archive/2024"], Some(&message(n)))
            .success();
    }
    d.run(
        &[
            "flags",
            "add",
            "\\Seen $Label1",
            "mailbox",
            "INBOX",
            "uid",
            "1",
        ],
        None,
    )
    .success();
    d.run(
        &[
            "flags",
            "add",
            "\\Flagged \\Answered",
            "mailbox",
            "Archive/2024",
            "uid",
            "2",
        ],
        None,
    )
    .success();
    // A gap in the UIDs, as real mailboxes have.
    d.run(&["expunge", "mailbox", "INBOX", "uid", "2"], None)
        .success();
    let mut dovecot = BTreeMap::new();
    for mb in ["INBOX", "Archive/2024"] {
        dovecot.insert(mb, dovecot_view(&d, mb));
    }
    assert_eq!(dovecot["INBOX"].1.len(), 2);

    let s = TestServer::builder(BIN)
        .protocols(&["imaps"])
        .config("hostname = \"mail.test\"\n")
        .start();
    s.add_account(ALICE, PASS);
    s.add_account(BOB, PASS);
    let first = transfer(&s, "import", ALICE, &d.maildir());
    assert_eq!(first["imported"], 4, "{first}");
    assert_eq!(first["skipped"], 0, "{first}");
    let view = casella_view(&s, ALICE);
    for (mb, want) in &dovecot {
        assert_eq!(
            &as_dovecot(&view, mb),
            want,
            "{mb}: UIDVALIDITY, UIDs and flags as Dovecot had them: {view}"
        );
    }
    // The bytes: Dovecot keeps bare LFs on disk; casella gives CRLF, as
    // Dovecot's IMAP does, so the sizes are those of the saved messages.
    let first_size = &view["INBOX"]["messages"][0][3];
    assert_eq!(first_size.as_u64(), Some(message(1).len() as u64), "{view}");
    let again = transfer(&s, "import", ALICE, &d.maildir());
    assert_eq!(again["imported"], 0, "nothing twice: {again}");
    assert_eq!(again["skipped"], 4, "{again}");

    // Out again: Dovecot reads casella's export with the same identity.
    let out = Doveadm::new("");
    let exported = transfer(&s, "export", ALICE, &out.maildir());
    assert_eq!(exported["exported"], 4, "{exported}");
    out.hand_over(&out.maildir());
    for (mb, want) in &dovecot {
        assert_eq!(&dovecot_view(&out, mb), want, "Dovecot reads {mb} back");
    }
    // And into another account: the same mailboxes, sizes and dates.
    let into_bob = transfer(&s, "import", BOB, &out.maildir());
    assert_eq!(into_bob["imported"], 4, "{into_bob}");
    let bob = casella_view(&s, BOB);
    for mb in ["INBOX", "Archive/2024"] {
        assert_eq!(bob[mb], view[mb], "{mb} after export and import");
    }

    // A mail program that synced with the account finds nothing new on a
    // server the account moved to by export and import: mbsync keeps its
    // state, is pointed at the new server, and downloads nothing.
    if clients::available("mbsync", "isync") {
        mbsync_finds_nothing_new(&s, &out);
    }

    // Mail arrives on both sides after the import, so one UID names two
    // different messages: the import keeps casella's and adds Dovecot's with
    // a new UID; nothing is lost or taken twice.
    let ours = "From: x@example.net\r\nSubject: delivered here\r\n\r\nhi\r\n";
    let out = s.cli(&["deliver", "--to", ALICE], ours.as_bytes());
    assert!(out.status.success(), "{out:?}");
    d.run(&["save", "-m", "INBOX"], Some(&message(6))).success();
    let both = transfer(&s, "import", ALICE, &d.maildir());
    assert_eq!(
        (&both["imported"], &both["skipped"]),
        (&1.into(), &4.into()),
        "{both}"
    );
    let inbox = &casella_view(&s, ALICE)["INBOX"];
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 4, "{inbox}");
    let again = transfer(&s, "import", ALICE, &d.maildir());
    assert_eq!(again["imported"], 0, "{again}");
}

/// mbsync synced with ALICE on `s` downloads nothing from a server the
/// account moved to by importing `out` (its export).
fn mbsync_finds_nothing_new(s: &TestServer, out: &Doveadm) {
    let sync = Mbsync::new(s.port("imaps"), &s.cert_path(), ALICE, PASS, "IMAPS");
    sync.sync();
    let before = local_files(sync.dir());
    assert_eq!(before.len(), 4, "{before:?}");
    let moved = TestServer::builder(BIN)
        .protocols(&["imaps"])
        .config("hostname = \"mail.test\"\n")
        .start();
    moved.add_account(ALICE, PASS);
    let there = transfer(&moved, "import", ALICE, &out.maildir());
    assert_eq!(there["imported"], 4, "{there}");
    sync.point_at(moved.port("imaps"), &moved.cert_path());
    let run = sync.sync();
    assert_eq!(
        local_files(sync.dir()),
        before,
        "nothing downloaded again: {}",
        run.dump()
    );
}

/// The message files of every local Maildir folder, by name.
fn local_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "cur" || n == "new")
            {
                out.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
