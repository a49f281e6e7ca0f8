//! Front ends and back ends (Exchange's Client Access and Mailbox roles): a front end
//! terminates TLS, logs the client in against the shared PostgreSQL directory, and
//! hands the session over to the account's back end on its `*-internal` listener,
//! proving the cluster secret; from then on it relays bytes. The client sees one
//! server.
//!
//! Each test starts its own PostgreSQL cluster and casella processes on loopback;
//! every read is bounded (LineClient: 10 s; client programs: 60 s).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use casella_proxy::{ClusterSecret, Handover, proof_line};
use casella_testkit::imap_inbox::{MSG1, MSG2, msg3};
use casella_testkit::postgres::Cluster;
use casella_testkit::{LineClient, TestServer, clients};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "test-pw1";
/// base64 of "\0alice@example.org\0test-pw1"
const ALICE_PLAIN: &str = "AGFsaWNlQGV4YW1wbGUub3JnAHRlc3QtcHcx";
const SECRET: &str = "s3cr3t shared by front and back ends, 48 bytes..";
const NO_DELAYS: &str = "[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n\
                         [submission]\nauth-failure-delay-ms = 0\n";

fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// One back end and one front end on one PostgreSQL store; alice's mailbox is on
/// site "mb1", served by that back end.
struct Setup {
    /// The shared store's URL.
    url: String,
    back: TestServer,
    front: TestServer,
    secrets: tempfile::TempDir,
    // Dropped last: the servers stop before the database does.
    _pg: Cluster,
}

fn back_end(url: &str, secret: &Path) -> TestServer {
    TestServer::builder(BIN)
        .protocols(&["imap-internal", "pop3-internal", "submission-internal"])
        .config(&format!(
            "hostname = \"back.example.org\"\nstore = \"{url}\"\nnode-id = \"back\"\n\
             role = \"backend\"\n[cluster]\nsecret-file = \"{}\"\n{NO_DELAYS}",
            secret.display()
        ))
        .start()
}

/// A front end whose site "mb1" is `mb1`; `extra` is appended to its casella.toml.
fn front_end(store: &str, secret: &Path, mb1: &[(&str, String)], extra: &str) -> TestServer {
    let mut sites = String::from("[sites.mb1]\n");
    for (protocol, addr) in mb1 {
        sites.push_str(&format!("{protocol} = [\"{addr}\"]\n"));
    }
    TestServer::builder(BIN)
        .protocols(&[
            "imap",
            "imaps",
            "pop3",
            "pop3s",
            "submission",
            "submissions",
        ])
        .config(&format!(
            "hostname = \"front.example.org\"\nstore = \"{store}\"\nnode-id = \"front\"\n\
             role = \"frontend\"\n[cluster]\nsecret-file = \"{}\"\n{sites}{NO_DELAYS}{extra}",
            secret.display()
        ))
        .start()
}

fn internal_addrs(back: &TestServer) -> Vec<(&'static str, String)> {
    vec![
        ("imap", back.addr("imap-internal").to_string()),
        ("pop3", back.addr("pop3-internal").to_string()),
        ("submission", back.addr("submission-internal").to_string()),
    ]
}

fn setup() -> Setup {
    let pg = Cluster::start();
    let url = pg.database("casella");
    let secrets = tempfile::tempdir().unwrap();
    let secret = secret_file(secrets.path(), "cluster.secret", SECRET);
    let back = back_end(&url, &secret);
    let front = front_end(&url, &secret, &internal_addrs(&back), "");
    // The directory is shared: accounts made through either node exist on both.
    front.add_account(USER, PASS);
    front.add_account("bob@example.org", PASS);
    set(&front, USER, "backend=mb1");
    set(&front, "bob@example.org", "backend=mb1");
    Setup {
        url,
        back,
        front,
        secrets,
        _pg: pg,
    }
}

