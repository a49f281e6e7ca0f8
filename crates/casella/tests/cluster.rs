//! Several casella nodes on one PostgreSQL store: any node serves any mailbox, an
//! IDLE client on one node hears of mail delivered on another within 200 ms, and
//! the POP3 maildrop lock holds across nodes.

use std::time::{Duration, Instant};

use casella_testkit::postgres::Cluster;
use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "test-pw1";

fn node(url: &str, name: &str) -> TestServer {
    TestServer::builder(BIN)
        .protocols(&["smtp", "imaps", "pop3s"])
        .config(&format!(
            "hostname = \"{name}.example.org\"\nstore = \"{url}\"\nnode-id = \"{name}\"\n\
             [pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n"
        ))
        .start()
}

fn imap_login(s: &TestServer) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect("a OK");
    c
}

fn smtp_deliver(s: &TestServer, subject: &str) {
    let mut c = LineClient::connect(s.addr("smtp"));
    c.expect("220");
    c.send(
        format!("HELO t\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<{USER}>\r\nDATA\r\n").as_bytes(),
    );
    c.expect("250");
    c.expect("250");
    c.expect("250");
    c.expect("354");
    c.send(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    c.expect("250");
}

#[test]
fn two_nodes_share_one_postgresql_store() {
    let pg = Cluster::start();
    let url = pg.database("casella");
    let a = node(&url, "a");
    let b = node(&url, "b");
    // An account made through one node's data directory exists on both.
    a.add_account(USER, PASS);

    // IDLE on node B, delivery on node A.
    let mut idle = imap_login(&b);
    idle.send_line("s SELECT INBOX");
    while !idle.line().starts_with("s OK") {}
    idle.send_line("i IDLE");
    idle.expect("+ ");
    let mut worst = Duration::ZERO;
    for n in 1..=5u32 {
        let start = Instant::now();
        smtp_deliver(&a, &format!("m{n}"));
        // Measured from the 250: the message is committed then.
        let acked = Instant::now();
        assert_eq!(idle.line(), format!("* {n} EXISTS"));
        worst = worst.max(acked.elapsed());
        let _ = start;
        assert_eq!(idle.line(), format!("* {n} RECENT"));
    }
    idle.send_line("DONE");
    idle.expect("i OK");
    assert!(
        worst < Duration::from_millis(200),
        "delivery on A to EXISTS on B took {worst:?}"
    );

    // Flags set on A reach B's session on NOOP.
    let mut on_a = imap_login(&a);
    on_a.send_line("s SELECT INBOX");
    while !on_a.line().starts_with("s OK") {}
    on_a.send_line("f STORE 1 +FLAGS (\\Flagged)");
    while !on_a.line().starts_with("f OK") {}
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        idle.send_line("n NOOP");
        loop {
            let l = idle.line();
            seen |= l.starts_with("* 1 FETCH (FLAGS (") && l.contains("\\Flagged");
            if l.starts_with("n OK") {
                break;
            }
        }
    }
    assert!(seen, "B did not hear of A's flag change");

    // The POP3 maildrop lock holds across nodes.
    let mut pop_b = LineClient::connect_tls(b.addr("pop3s"), &b.cert_path());
    pop_b.expect("+OK");
    pop_b.send_line(&format!("USER {USER}"));
    pop_b.expect("+OK");
    pop_b.send_line(&format!("PASS {PASS}"));
    pop_b.expect("+OK");
    let mut pop_a = LineClient::connect_tls(a.addr("pop3s"), &a.cert_path());
    pop_a.expect("+OK");
    pop_a.send_line(&format!("USER {USER}"));
    pop_a.expect("+OK");
    pop_a.send_line(&format!("PASS {PASS}"));
    pop_a.expect("-ERR [IN-USE]");
    pop_b.send_line("QUIT");
    pop_b.expect("+OK");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        pop_a.send_line(&format!("USER {USER}"));
        pop_a.expect("+OK");
        pop_a.send_line(&format!("PASS {PASS}"));
        let l = pop_a.line();
        if l.starts_with("+OK") {
            break;
        }
        assert!(Instant::now() < deadline, "the lock was not released: {l}");
        std::thread::sleep(Duration::from_millis(100));
    }
    pop_a.send_line("STAT");
    pop_a.expect("+OK 5 ");
}

/// What a client caches, read over IMAP and POP3.
fn client_view(s: &TestServer) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut c = imap_login(s);
    c.send_line("s SELECT INBOX");
    let mut select = Vec::new();
    loop {
        let l = c.line();
        if l.starts_with("s OK") {
            break;
        }
        if l.contains("UIDVALIDITY") || l.contains("UIDNEXT") || l.ends_with("EXISTS") {
            select.push(l);
        }
    }
    c.send_line("f UID FETCH 1:* (FLAGS)");
    let mut fetch = Vec::new();
    loop {
        let l = c.line();
        if l.starts_with("f OK") {
            break;
        }
        fetch.push(l.replace("\\Recent ", "").replace("\\Recent", ""));
    }
    c.send_line("w STATUS Work (MESSAGES UIDVALIDITY UIDNEXT)");
    select.push(c.line());
    c.expect("w OK");
    drop(c);
    let mut p = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    p.expect("+OK");
    p.send_line(&format!("USER {USER}"));
    p.expect("+OK");
    p.send_line(&format!("PASS {PASS}"));
    p.expect("+OK");
    p.send_line("UIDL");
    p.expect("+OK");
    let uidl = p.dot_lines();
    p.send_line("QUIT");
    (select, fetch, uidl)
}

