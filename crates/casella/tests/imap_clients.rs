//! The real server's IMAP, driven by clients we did not write: Python's imaplib (an
//! IMAP4rev1 client; script in `tests/clients/imap_check.py`), curl, and mbsync (isync).
//!
//! Every test starts its own server on loopback ports in a temporary directory. Every
//! client program runs in its own process group with a time limit; when it overruns,
//! the group is killed and the test fails. A missing program fails the test with a
//! message saying what to install (`.ci/run` installs them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use casella_testkit::clients::{Run, curl, run, scripts, write};
use casella_testkit::imap_inbox::{MSG1, MSG2, msg3};
use casella_testkit::mbsync::Mbsync;
use casella_testkit::{LineClient, TestServer};

const USER: &str = "u@example.org";
const PASSWORD: &str = "a good password";

const CONFIG: &str = "hostname = \"mail.test\"\n\
[imap]\nauth-failure-delay-ms = 0\n\
[pop3]\nauth-failure-delay-ms = 0\n";

const PLAINTEXT_CONFIG: &str = "hostname = \"mail.test\"\n\
[imap]\nauth-failure-delay-ms = 0\nlogin-type = \"plaintext-login\"\n\
[pop3]\nauth-failure-delay-ms = 0\n";

const MSG4: &[u8] = b"From: Erin <e@remote.test>\r\n\
To: u@example.org\r\n\
Subject: fourth message\r\n\
Message-ID: <fourth@remote.test>\r\n\
Date: Wed, 04 Jun 2025 13:00:00 +0000\r\n\
\r\n\
The fourth body, delivered later.\r\n";

// ---------------------------------------------------------------------------
// Running client programs
// ---------------------------------------------------------------------------

