//! One POP3 session: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use casella_directory::sasl::{self, SaslError};
use casella_directory::{AuthFailure, Directory, LoginSettings, Protocol, Secret};
use casella_net::{
    CommandLimits, CommandRefusal, Connection, ConnectionInfo, Counter, EndReason, Ended, Farewell,
    Next, NextLine, Output, SessionHandler, SessionStream, Slot, drive,
};
use casella_proxy::{Handover, LoginProxy, Upstream};
use casella_store::{
    Account, AccountId, BlobId, Flag, FlagOp, FlagSet, MailStore, MailboxId, MaildropLock,
    MessageRef, POP3_DELETED_KEYWORD, PopDeleteAction, SpecialUse, StoreError, Uid,
};

use crate::command::{self, Command, ParseError};
use crate::{Pop3Config, SortOrder};
use casella_mime::Presentation;

/// SASL responses may be longer than commands (PLAIN with long names).
const MAX_SASL_LINE: usize = 8192;

pub(crate) struct Session {
    config: Arc<Pop3Config>,
    directory: Arc<Directory>,
    /// Sessions per account, for max-connections-per-user.
    users: Arc<Counter<AccountId>>,
    info: ConnectionInfo,
    /// Replies waiting to be written (and this connection's protocol log);
    /// the driver writes them before the session waits for input, so
    /// pipelined commands (RFC 2449 PIPELINING) get their replies in one write.
    out: Output,
    state: State,
    tls_active: bool,
    /// STLS can be offered on this connection.
    starttls: bool,
    /// On a front end: where a session goes right after its login.
    proxy: Option<Arc<dyn LoginProxy>>,
    /// The back end this session was just handed over to.
    upstream: Option<Upstream>,
}

enum State {
    Authorization { user: Option<String> },
    Transaction(Box<Maildrop>),
}

struct Maildrop {
    account: Account,
    lock: MaildropLock,
    /// Where this session's writes go: through its lock's fence when the lock
    /// can be lost (a shared database), so a session that lost it cannot write.
    store: Arc<dyn MailStore>,
    _user_slot: Slot<AccountId>,
    messages: Vec<PopMessage>,
    /// What the client is shown of each message.
    presentation: Presentation,
    /// Messages read ahead of the client's RETR/TOP (index, bytes), in order.
    ahead: std::collections::VecDeque<(usize, Vec<u8>)>,
}

struct PopMessage {
    mailbox: MailboxId,
    uid: Uid,
    size: u32,
    blob: BlobId,
    uidl: String,
    deleted: bool,
}

/// SASL challenges and answers over this session (`+ BASE64` lines).
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

impl Session {
    /// A session on a connection that is in TLS already (`tls_active`) or not,
    /// and can start it (`starttls`) or not.
    pub(crate) fn new(
        config: Arc<Pop3Config>,
        directory: Arc<Directory>,
        users: Arc<Counter<AccountId>>,
        proxy: Option<Arc<dyn LoginProxy>>,
        info: ConnectionInfo,
        tls_active: bool,
        starttls: bool,
    ) -> Session {
        Session {
            config,
            directory,
            users,
            info,
            out: Output::new(None, &info, tls_active),
            state: State::Authorization { user: None },
            tls_active,
            starttls,
            proxy,
            upstream: None,
        }
    }

    fn store(&self) -> &Arc<dyn MailStore> {
        self.directory.store()
    }

    fn reply(&mut self, line: &str) {
        // The first line of a reply is logged; message bodies never are.
        self.out.line(line);
    }

    pub(crate) async fn run<S: SessionStream>(mut self, conn: Connection<S>) {
        tracing::debug!(remote = %self.info.remote, tls = self.tls_active, "pop3 connection");
        self.out = Output::new(
            self.config.protocol_log.as_ref(),
            &self.info,
            self.tls_active,
        );
        let banner = self.config.banner.clone();
        self.reply(&format!("+OK {banner}"));
        self.serve(conn).await
    }

    /// A session a front end handed over: the maildrop is opened and locked as
    /// after PASS, and the first line is the reply to PASS (or its refusal), which
    /// the front end passes on.
    pub(crate) async fn run_handed_over<S: SessionStream>(
        mut self,
        mut conn: Connection<S>,
        who: &Handover,
    ) {
        let directory = self.directory.clone();
        let maildrop = match directory
            .login_handed_over(Protocol::Pop3, &who.address)
            .await
        {
            Ok(auth) => self.open_session(auth.account).await,
            Err(failure) => {
                tracing::info!(protocol = "pop3", remote = %who.client, user = %who.address, reason = ?failure, "handed-over login refused");
                self.reply(failure_text(&failure));
                None
            }
        };
        match maildrop {
            Some(maildrop) => {
                self.state = State::Transaction(Box::new(maildrop));
                self.serve(conn).await
            }
            None => conn.close(&mut self.out).await,
        }
    }

