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

#[path = "shared/search_case.rs"]
mod search_case;

use casella_imap::search::{SearchInput, SearchScope, matches, needs_parsed, needs_text};
use casella_proto_imap::SearchKey;
use casella_store::SearchFields;
use libfuzzer_sys::fuzz_target;
use search_case::SearchCase;

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
    let Some(case) = SearchCase::decode(data) else {
        return;
    };
    let parsed = casella_mime::parse(case.message);
    check(
        &case.key,
        &case.input(Some(&parsed.search)),
        &case.scope(),
        0,
    );
});
