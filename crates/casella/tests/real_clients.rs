//! The real server, driven by clients we did not write: Python's poplib and smtplib
//! (scripts in `tests/clients/`), curl and fetchmail.
//!
//! Every test starts its own server on loopback ports in a temporary directory. Every
//! client program runs in its own process group with a time limit; when it overruns,
//! the group is killed and the test fails. A missing program fails the test with a
//! message saying what to install (`.ci/run` installs them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use casella_testkit::TestServer;
use casella_testkit::clients::{Run, curl, python, run, write};

const USER: &str = "u@example.org";
const PASSWORD: &str = "a good password";
const OTHER: &str = "v@example.org";
const OTHER_PASSWORD: &str = "another password";

/// The first message: dot-stuffing matters (a line starting with '.', a line of
/// two dots, a line of one dot).
const MSG1: &[u8] = b"From: Alice <a@remote.test>\r\n\
To: u@example.org\r\n\
Subject: first message\r\n\
Message-ID: <first@remote.test>\r\n\
Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n\
\r\n\
Hello,\r\n\
.this line starts with a dot\r\n\
..and this one with two\r\n\
.\r\n\
end of the first message\r\n";

const MSG2: &[u8] = b"From: Bob <b@remote.test>\r\n\
To: u@example.org\r\n\
Subject: second message\r\n\
Message-ID: <second@remote.test>\r\n\
Date: Mon, 02 Jun 2025 11:00:00 +0000\r\n\
\r\n\
The second body.\r\n";

const MSG3: &[u8] = b"From: Carol <c@remote.test>\r\n\
To: u@example.org\r\n\
Subject: third message\r\n\
Message-ID: <third@remote.test>\r\n\
Date: Mon, 02 Jun 2025 12:00:00 +0000\r\n\
\r\n\
The third body, delivered later.\r\n";

// ---------------------------------------------------------------------------
// Running client programs
// ---------------------------------------------------------------------------

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn server() -> TestServer {
    let s = TestServer::builder(env!("CARGO_BIN_EXE_casella")).start();
    s.add_account(USER, PASSWORD);
    s
}

fn cert(s: &TestServer) -> String {
    s.cert_path().to_string_lossy().into_owned()
}

/// poplib: the number of messages in USER's maildrop, over implicit TLS.
fn pop3_count(s: &TestServer, user: &str, password: &str, tmp: &Path) -> usize {
    let port = s.port("pop3s").to_string();
    let c = cert(s);
    let r = python(
        "pop3_check.py",
        &[
            "count",
            "--mode",
            "ssl",
            "--port",
            &port,
            "--cert",
            &c,
            "--user",
            user,
            "--password",
            password,
        ],
        tmp,
    )
    .success();
    let out = r.out();
    out.lines()
        .find_map(|l| l.strip_prefix("count: "))
        .unwrap_or_else(|| panic!("no count in output\n{}", r.dump()))
        .trim()
        .parse()
        .expect("count")
}

/// poplib: the header lines of every message that start with one of `headers`.
fn pop3_headers(s: &TestServer, headers: &[&str], tmp: &Path) -> String {
    let port = s.port("pop3s").to_string();
    let c = cert(s);
    let mut args = vec![
        "find",
        "--mode",
        "ssl",
        "--port",
        &port,
        "--cert",
        &c,
        "--user",
        USER,
        "--password",
        PASSWORD,
    ];
    for h in headers {
        args.push("--header");
        args.push(h);
    }
    python("pop3_check.py", &args, tmp).success().out()
}

// ---------------------------------------------------------------------------
// 1. Python poplib
// ---------------------------------------------------------------------------

/// STAT, LIST, UIDL, RETR (exact bytes), TOP, DELE + QUIT, then a new session.
fn poplib_session(mode: &str, listener: &str, config: Option<&str>) {
    let s = match config {
        None => server(),
        Some(toml) => {
            let s = TestServer::builder(env!("CARGO_BIN_EXE_casella"))
                .config(toml)
                .start();
            s.add_account(USER, PASSWORD);
            s
        }
    };
    s.deliver(USER, MSG1);
    s.deliver(USER, MSG2);
    let tmp = tempdir();
    let m1 = write(tmp.path(), "m1.eml", MSG1);
    let m2 = write(tmp.path(), "m2.eml", MSG2);
    let port = s.port(listener).to_string();
    let c = cert(&s);
    let r = python(
        "pop3_check.py",
        &[
            "session",
            "--mode",
            mode,
            "--port",
            &port,
            "--cert",
            &c,
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--expect",
            &m1,
            "--expect",
            &m2,
        ],
        tmp.path(),
    )
    .success();
    let out = r.out();
    for step in [
        "ok: stat 2",
        "ok: list",
        "ok: uidl",
        "ok: retr 1",
        "ok: retr 2",
        "ok: top",
        "ok: dele+quit",
        "ok: new session sees 1 messages",
        "PASS",
    ] {
        assert!(out.contains(step), "missing {step:?}\n{}", r.dump());
    }
}