/// `python3 -I tests/clients/imap_check.py ARGS` (isolated: no user site, no PYTHON* env).
fn imap_check(args: &[&str], tmp: &Path) -> Run {
    let mut cmd = Command::new("python3");
    cmd.arg("-I")
        .arg(scripts().join("imap_check.py"))
        .args(args);
    run(cmd, tmp)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn server_with(config: &str) -> TestServer {
    let s = TestServer::builder(env!("CARGO_BIN_EXE_casella"))
        .protocols(&["imap", "imaps", "pop3s", "smtp"])
        .config(config)
        .start();
    s.add_account(USER, PASSWORD);
    s
}

fn server() -> TestServer {
    server_with(CONFIG)
}

/// A server whose INBOX holds MSG1, MSG2 and msg3(), in that order.
fn server_with_three(config: &str) -> TestServer {
    let s = server_with(config);
    s.deliver(USER, MSG1);
    s.deliver(USER, MSG2);
    s.deliver(USER, &msg3());
    s
}

fn cert(s: &TestServer) -> String {
    s.cert_path().to_string_lossy().into_owned()
}

fn user_pw() -> String {
    format!("{USER}:{PASSWORD}")
}

/// The common arguments of imap_check.py: mode, port, certificate, user, password.
fn conn_args(s: &TestServer, mode: &str, password: &str) -> Vec<String> {
    let listener = if mode == "ssl" { "imaps" } else { "imap" };
    [
        "--mode",
        mode,
        "--port",
        &s.port(listener).to_string(),
        "--cert",
        &cert(s),
        "--user",
        USER,
        "--password",
        password,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn imap_check_on(s: &TestServer, command: &str, mode: &str, extra: &[&str], tmp: &Path) -> Run {
    let conn = conn_args(s, mode, PASSWORD);
    let mut args: Vec<&str> = vec![command];
    args.extend(conn.iter().map(String::as_str));
    args.extend_from_slice(extra);
    imap_check(&args, tmp)
}

/// One message as imap_check.py's `dump` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ServerMsg {
    uid: u32,
    flags: BTreeSet<String>,
    message_id: String,
}

/// imaplib: every mailbox of USER with its messages, read with EXAMINE.
fn server_view(s: &TestServer, tmp: &Path) -> BTreeMap<String, Vec<ServerMsg>> {
    let r = imap_check_on(s, "dump", "ssl", &[], tmp).success();
    let out = r.out();
    let mut view: BTreeMap<String, Vec<ServerMsg>> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("mailbox: ") {
            let (name, count) = rest.rsplit_once(" count=").expect("mailbox line");
            view.insert(name.to_string(), Vec::new());
            counts.insert(name.to_string(), count.parse().expect("count"));
        } else if let Some(rest) = line.strip_prefix("msg ") {
            let parts: Vec<&str> = rest.split('|').collect();
            assert_eq!(parts.len(), 4, "dump line {line:?}\n{}", r.dump());
            view.get_mut(parts[0])
                .unwrap_or_else(|| panic!("message before its mailbox\n{}", r.dump()))
                .push(ServerMsg {
                    uid: parts[1].parse().expect("uid"),
                    flags: parts[2].split_whitespace().map(str::to_string).collect(),
                    message_id: parts[3].to_string(),
                });
        }
    }
    for (name, msgs) in &view {
        assert_eq!(counts[name], msgs.len(), "{name}\n{}", r.dump());
    }
    view
}

fn flags(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// 1. Python imaplib
// ---------------------------------------------------------------------------

/// The whole imaplib session of imap_check.py on a fresh INBOX of three messages.
fn imaplib_session(mode: &str, config: &str) {
    let s = server_with_three(config);
    let tmp = tempdir();
    let m1 = write(tmp.path(), "m1.eml", MSG1);
    let m2 = write(tmp.path(), "m2.eml", MSG2);
    let m3 = write(tmp.path(), "m3.eml", &msg3());
    let r = imap_check_on(
        &s,
        "session",
        mode,
        &["--expect", &m1, "--expect", &m2, "--expect", &m3],
        tmp.path(),
    )
    .success();
    let out = r.out();
    let mut steps = vec![
        "ok: login",
        "ok: list with special-use",
        "ok: select INBOX exists=3",
        "ok: fetch flags internaldate rfc822.size envelope bodystructure body.peek[header]",
        "ok: \\Seen set by BODY[] and RFC822, not by BODY.PEEK[]",
        "ok: uid search",
        "ok: store +flags -flags flags.silent, uid store",
        "ok: copy to Archive, COPYUID",
        "ok: copies keep bytes and flags",
        "ok: uid move to Junk Email",
        "ok: expunge",
        "ok: append with flags and date, APPENDUID",
        "ok: status",
        "ok: create rename delete subscribe lsub",
        "ok: close expunges, unselect does not",
        "ok: idle saw * 3 EXISTS and * 1 EXPUNGE",
        "ok: another session's changes on NOOP",
        "ok: logout",
        "PASS",
    ];
    match mode {
        "stls" => steps.extend([
            "ok: login refused before STARTTLS",
            "[PRIVACYREQUIRED]",
            "ok: starttls (TLSv1.",
        ]),
        "ssl" => steps.push("ok: implicit tls (TLSv1."),
        _ => {}
    }
    for step in steps {
        assert!(out.contains(step), "missing {step:?}\n{}", r.dump());
    }

    // What the session left behind, seen from a new connection.
    let view = server_view(&s, tmp.path());
    let ids =
        |name: &str| -> Vec<String> { view[name].iter().map(|m| m.message_id.clone()).collect() };
    assert_eq!(
        ids("INBOX"),
        ["<appended@remote.test>", "<second@remote.test>"],
        "{view:#?}"
    );
    assert_eq!(ids("Archive"), ["<first@remote.test>"], "{view:#?}");
    assert_eq!(ids("Junk Email"), ["<second@remote.test>"], "{view:#?}");
    assert_eq!(
        view["INBOX"][0].flags,
        flags(&["$Important", "\\Flagged", "\\Seen"])
    );
    assert!(view["INBOX"][1].flags.is_empty(), "{view:#?}");
    assert_eq!(view["Archive"][0].flags, flags(&["\\Flagged"]));
    assert_eq!(
        view["Junk Email"][0].flags,
        flags(&["$Label1", "\\Answered", "\\Deleted"])
    );
    assert!(view.contains_key("R&AOk-sum&AOk-"), "{view:#?}");
    assert!(!view.keys().any(|k| k.starts_with("Projects")), "{view:#?}");
}

#[test]
fn imaplib_starttls_full_session() {
    imaplib_session("stls", CONFIG);
}

#[test]
fn imaplib_implicit_tls_full_session() {
    imaplib_session("ssl", CONFIG);
}

#[test]
fn imaplib_cleartext_full_session_with_plaintext_login_policy() {
    imaplib_session("plain", PLAINTEXT_CONFIG);
}

/// A multipart message (text, base64 attachment, message/rfc822): BODYSTRUCTURE,
/// BODY, part sections, partial and BINARY fetches, SEARCH CHARSET UTF-8 with a
/// literal.
#[test]
fn imaplib_multipart_structure_and_sections() {
    let s = server();
    s.deliver(USER, MSG1);
    let tmp = tempdir();
    let r = imap_check_on(&s, "mime", "ssl", &[], tmp.path()).success();
    let out = r.out();
    for step in [
        "ok: bodystructure and body of a multipart message",
        "ok: body sections, partial fetch, binary",
        "ok: search with a UTF-8 literal",
        "PASS",
    ] {
        assert!(out.contains(step), "missing {step:?}\n{}", r.dump());
    }
}

/// Raw UTF-8 in a header and in mailbox names: literals for a plain IMAP4rev1
/// client, UTF-8 after ENABLE UTF8=ACCEPT (RFC 6855), modified UTF-7 otherwise.
#[test]
fn imaplib_utf8_headers_and_mailbox_names() {
    let s = server();
    s.deliver(
        USER,
        "From: J\u{fc}rgen <j@remote.test>\r\n\
To: u@example.org\r\n\
Subject: Gr\u{fc}\u{df}e aus K\u{f6}ln\r\n\
Message-ID: <utf8@remote.test>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Sch\u{f6}ne Gr\u{fc}\u{df}e.\r\n"
            .as_bytes(),
    );
    let tmp = tempdir();
    let r = imap_check_on(&s, "utf8", "ssl", &[], tmp.path()).success();
    let out = r.out();
    for step in [
        "ok: 8-bit header fields without UTF8=ACCEPT",
        "ok: UTF8=ACCEPT mailbox names",
        "PASS",
    ] {
        assert!(out.contains(step), "missing {step:?}\n{}", r.dump());
    }
}

#[test]
fn imaplib_cleartext_login_refused_by_default() {
    let s = server();
    let tmp = tempdir();
    let r = imap_check_on(&s, "cleartext-refused", "plain", &[], tmp.path()).success();
    let out = r.out();
    for step in [
        "LOGINDISABLED",
        "STARTTLS",
        "ok: login refused: ",
        "ok: authenticate refused: ",
        "[PRIVACYREQUIRED]",
        "ok: select before login: ",
        "ok: login after starttls",
        "PASS",
    ] {
        assert!(out.contains(step), "missing {step:?}\n{}", r.dump());
    }
}

#[test]
fn imaplib_wrong_password_is_authenticationfailed() {
    let s = server();
    s.deliver(USER, MSG1);
    let tmp = tempdir();
    for mode in ["stls", "ssl"] {
        let conn = conn_args(&s, mode, "not the password");
        let mut args = vec!["refused"];
        args.extend(conn.iter().map(String::as_str));
        args.extend(["--code", "AUTHENTICATIONFAILED"]);
        let r = imap_check(&args, tmp.path()).success();
        assert!(
            r.out().contains("refused: NO [AUTHENTICATIONFAILED]"),
            "{}",
            r.dump()
        );
        assert!(
            r.out()
                .contains("authenticate refused: NO [AUTHENTICATIONFAILED]"),
            "{}",
            r.dump()
        );
    }
    // The right password still works afterwards.
    let r = imap_check_on(&s, "authenticate", "ssl", &[], tmp.path()).success();
    assert!(r.out().contains("exists: 1"), "{}", r.dump());
}

#[test]
fn imaplib_authenticate_plain() {
    let s = server();
    s.deliver(USER, MSG1);
    s.deliver(USER, MSG2);
    let tmp = tempdir();
    for mode in ["stls", "ssl"] {
        let r = imap_check_on(&s, "authenticate", mode, &[], tmp.path()).success();
        let out = r.out();
        assert!(
            out.contains("ok: authenticate plain") && out.contains("exists: 2"),
            "{}",
            r.dump()
        );
    }
}

#[test]
fn imaplib_imap_disabled_is_contactadmin() {
    let s = server();
    let tmp = tempdir();
    let out = s.cli(&["account", "set", USER, "imap=off"], b"");
    assert!(
        out.status.success(),
        "account set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for mode in ["stls", "ssl"] {
        let r = imap_check_on(
            &s,
            "refused",
            mode,
            &["--code", "CONTACTADMIN", "--text", "IMAP disabled"],
            tmp.path(),
        )
        .success();
        assert!(
            r.out().contains("refused: NO [CONTACTADMIN]"),
            "{}",
            r.dump()
        );
    }
    // On again: logins work.
    let out = s.cli(&["account", "set", USER, "imap=on"], b"");
    assert!(out.status.success());
    let r = imap_check_on(&s, "authenticate", "ssl", &[], tmp.path()).success();
    assert!(r.out().contains("exists: 0"), "{}", r.dump());
}

// ---------------------------------------------------------------------------
// 2. curl
// ---------------------------------------------------------------------------

#[test]
fn curl_imaps_list_fetch_search() {
    let s = server_with_three(CONFIG);
    let tmp = tempdir();
    let c = cert(&s);
    let base = format!("imaps://127.0.0.1:{}", s.port("imaps"));
    let up = user_pw();

    // LIST "" *
    let r = curl(
        &["--cacert", &c, &format!("{base}/"), "-u", &up],
        tmp.path(),
    )
    .success();
    let out = r.out();
    for (name, attr) in [
        ("INBOX", ""),
        ("Drafts", "\\Drafts"),
        ("\"Sent Items\"", "\\Sent"),
        ("\"Deleted Items\"", "\\Trash"),
        ("\"Junk Email\"", "\\Junk"),
        ("Archive", "\\Archive"),
    ] {
        let line = out
            .lines()
            .find(|l| {
                l.starts_with("* LIST (")
                    && (l.ends_with(&format!(" \"/\" {name}"))
                        || l.ends_with(&format!(" \"/\" \"{name}\"")))
            })
            .unwrap_or_else(|| panic!("no LIST line for {name}\n{}", r.dump()));
        assert!(line.contains(attr), "{line:?} lacks {attr}");
    }
    assert_eq!(out.lines().count(), 6, "{}", r.dump());

    // UID SEARCH ALL
    let r = curl(
        &[
            "--cacert",
            &c,
            &format!("{base}/INBOX"),
            "-u",
            &up,
            "-X",
            "UID SEARCH ALL",
        ],
        tmp.path(),
    )
    .success();
    let line = r
        .out()
        .lines()
        .find(|l| l.starts_with("* SEARCH"))
        .unwrap_or_else(|| panic!("no SEARCH reply\n{}", r.dump()))
        .to_string();
    let uids: Vec<u32> = line["* SEARCH".len()..]
        .split_whitespace()
        .map(|u| u.parse().expect("uid"))
        .collect();
    assert_eq!(uids.len(), 3, "{}", r.dump());

    // Each message by UID, exactly as delivered.
    for (uid, msg) in uids.iter().zip([MSG1.to_vec(), MSG2.to_vec(), msg3()]) {
        let r = curl(
            &[
                "--cacert",
                &c,
                &format!("{base}/INBOX;UID={uid}"),
                "-u",
                &up,
            ],
            tmp.path(),
        )
        .success();
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&msg),
            "UID {uid}\n{}",
            r.dump()
        );
        assert_eq!(r.stdout, msg);
    }

    // A header section, and a search in the URL (SEARCH SUBJECT: sequence numbers).
    let r = curl(
        &[
            "--cacert",
            &c,
            &format!("{base}/INBOX;UID={};SECTION=HEADER", uids[1]),
            "-u",
            &up,
        ],
        tmp.path(),
    )
    .success();
    let head = &MSG2[..MSG2
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head")
        + 4];
    assert_eq!(r.stdout, head, "{}", r.dump());
    let r = curl(
        &[
            "--cacert",
            &c,
            &format!("{base}/INBOX?SUBJECT%20third"),
            "-u",
            &up,
        ],
        tmp.path(),
    )
    .success();
    assert!(r.out().contains("* SEARCH 3"), "{}", r.dump());

    // curl fetched with BODY[]: every message is \Seen now.
    let view = server_view(&s, tmp.path());
    assert!(
        view["INBOX"].iter().all(|m| m.flags.contains("\\Seen")),
        "{view:#?}"
    );

    // A wrong password: curl reports "login denied" (exit 67).
    let r = curl(
        &[
            "--cacert",
            &c,
            &format!("{base}/"),
            "-u",
            &format!("{USER}:wrong"),
        ],
        tmp.path(),
    );
    assert_eq!(r.code(), Some(67), "{}", r.dump());
}

