//! STARTTLS, LOGIN, AUTHENTICATE (RFC 9051 §6.2), ID (RFC 2971), ENABLE (RFC 5161).

use casella_directory::sasl::{self, SaslError};
use casella_directory::{AuthFailure, Secret};
use casella_proxy::{Handover, LoginProxy};
use casella_store::Account;

use casella_net::{Connection, Next, SessionStream};

use crate::session::{Auth, Session};

/// SASL challenges and answers over this session (`+ BASE64` lines).
struct SaslChannel<'a, S> {
    session: &'a mut Session,
    io: &'a mut Connection<S>,
}

#[async_trait::async_trait]
impl<S: SessionStream> casella_directory::SaslIo for SaslChannel<'_, S> {
    async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        self.session.challenge(self.io, &text).await
    }
}

impl Session {
    /// STARTTLS — RFC 9051 §6.2.1.
    pub(crate) fn cmd_starttls(&mut self, tag: &str) -> Next {
        if self.tls_active {
            self.tagged(tag, "BAD TLS is already active");
            return Next::Continue;
        }
        if !self.starttls {
            self.tagged(tag, "NO STARTTLS is not available");
            return Next::Continue;
        }
        self.tagged(tag, "OK Begin TLS negotiation now");
        Next::StartTls
    }

    /// LOGIN — RFC 9051 §6.2.3: refused while LOGINDISABLED (the pipeline
    /// says so before any password is looked at).
    pub(crate) async fn cmd_login(&mut self, tag: &str, user: &str, password: Secret<String>) {
        let ctx = self.login_context(None);
        let directory = self.shared.directory.clone();
        let result = directory.login_with_password(&ctx, user, &password).await;
        self.finish_login(tag, result).await;
    }

    /// AUTHENTICATE — RFC 9051 §6.2.2, with SASL-IR (RFC 4959): every
    /// mechanism the pipeline offers (PLAIN, LOGIN, SCRAM-SHA-256[-PLUS],
    /// XOAUTH2, OAUTHBEARER).
    pub(crate) async fn cmd_authenticate<S: SessionStream>(
        &mut self,
        tag: &str,
        mechanism: &str,
        initial: Option<String>,
        io: &mut Connection<S>,
    ) {
        let ctx = self.login_context(io.tls_exporter());
        let directory = self.shared.directory.clone();
        let result = {
            let mut channel = SaslChannel { session: self, io };
            directory
                .authenticate(&ctx, mechanism, initial.as_deref(), &mut channel)
                .await
        };
        self.finish_login(tag, result).await;
    }

    async fn challenge<S: SessionStream>(
        &mut self,
        io: &mut Connection<S>,
        text: &str,
    ) -> Result<Vec<u8>, SaslError> {
        match self.read_continuation(io, &format!("+ {text}")).await {
            Some(line) => sasl::decode_response(&line),
            None => Err(SaslError::Cancelled),
        }
    }

    /// Answers LOGIN/AUTHENTICATE: enters the authenticated state (or hands the
    /// session over to its back end), or says why not.
    async fn finish_login(
        &mut self,
        tag: &str,
        result: Result<casella_directory::Authenticated, AuthFailure>,
    ) {
        match result {
            Ok(auth) => {
                if let Some(proxy) = self.shared.proxy.clone() {
                    self.hand_over(tag, &*proxy, auth.account).await;
                    return;
                }
                match self.enter(auth.account) {
                    Ok(()) => {
                        let caps = self.capability_string();
                        self.tagged(tag, &format!("OK [CAPABILITY {caps}] Logged in"));
                    }
                    Err(refusal) => self.tagged(tag, &refusal),
                }
            }
            Err(failure) => self.tagged(tag, failure_text(&failure)),
        }
    }

    /// Takes the session into the authenticated state for `account`: a slot of
    /// max-connections-per-user and the account's change feed. `Err` is the refusal
    /// to send (untagged).
    pub(crate) fn enter(&mut self, account: Account) -> Result<(), String> {
        let remote = self.info.remote;
        let max = self.config.max_connections_per_user;
        let Some(slot) = self.shared.users.acquire(account.id, max) else {
            tracing::info!(protocol = "imap", %remote, user = %account.address, "too many sessions for the user");
            return Err(format!(
                "NO [LIMIT] Too many connections for this account (at most {max}); close another mail program and try again"
            ));
        };
        tracing::info!(protocol = "imap", %remote, user = %account.address, "login");
        casella_net::LiveSessions::global().set_user(&self.info, &account.address);
        let changes = self.store().subscribe(account.id);
        let presentation = account.settings.presentation(self.config.presentation);
        self.auth = Some(Auth {
            account,
            presentation,
            changes,
            _slot: slot,
        });
        Ok(())
    }

