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

use casella_imap::fuzzing::{required_text, without_answered};
use casella_imap::search::{SearchInput, SearchScope, matches, needs_parsed, needs_text};
use casella_proto_imap::{CommandBody, parse_command};
use casella_store::fuzzing::TextIndexProbe;
use casella_store::{BlobId, Flag, FlagSet, SearchFields, TextField};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static PROBE: RefCell<TextIndexProbe> =
        RefCell::new(TextIndexProbe::new().expect("in-memory store and index"));
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
    let required = required_text(&key);
    if required.is_empty() {
        // Nothing for the index to narrow.
        return;
    }
    let indexed = bits & 0x80 == 0;
    let parsed = casella_mime::parse(message);
    PROBE.with_borrow_mut(|probe| {
        let fields = probe
            .store(parsed.search, indexed)
            .expect("store the message");
        let mut flags = FlagSet::new();
        for (bit, flag) in [Flag::Seen, Flag::Answered, Flag::Flagged, Flag::Deleted]
            .into_iter()
            .enumerate()
        {
            if bits & (1 << bit) != 0 {
                flags.insert(flag);
            }
        }
        let saved: Vec<u32> = (1..=u32::from(*b % 8)).map(|n| n * 3).collect();
        let scope = SearchScope {
            max_seq: u32::from(*a) + 1,
            max_uid: u32::from(*b) * 7 + 1,
            saved: &saved,
            now: 1_700_000_000 + i64::from(*a) * 86_400,
        };
        let base = SearchInput {
            seq: u32::from(*a % 16) + 1,
            uid: u32::from(*b % 32) * 3 + 1,
            flags: &flags,
            recent: bits & 0x40 != 0,
            size: message.len() as u32,
            internal_date: i64::from(i32::from_le_bytes([*a, *b, *bits, 0x60])),
            modseq: u64::from(*a),
            fields: None,
        };
        let full = matches(
            &key,
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
        let want_parsed = needs_parsed(&reduced) || (any_unindexed && needs_parsed(&key));
        let want_text = needs_text(&reduced) || (any_unindexed && needs_text(&key));
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
        let keys = if unindexed { &key } else { &reduced };
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
