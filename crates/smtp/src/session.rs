//! One SMTP or LMTP session — RFC 5321 §4.1.4 command order, RFC 2033 §4.2 replies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use casella_directory::Directory;
use casella_net::{ConnectionInfo, NextLine, ShutdownSignal, Stream, next_line};
use casella_store::{Account, StoreError, now_unix};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;

use crate::command::{self, Command};
use crate::data::{DataOutcome, read_data};
use crate::{Mode, SmtpConfig, rfc5322_date};

type Reader = BufReader<Stream>;

pub(crate) struct Session {
    mode: Mode,
    config: Arc<SmtpConfig>,
    directory: Arc<Directory>,
    tls: Option<TlsAcceptor>,
    info: ConnectionInfo,
    signal: ShutdownSignal,
    out: Vec<u8>,
    tls_active: bool,
    /// The EHLO/HELO/LHLO name; `None` until the client greeted.
    helo: Option<String>,
    esmtp: bool,
    envelope: Option<Envelope>,
}

/// The transaction being built by MAIL and RCPT.
struct Envelope {
    from: String,
    recipients: Vec<Recipient>,
}

struct Recipient {
    address: String,
    account: Account,
}

enum Next {
    Continue,
    Close,
    StartTls,
}

fn queue_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:x}{:04x}{:04x}",
        now_unix(),
        std::process::id() & 0xffff,
        n & 0xffff
    )
}

