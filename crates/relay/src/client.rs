//! Our SMTP client — RFC 5321 from the sending side, with STARTTLS (RFC 3207),
//! AUTH PLAIN (RFC 4954, RFC 4616), SIZE (RFC 1870), 8BITMIME (RFC 6152),
//! SMTPUTF8 (RFC 6531) and DSN parameters (RFC 3461).
//!
//! One [`SmtpClient`] is one connection: [`SmtpClient::connect`] runs greeting,
//! EHLO (HELO when EHLO is refused), STARTTLS and AUTH; [`SmtpClient::send`] runs one
//! mail transaction and answers an outcome per recipient; [`SmtpClient::quit`] ends.
//! Every read and write is bounded by the command timeout, every reply line by
//! [`MAX_REPLY_LINE`]. Commands are sent one at a time (no PIPELINING).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use casella_directory::Secret;
use casella_net::ClientStream;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::reply::{MAX_REPLY_LINE, Reply, ReplyParser};

/// How the client uses TLS on one connection.
#[derive(Clone)]
pub enum ClientTls {
    /// Cleartext only, STARTTLS is not tried (the retry after an opportunistic
    /// handshake failed).
    Off,
    /// STARTTLS when the server offers it; cleartext otherwise.
    Opportunistic(Arc<ClientConfig>),
    /// STARTTLS must be offered and succeed.
    Required(Arc<ClientConfig>),
    /// TLS from the first byte (RFC 8314 §3.3).
    Implicit(Arc<ClientConfig>),
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientTls::Off => "Off",
            ClientTls::Opportunistic(_) => "Opportunistic",
            ClientTls::Required(_) => "Required",
            ClientTls::Implicit(_) => "Implicit",
        })
    }
}

/// What one connection needs to know.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Our name in EHLO/HELO.
    pub helo_name: String,
    pub tls: ClientTls,
    /// AUTH PLAIN credentials; sent only once TLS is up.
    pub auth: Option<(String, Secret<String>)>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// What the server announced in its EHLO reply — RFC 5321 §4.1.1.1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// EHLO was accepted (false after a HELO fallback: no extensions).
    pub esmtp: bool,
    pub starttls: bool,
    /// SIZE (RFC 1870 §4): `Some(0)` when announced without a limit.
    pub size: Option<u64>,
    pub dsn: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub pipelining: bool,
    pub chunking: bool,
    /// AUTH mechanisms, upper-case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads an EHLO reply: the first line is the server's name, each further line
    /// one keyword with its parameters.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "DSN" => caps.dsn = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "AUTH" => caps.auth.extend(
                    words
                        .map(|m| m.to_ascii_uppercase())
                        .filter(|m| !m.is_empty()),
                ),
                _ => {}
            }
        }
        caps
    }
}

/// Why a connection could not be used. Only a 5xx reply is permanent; everything
/// else (network, timeouts, TLS, our own policy, authentication) is worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("lost connection {stage}: {source}")]
    Io {
        stage: &'static str,
        source: io::Error,
    },
    #[error("protocol error {stage}: {detail}")]
    Protocol { stage: &'static str, detail: String },
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// Our own rule stopped the session (TLS required but not offered, …).
    #[error("{0}")]
    Policy(String),
    /// The server refused the greeting or EHLO/HELO.
    #[error("{stage} refused: {reply}")]
    Rejected { stage: &'static str, reply: Reply },
    /// The server refused our credentials (deferred, as Postfix's soft bounce).
    #[error("authentication failed: {0}")]
    Auth(Reply),
}

impl ClientError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, ClientError::Rejected { reply, .. } if reply.is_permanent())
    }
}

