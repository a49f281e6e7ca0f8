//! Per-account options (Exchange's Set-CASMailbox, and the user's own POP3
//! choices): one place that reads and writes them, for `casella account set`,
//! the admin API and the users' settings page.

use casella_mime::RetrievalFormat;
use casella_store::{Account, PopDeleteAction};

/// The keys `set` knows, as `casella account set` documents them.
pub const KEYS: &[&str] = &[
    "enabled",
    "pop",
    "imap",
    "submission",
    "save-sent",
    "retrieval-format",
    "suppress-read-receipt",
    "pop-folders",
    "pop-mark-read",
    "pop-dele",
    "retention-deleted-items",
    "retention-junk",
    "quota-warning",
    "quota-send",
    "quota-receive",
    "quota-messages",
];

/// A bad key or value, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(pub String);

fn on_off(key: &str, value: &str) -> Result<bool, OptionError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "$true" => Ok(true),
        "off" | "false" | "no" | "0" | "$false" => Ok(false),
        _ => Err(OptionError(format!("{key}: the value must be on or off"))),
    }
}

/// Checks an address for a new account or alias and returns its stored form
/// (trimmed, lower-case `local@domain`).
pub fn new_address(address: &str) -> Result<String, OptionError> {
    let a = address.trim().to_ascii_lowercase();
    let bad = || {
        OptionError(format!(
            "{address} is not a valid address (expected user@domain)"
        ))
    };
    let (local, domain) = a.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || !(domain.contains('.') || domain == "localhost")
        || domain.starts_with('.')
        || domain.ends_with('.')
        || a.matches('@').count() != 1
        || a.chars().any(|c| c.is_whitespace() || c.is_control())
        || a.len() > 254
    {
        return Err(bad());
    }
    Ok(a)
}

/// `default` (or empty) clears an override so the protocol setting applies.
fn is_default(value: &str) -> bool {
    let v = value.trim();
    v.is_empty() || v.eq_ignore_ascii_case("default")
}

