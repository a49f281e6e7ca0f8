//! The outbound queue end to end: submission on one casella, delivery to a second
//! casella (standing in for the remote MX) or to a scripted sink, retries after a
//! temporary failure, a DSN bounce after a permanent one, and a queue that survives
//! SIGKILL without losing or doubling a message.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const PASS: &str = "test-pw1";
/// base64 of "\0alice@example.org\0test-pw1"
const ALICE_PLAIN: &str = "AGFsaWNlQGV4YW1wbGUub3JnAHRlc3QtcHcx";

/// How the sink answers RCPT in its n-th mail transaction (the relay may carry
/// several transactions on one connection).
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Accept,
    Temporary,
    Permanent,
}

/// A small SMTP server on loopback that records what it accepts. Each connection
/// has its own thread, so a slow connection does not hold up the next one.
struct Sink {
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
    /// MAIL commands seen: transactions begun.
    transactions: Arc<Mutex<usize>>,
    /// DATA commands seen (a delivery in progress once its 354 went out).
    data_started: Arc<Mutex<usize>>,
}

impl Sink {
    fn start(listener: TcpListener, script: Vec<Answer>) -> Sink {
        Sink::start_slow(listener, script, Duration::ZERO)
    }

    /// As `start`, but each message's final reply (after the dot) comes only
    /// after `data_delay`: a delivery that stays in progress that long.
    fn start_slow(listener: TcpListener, script: Vec<Answer>, data_delay: Duration) -> Sink {
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let transactions = Arc::new(Mutex::new(0));
        let data_started = Arc::new(Mutex::new(0));
        let (r, n, d) = (received.clone(), connections.clone(), data_started.clone());
        let (t, script) = (transactions.clone(), Arc::new(script));
        std::thread::spawn(move || {
            // Bounded: the sink serves at most 50 connections.
            for stream in listener.incoming().take(50) {
                let Ok(stream) = stream else { break };
                *n.lock().unwrap() += 1;
                let (r, d, t, script) = (r.clone(), d.clone(), t.clone(), script.clone());
                std::thread::spawn(move || {
                    let answer =
                        |i: usize| *script.get(i).or(script.last()).unwrap_or(&Answer::Accept);
                    let _ = serve_one(stream, &answer, &t, data_delay, &r, &d);
                });
            }
        });
        Sink {
            port,
            received,
            connections,
            transactions,
            data_started,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    fn data_started(&self) -> usize {
        *self.data_started.lock().unwrap()
    }
}

fn serve_one(
    stream: TcpStream,
    script: &dyn Fn(usize) -> Answer,
    transactions: &Mutex<usize>,
    data_delay: Duration,
    received: &Mutex<Vec<String>>,
    data_started: &Mutex<usize>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let mut line = String::new();
    let mut answer = Answer::Accept;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?,
            "MAIL" => {
                let i = {
                    let mut t = transactions.lock().unwrap();
                    *t += 1;
                    *t - 1
                };
                answer = script(i);
                w.write_all(b"250 2.0.0 ok\r\n")?
            }
            "HELO" | "RSET" | "NOOP" => w.write_all(b"250 2.0.0 ok\r\n")?,
            "RCPT" => match answer {
                Answer::Accept => w.write_all(b"250 2.1.5 ok\r\n")?,
                Answer::Temporary => w.write_all(b"451 4.3.0 try again later\r\n")?,
                Answer::Permanent => w.write_all(b"550 5.1.1 no such user here\r\n")?,
            },
            "DATA" => {
                *data_started.lock().unwrap() += 1;
                w.write_all(b"354 go ahead\r\n")?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                std::thread::sleep(data_delay);
                received.lock().unwrap().push(data);
                w.write_all(b"250 2.0.0 queued\r\n")?;
            }
            "QUIT" => {
                w.write_all(b"221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            _ => w.write_all(b"500 5.5.2 what\r\n")?,
        }
    }
}

fn sender_server(route_port: u16) -> TestServer {
    sender_server_with(route_port, "retry-schedule = [1]\n")
}

/// A sender whose `[relay]` section starts with `relay` (e.g. its retry schedule).
fn sender_server_with(route_port: u16, relay: &str) -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["submissions", "pop3s"])
        .config(&format!(
            "hostname = \"mail.example.org\"\n[pop3]\nauth-failure-delay-ms = 0\n\
             [relay]\n{relay}routes = {{ \"remote.test\" = \"127.0.0.1:{route_port}\" }}\n"
        ))
        .start();
    s.add_account("alice@example.org", PASS);
    s
}