#[test]
fn poplib_stls_full_session() {
    poplib_session("stls", "pop3", None);
}

#[test]
fn poplib_implicit_tls_full_session() {
    poplib_session("ssl", "pop3s", None);
}

#[test]
fn poplib_wrong_password_is_auth_error() {
    let s = server();
    let tmp = tempdir();
    let c = cert(&s);
    for (mode, listener) in [("stls", "pop3"), ("ssl", "pop3s")] {
        let port = s.port(listener).to_string();
        let r = python(
            "pop3_check.py",
            &[
                "wrong-password",
                "--mode",
                mode,
                "--port",
                &port,
                "--cert",
                &c,
                "--user",
                USER,
                "--password",
                "not the password",
            ],
            tmp.path(),
        )
        .success();
        assert!(r.out().contains("ok: refused: -ERR [AUTH]"), "{}", r.dump());
    }
    // The right password still works afterwards.
    assert_eq!(pop3_count(&s, USER, PASSWORD, tmp.path()), 0);
}

#[test]
fn poplib_cleartext_without_stls_is_refused_by_default() {
    let s = server();
    s.deliver(USER, MSG1);
    let tmp = tempdir();
    let port = s.port("pop3").to_string();
    let r = python(
        "pop3_check.py",
        &[
            "cleartext-refused",
            "--mode",
            "plain",
            "--port",
            &port,
            "--user",
            USER,
            "--password",
            PASSWORD,
        ],
        tmp.path(),
    )
    .success();
    let out = r.out();
    assert!(
        out.contains("ok: refused: -ERR [AUTH]") && out.contains("STLS"),
        "{}",
        r.dump()
    );
    // And a plain login attempt really fails with poplib's own error.
    let r = python(
        "pop3_check.py",
        &[
            "count",
            "--mode",
            "plain",
            "--port",
            &port,
            "--user",
            USER,
            "--password",
            PASSWORD,
        ],
        tmp.path(),
    );
    assert!(
        !r.status.success(),
        "cleartext login succeeded:\n{}",
        r.dump()
    );
    assert!(r.stderr.contains("error_proto"), "{}", r.dump());
    assert!(!r.out().contains("count:"), "{}", r.dump());
}

#[test]
fn poplib_cleartext_login_with_plaintext_login_policy() {
    poplib_session(
        "plain",
        "pop3",
        Some(
            "hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\nlogin-type = \"plaintext-login\"\n",
        ),
    );
}

// ---------------------------------------------------------------------------
// 2. Python smtplib (SMTP with STARTTLS, and LMTP)
// ---------------------------------------------------------------------------

#[test]
fn smtplib_starttls_delivers_to_local_user() {
    let s = server();
    let tmp = tempdir();
    let port = s.port("smtp").to_string();
    let c = cert(&s);
    let r = python(
        "smtp_check.py",
        &[
            "send",
            "--starttls",
            "--port",
            &port,
            "--cert",
            &c,
            "--from",
            "sender@remote.test",
            "--to",
            USER,
            "--subject",
            "Greetings over STARTTLS",
        ],
        tmp.path(),
    )
    .success();
    assert!(r.out().contains("ok: starttls (TLSv1."), "{}", r.dump());
    assert!(
        r.out().contains("sent: Greetings over STARTTLS"),
        "{}",
        r.dump()
    );

    let out = pop3_headers(&s, &["Subject:", "Received:"], tmp.path());
    assert!(out.contains("count: 1"), "{out}");
    assert!(
        out.contains("msg 1: Subject: Greetings over STARTTLS"),
        "{out}"
    );
    assert_received(&out, 1, "ESMTPS", true);
}

