//! SEARCH's narrowing by the text index (issue 24): any criteria the IMAP
//! parser accepts, any message as delivery parses it, stored in an in-memory
//! store and read by the store's own indexer (or left unindexed).
//!
//! SEARCH asks the index which messages contain each text its criteria require
//! (`required_text`), looks only at those (and at the ones not indexed yet),
//! and checks an indexed one against the criteria without the keys the index
//! answered (`without_answered`), the index's answer being exact. So: the
//! narrowing never drops a message the full match finds, and the narrowed
//! answer is the full match's.
//!
//! Input: as search_match's — criteria, a NUL, three bytes (flags and view),
//! the message; bit 0x80 of the first byte leaves the message unindexed.
#![no_main]

use std::cell::RefCell;

#[path = "shared/search_case.rs"]
mod search_case;

use casella_imap::fuzzing::{required_text, without_answered};
use casella_imap::search::{SearchInput, matches, needs_parsed, needs_text};
use casella_store::fuzzing::TextIndexProbe;
use casella_store::{BlobId, SearchFields, TextField};
use libfuzzer_sys::fuzz_target;
use search_case::SearchCase;

thread_local! {
    static PROBE: RefCell<TextIndexProbe> =
        RefCell::new(TextIndexProbe::new().expect("in-memory store and index"));
}

fuzz_target!(|data: &[u8]| {
    let Some(case) = SearchCase::decode(data) else {
        return;
    };
    let key = &case.key;
    let required = required_text(key);
    if required.is_empty() {
        // Nothing for the index to narrow.
        return;
    }
    let indexed = case.bits & 0x80 == 0;
    let parsed = casella_mime::parse(case.message);
    PROBE.with_borrow_mut(|probe| {
        let fields = probe
            .store(parsed.search, indexed)
            .expect("store the message");
        let scope = case.scope();
        let base = case.input(None);
        let full = matches(
            key,
            &SearchInput {
                fields: Some(&fields),
                ..base
            },
            &scope,
        );

        // As `Session::matching` narrows, for this one message.
        let blob = BlobId(TextIndexProbe::BLOB.to_string());
        let mut kept: Option<bool> = None;
        let mut unindexed = false;
        let mut answered: Vec<(TextField, String)> = Vec::new();
        for (field, needle) in &required {
            let Some(found) = probe
                .text_candidates(*field, needle)
                .expect("ask the index")
            else {
                continue;
            };
            assert_eq!(
                found.unindexed.contains(&blob),
                !indexed,
                "unindexed: {:?}",
                found.unindexed
            );
            let has = found.matched.contains(&blob);
            assert!(!(has && !indexed), "an unindexed message among the matches");
            assert!(
                !full || has || !indexed,
                "{field:?} {needle:?}: the index drops a message that {key:?} matches: {fields:?}"
            );
            unindexed |= found.unindexed.contains(&blob);
            kept = Some(kept.unwrap_or(true) && has);
            answered.push((*field, needle.to_string()));
        }
        let reduced = without_answered(key.clone(), &answered);
        let looked_at = kept.is_none_or(|k| k || unindexed);
        let any_unindexed = kept.is_some() && unindexed;
        let want_parsed = needs_parsed(&reduced) || (any_unindexed && needs_parsed(key));
        let want_text = needs_text(&reduced) || (any_unindexed && needs_text(key));
        let read = SearchFields {
            header_text: if want_text {
                fields.header_text.clone()
            } else {
                String::new()
            },
            body_text: if want_text {
                fields.body_text.clone()
            } else {
                String::new()
            },
            ..fields.clone()
        };
        let keys = if unindexed { key } else { &reduced };
        let narrowed = looked_at
            && matches(
                keys,
                &SearchInput {
                    fields: want_parsed.then_some(&read),
                    ..base
                },
                &scope,
            );
        assert_eq!(
            narrowed, full,
            "{key:?} narrowed to {keys:?} (answered {answered:?}): {fields:?}"
        );
    });
});
