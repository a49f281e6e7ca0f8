//! Issue 16, finding 3: what a client may make the server hold before it logs
//! in. An unauthenticated IMAP client could announce a literal up to the
//! APPENDLIMIT (35 MB) and the server made room for all of it and read it, even
//! on the cleartext port where LOGIN is disabled: 30 such connections took the
//! server from 74 MB to 932 MB. Now literals before login are limited to 8 KiB
//! (refused before they are sent) and all pre-login literal bytes share one
//! 32 MiB budget; a per-address connection limit (50) applies by default.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use casella_testkit::{LineClient, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_casella");

/// The server's resident memory (kB), from /proc.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// The soft limit on open files of this process (the server inherits it).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(1) => out.push(b[0]),
            // Said in the line, so an assertion on it shows why it ended.
            Ok(_) => return format!("{}<closed>", String::from_utf8_lossy(&out)),
            Err(e) => return format!("{}<{e}>", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_string()
}

#[test]
fn a_thousand_connections_announcing_35_mb_literals_keep_the_server_small() {
    let s = TestServer::builder(BIN)
        .protocols(&["imap", "imaps"])
        .config("hostname = \"mail.test\"\n")
        .start();
    s.set_settings("imap", &["max-connections-per-ip=unlimited"]);
    s.wait_for_settings();
    let addr = s.addr("imap");

    // One first, so that a regression fails here and does not make the server
    // allocate 35 MB a thousand times.
    let mut c = LineClient::connect(addr);
    c.expect("* OK");
    c.send_line("a LOGIN {36700000}");
    c.expect("a NO [TOOBIG] Literals before login are limited to 8192 bytes");
    // The connection goes on.
    c.send_line("b CAPABILITY");
    c.expect("* CAPABILITY");
    c.expect_tagged("b OK");
    // A literal within the limit is fine (LOGIN is disabled on this port).
    c.send_line("c LOGIN {5}");
    c.expect("+ ");
    c.send(b"alice {6}\r\n");
    c.expect("+ ");
    c.send_line("secret");
    c.expect_tagged("c NO [PRIVACYREQUIRED]");

    // The lines of a command count as well as its literals: a command of
    // many long lines, joined by empty literals, ends at 64 KiB.
    let filler = "x".repeat(9000);
    c.send_line(&format!("d ID (\"a\" \"{filler}\" \"b\" {{0}}"));
    let mut reply = c.line();
    let mut lines = 1;
    while reply.starts_with('+') && lines < 20 {
        c.send_line(&format!(" \"c\" \"{filler}\" \"e\" {{0}}"));
        reply = c.line();
        lines += 1;
    }
    assert_eq!(
        reply, "d BAD Commands before login are limited to 65536 bytes",
        "after {lines} lines"
    );
    assert!(lines <= 8, "{lines} lines of 9 KB were taken");
    c.send_line("e NOOP");
    c.expect_tagged("e OK");

    let n = 1000.min(open_files_limit().saturating_sub(300) / 2);
    let baseline = rss_kb(s.pid());
    let start = Instant::now();
    let junk = vec![b'x'; 64 * 1024];
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        assert!(start.elapsed() < Duration::from_secs(120), "too slow");
        let mut t = TcpStream::connect(addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let greeting = read_line(&mut t);
        assert!(greeting.starts_with("* OK"), "connection {i}: {greeting}");
        if i % 2 == 0 {
            // A synchronizing literal: refused before a byte of it is sent;
            // then a literal of 8,000 bytes that is sent but whose command
            // never ends: held until the connection closes.
            t.write_all(format!("a{i} LOGIN {{35000000}}\r\n").as_bytes())
                .expect("send");
            let reply = read_line(&mut t);
            assert!(reply.starts_with(&format!("a{i} NO [TOOBIG]")), "{reply}");
            t.write_all(format!("b{i} ID (\"name\" {{8000}}\r\n").as_bytes())
                .expect("send");
            assert!(read_line(&mut t).starts_with('+'));
            t.write_all(&junk[..8000]).expect("send");
        } else {
            // A non-synchronizing literal (LITERAL+) over the limit: the
            // client sends the bytes anyway, so the session ends at once.
            t.write_all(format!("a{i} LOGIN {{35000000+}}\r\n").as_bytes())
                .expect("send");
            let _ = t.write_all(&junk);
            let reply = read_line(&mut t);
            assert!(reply.starts_with("* BYE [TOOBIG]"), "{reply}");
        }
        held.push(t);
    }
    // Let the server read what was sent.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kb(s.pid());
    let grown_mb = after.saturating_sub(baseline) / 1024;
    eprintln!("{n} connections: RSS {baseline} kB -> {after} kB (+{grown_mb} MB)");
    // The bound: 100 MB over the idle server for 1,000 such connections (each
    // holds its buffers, 8 KiB of literal and a session; before the fix each
    // held 35 MB).
    assert!(grown_mb < 100, "the server grew by {grown_mb} MB");
    // Still serving.
    let mut c = LineClient::connect(addr);
    c.expect("* OK");
    c.send_line("z NOOP");
    c.expect_tagged("z OK");
    drop(held);
}

#[test]
fn fifty_connections_per_address_by_default_except_trusted_networks() {
    let s = TestServer::builder(BIN)
        .protocols(&["imap", "pop3"])
        .config("hostname = \"mail.test\"\n")
        .start();
    let addr = s.addr("pop3");
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut c = LineClient::connect(addr);
        c.expect("+OK");
        held.push(c);
    }
    let mut c = LineClient::connect(addr);
    c.expect("-ERR [SYS/TEMP]");
    assert!(c.is_closed());
    // Another address is not affected.
    let mut c = LineClient::connect_from(addr, "127.0.0.2".parse().expect("address"));
    c.expect("+OK");
    // Trusted networks are exempt.
    s.set_settings("security", &["trusted-networks=127.0.0.1/32"]);
    s.wait_for_settings();
    let mut c = LineClient::connect(addr);
    c.expect("+OK");
    drop(held);
}
