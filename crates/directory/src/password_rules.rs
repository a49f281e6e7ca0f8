//! The rules a new password must meet, and setting one: every place that sets
//! a password (`casella account add` / `passwd`, the admin API, the admin pages,
//! the user's "change password") goes through [`set_password`] or at least
//! [`check`], so the rules are the same everywhere.
//!
//! The rules are NIST SP 800-63B §3.1.1.2's floor, nothing more: at least
//! [`MIN_LENGTH`] characters, not blank, and not the account's own address or
//! its user name (the first guess of any attacker). No composition rules: they
//! make passwords harder to remember, not to guess.

use casella_store::Account;

use crate::{Secret, hash_password, scram};

/// The shortest password accepted, in characters.
pub const MIN_LENGTH: usize = 8;

/// Why a password was refused; the message is meant for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRuleError {
    #[error("the password must be at least {MIN_LENGTH} characters long")]
    TooShort,
    #[error("the password must not be only spaces")]
    Blank,
    #[error("the password must not be the email address or its user name")]
    SameAsAddress,
}

/// Checks `password` as the new password of `address`.
pub fn check(address: &str, password: &str) -> Result<(), PasswordRuleError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordRuleError::TooShort);
    }
    let trimmed = password.trim();
    if trimmed.is_empty() {
        return Err(PasswordRuleError::Blank);
    }
    let address = address.trim();
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    if trimmed.eq_ignore_ascii_case(address)
        || trimmed.to_lowercase() == address.to_lowercase()
        || trimmed.eq_ignore_ascii_case(local)
        || trimmed.to_lowercase() == local.to_lowercase()
    {
        return Err(PasswordRuleError::SameAsAddress);
    }
    Ok(())
}

/// Why a new password was not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetPasswordError {
    #[error("{0}")]
    Rule(#[from] PasswordRuleError),
    /// Hashing failed (never the user's fault).
    #[error("the password could not be hashed: {0}")]
    Hash(String),
}

/// Checks the rules, then makes `password` the account's password: its
/// argon2id hash, its SCRAM-SHA-256 keys, and a new web-session generation, so
/// the account's web sessions end (the caller starts a fresh one for the user
/// who changed it). The account is not saved. Slow by design (argon2): call it
/// on a blocking thread.
pub fn set_password(
    account: &mut Account,
    password: &Secret<String>,
) -> Result<(), SetPasswordError> {
    check(&account.address, password.expose())?;
    account.password_hash = hash_password(password).map_err(SetPasswordError::Hash)?;
    account.settings.scram = Some(scram::derive(password.expose()));
    account.settings.end_web_sessions();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let a = "mario+test@example.org";
        assert_eq!(check(a, "x"), Err(PasswordRuleError::TooShort));
        assert_eq!(check(a, "   "), Err(PasswordRuleError::TooShort));
        assert_eq!(check(a, "1234567"), Err(PasswordRuleError::TooShort));
        assert_eq!(check(a, "        "), Err(PasswordRuleError::Blank));
        assert_eq!(
            check(a, "Mario+Test@Example.org"),
            Err(PasswordRuleError::SameAsAddress)
        );
        assert_eq!(
            check(a, "MARIO+TEST"),
            Err(PasswordRuleError::SameAsAddress)
        );
        assert_eq!(
            check(a, " mario+test "),
            Err(PasswordRuleError::SameAsAddress)
        );
        assert_eq!(check(a, "12345678"), Ok(()));
        assert_eq!(check(a, "mario+test!"), Ok(()));
        // Eight characters, not eight bytes.
        assert_eq!(check(a, "pässwörd"), Ok(()));
        assert_eq!(check(a, "pässwö"), Err(PasswordRuleError::TooShort));
        assert!(
            PasswordRuleError::TooShort
                .to_string()
                .contains("at least 8 characters")
        );
    }
}