/// RFC 5321 §4.4 trace field of message `n` (as `pop3_check.py find` prints it,
/// unfolded): the client's EHLO name and address, this server, the protocol
/// (RFC 3848: ESMTPS after STARTTLS) and the recipient — named only when it
/// was the transaction's one local recipient (`for_user`): the copies of a
/// message for several share its bytes and one Received field.
#[track_caller]
fn assert_received(out: &str, n: usize, with: &str, for_user: bool) {
    let prefix = format!("msg {n}: Received:");
    let received = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no Received: header in message {n}\n{out}"));
    for part in ["[127.0.0.1]", "by mail.test", &format!("with {with} ")] {
        assert!(received.contains(part), "{part:?} not in {received:?}");
    }
    assert_eq!(
        received.contains(&format!("for <{USER}>")),
        for_user,
        "{received:?}"
    );
    if !for_user {
        assert!(!received.contains("for <"), "{received:?}");
    }
}

#[test]
fn smtplib_relay_and_unknown_user_are_refused() {
    let s = server();
    let tmp = tempdir();
    let port = s.port("smtp").to_string();
    for rcpt in ["someone@elsewhere.test", "nobody@example.org"] {
        let r = python(
            "smtp_check.py",
            &[
                "refused",
                "--port",
                &port,
                "--from",
                "sender@remote.test",
                "--to",
                rcpt,
                "--code",
                "550",
            ],
            tmp.path(),
        )
        .success();
        assert!(r.out().contains("refused: 550"), "{}", r.dump());
    }
    assert_eq!(pop3_count(&s, USER, PASSWORD, tmp.path()), 0);
}

#[test]
fn smtplib_lmtp_reports_per_recipient() {
    let s = server();
    s.add_account(OTHER, OTHER_PASSWORD);
    let tmp = tempdir();
    let port = s.port("lmtp").to_string();
    let r = python(
        "smtp_check.py",
        &[
            "lmtp",
            "--port",
            &port,
            "--from",
            "sender@remote.test",
            "--to",
            USER,
            "--to",
            "nobody@example.org",
            "--to",
            OTHER,
            "--subject",
            "LMTP to three",
        ],
        tmp.path(),
    )
    .success();
    let out = r.out();
    let line = |prefix: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?}\n{}", r.dump()))
            .to_string()
    };
    assert!(out.contains("ok: lhlo"), "{}", r.dump());
    assert!(
        line(&format!("rcpt {USER}: ")).contains(": 250"),
        "{}",
        r.dump()
    );
    assert!(
        line("rcpt nobody@example.org: ").contains(": 550"),
        "{}",
        r.dump()
    );
    assert!(
        line(&format!("rcpt {OTHER}: ")).contains(": 250"),
        "{}",
        r.dump()
    );
    assert!(
        line(&format!("data {USER}: ")).contains(": 250"),
        "{}",
        r.dump()
    );
    assert!(
        line(&format!("data {OTHER}: ")).contains(": 250"),
        "{}",
        r.dump()
    );
    assert!(!out.contains("data nobody@"), "{}", r.dump());
    assert!(out.contains("PASS"), "{}", r.dump());

    let out = pop3_headers(&s, &["Subject:", "Received:"], tmp.path());
    assert!(
        out.contains("count: 1") && out.contains("msg 1: Subject: LMTP to three"),
        "{out}"
    );
    assert_received(&out, 1, "LMTP", false);
    assert_eq!(pop3_count(&s, OTHER, OTHER_PASSWORD, tmp.path()), 1);
}

// ---------------------------------------------------------------------------
// 3. curl
// ---------------------------------------------------------------------------

fn user_pw() -> String {
    format!("{USER}:{PASSWORD}")
}

#[test]
fn curl_pop3s_list_and_retr() {
    let s = server();
    s.deliver(USER, MSG1);
    s.deliver(USER, MSG2);
    let tmp = tempdir();
    let c = cert(&s);
    let base = format!("pop3s://127.0.0.1:{}", s.port("pop3s"));
    let up = user_pw();

    let r = curl(
        &["--cacert", &c, &format!("{base}/"), "-u", &up],
        tmp.path(),
    )
    .success();
    let want = format!("1 {}\r\n2 {}\r\n", MSG1.len(), MSG2.len());
    assert_eq!(r.out(), want, "{}", r.dump());

    for (n, msg) in [(1, MSG1), (2, MSG2)] {
        let r = curl(
            &["--cacert", &c, &format!("{base}/{n}"), "-u", &up],
            tmp.path(),
        )
        .success();
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(msg),
            "RETR {n}\n{}",
            r.dump()
        );
        assert_eq!(r.stdout, msg);
    }

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
fn curl_pop3_stls_retr() {
    let s = server();
    s.deliver(USER, MSG1);
    let tmp = tempdir();
    let c = cert(&s);
    let url = format!("pop3://127.0.0.1:{}/1", s.port("pop3"));
    let up = user_pw();
    let r = curl(&["--ssl-reqd", "--cacert", &c, &url, "-u", &up], tmp.path()).success();
    assert_eq!(r.stdout, MSG1, "{}", r.dump());

    // Without STLS the default policy refuses the password: curl says login denied.
    let r = curl(&[&url, "-u", &up], tmp.path());
    assert_eq!(r.code(), Some(67), "{}", r.dump());
}

