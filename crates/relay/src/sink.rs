//! A scripted SMTP server for the tests: listens on 127.0.0.1:0, answers as told,
//! and records every command line and every message (dot-unstuffed).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use casella_net::Stream;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub(crate) struct SinkConfig {
    /// EHLO extension lines after the greeting line, e.g. "SIZE 10000".
    pub extensions: Vec<String>,
    /// Offered as STARTTLS (not listed in `extensions` once TLS is up).
    pub starttls: Option<TlsAcceptor>,
    /// TLS from the first byte instead (port 465 style).
    pub implicit: Option<TlsAcceptor>,
    /// Say 220 to STARTTLS, then hang up instead of a handshake.
    pub broken_starttls: bool,
    /// `(user, password)` accepted by AUTH PLAIN, offered only over TLS.
    pub auth: Option<(String, String)>,
    /// The reply to RCPT TO for an address.
    pub rcpt: fn(&str) -> String,
    pub data_reply: String,
    /// Greet with this (e.g. "554 5.7.1 no service") and hang up.
    pub refuse: Option<String>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            extensions: vec!["SIZE 10000000".into(), "8BITMIME".into(), "DSN".into()],
            starttls: None,
            implicit: None,
            broken_starttls: false,
            auth: None,
            rcpt: |_| "250 2.1.5 Ok".into(),
            data_reply: "250 2.0.0 Ok: queued as SINK1".into(),
            refuse: None,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Received {
    pub commands: Vec<String>,
    /// Each message with whether it came over TLS.
    pub messages: Vec<(Vec<u8>, bool)>,
}

pub(crate) struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Received>>,
}

impl Sink {
    pub fn commands(&self) -> Vec<String> {
        self.received.lock().unwrap().commands.clone()
    }
    pub fn messages(&self) -> Vec<(Vec<u8>, bool)> {
        self.received.lock().unwrap().messages.clone()
    }
}

pub(crate) async fn start(config: SinkConfig) -> Sink {
    start_on("127.0.0.1:0".parse().unwrap(), config).await
}

/// As [`start`], on `addr` (e.g. another loopback address, the port of a sink
/// already running there).
pub(crate) async fn start_on(addr: SocketAddr, config: SinkConfig) -> Sink {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Received::default()));
    let config = Arc::new(config);
    let rec = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = config.clone();
            let rec = rec.clone();
            tokio::spawn(async move {
                let stream = match &config.implicit {
                    Some(acceptor) => match Stream::Plain(tcp).into_tls(acceptor).await {
                        Ok(s) => s,
                        Err(_) => return,
                    },
                    None => Stream::Plain(tcp),
                };
                let _ = session(stream, &config, &rec).await;
            });
        }
    });
    Sink { addr, received }
}

async fn session(
    stream: Stream,
    config: &SinkConfig,
    rec: &Mutex<Received>,
) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    if let Some(refusal) = &config.refuse {
        rec.lock()
            .unwrap()
            .commands
            .push(format!("(refused: {refusal})"));
        io.get_mut()
            .write_all(format!("{refusal}\r\n").as_bytes())
            .await?;
        return Ok(());
    }
    io.get_mut().write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        rec.lock().unwrap().commands.push(cmd.clone());
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let tls = io.get_ref().is_tls();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut ext = config.extensions.clone();
                if (config.starttls.is_some() || config.broken_starttls) && !tls {
                    ext.push("STARTTLS".into());
                }
                if config.auth.is_some() && tls {
                    ext.push("AUTH LOGIN PLAIN".into());
                }
                let mut r = String::from("250-sink.test");
                for e in ext {
                    r.push_str("\r\n250-");
                    r.push_str(&e);
                }
                // The last line must use a space: rewrite the final "250-".
                let last = r.rfind("250-").unwrap();
                r.replace_range(last..last + 4, "250 ");
                r
            }
            "STARTTLS" => {
                io.get_mut()
                    .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                    .await?;
                if config.broken_starttls {
                    return Ok(());
                }
                let acceptor = config.starttls.clone().unwrap();
                let plain = io.into_inner();
                io = BufReader::new(plain.into_tls(&acceptor).await?);
                continue;
            }
            "AUTH" => {
                let (user, pass) = config.auth.clone().unwrap();
                let want =
                    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
                if cmd == format!("AUTH PLAIN {want}") {
                    "235 2.7.0 Authentication successful".into()
                } else {
                    "535 5.7.8 Authentication credentials invalid".into()
                }
            }
            "MAIL" => "250 2.1.0 Ok".into(),
            "RCPT" => {
                let addr = cmd
                    .split_once('<')
                    .and_then(|(_, r)| r.split_once('>'))
                    .map(|(a, _)| a)
                    .unwrap_or("");
                (config.rcpt)(addr)
            }
            "DATA" => {
                io.get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut message = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if io.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: drop the first of a leading dot.
                    let l = if l.starts_with(b".") { &l[1..] } else { &l[..] };
                    message.extend_from_slice(l);
                }
                rec.lock().unwrap().messages.push((message, tls));
                config.data_reply.clone()
            }
            "RSET" | "NOOP" => "250 2.0.0 Ok".into(),
            "QUIT" => {
                io.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Error: command not recognized".into(),
        };
        io.get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await?;
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost: the acceptor, and the
/// certificate PEM (for a client's `ca_file`).
pub(crate) fn tls_acceptor() -> (TlsAcceptor, String) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let pem = certified.cert.pem();
    let chain = vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()];
    let key =
        PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    (TlsAcceptor::from(Arc::new(config)), pem)
}

/// A DNS server on 127.0.0.1 (UDP) for the real resolver to ask: MX records as
/// `(domain, preference, exchange)` ("." for a null MX) and A records as
/// `(host, address)`. A name in neither is NXDOMAIN; a known name without
/// records of the asked type answers NOERROR with none. Answers until the
/// runtime ends; counts the questions.
pub(crate) async fn dns(
    mx: Vec<(&'static str, u16, &'static str)>,
    a: Vec<(&'static str, std::net::Ipv4Addr)>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, MX};
    use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(question) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(question.metadata.id, OpCode::Query);
            answer.metadata.authoritative = true;
            answer.metadata.recursion_desired = question.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            for q in &question.queries {
                answer.add_query(q.clone());
                let name = q
                    .name()
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                log.lock()
                    .unwrap()
                    .push(format!("{} {name}", q.query_type()));
                let known = mx.iter().any(|m| m.0 == name) || a.iter().any(|r| r.0 == name);
                if !known {
                    answer.metadata.response_code = ResponseCode::NXDomain;
                    continue;
                }
                match q.query_type() {
                    RecordType::MX => {
                        for &(_, preference, exchange) in mx.iter().filter(|m| m.0 == name) {
                            let exchange = if exchange == "." {
                                Name::root()
                            } else {
                                Name::from_ascii(format!("{exchange}.")).unwrap()
                            };
                            answer.add_answer(Record::from_rdata(
                                q.name().clone(),
                                60,
                                RData::MX(MX::new(preference, exchange)),
                            ));
                        }
                    }
                    RecordType::A => {
                        for &(_, ip) in a.iter().filter(|r| r.0 == name) {
                            answer.add_answer(Record::from_rdata(
                                q.name().clone(),
                                60,
                                RData::A(A(ip)),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    (addr, asked)
}
