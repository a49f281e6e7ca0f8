//! casella-directory: who may log in, with what, over which protocol.
//!
//! Owns: password hashing (argon2id), credential checks, the login policy
//! (Exchange's LoginType, per-account protocol switches, barred accounts), and the
//! decoding of SASL PLAIN and LOGIN.
//! Must not: speak any protocol's syntax — sessions map [`AuthFailure`] to their own
//! replies — or log a password (they travel as [`Secret`]).

pub mod app_passwords;
mod history;
pub mod oauth;
pub mod options;
mod password;
pub mod password_rules;
mod policy;
pub mod sasl;
pub mod scram;
mod secret;
pub mod throttle;
pub mod verified;

pub use password::{hash_password, verify_password};
pub use policy::{LoginType, Protocol};
pub use secret::Secret;

use std::sync::Arc;

use casella_store::{Account, MailStore, StoreError};

/// Why a login was refused. Sessions turn each into their protocol's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown user or wrong password (never say which).
    InvalidCredentials,
    /// The account exists but this protocol is switched off for it.
    ProtocolDisabled,
    /// Administrators, anonymous and guest may not use POP3/IMAP.
    Barred,
    /// The policy forbids passwords on this (cleartext) connection.
    EncryptionRequired,
    /// The store failed; the client may retry.
    Temporary,
    /// Too many failed logins from this source or on this account: refused
    /// before any password was checked.
    Throttled,
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub account: Account,
}

/// Where a login comes from, for the account's login history.
#[derive(Debug, Clone)]
pub struct LoginSource {
    pub remote: std::net::IpAddr,
    /// The client's name (IMAP ID), when known.
    pub client: Option<String>,
}

/// Names that are never accepted as a login, whatever the store holds.
const REFUSED_LOGINS: &[&str] = &["anonymous", "guest", "ftp", "nobody"];

pub struct Directory {
    store: Arc<dyn MailStore>,
    throttle: Arc<throttle::Throttle>,
    history: history::LoginHistory,
    verified: verified::VerifiedPasswords,
    oauth: std::sync::RwLock<Option<Arc<oauth::TokenValidator>>>,
}

/// The connection a SASL exchange runs on: the login policy, TLS, and the TLS
/// channel-binding data for SCRAM-SHA-256-PLUS.
#[derive(Debug, Clone, Default)]
pub struct SaslConnection {
    pub login_type: LoginType,
    pub tls_active: bool,
    pub bindings: scram::ChannelBindings,
}

impl SaslConnection {
    /// The connection's policy and TLS state; `exporter` is the RFC 9266
    /// keying material and `certificate` the server's certificate (DER), when
    /// TLS is active.
    pub fn new(
        login_type: LoginType,
        tls_active: bool,
        exporter: Option<Vec<u8>>,
        certificate: Option<Arc<[u8]>>,
    ) -> SaslConnection {
        let bindings = if tls_active {
            scram::ChannelBindings {
                tls_exporter: exporter,
                server_certificate: certificate,
            }
        } else {
            scram::ChannelBindings::default()
        };
        SaslConnection {
            login_type,
            tls_active,
            bindings,
        }
    }

    /// The mechanisms beyond PLAIN and LOGIN this connection offers: SCRAM (a
    /// password mechanism, so only with `passwords`), -PLUS on TLS, and the OAuth
    /// ones when `tokens` are configured.
    pub fn other_mechanisms(&self, passwords: bool, tokens: bool) -> Vec<&'static str> {
        let mut m = Vec::new();
        if passwords && self.non_password_allowed() {
            m.push("SCRAM-SHA-256");
            if self.tls_active && self.bindings.any() {
                m.push("SCRAM-SHA-256-PLUS");
            }
        }
        if tokens && self.non_password_allowed() {
            m.extend(["XOAUTH2", "OAUTHBEARER"]);
        }
        m
    }

    /// Mechanisms that do not reveal a password (tokens, SCRAM) are allowed in
    /// cleartext unless the login type is secure-login.
    pub fn non_password_allowed(&self) -> bool {
        self.tls_active || self.login_type != LoginType::SecureLogin
    }
}