    /// On a front end: hands the logged-in session over to the account's back end,
    /// whose reply (its capabilities after login, or a refusal) answers the
    /// client's LOGIN/AUTHENTICATE.
    async fn hand_over(&mut self, tag: &str, proxy: &dyn LoginProxy, account: Account) {
        let remote = self.info.remote;
        let who = Handover {
            address: account.address.clone(),
            client: remote,
            tls: self.tls_active,
            helo: None,
            esmtp: false,
        };
        match proxy
            .hand_over("imap", account.settings.backend.as_deref(), &who)
            .await
        {
            Ok(upstream) if upstream.reply.starts_with("OK ") => {
                tracing::info!(protocol = "imap", %remote, user = %account.address, site = %upstream.site, backend = %upstream.peer, "login; handed over");
                self.tagged(tag, &upstream.reply);
                self.upstream = Some(upstream);
            }
            Ok(upstream) if upstream.reply.starts_with("NO ") => {
                tracing::info!(protocol = "imap", %remote, user = %account.address, backend = %upstream.peer, reply = %upstream.reply, "the back end refused the login");
                self.tagged(tag, &upstream.reply);
            }
            Ok(upstream) => {
                tracing::error!(protocol = "imap", %remote, user = %account.address, backend = %upstream.peer, reply = %upstream.reply, "unexpected reply from the back end");
                self.tagged(
                    tag,
                    "NO [UNAVAILABLE] The mailbox server is not reachable, try again later",
                );
            }
            Err(e) => {
                tracing::warn!(protocol = "imap", %remote, user = %account.address, error = %e, "hand-over failed");
                self.tagged(tag, &format!("NO [UNAVAILABLE] {}", e.client_text()));
            }
        }
    }

    /// ID — RFC 2971 §3.1: we log what the client says and tell who we are.
    pub(crate) fn cmd_id(&mut self, tag: &str, params: Option<Vec<(String, Option<String>)>>) {
        if let Some(params) = params {
            // What the client says goes to the log: no control characters
            // (a literal may hold a line break that would forge a log line).
            let clean = |t: &str| -> String {
                t.chars()
                    .take(256)
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect()
            };
            let client: Vec<String> = params
                .iter()
                .take(30)
                .map(|(k, v)| format!("{}={}", clean(k), clean(v.as_deref().unwrap_or("NIL"))))
                .collect();
            tracing::info!(protocol = "imap", remote = %self.info.remote, client = %client.join(" "), "ID");
            let field = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_deref())
            };
            if let Some(name) = field("name") {
                let mut label = name.chars().take(60).collect::<String>();
                if let Some(version) = field("version") {
                    label.push(' ');
                    label.extend(version.chars().take(30));
                }
                self.client_name = Some(label.chars().filter(|c| !c.is_control()).collect());
            }
        }
        self.line(concat!(
            "* ID (\"name\" \"casella\" \"version\" \"",
            env!("CARGO_PKG_VERSION"),
            "\" \"vendor\" \"casella\")"
        ));
        self.tagged(tag, "OK ID completed");
    }

    /// ENABLE — RFC 5161 §3.1; IMAP4rev2 (RFC 9051 §6.3.1), UTF8=ACCEPT (RFC 6855 §3),
    /// CONDSTORE (RFC 7162 §3.1).
    pub(crate) fn cmd_enable(&mut self, tag: &str, caps: Vec<String>) {
        if self.selected.is_some() {
            // RFC 5161 §3.1: only in the authenticated state.
            self.tagged(tag, "BAD ENABLE is only valid before SELECT");
            return;
        }
        let mut enabled = Vec::new();
        for c in caps {
            match c.to_ascii_uppercase().as_str() {
                "IMAP4REV2" if !self.rev2 => {
                    self.rev2 = true;
                    enabled.push("IMAP4rev2");
                }
                "UTF8=ACCEPT" if !self.utf8_accept => {
                    self.utf8_accept = true;
                    enabled.push("UTF8=ACCEPT");
                }
                // RFC 7162 §3.1.
                "CONDSTORE" if !self.condstore => {
                    self.condstore = true;
                    enabled.push("CONDSTORE");
                }
                // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                "QRESYNC" if !self.qresync => {
                    self.enable_qresync();
                    enabled.push("QRESYNC");
                }
                // Unknown or already enabled: not listed (RFC 5161 §3.2).
                _ => {}
            }
        }
        if enabled.is_empty() {
            self.line("* ENABLED");
        } else {
            self.line(&format!("* ENABLED {}", enabled.join(" ")));
        }
        self.tagged(tag, "OK ENABLE completed");
    }
}

/// The reply (untagged) to a refused login.
pub(crate) fn failure_text(failure: &AuthFailure) -> &'static str {
    match failure {
        AuthFailure::InvalidCredentials => {
            "NO [AUTHENTICATIONFAILED] Authentication failed: wrong user name or password"
        }
        AuthFailure::ProtocolDisabled => {
            "NO [CONTACTADMIN] Login failure or IMAP disabled: IMAP access is turned off for this mailbox"
        }
        AuthFailure::Barred => "NO [CONTACTADMIN] This account may not log in over IMAP",
        AuthFailure::EncryptionRequired => {
            "NO [PRIVACYREQUIRED] Plaintext authentication is not allowed on an unencrypted connection; use STARTTLS first"
        }
        AuthFailure::Temporary => "NO [UNAVAILABLE] Temporary server problem, try again later",
        AuthFailure::Throttled => "NO [UNAVAILABLE] Too many failed logins, try again later",
        // RFC 9051 §6.2.2: a cancelled exchange is answered with BAD.
        AuthFailure::Cancelled => "BAD Authentication cancelled",
        AuthFailure::Malformed => "BAD Invalid SASL response",
        AuthFailure::UnsupportedMechanism => "NO [CANNOT] Unsupported authentication mechanism",
        AuthFailure::BasicAuthDisabled => {
            "NO [AUTHENTICATIONFAILED] Basic authentication (passwords) is turned off for IMAP"
        }
        // RFC 5530 §3.
        AuthFailure::OtherIdentity => {
            "NO [AUTHORIZATIONFAILED] Acting as another user is not allowed"
        }
    }
}
