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

/// How the sink answers RCPT on its n-th connection.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Accept,
    Temporary,
    Permanent,
}

/// A small SMTP server on loopback that records what it accepts.
struct Sink {
    port: u16,
    received: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
}

impl Sink {
    fn start(listener: TcpListener, script: Vec<Answer>) -> Sink {
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (r, n) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            // Bounded: the sink serves at most 50 connections.
            for stream in listener.incoming().take(50) {
                let Ok(stream) = stream else { break };
                let i = {
                    let mut n = n.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let answer = *script.get(i).or(script.last()).unwrap_or(&Answer::Accept);
                let _ = serve_one(stream, answer, &r);
            }
        });
        Sink {
            port,
            received,
            connections,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

fn serve_one(
    stream: TcpStream,
    answer: Answer,
    received: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?,
            "HELO" | "MAIL" | "RSET" | "NOOP" => w.write_all(b"250 2.0.0 ok\r\n")?,
            "RCPT" => match answer {
                Answer::Accept => w.write_all(b"250 2.1.5 ok\r\n")?,
                Answer::Temporary => w.write_all(b"451 4.3.0 try again later\r\n")?,
                Answer::Permanent => w.write_all(b"550 5.1.1 no such user here\r\n")?,
            },
            "DATA" => {
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
    let s = TestServer::builder(BIN)
        .protocols(&["submissions", "pop3s"])
        .config(&format!(
            "hostname = \"mail.example.org\"\n[pop3]\nauth-failure-delay-ms = 0\n\
             [relay]\nretry-schedule = [1]\nroutes = {{ \"remote.test\" = \"127.0.0.1:{route_port}\" }}\n"
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
        *sink.connections.lock().unwrap() >= 2,
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
