//! casella-directory: who may log in, with what, over which protocol.
//!
//! Owns: password hashing (argon2id), credential checks, the login policy
//! (Exchange's LoginType, per-account protocol switches, barred accounts), and the
//! decoding of SASL PLAIN and LOGIN.
//! Must not: speak any protocol's syntax — sessions map [`AuthFailure`] to their own
//! replies — or log a password (they travel as [`Secret`]).

pub mod app_passwords;
mod history;
mod login;
pub mod oauth;
pub mod options;
mod password;
pub mod password_rules;
mod policy;
pub mod quota;
pub mod sasl;
pub mod scram;
mod secret;
pub mod throttle;
pub mod verified;

pub use login::{LoginContext, LoginSettings};
pub use password::{hash_password, verify_password};
pub use policy::{LoginType, Protocol};
pub use secret::Secret;

use std::sync::Arc;

use casella_store::{Account, Store, StoreError};

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
    /// The client cancelled the exchange (`*`; RFC 4954 §4, RFC 5034 §4,
    /// RFC 9051 §6.2.2): nothing was checked.
    Cancelled,
    /// A SASL message that could not be decoded (bad base64, bad syntax).
    Malformed,
    /// A mechanism this connection does not offer.
    UnsupportedMechanism,
    /// Passwords (basic authentication) are switched off for this protocol.
    BasicAuthDisabled,
    /// PLAIN with an authorization identity other than the login.
    OtherIdentity,
}

impl AuthFailure {
    /// Whether credentials were presented (and maybe checked): such a refusal
    /// waits the protocol's failure delay before it is answered.
    pub fn after_credentials(&self) -> bool {
        matches!(
            self,
            AuthFailure::InvalidCredentials
                | AuthFailure::ProtocolDisabled
                | AuthFailure::Barred
                | AuthFailure::Throttled
        )
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub account: Account,
    /// The login used one of the account's app passwords, not its password.
    pub app_password: bool,
}

/// Where a login comes from, for the account's login history.
#[derive(Debug, Clone)]
pub struct LoginSource {
    pub remote: std::net::IpAddr,
    /// The client's name (IMAP ID), when known.
    pub client: Option<String>,
}

/// Names that are never accepted as a login, whatever the store holds.
pub(crate) const REFUSED_LOGINS: &[&str] = &["anonymous", "guest", "ftp", "nobody"];

pub struct Directory {
    store: Arc<dyn Store>,
    throttle: Arc<throttle::Throttle>,
    history: history::LoginHistory,
    verified: verified::VerifiedPasswords,
    oauth: std::sync::RwLock<Option<Arc<oauth::TokenValidator>>>,
    /// The domain a login name without one is in (`alice` logs in as
    /// `alice@default-domain`); `None` when names must be whole addresses.
    default_domain: std::sync::RwLock<Option<String>>,
    /// The server's quota levels (`quota`).
    quota_defaults: std::sync::RwLock<casella_store::QuotaLimits>,
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

/// A name fit for one log field: up to its first space (what follows may be a
/// password typed on the wrong line), no control characters, at most 64
/// characters (it comes from the network).
pub(crate) fn log_safe(s: &str) -> String {
    let s = s.trim();
    let (name, cut) = match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], true),
        None => (s, false),
    };
    let mut out: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if cut {
        out.push_str("?…");
    }
    out
}

impl Directory {
    pub fn new(store: Arc<dyn Store>) -> Directory {
        Directory {
            history: history::LoginHistory::new(store.clone()),
            store,
            throttle: Arc::new(throttle::Throttle::default()),
            verified: verified::VerifiedPasswords::default(),
            oauth: std::sync::RwLock::new(None),
            default_domain: std::sync::RwLock::new(None),
            quota_defaults: std::sync::RwLock::new(casella_store::QuotaLimits::default()),
        }
    }

    /// Sets the domain of login names typed without one (`None`: none).
    pub fn set_default_domain(&self, domain: Option<String>) {
        let domain = domain
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .filter(|d| !d.is_empty());
        *self
            .default_domain
            .write()
            .unwrap_or_else(|e| e.into_inner()) = domain;
    }

    /// The address a typed login name stands for, in the stored form (see
    /// [`Directory::normalize`]), by the same rules for every mechanism and
    /// protocol: Exchange's `DOMAIN\alice` names `alice` (the Windows domain is
    /// not a mail domain), and a name without a domain is in the default
    /// domain when one is set (`alice` → `alice@example.org`, as Mail.ru and
    /// Yandex let their users log in). An alias's short name works as the
    /// alias does. The names refused outright (`anonymous`, `guest`…) stay
    /// as typed, so they are still refused as such.
    pub fn login_name(&self, typed: &str) -> String {
        let domain = self
            .default_domain
            .read()
            .unwrap_or_else(|e| e.into_inner());
        login_name_in(typed, domain.as_deref())
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

    /// The login throttle (its settings change live).
    /// How long a verified password is remembered (see `verified`); zero
    /// turns the memory off.
    pub fn set_password_cache(&self, ttl: std::time::Duration) {
        self.verified.set_ttl(ttl);
    }

    /// A service's max-connections-per-ip as it applies to `ip`: no limit for
    /// the trusted networks.
    pub fn connections_per_ip(&self, ip: std::net::IpAddr, max: usize) -> usize {
        if self.throttle.is_trusted(ip) {
            usize::MAX
        } else {
            max
        }
    }

    pub fn throttle(&self) -> &Arc<throttle::Throttle> {
        &self.throttle
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Normalises a login name to the stored form: trimmed, lower-case.
    pub fn normalize(login: &str) -> String {
        login.trim().to_ascii_lowercase()
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

/// [`Directory::login_name`] with `default_domain`.
fn login_name_in(typed: &str, default_domain: Option<&str>) -> String {
    let name = Directory::normalize(typed);
    let name = match name.rsplit_once('\\') {
        Some((_, user)) if !user.is_empty() => user.to_string(),
        _ => name,
    };
    match default_domain {
        Some(domain)
            if !name.is_empty()
                && !name.contains('@')
                && !REFUSED_LOGINS.contains(&name.as_str()) =>
        {
            format!("{name}@{domain}")
        }
        _ => name,
    }
}

/// An argon2id hash of a random password, verified against when the user does not
/// exist.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3GcBHBNL1c08zFNyoaaSv+WHHk6Oh8XlLVaZu2GKPjY";

#[cfg(test)]
mod log_tests {
    #[test]
    fn login_names_take_the_default_domain_and_drop_a_windows_domain() {
        use super::login_name_in as name;
        assert_eq!(name(" Alice ", None), "alice");
        assert_eq!(name("CORP\\Alice", None), "alice");
        assert_eq!(name("alice@example.org", None), "alice@example.org");
        let d = Some("example.org");
        assert_eq!(name("Alice", d), "alice@example.org");
        assert_eq!(name("CORP\\alice", d), "alice@example.org");
        assert_eq!(name("bob@other.test", d), "bob@other.test");
        assert_eq!(name("anonymous", d), "anonymous");
        assert_eq!(name("Guest", d), "guest");
        assert_eq!(name("", d), "");
        assert_eq!(name("CORP\\", d), "corp\\@example.org");
    }

    #[test]
    fn names_in_logs_stop_at_a_space() {
        assert_eq!(super::log_safe("alice@example.org"), "alice@example.org");
        assert_eq!(super::log_safe("alice hunter2"), "alice?…");
        assert_eq!(super::log_safe("a\u{7}b"), "a?b");
    }
}
