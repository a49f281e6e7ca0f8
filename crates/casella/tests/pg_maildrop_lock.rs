//! The POP3 maildrop lock (RFC 1939 §8) across two casella nodes on one
//! PostgreSQL store, through a database restart and a database outage longer than
//! the lock's lease (issue 16, finding 9).
//!
//! Before the lease: the lock was a session advisory lock, which a restart of
//! PostgreSQL drops with every connection; node B was granted the maildrop about
//! 0.1 s after the database came back while node A's session went on serving, so
//! two sessions worked one maildrop.
//!
//! Skips (with a line saying so) when the PostgreSQL server binaries are missing,
//! unless `CASELLA_REQUIRE_CLIENTS=1`.

use std::time::{Duration, Instant};

use casella_testkit::postgres::Cluster;
use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "alice-password";

fn node(url: &str, name: &str, extra: &str) -> TestServer {
    TestServer::builder(BIN)
        .protocols(&["pop3s"])
        .config(&format!(
            "hostname = \"{name}.example.org\"\nstore = \"{url}\"\nnode-id = \"{name}\"\n{extra}\
             [pop3]\nauth-failure-delay-ms = 0\n"
        ))
        .start()
}

/// USER/PASS on a fresh connection: the client and the reply to PASS.
fn pop_login(s: &TestServer) -> (LineClient, String) {
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {USER}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    let reply = c.line();
    (c, reply)
}

fn deliver_three(a: &TestServer) {
    for i in 1..=3 {
        a.deliver(
            USER,
            format!("Subject: m{i}\r\n\r\nbody {i}\r\n").as_bytes(),
        );
    }
}

