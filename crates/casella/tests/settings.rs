//! Live settings (Exchange's Set-PopSettings / Set-ImapSettings): each change made
//! with `casella settings` reaches a running server without a restart, and real
//! clients see its effect.

use std::time::{Duration, Instant};

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "test-pw1";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["pop3", "pop3s", "imap", "imaps", "submission"])
        .config("hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account(USER, PASS);
    s
}

fn get(s: &TestServer, protocol: &str, key: &str) -> String {
    let out = s.cli(&["settings", protocol, "get", key], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Retries `check` on fresh connections until the new setting shows (bounded).
fn eventually(mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the setting did not take effect within 10 s");
}

#[test]
fn get_lists_exchange_defaults_and_set_validates() {
    let s = server();
    let out = s.cli(&["settings", "pop", "get"], b"");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "login-type = secure-login",
        "allow-basic-auth = true",
        "banner = The casella POP3 service is ready.",
        "max-connections-per-user = 16",
        "preauth-timeout = 1m",
        "max-command-size = 512",
        "sort-order = ascending",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert_eq!(get(&s, "imap", "max-command-size"), "65536");
    assert_eq!(get(&s, "imap", "auth-timeout"), "30m");
    let out = s.cli(&["settings", "pop", "set", "login-type=whenever"], b"");
    assert!(!out.status.success());
    let out = s.cli(&["settings", "imap", "set", "sort-order=descending"], b"");
    assert!(!out.status.success(), "sort-order is POP3's");
    s.set_settings(
        "imap",
        &["auth-timeout=00:45:00", "allow-basic-auth-imap=true"],
    );
    assert_eq!(get(&s, "imap", "auth-timeout"), "45m");
}

#[test]
fn login_type_changes_live_for_pop_imap_and_submission() {
    let s = server();
    let mut pop = LineClient::connect(s.addr("pop3"));
    pop.expect("+OK");
    pop.send_line(&format!("USER {USER}"));
    pop.expect("-ERR [AUTH]");
    s.set_settings("pop", &["login-type=plaintext-login"]);
    s.set_settings("imap", &["login-type=plaintext-login"]);
    s.set_settings("submission", &["login-type=plaintext-login"]);
    eventually(|| {
        let mut c = LineClient::connect(s.addr("pop3"));
        c.expect("+OK");
        c.send_line(&format!("USER {USER}"));
        c.line().starts_with("+OK")
    });
    eventually(|| {
        let mut c = LineClient::connect(s.addr("imap"));
        let greeting = c.line();
        !greeting.contains("LOGINDISABLED") && greeting.contains("AUTH=PLAIN")
    });
    let mut c = LineClient::connect(s.addr("imap"));
    c.expect("* OK");
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("a OK");
    eventually(|| {
        let mut c = LineClient::connect(s.addr("submission"));
        c.expect("220");
        c.send_line("EHLO x");
        let mut auth = false;
        loop {
            let l = c.line();
            auth |= l.contains("AUTH PLAIN LOGIN");
            if l.starts_with("250 ") {
                return auth;
            }
        }
    });
    // Back to secure-login: cleartext passwords refused again.
    s.set_settings("pop", &["login-type=secure-login"]);
    eventually(|| {
        let mut c = LineClient::connect(s.addr("pop3"));
        c.expect("+OK");
        c.send_line(&format!("USER {USER}"));
        c.line().starts_with("-ERR [AUTH]")
    });
}

#[test]
fn banner_and_connection_limits() {
    let s = server();
    s.set_settings("pop", &["banner=Welcome to Example Mail"]);
    eventually(|| LineClient::connect(s.addr("pop3")).line() == "+OK Welcome to Example Mail");
    s.set_settings("pop", &["max-connections-per-ip=2"]);
    s.set_settings("imap", &["max-connections-per-ip=1"]);
    s.set_settings("submission", &["max-connections-per-ip=1"]);
    s.wait_for_settings();
    let mut a = LineClient::connect(s.addr("pop3"));
    a.expect("+OK");
    let mut b = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    b.expect("+OK");
    let mut c = LineClient::connect(s.addr("pop3"));
    assert_eq!(
        c.line(),
        "-ERR [SYS/TEMP] Too many connections from your address, try again later"
    );
    assert!(c.is_closed());
    drop(a);
    eventually(|| {
        LineClient::connect(s.addr("pop3"))
            .line()
            .starts_with("+OK")
    });
    let mut i = LineClient::connect(s.addr("imap"));
    i.expect("* OK");
    let mut k = LineClient::connect(s.addr("imap"));
    assert_eq!(
        k.line(),
        "* BYE [UNAVAILABLE] Too many connections from your address, try again later"
    );
    let mut m = LineClient::connect(s.addr("submission"));
    m.expect("220");
    let mut n = LineClient::connect(s.addr("submission"));
    assert_eq!(
        n.line(),
        "421 4.7.0 Too many connections from your address, try again later"
    );
    drop((b, i, m));
}

#[test]
fn connections_per_user() {
    let s = server();
    s.set_settings("imap", &["max-connections-per-user=1"]);
    s.wait_for_settings();
    let login = |s: &TestServer| {
        let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
        c.expect("* OK");
        c.send_line(&format!("a LOGIN {USER} {PASS}"));
        let reply = c.line();
        (c, reply)
    };
    let (first, r) = login(&s);
    assert!(r.starts_with("a OK"), "{r}");
    let (_second, r) = login(&s);
    assert!(
        r.starts_with("a NO [LIMIT] Too many connections for this account"),
        "{r}"
    );
    drop(first);
    eventually(|| login(&s).1.starts_with("a OK"));
}

#[test]
fn timeouts_sort_order_and_command_size() {
    let s = server();
    for i in 1..=3 {
        s.deliver(USER, format!("Subject: m{i}\r\n\r\n{i}\r\n").as_bytes());
    }
    s.set_settings(
        "pop",
        &[
            "preauth-timeout=1s",
            "sort-order=descending",
            "max-command-size=64",
        ],
    );
    s.wait_for_settings();
    let mut c = LineClient::connect(s.addr("pop3"));
    c.expect("+OK");
    let start = Instant::now();
    assert_eq!(c.line(), "-ERR Disconnected for inactivity");
    assert!(start.elapsed() < Duration::from_secs(5));
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {}", "x".repeat(80)));
    c.expect("-ERR Command line too long (the limit is 64 bytes)");
    c.send_line(&format!("USER {USER}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("+OK");
    c.send_line("TOP 1 0");
    c.expect("+OK");
    assert_eq!(c.dot_lines(), vec!["Subject: m3", ""], "newest first");
}

#[test]
fn basic_auth_can_be_turned_off_per_protocol() {
    let s = server();
    s.set_settings("pop", &["allow-basic-auth=false"]);
    s.set_settings("imap", &["allow-basic-auth=false"]);
    s.set_settings("submission", &["allow-basic-auth-submission=false"]);
    eventually(|| {
        let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
        c.expect("+OK");
        c.send_line("CAPA");
        c.expect("+OK");
        let caps = c.dot_lines();
        !caps.iter().any(|l| l == "USER" || l.starts_with("SASL"))
    });
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {USER}"));
    c.expect("-ERR [AUTH] Basic authentication (passwords) is turned off for POP3");
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    let greeting = c.line();
    assert!(
        greeting.contains("LOGINDISABLED") && !greeting.contains("AUTH=PLAIN"),
        "{greeting}"
    );
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("a NO [AUTHENTICATIONFAILED] Basic authentication (passwords) is turned off for IMAP");
    let mut c = LineClient::connect(s.addr("submission"));
    c.expect("220");
    c.send_line("STARTTLS");
    c.expect("220");
    c.start_tls(&s.cert_path());
    c.send_line("EHLO x");
    loop {
        let l = c.line();
        assert!(!l.contains("AUTH"), "{l}");
        if l.starts_with("250 ") {
            break;
        }
    }
    c.send_line("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHRlc3QtcHcx");
    c.expect("535 5.7.139 Authentication unsuccessful, basic authentication is disabled");
}

#[test]
fn protocol_logs_use_exchanges_csv_layout_and_hide_secrets() {
    let s = server();
    s.deliver(USER, b"Subject: logged\r\n\r\nsecret body text\r\n");
    s.set_settings("pop", &["protocol-log=on"]);
    s.set_settings("imap", &["protocol-log=on", "protocol-log-rollover=10MB"]);
    s.set_settings("submission", &["protocol-log=on"]);
    assert_eq!(get(&s, "imap", "protocol-log-rollover"), "10MB");
    s.wait_for_settings();
    // base64("\0alice@example.org\0test-pw1")
    let plain = "AGFsaWNlQGV4YW1wbGUub3JnAHRlc3QtcHcx";
    let mut p = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    p.expect("+OK");
    p.send_line(&format!("USER {USER}"));
    p.expect("+OK");
    p.send_line(&format!("PASS {PASS}"));
    p.expect("+OK");
    p.send_line("RETR 1");
    p.expect("+OK");
    p.dot_lines();
    p.send_line("QUIT");
    p.expect("+OK");
    let mut i = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    i.expect("* OK");
    i.send_line(&format!("a AUTHENTICATE PLAIN {plain}"));
    i.expect("a OK");
    i.send_line("b LOGOUT");
    i.expect("* BYE");
    drop((p, i));
    std::thread::sleep(Duration::from_millis(300));
    let read_dir = |name: &str| {
        let dir = s.data_dir().join("logs").join(name);
        let mut text = String::new();
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            text.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
        text
    };
    let pop = read_dir("pop");
    assert!(pop.contains("#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"), "{pop}");
    let rows: Vec<Vec<&str>> = pop
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(',').collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() >= 9 && r[1] == "POP3"), "{pop}");
    assert!(rows.iter().any(|r| r[6] == "+"), "connect event: {pop}");
    assert!(
        rows.iter().any(|r| r[6] == "<" && r[7] == "PASS ****"),
        "{pop}"
    );
    assert!(
        rows.iter()
            .any(|r| r[6] == ">" && r[7].starts_with("+OK") && r[7].contains("octets")),
        "{pop}"
    );
    assert!(rows.iter().any(|r| r[6] == "-"), "disconnect event: {pop}");
    assert!(
        !pop.contains(PASS_MARKER) && !pop.contains("secret body text"),
        "{pop}"
    );
    let imap = read_dir("imap");
    assert!(
        imap.contains(",IMAP4,") && imap.contains("a AUTHENTICATE PLAIN ****"),
        "{imap}"
    );
    assert!(!imap.contains(plain), "{imap}");
}

/// The password used here, as it would appear in a leaked log line.
const PASS_MARKER: &str = "PASS test-pw1";

#[test]
fn account_show_lists_switches_and_aliases() {
    let s = server();
    assert!(
        s.cli(&["account", "set", USER, "pop=off", "save-sent=on"], b"")
            .status
            .success()
    );
    assert!(
        s.cli(&["account", "alias", "add", USER, "info@example.org"], b"")
            .status
            .success()
    );
    let out = s.cli(&["account", "show", USER], b"");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "pop: off",
        "imap: on",
        "submission: on",
        "save-sent: on",
        "aliases: info@example.org",
        "administrator: no",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        text.contains("mailbox: Sent Items \\Sent (0 messages"),
        "{text}"
    );
    assert!(
        !s.cli(&["account", "show", "nobody@example.org"], b"")
            .status
            .success()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bindings_move_listeners_while_sessions_stay() {
    let mut s = server();
    let old = s.addr("pop3");
    // What the server listens on now (its --listen, port 0 resolved), beside
    // the configured bindings.
    assert_eq!(get(&s, "pop", "listening"), old.to_string());
    let mut open_session = LineClient::connect(old);
    open_session.expect("+OK");
    let (p1, p2) = (free_port(), free_port());
    s.set_settings(
        "pop",
        &[&format!("bindings=127.0.0.1:{p1}, 127.0.0.1:{p2}")],
    );
    s.set_settings(
        "imap",
        &[&format!("bindings-tls={{127.0.0.1:{}}}", free_port())],
    );
    eventually(|| std::net::TcpStream::connect(("127.0.0.1", p1)).is_ok());
    for port in [p1, p2] {
        let mut c = LineClient::connect(format!("127.0.0.1:{port}").parse().unwrap());
        c.expect("+OK");
    }
    let start = Instant::now();
    while std::net::TcpStream::connect(old).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "old listener still open; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The session opened on the old address goes on.
    open_session.send_line("CAPA");
    open_session.expect("+OK");
    assert_eq!(
        get(&s, "pop", "bindings"),
        format!("127.0.0.1:{p1}, 127.0.0.1:{p2}")
    );
    eventually(|| get(&s, "pop", "listening") == format!("127.0.0.1:{p1}, 127.0.0.1:{p2}"));
    // A binding that cannot be made keeps the current listeners.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    s.set_settings("pop", &[&format!("bindings=127.0.0.1:{taken_port}")]);
    s.wait_for_settings();
    let mut c = LineClient::connect(format!("127.0.0.1:{p1}").parse().unwrap());
    c.expect("+OK");
    drop((c, open_session));
    s.stop();
    assert_eq!(get(&s, "pop", "listening"), "not running");
}

/// What poplib or imaplib sees of alice's mailbox (tests/clients/mailbox_dump.py).
fn dump(s: &TestServer, command: &str, extra: &[&str]) -> serde_json::Value {
    let out = casella_testkit::clients::mailbox_dump(s, command, USER, PASS, extra);
    serde_json::from_slice(&out).expect("mailbox_dump.py prints JSON")
}

const HTML_ONLY: &[u8] = b"From: bob@example.org\r\nTo: alice@example.org\r\nSubject: html only\r\nDisposition-Notification-To: bob@example.org\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Quarterly <b>figures</b> attached</p></body></html>\r\n";

#[test]
fn retrieval_format_read_receipts_and_sizes_reach_pop_and_imap_live() {
    let s = server();
    s.deliver(USER, HTML_ONLY);
    let stored = HTML_ONLY.len() as u64;
    // Exchange's default: the message as received.
    let pop = dump(&s, "pop", &[]);
    assert_eq!(pop["list"][0][1], stored);
    assert!(
        pop["messages"][0]
            .as_str()
            .unwrap()
            .contains("<b>figures</b>")
    );

    s.set_settings("pop", &["message-retrieval-format=text-only"]);
    s.set_settings(
        "imap",
        &[
            "message-retrieval-format=TextOnly",
            "suppress-read-receipt=true",
        ],
    );
    assert_eq!(get(&s, "imap", "message-retrieval-format"), "text-only");
    let mut pop = serde_json::Value::Null;
    eventually(|| {
        pop = dump(&s, "pop", &[]);
        !pop["messages"][0].as_str().unwrap().contains("<b>")
    });
    let text = pop["messages"][0].as_str().unwrap();
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8"),
        "{text}"
    );
    assert!(text.contains("Quarterly figures attached"), "{text}");
    assert!(text.contains("Subject: html only"), "{text}");
    // Without exact-rfc822-size LIST gives the stored size, as Exchange does.
    assert_eq!(pop["list"][0][1], stored);
    assert!(
        text.contains("Disposition-Notification-To"),
        "the POP3 setting keeps receipts"
    );

    let imap = dump(&s, "imap", &[]);
    let m = &imap["messages"][0];
    let body = m["body"].as_str().unwrap();
    let structure = m["bodystructure"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        structure.starts_with("bodystructure (\"text\" \"plain\""),
        "{m}"
    );
    assert!(body.contains("Quarterly figures attached") && !body.contains("<b>"));
    assert!(!body.contains("Disposition-Notification-To"), "{body}");

    // Exact sizes: LIST and RFC822.SIZE match the bytes sent.
    s.set_settings("pop", &["exact-rfc822-size=true"]);
    s.set_settings("imap", &["exact-rfc822-size=on"]);
    eventually(|| {
        let pop = dump(&s, "pop", &[]);
        let sent = pop["messages"][0].as_str().unwrap().len() + 2;
        pop["list"][0][1] == sent as u64
    });
    let imap = dump(&s, "imap", &[]);
    let m = &imap["messages"][0];
    assert_eq!(m["size"], m["body"].as_str().unwrap().len() as u64);

    // html-and-text: both alternatives, the text one converted.
    s.set_settings("imap", &["message-retrieval-format=html-and-text"]);
    eventually(|| {
        let imap = dump(&s, "imap", &[]);
        imap["messages"][0]["bodystructure"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("\"alternative\"")
    });
}

#[test]
fn per_account_overrides_win_and_hidden_folders_show_on_demand() {
    let s = server();
    s.deliver(USER, HTML_ONLY);
    let out = s.cli(
        &[
            "account",
            "set",
            USER,
            "retrieval-format=text-only",
            "suppress-read-receipt=on",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.cli(&["account", "show", USER], b"");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("retrieval-format: text-only"), "{shown}");
    assert!(shown.contains("suppress-read-receipt: on"), "{shown}");
    let out = s.cli(&["account", "set", USER, "retrieval-format=rtf"], b"");
    assert!(!out.status.success());
    let pop = dump(&s, "pop", &[]);
    let text = pop["messages"][0].as_str().unwrap();
    assert!(
        text.contains("text/plain") && !text.contains("<b>"),
        "{text}"
    );
    assert!(!text.contains("Disposition-Notification-To"), "{text}");

    // A folder whose name starts with "." is hidden from LIST until shown.
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect_tagged("a OK");
    c.send_line("b CREATE .Archive");
    c.expect_tagged("b OK");
    c.send_line("c SELECT .Archive");
    c.expect_tagged("c OK");
    drop(c);
    let folders = dump(&s, "imap", &[])["folders"].clone();
    assert!(!folders.to_string().contains(".Archive"), "{folders}");
    s.set_settings("imap", &["show-hidden-folders=true"]);
    eventually(|| {
        dump(&s, "imap", &[])["folders"]
            .to_string()
            .contains(".Archive")
    });
}
