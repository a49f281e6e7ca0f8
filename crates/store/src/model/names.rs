//! Mailbox names as the store keeps them.

use crate::error::{StoreError, StoreResult};

/// `INBOX` is case-insensitive (RFC 9051 §5.1), also as the first level of a
/// hierarchy; every other name is kept as given.
pub fn canonical_name(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_string();
    }
    if let Some(rest) = name.get(..6)
        && rest.eq_ignore_ascii_case("INBOX/")
    {
        return format!("INBOX/{}", &name[6..]);
    }
    name.to_string()
}

/// Refuses empty names, empty hierarchy levels and control characters.
pub fn validate_mailbox_name(name: &str) -> StoreResult<()> {
    if name.is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.chars().any(|c| c.is_control())
    {
        return Err(StoreError::Invalid(format!("bad mailbox name {name:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_is_case_insensitive_and_other_names_are_kept() {
        assert_eq!(canonical_name("inbox"), "INBOX");
        assert_eq!(canonical_name("Inbox/Sub"), "INBOX/Sub");
        assert_eq!(canonical_name("Inboxes"), "Inboxes");
        assert_eq!(canonical_name("Sent Items"), "Sent Items");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "/a", "a/", "a//b", "a\u{7}"] {
            assert!(validate_mailbox_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_mailbox_name("a/b").is_ok());
    }
}
