//! One SMTP, LMTP or submission session: greeting, EHLO, STARTTLS and AUTH.
//! Reading commands, writing replies, timeouts and the TLS handshake are the
//! session driver's (`casella_net::drive`; SMTP's side of it is in `handler.rs`). The mail transaction (MAIL, RCPT, DATA, BDAT) is in
//! `transaction.rs`. RFC 5321 §4.1.4 command order, RFC 2033 §4.2, RFC 6409.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use casella_directory::sasl::{self, SaslError};
use casella_directory::{AuthFailure, LoginSettings, Protocol};
use casella_net::{Connection, ConnectionInfo, Next, NextLine, Output, SessionStream};
use casella_proxy::{Handover, LoginProxy, Upstream};
use casella_store::{Account, now_unix};

use crate::command::{self, Command};
use crate::transaction::Envelope;
use crate::{Mode, Shared, SmtpConfig};

pub(crate) struct Session {
    pub mode: Mode,
    pub shared: Arc<Shared>,
    /// The settings this session started with.
    pub config: Arc<SmtpConfig>,
    pub info: ConnectionInfo,
    /// Replies waiting to be written, and this connection's protocol log.
    pub out: Output,
    pub tls_active: bool,
    /// STARTTLS can be offered on this connection (not on one a front end
    /// handed over: its TLS is the front end's).
    starttls: bool,
    /// The EHLO/HELO/LHLO name; `None` until the client greeted.
    pub helo: Option<String>,
    pub esmtp: bool,
    pub envelope: Option<Envelope>,
    /// The logged-in submitter and every address it may send as.
    pub auth: Option<(Account, Vec<String>)>,
    /// Held while logged in (max-connections-per-user).
    pub user_slot: Option<casella_net::Slot<casella_store::AccountId>>,
    /// On a front end: where a session goes right after AUTH.
    proxy: Option<Arc<dyn LoginProxy>>,
    /// The back end this session was just handed over to.
    pub upstream: Option<Upstream>,
}

