//! SEARCH matching (issue 24): any search key the IMAP parser accepts,
//! evaluated against any message as delivery parses it.
//!
//! Never a panic, and the answers hold together: NOT is the opposite, OR of a
//! key and its opposite is everything, AND of a key with itself is the key;
//! BEFORE/SINCE (and SENTBEFORE/SENTSINCE) split messages between them; a key
//! that needs no parsed fields gives the same answer without them, one that
//! needs no header or body text the same answer without the text; strings
//! match whatever the case of their ASCII letters.
#![no_main]

use casella_imap::search::{SearchInput, SearchScope, matches, needs_parsed, needs_text};
use casella_proto_imap::{CommandBody, SearchKey, parse_command};
use casella_store::{Flag, FlagSet, SearchFields};
use libfuzzer_sys::fuzz_target;

/// `key` with every string in ASCII upper case.
fn upper(key: &SearchKey) -> SearchKey {
    let u = |s: &String| s.to_ascii_uppercase();
    match key {
        SearchKey::Bcc(s) => SearchKey::Bcc(u(s)),
        SearchKey::Body(s) => SearchKey::Body(u(s)),
        SearchKey::Cc(s) => SearchKey::Cc(u(s)),
        SearchKey::From(s) => SearchKey::From(u(s)),
        SearchKey::Header(n, v) => SearchKey::Header(u(n), u(v)),
        SearchKey::Keyword(s) => SearchKey::Keyword(u(s)),
        SearchKey::Subject(s) => SearchKey::Subject(u(s)),
        SearchKey::Text(s) => SearchKey::Text(u(s)),
        SearchKey::To(s) => SearchKey::To(u(s)),
        SearchKey::Unkeyword(s) => SearchKey::Unkeyword(u(s)),
        SearchKey::Not(k) => SearchKey::Not(Box::new(upper(k))),
        SearchKey::Or(a, b) => SearchKey::Or(Box::new(upper(a)), Box::new(upper(b))),
        SearchKey::And(keys) => SearchKey::And(keys.iter().map(upper).collect()),
        other => other.clone(),
    }
}

fn check(key: &SearchKey, msg: &SearchInput<'_>, scope: &SearchScope<'_>, depth: usize) {
    let m = matches(key, msg, scope);
    assert_eq!(
        matches(&SearchKey::Not(Box::new(key.clone())), msg, scope),
        !m
    );
    assert!(matches(
        &SearchKey::Or(
            Box::new(key.clone()),
            Box::new(SearchKey::Not(Box::new(key.clone())))
        ),
        msg,
        scope
    ));
    assert_eq!(
        matches(&SearchKey::And(vec![key.clone(), key.clone()]), msg, scope),
        m
    );
    assert_eq!(matches(&upper(key), msg, scope), m, "{key:?}");
    if let Some(fields) = msg.fields {
        if !needs_parsed(key) {
            let without = SearchInput {
                fields: None,
                ..*msg
            };
            assert_eq!(matches(key, &without, scope), m, "{key:?}");
        }
        if !needs_text(key) {
            let bare = SearchFields {
                header_text: String::new(),
                body_text: String::new(),
                ..fields.clone()
            };
            let without = SearchInput {
                fields: Some(&bare),
                ..*msg
            };
            assert_eq!(matches(key, &without, scope), m, "{key:?}");
        }
    }
    match key {
        SearchKey::Before(d) => {
            assert_ne!(m, matches(&SearchKey::Since(*d), msg, scope));
        }
        SearchKey::SentBefore(d) if msg.fields.is_some() => {
            assert_ne!(m, matches(&SearchKey::SentSince(*d), msg, scope));
        }
        _ => {}
    }
    if depth < 3 {
        match key {
            SearchKey::Not(k) => check(k, msg, scope, depth + 1),
            SearchKey::Or(a, b) => {
                check(a, msg, scope, depth + 1);
                check(b, msg, scope, depth + 1);
            }
            SearchKey::And(keys) => {
                for k in keys.iter().take(8) {
                    check(k, msg, scope, depth + 1);
                }
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(nul) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let (criteria, rest) = (&data[..nul], &data[nul + 1..]);
    let [bits, a, b, message @ ..] = rest else {
        return;
    };
    let mut line = b"t SEARCH ".to_vec();
    line.extend_from_slice(criteria);
    let Ok(command) = parse_command(&line) else {
        return;
    };
    let CommandBody::Search { criteria: key, .. } = command.body else {
        return;
    };
    let parsed = casella_mime::parse(message);
    let mut flags = FlagSet::new();
    for (bit, flag) in [
        Flag::Seen,
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Draft,
    ]
    .into_iter()
    .enumerate()
    {
        if bits & (1 << bit) != 0 {
            flags.insert(flag);
        }
    }
    if bits & 0x20 != 0 {
        flags.insert(Flag::Keyword("$Forwarded".into()));
    }
    let saved: Vec<u32> = (1..=u32::from(*b % 8)).map(|n| n * 3).collect();
    let scope = SearchScope {
        max_seq: u32::from(*a) + 1,
        max_uid: u32::from(*b) * 7 + 1,
        saved: &saved,
        // WITHIN's clock: fixed per input, so a run can be replayed.
        now: 1_700_000_000 + i64::from(*a) * 86_400,
    };
    let msg = SearchInput {
        seq: u32::from(*a % 16) + 1,
        uid: u32::from(*b % 32) * 3 + 1,
        flags: &flags,
        recent: bits & 0x40 != 0,
        size: message.len() as u32,
        internal_date: i64::from(i32::from_le_bytes([*a, *b, *bits, 0x60])),
        modseq: u64::from(*a),
        fields: Some(&parsed.search),
    };
    check(&key, &msg, &scope, 0);
});