    /// The command loop (the driver's), and the relay after a hand-over.
    async fn serve<S: SessionStream>(mut self, conn: Connection<S>) {
        let signal = conn.signal().clone();
        if let Ended::HandedOver(conn) = drive(&mut self, conn).await
            && let Some(upstream) = self.upstream.take()
        {
            // Handed over to a back end: from now on the front end only relays.
            casella_proxy::relay(conn.into_reader(), upstream, signal).await;
        }
    }

    /// Runs one command line.
    async fn command<S: SessionStream>(&mut self, line: &[u8], conn: &mut Connection<S>) -> Next {
        let max = self.config.max_command_size;
        // AUTH's initial response (an OAuth token runs to kilobytes) may be
        // longer than a command; every other command keeps the limit.
        if line.len() > max
            && !line
                .get(..5)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"AUTH "))
        {
            self.reply(&format!(
                "-ERR Command line too long (the limit is {max} bytes)"
            ));
            return Next::Continue;
        }
        match command::parse(line) {
            Err(ParseError::Unknown) => {
                self.reply("-ERR Unknown command");
                Next::Continue
            }
            Err(e) => {
                self.reply(&format!("-ERR {e}"));
                Next::Continue
            }
            Ok(cmd) => {
                let mut state =
                    std::mem::replace(&mut self.state, State::Authorization { user: None });
                let next = self.dispatch(cmd, &mut state, conn).await;
                self.state = state;
                next
            }
        }
    }

    async fn dispatch<S: SessionStream>(
        &mut self,
        cmd: Command,
        state: &mut State,
        conn: &mut Connection<S>,
    ) -> Next {
        if let State::Transaction(drop) = state
            && let Err(e) = drop.lock.check()
        {
            // The lock was lost (the database out of reach for longer than its
            // lease, or taken over since): end before acting on the maildrop
            // again, removing nothing (RFC 1939 §6). QUIT included: its deletions
            // could no longer be made safely.
            tracing::warn!(
                protocol = "pop3", remote = %self.info.remote,
                user = %drop.account.address, error = %e, "maildrop lock lost; session ends"
            );
            self.reply(lock_lost_text(&e));
            return Next::Close;
        }
        match state {
            State::Authorization { user } => match cmd {
                Command::Capa => self.capa(true),
                Command::Quit => {
                    self.reply("+OK casella POP3 server signing off");
                    return Next::Close;
                }
                Command::Stls => return self.stls(),
                Command::Utf8 => self.reply("+OK UTF8 enabled"),
                Command::User(name) if name.contains(char::is_whitespace) => {
                    // `USER name password`: no mailbox name has a space; say
                    // so rather than check a name that holds a password.
                    *user = None;
                    self.reply(
                        "-ERR [AUTH] A user name has no spaces; send the password with PASS",
                    );
                }
                Command::User(name) => {
                    if self.passwords_refused() {
                        *user = None;
                    } else {
                        self.reply("+OK Send your password");
                        *user = Some(name);
                    }
                }
                Command::Pass(password) => {
                    let Some(name) = user.take() else {
                        self.reply("-ERR Send USER first");
                        return Next::Continue;
                    };
                    if let Some(maildrop) = self.login(&name, Secret::new(password)).await {
                        *state = State::Transaction(Box::new(maildrop));
                    }
                }
                Command::Auth { mechanism, initial } => {
                    *user = None;
                    if let Some(maildrop) = self.authenticate(mechanism, initial, conn).await {
                        *state = State::Transaction(Box::new(maildrop));
                    }
                }
                Command::Apop => self.reply("-ERR APOP is not supported; use USER/PASS or AUTH"),
                Command::Stat
                | Command::List(_)
                | Command::Retr(_)
                | Command::Dele(_)
                | Command::Noop
                | Command::Rset
                | Command::Top(..)
                | Command::Uidl(_) => self.reply("-ERR Log in first"),
            },
            State::Transaction(drop) => match cmd {
                Command::Capa => self.capa(false),
                Command::Quit => {
                    self.update(drop).await;
                    // Unlock the maildrop before the reply goes out: a client
                    // that has read "+OK" may log in again at once.
                    *state = State::Authorization { user: None };
                    return Next::Close;
                }
                Command::Stat => {
                    let (n, size) = drop
                        .messages
                        .iter()
                        .filter(|m| !m.deleted)
                        .fold((0u64, 0u64), |(n, s), m| (n + 1, s + m.size as u64));
                    self.reply(&format!("+OK {n} {size}"));
                }
                Command::List(None) => {
                    let (n, size) = drop
                        .messages
                        .iter()
                        .filter(|m| !m.deleted)
                        .fold((0u64, 0u64), |(n, s), m| (n + 1, s + m.size as u64));
                    let mut text = format!("+OK {n} messages ({size} octets)\r\n");
                    for (i, m) in drop.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
                        text.push_str(&format!("{} {}\r\n", i + 1, m.size));
                    }
                    text.push('.');
                    self.reply(&text);
                }
                Command::List(Some(n)) => match message(drop, n) {
                    Ok(m) => {
                        let size = m.size;
                        self.reply(&format!("+OK {n} {size}"))
                    }
                    Err(e) => self.reply(e),
                },
                Command::Uidl(None) => {
                    let mut text = String::from("+OK Unique-ID listing follows\r\n");
                    for (i, m) in drop.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
                        text.push_str(&format!("{} {}\r\n", i + 1, m.uidl));
                    }
                    text.push('.');
                    self.reply(&text);
                }
                Command::Uidl(Some(n)) => match message(drop, n) {
                    Ok(m) => {
                        let uidl = m.uidl.clone();
                        self.reply(&format!("+OK {n} {uidl}"))
                    }
                    Err(e) => self.reply(e),
                },
                Command::Retr(n) => self.retrieve(drop, n, None).await,
                Command::Top(n, lines) => self.retrieve(drop, n, Some(lines)).await,
                Command::Dele(n) => match message_mut(drop, n) {
                    Ok(m) => {
                        m.deleted = true;
                        self.reply(&format!("+OK Message {n} deleted"));
                    }
                    Err(e) => self.reply(e),
                },
                Command::Noop => self.reply("+OK"),
                Command::Rset => {
                    for m in &mut drop.messages {
                        m.deleted = false;
                    }
                    let n = drop.messages.len();
                    self.reply(&format!("+OK Maildrop has {n} messages"));
                }
                Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Apop => {
                    self.reply("-ERR You are logged in already")
                }
                Command::Stls => self.reply("-ERR STLS is only valid before login"),
                Command::Utf8 => self.reply("-ERR UTF8 is only valid before login"),
            },
        }
        Next::Continue
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
            Protocol::Pop3,
            settings,
            self.tls_active,
            exporter,
            source,
        )
    }

    /// Under SecureLogin (or PlaintextAuthentication), passwords on a cleartext
    /// connection are refused before they are sent.
    fn passwords_refused(&mut self) -> bool {
        if self.login_context(None).passwords_usable() {
            return false;
        }
        let failure = if self.config.allow_basic_auth {
            AuthFailure::EncryptionRequired
        } else {
            AuthFailure::BasicAuthDisabled
        };
        self.reply(failure_text(&failure));
        true
    }

    /// The SASL mechanisms that work on this connection now.
    fn mechanisms(&self) -> Vec<&'static str> {
        self.directory.mechanisms(&self.login_context(None))
    }

    /// RFC 2449 §5 CAPA. Before login it offers only what works on this connection.
    fn capa(&mut self, before_login: bool) {
        let mut text = String::from("+OK Capability list follows\r\n");
        text.push_str(
            "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nUTF8\r\n",
        );
        if before_login {
            if self.login_context(None).passwords_usable() {
                text.push_str("USER\r\n");
            }
            let mechanisms = self.mechanisms();
            if !mechanisms.is_empty() {
                text.push_str(&format!("SASL {}\r\n", mechanisms.join(" ")));
            }
            if !self.tls_active && self.starttls {
                text.push_str("STLS\r\n");
            }
        }
        text.push_str(concat!(
            "IMPLEMENTATION casella ",
            env!("CARGO_PKG_VERSION"),
            "\r\n."
        ));
        self.reply(&text);
    }

    fn stls(&mut self) -> Next {
        if self.tls_active {
            self.reply("-ERR TLS is already active");
            return Next::Continue;
        }
        if !self.starttls {
            self.reply("-ERR STLS is not available");
            return Next::Continue;
        }
        self.reply("+OK Begin TLS negotiation");
        Next::StartTls
    }

    /// AUTH — RFC 5034. PLAIN and LOGIN, with or without initial response.
    async fn authenticate<S: SessionStream>(
        &mut self,
        mechanism: Option<String>,
        initial: Option<String>,
        conn: &mut Connection<S>,
    ) -> Option<Maildrop> {
        let Some(mechanism) = mechanism else {
            // A bare AUTH lists the mechanisms (as Outlook expects, like Dovecot).
            let mut text = String::from("+OK\r\n");
            for m in self.mechanisms() {
                text.push_str(m);
                text.push_str("\r\n");
            }
            text.push('.');
            self.reply(&text);
            return None;
        };
        let ctx = self.login_context(conn.tls_exporter());
        let directory = self.directory.clone();
        let result = {
            let mut channel = SaslChannel {
                session: self,
                conn,
            };
            directory
                .authenticate(&ctx, &mechanism, initial.as_deref(), &mut channel)
                .await
        };
        self.finish_login(result).await
    }

    /// Sends a SASL challenge and reads the client's response line.
    async fn challenge<S: SessionStream>(
        &mut self,
        conn: &mut Connection<S>,
        text: &str,
    ) -> Result<Vec<u8>, SaslError> {
        let mut line = Vec::new();
        let prompt = format!("+ {text}");
        let timeout = self.config.preauth_timeout;
        match conn
            .prompt(&mut self.out, &prompt, &mut line, MAX_SASL_LINE, timeout)
            .await
        {
            NextLine::Line => sasl::decode_response(&String::from_utf8_lossy(&line)),
            _ => Err(SaslError::Cancelled),
        }
    }

    /// Checks the password and opens the maildrop (on a front end: hands the
    /// session over to the account's back end). Replies either way.
    async fn login(&mut self, user: &str, password: Secret<String>) -> Option<Maildrop> {
        let ctx = self.login_context(None);
        let directory = self.directory.clone();
        let result = directory.login_with_password(&ctx, user, &password).await;
        self.finish_login(result).await
    }

    /// Opens the maildrop after a successful login, or says why the login failed.
    async fn finish_login(
        &mut self,
        result: Result<casella_directory::Authenticated, AuthFailure>,
    ) -> Option<Maildrop> {
        let account = match result {
            Ok(auth) => auth.account,
            Err(failure) => {
                self.reply(failure_text(&failure));
                return None;
            }
        };
        if let Some(proxy) = self.proxy.clone() {
            self.hand_over(&*proxy, account).await;
            return None;
        }
        self.open_session(account).await
    }

    /// On a front end: hands the logged-in session over to the account's back end,
    /// whose reply ("+OK ... maildrop has N messages", or a refusal such as
    /// [IN-USE]) answers the client's PASS or AUTH.
    async fn hand_over(&mut self, proxy: &dyn LoginProxy, account: Account) {
        let remote = self.info.remote;
        let who = Handover {
            address: account.address.clone(),
            client: remote,
            tls: self.tls_active,
            helo: None,
            esmtp: false,
        };
        match proxy
            .hand_over("pop3", account.settings.backend.as_deref(), &who)
            .await
        {
            Ok(upstream) if upstream.reply.starts_with("+OK") => {
                tracing::info!(protocol = "pop3", %remote, user = %account.address, site = %upstream.site, backend = %upstream.peer, "login; handed over");
                self.reply(&upstream.reply);
                self.upstream = Some(upstream);
            }
            Ok(upstream) if upstream.reply.starts_with("-ERR") => {
                tracing::info!(protocol = "pop3", %remote, user = %account.address, backend = %upstream.peer, reply = %upstream.reply, "the back end refused the login");
                self.reply(&upstream.reply);
            }
            Ok(upstream) => {
                tracing::error!(protocol = "pop3", %remote, user = %account.address, backend = %upstream.peer, reply = %upstream.reply, "unexpected reply from the back end");
                self.reply("-ERR [SYS/TEMP] The mailbox server is not reachable, try again later");
            }
            Err(e) => {
                tracing::warn!(protocol = "pop3", %remote, user = %account.address, error = %e, "hand-over failed");
                self.reply(&format!("-ERR [SYS/TEMP] {}", e.client_text()));
            }
        }
    }

    /// Opens the maildrop of a logged-in account: a per-user slot, the maildrop
    /// lock, the message list. Replies either way.
    async fn open_session(&mut self, account: Account) -> Option<Maildrop> {
        let remote = self.info.remote;
        let Some(user_slot) = self
            .users
            .acquire(account.id, self.config.max_connections_per_user)
        else {
            tracing::info!(protocol = "pop3", %remote, user = %account.address, "too many sessions for the user");
            self.reply("-ERR [SYS/TEMP] Too many connections for this account; close another mail program and try again");
            return None;
        };
        let lock = match self.store().lock_maildrop(account.id).await {
            Ok(l) => l,
            Err(StoreError::InUse(_)) => {
                tracing::info!(protocol = "pop3", %remote, user = %account.address, "maildrop in use");
                self.reply("-ERR [IN-USE] Your mailbox is in use by another POP3 session");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "maildrop lock failed");
                self.reply("-ERR [SYS/TEMP] Temporary server problem, try again later");
                return None;
            }
        };
        let presentation = account.settings.presentation(self.config.presentation);
        match self.open_maildrop(&account, presentation).await {
            Ok(messages) => {
                tracing::info!(
                    protocol = "pop3", %remote, user = %account.address,
                    messages = messages.len(), "login"
                );
                casella_net::LiveSessions::global().set_user(&self.info, &account.address);
                let n = messages.len();
                let size: u64 = messages.iter().map(|m| m.size as u64).sum();
                self.reply(&format!(
                    "+OK Logged in; maildrop has {n} messages ({size} octets)"
                ));
                let store = lock.fenced_store().unwrap_or_else(|| self.store().clone());
                Some(Maildrop {
                    account,
                    lock,
                    store,
                    _user_slot: user_slot,
                    messages,
                    presentation,
                    ahead: Default::default(),
                })
            }
            Err(e) => {
                tracing::error!(error = %e, user = %account.address, "opening maildrop failed");
                self.reply("-ERR [SYS/TEMP] Your mailbox could not be opened, try again later");
                None
            }
        }
    }

    /// The messages POP3 serves: the account's chosen folders (INBOX by default), each
    /// in ascending UID order. UIDLs are `<uidvalidity><uid>` in hex (as Dovecot's
    /// default), stable across sessions and restarts and unique across folders.
    async fn open_maildrop(
        &self,
        account: &Account,
        presentation: Presentation,
    ) -> Result<Vec<PopMessage>, StoreError> {
        let mut messages = self.folder_messages(account).await?;
        // Exchange's EnableExactRFC822Size: sizes of the messages as shown.
        if self.config.exact_rfc822_size && !presentation.is_identity() {
            for m in &mut messages {
                let raw = self.store().read_blob(&m.blob).await?;
                if let Some(shown) = presentation.apply(&raw, &casella_mime::parse(&raw).body) {
                    m.size = shown.len().min(u32::MAX as usize) as u32;
                }
            }
        }
        if self.config.sort_order == SortOrder::Descending {
            messages.reverse();
        }
        Ok(messages)
    }

    async fn folder_messages(&self, account: &Account) -> Result<Vec<PopMessage>, StoreError> {
        let mut messages = Vec::new();
        for name in &account.settings.pop.folders {
            let Some(mailbox) = self.store().mailbox_by_name(account.id, name).await? else {
                continue;
            };
            let hidden = Flag::Keyword(POP3_DELETED_KEYWORD.to_string());
            for m in self.store().list_messages(mailbox.id).await? {
                if m.flags.contains(&hidden) {
                    continue;
                }
                messages.push(PopMessage {
                    mailbox: mailbox.id,
                    uid: m.uid,
                    size: m.size,
                    blob: m.blob,
                    uidl: format!("{:08x}{:08x}", mailbox.uid_validity.0, m.uid.0),
                    deleted: false,
                });
            }
        }
        Ok(messages)
    }

    /// RETR (whole message) and TOP (header and `lines` body lines), byte-stuffed
    /// (RFC 1939 §3).
    async fn retrieve(&mut self, drop: &mut Maildrop, n: u32, lines: Option<u32>) {
        let (blob, size, mailbox, uid) = match message(drop, n) {
            Ok(m) => (m.blob.clone(), m.size, m.mailbox, m.uid),
            Err(e) => {
                self.reply(e);
                return;
            }
        };
        let mut raw = match self.read_message(drop, n as usize - 1, &blob).await {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(error = %e, "reading message failed");
                self.reply("-ERR [SYS/TEMP] The message could not be read, try again later");
                return;
            }
        };
        let mut size = size;
        if !drop.presentation.is_identity()
            && let Some(shown) = drop
                .presentation
                .apply(&raw, &casella_mime::parse(&raw).body)
        {
            raw = shown;
            size = raw.len().min(u32::MAX as usize) as u32;
        }
        let content = match lines {
            None => &raw[..],
            Some(l) => top(&raw, l),
        };
        match lines {
            None => self.reply(&format!("+OK {size} octets")),
            Some(_) => self.reply("+OK Top of message follows"),
        }
        let out = self.out.raw();
        stuff_into(content, out);
        out.extend_from_slice(b".\r\n");
        if lines.is_none() && drop.account.settings.pop.mark_read {
            let seen: FlagSet = [Flag::Seen].into_iter().collect();
            if let Err(e) = drop
                .store
                .store_flags(mailbox, &[uid], FlagOp::Add, &seen)
                .await
            {
                tracing::warn!(error = %e, "marking a retrieved message as read failed");
            }
        }
    }

    /// The bytes of message `index` (whose blob is `blob`). Clients download
    /// in order, so a miss reads this and the next few undeleted messages in
    /// one store trip (at most `AHEAD_COUNT`, and `AHEAD_BYTES` beyond the
    /// first) and keeps the rest for the next commands.
    async fn read_message(
        &self,
        drop: &mut Maildrop,
        index: usize,
        blob: &BlobId,
    ) -> Result<Vec<u8>, casella_store::StoreError> {
        while let Some((i, _)) = drop.ahead.front() {
            if *i >= index {
                break;
            }
            drop.ahead.pop_front();
        }
        if let Some((i, _)) = drop.ahead.front()
            && *i == index
            && let Some((_, raw)) = drop.ahead.pop_front()
        {
            return Ok(raw);
        }
        drop.ahead.clear();
        let mut indexes = vec![index];
        let mut blobs = vec![blob.clone()];
        let mut bytes = 0u64;
        for (i, m) in drop.messages.iter().enumerate().skip(index + 1) {
            if blobs.len() >= AHEAD_COUNT || bytes + u64::from(m.size) > AHEAD_BYTES {
                break;
            }
            if !m.deleted {
                bytes += u64::from(m.size);
                indexes.push(i);
                blobs.push(m.blob.clone());
            }
        }
        if blobs.len() == 1 {
            return self.store().read_blob(blob).await;
        }
        let mut read = self.store().read_blobs(&blobs).await?.into_iter();
        let first = read.next().flatten();
        for (i, raw) in indexes.into_iter().skip(1).zip(read) {
            match raw {
                Some(raw) => drop.ahead.push_back((i, raw)),
                None => break,
            }
        }
        match first {
            Some(raw) => Ok(raw),
            // Say why, as a single read would.
            None => self.store().read_blob(blob).await,
        }
    }

    /// The UPDATE state (RFC 1939 §6): remove what DELE marked, all or nothing.
    async fn update(&mut self, drop: &mut Maildrop) {
        let deleted: Vec<MessageRef> = drop
            .messages
            .iter()
            .filter(|m| m.deleted)
            .map(|m| MessageRef {
                mailbox: m.mailbox,
                uid: m.uid,
            })
            .collect();
        if deleted.is_empty() {
            self.reply("+OK casella POP3 server signing off");
            return;
        }
        // Through the lock's fence: refused (InUse) if another session has the
        // maildrop by now.
        let store = &*drop.store;
        let result = match drop.account.settings.pop.delete_action {
            PopDeleteAction::Expunge => store.expunge(drop.account.id, &deleted).await.map(|_| ()),
            PopDeleteAction::MoveToTrash => {
                self.move_to_trash(store, &drop.account, &deleted).await
            }
            PopDeleteAction::HideFromPop => self.hide_from_pop(store, &deleted).await,
        };
        match result {
            Ok(()) => {
                let n = deleted.len();
                tracing::info!(protocol = "pop3", user = %drop.account.address, deleted = n, "update");
                self.reply(&format!(
                    "+OK casella POP3 server signing off ({n} messages deleted)"
                ));
            }
            Err(e @ StoreError::InUse(_)) => {
                tracing::error!(error = %e, user = %drop.account.address, "POP3 update refused: maildrop lock lost");
                self.reply(
                    "-ERR [IN-USE] This session lost the maildrop lock to another session; \
                     no messages were deleted",
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "POP3 update failed");
                self.reply("-ERR [SYS/TEMP] Deleted messages could not be removed; none were");
            }
        }
    }

    /// Marks the messages so POP3 no longer lists them; IMAP still shows them.
    async fn hide_from_pop(
        &self,
        store: &dyn MailStore,
        refs: &[MessageRef],
    ) -> Result<(), StoreError> {
        let keyword: FlagSet = [Flag::Keyword(POP3_DELETED_KEYWORD.to_string())]
            .into_iter()
            .collect();
        let mut by_mailbox: Vec<(MailboxId, Vec<Uid>)> = Vec::new();
        for r in refs {
            match by_mailbox.iter_mut().find(|(m, _)| *m == r.mailbox) {
                Some((_, uids)) => uids.push(r.uid),
                None => by_mailbox.push((r.mailbox, vec![r.uid])),
            }
        }
        for (mailbox, uids) in by_mailbox {
            store
                .store_flags(mailbox, &uids, FlagOp::Add, &keyword)
                .await?;
        }
        Ok(())
    }

    async fn move_to_trash(
        &self,
        store: &dyn MailStore,
        account: &Account,
        refs: &[MessageRef],
    ) -> Result<(), StoreError> {
        let boxes = store.list_mailboxes(account.id).await?;
        let Some(trash) = boxes
            .iter()
            .find(|m| m.special_use == Some(SpecialUse::Trash))
        else {
            return store.expunge(account.id, refs).await.map(|_| ());
        };
        let mut by_box: HashMap<MailboxId, Vec<Uid>> = HashMap::new();
        for r in refs.iter().filter(|r| r.mailbox != trash.id) {
            by_box.entry(r.mailbox).or_default().push(r.uid);
        }
        for (mailbox, uids) in by_box {
            store.copy(mailbox, &uids, trash.id).await?;
        }
        let moved: Vec<MessageRef> = refs
            .iter()
            .filter(|r| r.mailbox != trash.id)
            .copied()
            .collect();
        store.expunge(account.id, &moved).await.map(|_| ())
    }
}