fn submit(s: &TestServer, to: &str, subject: &str) {
    let mut c = LineClient::connect_tls(s.addr("submissions"), &s.cert_path());
    c.expect("220");
    c.send_line("EHLO client.test");
    while !c.line().starts_with("250 ") {}
    c.send_line(&format!("AUTH PLAIN {ALICE_PLAIN}"));
    c.expect("235");
    c.send(format!("MAIL FROM:<alice@example.org>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes());
    c.expect("250");
    c.expect("250");
    c.expect("354");
    c.send(format!("From: alice@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello out there\r\n.\r\n").as_bytes());
    c.expect("250");
    c.send_line("QUIT");
}

fn pop_all(s: &TestServer, user: &str) -> Vec<String> {
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
        c.send_line(&format!("RETR {i}"));
        c.expect("+OK");
        out.push(c.dot_lines().join("\n"));
    }
    c.send_line("QUIT");
    out
}

/// Polls `check` until it holds, at most `limit`.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn queue_list(s: &TestServer) -> String {
    String::from_utf8_lossy(&s.cli(&["queue", "list"], b"").stdout).into_owned()
}

#[test]
fn a_submitted_message_reaches_another_casella() {
    let remote = TestServer::builder(BIN)
        .protocols(&["smtp", "pop3s"])
        .config("hostname = \"mx.remote.test\"\n[pop3]\nauth-failure-delay-ms = 0\n")
        .start();
    remote.add_account("bob@remote.test", PASS);
    let s = sender_server(remote.port("smtp"));
    submit(&s, "bob@remote.test", "across");
    let mut got = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            got = pop_all(&remote, "bob@remote.test");
            !got.is_empty()
        }),
        "not delivered; queue: {}",
        queue_list(&s)
    );
    let m = &got[0];
    assert!(
        m.contains("Subject: across") && m.contains("hello out there"),
        "{m}"
    );
    assert!(
        m.contains("by mail.example.org (casella) with ESMTPSA"),
        "the sender's trace: {m}"
    );
    assert!(
        m.contains("by mx.remote.test (casella) with ESMTP"),
        "the receiver's trace: {m}"
    );
    assert!(eventually(Duration::from_secs(10), || queue_list(&s).contains("empty")));
}

#[test]
fn a_temporary_failure_is_retried() {
    let sink = Sink::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        vec![Answer::Temporary, Answer::Accept],
    );
    let s = sender_server(sink.port);
    submit(&s, "carol@remote.test", "retry me");
    assert!(
        eventually(Duration::from_secs(30), || sink.messages().len() == 1),
        "not delivered after a retry; queue: {}\nlog: {}\nsink connections {}",
        queue_list(&s),
        s.log(),
        sink.connections.lock().unwrap()
    );
    assert!(
        *sink.transactions.lock().unwrap() >= 2,
        "the first attempt was refused"
    );
    assert!(sink.messages()[0].contains("Subject: retry me"));
    assert!(eventually(Duration::from_secs(10), || queue_list(&s).contains("empty")));
    assert!(
        pop_all(&s, "alice@example.org").is_empty(),
        "no bounce for a retried message"
    );
}

#[test]
fn a_permanent_failure_bounces_to_the_sender() {
    let sink = Sink::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        vec![Answer::Permanent],
    );
    let s = sender_server(sink.port);
    submit(&s, "nobody@remote.test", "doomed");
    let mut inbox = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            inbox = pop_all(&s, "alice@example.org");
            !inbox.is_empty()
        }),
        "no bounce; queue: {}",
        queue_list(&s)
    );
    let dsn = &inbox[0];
    assert!(
        dsn.contains("Content-Type: multipart/report")
            && dsn.contains("report-type=delivery-status"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody@remote.test"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Action: failed") && dsn.contains("Status: 5.1.1"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Subject: doomed"),
        "the original's header is returned: {dsn}"
    );
    assert!(sink.messages().is_empty());
    assert!(eventually(Duration::from_secs(10), || queue_list(&s).contains("empty")));
}

#[test]
fn the_queue_survives_sigkill_and_sends_once() {
    // A port with nobody listening yet: the first attempts fail temporarily.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = sender_server(port);
    submit(&s, "dave@remote.test", "survivor");
    s.kill9();
    let listed = queue_list(&s);
    assert!(listed.contains("dave@remote.test\tpending"), "{listed}");
    let sink = Sink::start(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        vec![Answer::Accept],
    );
    s.restart();
    assert!(
        eventually(Duration::from_secs(30), || sink.messages().len() == 1),
        "not delivered after restart; queue: {}",
        queue_list(&s)
    );
    assert!(eventually(Duration::from_secs(10), || queue_list(&s).contains("empty")));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.messages().len(), 1, "sent once");
}

/// The ids `queue list` shows, in its order.
fn queue_ids(s: &TestServer) -> Vec<i64> {
    queue_list(s)
        .lines()
        .filter_map(|l| l.split('\t').next()?.parse().ok())
        .collect()
}