#[test]
fn curl_imap_starttls_fetch() {
    let s = server_with_three(CONFIG);
    let tmp = tempdir();
    let c = cert(&s);
    let base = format!("imap://127.0.0.1:{}", s.port("imap"));
    let up = user_pw();
    let r = curl(
        &[
            "--ssl-reqd",
            "--cacert",
            &c,
            &format!("{base}/INBOX;UID=2"),
            "-u",
            &up,
            "-v",
        ],
        tmp.path(),
    )
    .success();
    assert_eq!(r.stdout, MSG2, "{}", r.dump());
    assert!(r.stderr.contains("> A001 CAPABILITY"), "{}", r.dump());
    assert!(r.stderr.contains("STARTTLS"), "{}", r.dump());

    let r = curl(
        &["--ssl-reqd", "--cacert", &c, &format!("{base}/"), "-u", &up],
        tmp.path(),
    )
    .success();
    assert!(r.out().contains("\"Sent Items\""), "{}", r.dump());

    // Without STARTTLS the default policy (LOGINDISABLED) refuses: login denied.
    let r = curl(&[&format!("{base}/INBOX;UID=1"), "-u", &up], tmp.path());
    assert_eq!(r.code(), Some(67), "{}", r.dump());
    assert!(r.stdout.is_empty(), "{}", r.dump());
}

