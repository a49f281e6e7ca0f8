//! Several casella nodes on one PostgreSQL store: any node serves any mailbox, an
//! IDLE client on one node hears of mail delivered on another within 200 ms, and
//! the POP3 maildrop lock holds across nodes.

use std::time::{Duration, Instant};

use casella_testkit::postgres::Cluster;
use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "pw";

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
