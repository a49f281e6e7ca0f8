//! One IMAP session: its state, and each command dispatched by state. Reading
//! commands, writing replies, timeouts and STARTTLS are the session driver's
//! (`casella_net::drive`; IMAP's side of it is in `handler.rs`).

use std::sync::Arc;

use casella_directory::{LoginSettings, Protocol, Secret};
use casella_net::{
    Connection, ConnectionInfo, Next, NextLine, Output, SessionHandler, SessionStream,
};
use casella_proto_imap::{Command, CommandBody, parse_command};
use casella_store::{Account, Change, Store};
use tokio::sync::broadcast;

use crate::capability::capabilities;
use crate::cmd::failure_text;
use crate::cmd::fetch::FetchModifiers;
use crate::cmd::store::StoreHow;
use crate::view::Selected;
use crate::{ImapConfig, Shared};

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
    /// Replies waiting to be written, and this connection's protocol log.
    pub out: Output,
    pub tls_active: bool,
    /// STARTTLS can be offered on this connection.
    pub starttls: bool,
    /// ENABLE IMAP4rev2 (RFC 9051 §6.3.1).
    pub rev2: bool,
    /// ENABLE UTF8=ACCEPT (RFC 6855).
    pub utf8_accept: bool,
    /// CONDSTORE is on (RFC 7162 §3.1: ENABLE CONDSTORE or a CONDSTORE
    /// enabling command): untagged FETCH responses carry MODSEQ.
    pub condstore: bool,
    /// ENABLE QRESYNC (RFC 7162 §3.2.3; implies CONDSTORE): expunges are
    /// reported as VANISHED, SELECT takes QRESYNC, UID FETCH takes VANISHED.
    pub qresync: bool,
    /// NOTIFY SET in force (RFC 5465).
    pub notify: Option<crate::cmd::Notifications>,
    /// The change the driver saw arrive between commands (`None` inside:
    /// the feed lagged), for NOTIFY.
    pub pending_change: Option<Option<casella_store::Change>>,
    pub auth: Option<Auth>,
    pub selected: Option<Selected>,
    /// UIDs saved by SEARCH RETURN (SAVE) — RFC 5182 — ascending.
    pub saved_search: Vec<u32>,
    /// The selected mailbox disappeared; the session ends after this command.
    pub gone: bool,
    /// On a front end: the back end this session was just handed over to.
    pub upstream: Option<casella_proxy::Upstream>,
    /// The client's name and version from ID (RFC 2971), for the login history.
    pub client_name: Option<String>,
}