#[test]
fn curl_imaps_append_upload() {
    let s = server();
    let tmp = tempdir();
    let c = cert(&s);
    let base = format!("imaps://127.0.0.1:{}", s.port("imaps"));
    let up = user_pw();
    let msg: &[u8] = b"From: x@remote.test\r\n\
To: u@example.org\r\n\
Subject: uploaded by curl\r\n\
Message-ID: <curl-upload@remote.test>\r\n\
Date: Thu, 05 Jun 2025 08:00:00 +0000\r\n\
\r\n\
Body uploaded with curl -T.\r\n\
.a dotted line\r\n";
    let file = write(tmp.path(), "up.eml", msg);

    for url in [format!("{base}/INBOX"), format!("{base}/Sent%20Items")] {
        let r = curl(
            &["--cacert", &c, &url, "-u", &up, "-T", &file, "-v"],
            tmp.path(),
        )
        .success();
        assert!(r.stderr.contains("APPENDUID"), "{}", r.dump());
    }

    let view = server_view(&s, tmp.path());
    for name in ["INBOX", "Sent Items"] {
        let msgs = &view[name];
        assert_eq!(msgs.len(), 1, "{name}: {view:#?}");
        assert_eq!(msgs[0].message_id, "<curl-upload@remote.test>");
    }

    // Read back with curl: the exact bytes.
    let uid = view["INBOX"][0].uid;
    let r = curl(
        &[
            "--cacert",
            &c,
            &format!("{base}/INBOX;UID={uid}"),
            "-u",
            &up,
        ],
        tmp.path(),
    )
    .success();
    assert_eq!(r.stdout, msg, "{}", r.dump());
    // And with imaplib from "Sent Items".
    let out_file = tmp.path().join("sent.eml");
    let sent_uid = view["Sent Items"][0].uid.to_string();
    let r = imap_check_on(
        &s,
        "fetch-uid",
        "ssl",
        &[
            "--mailbox",
            "Sent Items",
            "--uid",
            &sent_uid,
            "--out",
            &out_file.to_string_lossy(),
        ],
        tmp.path(),
    )
    .success();
    assert_eq!(
        std::fs::read(&out_file).expect("sent.eml"),
        msg,
        "{}",
        r.dump()
    );

    // The INBOX copy is a message like any other: POP3 sees it too.
    let r = curl(
        &[
            "--cacert",
            &c,
            &format!("pop3s://127.0.0.1:{}/1", s.port("pop3s")),
            "-u",
            &up,
        ],
        tmp.path(),
    )
    .success();
    assert_eq!(r.stdout, msg, "{}", r.dump());
}

