//! One POP3 session: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3): its
//! state and each command dispatched by state. Logging in is in `login.rs`, the
//! maildrop in `maildrop.rs`; reading commands, writing replies, timeouts and
//! STLS are the session driver's (`casella_net::drive`; POP3's side of it is in
//! `handler.rs`).

use std::sync::Arc;

use casella_directory::{Directory, Protocol, Secret};
use casella_net::{Connection, ConnectionInfo, Counter, Next, Output, SessionStream};
use casella_proxy::{Handover, LoginProxy, Upstream};
use casella_store::{AccountId, Store};

use crate::Pop3Config;
use crate::command::{self, Command, ParseError};
use crate::login::failure_text;
use crate::maildrop::{Maildrop, lock_lost_text, message, message_mut};

pub(crate) struct Session {
    pub(crate) config: Arc<Pop3Config>,
    pub(crate) directory: Arc<Directory>,
    /// Sessions per account, for max-connections-per-user.
    pub(crate) users: Arc<Counter<AccountId>>,
    pub(crate) info: ConnectionInfo,
    /// Replies waiting to be written (and this connection's protocol log);
    /// the driver writes them before the session waits for input, so
    /// pipelined commands (RFC 2449 PIPELINING) get their replies in one write.
    pub(crate) out: Output,
    pub(crate) state: State,
    pub(crate) tls_active: bool,
    /// STLS can be offered on this connection.
    pub(crate) starttls: bool,
    /// On a front end: where a session goes right after its login.
    pub(crate) proxy: Option<Arc<dyn LoginProxy>>,
    /// The back end this session was just handed over to.
    pub(crate) upstream: Option<Upstream>,
}

pub(crate) enum State {
    Authorization { user: Option<String> },
    Transaction(Box<Maildrop>),
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

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.directory.store()
    }

    pub(crate) fn reply(&mut self, line: &str) {
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
    pub(crate) async fn serve<S: SessionStream>(mut self, conn: Connection<S>) {
        casella_proxy::drive_then_relay(&mut self, conn, |s| s.upstream.take()).await;
    }

    /// Runs one command line.
    pub(crate) async fn command<S: SessionStream>(
        &mut self,
        line: &[u8],
        conn: &mut Connection<S>,
    ) -> Next {
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

    pub(crate) async fn dispatch<S: SessionStream>(
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

    /// RFC 2449 §5 CAPA. Before login it offers only what works on this connection.
    pub(crate) fn capa(&mut self, before_login: bool) {
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

    pub(crate) fn stls(&mut self) -> Next {
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
}