#[test]
fn migrate_moves_an_embedded_store_into_postgresql_keeping_what_clients_cache() {
    let mut embedded = TestServer::builder(BIN)
        .protocols(&["imaps", "pop3s"])
        .config("hostname = \"old.example.org\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n")
        .start();
    embedded.add_account(USER, PASS);
    assert!(
        embedded
            .cli(&["account", "alias", "add", USER, "sales@example.org"], b"")
            .status
            .success()
    );
    for i in 1..=4 {
        embedded.deliver(
            USER,
            format!("Subject: m{i}\r\n\r\nbody {i}\r\n").as_bytes(),
        );
    }
    let mut c = imap_login(&embedded);
    for cmd in [
        "s SELECT INBOX",
        "f STORE 2 +FLAGS (\\Flagged $Work)",
        "d STORE 3 +FLAGS (\\Deleted)",
        "e EXPUNGE",
        "c CREATE Work",
        "a APPEND Work (\\Seen) {16}",
    ] {
        let tag = cmd.split(' ').next().unwrap().to_string();
        c.send_line(cmd);
        if cmd.ends_with("{16}") {
            c.expect("+ ");
            c.send(b"Subject: w\r\n\r\nw\r\n");
        }
        while !c.line().starts_with(&format!("{tag} OK")) {}
    }
    drop(c);
    let before = client_view(&embedded);
    assert_eq!(before.1.len(), 3, "{before:?}");
    assert!(embedded.stop().success());

    let pg = Cluster::start();
    let url = pg.database("migrated");
    let dir = embedded.data_dir().to_string_lossy().into_owned();
    let out = embedded.cli(&["migrate", "--from", &dir, "--to", &url], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("migrated 1 accounts, 4 messages"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("4/4 messages"),
        "a progress bar"
    );

    let node = node(&url, "new");
    let after = client_view(&node);
    assert_eq!(before, after, "UIDVALIDITY, UIDs, flags and UIDLs kept");
    // The alias came along; new mail gets the next UID.
    node.deliver("sales@example.org", b"Subject: after\r\n\r\nx\r\n");
    let mut c = imap_login(&node);
    c.send_line("s SELECT INBOX");
    while !c.line().starts_with("s OK") {}
    c.send_line("u UID SEARCH SUBJECT after");
    assert_eq!(c.line(), "* SEARCH 5");
    // A second migration into the same database is refused, not merged.
    let out = embedded.cli(&["migrate", "--from", &dir, "--to", &url], b"");
    assert!(!out.status.success());
}

/// APPENDs one message over an IMAP session; the APPENDUID's UID, or None when the
/// connection broke (the node was killed).
fn append(c: &mut LineClient, tag: &str, subject: &str) -> Option<u32> {
    let body = format!("Subject: {subject}\r\n\r\nx\r\n");
    c.send(format!("{tag} APPEND INBOX {{{}+}}\r\n{body}\r\n", body.len()).as_bytes());
    loop {
        let l = c.try_line()?;
        if let Some(rest) = l.strip_prefix(&format!("{tag} OK [APPENDUID ")) {
            return rest.split([' ', ']']).nth(1)?.parse().ok();
        }
        if l.starts_with(&format!("{tag} ")) {
            return None;
        }
    }
}

#[test]
fn concurrent_appends_from_two_nodes_and_a_node_killed_under_load() {
    let pg = Cluster::start();
    let url = pg.database("casella");
    let mut a = node(&url, "a");
    let b = node(&url, "b");
    a.add_account(USER, PASS);

    // Both nodes append at once: UIDs are unique and rise in each session.
    let run = |s: &TestServer, name: &'static str| {
        let mut c = imap_login(s);
        let mut uids = Vec::new();
        for i in 0..30 {
            uids.push(
                append(&mut c, &format!("{name}{i}"), &format!("{name} {i}")).expect("APPENDUID"),
            );
        }
        uids
    };
    let (ua, ub) = std::thread::scope(|scope| {
        let ta = scope.spawn(|| run(&a, "a"));
        let tb = scope.spawn(|| run(&b, "b"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(
        ua.windows(2).all(|w| w[0] < w[1]) && ub.windows(2).all(|w| w[0] < w[1]),
        "{ua:?} {ub:?}"
    );
    let mut all: Vec<u32> = ua.iter().chain(ub.iter()).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60, "UIDs are unique across nodes");
    let mut c = imap_login(&b);
    c.send_line("s SELECT INBOX");
    let mut exists = 0;
    loop {
        let l = c.line();
        if let Some(n) = l.strip_prefix("* ").and_then(|r| r.strip_suffix(" EXISTS")) {
            exists = n.parse().unwrap();
        }
        if l.starts_with("s OK") {
            break;
        }
    }
    assert_eq!(exists, 60);

    // Node A is killed while a client appends through it: every acknowledged
    // message is there, read through node B.
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let acked = &acked;
        let a_ref = &a;
        let writer = scope.spawn(move || {
            let mut c = imap_login(a_ref);
            for i in 0..500 {
                let subject = format!("load {i}");
                match append(&mut c, &format!("l{i}"), &subject) {
                    Some(_) => acked.lock().unwrap().push(subject),
                    None => return,
                }
            }
        });
        while acked.lock().unwrap().len() < 20 && !writer.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = a_ref.pid();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let _ = writer.join();
    });
    a.kill9();
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 20, "the load ran before the kill");
    c.send_line("n NOOP");
    while !c.line().starts_with("n OK") {}
    c.send_line("f FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    let mut subjects = std::collections::HashSet::new();
    loop {
        let l = c.line();
        if let Some(s) = l.strip_prefix("Subject: ") {
            subjects.insert(s.to_string());
        }
        if l.starts_with("f OK") {
            break;
        }
    }
    for s in &acked {
        assert!(subjects.contains(s), "acknowledged {s:?} lost");
    }
}