/// A database restart (`pg_ctl restart -m fast`) while node A holds the maildrop:
/// for the 3 s after the database is back, node B is refused with [IN-USE] and A
/// goes on serving; A's DELE is applied at its QUIT (its fenced write passes after
/// the restart), and only then does B get the maildrop, with the message gone.
#[test]
fn a_database_restart_does_not_hand_the_maildrop_to_a_second_node() {
    let Some(pg) = Cluster::try_start() else {
        return;
    };
    let url = pg.database("casella");
    let a = node(&url, "a", "");
    let b = node(&url, "b", "");
    a.add_account(USER, PASS);
    deliver_three(&a);

    let (mut on_a, reply) = pop_login(&a);
    assert!(reply.starts_with("+OK"), "{reply}");
    let (_, reply) = pop_login(&b);
    assert!(
        reply.starts_with("-ERR [IN-USE]"),
        "before the restart: {reply}"
    );

    let restart = Instant::now();
    pg.restart();
    let back = Instant::now();
    eprintln!("pg_ctl restart -m fast took {:?}", back - restart);

    // Node B tries again and again for 3 s after the database is back.
    let mut replies: Vec<(Duration, String)> = Vec::new();
    let mut granted = None;
    while back.elapsed() < Duration::from_secs(3) {
        let (mut c, reply) = pop_login(&b);
        let at = back.elapsed();
        if reply.starts_with("+OK") {
            // Is A still serving while B holds the maildrop?
            on_a.send_line("STAT");
            let a_says = on_a.try_line().unwrap_or_else(|| "(closed)".into());
            c.send_line("QUIT");
            let _ = c.try_line();
            granted = Some((at, a_says));
            break;
        }
        replies.push((at, reply));
        std::thread::sleep(Duration::from_millis(25));
    }
    let in_use = replies
        .iter()
        .filter(|(_, r)| r.starts_with("-ERR [IN-USE]"))
        .count();
    let temp = replies
        .iter()
        .filter(|(_, r)| r.starts_with("-ERR [SYS/TEMP]"))
        .count();
    eprintln!(
        "node B after the restart: {} logins refused ([IN-USE] {in_use}, [SYS/TEMP] {temp}); \
         first refusal {:?}",
        replies.len(),
        replies.first()
    );
    if let Some((at, a_says)) = &granted {
        panic!(
            "node B was granted the maildrop {at:?} after the database came back while \
             node A's session was open; A then answered STAT with {a_says:?}"
        );
    }
    assert!(in_use > 0, "B was never told [IN-USE]: {replies:?}");

    // A still holds the maildrop: it serves, and its DELE is applied at QUIT.
    on_a.send_line("STAT");
    on_a.expect("+OK 3 ");
    on_a.send_line("DELE 1");
    on_a.expect("+OK");
    on_a.send_line("QUIT");
    on_a.expect("+OK casella POP3 server signing off (1 messages deleted)");

    // Released at QUIT (the row is deleted a moment later, by A's lock task): B
    // gets it and sees A's deletion.
    let quit = Instant::now();
    let mut on_b = loop {
        let (c, reply) = pop_login(&b);
        if reply.starts_with("+OK") {
            break c;
        }
        assert!(
            quit.elapsed() < Duration::from_secs(2),
            "after A's QUIT: {reply}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    on_b.send_line("STAT");
    on_b.expect("+OK 2 ");
    on_b.send_line("QUIT");
    on_b.expect("+OK");
}

/// A database outage longer than the lease (`maildrop-lease-secs = 3`, the
/// database down for 4 s): node B is granted the maildrop once the database is
/// back, and node A's session, which had marked a message deleted, is ended at its
/// next command with [SYS/TEMP] — its QUIT deletes nothing.
#[test]
fn an_outage_longer_than_the_lease_ends_the_first_session_before_the_second_acts() {
    let Some(pg) = Cluster::try_start() else {
        return;
    };
    let url = pg.database("casella");
    let lease = "maildrop-lease-secs = 3\n";
    let a = node(&url, "a", lease);
    let b = node(&url, "b", lease);
    a.add_account(USER, PASS);
    deliver_three(&a);

    let (mut on_a, reply) = pop_login(&a);
    assert!(reply.starts_with("+OK"), "{reply}");
    on_a.send_line("DELE 1");
    on_a.expect("+OK");

    pg.stop("fast");
    std::thread::sleep(Duration::from_secs(4));
    pg.start_again();
    let back = Instant::now();

    // B gets the maildrop once the database is back …
    let (mut on_b, granted_after) = loop {
        let (c, reply) = pop_login(&b);
        if reply.starts_with("+OK") {
            break (c, back.elapsed());
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "B never got the maildrop: {reply}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("node B granted {granted_after:?} after the database came back");
    // … and A can no longer act on it: its QUIT ends the session, deleting nothing.
    on_a.send_line("QUIT");
    let l = on_a.line();
    assert!(l.starts_with("-ERR [SYS/TEMP]"), "A's QUIT: {l}");
    assert!(on_a.is_closed(), "A's session ended");
    on_b.send_line("STAT");
    on_b.expect("+OK 3 ");
    on_b.send_line("QUIT");
    on_b.expect("+OK");
    assert!(
        a.log().contains("maildrop lock lost; session ends"),
        "A logs why it ended the session"
    );
}

/// Fencing end to end: node A's lease is made to lapse in the database behind its
/// back (as when A's node stalled for longer than the lease), node B takes the
/// maildrop over, and A's QUIT — with a message marked deleted — is refused with
/// [IN-USE] (by A's next renewal, or else by the fence in the delete's own
/// transaction) and deletes nothing.
#[test]
fn a_session_whose_lease_was_taken_over_deletes_nothing() {
    let Some(pg) = Cluster::try_start() else {
        return;
    };
    let url = pg.database("casella");
    let lease = "maildrop-lease-secs = 3\n";
    let a = node(&url, "a", lease);
    let b = node(&url, "b", lease);
    a.add_account(USER, PASS);
    deliver_three(&a);

    let (mut on_a, reply) = pop_login(&a);
    assert!(reply.starts_with("+OK"), "{reply}");
    on_a.send_line("DELE 1");
    on_a.expect("+OK");
    let before = pg.psql("casella", "SELECT token FROM maildrop_leases");
    pg.psql(
        "casella",
        "UPDATE maildrop_leases SET expires_at = clock_timestamp() - interval '1 second'",
    );
    let (mut on_b, reply) = pop_login(&b);
    assert!(
        reply.starts_with("+OK"),
        "B after A's lease lapsed: {reply}"
    );
    let after = pg.psql("casella", "SELECT token FROM maildrop_leases");
    assert!(
        after.trim().parse::<i64>().unwrap() > before.trim().parse::<i64>().unwrap(),
        "a new token: {before} then {after}"
    );
    on_a.send_line("QUIT");
    let l = on_a.line();
    eprintln!("A's QUIT: {l}");
    assert!(l.starts_with("-ERR [IN-USE]"), "A's QUIT: {l}");
    on_b.send_line("STAT");
    on_b.expect("+OK 3 ");
    on_b.send_line("QUIT");
    on_b.expect("+OK");
}