/// Sets one option on `account` (not saved: the caller writes the account).
pub fn set(account: &mut Account, key: &str, value: &str) -> Result<(), OptionError> {
    let key = key.trim().to_ascii_lowercase();
    match key.as_str() {
        "enabled" => {
            let enabled = on_off(&key, value)?;
            if !enabled && !account.settings.disabled {
                // Switching an account off ends its web sessions for good:
                // switching it on again does not bring them back.
                account.settings.end_web_sessions();
            }
            account.settings.disabled = !enabled;
        }
        "pop" | "pop3" => account.pop_enabled = on_off(&key, value)?,
        "imap" => account.imap_enabled = on_off(&key, value)?,
        "submission" | "smtp" => account.submission_enabled = on_off(&key, value)?,
        "save-sent" => account.settings.save_sent_copy = on_off(&key, value)?,
        "retrieval-format" | "message-retrieval-format" => {
            account.settings.retrieval_format = if is_default(value) {
                None
            } else {
                Some(RetrievalFormat::parse(value).ok_or_else(|| {
                    OptionError(format!(
                        "{key}: best-body, text-only, html-only, html-and-text or default"
                    ))
                })?)
            }
        }
        "suppress-read-receipt" => {
            account.settings.suppress_read_receipt = if is_default(value) {
                None
            } else {
                Some(on_off(&key, value)?)
            }
        }
        "pop-folders" => {
            let folders: Vec<String> = value
                .split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect();
            if folders.is_empty() {
                return Err(OptionError(format!("{key}: at least one folder")));
            }
            if folders.iter().any(|f| f.chars().any(char::is_control)) {
                return Err(OptionError(format!("{key}: a folder name has no controls")));
            }
            let mut unique: Vec<String> = Vec::new();
            for f in folders {
                let f = if f.eq_ignore_ascii_case("inbox") {
                    "INBOX".to_string()
                } else {
                    f
                };
                if !unique.contains(&f) {
                    unique.push(f);
                }
            }
            account.settings.pop.folders = unique;
        }
        "pop-mark-read" => account.settings.pop.mark_read = on_off(&key, value)?,
        "pop-dele" => {
            account.settings.pop.delete_action = parse_dele(value).ok_or_else(|| {
                OptionError(format!(
                    "{key}: delete, move-to-deleted-items or hide-from-pop"
                ))
            })?
        }
        "retention-deleted-items" => account.settings.retention.deleted_items = days(&key, value)?,
        "retention-junk" => account.settings.retention.junk = days(&key, value)?,
        "quota-warning" | "issue-warning-quota" => {
            account.settings.quota.warning = size(&key, value)?
        }
        "quota-send" | "prohibit-send-quota" => account.settings.quota.send = size(&key, value)?,
        "quota-receive" | "prohibit-send-receive-quota" => {
            account.settings.quota.receive = size(&key, value)?
        }
        "quota-messages" => {
            account.settings.quota.messages = if is_default(value) {
                None
            } else if value.trim().eq_ignore_ascii_case("unlimited") {
                Some(0)
            } else {
                Some(value.trim().parse().map_err(|_| {
                    OptionError(format!("{key}: a number of messages, unlimited or default"))
                })?)
            }
        }
        other => {
            return Err(OptionError(format!(
                "unknown setting {other} ({}, backend)",
                KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

/// A size (`2GB`, `500MB`; `unlimited`), or `default` for the server's.
fn size(key: &str, value: &str) -> Result<Option<u64>, OptionError> {
    if is_default(value) {
        return Ok(None);
    }
    crate::quota::parse_size(value).map(Some).ok_or_else(|| {
        OptionError(format!(
            "{key}: a size such as 2GB or 500MB, unlimited, or default"
        ))
    })
}

fn format_limit(limit: Option<u64>, size: bool) -> String {
    match limit {
        None => "default".to_string(),
        Some(0) => "unlimited".to_string(),
        Some(n) if size => crate::quota::format_size(n),
        Some(n) => n.to_string(),
    }
}

/// Days (`30` or `30d`; `0` keeps for ever), or `default` for the server's.
fn days(key: &str, value: &str) -> Result<Option<u32>, OptionError> {
    if is_default(value) {
        return Ok(None);
    }
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('d').unwrap_or(&v);
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|d| *d <= 36_500)
        .map(Some)
        .ok_or_else(|| OptionError(format!("{key}: days such as 30 (0 keeps), or default")))
}

fn format_days(days: Option<u32>) -> String {
    match days {
        None => "default".to_string(),
        Some(0) => "0 (kept)".to_string(),
        Some(d) => format!("{d}d"),
    }
}

fn parse_dele(value: &str) -> Option<PopDeleteAction> {
    Some(match value.trim().to_ascii_lowercase().as_str() {
        "delete" | "expunge" => PopDeleteAction::Expunge,
        "move-to-deleted-items" | "move-to-trash" | "trash" => PopDeleteAction::MoveToTrash,
        "hide-from-pop" | "hide" | "keep" => PopDeleteAction::HideFromPop,
        _ => return None,
    })
}

pub fn dele_name(action: PopDeleteAction) -> &'static str {
    match action {
        PopDeleteAction::Expunge => "delete",
        PopDeleteAction::MoveToTrash => "move-to-deleted-items",
        PopDeleteAction::HideFromPop => "hide-from-pop",
    }
}

/// Every option with its current value, in `KEYS` order, as `account show`
/// prints them.
pub fn values(account: &Account) -> Vec<(&'static str, String)> {
    let on = |b: bool| if b { "on" } else { "off" }.to_string();
    let s = &account.settings;
    vec![
        ("enabled", on(!s.disabled)),
        ("pop", on(account.pop_enabled)),
        ("imap", on(account.imap_enabled)),
        ("submission", on(account.submission_enabled)),
        ("save-sent", on(s.save_sent_copy)),
        (
            "retrieval-format",
            s.retrieval_format
                .map_or("default".to_string(), |f| f.name().to_string()),
        ),
        (
            "suppress-read-receipt",
            s.suppress_read_receipt.map_or("default".to_string(), on),
        ),
        ("pop-folders", s.pop.folders.join(", ")),
        ("pop-mark-read", on(s.pop.mark_read)),
        ("pop-dele", dele_name(s.pop.delete_action).to_string()),
        (
            "retention-deleted-items",
            format_days(s.retention.deleted_items),
        ),
        ("retention-junk", format_days(s.retention.junk)),
        ("quota-warning", format_limit(s.quota.warning, true)),
        ("quota-send", format_limit(s.quota.send, true)),
        ("quota-receive", format_limit(s.quota.receive, true)),
        ("quota-messages", format_limit(s.quota.messages, false)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_store::{AccountId, AccountSettings};

    fn account() -> Account {
        Account {
            id: AccountId(1),
            address: "a@example.org".into(),
            password_hash: String::new(),
            is_admin: false,
            pop_enabled: true,
            imap_enabled: true,
            submission_enabled: true,
            settings: AccountSettings::default(),
        }
    }

    #[test]
    fn switching_an_account_off_ends_its_web_sessions() {
        let mut a = account();
        set(&mut a, "enabled", "on").unwrap();
        assert_eq!(
            a.settings.session_generation, 0,
            "no change, no new generation"
        );
        set(&mut a, "enabled", "off").unwrap();
        assert_eq!(a.settings.session_generation, 1);
        set(&mut a, "enabled", "off").unwrap();
        set(&mut a, "enabled", "on").unwrap();
        assert_eq!(a.settings.session_generation, 1);
        assert!(!a.settings.disabled);
    }

    #[test]
    fn options_round_trip() {
        let mut a = account();
        set(&mut a, "pop", "off").unwrap();
        set(&mut a, "retrieval-format", "TextOnly").unwrap();
        set(&mut a, "suppress-read-receipt", "on").unwrap();
        set(&mut a, "pop-folders", "inbox, Junk Email, INBOX").unwrap();
        set(&mut a, "pop-dele", "hide-from-pop").unwrap();
        let v = values(&a);
        assert!(v.contains(&("pop", "off".into())));
        assert!(v.contains(&("retrieval-format", "text-only".into())));
        assert!(v.contains(&("pop-folders", "INBOX, Junk Email".into())));
        assert!(v.contains(&("pop-dele", "hide-from-pop".into())));
        set(&mut a, "retention-deleted-items", "45d").unwrap();
        set(&mut a, "retention-junk", "0").unwrap();
        assert_eq!(a.settings.retention.deleted_items, Some(45));
        assert_eq!(a.settings.retention.junk, Some(0));
        assert!(set(&mut a, "retention-junk", "soon").is_err());
        set(&mut a, "retention-deleted-items", "default").unwrap();
        assert_eq!(a.settings.retention.deleted_items, None);
        set(&mut a, "quota-send", "2GB").unwrap();
        set(&mut a, "prohibit-send-receive-quota", "unlimited").unwrap();
        set(&mut a, "quota-messages", "1000").unwrap();
        assert_eq!(a.settings.quota.send, Some(2 << 30));
        assert_eq!(a.settings.quota.receive, Some(0));
        assert!(values(&a).contains(&("quota-send", "2 GB".into())));
        assert!(set(&mut a, "quota-warning", "big").is_err());
        set(&mut a, "retrieval-format", "default").unwrap();
        assert_eq!(a.settings.retrieval_format, None);
        assert!(set(&mut a, "imap", "maybe").is_err());
        assert!(set(&mut a, "pop-folders", " , ").is_err());
        assert!(set(&mut a, "colour", "red").is_err());
        assert_eq!(new_address(" Bob@Example.org ").unwrap(), "bob@example.org");
        assert!(new_address("bob").is_err());
        assert!(new_address("bob@@x.org").is_err());
        assert!(new_address("a b@x.org").is_err());
    }
}