/// `casella queue ARGS`, which must succeed; its standard output.
#[track_caller]
fn queue_cli(s: &TestServer, args: &[&str]) -> String {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    let out = s.cli(&all, b"");
    assert!(
        out.status.success(),
        "queue {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Issue 23, finding 1: `queue retry` while the entry is being delivered used to
// rewrite the whole entry, clearing the delivery's claim; the runner took it again
// and the remote got the message twice.
#[test]
fn retry_during_a_delivery_sends_once() {
    let sink = Sink::start_slow(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        vec![Answer::Accept],
        Duration::from_secs(4),
    );
    let s = sender_server(sink.port);
    submit(&s, "erin@remote.test", "only once");
    assert!(
        eventually(Duration::from_secs(20), || sink.data_started() == 1),
        "the delivery did not start; queue: {}",
        queue_list(&s)
    );
    let ids = queue_ids(&s);
    assert_eq!(ids.len(), 1, "{}", queue_list(&s));
    // Both forms, while the sink still sits on the message.
    let one = queue_cli(&s, &["retry", &ids[0].to_string()]);
    let all = queue_cli(&s, &["retry"]);
    // Another submission wakes the runner at once: a cleared claim would be
    // taken again now, not only at the next poll.
    submit(&s, "frank@remote.test", "a nudge");
    assert!(
        eventually(Duration::from_secs(30), || queue_list(&s).contains("empty")),
        "queue: {}\nlog: {}",
        queue_list(&s),
        s.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let copies = sink
        .messages()
        .iter()
        .filter(|m| m.contains("Subject: only once"))
        .count();
    assert_eq!(copies, 1, "copies received; log: {}", s.log());
    assert!(one.contains("being delivered"), "{one}");
    assert!(all.contains("being delivered"), "{all}");
    assert!(
        !s.log().contains("recording a delivery attempt failed"),
        "{}",
        s.log()
    );
}

// Issue 23, finding 2: the running server used to notice `queue retry` only at its
// 30-second poll.
#[test]
fn retry_takes_effect_within_a_second() {
    let sink = Sink::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        vec![Answer::Temporary, Answer::Accept],
    );
    // The next attempt after a failure would be in an hour.
    let s = sender_server_with(sink.port, "retry-schedule = [3600]\n");
    submit(&s, "gina@remote.test", "now please");
    assert!(
        eventually(Duration::from_secs(20), || queue_list(&s)
            .contains("attempts 1")),
        "the first attempt was not recorded; queue: {}",
        queue_list(&s)
    );
    // Let the runner settle into its sleep.
    std::thread::sleep(Duration::from_secs(1));
    let out = queue_cli(&s, &["retry"]);
    assert!(out.contains("1 entries"), "{out}");
    let asked = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || sink.messages().len() == 1),
        "not delivered after retry; queue: {}",
        queue_list(&s)
    );
    let took = asked.elapsed();
    eprintln!("retry took effect after {took:?}");
    assert!(took < Duration::from_secs(2), "retry took {took:?}");
}

// Issue 23, finding 6: ids restarted at 1 once the queue emptied, so a
// `queue delete ID` from an older listing could remove another message.
#[test]
fn queue_ids_are_never_reused() {
    let sink = Sink::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        vec![Answer::Temporary],
    );
    let s = sender_server_with(sink.port, "retry-schedule = [3600]\n");
    let mut seen = Vec::new();
    for round in 0..3 {
        submit(&s, "hank@remote.test", &format!("round {round}"));
        let ids = queue_ids(&s);
        assert_eq!(ids.len(), 1, "{}", queue_list(&s));
        assert!(
            !seen.contains(&ids[0]),
            "id {} given again: {seen:?}",
            ids[0]
        );
        seen.push(ids[0]);
        // Once its attempt is over, delete it: the queue is empty again.
        assert!(
            eventually(Duration::from_secs(20), || queue_list(&s)
                .contains("attempts 1")),
            "{}",
            queue_list(&s)
        );
        queue_cli(&s, &["delete", &ids[0].to_string()]);
        assert!(queue_list(&s).contains("empty"));
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

// Issue 23, finding 6: `queue list` shows an entry while it is being delivered.
#[test]
fn queue_list_shows_an_entry_being_delivered() {
    let sink = Sink::start_slow(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        vec![Answer::Accept],
        Duration::from_secs(3),
    );
    let s = sender_server(sink.port);
    submit(&s, "ivy@remote.test", "in flight");
    assert!(
        eventually(Duration::from_secs(20), || sink.data_started() == 1),
        "the delivery did not start"
    );
    let listed = queue_list(&s);
    assert!(
        listed.contains("being delivered") && listed.contains("ivy@remote.test\tpending"),
        "{listed}"
    );
    assert!(eventually(Duration::from_secs(20), || queue_list(&s).contains("empty")));
    assert_eq!(sink.messages().len(), 1);
}
