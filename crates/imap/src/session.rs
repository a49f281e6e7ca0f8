//! One IMAP session: reading commands (lines and literals), dispatching them by
//! state, and writing responses.

use std::sync::Arc;

use casella_directory::{Protocol, Secret};
use casella_net::{ConnectionInfo, NextLine, ShutdownSignal, Stream, next_line};
use casella_proto_imap::{Command, CommandBody, LiteralSpec, literal_at_end, parse_command};
use casella_store::{Account, Change, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::broadcast;

use crate::capability::capabilities;
use crate::cmd::failure_text;
use crate::view::Selected;
use crate::{ImapConfig, Shared};

pub(crate) type Reader = BufReader<Stream>;

/// Flush the output buffer when it grows beyond this while answering one command.
const FLUSH_THRESHOLD: usize = 256 * 1024;

/// The logged-in user.
pub(crate) struct Auth {
    pub account: Account,
    /// What this account's messages look like to the client.
    pub presentation: casella_mime::Presentation,
    pub changes: broadcast::Receiver<Change>,
    pub _slot: casella_net::Slot<casella_store::AccountId>,
}

pub(crate) struct Session {
    pub shared: Arc<Shared>,
    /// The settings this session started with.
    pub config: Arc<ImapConfig>,
    pub info: ConnectionInfo,
    pub signal: ShutdownSignal,
    pub out: Vec<u8>,
    pub tls_active: bool,
    /// ENABLE IMAP4rev2 (RFC 9051 §6.3.1).
    pub rev2: bool,
    /// ENABLE UTF8=ACCEPT (RFC 6855).
    pub utf8_accept: bool,
    pub auth: Option<Auth>,
    pub selected: Option<Selected>,
    /// UIDs saved by SEARCH RETURN (SAVE) — RFC 5182 — ascending.
    pub saved_search: Vec<u32>,
    /// The selected mailbox disappeared; the session ends after this command.
    pub gone: bool,
    /// This connection's protocol log, when switched on.
    pub plog: Option<casella_net::SessionLog>,
    /// On a front end: the back end this session was just handed over to.
    pub upstream: Option<casella_proxy::Upstream>,
    /// The client's name and version from ID (RFC 2971), for the login history.
    pub client_name: Option<String>,
}

/// What the loop does after a command.
pub(crate) enum Next {
    Continue,
    Logout,
    StartTls,
    /// Close at once (BYE already queued).
    Close,
}

/// Why reading a command failed.
enum ReadError {
    Closed,
    /// Timed out waiting for the client.
    Idle,
    ShuttingDown,
    /// Answered already (e.g. too long); go on with the next command.
    Answered,
    /// A protocol violation after which the stream cannot be resynchronised.
    Fatal(String),
}

impl Session {
    /// The BYE for a session told to stop: by an administrator, or at shutdown.
    pub(crate) fn shutdown_bye(&self) -> &'static str {
        match self.signal.end_reason() {
            Some(casella_net::EndReason::Administrator) => {
                "* BYE [UNAVAILABLE] Session ended by the administrator"
            }
            Some(casella_net::EndReason::SignedOut) => {
                "* BYE Signed out of all devices; log in again"
            }
            None => "* BYE [UNAVAILABLE] Server shutting down",
        }
    }

    pub(crate) fn new(
        shared: Arc<Shared>,
        info: ConnectionInfo,
        signal: ShutdownSignal,
        tls_active: bool,
    ) -> Session {
        Session {
            config: shared.config.get(),
            shared,
            info,
            signal,
            out: Vec::with_capacity(1024),
            tls_active,
            rev2: false,
            utf8_accept: false,
            auth: None,
            selected: None,
            saved_search: Vec::new(),
            gone: false,
            plog: None,
            upstream: None,
            client_name: None,
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.shared.directory.store().clone()
    }

    pub fn line(&mut self, s: &str) {
        if let Some(log) = self.plog.as_mut() {
            log.event('>', s.lines().next().unwrap_or(""), "");
        }
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn tagged(&mut self, tag: &str, status: &str) {
        self.line(&format!("{tag} {status}"));
    }

    pub async fn flush(&mut self, io: &mut Reader) -> std::io::Result<()> {
        if !self.out.is_empty() {
            io.get_mut().write_all(&self.out).await?;
            self.out.clear();
        }
        io.get_mut().flush().await
    }

    /// Writes out a large response in pieces.
    pub async fn maybe_flush(&mut self, io: &mut Reader) -> std::io::Result<()> {
        if self.out.len() >= FLUSH_THRESHOLD {
            io.get_mut().write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Mailbox names and strings in UTF-8 (rev2 or UTF8=ACCEPT), else modified
    /// UTF-7 names and 8-bit only in literals.
    pub fn utf8(&self) -> bool {
        self.rev2 || self.utf8_accept
    }

    /// This connection as the login pipeline sees it; `io` gives the TLS
    /// channel bindings for SCRAM-SHA-256-PLUS, when at hand.
    pub fn login_context(&self, io: Option<&Reader>) -> casella_directory::LoginContext {
        let conn = casella_directory::SaslConnection::new(
            self.config.login_type,
            self.tls_active,
            io.and_then(|io| io.get_ref().tls_exporter()),
            casella_net::server_certificate(),
        );
        let source = casella_directory::LoginSource {
            remote: self.info.remote.ip(),
            client: self.client_name.clone(),
        };
        let mut ctx = casella_directory::LoginContext::new(Protocol::Imap, conn, source);
        ctx.allow_basic_auth = self.config.allow_basic_auth;
        ctx.offered = self.config.sasl_mechanisms.clone();
        ctx.failure_delay = self.config.auth_failure_delay;
        ctx
    }

    pub fn capability_string(&self) -> String {
        // Without the stream at hand: -PLUS is offered whenever TLS is active
        // and the server has a certificate.
        let ctx = self.login_context(None);
        let mechanisms = self.shared.directory.mechanisms(&ctx);
        capabilities(
            self.auth.is_some(),
            self.tls_active,
            self.shared.tls.is_some(),
            ctx.passwords_usable(),
            &mechanisms,
            self.config.append_limit,
        )
    }

    pub(crate) async fn run(mut self, stream: Stream) {
        let io = BufReader::with_capacity(8192, stream);
        if let Some(log) = self.config.protocol_log.as_ref() {
            let mut session = log.session(self.info.local, self.info.remote);
            session.event('+', "", if self.tls_active { "TLS" } else { "" });
            self.plog = Some(session);
        }
        let caps = self.capability_string();
        let banner = self.config.banner.clone();
        self.line(&format!("* OK [CAPABILITY {caps}] {banner}"));
        self.serve(io).await
    }

    /// A session a front end handed over: it starts logged in as `address`, and its
    /// first line is the untagged form of the reply to LOGIN, which the front end
    /// tags and passes on.
    pub(crate) async fn run_handed_over(mut self, stream: Stream, address: &str) {
        let mut io = BufReader::with_capacity(8192, stream);
        let directory = self.shared.directory.clone();
        let entered = match directory.login_handed_over(Protocol::Imap, address).await {
            Ok(auth) => self.enter(auth.account),
            Err(failure) => Err(failure_text(&failure).to_string()),
        };
        match entered {
            Ok(()) => {
                let caps = self.capability_string();
                self.line(&format!("OK [CAPABILITY {caps}] Logged in"));
                self.serve(io).await
            }
            Err(refusal) => {
                tracing::info!(protocol = "imap", remote = %self.info.remote, user = %address, reply = %refusal, "handed-over login refused");
                self.line(&refusal);
                let _ = self.flush(&mut io).await;
                let _ = io.get_mut().shutdown().await;
            }
        }
    }

    /// The command loop.
    async fn serve(mut self, mut io: Reader) {
        loop {
            if io.buffer().is_empty() && self.flush(&mut io).await.is_err() {
                return;
            }
            let (command, preauth_bytes) = match self.read_command(&mut io).await {
                Ok(c) => c,
                Err(ReadError::Closed) => return,
                Err(ReadError::Answered) => continue,
                Err(ReadError::Idle) => {
                    self.line("* BYE Autologout; idle for too long");
                    let _ = self.flush(&mut io).await;
                    return;
                }
                Err(ReadError::ShuttingDown) => {
                    let bye = self.shutdown_bye();
                    self.line(bye);
                    let _ = self.flush(&mut io).await;
                    return;
                }
                Err(ReadError::Fatal(why)) => {
                    self.line(&format!("* BYE {why}"));
                    let _ = self.flush(&mut io).await;
                    return;
                }
            };
            if let Some(log) = self.plog.as_mut() {
                log.event('<', &mask_secrets(&command), "");
            }
            let next = match parse_command(&command) {
                Err(e) => {
                    let tag = e.tag.clone().unwrap_or_else(|| "*".into());
                    self.line(&format!("{tag} BAD {}", e.message));
                    Next::Continue
                }
                Ok(cmd) => self.dispatch(cmd, &mut io).await,
            };
            drop(preauth_bytes);
            if let Some(upstream) = self.upstream.take() {
                // Handed over to a back end: from now on the front end only relays.
                if self.flush(&mut io).await.is_ok() {
                    casella_proxy::relay(io, upstream, self.signal.clone()).await;
                }
                return;
            }
            match next {
                Next::Continue => {}
                Next::Logout | Next::Close => {
                    let _ = self.flush(&mut io).await;
                    let _ = io.get_mut().shutdown().await;
                    return;
                }
                Next::StartTls => {
                    if self.flush(&mut io).await.is_err() {
                        return;
                    }
                    let Some(acceptor) = self.shared.tls.clone() else {
                        return;
                    };
                    // RFC 9051 §6.2.1: input pipelined after STARTTLS is discarded.
                    let stream = io.into_inner();
                    let timeout = self.config.preauth_timeout;
                    match tokio::time::timeout(timeout, stream.into_tls(&acceptor)).await {
                        Ok(Ok(s)) => {
                            io = BufReader::with_capacity(8192, s);
                            self.tls_active = true;
                        }
                        _ => return,
                    }
                }
            }
        }
    }

    fn idle_timeout(&self) -> std::time::Duration {
        if self.auth.is_some() {
            self.config.auth_timeout
        } else {
            self.config.preauth_timeout
        }
    }

    /// Reads one line, honouring the idle timeout and shutdown.
    async fn read_one_line(
        &mut self,
        io: &mut Reader,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ReadError> {
        let mut signal = self.signal.clone();
        let timeout = self.idle_timeout();
        match next_line(io, buf, max, timeout, &mut signal).await {
            NextLine::Line => Ok(()),
            NextLine::Shutdown => Err(ReadError::ShuttingDown),
            NextLine::Idle => Err(ReadError::Idle),
            NextLine::Closed => Err(ReadError::Closed),
            NextLine::TooLong => {
                self.line(&format!(
                    "* BAD Command line too long (the limit is {max} bytes)"
                ));
                Err(ReadError::Answered)
            }
        }
    }

    /// Reads a complete command: its lines joined by CRLF, each literal inline
    /// after its `{n}` announcement (the form `parse_command` takes). Sync literals
    /// get a "+" continuation; literals over the limit are refused before they are
    /// sent (RFC 7888 §4, RFC 9051 §7.5 TOOBIG).
    ///
    /// Before login the limits are small ([`PREAUTH_LITERAL_MAX`],
    /// [`PREAUTH_COMMAND_MAX`]) and every literal's bytes are first taken from
    /// the process-wide pre-login budget, so connections that have not logged
    /// in cannot make the server hold more than that budget however many they
    /// are. The guard comes back with the command and is held until it is
    /// answered.
    async fn read_command(
        &mut self,
        io: &mut Reader,
    ) -> Result<(Vec<u8>, Option<casella_net::BudgetGuard>), ReadError> {
        let max_line = self.config.max_command_size;
        let preauth = self.auth.is_none();
        let (limit, total_limit) = if preauth {
            (PREAUTH_LITERAL_MAX, PREAUTH_COMMAND_MAX)
        } else {
            let limit = self.config.append_limit as u64;
            // A whole command (MULTIAPPEND) may hold several literals.
            (limit, limit.saturating_mul(4).max(64 << 20))
        };
        let mut command = Vec::new();
        let mut held: Option<casella_net::BudgetGuard> = None;
        let mut line = Vec::with_capacity(256);
        loop {
            self.read_one_line(io, &mut line, max_line).await?;
            if preauth {
                // The lines of a command count too (not only its literals):
                // before login the whole command comes out of the budget.
                match casella_net::preauth_budget().try_take(line.len() + 2) {
                    Some(g) => match held.as_mut() {
                        Some(h) => h.absorb(g),
                        None => held = Some(g),
                    },
                    None => {
                        let tag = first_word(command_or(&command, &line));
                        self.line(&format!(
                            "{tag} NO [UNAVAILABLE] Too many connections are sending data before login, try again later"
                        ));
                        return Err(ReadError::Answered);
                    }
                }
                if command.len() as u64 + line.len() as u64 > PREAUTH_COMMAND_MAX {
                    let tag = first_word(command_or(&command, &line));
                    self.line(&format!(
                        "{tag} BAD Commands before login are limited to {PREAUTH_COMMAND_MAX} bytes"
                    ));
                    return Err(ReadError::Answered);
                }
            }
            command.extend_from_slice(&line);
            let Some(LiteralSpec { len, non_sync, .. }) = literal_at_end(&line) else {
                return Ok((command, held));
            };
            let tag = first_word(&command);
            let refusal = if len > limit || command.len() as u64 + len > total_limit {
                Some(if preauth {
                    format!("[TOOBIG] Literals before login are limited to {limit} bytes")
                } else {
                    format!("[TOOBIG] Literal of {len} bytes is over the limit of {limit} bytes")
                })
            } else if preauth {
                match casella_net::preauth_budget().try_take(len as usize) {
                    Some(g) => {
                        match held.as_mut() {
                            Some(h) => h.absorb(g),
                            None => held = Some(g),
                        }
                        None
                    }
                    None => Some(
                        "[UNAVAILABLE] Too many connections are sending data before login, try again later"
                            .to_string(),
                    ),
                }
            } else {
                None
            };
            if let Some(why) = refusal {
                if non_sync {
                    // The client sends the bytes anyway; we cannot find the next
                    // command boundary without reading them all.
                    return Err(ReadError::Fatal(why));
                }
                self.line(&format!("{tag} NO {why}"));
                return Err(ReadError::Answered);
            }
            if !non_sync {
                self.line("+ Ready for literal data");
                if self.flush(io).await.is_err() {
                    return Err(ReadError::Closed);
                }
            }
            command.extend_from_slice(b"\r\n");
            let timeout = self.idle_timeout();
            let read = tokio::time::timeout(timeout, read_literal(io, &mut command, len as usize));
            match read.await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ReadError::Closed),
                Err(_) => return Err(ReadError::Idle),
            }
        }
    }

    /// Reads one line that is not a command: a SASL response or IDLE's DONE.
    pub async fn read_continuation(&mut self, io: &mut Reader) -> Option<String> {
        let mut buf = Vec::new();
        let read = self.read_one_line(io, &mut buf, 16 * 1024).await;
        if let Some(log) = self.plog.as_mut() {
            log.event('<', "****", "SASL response");
        }
        match read {
            Ok(()) => Some(String::from_utf8_lossy(&buf).into_owned()),
            Err(_) => None,
        }
    }

    async fn dispatch(&mut self, cmd: Command, io: &mut Reader) -> Next {
        let Command { tag, body } = cmd;
        use CommandBody as C;
        // Commands valid in any state — RFC 9051 §6.1.
        match body {
            C::Capability => {
                let caps = self.capability_string();
                self.line(&format!("* CAPABILITY {caps}"));
                self.finish(&tag, "OK CAPABILITY completed", true).await;
                return Next::Continue;
            }
            C::Noop => {
                self.finish(&tag, "OK NOOP completed", true).await;
                return Next::Continue;
            }
            C::Logout => {
                self.line("* BYE casella IMAP4rev2 server logging out");
                self.tagged(&tag, "OK LOGOUT completed");
                return Next::Logout;
            }
            C::Id(params) => {
                self.cmd_id(&tag, params);
                return Next::Continue;
            }
            _ => {}
        }
        if self.auth.is_none() {
            return match body {
                C::StartTls => self.cmd_starttls(&tag),
                C::Login { username, password } => {
                    self.cmd_login(&tag, &username, Secret::new(password)).await;
                    Next::Continue
                }
                C::Authenticate { mechanism, initial } => {
                    self.cmd_authenticate(&tag, &mechanism, initial, io).await;
                    Next::Continue
                }
                _ => {
                    self.tagged(&tag, "BAD Log in first (LOGIN or AUTHENTICATE)");
                    Next::Continue
                }
            };
        }
        match body {
            C::StartTls | C::Login { .. } | C::Authenticate { .. } => {
                self.tagged(&tag, "BAD Already logged in");
            }
            C::Enable(caps) => self.cmd_enable(&tag, caps),
            C::Select { mailbox, params } => self.cmd_select(&tag, &mailbox, params, false).await,
            C::Examine { mailbox, params } => self.cmd_select(&tag, &mailbox, params, true).await,
            C::Create {
                mailbox,
                special_use,
            } => self.cmd_create(&tag, &mailbox, &special_use).await,
            C::Delete(mailbox) => self.cmd_delete(&tag, &mailbox).await,
            C::Rename { from, to } => self.cmd_rename(&tag, &from, &to).await,
            C::Subscribe(mailbox) => self.cmd_subscribe(&tag, &mailbox, true).await,
            C::Unsubscribe(mailbox) => self.cmd_subscribe(&tag, &mailbox, false).await,
            C::List(list) => self.cmd_list(&tag, list).await,
            C::Lsub { reference, pattern } => self.cmd_lsub(&tag, &reference, &pattern).await,
            C::Namespace => {
                self.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.finish(&tag, "OK NAMESPACE completed", true).await;
            }
            C::Status { mailbox, items } => self.cmd_status(&tag, &mailbox, &items).await,
            C::Append { mailbox, messages } => self.cmd_append(&tag, &mailbox, messages).await,
            C::Idle => return self.cmd_idle(&tag, io).await,
            selected_only => {
                if self.selected.is_none() {
                    self.tagged(&tag, "BAD No mailbox selected");
                    return Next::Continue;
                }
                return self.dispatch_selected(&tag, selected_only, io).await;
            }
        }
        if self.take_gone() {
            return Next::Close;
        }
        Next::Continue
    }

    async fn dispatch_selected(&mut self, tag: &str, body: CommandBody, io: &mut Reader) -> Next {
        use CommandBody as C;
        match body {
            C::Check => self.finish(tag, "OK CHECK completed", true).await,
            C::Close => self.cmd_close(tag, true).await,
            C::Unselect => self.cmd_close(tag, false).await,
            C::Expunge => self.cmd_expunge(tag, None).await,
            C::UidExpunge(set) => self.cmd_expunge(tag, Some(set)).await,
            C::Search {
                uid,
                returns,
                charset,
                criteria,
            } => self.cmd_search(tag, uid, returns, charset, criteria).await,
            C::Fetch {
                uid, set, items, ..
            } => self.cmd_fetch(tag, uid, set, items, io).await,
            C::Store {
                uid,
                set,
                action,
                silent,
                flags,
                ..
            } => self.cmd_store(tag, uid, set, action, silent, flags).await,
            C::Copy { uid, set, mailbox } => self.cmd_copy(tag, uid, set, &mailbox, false).await,
            C::Move { uid, set, mailbox } => self.cmd_copy(tag, uid, set, &mailbox, true).await,
            _ => self.tagged(tag, "BAD Command not valid in this state"),
        }
        if self.take_gone() {
            return Next::Close;
        }
        Next::Continue
    }

    /// Sends pending updates of the selected mailbox, then the tagged reply.
    /// `allow_expunge` is false while answering FETCH, STORE and SEARCH.
    pub async fn finish(&mut self, tag: &str, status: &str, allow_expunge: bool) {
        self.sync_selected(allow_expunge).await;
        self.tagged(tag, status);
    }

    /// Folds in changes made elsewhere (RFC 9051 §7.5.1). Cheap when nothing changed:
    /// only the change feed is looked at.
    pub async fn sync_selected(&mut self, allow_expunge: bool) {
        let Some(auth) = self.auth.as_mut() else {
            return;
        };
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        let mut dirty = false;
        loop {
            match auth.changes.try_recv() {
                Ok(c) => dirty |= c.mailbox() == Some(selected.id()),
                Err(broadcast::error::TryRecvError::Lagged(_)) => dirty = true,
                Err(_) => break,
            }
        }
        let has_ghosts = selected.messages.iter().any(|m| m.expunged);
        if !(dirty || allow_expunge && has_ghosts) {
            return;
        }
        self.resync(allow_expunge).await;
    }

    /// Re-reads the selected mailbox's changes from the store.
    pub async fn resync(&mut self, allow_expunge: bool) {
        let store = self.store();
        let rev1 = !self.rev2;
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        match selected.sync(&*store, allow_expunge, rev1).await {
            Ok(report) => {
                if report.gone {
                    self.line("* BYE The selected mailbox was deleted; please reconnect");
                    self.gone = true;
                    return;
                }
                for l in report.lines {
                    self.line(&l);
                }
            }
            Err(e) => tracing::warn!(error = %e, "resynchronising the selected mailbox failed"),
        }
    }

    fn take_gone(&mut self) -> bool {
        std::mem::take(&mut self.gone)
    }
}

/// Largest literal before login. Before login only LOGIN, AUTHENTICATE and ID
/// take strings; Dovecot's login process reads no more than a few KiB before
/// authentication either. 8 KiB holds the longest name and password a real
/// client sends and an ID value at RFC 2971's maximum (1,024 octets).
pub(crate) const PREAUTH_LITERAL_MAX: u64 = 8 * 1024;
/// Largest command before login, literals included: an ID with RFC 2971's
/// maximum of 30 pairs of 30-octet names and 1,024-octet values is about 32 KiB.
pub(crate) const PREAUTH_COMMAND_MAX: u64 = 64 * 1024;

/// Appends `len` literal bytes to `buf`, growing it as the bytes arrive (not
/// all at once when announced: a client that announces much and sends little
/// costs little).
async fn read_literal(io: &mut Reader, buf: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    const STEP: usize = 256 * 1024;
    let mut left = len;
    while left > 0 {
        let n = left.min(STEP);
        let start = buf.len();
        buf.resize(start + n, 0);
        io.read_exact(&mut buf[start..]).await?;
        left -= n;
    }
    Ok(())
}

/// The command read so far, or its first line when nothing is read yet.
fn command_or<'a>(command: &'a [u8], line: &'a [u8]) -> &'a [u8] {
    if command.is_empty() { line } else { command }
}

/// The tag of a command being read, for replies before it is parsed.
fn first_word(command: &[u8]) -> String {
    let end = command
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(command.len());
    let tag = String::from_utf8_lossy(&command[..end]).into_owned();
    if tag.is_empty() || tag.contains(|c: char| c.is_control() || c == '+') {
        "*".into()
    } else {
        tag
    }
}

/// The first line of a command as the protocol log shows it: LOGIN's password and
/// AUTHENTICATE's initial response replaced by `****`; literals are not logged.
fn mask_secrets(command: &[u8]) -> String {
    let end = command
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(command.len());
    let line = String::from_utf8_lossy(&command[..end]).into_owned();
    let words: Vec<&str> = line.splitn(4, ' ').collect();
    match words.get(1).map(|w| w.to_ascii_uppercase()).as_deref() {
        Some("LOGIN") if words.len() >= 3 => format!("{} {} {} ****", words[0], words[1], words[2]),
        Some("AUTHENTICATE") if words.len() >= 4 => {
            format!("{} {} {} ****", words[0], words[1], words[2])
        }
        _ => line,
    }
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            super::mask_secrets(b"a LOGIN alice \"pw\""),
            "a LOGIN alice ****"
        );
        assert_eq!(
            super::mask_secrets(b"a LOGIN {5}\r\nalice {2}\r\npw"),
            "a LOGIN {5} ****"
        );
        assert_eq!(
            super::mask_secrets(b"b authenticate PLAIN AGFAYg=="),
            "b authenticate PLAIN ****"
        );
        assert_eq!(super::mask_secrets(b"c SELECT INBOX"), "c SELECT INBOX");
    }
}