impl Session {
    /// A session on a connection that is in TLS already (`tls_active`) or not,
    /// and can start it (`starttls`) or not.
    pub(crate) fn new(
        shared: Arc<Shared>,
        info: ConnectionInfo,
        tls_active: bool,
        starttls: bool,
    ) -> Session {
        Session {
            config: shared.config.get(),
            shared,
            info,
            out: Output::new(None, &info, tls_active),
            tls_active,
            starttls,
            rev2: false,
            utf8_accept: false,
            condstore: false,
            qresync: false,
            notify: None,
            pending_change: None,
            auth: None,
            selected: None,
            saved_search: Vec::new(),
            gone: false,
            upstream: None,
            client_name: None,
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.shared.directory.store().clone()
    }

    pub fn line(&mut self, s: &str) {
        self.out.line(s);
    }

    pub fn tagged(&mut self, tag: &str, status: &str) {
        self.line(&format!("{tag} {status}"));
    }

    pub async fn flush<S: SessionStream>(&mut self, io: &mut Connection<S>) -> std::io::Result<()> {
        io.flush(&mut self.out).await
    }

    /// Writes out a large response in pieces.
    pub async fn maybe_flush<S: SessionStream>(
        &mut self,
        io: &mut Connection<S>,
    ) -> std::io::Result<()> {
        io.flush_over(&mut self.out, FLUSH_THRESHOLD).await
    }

    /// Mailbox names and strings in UTF-8 (rev2 or UTF8=ACCEPT), else modified
    /// UTF-7 names and 8-bit only in literals.
    pub fn utf8(&self) -> bool {
        self.rev2 || self.utf8_accept
    }

    /// This connection as the login pipeline sees it; `exporter` is the TLS
    /// channel binding for SCRAM-SHA-256-PLUS, when at hand.
    pub fn login_context(&self, exporter: Option<Vec<u8>>) -> casella_directory::LoginContext {
        let settings = LoginSettings {
            login_type: self.config.login_type,
            allow_basic_auth: self.config.allow_basic_auth,
            offered: &self.config.sasl_mechanisms,
            failure_delay: self.config.auth_failure_delay,
        };
        let source = casella_directory::LoginSource {
            remote: self.info.remote.ip(),
            client: self.client_name.clone(),
        };
        casella_directory::LoginContext::for_session(
            Protocol::Imap,
            settings,
            self.tls_active,
            exporter,
            source,
        )
    }

    pub fn capability_string(&self) -> String {
        // Without the stream at hand: -PLUS is offered whenever TLS is active
        // and the server has a certificate.
        let ctx = self.login_context(None);
        let mechanisms = self.shared.directory.mechanisms(&ctx);
        capabilities(
            self.auth.is_some(),
            self.tls_active,
            self.starttls,
            ctx.passwords_usable(),
            &mechanisms,
            self.config.append_limit,
        )
    }

    pub(crate) async fn run<S: SessionStream>(mut self, conn: Connection<S>) {
        self.out = Output::new(
            self.config.protocol_log.as_ref(),
            &self.info,
            self.tls_active,
        );
        let caps = self.capability_string();
        let banner = self.config.banner.clone();
        self.line(&format!("* OK [CAPABILITY {caps}] {banner}"));
        self.serve(conn).await
    }

    /// A session a front end handed over: it starts logged in as `address`, and its
    /// first line is the untagged form of the reply to LOGIN, which the front end
    /// tags and passes on.
    pub(crate) async fn run_handed_over<S: SessionStream>(
        mut self,
        mut conn: Connection<S>,
        address: &str,
    ) {
        let directory = self.shared.directory.clone();
        let entered = match directory.login_handed_over(Protocol::Imap, address).await {
            Ok(auth) => self.enter(auth.account),
            Err(failure) => Err(failure_text(&failure).to_string()),
        };
        match entered {
            Ok(()) => {
                let caps = self.capability_string();
                self.line(&format!("OK [CAPABILITY {caps}] Logged in"));
                self.serve(conn).await
            }
            Err(refusal) => {
                tracing::info!(protocol = "imap", remote = %self.info.remote, user = %address, reply = %refusal, "handed-over login refused");
                self.line(&refusal);
                conn.close(&mut self.out).await;
            }
        }
    }

    /// The command loop (the driver's), and the relay after a hand-over.
    async fn serve<S: SessionStream>(mut self, conn: Connection<S>) {
        casella_proxy::drive_then_relay(&mut self, conn, |s| s.upstream.take()).await;
    }

    /// Runs one command, as read by the driver (literals inline).
    pub(crate) async fn command<S: SessionStream>(
        &mut self,
        command: &[u8],
        io: &mut Connection<S>,
    ) -> Next {
        match parse_command(command) {
            Err(e) => {
                let tag = e.tag.clone().unwrap_or_else(|| "*".into());
                self.line(&format!("{tag} BAD {}", e.message));
                Next::Continue
            }
            Ok(cmd) => self.dispatch(cmd, io).await,
        }
    }

    /// Sends a continuation request (`+ text`) and reads the line that answers
    /// it: a SASL response. `None` when none came.
    pub async fn read_continuation<S: SessionStream>(
        &mut self,
        io: &mut Connection<S>,
        text: &str,
    ) -> Option<String> {
        const MAX: usize = 16 * 1024;
        let mut buf = Vec::new();
        let timeout = self.idle_timeout();
        match io.prompt(&mut self.out, text, &mut buf, MAX, timeout).await {
            NextLine::Line => Some(String::from_utf8_lossy(&buf).into_owned()),
            NextLine::TooLong => {
                self.line(&format!(
                    "* BAD Command line too long (the limit is {MAX} bytes)"
                ));
                None
            }
            _ => None,
        }
    }

    async fn dispatch<S: SessionStream>(&mut self, cmd: Command, io: &mut Connection<S>) -> Next {
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
                return Next::Close;
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
            C::GetQuota(root) => self.cmd_getquota(&tag, &root).await,
            C::GetQuotaRoot(mailbox) => self.cmd_getquotaroot(&tag, &mailbox).await,
            C::SetQuota { .. } => self.cmd_setquota(&tag),
            C::Append { mailbox, messages } => self.cmd_append(&tag, &mailbox, messages).await,
            C::Idle => return self.cmd_idle(&tag, io).await,
            C::Notify(set) => self.cmd_notify(&tag, set).await,
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

    async fn dispatch_selected<S: SessionStream>(
        &mut self,
        tag: &str,
        body: CommandBody,
        io: &mut Connection<S>,
    ) -> Next {
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
            C::Sort {
                uid,
                returns,
                keys,
                charset,
                criteria,
            } => {
                self.cmd_sort(tag, uid, returns, keys, charset, criteria)
                    .await
            }
            C::Thread {
                uid,
                algorithm,
                charset,
                criteria,
            } => {
                self.cmd_thread(tag, uid, algorithm, charset, criteria)
                    .await
            }
            // RFC 7162 §3.2.6: the VANISHED modifier (UID FETCH with
            // CHANGEDSINCE only; the parser checks that) needs QRESYNC.
            C::Fetch { vanished: true, .. } if !self.qresync => {
                self.tagged(tag, "BAD VANISHED requires ENABLE QRESYNC first");
            }
            C::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
                partial,
            } => {
                let modifiers = FetchModifiers {
                    changed_since,
                    vanished,
                    partial,
                };
                self.cmd_fetch(tag, uid, set, items, modifiers, io).await
            }
            C::Store {
                uid,
                set,
                unchanged_since,
                action,
                silent,
                flags,
            } => {
                let how = StoreHow {
                    action,
                    silent,
                    unchanged_since,
                };
                self.cmd_store(tag, uid, set, how, flags).await
            }
            C::CancelUpdate(tags) => self.cmd_cancel_update(tag, &tags).await,
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
            // This session's own changes (STORE) still reach its contexts.
            self.update_contexts().await;
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
        let condstore = self.condstore;
        match selected.sync(&*store, allow_expunge, rev1, condstore).await {
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
        // RFC 5267 §4.3.3: ADDTO after the EXISTS and FETCH it follows from.
        self.update_contexts().await;
    }

    /// Turns CONDSTORE on for a CONDSTORE enabling command (RFC 7162 §3.1).
    /// The first time, with a mailbox selected, the client is told its
    /// HIGHESTMODSEQ before the command's answers (§3.1.2.1 asks it of
    /// SELECT; a client enabling CONDSTORE later has not seen it as enabled).
    pub(crate) fn enable_condstore(&mut self) {
        if std::mem::replace(&mut self.condstore, true) {
            return;
        }
        if let Some(sel) = self.selected.as_ref() {
            let line = format!(
                "* OK [HIGHESTMODSEQ {}] Highest",
                sel.mailbox.highest_modseq.0
            );
            self.line(&line);
        }
    }

    /// Turns QRESYNC on (ENABLE QRESYNC): CONDSTORE too, and the selected
    /// mailbox's expunges are reported as VANISHED from now on.
    pub(crate) fn enable_qresync(&mut self) {
        self.qresync = true;
        self.enable_condstore();
        if let Some(sel) = self.selected.as_mut() {
            sel.vanished = true;
        }
    }

    fn take_gone(&mut self) -> bool {
        std::mem::take(&mut self.gone)
    }
}
