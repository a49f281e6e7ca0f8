//! Nothing acknowledged is lost: the server is killed with SIGKILL right after its
//! acknowledgements, and everything acknowledged is there after a restart.

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const PASS: &str = "test-pw1";

fn pop_login(s: &TestServer, user: &str) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {user}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("+OK");
    c
}

fn bodies(s: &TestServer, user: &str) -> Vec<String> {
    let mut c = pop_login(s, user);
    c.send_line("STAT");
    let n: usize = c.line().split(' ').nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        c.send_line(&format!("RETR {i}"));
        c.expect("+OK");
        out.push(c.dot_lines().last().cloned().unwrap_or_default());
    }
    c.send_line("QUIT");
    c.expect("+OK");
    out
}

#[test]
fn smtp_and_lmtp_acknowledged_messages_survive_sigkill() {
    let mut s = TestServer::builder(BIN).start();
    s.add_account("a@example.org", PASS);
    s.add_account("b@example.org", PASS);

    let mut smtp = LineClient::connect(s.addr("smtp"));
    smtp.expect("220");
    smtp.send_line("HELO t");
    smtp.expect("250");
    let mut lmtp = LineClient::connect(s.addr("lmtp"));
    lmtp.expect("220");
    lmtp.send_line("LHLO t");
    while !lmtp.line().starts_with("250 ") {}
    let n = 25;
    for i in 0..n {
        smtp.send(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n");
        smtp.expect("250");
        smtp.expect("250");
        smtp.expect("354");
        smtp.send(format!("Subject: s{i}\r\n\r\nsmtp {i}\r\n.\r\n").as_bytes());
        smtp.expect("250 2.0.0");
        lmtp.send(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
        lmtp.expect("250");
        lmtp.expect("250");
        lmtp.expect("250");
        lmtp.expect("354");
        lmtp.send(format!("Subject: l{i}\r\n\r\nlmtp {i}\r\n.\r\n").as_bytes());
        lmtp.expect("250 2.0.0");
        lmtp.expect("250 2.0.0");
    }
    // The last acknowledgement was just read: kill at once.
    s.kill9();
    s.restart();
    let a = bodies(&s, "a@example.org");
    let b = bodies(&s, "b@example.org");
    for i in 0..n {
        assert!(a.contains(&format!("smtp {i}")), "smtp {i} lost");
        assert!(a.contains(&format!("lmtp {i}")), "lmtp {i} lost for a");
        assert!(b.contains(&format!("lmtp {i}")), "lmtp {i} lost for b");
    }
    assert_eq!(a.len(), 2 * n);
    assert_eq!(b.len(), n);
}

#[test]
fn pop3_quit_acknowledged_deletions_survive_sigkill() {
    let mut s = TestServer::builder(BIN).start();
    s.add_account("a@example.org", PASS);
    for i in 0..5 {
        s.deliver(
            "a@example.org",
            format!("Subject: {i}\r\n\r\nm{i}\r\n").as_bytes(),
        );
    }
    let mut c = pop_login(&s, "a@example.org");
    for i in [1, 3, 5] {
        c.send_line(&format!("DELE {i}"));
        c.expect("+OK");
    }
    c.send_line("QUIT");
    c.expect("+OK");
    s.kill9();
    s.restart();
    assert_eq!(bodies(&s, "a@example.org"), vec!["m1", "m3"]);
}

#[test]
fn cli_delivery_is_durable_once_it_exits() {
    let mut s = TestServer::builder(BIN).start();
    s.add_account("a@example.org", PASS);
    s.deliver("a@example.org", b"Subject: cli\r\n\r\nvia deliver\r\n");
    s.kill9();
    s.restart();
    assert_eq!(bodies(&s, "a@example.org"), vec!["via deliver"]);
    let out = s.cli(&["deliver", "--to", "nobody@example.org"], b"x");
    assert_eq!(out.status.code(), Some(67), "unknown user: EX_NOUSER");
}

/// Every message of `user` as POP3 shows it: its lines, without the end dot.
fn messages(s: &TestServer, user: &str) -> Vec<Vec<String>> {
    let mut c = pop_login(s, user);
    c.send_line("STAT");
    let n: usize = c.line().split(' ').nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        c.send_line(&format!("RETR {i}"));
        c.expect("+OK");
        out.push(c.dot_lines());
    }
    c.send_line("QUIT");
    c.expect("+OK");
    out
}

/// The body line of each message, after checking it is whole: its Subject and
/// its body name the same message, and nothing follows the body.
fn whole_bodies(s: &TestServer, user: &str) -> Vec<String> {
    messages(s, user)
        .into_iter()
        .map(|lines| {
            let subject = lines
                .iter()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_else(|| panic!("a message without its header: {lines:?}"));
            let body = lines.last().cloned().unwrap_or_default();
            assert!(
                body.ends_with(subject),
                "half-written or mixed up: subject {subject:?}, body {body:?}"
            );
            body
        })
        .collect()
}

type Acks = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// UID → Subject of every message in the INBOX, and UIDNEXT, over IMAP.
fn uids_and_subjects(s: &TestServer, user: &str) -> (std::collections::HashMap<u32, String>, u32) {
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("l LOGIN {user} {PASS}"));
    c.expect_tagged("l OK");
    c.send_line("s SELECT INBOX");
    let mut uid_next = 0;
    loop {
        let l = c.line();
        if let Some(rest) = l.strip_prefix("* OK [UIDNEXT ") {
            uid_next = rest.split(']').next().unwrap().parse().unwrap();
        }
        if l.starts_with("s ") {
            break;
        }
    }
    c.send_line("f FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    let mut map = std::collections::HashMap::new();
    let mut current = None;
    loop {
        let l = c.line();
        if l.starts_with("f ") {
            break;
        }
        if let Some(i) = l.find("(UID ") {
            current = l[i + 5..]
                .split(' ')
                .next()
                .and_then(|u| u.parse::<u32>().ok());
        } else if let (Some(subject), Some(uid)) = (l.strip_prefix("Subject: "), current) {
            assert!(
                map.insert(uid, subject.to_string()).is_none(),
                "UID {uid} twice"
            );
        }
    }
    (map, uid_next)
}

/// SIGKILL while IMAP APPEND, SMTP delivery and a POP3 DELE/QUIT run at once,
/// 20 rounds: after each restart every acknowledged message is there and whole,
/// and the POP3 deletions happened all or not at all.
#[test]
fn sigkill_during_concurrent_append_delivery_and_pop3_update_loses_nothing() {
    use std::thread;
    use std::time::Duration;

    // The clients' threads fail when the server is killed under them: expected,
    // and not worth a backtrace each.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if thread::current().name() != Some("crash-client") {
            default_hook(info);
        }
    }));
    let client = || thread::Builder::new().name("crash-client".into());
    let mut s = TestServer::builder(BIN)
        .protocols(&["imaps", "pop3s", "smtp"])
        .start();
    for u in ["a@example.org", "b@example.org", "c@example.org"] {
        s.add_account(u, PASS);
    }
    let mut appended: Vec<String> = Vec::new();
    let mut delivered: Vec<String> = Vec::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut quits = 0;
    for round in 0..20 {
        let n_pop = 5;
        // c's maildrop holds this round's messages only.
        let mut clear = pop_login(&s, "c@example.org");
        clear.send_line("STAT");
        let left: usize = clear.line().split(' ').nth(1).unwrap().parse().unwrap();
        for i in 1..=left {
            clear.send_line(&format!("DELE {i}"));
            clear.expect("+OK");
        }
        clear.send_line("QUIT");
        clear.expect("+OK");
        for i in 0..n_pop {
            s.deliver(
                "c@example.org",
                format!("Subject: c{round}-{i}\r\n\r\npop c{round}-{i}\r\n").as_bytes(),
            );
        }
        let imap_acks: Acks = Default::default();
        let smtp_acks: Acks = Default::default();
        let quit_acked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (imap_addr, smtp_addr, pop_addr, cert) = (
            s.addr("imaps"),
            s.addr("smtp"),
            s.addr("pop3s"),
            s.cert_path(),
        );
        let mut threads = Vec::new();
        {
            let acks = imap_acks.clone();
            let cert = cert.clone();
            threads.push(
                client()
                    .spawn(move || {
                        let mut c = LineClient::connect_tls(imap_addr, &cert);
                        c.expect("* OK");
                        c.send_line(&format!("l LOGIN a@example.org {PASS}"));
                        c.expect_tagged("l OK");
                        for i in 0..1000 {
                            let id = format!("a{round}-{i}");
                            let msg = format!("Subject: {id}\r\n\r\nappend {id}\r\n");
                            c.send_line(&format!("t{i} APPEND INBOX {{{}+}}", msg.len()));
                            c.send(msg.as_bytes());
                            c.send_line("");
                            let ok = c.expect_tagged(&format!("t{i} OK"));
                            // "tN OK [APPENDUID validity uid] …": the UID it was given.
                            let uid = ok
                                .split_whitespace()
                                .nth(4)
                                .and_then(|u| u.trim_end_matches(']').parse::<u32>().ok())
                                .expect("APPENDUID");
                            acks.lock().unwrap().push(format!("{uid} append {id}"));
                        }
                    })
                    .expect("thread"),
            );
        }
        {
            let acks = smtp_acks.clone();
            threads.push(
                client()
                    .spawn(move || {
                        let mut c = LineClient::connect(smtp_addr);
                        c.expect("220");
                        c.send_line("HELO t");
                        c.expect("250");
                        for i in 0..1000 {
                            let id = format!("b{round}-{i}");
                            c.send(b"MAIL FROM:<x@r.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
                            c.expect("250");
                            c.expect("250");
                            c.expect("354");
                            c.send(format!("Subject: {id}\r\n\r\nsmtp {id}\r\n.\r\n").as_bytes());
                            c.expect("250 2.0.0");
                            acks.lock().unwrap().push(format!("smtp {id}"));
                        }
                    })
                    .expect("thread"),
            );
        }
        {
            let quit_acked = quit_acked.clone();
            let cert = cert.clone();
            threads.push(
                client()
                    .spawn(move || {
                        let mut c = LineClient::connect_tls(pop_addr, &cert);
                        c.expect("+OK");
                        c.send_line("USER c@example.org");
                        c.expect("+OK");
                        c.send_line(&format!("PASS {PASS}"));
                        c.expect("+OK");
                        for i in 1..=n_pop {
                            c.send_line(&format!("DELE {i}"));
                            c.expect("+OK");
                        }
                        c.send_line("QUIT");
                        c.expect("+OK");
                        quit_acked.store(true, std::sync::atomic::Ordering::SeqCst);
                    })
                    .expect("thread"),
            );
        }
        // Somewhere between 20 and 220 ms in.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        thread::sleep(Duration::from_millis(20 + seed % 200));
        s.kill9();
        for t in threads {
            // The clients fail when the server dies; what they recorded stands.
            let _ = t.join();
        }
        s.restart();

        let a = whole_bodies(&s, "a@example.org");
        let b = whole_bodies(&s, "b@example.org");
        appended.extend(imap_acks.lock().unwrap().iter().cloned());
        delivered.extend(smtp_acks.lock().unwrap().iter().cloned());
        // UIDs never repeat: every acknowledged APPEND still has the UID it was
        // given, with its own content, and the next UID is past all of them.
        let (uids, uid_next) = uids_and_subjects(&s, "a@example.org");
        for ack in &appended {
            let (uid, body) = ack.split_once(' ').unwrap();
            let uid: u32 = uid.parse().unwrap();
            assert!(
                a.contains(&body.to_string()),
                "round {round}: acknowledged {body} lost"
            );
            let id = body.trim_start_matches("append ");
            assert_eq!(
                uids.get(&uid).map(String::as_str),
                Some(id),
                "round {round}: UID {uid} no longer holds {id}"
            );
            assert!(
                uid < uid_next,
                "round {round}: UIDNEXT {uid_next} not past {uid}"
            );
        }
        for id in &delivered {
            assert!(b.contains(id), "round {round}: acknowledged {id} lost");
        }
        let c = whole_bodies(&s, "c@example.org");
        let left = c
            .iter()
            .filter(|b| b.starts_with(&format!("pop c{round}-")))
            .count();
        if quit_acked.load(std::sync::atomic::Ordering::SeqCst) {
            quits += 1;
            assert_eq!(left, 0, "round {round}: QUIT was acknowledged");
        } else {
            assert!(
                left == 0 || left == n_pop,
                "round {round}: {left} of {n_pop} deletions half applied"
            );
        }
    }
    eprintln!(
        "acknowledged before the kills: {} APPENDs, {} SMTP deliveries; QUIT acknowledged in {quits} of 20 rounds",
        appended.len(),
        delivered.len()
    );
    assert!(!appended.is_empty() && !delivered.is_empty());
}