#[test]
fn curl_smtp_delivery_then_imaps_fetch() {
    let s = server();
    let tmp = tempdir();
    let c = cert(&s);
    let msg: &[u8] = b"From: x@remote.test\r\n\
To: u@example.org\r\n\
Subject: sent by curl over SMTP\r\n\
Message-ID: <curl-smtp@remote.test>\r\n\
\r\n\
Body from curl.\r\n";
    let file = write(tmp.path(), "smtp.eml", msg);
    curl(
        &[
            "--ssl-reqd",
            "--cacert",
            &c,
            &format!("smtp://127.0.0.1:{}", s.port("smtp")),
            "--mail-from",
            "x@remote.test",
            "--mail-rcpt",
            USER,
            "-T",
            &file,
        ],
        tmp.path(),
    )
    .success();
    let view = server_view(&s, tmp.path());
    assert_eq!(view["INBOX"].len(), 1, "{view:#?}");
    let uid = view["INBOX"][0].uid;
    let r = curl(
        &[
            "--cacert",
            &c,
            &format!("imaps://127.0.0.1:{}/INBOX;UID={uid}", s.port("imaps")),
            "-u",
            &user_pw(),
        ],
        tmp.path(),
    )
    .success();
    assert!(r.stdout.starts_with(b"Received: "), "{}", r.dump());
    assert!(r.stdout.ends_with(msg), "{}", r.dump());
}

// ---------------------------------------------------------------------------
// 3. mbsync (isync)
// ---------------------------------------------------------------------------

/// mbsync for USER on this server's imaps (IMAPS) or imap (STARTTLS) listener.
fn mbsync(s: &TestServer, tls_mode: &str) -> Mbsync {
    let port = s.port(if tls_mode == "IMAPS" { "imaps" } else { "imap" });
    Mbsync::new(port, &s.cert_path(), USER, PASSWORD, tls_mode)
}

