//! Mailbox names between the wire and the store: modified UTF-7 for IMAP4rev1
//! clients (RFC 3501 §5.1.3), UTF-8 once IMAP4rev2 or UTF8=ACCEPT is enabled
//! (RFC 9051 §5.1, RFC 6855 §3), and LIST pattern matching (RFC 9051 §6.3.9).
//! No I/O: where large matching work runs is the session's choice.

use crate::mutf7;

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
///
/// Time O(|pattern| × |name|), memory O(|name|), whatever the wildcards: one
/// pass over the pattern keeps the set of name positions reachable so far
/// (no backtracking; the recursive matcher before this took 6.4 s for
/// `*a*a*a*a*a*a*a*a*a*ab` against a 40-character name, issue 24).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    if wildcard_match(pattern.chars(), &n) {
        return true;
    }
    // INBOX in any case in the pattern matches INBOX.
    if name == "INBOX" || name.starts_with("INBOX/") {
        let upper = pattern
            .char_indices()
            .map(|(i, c)| if i < 5 { c.to_ascii_uppercase() } else { c });
        return wildcard_match(upper, &n);
    }
    false
}

/// The matcher itself: `reachable[j]` says the pattern read so far can match
/// exactly `name[..j]`.
fn wildcard_match(pattern: impl Iterator<Item = char>, name: &[char]) -> bool {
    let mut reachable = vec![false; name.len() + 1];
    reachable[0] = true;
    let mut last = None;
    for pc in pattern {
        // `**` is `*`: skip the repeat (keeps adversarial patterns cheap).
        if pc == '*' && last == Some('*') {
            continue;
        }
        last = Some(pc);
        match pc {
            '*' => {
                let mut any = false;
                for r in reachable.iter_mut() {
                    any |= *r;
                    *r = any;
                }
            }
            '%' => {
                // From any reachable i, every j >= i with no separator in
                // name[i..j].
                let mut any = false;
                for j in 0..reachable.len() {
                    if j > 0 && name[j - 1] == SEPARATOR {
                        any = false;
                    }
                    any |= reachable[j];
                    reachable[j] = any;
                }
            }
            c => {
                for j in (1..reachable.len()).rev() {
                    reachable[j] = reachable[j - 1] && name[j - 1] == c;
                }
                reachable[0] = false;
            }
        }
        if !reachable.contains(&true) {
            return false;
        }
    }
    reachable[name.len()]
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

    /// The recursive matcher this one replaced, as the reference.
    fn reference(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..])),
            Some(('%', rest)) => {
                let mut i = 0;
                loop {
                    if reference(rest, &n[i..]) {
                        return true;
                    }
                    if i == n.len() || n[i] == SEPARATOR {
                        return false;
                    }
                    i += 1;
                }
            }
            Some((c, rest)) => n.first() == Some(c) && reference(rest, &n[1..]),
        }
    }

    #[test]
    fn the_same_answers_as_the_reference_on_random_names_and_patterns() {
        // A small xorshift: deterministic, no dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |m: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m as u64) as usize
        };
        let alphabet = ['a', 'b', '/', 'c'];
        let wild = ['a', 'b', '/', '*', '%', 'c'];
        for _ in 0..20_000 {
            let n: Vec<char> = (0..next(9)).map(|_| alphabet[next(4)]).collect();
            let p: Vec<char> = (0..next(8)).map(|_| wild[next(6)]).collect();
            let name: String = n.iter().collect();
            let pattern: String = p.iter().collect();
            assert_eq!(
                wildcard_match(pattern.chars(), &n),
                reference(&p, &n),
                "{pattern:?} against {name:?}"
            );
        }
    }

    #[test]
    fn adversarial_patterns_take_milliseconds() {
        let name: String = "a".repeat(40);
        for wildcard in ['*', '%'] {
            let mut pattern = String::new();
            for _ in 0..20 {
                pattern.push(wildcard);
                pattern.push('a');
            }
            pattern.push('b');
            let start = std::time::Instant::now();
            assert!(!pattern_matches(&pattern, &name));
            // A pattern as long as a command line, against a long name.
            let long: String = format!("{wildcard}a").repeat(5000) + "b";
            assert!(!pattern_matches(&long, &"a".repeat(1000)));
            let took = start.elapsed();
            assert!(took.as_millis() < 500, "{wildcard}: {took:?}");
        }
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