pub(crate) fn queue_id() -> String {
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
    /// A session on a connection that is in TLS already (`tls_active`) or not,
    /// and can start it (`starttls`) or not.
    pub(crate) fn new(
        mode: Mode,
        shared: Arc<Shared>,
        proxy: Option<Arc<dyn LoginProxy>>,
        info: ConnectionInfo,
        tls_active: bool,
        starttls: bool,
    ) -> Session {
        Session {
            mode,
            config: shared.config.get(),
            shared,
            info,
            out: Output::new(None, &info, tls_active),
            tls_active,
            starttls,
            helo: None,
            esmtp: false,
            envelope: None,
            auth: None,
            user_slot: None,
            proxy,
            upstream: None,
        }
    }

    pub fn reply(&mut self, line: &str) {
        self.out.line(line);
    }

    pub fn protocol_name(&self) -> &'static str {
        match self.mode {
            Mode::Lmtp => "LMTP",
            Mode::Smtp => "SMTP",
            Mode::Submission => "submission",
        }
    }

    /// This connection as the login pipeline sees it; `exporter` is the TLS
    /// channel binding for SCRAM-SHA-256-PLUS, when at hand.
    fn login_context(&self, exporter: Option<Vec<u8>>) -> casella_directory::LoginContext {
        let settings = LoginSettings {
            login_type: self.config.login_type,
            allow_basic_auth: self.config.allow_basic_auth,
            offered: &self.config.sasl_mechanisms,
            failure_delay: self.config.auth_failure_delay,
        };
        let source = casella_directory::LoginSource {
            remote: self.info.remote.ip(),
            client: None,
        };
        casella_directory::LoginContext::for_session(
            Protocol::Submission,
            settings,
            self.tls_active,
            exporter,
            source,
        )
    }

    pub(crate) async fn run<S: SessionStream>(mut self, conn: Connection<S>) {
        self.out = Output::new(
            self.config.protocol_log.as_ref(),
            &self.info,
            self.tls_active,
        );
        let hostname = self.config.hostname.clone();
        let banner = match self.mode {
            Mode::Smtp | Mode::Submission => format!("220 {hostname} {}", self.config.banner),
            Mode::Lmtp => format!("220 {hostname} LMTP casella ready"),
        };
        self.reply(&banner);
        self.serve(conn).await
    }

    /// A submission session a front end handed over: greeted as the client greeted
    /// the front end, logged in as `who.address` with its sender addresses; the
    /// first line is the reply to AUTH (or its refusal), which the front end passes
    /// on.
    pub(crate) async fn run_handed_over<S: SessionStream>(
        mut self,
        mut conn: Connection<S>,
        who: Handover,
    ) {
        self.helo = who.helo;
        self.esmtp = who.esmtp;
        let directory = self.shared.directory.clone();
        let entered = match directory
            .login_handed_over(Protocol::Submission, &who.address)
            .await
        {
            Ok(auth) => self.enter(auth.account).await,
            Err(failure) => Err(failure_text(&failure)),
        };
        match entered {
            Ok(()) => {
                self.reply("235 2.7.0 Authentication successful");
                self.serve(conn).await
            }
            Err(refusal) => {
                tracing::info!(protocol = "submission", remote = %who.client, user = %who.address, reply = refusal, "handed-over login refused");
                self.reply(refusal);
                conn.close(&mut self.out).await;
            }
        }
    }

    /// The command loop (the driver's), and the relay after a hand-over.
    async fn serve<S: SessionStream>(mut self, conn: Connection<S>) {
        casella_proxy::drive_then_relay(&mut self, conn, |s| s.upstream.take()).await;
    }

    /// Runs one command line.
    pub(crate) async fn command<S: SessionStream>(
        &mut self,
        line: &[u8],
        conn: &mut Connection<S>,
    ) -> Next {
        match command::parse(line) {
            Err(e) => {
                self.reply(&e.to_string());
                Next::Continue
            }
            Ok(cmd) => self.dispatch(cmd, conn).await,
        }
    }

    async fn dispatch<S: SessionStream>(&mut self, cmd: Command, conn: &mut Connection<S>) -> Next {
        match cmd {
            Command::Ehlo(_) | Command::Helo(_) if self.mode == Mode::Lmtp => {
                self.reply("500 5.5.1 This is an LMTP server: use LHLO");
            }
            Command::Lhlo(_) if self.mode != Mode::Lmtp => {
                self.reply("500 5.5.1 This is an SMTP server: use EHLO");
            }
            Command::Ehlo(domain) | Command::Lhlo(domain) => self.ehlo(domain),
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
                } else if !self.starttls {
                    self.reply("454 4.7.0 TLS not available");
                } else {
                    self.reply("220 2.0.0 Ready to start TLS");
                    return Next::StartTls;
                }
            }
            Command::Auth { mechanism, initial } => {
                if self.auth(&mechanism, initial, conn).await {
                    // 421: a throttled source is told to go away (RFC 5321 §3.8).
                    return Next::Close;
                }
            }
            Command::Mail { from, params } => self.mail(from, params).await,
            Command::Rcpt { to, params } => self.rcpt(to, params).await,
            Command::Data => return self.data(conn).await,
            Command::Bdat { size, last } => return self.bdat(size, last, conn).await,
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

    /// EHLO / LHLO — RFC 5321 §4.1.1.1; the extensions depend on mode and TLS.
    fn ehlo(&mut self, domain: String) {
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
        lines.push("CHUNKING".into());
        if self.mode == Mode::Submission {
            lines.push("DSN".into());
            // RFC 4954 §4 with SecureLogin: AUTH only once something may be used.
            let mechanisms = self.shared.directory.mechanisms(&self.login_context(None));
            if !mechanisms.is_empty() && self.auth.is_none() {
                lines.push(format!("AUTH {}", mechanisms.join(" ")));
            }
        }
        if !self.tls_active && self.starttls {
            lines.push("STARTTLS".into());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.out
                .raw()
                .extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
        }
    }

    /// AUTH — RFC 4954, PLAIN (RFC 4616) and LOGIN, submission only.
    /// AUTH; true when the connection is to be closed (throttled).
    async fn auth<S: SessionStream>(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
        conn: &mut Connection<S>,
    ) -> bool {
        if self.mode != Mode::Submission {
            self.reply("503 5.5.1 AUTH is only offered on the submission service");
            return false;
        }
        if self.auth.is_some() {
            self.reply("503 5.5.1 Already authenticated");
            return false;
        }
        if self.envelope.is_some() {
            self.reply("503 5.5.1 AUTH is not allowed during a mail transaction");
            return false;
        }
        let ctx = self.login_context(conn.tls_exporter());
        let directory = self.shared.directory.clone();
        let outcome = {
            let mut channel = SaslChannel {
                session: self,
                conn,
            };
            directory
                .authenticate(&ctx, mechanism, initial.as_deref(), &mut channel)
                .await
        };
        self.finish_login(outcome).await
    }

    /// Answers AUTH: 235 (or the back end's reply), or why not; true when the
    /// connection is to be closed (throttled).
    async fn finish_login(
        &mut self,
        outcome: Result<casella_directory::Authenticated, AuthFailure>,
    ) -> bool {
        match outcome {
            Ok(auth) => {
                if let Some(proxy) = self.proxy.clone() {
                    self.hand_over(&*proxy, auth.account).await;
                    return false;
                }
                match self.enter(auth.account).await {
                    Ok(()) => self.reply("235 2.7.0 Authentication successful"),
                    Err(refusal) => self.reply(refusal),
                }
            }
            Err(failure) => {
                self.reply(failure_text(&failure));
                return failure == AuthFailure::Throttled;
            }
        }
        false
    }

    /// Logs the session in as `account`: a slot of max-connections-per-user and the
    /// addresses it may send as. `Err` is the refusal to send.
    async fn enter(&mut self, account: Account) -> Result<(), &'static str> {
        let remote = self.info.remote;
        let max = self.config.max_connections_per_user;
        let Some(slot) = self.shared.users.acquire(account.id, max) else {
            return Err("421 4.7.0 Too many connections for this account, try again later");
        };
        self.user_slot = Some(slot);
        let mut owned = vec![account.address.clone()];
        match self.shared.directory.store().aliases(account.id).await {
            Ok(a) => owned.extend(a),
            Err(e) => tracing::warn!(error = %e, "reading aliases failed"),
        }
        tracing::info!(protocol = "submission", %remote, user = %account.address, "login");
        casella_net::LiveSessions::global().set_user(&self.info, &account.address);
        self.auth = Some((account, owned));
        Ok(())
    }

    /// On a front end: hands the logged-in session over to the account's back end,
    /// whose reply (235, or a refusal) answers the client's AUTH.
    async fn hand_over(&mut self, proxy: &dyn LoginProxy, account: Account) {
        let remote = self.info.remote;
        let who = Handover {
            address: account.address.clone(),
            client: remote,
            tls: self.tls_active,
            helo: self.helo.clone(),
            esmtp: self.esmtp,
        };
        match proxy
            .hand_over("submission", account.settings.backend.as_deref(), &who)
            .await
        {
            Ok(upstream) if upstream.reply.starts_with("235") => {
                tracing::info!(protocol = "submission", %remote, user = %account.address, site = %upstream.site, backend = %upstream.peer, "login; handed over");
                self.reply(&upstream.reply);
                self.upstream = Some(upstream);
            }
            Ok(upstream) if upstream.reply.starts_with(['4', '5']) => {
                tracing::info!(protocol = "submission", %remote, user = %account.address, backend = %upstream.peer, reply = %upstream.reply, "the back end refused the login");
                self.reply(&upstream.reply);
            }
            Ok(upstream) => {
                tracing::error!(protocol = "submission", %remote, user = %account.address, backend = %upstream.peer, reply = %upstream.reply, "unexpected reply from the back end");
                self.reply("454 4.7.0 The mailbox server is not reachable, try again later");
            }
            Err(e) => {
                tracing::warn!(protocol = "submission", %remote, user = %account.address, error = %e, "hand-over failed");
                self.reply(&format!("454 4.7.0 {}", e.client_text()));
            }
        }
    }

    /// Sends a SASL challenge (334) and reads the client's response line.
    async fn challenge<S: SessionStream>(
        &mut self,
        conn: &mut Connection<S>,
        text: &str,
    ) -> Result<Vec<u8>, SaslError> {
        let mut line = Vec::new();
        let prompt = format!("334 {text}");
        let timeout = self.config.timeout;
        match conn
            .prompt(&mut self.out, &prompt, &mut line, 16 * 1024, timeout)
            .await
        {
            NextLine::Line => sasl::decode_response(&String::from_utf8_lossy(&line)),
            _ => Err(SaslError::Cancelled),
        }
    }
}