/// Every local folder (by server name) with its messages.
fn local_view(mb: &Mbsync) -> BTreeMap<String, Vec<LocalMsg>> {
    let mut view = BTreeMap::new();
    view.insert("INBOX".to_string(), local_messages(&mb.folder("INBOX")));
    for e in std::fs::read_dir(mb.dir().join("maildir")).expect("maildir") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().join("cur").is_dir() {
            view.insert(name, local_messages(&e.path()));
        }
    }
    view
}

/// One message file of a Maildir folder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalMsg {
    path: PathBuf,
    /// The Maildir flag letters (after ":2,"), e.g. "FS".
    flags: String,
    message_id: String,
}

fn local_messages(folder: &Path) -> Vec<LocalMsg> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(folder.join(sub)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            if name.starts_with('.') {
                continue;
            }
            let flags = name
                .split_once(":2,")
                .map(|(_, f)| f.to_string())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path).expect("message file");
            let message_id = text
                .lines()
                .take_while(|l| !l.trim_end().is_empty())
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("message-id"))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_default();
            out.push(LocalMsg {
                path,
                flags,
                message_id,
            });
        }
    }
    out.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    out
}

/// Changes the Maildir flags of a message file: it moves to cur/ with the union of
/// its flags and `add` (letters in ASCII order, as Maildir wants).
fn add_local_flags(msg: &LocalMsg, add: &str) {
    let name = msg
        .path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let base = name.split_once(":2,").map_or(name.as_str(), |(b, _)| b);
    let letters: BTreeSet<char> = msg.flags.chars().chain(add.chars()).collect();
    let letters: String = letters.into_iter().collect();
    let folder = msg.path.parent().and_then(Path::parent).expect("folder");
    let to = folder.join("cur").join(format!("{base}:2,{letters}"));
    std::fs::rename(&msg.path, &to).expect("rename message file");
}

/// A message file's text without the `X-TUID:` header field mbsync adds to the
/// messages it copies (it uses it to find them again when a UID is not reported).
fn without_tuid(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !l.starts_with("X-TUID: "))
        .collect()
}

fn find<'a>(msgs: &'a [LocalMsg], id: &str) -> &'a LocalMsg {
    msgs.iter()
        .find(|m| m.message_id == id)
        .unwrap_or_else(|| panic!("no local message {id}: {msgs:#?}"))
}

fn find_server<'a>(msgs: &'a [ServerMsg], id: &str) -> &'a ServerMsg {
    msgs.iter()
        .find(|m| m.message_id == id)
        .unwrap_or_else(|| panic!("no server message {id}: {msgs:#?}"))
}

/// Both sides hold the same mailboxes with the same messages, each Message-ID once.
#[track_caller]
fn assert_same_on_both_sides(
    server: &BTreeMap<String, Vec<ServerMsg>>,
    local: &BTreeMap<String, Vec<LocalMsg>>,
) {
    assert_eq!(
        server.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>(),
        "mailboxes differ\nserver: {server:#?}\nlocal: {local:#?}"
    );
    for (name, msgs) in server {
        let server_ids: Vec<&str> = msgs.iter().map(|m| m.message_id.as_str()).collect();
        let local_ids: Vec<&str> = local[name].iter().map(|m| m.message_id.as_str()).collect();
        let unique: BTreeSet<&str> = server_ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            server_ids.len(),
            "duplicates on the server in {name}: {server_ids:?}"
        );
        let local_unique: BTreeSet<&str> = local_ids.iter().copied().collect();
        assert_eq!(
            local_unique.len(),
            local_ids.len(),
            "duplicates locally in {name}: {local_ids:?}"
        );
        assert_eq!(
            unique, local_unique,
            "{name} differs\nserver: {msgs:#?}\nlocal: {:#?}",
            local[name]
        );
        // Flags agree too (\Seen S, \Flagged F, \Answered R, \Draft D, \Deleted T).
        for m in msgs {
            let l = find(&local[name], &m.message_id);
            let mut want = String::new();
            for (flag, letter) in [
                ("\\Draft", 'D'),
                ("\\Flagged", 'F'),
                ("\\Answered", 'R'),
                ("\\Seen", 'S'),
                ("\\Deleted", 'T'),
            ] {
                if m.flags.contains(flag) {
                    want.push(letter);
                }
            }
            assert_eq!(
                l.flags, want,
                "flags of {} in {name}: server {:?}",
                m.message_id, m.flags
            );
        }
    }
}