fn set(s: &TestServer, user: &str, setting: &str) {
    let out = s.cli(&["account", "set", user, setting], b"");
    assert!(
        out.status.success(),
        "account set {setting}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads up to the tagged reply; returns every line, the tagged one last.
fn until_tagged(c: &mut LineClient, tag: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        let done = l.starts_with(&format!("{tag} "));
        lines.push(l);
        if done {
            return lines;
        }
    }
}

fn imaps(front: &TestServer) -> LineClient {
    let mut c = LineClient::connect_tls(front.addr("imaps"), &front.cert_path());
    c.expect("* OK [CAPABILITY ");
    c
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@remote.test>\r\nTo: {USER}\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@remote.test>\r\nDate: Sun, 01 Jun 2025 10:00:00 +0000\r\n\
         \r\nHello from {subject}.\r\n"
    )
    .into_bytes()
}

fn log_waits_for(s: &TestServer, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = s.log();
        if log.contains(what) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn imap_sessions_are_handed_over_and_relayed() {
    let s = setup();
    s.back.deliver(USER, &message("first"));

    let mut c = imaps(&s.front);
    // Pre-authentication commands are the front end's own.
    c.send_line("i ID (\"name\" \"proxy-test\")");
    c.expect("* ID (\"name\" \"casella\"");
    c.expect("i OK");
    c.send_line("n NOOP");
    c.expect("n OK");
    c.send_line("x SELECT INBOX");
    c.expect("x BAD");
    // A wrong password is refused by the front end; the session goes on.
    c.send_line(&format!("w LOGIN {USER} wrong"));
    c.expect("w NO [AUTHENTICATIONFAILED]");
    // The login and a command pipelined behind it, in one write: the second goes to
    // the back end after the hand-over.
    c.send(format!("a LOGIN {USER} {PASS}\r\ns SELECT INBOX\r\n").as_bytes());
    let ok = c.line();
    assert!(
        ok.starts_with("a OK [CAPABILITY IMAP4rev1 IMAP4rev2 ") && ok.ends_with("] Logged in"),
        "{ok}"
    );
    // The capabilities after login are the back end's: a logged-in session's list.
    assert!(ok.contains(" IDLE ") && ok.contains("APPENDLIMIT="), "{ok}");
    assert!(!ok.contains("AUTH=") && !ok.contains("STARTTLS"), "{ok}");
    let select = until_tagged(&mut c, "s");
    assert!(select.contains(&"* 1 EXISTS".to_string()), "{select:?}");
    assert!(
        select.last().unwrap().starts_with("s OK [READ-WRITE]"),
        "{select:?}"
    );

    // APPEND with a synchronising literal: the back end's "+" comes through.
    let body = message("appended");
    c.send_line(&format!("p APPEND INBOX (\\Flagged) {{{}}}", body.len()));
    c.expect("+ ");
    c.send(&body);
    c.send(b"\r\n");
    let appended = until_tagged(&mut c, "p");
    assert!(
        appended.last().unwrap().starts_with("p OK [APPENDUID "),
        "{appended:?}"
    );
    // ... and a non-synchronising one (LITERAL+).
    c.send(format!("q APPEND INBOX {{{}+}}\r\n", body.len()).as_bytes());
    c.send(&body);
    c.send(b"\r\n");
    let appended = until_tagged(&mut c, "q");
    assert!(appended.last().unwrap().starts_with("q OK"), "{appended:?}");
    c.send_line("f FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    let fetched = until_tagged(&mut c, "f").join("\n");
    assert!(fetched.contains("Subject: first"), "{fetched}");
    assert!(fetched.contains("Subject: appended"), "{fetched}");
    assert!(fetched.contains("\\Flagged"), "{fetched}");
    assert!(fetched.contains("f OK"), "{fetched}");

    // IDLE through the relay: mail delivered on the back end wakes it.
    c.send_line("d IDLE");
    c.expect("+ ");
    s.back.deliver(USER, &message("during-idle"));
    let mut woke = Vec::new();
    loop {
        let l = c.line();
        let exists = l == "* 4 EXISTS";
        woke.push(l);
        if exists {
            break;
        }
    }
    c.send_line("DONE");
    until_tagged(&mut c, "d");

    c.send_line("u UNSELECT");
    c.expect("u OK");
    c.send_line("t STATUS INBOX (MESSAGES)");
    c.expect("* STATUS INBOX (MESSAGES 4)");
    c.expect("t OK");
    c.send_line("l LOGOUT");
    c.expect("* BYE");
    c.expect("l OK");
    assert!(c.is_closed(), "the relay closes with the back end");

    // Both sides logged the hand-over; the back end names the real client.
    let front_log = log_waits_for(&s.front, "handed over");
    assert!(front_log.contains("login; handed over"), "{front_log}");
    assert!(front_log.contains("site=mb1"), "{front_log}");
    let back_log = log_waits_for(&s.back, "handed over by a front end");
    assert!(
        back_log.contains("session handed over by a front end"),
        "{back_log}"
    );
    assert!(back_log.contains("client=127.0.0.1:"), "{back_log}");
    for log in [&front_log, &back_log] {
        assert!(!log.contains(SECRET), "the secret reached a log");
        assert!(!log.contains(ALICE_PLAIN), "a credential reached a log");
    }
}

#[test]
fn starttls_and_login_policy_stay_on_the_front_end() {
    let mut s = setup();
    let mut c = LineClient::connect(s.front.addr("imap"));
    let greeting = c.line();
    assert!(
        greeting.contains("STARTTLS") && greeting.contains("LOGINDISABLED"),
        "{greeting}"
    );
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("a NO [PRIVACYREQUIRED]");
    c.send_line("t STARTTLS");
    c.expect("t OK");
    c.start_tls(&s.front.cert_path());
    c.send_line("c CAPABILITY");
    let caps = c.expect("* CAPABILITY ");
    assert!(
        caps.contains("AUTH=PLAIN") && !caps.contains("STARTTLS"),
        "{caps}"
    );
    c.expect("c OK");
    // AUTHENTICATE PLAIN with an initial response (SASL-IR).
    c.send_line(&format!("b AUTHENTICATE PLAIN {ALICE_PLAIN}"));
    let ok = c.expect("b OK [CAPABILITY ");
    assert!(ok.ends_with("Logged in"), "{ok}");
    c.send_line("n NOOP");
    c.expect("n OK");
    c.send_line("s STARTTLS");
    c.expect("s BAD");
    c.send_line("l LOGOUT");
    c.expect("* BYE");
    c.expect("l OK");

    // The per-account switch is the front end's login policy, as on one node.
    set(&s.front, USER, "imap=off");
    let mut c = imaps(&s.front);
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("a NO [CONTACTADMIN]");
    set(&s.front, USER, "imap=on");
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("a OK [CAPABILITY ");

    // Stopping the front end closes relayed sessions at once (clients reconnect),
    // even one in IDLE.
    c.send_line("s SELECT INBOX");
    until_tagged(&mut c, "s");
    c.send_line("i IDLE");
    c.expect("+ ");
    let start = Instant::now();
    assert!(s.front.stop().success());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(c.try_line().is_none(), "the relayed session was closed");
}

#[test]
fn pop3_sessions_are_handed_over_and_relayed() {
    let s = setup();
    s.back.deliver(USER, &message("one"));
    s.back.deliver(USER, &message("two"));

    let mut c = LineClient::connect_tls(s.front.addr("pop3s"), &s.front.cert_path());
    c.expect("+OK");
    c.send_line("CAPA");
    c.expect("+OK");
    let before = c.dot_lines();
    assert!(before.contains(&"USER".to_string()), "{before:?}");
    c.send_line(&format!("USER {USER}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    let ok = c.line();
    assert!(
        ok.starts_with("+OK Logged in; maildrop has 2 messages ("),
        "{ok}"
    );
    // After the login, the back end answers.
    c.send_line("CAPA");
    c.expect("+OK");
    let after = c.dot_lines();
    assert!(!after.contains(&"USER".to_string()), "{after:?}");
    c.send_line("STAT");
    c.expect("+OK 2 ");
    c.send_line("RETR 1");
    c.expect("+OK");
    let body = c.dot_lines();
    assert!(body.contains(&"Subject: one".to_string()), "{body:?}");

    // The maildrop is locked by the back end: a second session through the front end
    // gets the back end's refusal and may go on.
    let mut other = LineClient::connect_tls(s.front.addr("pop3s"), &s.front.cert_path());
    other.expect("+OK");
    other.send_line(&format!("USER {USER}"));
    other.expect("+OK");
    other.send_line(&format!("PASS {PASS}"));
    other.expect("-ERR [IN-USE]");
    other.send_line("NOOP");
    other.expect("-ERR Log in first");

    c.send_line("DELE 1");
    c.expect("+OK");
    c.send_line("QUIT");
    c.expect("+OK casella POP3 server signing off (1 messages deleted)");
    assert!(c.is_closed());

    // STLS on the front end, then AUTH PLAIN with an initial response.
    let mut c = LineClient::connect(s.front.addr("pop3"));
    c.expect("+OK");
    c.send_line("STLS");
    c.expect("+OK");
    c.start_tls(&s.front.cert_path());
    c.send_line(&format!("AUTH PLAIN {ALICE_PLAIN}"));
    c.expect("+OK Logged in; maildrop has 1 messages");
    c.send_line("STLS");
    c.expect("-ERR");
    c.send_line("QUIT");
    c.expect("+OK");
}

fn ehlo(c: &mut LineClient) -> Vec<String> {
    c.send_line("EHLO client.test");
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        assert!(l.starts_with("250"), "{l}");
        let last = l.starts_with("250 ");
        lines.push(l[4..].to_string());
        if last {
            return lines;
        }
    }
}

#[test]
fn submission_is_handed_over_and_delivers_on_the_back_end() {
    let s = setup();
    let mut c = LineClient::connect(s.front.addr("submission"));
    c.expect("220 front.example.org");
    let before = ehlo(&mut c);
    assert!(before.contains(&"STARTTLS".to_string()), "{before:?}");
    c.send_line("MAIL FROM:<alice@example.org>");
    c.expect("530");
    c.send_line("STARTTLS");
    c.expect("220");
    c.start_tls(&s.front.cert_path());
    let caps = ehlo(&mut c);
    assert!(
        caps.contains(&"AUTH PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS".to_string()),
        "{caps:?}"
    );
    c.send_line(&format!("AUTH PLAIN {ALICE_PLAIN}"));
    c.expect("235 2.7.0");
    // The sender stays bound to the login on the back end.
    c.send_line("MAIL FROM:<someone@example.org>");
    c.expect("553 5.7.1");
    c.send_line("MAIL FROM:<alice@example.org>");
    c.expect("250");
    c.send_line("RCPT TO:<bob@example.org>");
    c.expect("250");
    c.send_line("DATA");
    c.expect("354");
    c.send(b"Subject: via the front end\r\n\r\nhello bob\r\n.\r\n");
    c.expect("250");
    c.send_line("QUIT");
    c.expect("221");

    // Delivered at once; bob reads it through the front end.
    let mut b = imaps(&s.front);
    b.send_line(&format!("a LOGIN bob@example.org {PASS}"));
    b.expect("a OK");
    b.send_line("s SELECT INBOX");
    let select = until_tagged(&mut b, "s");
    assert!(select.contains(&"* 1 EXISTS".to_string()), "{select:?}");
    b.send_line("f FETCH 1 BODY.PEEK[HEADER]");
    let header = until_tagged(&mut b, "f").join("\n");
    assert!(header.contains("Subject: via the front end"), "{header}");
    // The back end's trace header names the client as the front end saw it.
    assert!(
        header.contains("Received: from client.test ([127.0.0.1])"),
        "{header}"
    );
    assert!(
        header.contains("by back.example.org (casella) with ESMTPSA"),
        "{header}"
    );

    // Implicit TLS and AUTH LOGIN with challenges.
    let mut c = LineClient::connect_tls(s.front.addr("submissions"), &s.front.cert_path());
    c.expect("220");
    ehlo(&mut c);
    c.send_line("AUTH LOGIN");
    c.expect("334 VXNlcm5hbWU6");
    c.send_line("YWxpY2VAZXhhbXBsZS5vcmc="); // alice@example.org
    c.expect("334 UGFzc3dvcmQ6");
    c.send_line("dGVzdC1wdzE="); // test-pw1
    c.expect("235");
    // After the hand-over EHLO comes from the back end: no AUTH, no STARTTLS.
    let caps = ehlo(&mut c);
    assert!(
        !caps
            .iter()
            .any(|l| l.starts_with("AUTH") || l == "STARTTLS"),
        "{caps:?}"
    );
    c.send_line("AUTH PLAIN AAAA");
    c.expect("503");
    c.send_line("QUIT");
    c.expect("221");
}

/// Reads the challenge of an internal listener; returns the nonce.
fn challenge(c: &mut LineClient, protocol: &str) -> String {
    let l = c.line();
    let prefix = format!("XCASELLA-CHALLENGE {protocol} ");
    let nonce = l.strip_prefix(&prefix).unwrap_or_else(|| panic!("{l}"));
    assert_eq!(nonce.len(), 64, "{l}");
    nonce.to_string()
}

fn alice_from(client: &str) -> Handover {
    Handover {
        address: USER.into(),
        client: client.parse().unwrap(),
        tls: true,
        helo: None,
        esmtp: false,
    }
}

#[test]
fn internal_listeners_refuse_anyone_without_the_secret() {
    let s = setup();
    let imap_internal = s.back.addr("imap-internal");
    let right = ClusterSecret::from_bytes(SECRET.as_bytes()).unwrap();
    let wrong = ClusterSecret::from_bytes(b"not the secret of this cluster!!").unwrap();

    // A client that speaks IMAP.
    let mut c = LineClient::connect(imap_internal);
    challenge(&mut c, "imap");
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("XCASELLA-REFUSED");
    assert!(c.is_closed());

    // A proof made with another secret.
    let mut c = LineClient::connect(imap_internal);
    let nonce = challenge(&mut c, "imap");
    c.send_line(&proof_line(
        &wrong,
        "imap",
        &nonce,
        &alice_from("192.0.2.1:1"),
    ));
    c.expect("XCASELLA-REFUSED");
    assert!(c.is_closed());

    // A captured valid proof replayed on a new connection (another nonce).
    let mut c = LineClient::connect(imap_internal);
    let nonce = challenge(&mut c, "imap");
    let captured = proof_line(&right, "imap", &nonce, &alice_from("192.0.2.1:1"));
    drop(c);
    let mut c = LineClient::connect(imap_internal);
    challenge(&mut c, "imap");
    c.send_line(&captured);
    c.expect("XCASELLA-REFUSED");
    assert!(c.is_closed());

    // A proof for POP3 on the IMAP listener.
    let mut c = LineClient::connect(imap_internal);
    let nonce = challenge(&mut c, "imap");
    c.send_line(&proof_line(
        &right,
        "pop3",
        &nonce,
        &alice_from("192.0.2.1:1"),
    ));
    c.expect("XCASELLA-REFUSED");

    // With the secret, the session starts logged in.
    let mut c = LineClient::connect(imap_internal);
    let nonce = challenge(&mut c, "imap");
    c.send_line(&proof_line(
        &right,
        "imap",
        &nonce,
        &alice_from("192.0.2.1:1"),
    ));
    c.expect("OK [CAPABILITY ");
    c.send_line("n NOOP");
    c.expect("n OK");
    c.send_line("l LOGOUT");
    c.expect("* BYE");

    let log = log_waits_for(&s.back, "internal connection refused");
    // The IMAP client, the wrong secret, the connection that only took a nonce,
    // the replay, and the wrong protocol.
    assert_eq!(
        log.matches("internal connection refused").count(),
        5,
        "{log}"
    );
    assert!(!log.contains(SECRET));

    // A front end with the wrong secret: the login fails with a temporary error.
    let other = secret_file(
        s.secrets.path(),
        "other.secret",
        "a different secret, 32 bytes....",
    );
    let bad_front = front_end(&s.url, &other, &internal_addrs(&s.back), "");
    let mut c = imaps(&bad_front);
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("a NO [UNAVAILABLE] The mailbox server is not reachable, try again later");
    let log = log_waits_for(&bad_front, "refused our proof");
    assert!(
        log.contains("refused our proof of the cluster secret"),
        "{log}"
    );
}

/// A port nothing listens on.
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn a_back_end_that_is_down_gives_temporary_errors_quickly() {
    let secrets = tempfile::tempdir().unwrap();
    let secret = secret_file(secrets.path(), "cluster.secret", SECRET);
    // Accepts connections (the kernel's backlog) but never says anything.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let down = closed_port();
    // An embedded directory is enough here: no back end is ever reached.
    let front = front_end(
        "embedded",
        &secret,
        &[
            ("imap", down.clone()),
            ("pop3", down.clone()),
            ("submission", down.clone()),
        ],
        &format!("[sites.silent]\nimap = [\"{silent_addr}\"]\n"),
    );
    front.add_account(USER, PASS);
    front.add_account("bob@example.org", PASS);
    front.add_account("carol@example.org", PASS);
    set(&front, USER, "backend=mb1");
    set(&front, "bob@example.org", "backend=silent");

    // Connection refused: at once.
    let mut c = imaps(&front);
    let start = Instant::now();
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("a NO [UNAVAILABLE] The mailbox server is not reachable, try again later");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The session stays usable.
    c.send_line("n NOOP");
    c.expect("n OK");
    c.send_line("c CAPABILITY");
    c.expect("* CAPABILITY ");
    c.expect("c OK");

    let mut p = LineClient::connect_tls(front.addr("pop3s"), &front.cert_path());
    p.expect("+OK");
    p.send_line(&format!("USER {USER}"));
    p.expect("+OK");
    let start = Instant::now();
    p.send_line(&format!("PASS {PASS}"));
    p.expect("-ERR [SYS/TEMP] The mailbox server is not reachable, try again later");
    assert!(start.elapsed() < Duration::from_secs(3));
    p.send_line("QUIT");
    p.expect("+OK");

    let mut m = LineClient::connect_tls(front.addr("submissions"), &front.cert_path());
    m.expect("220");
    ehlo(&mut m);
    let start = Instant::now();
    m.send_line(&format!("AUTH PLAIN {ALICE_PLAIN}"));
    m.expect("454 4.7.0 The mailbox server is not reachable, try again later");
    assert!(start.elapsed() < Duration::from_secs(3));
    m.send_line("NOOP");
    m.expect("250");

    // A back end that accepts but never answers: the connect timeout (5 s).
    let start = Instant::now();
    c.send_line(&format!("b LOGIN bob@example.org {PASS}"));
    c.expect("b NO [UNAVAILABLE] The mailbox server is not reachable, try again later");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "{took:?}"
    );

    // No back end for the account (and no default-backend).
    c.send_line(&format!("d LOGIN carol@example.org {PASS}"));
    c.expect("d NO [UNAVAILABLE] No mailbox server is assigned to this account");
    c.send_line("l LOGOUT");
    c.expect("* BYE");
    drop(silent);
}

#[test]
fn python_imaplib_through_the_front_end() {
    let s = setup();
    let tmp = tempfile::tempdir().unwrap();
    let msgs = [MSG1.to_vec(), MSG2.to_vec(), msg3()];
    let mut expect = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        s.back.deliver(USER, m);
        expect.push(clients::write(tmp.path(), &format!("m{i}.eml"), m));
    }
    let cert = s.front.cert_path().to_string_lossy().into_owned();
    let conn = |mode: &str, listener: &str| -> Vec<String> {
        [
            "--mode",
            mode,
            "--port",
            &s.front.port(listener).to_string(),
            "--cert",
            &cert,
            "--user",
            USER,
            "--password",
            PASS,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    // AUTHENTICATE PLAIN over implicit TLS.
    let mut args = vec!["authenticate".to_string()];
    args.extend(conn("ssl", "imaps"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = clients::python("imap_check.py", &args, tmp.path()).success();
    assert!(r.out().contains("exists: 3"), "{}", r.dump());

    // The whole imaplib session, STARTTLS on the front end first; its second
    // connections (IDLE wake-ups, changes seen on NOOP) go through the front end too.
    let mut args = vec!["session".to_string()];
    args.extend(conn("stls", "imap"));
    for e in &expect {
        args.push("--expect".into());
        args.push(e.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = clients::python("imap_check.py", &args, tmp.path()).success();
    let out = r.out();
    for step in [
        "ok: login refused before STARTTLS",
        "[PRIVACYREQUIRED]",
        "ok: starttls (TLSv1.",
        "ok: login",
        "ok: select INBOX exists=3",
        "ok: append with flags and date, APPENDUID",
        "ok: idle saw * 3 EXISTS and * 1 EXPUNGE",
        "ok: another session's changes on NOOP",
        "ok: logout",
        "PASS",
    ] {
        assert!(out.contains(step), "missing {step:?}\n{}", r.dump());
    }
}

/// A front end over two back ends at different sites: users of both log in through
/// the one front end with imaplib and poplib, each reads only their own mail, and
/// stopping one back end affects only its users.
#[test]
fn two_sites_behind_one_front_end() {
    let pg = Cluster::start();
    let url = pg.database("casella");
    let secrets = tempfile::tempdir().unwrap();
    let secret = secret_file(secrets.path(), "cluster.secret", SECRET);
    let mut back1 = back_end(&url, &secret);
    let back2 = back_end(&url, &secret);
    let mut sites = String::from("[sites.mb2]\n");
    for (protocol, addr) in internal_addrs(&back2) {
        sites.push_str(&format!("{protocol} = [\"{addr}\"]\n"));
    }
    let front = front_end(&url, &secret, &internal_addrs(&back1), &sites);
    front.add_account(USER, PASS);
    front.add_account("bob@example.org", PASS);
    set(&front, USER, "backend=mb1");
    set(&front, "bob@example.org", "backend=mb2");
    back1.deliver(
        USER,
        b"Subject: for alice\r\nMessage-ID: <a1@x>\r\n\r\nA\r\n",
    );
    back2.deliver(
        "bob@example.org",
        b"Subject: for bob\r\nMessage-ID: <b1@x>\r\n\r\nB\r\n",
    );
    back2.deliver(
        "bob@example.org",
        b"Subject: for bob too\r\nMessage-ID: <b2@x>\r\n\r\nB\r\n",
    );

    let tmp = tempfile::tempdir().unwrap();
    let cert = front.cert_path().to_string_lossy().into_owned();
    let imap_dump = |user: &str| {
        let port = front.port("imaps").to_string();
        let args = [
            "dump",
            "--mode",
            "ssl",
            "--port",
            &port,
            "--cert",
            &cert,
            "--user",
            user,
            "--password",
            PASS,
        ];
        clients::python("imap_check.py", &args, tmp.path())
    };
    let pop_find = |user: &str| {
        let port = front.port("pop3s").to_string();
        let args = [
            "find",
            "--mode",
            "ssl",
            "--port",
            &port,
            "--cert",
            &cert,
            "--user",
            user,
            "--password",
            PASS,
            "--header",
            "Subject:",
        ];
        clients::python("pop3_check.py", &args, tmp.path())
    };
    let alice = imap_dump(USER).success().out();
    assert!(
        alice.contains("mailbox: INBOX count=1")
            && alice.contains("<a1@x>")
            && !alice.contains("<b1@x>"),
        "{alice}"
    );
    let bob = imap_dump("bob@example.org").success().out();
    assert!(
        bob.contains("mailbox: INBOX count=2") && bob.contains("<b2@x>") && !bob.contains("<a1@x>"),
        "{bob}"
    );
    let alice = pop_find(USER).success().out();
    assert!(
        alice.contains("count: 1") && alice.contains("Subject: for alice"),
        "{alice}"
    );
    let bob = pop_find("bob@example.org").success().out();
    assert!(
        bob.contains("count: 2") && !bob.contains("for alice"),
        "{bob}"
    );

    // Site mb1 goes down: alice gets a temporary error at once, bob carries on.
    assert!(back1.stop().success());
    let mut c = imaps(&front);
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    let l = c.line();
    assert!(l.starts_with("a NO [UNAVAILABLE]"), "{l}");
    let bob = imap_dump("bob@example.org").success().out();
    assert!(bob.contains("mailbox: INBOX count=2"), "{bob}");
    let bob = pop_find("bob@example.org").success().out();
    assert!(bob.contains("count: 2"), "{bob}");
    drop(back1);
}
