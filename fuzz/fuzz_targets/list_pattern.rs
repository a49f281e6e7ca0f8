//! LIST/LSUB patterns and mailbox names (issue 24): any pattern against any
//! name answers without panic and in time linear in their product, and the
//! same as the simple recursive matcher where that one is cheap enough to ask;
//! mailbox names survive the trip to the store's form and back.
#![no_main]

use casella_proto_imap::names::{SEPARATOR, from_wire, join_reference, pattern_matches, to_wire};
use libfuzzer_sys::fuzz_target;

/// The recursive matcher of RFC 9051 §6.3.9 (exponential in the wildcards).
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

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, name) = text.split_once('\0').unwrap_or((&text, ""));
    let matched = pattern_matches(pattern, name);
    let wildcards = pattern.chars().filter(|c| matches!(c, '*' | '%')).count();
    if wildcards <= 4 && pattern.len() <= 24 && name.len() <= 24 && !name.starts_with("INBOX") {
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        assert_eq!(matched, reference(&p, &n), "{pattern:?} {name:?}");
    }
    // `*` matches every name; a name matches itself when it has no wildcard.
    assert!(pattern_matches("*", name));
    if !name.contains(['*', '%']) {
        assert!(pattern_matches(name, name));
    }
    let _ = join_reference(pattern, name);
    for utf8 in [false, true] {
        if let Ok(stored) = from_wire(name, utf8) {
            // What the store keeps goes to the wire and back unchanged.
            let wire = to_wire(&stored, utf8);
            assert_eq!(from_wire(&wire, utf8).ok(), Some(stored));
        }
    }
});