/// POP3 on the session driver: lines only, no literals.
impl SessionHandler for Session {
    fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    fn limits(&self) -> CommandLimits {
        let max = self.config.max_command_size;
        // AUTH's initial response may be longer than a command (see `command`).
        match self.state {
            State::Authorization { .. } => CommandLimits::lines(max.max(MAX_SASL_LINE)),
            State::Transaction(_) => CommandLimits::lines(max),
        }
    }

    fn idle_timeout(&self) -> Duration {
        match self.state {
            State::Authorization { .. } => self.config.preauth_timeout,
            State::Transaction(_) => self.config.auth_timeout,
        }
    }

    fn loggable(&self, line: &[u8]) -> String {
        mask_secrets(&String::from_utf8_lossy(line))
    }

    fn refused(&mut self, _: CommandRefusal, _: &[u8], _: bool) {
        // Only lines are refused here (no literals, no pre-login budget).
        let max = self.config.max_command_size;
        self.reply(&format!(
            "-ERR Command line too long (the limit is {max} bytes)"
        ));
    }

    /// RFC 1939 §6: a session that ends without QUIT removes nothing.
    fn farewell(&self, why: Farewell) -> &'static str {
        match why {
            Farewell::Idle => "-ERR Disconnected for inactivity",
            Farewell::Shutdown => "-ERR [SYS/TEMP] The server is shutting down; try again shortly",
            Farewell::Ended(EndReason::Administrator) => {
                "-ERR [SYS/PERM] Session ended by the administrator"
            }
            // RFC 3206 §4: AUTH, the credentials must be given again.
            Farewell::Ended(EndReason::SignedOut) => {
                "-ERR [AUTH] Signed out of all devices; log in again"
            }
        }
    }

    async fn handle<S: SessionStream>(&mut self, line: Vec<u8>, conn: &mut Connection<S>) -> Next {
        let next = self.command(&line, conn).await;
        if self.upstream.is_some() {
            return Next::HandOver;
        }
        next
    }

    /// After STLS the session starts over, in TLS.
    fn tls_started(&mut self) {
        self.tls_active = true;
        self.state = State::Authorization { user: None };
    }
}

