//! The login policy, as Exchange has it.

use casella_store::Account;
use serde::{Deserialize, Serialize};

/// Exchange's LoginType for POP3/IMAP (Set-PopSettings -LoginType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginType {
    /// Passwords accepted on cleartext connections.
    PlaintextLogin,
    /// Cleartext connections allowed, but passwords only after STLS/STARTTLS or on
    /// the TLS port.
    PlaintextAuthentication,
    /// Nothing is authenticated before TLS (the default).
    #[default]
    SecureLogin,
}

impl LoginType {
    /// May a password (USER/PASS, AUTH PLAIN/LOGIN) be used on this connection?
    pub fn passwords_allowed(self, tls_active: bool) -> bool {
        tls_active || self == LoginType::PlaintextLogin
    }

    pub fn parse(s: &str) -> Option<LoginType> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "plaintext-login" | "plaintextlogin" => Some(LoginType::PlaintextLogin),
            "plaintext-authentication" | "plaintextauthentication" => {
                Some(LoginType::PlaintextAuthentication)
            }
            "secure-login" | "securelogin" => Some(LoginType::SecureLogin),
            _ => None,
        }
    }
}

/// The protocols a user logs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Pop3,
    Imap,
    Submission,
    /// The users' web pages (and, for administrators, the admin pages).
    Web,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pop3 => "POP3",
            Protocol::Imap => "IMAP",
            Protocol::Submission => "SMTP",
            Protocol::Web => "Web",
        }
    }

    /// The administrator account may never use POP3 or IMAP (Exchange policy).
    pub fn bars_administrators(self) -> bool {
        matches!(self, Protocol::Pop3 | Protocol::Imap)
    }

    /// The per-account switch (Set-CASMailbox -PopEnabled …); nothing is enabled
    /// for a disabled account.
    pub fn enabled_for(self, account: &Account) -> bool {
        if account.settings.disabled {
            return false;
        }
        match self {
            Protocol::Pop3 => account.pop_enabled,
            Protocol::Imap => account.imap_enabled,
            Protocol::Submission => account.submission_enabled,
            Protocol::Web => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_types() {
        assert!(!LoginType::SecureLogin.passwords_allowed(false));
        assert!(LoginType::SecureLogin.passwords_allowed(true));
        assert!(!LoginType::PlaintextAuthentication.passwords_allowed(false));
        assert!(LoginType::PlaintextLogin.passwords_allowed(false));
        assert_eq!(
            LoginType::parse("PlainTextLogin"),
            Some(LoginType::PlaintextLogin)
        );
        assert_eq!(
            LoginType::parse("secure_login"),
            Some(LoginType::SecureLogin)
        );
        assert_eq!(LoginType::parse("nope"), None);
    }
}