/// How a session exchanges SASL messages with its client: the protocol encodes
/// the challenge (base64 in `+ `, `334 `…) and decodes the answer.
#[async_trait::async_trait]
pub trait SaslIo: Send {
    async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, sasl::SaslError>;
}

/// A name fit for one log field: no spaces or control characters, at most 64
/// characters (it comes from the network).
fn log_safe(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// The client's first SASL message: the initial response, or the answer to an
/// empty challenge.
async fn first_message(
    initial: Option<Vec<u8>>,
    io: &mut dyn SaslIo,
) -> Result<Vec<u8>, AuthFailure> {
    match initial {
        Some(m) => Ok(m),
        None => io
            .challenge(b"")
            .await
            .map_err(|_| AuthFailure::InvalidCredentials),
    }
}

impl Directory {
    pub fn new(store: Arc<dyn MailStore>) -> Directory {
        Directory {
            history: history::LoginHistory::new(store.clone()),
            store,
            throttle: Arc::new(throttle::Throttle::default()),
            verified: verified::VerifiedPasswords::default(),
            oauth: std::sync::RwLock::new(None),
        }
    }

    /// Turns OAuth 2.0 tokens (XOAUTH2, OAUTHBEARER) on, or off with `None`.
    pub fn set_oauth(&self, validator: Option<Arc<oauth::TokenValidator>>) {
        *self.oauth.write().unwrap_or_else(|e| e.into_inner()) = validator;
    }

    fn oauth(&self) -> Option<Arc<oauth::TokenValidator>> {
        self.oauth.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether XOAUTH2 and OAUTHBEARER are offered.
    pub fn oauth_enabled(&self) -> bool {
        self.oauth().is_some()
    }

    /// Runs one of the mechanisms of `SaslConnection::other_mechanisms`
    /// (SCRAM-SHA-256[-PLUS], XOAUTH2, OAUTHBEARER).
    pub async fn login_with_mechanism(
        &self,
        protocol: Protocol,
        mechanism: &str,
        conn: &SaslConnection,
        initial: Option<Vec<u8>>,
        source: &LoginSource,
        io: &mut dyn SaslIo,
    ) -> Result<Authenticated, AuthFailure> {
        match mechanism {
            "SCRAM-SHA-256" => {
                self.login_with_scram(protocol, false, conn, initial, source, io)
                    .await
            }
            "SCRAM-SHA-256-PLUS" => {
                self.login_with_scram(protocol, true, conn, initial, source, io)
                    .await
            }
            _ => {
                self.login_with_token(protocol, mechanism, conn, initial, source, io)
                    .await
            }
        }
    }

    /// SCRAM-SHA-256 or SCRAM-SHA-256-PLUS (RFC 7677, RFC 5802): the client
    /// proves it knows the password without sending it; with -PLUS the proof is
    /// bound to this TLS connection. Ends with the server's signature (`v=`) as
    /// a last challenge.
    pub async fn login_with_scram(
        &self,
        protocol: Protocol,
        plus: bool,
        conn: &SaslConnection,
        initial: Option<Vec<u8>>,
        source: &LoginSource,
        io: &mut dyn SaslIo,
    ) -> Result<Authenticated, AuthFailure> {
        if !conn.non_password_allowed() {
            return Err(AuthFailure::EncryptionRequired);
        }
        let first_msg = first_message(initial, io).await?;
        let first = match scram::parse_client_first(&first_msg) {
            Ok(f) => f,
            Err(_) => {
                self.failed(protocol, source, "").await;
                return Err(AuthFailure::InvalidCredentials);
            }
        };
        let offers_plus = conn.tls_active && conn.bindings.any();
        let binding_ok = match (plus, first.cbind.as_str()) {
            // RFC 5802 §6: "y" while the server offers -PLUS is a downgrade.
            (false, "n") => true,
            (false, "y") => !offers_plus,
            (false, _) => false,
            (true, "n" | "y") => false,
            (true, name) => conn.tls_active && conn.bindings.get_name(name),
        };
        let login = Self::normalize(&first.user);
        if !binding_ok {
            tracing::info!(protocol = protocol.name(), remote = %source.remote, "SCRAM channel binding refused");
            self.failed(protocol, source, &login).await;
            return Err(AuthFailure::InvalidCredentials);
        }
        if self.blocked(protocol, source, &login) {
            return Err(AuthFailure::Throttled);
        }
        let account = match self.store.account_for_address(&login).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return Err(AuthFailure::Temporary);
            }
        };
        let secret = account.as_ref().and_then(|a| a.settings.scram.clone());
        let exchange = scram::ServerExchange::new(first, secret);
        let final_msg = io
            .challenge(exchange.server_first().as_bytes())
            .await
            .map_err(|_| AuthFailure::InvalidCredentials)?;
        let server_final = match (exchange.finish(&final_msg, &conn.bindings), &account) {
            (Ok(v), Some(_)) => v,
            (result, _) => {
                if let (Some(a), Err(e)) = (&account, &result) {
                    tracing::info!(protocol = protocol.name(), remote = %source.remote, reason = ?e, "SCRAM proof refused");
                    self.record(a, protocol, source, false);
                }
                self.failed(protocol, source, &login).await;
                return Err(AuthFailure::InvalidCredentials);
            }
        };
        let Some(account) = account else {
            return Err(AuthFailure::InvalidCredentials);
        };
        if account.is_admin && protocol.bars_administrators() {
            return Err(AuthFailure::Barred);
        }
        if !protocol.enabled_for(&account) {
            return Err(AuthFailure::ProtocolDisabled);
        }
        // RFC 5802 §5.1: the server's signature, which the client checks; its
        // (empty) answer ends the exchange.
        io.challenge(server_final.as_bytes())
            .await
            .map_err(|_| AuthFailure::InvalidCredentials)?;
        self.throttle.success(source.remote, &account.address);
        self.record(&account, protocol, source, true);
        Ok(Authenticated { account })
    }

    /// SASL XOAUTH2 or OAUTHBEARER (RFC 7628) on a connection with this login
    /// type and TLS state: the client sends a bearer token;
    /// on a bad one the server answers with the RFC 7628 §3.2.2 JSON error as a
    /// challenge, the client acknowledges, and the login fails.
    pub async fn login_with_token(
        &self,
        protocol: Protocol,
        mechanism: &str,
        conn: &SaslConnection,
        initial: Option<Vec<u8>>,
        source: &LoginSource,
        io: &mut dyn SaslIo,
    ) -> Result<Authenticated, AuthFailure> {
        let Some(validator) = self.oauth() else {
            return Err(AuthFailure::InvalidCredentials);
        };
        // A token is not a password: plaintext-authentication allows it before
        // TLS; secure-login allows nothing before TLS.
        if !conn.non_password_allowed() {
            return Err(AuthFailure::EncryptionRequired);
        }
        let first = first_message(initial, io).await?;
        let Some((named, token)) = oauth::parse_client_message(mechanism, &first) else {
            self.failed(protocol, source, "").await;
            return Err(AuthFailure::InvalidCredentials);
        };
        let named = named.map(|n| Self::normalize(&n));
        let hint = named.clone().unwrap_or_default();
        if self.blocked(protocol, source, &hint) {
            return Err(AuthFailure::Throttled);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let scope = validator.config().scope_for(protocol).to_string();
        let refuse = |why: String| {
            tracing::info!(protocol = protocol.name(), remote = %source.remote, reason = %why, "token refused");
        };
        let user = match validator.validate(&token, protocol, now) {
            Ok(u) if named.as_ref().is_none_or(|n| *n == u) => u,
            Ok(u) => {
                refuse(format!("the token is for {u}, not {hint}"));
                let _ = io
                    .challenge(oauth::error_json("invalid_token", &scope).as_bytes())
                    .await;
                self.failed(protocol, source, &hint).await;
                return Err(AuthFailure::InvalidCredentials);
            }
            Err(e) => {
                refuse(e.to_string());
                // RFC 7628 §3.2.3: the error as a challenge; the client answers
                // with a dummy ^A before the failure.
                let _ = io
                    .challenge(oauth::error_json(e.status(), &scope).as_bytes())
                    .await;
                self.failed(protocol, source, &hint).await;
                return Err(AuthFailure::InvalidCredentials);
            }
        };
        let account = match self.store.account_for_address(&user).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                self.failed(protocol, source, &user).await;
                return Err(AuthFailure::InvalidCredentials);
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return Err(AuthFailure::Temporary);
            }
        };
        if account.is_admin && protocol.bars_administrators() {
            return Err(AuthFailure::Barred);
        }
        if !protocol.enabled_for(&account) {
            return Err(AuthFailure::ProtocolDisabled);
        }
        self.throttle.success(source.remote, &account.address);
        self.record(&account, protocol, source, true);
        Ok(Authenticated { account })
    }

    /// The login throttle (its settings change live).
    /// How long a verified password is remembered (see `verified`); zero
    /// turns the memory off.
    pub fn set_password_cache(&self, ttl: std::time::Duration) {
        self.verified.set_ttl(ttl);
    }

    pub fn throttle(&self) -> &Arc<throttle::Throttle> {
        &self.throttle
    }

    /// Counts a failed login: one log line in a form fail2ban and CrowdSec
    /// match (README, "Brute force and password spray"), the blocks it caused
    /// saved for every node, and the growing delay waited out.
    async fn failed(&self, protocol: Protocol, source: &LoginSource, login: &str) {
        tracing::warn!(
            target: "casella::auth",
            "authentication failed: remote={} user={} protocol={}",
            source.remote,
            log_safe(login),
            protocol.name()
        );
        let outcome = self.throttle.failure(source.remote, login);
        for b in outcome.new_blocks {
            let store = self.store.clone();
            tokio::spawn(async move {
                let stored = casella_store::StoredBlock {
                    key: b.key.to_key(),
                    until: b.until,
                    reason: b.reason,
                };
                if let Err(e) = store.save_block(stored).await {
                    tracing::warn!(error = %e, "saving a login block failed");
                }
            });
        }
        if !outcome.delay.is_zero() {
            tokio::time::sleep(outcome.delay).await;
        }
    }

    /// Refuses a login the throttle blocks (before any password is checked).
    fn blocked(&self, protocol: Protocol, source: &LoginSource, login: &str) -> bool {
        match self.throttle.check(source.remote, login) {
            throttle::Verdict::Allowed => false,
            throttle::Verdict::Blocked { until } => {
                tracing::warn!(
                    target: "casella::auth",
                    "authentication blocked: remote={} user={} protocol={} until={until}",
                    source.remote,
                    log_safe(login),
                    protocol.name()
                );
                true
            }
        }
    }

    pub fn store(&self) -> &Arc<dyn MailStore> {
        &self.store
    }

    /// Normalises a login name to the stored form: trimmed, lower-case.
    pub fn normalize(login: &str) -> String {
        login.trim().to_ascii_lowercase()
    }

    /// Checks a password login for `protocol`. Policy (`login_type` versus
    /// `tls_active`) is checked first, so no password is verified on a connection
    /// where it should never have been sent.
    pub async fn login_with_password(
        &self,
        protocol: Protocol,
        login_type: LoginType,
        tls_active: bool,
        login: &str,
        password: &Secret<String>,
        source: &LoginSource,
    ) -> Result<Authenticated, AuthFailure> {
        if !login_type.passwords_allowed(tls_active) {
            return Err(AuthFailure::EncryptionRequired);
        }
        let login = Self::normalize(login);
        if self.blocked(protocol, source, &login) {
            return Err(AuthFailure::Throttled);
        }
        if login.is_empty() || REFUSED_LOGINS.contains(&login.as_str()) {
            self.failed(protocol, source, &login).await;
            return Err(AuthFailure::Barred);
        }
        let account = match self.store.account_by_address(&login).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                // Spend the same time as a real check so timing does not reveal
                // which addresses exist.
                let _ = verify_password(DUMMY_HASH.to_string(), password.clone()).await;
                self.failed(protocol, source, &login).await;
                return Err(AuthFailure::InvalidCredentials);
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return Err(AuthFailure::Temporary);
            }
        };
        let main = if self
            .verified
            .matches(account.id, &account.password_hash, password)
        {
            true
        } else {
            let ok = verify_password(account.password_hash.clone(), password.clone()).await;
            if ok {
                self.verified
                    .remember(account.id, &account.password_hash, password);
            }
            ok
        };
        if !main && app_passwords::matching(&account, protocol, password).is_none() {
            self.verified.forget(account.id);
            self.record(&account, protocol, source, false);
            self.failed(protocol, source, &login).await;
            return Err(AuthFailure::InvalidCredentials);
        }
        self.throttle.success(source.remote, &login);
        if main && account.settings.scram.is_none() {
            // Accounts from before SCRAM get their keys at their next login.
            let mut updated = account.clone();
            let password = password.clone();
            let store = self.store.clone();
            tokio::spawn(async move {
                let secret =
                    tokio::task::spawn_blocking(move || scram::derive(password.expose())).await;
                if let Ok(secret) = secret {
                    updated.settings.scram = Some(secret);
                    if let Err(e) = store.update_account(&updated).await {
                        tracing::warn!(error = %e, "saving SCRAM keys failed");
                    }
                }
            });
        }
        // Checked after the password, so a wrong password does not reveal the
        // account's switches.
        if account.is_admin && protocol.bars_administrators() {
            return Err(AuthFailure::Barred);
        }
        if !protocol.enabled_for(&account) {
            return Err(AuthFailure::ProtocolDisabled);
        }
        self.record(&account, protocol, source, true);
        Ok(Authenticated { account })
    }

    /// Adds a login attempt to the account's history, in the background: the
    /// login does not wait for it.
    fn record(&self, account: &Account, protocol: Protocol, source: &LoginSource, success: bool) {
        let login = casella_store::LoginRecord {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            protocol: protocol.name().to_string(),
            remote: source.remote.to_string(),
            success,
            client: source.client.clone(),
        };
        self.history.add(account.id, login);
    }

    /// A login a front end handed over (it checked the password and the policy):
    /// no password here, but the account must still exist and its switches and
    /// the administrator bar still apply, in case they changed in between.
    pub async fn login_handed_over(
        &self,
        protocol: Protocol,
        address: &str,
    ) -> Result<Authenticated, AuthFailure> {
        let address = Self::normalize(address);
        let account = match self.store.account_by_address(&address).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(AuthFailure::InvalidCredentials),
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return Err(AuthFailure::Temporary);
            }
        };
        if account.is_admin && protocol.bars_administrators() {
            return Err(AuthFailure::Barred);
        }
        if !protocol.enabled_for(&account) {
            return Err(AuthFailure::ProtocolDisabled);
        }
        Ok(Authenticated { account })
    }

    /// Looks an account up for delivery by its address or one of its aliases;
    /// `None` when no such mailbox exists.
    pub async fn recipient(&self, address: &str) -> Result<Option<Account>, StoreError> {
        self.store
            .account_for_address(&Self::normalize(address))
            .await
    }

    /// Forgets the account's remembered passwords (see `verified`), so its next
    /// login pays a full password check: part of "sign out of all devices".
    pub fn forget_remembered_passwords(&self, account: casella_store::AccountId) {
        self.verified.forget(account);
    }
}

/// An argon2id hash of a random password, verified against when the user does not
/// exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3GcBHBNL1c08zFNyoaaSv+WHHk6Oh8XlLVaZu2GKPjY";
