//! Submission driven by clients we did not write: Python's smtplib (STARTTLS on the
//! 587-style listener and implicit TLS on the 465-style one), swaks, and curl.

use std::process::Command;

use casella_testkit::clients::{curl, python, run, write};
use casella_testkit::{LineClient, TestServer};

const PASS: &str = "test-pw1";

fn server() -> TestServer {
    let s = TestServer::builder(env!("CARGO_BIN_EXE_casella"))
        .protocols(&["submission", "submissions", "pop3s"])
        .config("hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account("alice@example.org", PASS);
    s.add_account("bob@example.org", PASS);
    let out = s.cli(
        &[
            "account",
            "alias",
            "add",
            "alice@example.org",
            "info@example.org",
        ],
        b"",
    );
    assert!(out.status.success());
    s
}

/// Subjects of the messages in `user`'s INBOX, read over POP3.
fn subjects(s: &TestServer, user: &str) -> Vec<String> {
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {user}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("+OK");
    c.send_line("STAT");
    let n: usize = c.line().split(' ').nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        c.send_line(&format!("TOP {i} 0"));
        c.expect("+OK");
        for l in c.dot_lines() {
            if let Some(subject) = l.strip_prefix("Subject: ") {
                out.push(subject.to_string());
            }
        }
    }
    out
}

fn smtplib(
    s: &TestServer,
    tls: &str,
    args: &[&str],
    tmp: &std::path::Path,
) -> casella_testkit::clients::Run {
    let port = if tls == "implicit" {
        s.port("submissions")
    } else {
        s.port("submission")
    }
    .to_string();
    let cert = s.cert_path().to_string_lossy().into_owned();
    let mut all = vec![args[0], "--port", &port, "--cert", &cert, "--tls", tls];
    all.extend_from_slice(&args[1..]);
    python("submit_check.py", &all, tmp)
}

#[test]
fn smtplib_over_starttls_and_implicit_tls() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    for (tls, subject) in [("starttls", "via 587"), ("implicit", "via 465")] {
        let r = smtplib(
            &s,
            tls,
            &[
                "send",
                "--user",
                "alice@example.org",
                "--password",
                PASS,
                "--from",
                "alice@example.org",
                "--to",
                "bob@example.org",
                "--subject",
                subject,
            ],
            tmp.path(),
        )
        .success();
        assert!(
            r.out().contains(&format!("sent: {subject}")),
            "{}",
            r.dump()
        );
    }
    // Readable over POP3 right after the 250.
    assert_eq!(subjects(&s, "bob@example.org"), vec!["via 587", "via 465"]);
}

#[test]
fn smtplib_sender_binding_and_auth_required() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let login = ["--user", "alice@example.org", "--password", PASS];
    let mut args = vec!["refused-sender"];
    args.extend(login);
    args.extend(["--from", "bob@example.org", "--to", "bob@example.org"]);
    smtplib(&s, "starttls", &args, tmp.path()).success();
    let mut args = vec!["refused-sender"];
    args.extend(login);
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--header-from",
        "Boss <boss@example.org>",
    ]);
    smtplib(&s, "implicit", &args, tmp.path()).success();
    smtplib(
        &s,
        "implicit",
        &[
            "noauth",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
        ],
        tmp.path(),
    )
    .success();
    // The alias is hers: accepted in both places.
    let mut args = vec!["send"];
    args.extend(login);
    args.extend([
        "--from",
        "info@example.org",
        "--to",
        "bob@example.org",
        "--header-from",
        "Info <info@example.org>",
        "--subject",
        "from the alias",
    ]);
    smtplib(&s, "starttls", &args, tmp.path()).success();
    assert_eq!(subjects(&s, "bob@example.org"), vec!["from the alias"]);
}

fn swaks(args: &[&str], tmp: &std::path::Path) -> casella_testkit::clients::Run {
    let mut cmd = Command::new("swaks");
    cmd.args(["--timeout", "20", "--helo", "swaks.test"])
        .args(args);
    run(cmd, tmp)
}

#[test]
fn swaks_starttls_implicit_tls_and_a_refused_sender() {
    if !casella_testkit::clients::available("swaks", "swaks") {
        return;
    }
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let starttls = format!("127.0.0.1:{}", s.port("submission"));
    let implicit = format!("127.0.0.1:{}", s.port("submissions"));
    let auth = [
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.org",
        "--auth-password",
        PASS,
    ];
    let mut args = vec!["--server", &starttls, "--tls"];
    args.extend(auth);
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--header",
        "Subject: swaks 587",
    ]);
    let r = swaks(&args, tmp.path()).success();
    assert!(r.out().contains("250 2.0.0 Ok: queued as"), "{}", r.dump());
    let mut args = vec!["--server", &implicit, "--tlsc"];
    args.extend([
        "--auth",
        "LOGIN",
        "--auth-user",
        "alice@example.org",
        "--auth-password",
        PASS,
    ]);
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--header",
        "Subject: swaks 465",
    ]);
    swaks(&args, tmp.path()).success();
    // Another user's address as sender: 553, swaks fails.
    let mut args = vec!["--server", &implicit, "--tlsc"];
    args.extend(auth);
    args.extend(["--from", "bob@example.org", "--to", "bob@example.org"]);
    let r = swaks(&args, tmp.path());
    assert!(!r.status.success(), "{}", r.dump());
    assert!(
        r.out()
            .contains("553 5.7.1 Sender address rejected: not owned by authenticated user"),
        "{}",
        r.dump()
    );
    // Without TLS under SecureLogin, AUTH is not offered.
    let mut args = vec!["--server", &starttls];
    args.extend(auth);
    args.extend(["--from", "alice@example.org", "--to", "bob@example.org"]);
    let r = swaks(&args, tmp.path());
    assert!(!r.status.success(), "{}", r.dump());
    assert_eq!(
        subjects(&s, "bob@example.org"),
        vec!["swaks 587", "swaks 465"]
    );
}

#[test]
fn curl_smtp_starttls_and_smtps() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let cert = s.cert_path().to_string_lossy().into_owned();
    for (url, subject) in [
        (
            format!("smtp://127.0.0.1:{}", s.port("submission")),
            "curl 587",
        ),
        (
            format!("smtps://127.0.0.1:{}", s.port("submissions")),
            "curl 465",
        ),
    ] {
        let file = write(
            tmp.path(),
            "mail.eml",
            format!("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nfrom curl\r\n").as_bytes(),
        );
        curl(
            &[
                "--ssl-reqd",
                "--cacert",
                &cert,
                &url,
                "--user",
                &format!("alice@example.org:{PASS}"),
                "--mail-from",
                "alice@example.org",
                "--mail-rcpt",
                "bob@example.org",
                "-T",
                &file,
            ],
            tmp.path(),
        )
        .success();
    }
    // A wrong password: curl fails with 67 (login denied).
    let file = write(tmp.path(), "x.eml", b"Subject: x\r\n\r\nx\r\n");
    let url = format!("smtps://127.0.0.1:{}", s.port("submissions"));
    let r = curl(
        &[
            "--cacert",
            &cert,
            &url,
            "--user",
            "alice@example.org:wrong",
            "--mail-from",
            "alice@example.org",
            "--mail-rcpt",
            "bob@example.org",
            "-T",
            &file,
        ],
        tmp.path(),
    );
    assert_eq!(r.code(), Some(67), "{}", r.dump());
    assert_eq!(
        subjects(&s, "bob@example.org"),
        vec!["curl 587", "curl 465"]
    );
}