/// SASL challenges and answers over this session (`334 BASE64` lines).
struct SaslChannel<'a, S> {
    session: &'a mut Session,
    conn: &'a mut Connection<S>,
}

#[async_trait::async_trait]
impl<S: SessionStream> casella_directory::SaslIo for SaslChannel<'_, S> {
    async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        self.session.challenge(self.conn, &text).await
    }
}

/// The reply to a refused login.
fn failure_text(failure: &AuthFailure) -> &'static str {
    match failure {
        AuthFailure::InvalidCredentials => {
            "535 5.7.8 Authentication credentials invalid: wrong user name or password"
        }
        AuthFailure::ProtocolDisabled => {
            "535 5.7.8 Login failure or SMTP disabled: sending mail is turned off for this mailbox"
        }
        AuthFailure::Barred => "535 5.7.8 This account may not send mail",
        AuthFailure::EncryptionRequired => {
            "538 5.7.11 Encryption required for requested authentication mechanism; use STARTTLS first"
        }
        AuthFailure::Temporary => "454 4.7.0 Temporary authentication failure, try again later",
        AuthFailure::Throttled => "421 4.7.0 Too many failed logins, try again later",
        // RFC 4954 §4: a cancelled exchange is answered with 501.
        AuthFailure::Cancelled => "501 5.7.0 Authentication cancelled",
        AuthFailure::Malformed => "501 5.5.2 Invalid SASL response",
        AuthFailure::UnsupportedMechanism => "504 5.5.4 Unrecognized authentication mechanism",
        // Exchange Online's reply when basic authentication is off.
        AuthFailure::BasicAuthDisabled => {
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled"
        }
        AuthFailure::OtherIdentity => "535 5.7.8 Acting as another user is not allowed",
    }
}