/// The reply to a command after the maildrop lock was lost (RFC 3206 §4, §5):
/// [IN-USE] when another session holds the maildrop now (the client's next login
/// waits for that one), [SYS/TEMP] when this node could not keep the lock (the
/// database was out of reach): a passing server problem, try again later.
fn lock_lost_text(e: &StoreError) -> &'static str {
    match e {
        StoreError::InUse(_) => {
            "-ERR [IN-USE] Another session has taken over this maildrop; this session ends \
             and no messages were deleted"
        }
        _ => {
            "-ERR [SYS/TEMP] The maildrop lock was lost (the mail store was out of reach); \
             this session ends and no messages were deleted, log in again"
        }
    }
}

/// The reply to a refused login.
fn failure_text(failure: &AuthFailure) -> &'static str {
    match failure {
        AuthFailure::InvalidCredentials => {
            "-ERR [AUTH] Authentication failed: wrong user name or password"
        }
        AuthFailure::ProtocolDisabled => {
            "-ERR [AUTH] Login failure or POP3 disabled: POP3 access is turned off for this mailbox"
        }
        AuthFailure::Barred => "-ERR [AUTH] This account may not log in over POP3",
        AuthFailure::EncryptionRequired => {
            "-ERR [AUTH] Plaintext authentication is not allowed on an unencrypted connection. Use STLS first."
        }
        AuthFailure::Temporary => "-ERR [SYS/TEMP] Temporary server problem, try again later",
        AuthFailure::Throttled => "-ERR [SYS/TEMP] Too many failed logins, try again later",
        // RFC 5034 §4: a cancelled exchange fails with -ERR, no credentials
        // were tried.
        AuthFailure::Cancelled => "-ERR Authentication cancelled",
        AuthFailure::Malformed => "-ERR Invalid SASL response",
        AuthFailure::UnsupportedMechanism => "-ERR Unsupported authentication mechanism",
        AuthFailure::BasicAuthDisabled => {
            "-ERR [AUTH] Basic authentication (passwords) is turned off for POP3"
        }
        AuthFailure::OtherIdentity => "-ERR [AUTH] Acting as another user is not allowed",
    }
}