/// The envelope of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path, empty for a bounce.
    pub sender: String,
    pub recipients: Vec<EnvelopeRecipient>,
    /// RFC 3461 §4.4 ENVID, xtext as the submitter gave it.
    pub envid: Option<String>,
    /// RFC 3461 §4.3 RET: FULL or HDRS.
    pub ret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeRecipient {
    pub address: String,
    /// RFC 3461 §4.2 ORCPT, `type;xtext`, as given.
    pub orcpt: Option<String>,
    /// RFC 3461 §4.1 NOTIFY, as given.
    pub notify: Option<String>,
}

/// Where one recipient stands after a transaction. The text is the server's reply
/// in one line (`250 2.0.0 Ok`), or our own description of what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    Delivered(String),
    /// Try again later.
    Temporary(String),
    /// Bounce.
    Permanent(String),
}

impl RcptOutcome {
    /// By reply code: 2xx delivered, 5xx permanent, anything else temporary.
    pub fn from_reply(reply: &Reply) -> RcptOutcome {
        let text = reply.to_string();
        if reply.is_positive() {
            RcptOutcome::Delivered(text)
        } else if reply.is_permanent() {
            RcptOutcome::Permanent(text)
        } else {
            RcptOutcome::Temporary(text)
        }
    }

    pub fn text(&self) -> &str {
        match self {
            RcptOutcome::Delivered(t) | RcptOutcome::Temporary(t) | RcptOutcome::Permanent(t) => t,
        }
    }
}

/// One SMTP connection.
pub struct SmtpClient {
    conn: ClientStream,
    /// Bytes read but not consumed yet.
    buf: Vec<u8>,
    caps: Capabilities,
    timeout: Duration,
    /// The server's greeting, for logs.
    greeting: Reply,
    /// A command or reply failed (I/O, timeout, garbage) or the server said 421:
    /// the connection is not in a known state and must not be used again.
    broken: bool,
}