#[test]
fn mbsync_two_way_sync() {
    if !casella_testkit::clients::available("mbsync", "isync") {
        return;
    }
    let s = server_with_three(CONFIG);
    let tmp = tempdir();
    let mb = mbsync(&s, "IMAPS");
    let standard = [
        "Archive",
        "Deleted Items",
        "Drafts",
        "INBOX",
        "Junk Email",
        "Sent Items",
    ];

    // 1st sync: everything comes down.
    mb.sync();
    let local = local_view(&mb);
    assert_eq!(
        local.keys().map(String::as_str).collect::<Vec<_>>(),
        standard,
        "{local:#?}"
    );
    let inbox = &local["INBOX"];
    assert_eq!(inbox.len(), 3, "{inbox:#?}");
    let m3 = find(inbox, "<third@remote.test>");
    let lf = String::from_utf8(msg3())
        .expect("utf-8")
        .replace("\r\n", "\n");
    assert_eq!(
        without_tuid(&std::fs::read_to_string(&m3.path).expect("message")),
        lf,
        "the local copy differs from what was delivered"
    );
    assert!(inbox.iter().all(|m| !m.flags.contains('S')), "{inbox:#?}");

    // Local changes: flag the first (and read it), delete the second, and a new
    // folder with one message.
    add_local_flags(find(inbox, "<first@remote.test>"), "FS");
    add_local_flags(find(inbox, "<second@remote.test>"), "T");
    let laptop = mb.folder("From Laptop");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(laptop.join(sub)).expect("folder");
    }
    let local_msg = "From: u@example.org\n\
To: someone@remote.test\n\
Subject: written offline\n\
Message-ID: <local@laptop.test>\n\
Date: Thu, 05 Jun 2025 08:00:00 +0000\n\
\n\
Written on the laptop.\n";
    std::fs::write(laptop.join("new").join("1749110400.P1Q1.laptop"), local_msg)
        .expect("local message");

    // 2nd sync: the changes go up.
    mb.sync();
    let server = server_view(&s, tmp.path());
    let inbox = &server["INBOX"];
    let ids: BTreeSet<&str> = inbox.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["<first@remote.test>", "<third@remote.test>"]),
        "the locally deleted message is not expunged on the server: {inbox:#?}"
    );
    assert_eq!(
        find_server(inbox, "<first@remote.test>").flags,
        flags(&["\\Flagged", "\\Seen"])
    );
    assert!(
        find_server(inbox, "<third@remote.test>").flags.is_empty(),
        "{inbox:#?}"
    );
    let up = server
        .get("From Laptop")
        .unwrap_or_else(|| panic!("the new folder is not on the server: {server:#?}"));
    assert_eq!(up.len(), 1, "{up:#?}");
    assert_eq!(up[0].message_id, "<local@laptop.test>");
    let out_file = tmp.path().join("laptop.eml");
    let uid = up[0].uid.to_string();
    imap_check_on(
        &s,
        "fetch-uid",
        "ssl",
        &[
            "--mailbox",
            "From Laptop",
            "--uid",
            &uid,
            "--out",
            &out_file.to_string_lossy(),
        ],
        tmp.path(),
    )
    .success();
    let got = String::from_utf8(std::fs::read(&out_file).expect("fetched")).expect("utf-8");
    assert_eq!(
        without_tuid(&got),
        local_msg.replace('\n', "\r\n"),
        "the uploaded message differs:\n{got}"
    );
    let local = local_view(&mb);
    assert_eq!(local["INBOX"].len(), 2, "{local:#?}");
    assert_same_on_both_sides(&server, &local);

    // Server-side changes: flag and answer the third, delete the first, one more
    // delivery.
    imap_check_on(
        &s,
        "modify",
        "ssl",
        &[
            "--flag",
            "<third@remote.test>",
            "--answer",
            "<third@remote.test>",
            "--delete",
            "<first@remote.test>",
        ],
        tmp.path(),
    )
    .success();
    s.deliver(USER, MSG4);

    // 3rd sync: the changes come down.
    mb.sync();
    let local = local_view(&mb);
    let inbox = &local["INBOX"];
    let ids: BTreeSet<&str> = inbox.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["<fourth@remote.test>", "<third@remote.test>"]),
        "{inbox:#?}"
    );
    assert_eq!(find(inbox, "<third@remote.test>").flags, "FR");
    let m4 = find(inbox, "<fourth@remote.test>");
    assert_eq!(
        without_tuid(&std::fs::read_to_string(&m4.path).expect("message")),
        String::from_utf8_lossy(MSG4).replace("\r\n", "\n")
    );
    let server = server_view(&s, tmp.path());
    assert_same_on_both_sides(&server, &local);

    // 4th sync: nothing left to do; nothing changes on either side.
    let before_files: BTreeSet<PathBuf> =
        local.values().flatten().map(|m| m.path.clone()).collect();
    let r = mb.sync();
    let local_after = local_view(&mb);
    let after_files: BTreeSet<PathBuf> = local_after
        .values()
        .flatten()
        .map(|m| m.path.clone())
        .collect();
    assert_eq!(before_files, after_files, "{}", r.dump());
    let server_after = server_view(&s, tmp.path());
    assert_eq!(server, server_after, "{}", r.dump());
    assert_same_on_both_sides(&server_after, &local_after);
    let total: usize = server_after.values().map(Vec::len).sum();
    assert_eq!(total, 3, "{server_after:#?}");
}

