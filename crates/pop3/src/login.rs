//! Logging in to POP3: USER/PASS (RFC 1939 §7), AUTH (RFC 5034) through the
//! login pipeline, the hand-over to a back end on a front end, and opening the
//! maildrop once logged in.

use casella_directory::sasl::{self, SaslError};
use casella_directory::{AuthFailure, LoginSettings, Protocol, Secret};
use casella_net::{Connection, NextLine, SessionStream};
use casella_proxy::{Handover, LoginProxy};
use casella_store::{Account, StoreError};

use crate::maildrop::Maildrop;
use crate::session::Session;

/// SASL responses may be longer than commands (PLAIN with long names).
pub(crate) const MAX_SASL_LINE: usize = 8192;

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
    /// This connection as the login pipeline sees it; `exporter` is the TLS
    /// channel binding for SCRAM-SHA-256-PLUS, when at hand.
    pub(crate) fn login_context(
        &self,
        exporter: Option<Vec<u8>>,
    ) -> casella_directory::LoginContext {
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
    pub(crate) fn passwords_refused(&mut self) -> bool {
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
    pub(crate) fn mechanisms(&self) -> Vec<&'static str> {
        self.directory.mechanisms(&self.login_context(None))
    }

    /// AUTH — RFC 5034. PLAIN and LOGIN, with or without initial response.
    pub(crate) async fn authenticate<S: SessionStream>(
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
    pub(crate) async fn challenge<S: SessionStream>(
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
    pub(crate) async fn login(&mut self, user: &str, password: Secret<String>) -> Option<Maildrop> {
        let ctx = self.login_context(None);
        let directory = self.directory.clone();
        let result = directory.login_with_password(&ctx, user, &password).await;
        self.finish_login(result).await
    }

    /// Opens the maildrop after a successful login, or says why the login failed.
    pub(crate) async fn finish_login(
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
    pub(crate) async fn hand_over(&mut self, proxy: &dyn LoginProxy, account: Account) {
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
    pub(crate) async fn open_session(&mut self, account: Account) -> Option<Maildrop> {
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
}

/// The reply to a refused login.
pub(crate) fn failure_text(failure: &AuthFailure) -> &'static str {
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