fn message(drop: &Maildrop, n: u32) -> Result<&PopMessage, &'static str> {
    match drop.messages.get(n as usize - 1) {
        None => Err("-ERR No such message"),
        Some(m) if m.deleted => Err("-ERR Message is deleted"),
        Some(m) => Ok(m),
    }
}

fn message_mut(drop: &mut Maildrop, n: u32) -> Result<&mut PopMessage, &'static str> {
    match drop.messages.get_mut(n as usize - 1) {
        None => Err("-ERR No such message"),
        Some(m) if m.deleted => Err("-ERR Message is deleted"),
        Some(m) => Ok(m),
    }
}

/// The header, the blank line, and the first `lines` lines of the body (RFC 1939 §7).
fn top(raw: &[u8], lines: u32) -> &[u8] {
    let body_start = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => i + 4,
        None => return raw,
    };
    let mut end = body_start;
    for _ in 0..lines {
        match raw[end..].iter().position(|&b| b == b'\n') {
            Some(i) => end += i + 1,
            None => {
                end = raw.len();
                break;
            }
        }
    }
    &raw[..end]
}

/// Messages a RETR/TOP reads ahead at most, and the bytes beyond the first.
const AHEAD_COUNT: usize = 16;
const AHEAD_BYTES: u64 = 1 << 20;