#[test]
fn curl_smtp_starttls_then_pop3() {
    let s = server();
    let tmp = tempdir();
    let c = cert(&s);
    let msg: &[u8] = b"From: x@remote.test\r\n\
To: u@example.org\r\n\
Subject: sent by curl\r\n\
Message-ID: <curl@remote.test>\r\n\
\r\n\
Body from curl.\r\n\
.a dotted line\r\n";
    let file = write(tmp.path(), "curl.eml", msg);
    let url = format!("smtp://127.0.0.1:{}", s.port("smtp"));
    curl(
        &[
            "--ssl-reqd",
            "--cacert",
            &c,
            &url,
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

    // Read it back with curl over POP3S: a Received: trace line first, then the
    // message exactly as sent.
    let r = curl(
        &[
            "--cacert",
            &c,
            &format!("pop3s://127.0.0.1:{}/1", s.port("pop3s")),
            "-u",
            &user_pw(),
        ],
        tmp.path(),
    )
    .success();
    assert!(r.stdout.starts_with(b"Received: "), "{}", r.dump());
    assert!(r.stdout.ends_with(msg), "{}", r.dump());
    let out = pop3_headers(&s, &["Subject:", "Received:"], tmp.path());
    assert!(
        out.contains("count: 1") && out.contains("msg 1: Subject: sent by curl"),
        "{out}"
    );
    assert_received(&out, 1, "ESMTPS", true);
}

// ---------------------------------------------------------------------------
// 4. fetchmail
// ---------------------------------------------------------------------------

struct Fetchmail {
    dir: tempfile::TempDir,
}

impl Fetchmail {
    /// An rc file for USER on `port`; `tls` is the rc-file TLS part, `keep` is
    /// "keep" or "no keep".
    fn new(port: u16, tls: &str, keep: &str) -> Fetchmail {
        let dir = tempdir();
        std::fs::create_dir(dir.path().join("msgs")).expect("msgs dir");
        let rc = format!(
            "set no bouncemail\n\
             poll 127.0.0.1 proto POP3 port {port} timeout 30\n\
             \tuser \"{USER}\" password \"{PASSWORD}\"\n\
             \t{tls}\n\
             \t{keep}\n"
        );
        let rc_path = dir.path().join("fetchmailrc");
        std::fs::write(&rc_path, rc).expect("rc file");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod rc");
        Fetchmail { dir }
    }

    /// `implicit TLS` on pop3s, trusting the server's certificate. fetchmail checks
    /// DNS names only (not IP SANs), so the expected name is "localhost", one of the
    /// certificate's names; the connection still goes to 127.0.0.1.
    fn tls(s: &TestServer) -> String {
        format!(
            "ssl sslcertck sslcertfile \"{}\" sslcommonname \"localhost\"",
            s.cert_path().display()
        )
    }

    /// STLS on the cleartext port: `sslproto` without `ssl`.
    fn stls(s: &TestServer) -> String {
        format!(
            "sslproto \"tls1.2+\" sslcertck sslcertfile \"{}\" sslcommonname \"localhost\"",
            s.cert_path().display()
        )
    }

    fn messages(&self) -> BTreeSet<PathBuf> {
        std::fs::read_dir(self.dir.path().join("msgs"))
            .expect("msgs dir")
            .map(|e| e.expect("entry").path())
            .collect()
    }

    /// One fetchmail run; the MDA writes each message to its own file in msgs/.
    fn run(&self) -> Run {
        let d = self.dir.path();
        let mda = format!(
            "cat > \"$(mktemp {}/m.XXXXXXXX)\"",
            d.join("msgs").display()
        );
        let mut cmd = Command::new("fetchmail");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", d)
            .env("FETCHMAILHOME", d)
            .env("LC_ALL", "C")
            .arg("-f")
            .arg(d.join("fetchmailrc"))
            .arg("--nosyslog")
            .arg("--idfile")
            .arg(d.join("ids"))
            .arg("--pidfile")
            .arg(d.join("fetchmail.pid"))
            .arg("--mda")
            .arg(mda)
            .arg("-v");
        run(cmd, d)
    }
}

/// fetchmail's message files hold the message with LF line ends, after a
/// Received: line of its own.
fn fetched_as(file: &Path, msg: &[u8]) {
    let got = std::fs::read(file).expect("fetched message");
    let lf = String::from_utf8_lossy(msg).replace("\r\n", "\n");
    let got = String::from_utf8_lossy(&got).replace("\r\n", "\n");
    assert!(
        got.ends_with(&lf),
        "fetched message differs:\n{got}\n--- expected to end with ---\n{lf}"
    );
}

#[test]
fn fetchmail_keep_remembers_uidls() {
    if !casella_testkit::clients::available("fetchmail", "fetchmail") {
        return;
    }
    let s = server();
    s.deliver(USER, MSG1);
    s.deliver(USER, MSG2);
    let fm = Fetchmail::new(s.port("pop3s"), &Fetchmail::tls(&s), "keep");

    // 1st run: both messages. fetchmail exits 0 when it fetched mail.
    let r = fm.run();
    assert_eq!(r.code(), Some(0), "{}", r.dump());
    let first = fm.messages();
    assert_eq!(first.len(), 2, "{}", r.dump());
    assert!(
        r.stderr.contains("UIDL") || r.out().contains("UIDL"),
        "{}",
        r.dump()
    );

    // 2nd run: nothing new (exit 1: no mail), because the UIDLs are in the idfile.
    let r = fm.run();
    assert_eq!(r.code(), Some(1), "{}", r.dump());
    assert_eq!(fm.messages(), first, "{}", r.dump());

    // One more message: the 3rd run fetches exactly that one.
    s.deliver(USER, MSG3);
    let r = fm.run();
    assert_eq!(r.code(), Some(0), "{}", r.dump());
    let third = fm.messages();
    let new: Vec<_> = third.difference(&first).collect();
    assert_eq!(new.len(), 1, "{}", r.dump());
    fetched_as(new[0], MSG3);

    // Everything is still on the server.
    assert_eq!(pop3_count(&s, USER, PASSWORD, fm.dir.path()), 3);
}

#[test]
fn fetchmail_no_keep_empties_the_maildrop() {
    if !casella_testkit::clients::available("fetchmail", "fetchmail") {
        return;
    }
    let s = server();
    s.deliver(USER, MSG1);
    s.deliver(USER, MSG2);
    let fm = Fetchmail::new(s.port("pop3s"), &Fetchmail::tls(&s), "no keep");
    let r = fm.run();
    assert_eq!(r.code(), Some(0), "{}", r.dump());
    let got = fm.messages();
    assert_eq!(got.len(), 2, "{}", r.dump());
    let mut matched = [false, false];
    for f in &got {
        let text = std::fs::read_to_string(f).expect("message");
        matched[0] |= text.contains("Subject: first message");
        matched[1] |= text.contains("Subject: second message");
    }
    assert_eq!(matched, [true, true], "{}", r.dump());
    for f in &got {
        let text = std::fs::read_to_string(f).expect("message");
        if text.contains("Subject: first message") {
            fetched_as(f, MSG1);
        } else {
            fetched_as(f, MSG2);
        }
    }
    assert_eq!(pop3_count(&s, USER, PASSWORD, fm.dir.path()), 0);

    // A second run finds nothing.
    let r = fm.run();
    assert_eq!(r.code(), Some(1), "{}", r.dump());
}

#[test]
fn fetchmail_stls_on_cleartext_port() {
    if !casella_testkit::clients::available("fetchmail", "fetchmail") {
        return;
    }
    let s = server();
    s.deliver(USER, MSG1);
    let fm = Fetchmail::new(s.port("pop3"), &Fetchmail::stls(&s), "keep");
    let r = fm.run();
    assert_eq!(r.code(), Some(0), "{}", r.dump());
    let log = format!("{}{}", r.out(), r.stderr);
    assert!(log.contains("POP3> STLS"), "{}", r.dump());
    assert!(log.contains("upgrade to TLS succeeded"), "{}", r.dump());
    let got = fm.messages();
    assert_eq!(got.len(), 1, "{}", r.dump());
    fetched_as(got.iter().next().expect("one"), MSG1);
}