impl SmtpClient {
    /// Connects to `addr` (bounded by the connect timeout), reads the greeting, says
    /// EHLO, upgrades with STARTTLS as `options.tls` says and authenticates.
    /// `server_name` is the host's name for SNI and verification (or an IP).
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        options: &ClientOptions,
    ) -> Result<SmtpClient, ClientError> {
        let tcp = tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("connecting"))?
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let conn = match &options.tls {
            ClientTls::Implicit(config) => ClientStream::Tls(Box::new(
                handshake(tcp, config, server_name, options).await?,
            )),
            _ => ClientStream::Plain(tcp),
        };
        let mut client = SmtpClient {
            conn,
            buf: Vec::new(),
            caps: Capabilities::default(),
            timeout: options.command_timeout,
            greeting: Reply {
                code: 0,
                enhanced: None,
                lines: vec![],
            },
            broken: false,
        };
        // RFC 5321 §3.1: the session starts with a 220 greeting; 554 means no service.
        let greeting = client.read_reply("waiting for the greeting").await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected {
                stage: "greeting",
                reply: greeting,
            });
        }
        client.greeting = greeting;
        client.hello(&options.helo_name).await?;

        let starttls = match &options.tls {
            ClientTls::Opportunistic(c) => client.caps.starttls.then_some(c),
            ClientTls::Required(c) => {
                if !client.caps.starttls {
                    client.quit().await;
                    return Err(ClientError::Policy(
                        "TLS is required but the server does not offer STARTTLS".into(),
                    ));
                }
                Some(c)
            }
            ClientTls::Off | ClientTls::Implicit(_) => None,
        };
        if let Some(config) = starttls {
            client.command(b"STARTTLS\r\n", "sending STARTTLS").await?;
            let reply = client.read_reply("after STARTTLS").await?;
            if reply.code == 220 {
                client = client.upgrade(config, server_name, options).await?;
                // RFC 3207 §4.2: forget what was learned before TLS; ask again.
                client.hello(&options.helo_name).await?;
            } else if matches!(options.tls, ClientTls::Required(_)) {
                // Our policy, not the message's fault: defer, never bounce.
                client.quit().await;
                return Err(ClientError::Policy(format!(
                    "TLS is required but STARTTLS was refused: {reply}"
                )));
            } else {
                // RFC 3207 §4: 454 "TLS not available"; opportunistic goes on.
                tracing::debug!(%reply, "STARTTLS refused; continuing in cleartext");
            }
        }

        if let Some((user, password)) = &options.auth {
            client.authenticate(user, password).await?;
        }
        Ok(client)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// Whether another transaction may follow on this connection: every
    /// exchange so far completed and the server never said 421.
    pub fn is_reusable(&self) -> bool {
        !self.broken
    }

    /// RSET (RFC 5321 §4.1.1.5) before a connection that waited is used again: a
    /// 250 shows it is alive and out of any transaction.
    pub async fn reset(&mut self) -> bool {
        matches!(self.exchange("RSET\r\n", "after RSET").await, Ok(r) if r.code == 250)
    }

    /// Runs one mail transaction and answers an outcome per recipient, in the
    /// envelope's order. Never fails as a whole: a broken connection makes every
    /// undecided recipient temporary.
    pub async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Vec<RcptOutcome> {
        let n = envelope.recipients.len();
        let mut outcomes: Vec<Option<RcptOutcome>> = vec![None; n];
        let all = |o: RcptOutcome| vec![o; n];

        // Refuse what would let text smuggle a command into ours.
        if !is_path_safe(&envelope.sender) {
            return all(RcptOutcome::Permanent(
                "553 5.1.7 The sender address is malformed".into(),
            ));
        }
        let needs_utf8 = |s: &str| !s.is_ascii();
        // RFC 6531 §3.4: SMTPUTF8 for a message that needs it — UTF-8 in an
        // address or in the header fields (RFC 6532), whatever the addresses.
        let utf8 = needs_utf8(&envelope.sender)
            || envelope.recipients.iter().any(|r| needs_utf8(&r.address))
            || crate::seven_bit::has_8bit_header(message);
        if utf8 && !self.caps.smtputf8 && needs_utf8(&envelope.sender) {
            return all(RcptOutcome::Permanent(
                "553 5.6.7 The sender address needs SMTPUTF8, which the server does not offer"
                    .into(),
            ));
        }
        // RFC 6531 §3.4: a message whose header fields need SMTPUTF8 is not
        // sent to a server without it (RFC 6532 §3.5: no downgrade here); it
        // goes back to its sender with the RFC 6533 status.
        if !self.caps.smtputf8 && crate::seven_bit::has_8bit_header(message) {
            return all(RcptOutcome::Permanent(
                "553 5.6.7 The message has UTF-8 header fields, which need SMTPUTF8, and the server does not offer it"
                    .into(),
            ));
        }
        if let Some(limit) = self.caps.size
            && limit > 0
            && message.len() as u64 > limit
        {
            return all(RcptOutcome::Permanent(format!(
                "552 5.3.4 Message size exceeds fixed limit of the server ({limit} bytes)"
            )));
        }

        // RFC 5321 §4.1.1.2 MAIL, with the parameters the server understands.
        let mut mail = format!("MAIL FROM:<{}>", envelope.sender);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if self.caps.eight_bit_mime && message.iter().any(|&b| b >= 0x80) {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 && self.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            if let Some(ret) = envelope.ret.as_deref().filter(|v| is_param_safe(v)) {
                mail.push_str(&format!(" RET={ret}"));
            }
            if let Some(envid) = envelope.envid.as_deref().filter(|v| is_param_safe(v)) {
                mail.push_str(&format!(" ENVID={envid}"));
            }
        }
        mail.push_str("\r\n");
        let reply = match self.exchange(&mail, "after MAIL FROM").await {
            Ok(r) => r,
            Err(e) => return all(RcptOutcome::Temporary(e.to_string())),
        };
        if !reply.is_positive() {
            return all(RcptOutcome::from_reply(&reply));
        }

        // RFC 5321 §4.1.1.3 RCPT, one per recipient.
        let mut accepted = Vec::new();
        for (i, rcpt) in envelope.recipients.iter().enumerate() {
            if !is_path_safe(&rcpt.address) || rcpt.address.is_empty() {
                outcomes[i] = Some(RcptOutcome::Permanent(
                    "553 5.1.3 The recipient address is malformed".into(),
                ));
                continue;
            }
            if needs_utf8(&rcpt.address) && !self.caps.smtputf8 {
                outcomes[i] = Some(RcptOutcome::Permanent(
                    "553 5.6.7 The recipient address needs SMTPUTF8, which the server does not offer"
                        .into(),
                ));
                continue;
            }
            let mut line = format!("RCPT TO:<{}>", rcpt.address);
            if self.caps.dsn {
                if let Some(notify) = rcpt.notify.as_deref().filter(|v| is_param_safe(v)) {
                    line.push_str(&format!(" NOTIFY={notify}"));
                }
                if let Some(orcpt) = rcpt.orcpt.as_deref().filter(|v| is_param_safe(v)) {
                    line.push_str(&format!(" ORCPT={orcpt}"));
                }
            }
            line.push_str("\r\n");
            match self.exchange(&line, "after RCPT TO").await {
                Ok(reply) if reply.is_positive() => accepted.push(i),
                Ok(reply) => outcomes[i] = Some(RcptOutcome::from_reply(&reply)),
                Err(e) => return finish(outcomes, RcptOutcome::Temporary(e.to_string())),
            }
        }
        if accepted.is_empty() {
            // RFC 5321 §4.1.1.5: end the transaction before the next.
            let _ = self.exchange("RSET\r\n", "after RSET").await;
            return finish(
                outcomes,
                RcptOutcome::Temporary("no recipient accepted".into()),
            );
        }

        // RFC 5321 §4.1.1.4 DATA: 354, the dot-stuffed text, "." and the final reply.
        let final_outcome = match self.data(message).await {
            Ok(reply) => RcptOutcome::from_reply(&reply),
            Err(e) => RcptOutcome::Temporary(e.to_string()),
        };
        for i in accepted {
            outcomes[i] = Some(final_outcome.clone());
        }
        finish(outcomes, final_outcome)
    }

    /// QUIT (RFC 5321 §4.1.1.10), then closes; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            if self.command(b"QUIT\r\n", "sending QUIT").await.is_ok() {
                let _ = self.read_reply("after QUIT").await;
            }
            let _ = self.conn.shutdown().await;
        })
        .await;
    }

    async fn data(&mut self, message: &[u8]) -> Result<Reply, ClientError> {
        let reply = self.exchange("DATA\r\n", "after DATA").await?;
        if reply.code != 354 {
            return Ok(reply);
        }
        let stuffed = dot_stuff(message);
        self.command(&stuffed, "sending the message").await?;
        self.read_reply("after the message").await
    }

    /// EHLO, or HELO when EHLO is refused as unknown (RFC 5321 §3.2).
    async fn hello(&mut self, name: &str) -> Result<(), ClientError> {
        let reply = self
            .exchange(&format!("EHLO {name}\r\n"), "after EHLO")
            .await?;
        if reply.is_positive() {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if !reply.is_permanent() {
            return Err(ClientError::Rejected {
                stage: "EHLO",
                reply,
            });
        }
        let reply = self
            .exchange(&format!("HELO {name}\r\n"), "after HELO")
            .await?;
        if !reply.is_positive() {
            return Err(ClientError::Rejected {
                stage: "HELO",
                reply,
            });
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    /// AUTH PLAIN — RFC 4954 §4 with the initial response, RFC 4616 message.
    async fn authenticate(
        &mut self,
        user: &str,
        password: &Secret<String>,
    ) -> Result<(), ClientError> {
        if !self.is_tls() {
            return Err(ClientError::Policy(
                "refusing to send credentials without TLS".into(),
            ));
        }
        if !self.caps.auth.iter().any(|m| m == "PLAIN") {
            return Err(ClientError::Policy(format!(
                "the server offers no AUTH PLAIN (offers: {})",
                self.caps.auth.join(" ")
            )));
        }
        let mut plain = Vec::with_capacity(user.len() + password.expose().len() + 2);
        plain.push(0);
        plain.extend_from_slice(user.as_bytes());
        plain.push(0);
        plain.extend_from_slice(password.expose().as_bytes());
        let line = format!(
            "AUTH PLAIN {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(&plain)
        );
        let reply = self.exchange(&line, "after AUTH").await?;
        if reply.code == 235 {
            Ok(())
        } else {
            Err(ClientError::Auth(reply))
        }
    }

    async fn upgrade(
        self,
        config: &Arc<ClientConfig>,
        server_name: &str,
        options: &ClientOptions,
    ) -> Result<SmtpClient, ClientError> {
        // RFC 3207 §5 (and CVE-2011-0411's lesson): nothing may follow the 220 in
        // cleartext; such bytes would be taken as if they came over TLS.
        if !self.buf.is_empty() {
            return Err(ClientError::Protocol {
                stage: "after STARTTLS",
                detail: "the server sent data before the TLS handshake".into(),
            });
        }
        let ClientStream::Plain(tcp) = self.conn else {
            return Err(ClientError::Policy("TLS is already active".into()));
        };
        let tls = handshake(tcp, config, server_name, options).await?;
        Ok(SmtpClient {
            conn: ClientStream::Tls(Box::new(tls)),
            buf: Vec::new(),
            caps: Capabilities::default(),
            ..self
        })
    }

    async fn exchange(&mut self, line: &str, stage: &'static str) -> Result<Reply, ClientError> {
        self.command(line.as_bytes(), stage).await?;
        self.read_reply(stage).await
    }

    async fn command(&mut self, bytes: &[u8], stage: &'static str) -> Result<(), ClientError> {
        let write = async {
            self.conn.write_all(bytes).await?;
            self.conn.flush().await
        };
        let r = tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| ClientError::Timeout(stage))
            .and_then(|r| r.map_err(|source| ClientError::Io { stage, source }));
        self.broken |= r.is_err();
        r
    }

    async fn read_reply(&mut self, stage: &'static str) -> Result<Reply, ClientError> {
        let r = self.read_reply_inner(stage).await;
        // RFC 5321 §3.8: 421 — the server is closing the connection.
        self.broken |= r.as_ref().map_or(true, |r| r.code == 421);
        r
    }

    async fn read_reply_inner(&mut self, stage: &'static str) -> Result<Reply, ClientError> {
        let mut parser = ReplyParser::new();
        loop {
            let line = self.read_line(stage).await?;
            match parser.push(&line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::Protocol {
                        stage,
                        detail: e.to_string(),
                    });
                }
            }
        }
    }

    /// One line up to LF, at most [`MAX_REPLY_LINE`] bytes.
    async fn read_line(&mut self, stage: &'static str) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(pos + 1);
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            if self.buf.len() >= MAX_REPLY_LINE {
                return Err(ClientError::Protocol {
                    stage,
                    detail: format!("reply line longer than {MAX_REPLY_LINE} bytes"),
                });
            }
            let mut chunk = [0u8; 4096];
            let read = self.conn.read(&mut chunk);
            let n = tokio::time::timeout(self.timeout, read)
                .await
                .map_err(|_| ClientError::Timeout(stage))?
                .map_err(|source| ClientError::Io { stage, source })?;
            if n == 0 {
                return Err(ClientError::Io {
                    stage,
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

async fn handshake(
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
    server_name: &str,
    options: &ClientOptions,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let name = crate::tls::server_name(server_name).map_err(ClientError::Tls)?;
    let connector = TlsConnector::from(config.clone());
    tokio::time::timeout(options.command_timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| ClientError::Timeout("in the TLS handshake"))?
        .map_err(|e| ClientError::Tls(e.to_string()))
}

/// Fills the undecided outcomes with `rest`.
fn finish(outcomes: Vec<Option<RcptOutcome>>, rest: RcptOutcome) -> Vec<RcptOutcome> {
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| rest.clone()))
        .collect()
}

/// A path may not carry what ends or splits a command line.
fn is_path_safe(s: &str) -> bool {
    !s.bytes()
        .any(|b| matches!(b, b'\r' | b'\n' | 0 | b'<' | b'>'))
        && !s.contains(' ')
        || s.starts_with('"') && !s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// An ESMTP parameter value: no spaces, controls or '=' (RFC 5321 §4.1.2 esmtp-value).
fn is_param_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b) && b != b'=')
}

