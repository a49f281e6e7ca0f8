//! An exact-bytes line client: what a test sends is what goes on the wire.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

const READ_TIMEOUT: Duration = Duration::from_secs(10);

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Upgrading,
}

pub struct LineClient {
    conn: Conn,
    buf: Vec<u8>,
}

fn tls_config(cert: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("cert file") {
        roots.add(c.expect("cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn tls_over(tcp: TcpStream, cert: &Path) -> StreamOwned<ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(tls_config(cert), name).expect("client connection");
    let mut s = StreamOwned::new(conn, tcp);
    // Finish the handshake now, so failures show here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    s
}

/// A TCP connection to `addr` from the local address `from`.
fn tcp_from(addr: SocketAddr, from: std::net::IpAddr) -> TcpStream {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .expect("bind the local address");
    socket.connect(&addr.into()).expect("connect");
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    tcp
}

impl LineClient {
    pub fn connect(addr: SocketAddr) -> LineClient {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        LineClient {
            conn: Conn::Plain(tcp),
            buf: Vec::new(),
        }
    }

    /// Implicit TLS (pop3s, imaps, submissions), trusting `cert`.
    pub fn connect_tls(addr: SocketAddr, cert: &Path) -> LineClient {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        LineClient {
            conn: Conn::Tls(Box::new(tls_over(tcp, cert))),
            buf: Vec::new(),
        }
    }

    /// Cleartext from a chosen local address (e.g. 127.0.0.2, to be another
    /// client on loopback).
    pub fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> LineClient {
        let tcp = tcp_from(addr, from);
        LineClient {
            conn: Conn::Plain(tcp),
            buf: Vec::new(),
        }
    }

    /// Implicit TLS from a chosen local address (e.g. 127.0.0.2, to be another
    /// client on loopback).
    pub fn connect_tls_from(addr: SocketAddr, from: std::net::IpAddr, cert: &Path) -> LineClient {
        let tcp = tcp_from(addr, from);
        LineClient {
            conn: Conn::Tls(Box::new(tls_over(tcp, cert))),
            buf: Vec::new(),
        }
    }

    /// Upgrades after the server agreed to STLS/STARTTLS. Panics if the server sent
    /// anything after its agreement that was not yet read.
    pub fn start_tls(&mut self, cert: &Path) {
        assert!(
            self.buf.is_empty(),
            "unread bytes before TLS: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Upgrading) else {
            panic!("TLS already active");
        };
        self.conn = Conn::Tls(Box::new(tls_over(tcp, cert)));
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let r = match &mut self.conn {
            Conn::Plain(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Conn::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Conn::Upgrading => unreachable!("connection is mid-upgrade"),
        };
        r.expect("send");
    }

    /// Sends `line` followed by CRLF.
    pub fn send_line(&mut self, line: &str) {
        let mut b = line.as_bytes().to_vec();
        b.extend_from_slice(b"\r\n");
        self.send(&b);
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        let n = match &mut self.conn {
            Conn::Plain(s) => s.read(&mut chunk),
            Conn::Tls(s) => s.read(&mut chunk),
            Conn::Upgrading => unreachable!("connection is mid-upgrade"),
        };
        match n {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            // A TLS peer that closes without close_notify, or a reset: treat as EOF.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!(
                "read: {e} (so far: {:?})",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads one line, returning it without CRLF. Panics at EOF.
    pub fn line(&mut self) -> String {
        self.try_line().unwrap_or_else(|| {
            panic!(
                "connection closed; unread: {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// One line, or `None` if the server closed the connection first.
    pub fn try_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    /// Reads a line and asserts it starts with `prefix`; returns the line.
    pub fn expect(&mut self, prefix: &str) -> String {
        let l = self.line();
        assert!(l.starts_with(prefix), "expected {prefix:?}, got {l:?}");
        l
    }

    /// Skips untagged lines up to the reply whose tag is `prefix`'s first word
    /// and asserts it starts with `prefix` (e.g. `"a OK"`); returns that line.
    pub fn expect_tagged(&mut self, prefix: &str) -> String {
        let tag = prefix.split(' ').next().unwrap_or(prefix);
        loop {
            let l = self.line();
            if l.split(' ').next() == Some(tag) {
                assert!(l.starts_with(prefix), "expected {prefix:?}, got {l:?}");
                return l;
            }
        }
    }

    /// Sends an IMAP `command` with `tag`; returns every line up to and
    /// including the tagged reply.
    pub fn imap(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send_line(&format!("{tag} {command}"));
        self.until_tagged(tag)
    }

    /// Every line up to and including the IMAP reply tagged `tag`.
    pub fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        self.until_prefix(&format!("{tag} "))
    }

    /// Every line up to and including the first that starts with `prefix`
    /// (for untagged responses a server sends unasked, too).
    pub fn until_prefix(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            let done = l.starts_with(prefix);
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    /// Reads raw bytes up to and including `terminator`.
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = self
                .buf
                .windows(terminator.len())
                .position(|w| w == terminator)
            {
                return self.buf.drain(..i + terminator.len()).collect();
            }
            if self.fill() == 0 {
                panic!(
                    "closed before {:?}; unread: {:?}",
                    String::from_utf8_lossy(terminator),
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads a POP3 multi-line body after its status line: lines up to ".",
    /// un-stuffed, each without CRLF.
    pub fn dot_lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l == "." {
                return out;
            }
            out.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
        }
    }

    /// True when the server has closed the connection (reads EOF).
    pub fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }
}