/// A big message each way (well over any command-line limit: literals of APPEND and
/// FETCH), over STARTTLS on the cleartext port.
#[test]
fn mbsync_starttls_big_messages() {
    if !casella_testkit::clients::available("mbsync", "isync") {
        return;
    }
    let s = server();
    let tmp = tempdir();
    let big = |id: &str, eol: &str| -> String {
        let mut m = format!(
            "From: Big <big@remote.test>{eol}To: u@example.org{eol}Subject: big {id}{eol}\
             Message-ID: <{id}@remote.test>{eol}{eol}"
        );
        for i in 0..20_000 {
            m.push_str(&format!(
                "{i:05} the quick brown fox jumps over the lazy dog, again and again{eol}"
            ));
        }
        m
    };
    let down = big("down", "\r\n");
    s.deliver(USER, down.as_bytes());
    s.deliver(USER, MSG1);
    let mb = mbsync(&s, "STARTTLS");
    let r = mb.sync();
    let local = local_view(&mb);
    assert_eq!(local["INBOX"].len(), 2, "{local:#?}\n{}", r.dump());
    let got = std::fs::read_to_string(&find(&local["INBOX"], "<down@remote.test>").path)
        .expect("message");
    assert!(
        without_tuid(&got) == down.replace("\r\n", "\n"),
        "the big message differs locally ({} bytes, expected {})",
        got.len(),
        down.len()
    );

    let up = big("up", "\n");
    std::fs::write(
        mb.folder("INBOX")
            .join("new")
            .join("1749110400.P2Q1.laptop"),
        &up,
    )
    .expect("local message");
    mb.sync();
    let server = server_view(&s, tmp.path());
    let uid = find_server(&server["INBOX"], "<up@remote.test>")
        .uid
        .to_string();
    let out_file = tmp.path().join("up.eml");
    imap_check_on(
        &s,
        "fetch-uid",
        "ssl",
        &["--uid", &uid, "--out", &out_file.to_string_lossy()],
        tmp.path(),
    )
    .success();
    let got = std::fs::read_to_string(&out_file).expect("fetched");
    assert!(
        without_tuid(&got) == up.replace('\n', "\r\n"),
        "the big message differs on the server ({} bytes, expected about {})",
        got.len(),
        up.len()
    );
    assert_same_on_both_sides(&server, &local_view(&mb));
}

/// Issue 17: the folders an account is made with cannot be deleted or renamed
/// (as in Exchange). Before, `DELETE "Deleted Items"` answered OK, and POP3's
/// DELE with pop-dele=move-to-deleted-items then deleted mail for good.
#[test]
fn imaplib_cannot_delete_default_folders_and_pop3_dele_still_moves_to_deleted_items() {
    let s = server_with(CONFIG);
    s.deliver(USER, MSG1);
    let tmp = tempdir();
    let r = imap_check_on(&s, "default-folders", "ssl", &[], tmp.path()).success();
    let out = r.out();
    for step in [
        "ok: delete INBOX refused",
        "ok: delete Deleted Items refused: [CANNOT] Deleted Items is a default folder",
        "ok: delete Sent Items refused",
        "ok: delete Junk Email refused",
        "ok: rename Deleted Items refused",
        "ok: a folder of the client's own is deleted",
        "PASS",
    ] {
        assert!(out.contains(step), "missing {step:?}\n{}", r.dump());
    }
    // POP3 DELE moves the message to Deleted Items, which is still there.
    let out = s.cli(
        &["account", "set", USER, "pop-dele=move-to-deleted-items"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let mut p = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    p.expect("+OK");
    p.send_line(&format!("USER {USER}"));
    p.expect("+OK");
    p.send_line(&format!("PASS {PASSWORD}"));
    p.expect("+OK");
    p.send_line("DELE 1");
    p.expect("+OK");
    p.send_line("QUIT");
    p.expect("+OK");
    let r = imap_check_on(&s, "dump", "ssl", &[], tmp.path()).success();
    let dump = r.out();
    assert!(dump.contains("mailbox: INBOX count=0"), "{dump}");
    assert!(dump.contains("mailbox: Deleted Items count=1"), "{dump}");
}