/// The message as DATA sends it — RFC 5321 §4.5.2: CRLF line ends, a '.' doubled at
/// the start of every line, and the final "CRLF.CRLF".
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !message.is_empty() && !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyParser;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A one-connection server: writes the greeting, then answers each line it
    /// reads with the next reply; returns the lines it read.
    async fn scripted(
        greeting: Vec<u8>,
        replies: Vec<&'static str>,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut io = BufReader::new(tcp);
            let mut seen = Vec::new();
            if !greeting.is_empty() {
                io.get_mut().write_all(&greeting).await.unwrap();
            }
            for reply in replies {
                let mut line = String::new();
                if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                seen.push(line.trim_end().to_string());
                io.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
            // Hold the connection until the client is done.
            let mut rest = String::new();
            while io.read_line(&mut rest).await.unwrap_or(0) > 0 {
                seen.push(rest.trim_end().to_string());
                rest.clear();
            }
            seen
        });
        (addr, task)
    }

    fn options(timeout_ms: u64) -> ClientOptions {
        ClientOptions {
            helo_name: "client.test".into(),
            tls: ClientTls::Off,
            auth: None,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn helo_when_ehlo_is_unknown_and_multi_line_greeting() {
        let (addr, server) = scripted(
            b"220-first line\r\n220 second line\r\n".to_vec(),
            vec!["502 5.5.2 What?\r\n", "250 hi\r\n", "221 bye\r\n"],
        )
        .await;
        let client = SmtpClient::connect(addr, "127.0.0.1", &options(2000))
            .await
            .unwrap();
        assert!(!client.capabilities().esmtp);
        assert_eq!(client.greeting().lines, ["first line", "second line"]);
        client.quit().await;
        assert_eq!(
            server.await.unwrap(),
            ["EHLO client.test", "HELO client.test", "QUIT"]
        );
    }

    #[tokio::test]
    async fn refusals_timeouts_and_overlong_lines() {
        let (addr, _server) = scripted(b"554 5.7.1 No service for you\r\n".to_vec(), vec![]).await;
        let e = SmtpClient::connect(addr, "127.0.0.1", &options(2000))
            .await
            .err()
            .unwrap();
        assert!(e.is_permanent(), "{e}");

        let (addr, _server) = scripted(Vec::new(), vec![]).await;
        let e = SmtpClient::connect(addr, "127.0.0.1", &options(200))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ClientError::Timeout(_)), "{e}");
        assert!(!e.is_permanent());

        let mut long = b"220 ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_REPLY_LINE + 10));
        long.extend_from_slice(b"\r\n");
        let (addr, _server) = scripted(long, vec![]).await;
        let e = SmtpClient::connect(addr, "127.0.0.1", &options(2000))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ClientError::Protocol { .. }), "{e}");

        let (addr, _server) =
            scripted(b"220 ok\r\n".to_vec(), vec!["250 hi\r\n", "221 bye\r\n"]).await;
        let mut o = options(2000);
        o.tls = ClientTls::Required(crate::tls::opportunistic_config());
        let e = SmtpClient::connect(addr, "127.0.0.1", &o)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ClientError::Policy(_)), "{e}");
    }

    #[tokio::test]
    async fn too_big_for_the_server_is_permanent_without_a_transaction() {
        let (addr, server) = scripted(
            b"220 ok\r\n".to_vec(),
            vec!["250-hi\r\n250 SIZE 10\r\n", "221 bye\r\n"],
        )
        .await;
        let mut client = SmtpClient::connect(addr, "127.0.0.1", &options(2000))
            .await
            .unwrap();
        let envelope = Envelope {
            sender: "a@b.example".into(),
            recipients: vec![EnvelopeRecipient {
                address: "c@d.example".into(),
                orcpt: None,
                notify: None,
            }],
            envid: None,
            ret: None,
        };
        let out = client
            .send(&envelope, b"Subject: x\r\n\r\nmore than ten bytes\r\n")
            .await;
        assert!(matches!(&out[..], [RcptOutcome::Permanent(t)] if t.starts_with("552 5.3.4")));
        client.quit().await;
        assert_eq!(server.await.unwrap(), ["EHLO client.test", "QUIT"]);
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(
            dot_stuff(b".start\nbare lf\n"),
            b"..start\r\nbare lf\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"no end"), b"no end\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"x\r\n.\r\n"), b"x\r\n..\r\n.\r\n");
    }

    #[test]
    fn capabilities_from_ehlo() {
        let mut p = ReplyParser::new();
        for l in [
            "250-mx.example.org Hello\r\n",
            "250-SIZE 35882577\r\n",
            "250-8BITMIME\r\n",
            "250-STARTTLS\r\n",
            "250-AUTH LOGIN plain\r\n",
            "250-ENHANCEDSTATUSCODES\r\n",
            "250-DSN\r\n",
        ] {
            assert_eq!(p.push(l.as_bytes()), Ok(None));
        }
        let r = p.push(b"250 SMTPUTF8\r\n").unwrap().unwrap();
        let c = Capabilities::from_ehlo(&r);
        assert_eq!(
            c,
            Capabilities {
                esmtp: true,
                starttls: true,
                size: Some(35_882_577),
                dsn: true,
                eight_bit_mime: true,
                smtputf8: true,
                pipelining: false,
                chunking: false,
                auth: vec!["LOGIN".into(), "PLAIN".into()],
            }
        );
        let mut p = ReplyParser::new();
        p.push(b"250-x\r\n").unwrap();
        let r = p.push(b"250 SIZE\r\n").unwrap().unwrap();
        assert_eq!(Capabilities::from_ehlo(&r).size, Some(0));
    }

    #[test]
    fn unsafe_paths_and_params() {
        assert!(is_path_safe("a@b.example"));
        assert!(is_path_safe(""));
        assert!(is_path_safe("\"a b\"@c.example"));
        assert!(!is_path_safe("a@b\r\nRCPT TO:<x@y>"));
        assert!(!is_path_safe("a b@c"));
        assert!(!is_path_safe("a>@b"));
        assert!(is_param_safe("rfc822;a+2Bb@c.example"));
        assert!(!is_param_safe("FULL\r\nDATA"));
        assert!(!is_param_safe("a b"));
        assert!(!is_param_safe(""));
    }

    #[test]
    fn outcomes_by_code() {
        let r = |s: &str| crate::reply::parse_one_line(s).unwrap();
        assert!(matches!(
            RcptOutcome::from_reply(&r("250 ok")),
            RcptOutcome::Delivered(_)
        ));
        assert!(matches!(
            RcptOutcome::from_reply(&r("452 4.5.3 too many")),
            RcptOutcome::Temporary(_)
        ));
        assert!(matches!(
            RcptOutcome::from_reply(&r("550 5.1.1 no")),
            RcptOutcome::Permanent(_)
        ));
        assert!(matches!(
            RcptOutcome::from_reply(&r("354 go")),
            RcptOutcome::Temporary(_)
        ));
    }
}