/// Appends `content` byte-stuffed: a line starting with "." gets another "."; the
/// result ends with CRLF so the terminating ".\r\n" is on its own line.
fn stuff_into(content: &[u8], out: &mut Vec<u8>) {
    out.reserve(content.len() + 16);
    // Copied a line at a time up to each "\n." (found with memchr), not byte by byte.
    let mut rest = content;
    if rest.first() == Some(&b'.') {
        out.push(b'.');
    }
    while let Some(i) = memchr::memmem::find(rest, b"\n.") {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'.');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    if !content.is_empty() && !content.ends_with(b"\r\n") {
        if content.ends_with(b"\r") {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_matches_the_byte_by_byte_rule() {
        // Every line starting with "." gets one more; nothing else changes.
        let reference = |content: &[u8]| {
            let mut out = Vec::new();
            let mut at_line_start = true;
            for &b in content {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = b == b'\n';
            }
            out
        };
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        let mut seed = 0x2545_f491_u32;
        for len in 0..200 {
            let content: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    alphabet[(seed % 4) as usize]
                })
                .collect();
            let mut out = Vec::new();
            stuff_into(&content, &mut out);
            let expected = reference(&content);
            assert!(out.starts_with(&expected), "{content:?}");
            assert!(out.len() - expected.len() <= 2);
        }
    }

    #[test]
    fn stuffing() {
        let mut out = Vec::new();
        stuff_into(b".a\r\nb\r\n..c\r\n.\r\n", &mut out);
        assert_eq!(out, b"..a\r\nb\r\n...c\r\n..\r\n");
        out.clear();
        stuff_into(b"no end", &mut out);
        assert_eq!(out, b"no end\r\n");
    }

    #[test]
    fn top_lines() {
        let raw = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(top(raw, 0), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(top(raw, 2), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top(raw, 10), &raw[..]);
        assert_eq!(top(b"only header\r\n", 3), b"only header\r\n");
    }
}

/// A command line as the protocol log shows it: PASS and AUTH's initial response
/// replaced by `****`.
fn mask_secrets(line: &str) -> String {
    let mut words = line.splitn(3, ' ');
    let verb = words.next().unwrap_or("");
    match verb.to_ascii_uppercase().as_str() {
        "PASS" => "PASS ****".to_string(),
        "AUTH" => match (words.next(), words.next()) {
            (Some(mech), Some(_)) => format!("{verb} {mech} ****"),
            _ => line.to_string(),
        },
        "APOP" => "APOP ****".to_string(),
        // A common client mistake: `USER name password`. What follows the
        // name is never logged.
        "USER" => match (words.next(), words.next()) {
            (Some(name), Some(_)) => format!("{verb} {name} ****"),
            _ => line.to_string(),
        },
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn secrets_are_masked() {
        assert_eq!(super::mask_secrets("PASS hunter2 with spaces"), "PASS ****");
        assert_eq!(
            super::mask_secrets("auth PLAIN AGFAYg=="),
            "auth PLAIN ****"
        );
        assert_eq!(super::mask_secrets("AUTH LOGIN"), "AUTH LOGIN");
        assert_eq!(super::mask_secrets("USER alice"), "USER alice");
        assert_eq!(super::mask_secrets("USER alice hunter2"), "USER alice ****");
    }
}