impl Session {
    pub(crate) fn new(
        mode: Mode,
        config: Arc<SmtpConfig>,
        directory: Arc<Directory>,
        tls: Option<TlsAcceptor>,
        info: ConnectionInfo,
        signal: ShutdownSignal,
    ) -> Session {
        Session {
            mode,
            config,
            directory,
            tls,
            info,
            signal,
            out: Vec::with_capacity(256),
            tls_active: false,
            helo: None,
            esmtp: false,
            envelope: None,
        }
    }

    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self, reader: &mut Reader) -> std::io::Result<()> {
        if !self.out.is_empty() {
            reader.get_mut().write_all(&self.out).await?;
            self.out.clear();
        }
        reader.get_mut().flush().await
    }

    fn protocol_name(&self) -> &'static str {
        match self.mode {
            Mode::Lmtp => "LMTP",
            Mode::Smtp => "SMTP",
        }
    }

    pub(crate) async fn run(mut self, stream: Stream) {
        self.tls_active = stream.is_tls();
        let mut reader = BufReader::with_capacity(8192, stream);
        let hostname = self.config.hostname.clone();
        let banner = match self.mode {
            Mode::Smtp => format!("220 {hostname} ESMTP casella ready"),
            Mode::Lmtp => format!("220 {hostname} LMTP casella ready"),
        };
        self.reply(&banner);
        let mut line = Vec::with_capacity(256);
        loop {
            if reader.buffer().is_empty() && self.flush(&mut reader).await.is_err() {
                return;
            }
            let mut signal = self.signal.clone();
            let max = self.config.max_command_size;
            let read = next_line(
                &mut reader,
                &mut line,
                max,
                self.config.timeout,
                &mut signal,
            )
            .await;
            let next = match read {
                NextLine::Shutdown => {
                    self.reply("421 4.3.2 Server shutting down, try again later");
                    let _ = self.flush(&mut reader).await;
                    return;
                }
                NextLine::Idle => {
                    self.reply("421 4.4.2 Timeout exceeded, closing connection");
                    let _ = self.flush(&mut reader).await;
                    return;
                }
                NextLine::Closed => return,
                NextLine::TooLong => {
                    self.reply("500 5.5.2 Line too long");
                    Next::Continue
                }
                NextLine::Line => match command::parse(&line) {
                    Err(e) => {
                        self.reply(&e.to_string());
                        Next::Continue
                    }
                    Ok(cmd) => self.dispatch(cmd, &mut reader).await,
                },
            };
            match next {
                Next::Continue => {}
                Next::Close => {
                    let _ = self.flush(&mut reader).await;
                    let _ = reader.get_mut().shutdown().await;
                    return;
                }
                Next::StartTls => {
                    if self.flush(&mut reader).await.is_err() {
                        return;
                    }
                    let Some(acceptor) = self.tls.clone() else {
                        return;
                    };
                    // RFC 3207 §4.2: anything pipelined after STARTTLS is discarded,
                    // and the session starts over.
                    let stream = reader.into_inner();
                    match tokio::time::timeout(self.config.timeout, stream.into_tls(&acceptor))
                        .await
                    {
                        Ok(Ok(s)) => {
                            reader = BufReader::with_capacity(8192, s);
                            self.tls_active = true;
                            self.helo = None;
                            self.esmtp = false;
                            self.envelope = None;
                        }
                        _ => return,
                    }
                }
            }
        }
    }

    async fn dispatch(&mut self, cmd: Command, reader: &mut Reader) -> Next {
        match cmd {
            Command::Ehlo(d) | Command::Helo(d) if self.mode == Mode::Lmtp => {
                let _ = d;
                self.reply("500 5.5.1 This is an LMTP server: use LHLO");
            }
            Command::Lhlo(_) if self.mode == Mode::Smtp => {
                self.reply("500 5.5.1 This is an SMTP server: use EHLO");
            }
            Command::Ehlo(domain) | Command::Lhlo(domain) => {
                self.helo = Some(domain.clone());
                self.esmtp = true;
                self.envelope = None;
                let hostname = self.config.hostname.clone();
                let mut lines = vec![format!("{hostname} Hello {domain}")];
                lines.push(format!("SIZE {}", self.config.max_message_size));
                lines.push("8BITMIME".into());
                lines.push("PIPELINING".into());
                lines.push("ENHANCEDSTATUSCODES".into());
                lines.push("SMTPUTF8".into());
                if !self.tls_active && self.tls.is_some() {
                    lines.push("STARTTLS".into());
                }
                let last = lines.len() - 1;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    self.out
                        .extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
                }
            }
            Command::Helo(domain) => {
                self.helo = Some(domain);
                self.esmtp = false;
                self.envelope = None;
                let hostname = self.config.hostname.clone();
                self.reply(&format!("250 {hostname}"));
            }
            Command::StartTls => {
                if self.tls_active {
                    self.reply("503 5.5.1 TLS is already active");
                } else if self.tls.is_none() {
                    self.reply("454 4.7.0 TLS not available");
                } else {
                    self.reply("220 2.0.0 Ready to start TLS");
                    return Next::StartTls;
                }
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params).await,
            Command::Data => return self.data(reader).await,
            Command::Rset => {
                self.envelope = None;
                self.reply("250 2.0.0 Ok");
            }
            Command::Noop => self.reply("250 2.0.0 Ok"),
            Command::Quit => {
                self.reply("221 2.0.0 Bye");
                return Next::Close;
            }
            Command::Vrfy => self.reply("502 5.5.1 VRFY command is disabled"),
            Command::Expn => self.reply("502 5.5.1 EXPN command is disabled"),
            Command::Help => self.reply("214 2.0.0 See RFC 5321"),
        }
        Next::Continue
    }

    fn mail(&mut self, from: String, params: crate::command::Params) {
        if self.helo.is_none() {
            let greet = if self.mode == Mode::Lmtp {
                "LHLO"
            } else {
                "EHLO/HELO"
            };
            self.reply(&format!("503 5.5.1 Send {greet} first"));
            return;
        }
        if self.envelope.is_some() {
            self.reply("503 5.5.1 Nested MAIL command");
            return;
        }
        for (name, value) in &params {
            match (name.as_str(), value.as_deref()) {
                // RFC 1870 §6: a declared size over the limit is refused at once.
                ("SIZE", Some(v)) => match v.parse::<u64>() {
                    Ok(n) if n > self.config.max_message_size as u64 => {
                        self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.reply("501 5.5.4 Invalid SIZE parameter");
                        return;
                    }
                },
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("8BITMIME") || v.eq_ignore_ascii_case("7BIT") => {}
                ("SMTPUTF8", None) => {}
                _ if !self.esmtp => {
                    self.reply("555 5.5.4 Parameters need EHLO");
                    return;
                }
                _ => {
                    self.reply(&format!("555 5.5.4 Unsupported parameter {name}"));
                    return;
                }
            }
        }
        if !from.is_empty() && !from.contains('@') {
            self.reply("553 5.1.7 The sender address must be a full address or <>");
            return;
        }
        self.envelope = Some(Envelope {
            from,
            recipients: Vec::new(),
        });
        self.reply("250 2.1.0 Sender OK");
    }

    async fn rcpt(&mut self, to: String, params: crate::command::Params) {
        let Some(envelope) = self.envelope.as_ref() else {
            self.reply("503 5.5.1 Send MAIL first");
            return;
        };
        if let Some((name, _)) = params.first() {
            self.reply(&format!("555 5.5.4 Unsupported parameter {name}"));
            return;
        }
        if envelope.recipients.len() >= self.config.max_recipients {
            self.reply("452 4.5.3 Too many recipients");
            return;
        }
        match self.resolve(&to).await {
            Ok(Some(account)) => {
                if let Some(e) = self.envelope.as_mut() {
                    e.recipients.push(Recipient {
                        address: to,
                        account,
                    });
                }
                self.reply("250 2.1.5 Recipient OK");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                self.reply("451 4.3.0 Temporary lookup failure, try again later");
            }
        }
    }

    /// Finds the local account for a recipient, or replies with the refusal.
    async fn resolve(&mut self, to: &str) -> Result<Option<Account>, StoreError> {
        // RFC 5321 §4.5.1: "postmaster" without a domain must be accepted when a
        // postmaster exists; we look for one in our local domains.
        let (local, domain) = match to.rsplit_once('@') {
            Some((l, d)) => (l.to_string(), d.to_ascii_lowercase()),
            None if to.eq_ignore_ascii_case("postmaster") => {
                for a in self.directory.store().list_accounts().await? {
                    if a.address.starts_with("postmaster@") {
                        return Ok(Some(a));
                    }
                }
                self.reply("550 5.1.1 <postmaster>: Recipient address rejected: User unknown");
                return Ok(None);
            }
            None => {
                self.reply("501 5.1.3 The recipient address must be a full address");
                return Ok(None);
            }
        };
        if !self.directory.store().is_local_domain(&domain).await? {
            self.reply(&format!("550 5.7.1 <{to}>: Relaying denied"));
            return Ok(None);
        }
        if let Some(a) = self
            .directory
            .recipient(&format!("{local}@{domain}"))
            .await?
        {
            return Ok(Some(a));
        }
        // Sub-addressing: user+tag@domain reaches user@domain.
        if let Some((base, _)) = local.split_once('+')
            && let Some(a) = self
                .directory
                .recipient(&format!("{base}@{domain}"))
                .await?
        {
            return Ok(Some(a));
        }
        self.reply(&format!(
            "550 5.1.1 <{to}>: Recipient address rejected: User unknown"
        ));
        Ok(None)
    }

    async fn data(&mut self, reader: &mut Reader) -> Next {
        let Some(envelope) = self.envelope.take() else {
            self.reply("503 5.5.1 Send MAIL first");
            return Next::Continue;
        };
        if envelope.recipients.is_empty() {
            self.reply("554 5.5.1 No valid recipients");
            return Next::Continue;
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        if self.flush(reader).await.is_err() {
            return Next::Close;
        }
        let read = tokio::time::timeout(
            // RFC 5321 §4.5.3.2.6: the data block may take longer than a command.
            self.config.timeout * 2,
            read_data(reader, self.config.max_message_size),
        )
        .await;
        let body = match read {
            Err(_) => {
                self.reply("421 4.4.2 Timeout while reading the message");
                return Next::Close;
            }
            Ok(Err(_)) => return Next::Close,
            Ok(Ok(DataOutcome::TooBig)) => {
                self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
                return Next::Continue;
            }
            Ok(Ok(DataOutcome::Complete(body))) => body,
        };
        let id = queue_id();
        let remote = self.info.remote;
        let mut results = Vec::with_capacity(envelope.recipients.len());
        for r in &envelope.recipients {
            let mut message = self.received_header(&id, &r.address);
            message.extend_from_slice(&body);
            let result = self.directory.store().deliver(r.account.id, message).await;
            match &result {
                Ok(ap) => tracing::info!(
                    protocol = self.protocol_name(), %remote, from = %envelope.from,
                    to = %r.account.address, uid = ap.uid.0, size = ap.size, id = %id, "delivered"
                ),
                Err(e) => tracing::error!(
                    protocol = self.protocol_name(), to = %r.account.address, error = %e,
                    "delivery failed"
                ),
            }
            results.push(result.is_ok());
        }
        match self.mode {
            // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
            Mode::Lmtp => {
                for (r, ok) in envelope.recipients.iter().zip(results) {
                    if ok {
                        self.reply(&format!("250 2.0.0 <{}> Delivered as {id}", r.address));
                    } else {
                        self.reply(&format!(
                            "451 4.3.0 <{}> Temporary failure, try again later",
                            r.address
                        ));
                    }
                }
            }
            Mode::Smtp => {
                if results.iter().all(|&ok| ok) {
                    self.reply(&format!("250 2.0.0 Ok: queued as {id}"));
                } else {
                    self.reply("451 4.3.0 Temporary delivery failure, try again later");
                }
            }
        }
        Next::Continue
    }

    /// RFC 5321 §4.4 trace header. Names the TLS state (RFC 3848 "with" types).
    fn received_header(&self, id: &str, recipient: &str) -> Vec<u8> {
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let with = match (self.mode, self.esmtp, self.tls_active) {
            (Mode::Lmtp, _, false) => "LMTP",
            (Mode::Lmtp, _, true) => "LMTPS",
            (Mode::Smtp, true, true) => "ESMTPS",
            (Mode::Smtp, true, false) => "ESMTP",
            (Mode::Smtp, false, true) => "SMTPS",
            (Mode::Smtp, false, false) => "SMTP",
        };
        let ip = self.info.remote.ip();
        // Keep CR/LF out of the header whatever the client sent.
        let clean = |s: &str| s.chars().filter(|c| !c.is_control()).collect::<String>();
        format!(
            "Received: from {} ([{}])\r\n\tby {} (casella) with {} id {}\r\n\tfor <{}>; {}\r\n",
            clean(helo),
            ip,
            self.config.hostname,
            with,
            id,
            clean(recipient),
            rfc5322_date(now_unix())
        )
        .into_bytes()
    }
}
