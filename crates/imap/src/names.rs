//! Mailbox names between the wire and the store: modified UTF-7 for IMAP4rev1
//! clients (RFC 3501 §5.1.3), UTF-8 once IMAP4rev2 or UTF8=ACCEPT is enabled
//! (RFC 9051 §5.1, RFC 6855 §3), and LIST pattern matching (RFC 9051 §6.3.9).

use casella_proto_imap::mutf7;

pub const SEPARATOR: char = '/';

/// The store's name for what the client sent.
pub fn from_wire(name: &str, utf8: bool) -> Result<String, String> {
    let name = if utf8 {
        name.to_string()
    } else {
        mutf7::decode(name)
            .map_err(|_| format!("Mailbox name {name:?} is not valid modified UTF-7"))?
    };
    // RFC 9051 §6.3.4: a trailing separator only declares intent; drop it.
    let trimmed = name.trim_end_matches(SEPARATOR);
    if trimmed.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    if let Some(rest) = trimmed.get(..6)
        && rest.eq_ignore_ascii_case("INBOX/")
    {
        return Ok(format!("INBOX/{}", &trimmed[6..]));
    }
    Ok(trimmed.to_string())
}

/// What the client sees for a store name.
pub fn to_wire(name: &str, utf8: bool) -> String {
    if utf8 {
        name.to_string()
    } else {
        mutf7::encode(name)
    }
}

/// RFC 9051 §6.3.9: `*` matches anything, `%` anything but the separator. INBOX is
/// matched case-insensitively.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('%', rest)) => {
                let mut i = 0;
                loop {
                    if go(rest, &n[i..]) {
                        return true;
                    }
                    if i == n.len() || n[i] == SEPARATOR {
                        return false;
                    }
                    i += 1;
                }
            }
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    if go(&p, &n) {
        return true;
    }
    // INBOX in any case in the pattern matches INBOX.
    if name == "INBOX" || name.starts_with("INBOX/") {
        let upper: String = pattern
            .char_indices()
            .map(|(i, c)| if i < 5 { c.to_ascii_uppercase() } else { c })
            .collect();
        let p: Vec<char> = upper.chars().collect();
        return go(&p, &n);
    }
    false
}

/// The reference and pattern joined (RFC 9051 §6.3.9: the reference is a prefix).
pub fn join_reference(reference: &str, pattern: &str) -> String {
    if reference.is_empty() || pattern.starts_with(SEPARATOR) {
        return pattern.to_string();
    }
    if reference.ends_with(SEPARATOR) {
        format!("{reference}{pattern}")
    } else {
        format!("{reference}{SEPARATOR}{pattern}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "a/b/c"));
        assert!(pattern_matches("%", "Drafts"));
        assert!(!pattern_matches("%", "a/b"));
        assert!(pattern_matches("a/%", "a/b"));
        assert!(!pattern_matches("a/%", "a/b/c"));
        assert!(pattern_matches("a*c", "a/b/c"));
        assert!(pattern_matches("inbox", "INBOX"));
        assert!(pattern_matches("Inbox/%", "INBOX/x"));
        assert!(
            !pattern_matches("drafts", "Drafts"),
            "other names are case-sensitive"
        );
        assert!(pattern_matches("%/%", "a/b"));
        assert!(pattern_matches("", "") && !pattern_matches("", "a"));
    }

    #[test]
    fn wire_names() {
        assert_eq!(from_wire("inbox", false).unwrap(), "INBOX");
        assert_eq!(from_wire("Projects/", false).unwrap(), "Projects");
        assert_eq!(join_reference("a", "b"), "a/b");
        assert_eq!(join_reference("a/", "%"), "a/%");
        assert_eq!(join_reference("", "x"), "x");
    }
}
