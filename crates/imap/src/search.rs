//! SEARCH evaluation — RFC 9051 §6.4.4; the rev1 keys NEW, OLD and RECENT from
//! RFC 3501 §6.4.4; MODSEQ from RFC 7162 §3.1.5; `$` from RFC 5182 §2.1;
//! OLDER and YOUNGER from RFC 5032 (WITHIN).
//!
//! Owns: deciding whether one message matches a search key.
//! Must not: read storage or write the wire. The session hands in what it knows
//! about each message ([`SearchInput`]) and about its view ([`SearchScope`]).
//! Invariant: pure and total — no panics, whatever the key or the message.
//!
//! Choices where the RFC leaves room (Dovecot's behaviour unless said otherwise):
//! - Strings match as case-insensitive substrings of decoded text. The fold is a
//!   per-character Unicode lower-casing with final sigma folded to sigma; unlike
//!   i;unicode-casemap it does not equate "ß" with "ss" or strip diacritics.
//! - FROM/TO/CC/BCC/SUBJECT and HEADER with an empty string match every message
//!   that has the field at all; BODY/TEXT with an empty string match every message.
//! - BEFORE/ON/SINCE use the UTC calendar date of INTERNALDATE (Dovecot uses the
//!   server's local zone; casella keeps no zone).
//! - SENT* use the Date: field's calendar date in the field's own zone. A message
//!   whose Date: is missing or does not parse counts as sent on 1970-01-01, as
//!   Dovecot does (it caches such a date as 0): it matches SENTBEFORE of any
//!   later date and never SENTSINCE of one.
//! - KEYWORD compares keywords ASCII case-insensitively (keywords are atoms).
//! - `$` means the saved UIDs both after UID and as a bare sequence set.
//! - OLDER n matches a message whose INTERNALDATE is more than n seconds before
//!   the search began, YOUNGER n one at most n seconds before it (or later):
//!   OLDER n is exactly NOT YOUNGER n (RFC 5032 §3).

use casella_proto_imap::{Date, SearchKey, SequenceSet};
use casella_store::{Flag, FlagSet, SearchFields};

/// What SEARCH needs to know about one message.
pub struct SearchInput<'a> {
    /// Message sequence number in this session's view.
    pub seq: u32,
    pub uid: u32,
    pub flags: &'a FlagSet,
    /// \Recent in this session (rev1).
    pub recent: bool,
    /// RFC822.SIZE.
    pub size: u32,
    /// INTERNALDATE, Unix seconds.
    pub internal_date: i64,
    /// The save date (RFC 8514), Unix seconds; 0 when unknown.
    pub save_date: i64,
    pub modseq: u64,
    /// The decoded fields parsed at delivery; `None` when [`needs_parsed`] is
    /// false for the key.
    pub fields: Option<&'a SearchFields>,
}

/// What SEARCH needs to know about the mailbox view.
pub struct SearchScope<'a> {
    /// Number of messages (the value of `*` for sequence numbers).
    pub max_seq: u32,
    /// Highest UID in the mailbox (the value of `*` for UIDs), 0 if empty.
    pub max_uid: u32,
    /// UIDs saved by `SEARCH RETURN (SAVE)` (RFC 5182), for `$`. Must be in
    /// ascending order (it is searched by bisection).
    pub saved: &'a [u32],
    /// When the search began, Unix seconds (for OLDER and YOUNGER).
    pub now: i64,
}

/// Whether evaluating `key` reads the header or body text (BODY, TEXT, HEADER,
/// and an empty FROM/TO/CC/BCC/SUBJECT, which asks whether the field exists),
/// not only the decoded address, subject and date fields.
pub fn needs_text(key: &SearchKey) -> bool {
    match key {
        SearchKey::Body(_) | SearchKey::Text(_) | SearchKey::Header(_, _) => true,
        SearchKey::Bcc(s)
        | SearchKey::Cc(s)
        | SearchKey::From(s)
        | SearchKey::Subject(s)
        | SearchKey::To(s) => s.is_empty(),
        SearchKey::Not(k) => needs_text(k),
        SearchKey::Or(a, b) => needs_text(a) || needs_text(b),
        SearchKey::And(keys) => keys.iter().any(needs_text),
        _ => false,
    }
}

/// Whether evaluating `key` reads header fields, body text or the Date: field,
/// i.e. whether the session must load [`SearchFields`] for each message. Flag,
/// size, INTERNALDATE, UID, sequence-number and MODSEQ searches do not.
pub fn needs_parsed(key: &SearchKey) -> bool {
    match key {
        SearchKey::Bcc(_)
        | SearchKey::Body(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::Header(_, _)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Subject(_)
        | SearchKey::Text(_)
        | SearchKey::To(_) => true,
        SearchKey::Not(k) => needs_parsed(k),
        SearchKey::Or(a, b) => needs_parsed(a) || needs_parsed(b),
        SearchKey::And(keys) => keys.iter().any(needs_parsed),
        SearchKey::All
        | SearchKey::Answered
        | SearchKey::Before(_)
        | SearchKey::Deleted
        | SearchKey::Draft
        | SearchKey::Flagged
        | SearchKey::Keyword(_)
        | SearchKey::Larger(_)
        | SearchKey::New
        | SearchKey::Old
        | SearchKey::On(_)
        | SearchKey::Recent
        | SearchKey::Seen
        | SearchKey::Since(_)
        | SearchKey::Smaller(_)
        | SearchKey::Uid(_)
        | SearchKey::Unanswered
        | SearchKey::Undeleted
        | SearchKey::Undraft
        | SearchKey::Unflagged
        | SearchKey::Unkeyword(_)
        | SearchKey::Unseen
        | SearchKey::SequenceSet(_)
        | SearchKey::ModSeq(_)
        | SearchKey::Older(_)
        | SearchKey::Younger(_)
        | SearchKey::SavedBefore(_)
        | SearchKey::SavedOn(_)
        | SearchKey::SavedSince(_)
        | SearchKey::SaveDateSupported => false,
    }
}

/// Whether the message matches `key`. A key that needs parsed metadata (see
/// [`needs_parsed`]) does not match a message given without it.
pub fn matches(key: &SearchKey, msg: &SearchInput<'_>, scope: &SearchScope<'_>) -> bool {
    let has = |flag: &Flag| msg.flags.contains(flag);
    match key {
        SearchKey::All => true,

        // Flags — RFC 9051 §6.4.4; RECENT/NEW/OLD — RFC 3501 §6.4.4.
        SearchKey::Answered => has(&Flag::Answered),
        SearchKey::Deleted => has(&Flag::Deleted),
        SearchKey::Draft => has(&Flag::Draft),
        SearchKey::Flagged => has(&Flag::Flagged),
        SearchKey::Seen => has(&Flag::Seen),
        SearchKey::Unanswered => !has(&Flag::Answered),
        SearchKey::Undeleted => !has(&Flag::Deleted),
        SearchKey::Undraft => !has(&Flag::Draft),
        SearchKey::Unflagged => !has(&Flag::Flagged),
        SearchKey::Unseen => !has(&Flag::Seen),
        SearchKey::Keyword(k) => has_keyword(msg.flags, k),
        SearchKey::Unkeyword(k) => !has_keyword(msg.flags, k),
        SearchKey::Recent => msg.recent,
        SearchKey::New => msg.recent && !has(&Flag::Seen),
        SearchKey::Old => !msg.recent,

        SearchKey::Larger(n) => msg.size > *n,
        SearchKey::Smaller(n) => msg.size < *n,

        // INTERNALDATE, date part only, disregarding time (RFC 9051 §6.4.4).
        SearchKey::Before(d) => date_of_unix(msg.internal_date) < *d,
        SearchKey::On(d) => date_of_unix(msg.internal_date) == *d,
        SearchKey::Since(d) => date_of_unix(msg.internal_date) >= *d,
        // RFC 5032 §3: by INTERNALDATE, relative to now, to the second.
        SearchKey::Older(n) => msg.internal_date < scope.now.saturating_sub(i64::from(*n)),
        SearchKey::Younger(n) => msg.internal_date >= scope.now.saturating_sub(i64::from(*n)),
        // RFC 8514 §5: the save date's date part, as BEFORE/ON/SINCE; a
        // message without one matches none of them.
        SearchKey::SavedBefore(d) => msg.save_date > 0 && date_of_unix(msg.save_date) < *d,
        SearchKey::SavedOn(d) => msg.save_date > 0 && date_of_unix(msg.save_date) == *d,
        SearchKey::SavedSince(d) => msg.save_date > 0 && date_of_unix(msg.save_date) >= *d,
        // Every mailbox keeps save dates.
        SearchKey::SaveDateSupported => true,

        // Date: field, date part in its own zone.
        SearchKey::SentBefore(d) => msg.fields.is_some_and(|p| sent_date(p) < *d),
        SearchKey::SentOn(d) => msg.fields.is_some_and(|p| sent_date(p) == *d),
        SearchKey::SentSince(d) => msg.fields.is_some_and(|p| sent_date(p) >= *d),

        SearchKey::From(s) => field_matches(msg, "From", |p| &p.from, s),
        SearchKey::To(s) => field_matches(msg, "To", |p| &p.to, s),
        SearchKey::Cc(s) => field_matches(msg, "Cc", |p| &p.cc, s),
        SearchKey::Bcc(s) => field_matches(msg, "Bcc", |p| &p.bcc, s),
        SearchKey::Subject(s) => field_matches(msg, "Subject", |p| &p.subject, s),
        SearchKey::Header(name, value) => msg
            .fields
            .is_some_and(|p| header_matches(&p.header_text, name, value)),
        SearchKey::Body(s) => msg.fields.is_some_and(|p| contains_folded(&p.body_text, s)),
        SearchKey::Text(s) => msg.fields.is_some_and(|p| {
            contains_folded(&p.header_text, s) || contains_folded(&p.body_text, s)
        }),

        SearchKey::Uid(set) => in_set(set, msg.uid, scope.max_uid, msg.uid, scope.saved),
        SearchKey::SequenceSet(set) => in_set(set, msg.seq, scope.max_seq, msg.uid, scope.saved),
        // RFC 7162 §3.1.5: mod-sequence equal to or greater than the value.
        SearchKey::ModSeq(n) => msg.modseq >= *n,

        SearchKey::Not(k) => !matches(k, msg, scope),
        SearchKey::Or(a, b) => matches(a, msg, scope) || matches(b, msg, scope),
        SearchKey::And(keys) => keys.iter().all(|k| matches(k, msg, scope)),
    }
}

/// The UTC calendar date of a Unix time (proleptic Gregorian, days-to-civil).
/// Years outside 0..=65535 clamp to the first or last representable day, which
/// keeps comparisons ordered.
pub fn date_of_unix(unix: i64) -> Date {
    let (year, month, day) = casella_mime::civil_from_days(unix.div_euclid(86_400));
    match u16::try_from(year) {
        // Both are in range by construction above.
        Ok(year) => Date {
            year,
            month: month as u8,
            day: day as u8,
        },
        Err(_) if year < 0 => Date {
            year: 0,
            month: 1,
            day: 1,
        },
        Err(_) => Date {
            year: u16::MAX,
            month: 12,
            day: 31,
        },
    }
}

/// The Date: field's calendar date in the sender's zone; 1970-01-01 when the
/// field is missing or unparseable (Dovecot's rule).
fn sent_date(p: &SearchFields) -> Date {
    let utc = p.sent_date.unwrap_or(0);
    let offset = p.sent_tz_offset.unwrap_or(0);
    date_of_unix(utc.saturating_add(i64::from(offset)))
}

fn has_keyword(flags: &FlagSet, keyword: &str) -> bool {
    flags
        .iter()
        .any(|f| matches!(f, Flag::Keyword(k) if k.eq_ignore_ascii_case(keyword)))
}

/// FROM/TO/CC/BCC/SUBJECT: substring of the decoded field; an empty string only
/// asks that the field exists.
fn field_matches(
    msg: &SearchInput<'_>,
    name: &str,
    decoded: impl Fn(&SearchFields) -> &String,
    needle: &str,
) -> bool {
    let Some(p) = msg.fields else {
        return false;
    };
    if needle.is_empty() {
        header_matches(&p.header_text, name, "")
    } else {
        contains_folded(decoded(p), needle)
    }
}

/// HEADER name value: any field called `name` (case-insensitive) whose decoded
/// value contains `value`; an empty value matches if the field exists at all.
fn header_matches(header_text: &str, name: &str, value: &str) -> bool {
    let needle = fold(value);
    // `header_text` holds one "Name: value" line per field. A decoded value that
    // itself contains a line break can only make a field look like two.
    header_text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .any(|(_, v)| needle.is_empty() || fold(v).contains(&needle))
}

fn contains_folded(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || fold(haystack).contains(&fold(needle))
}

/// The case fold for string matching; the store's text index folds by it too.
fn fold(s: &str) -> String {
    casella_mime::search_fold(s)
}

/// Membership in a sequence set: `n` against the ranges with `*` = `largest`, or
/// the message's UID against the saved result for `$`.
fn in_set(set: &SequenceSet, n: u32, largest: u32, uid: u32, saved: &[u32]) -> bool {
    match set {
        SequenceSet::Saved => {
            debug_assert!(saved.is_sorted(), "saved UIDs must be ascending");
            saved.binary_search(&uid).is_ok()
        }
        SequenceSet::Ranges(_) => set.contains(n, largest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_proto_imap::{SeqNumber, SeqRange};

    fn date(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    fn set(ranges: &[(Option<u32>, Option<u32>)]) -> SequenceSet {
        let num = |n: Option<u32>| n.map_or(SeqNumber::Last, SeqNumber::Value);
        SequenceSet::Ranges(
            ranges
                .iter()
                .map(|&(a, b)| SeqRange {
                    start: num(a),
                    end: num(b),
                })
                .collect(),
        )
    }

    fn one(n: u32) -> SequenceSet {
        set(&[(Some(n), Some(n))])
    }

    fn star() -> SequenceSet {
        set(&[(None, None)])
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    fn not(k: SearchKey) -> SearchKey {
        SearchKey::Not(Box::new(k))
    }

    fn or(a: SearchKey, b: SearchKey) -> SearchKey {
        SearchKey::Or(Box::new(a), Box::new(b))
    }

    const M1: &str = "Date: Mon, 11 Mar 2024 01:15:00 +0200\r\n\
        From: Alice Example <alice@example.com>\r\n\
        To: Bob <bob@example.org>\r\n\
        Cc: carol@example.net\r\n\
        Subject: Quarterly report\r\n\
        X-Priority: 1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        Numbers are up this quarter.\r\n";

    const M2: &str = "Date: Sun, 10 Mar 2024 20:00:00 -0500\r\n\
        From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\r\n\
        To: team@example.de\r\n\
        Bcc: boss@example.de\r\n\
        Subject: =?UTF-8?Q?=C3=9CBER_die_Gr=C3=BC=C3=9Fe?=\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
        \r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        Sch=C3=B6ne Gr=C3=BC=C3=9Fe aus M=C3=BCnchen\r\n\
        --b1--\r\n";

    // No Date:, no From:, an empty field, a folded subject, Greek capitals.
    const M3: &str = "To: dave@example.com\r\n\
        X-Empty:\r\n\
        Subject: Ping\r\n   pong\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        Kalimera \u{3A3}\u{39F}\u{3A6}\u{399}\u{391}\u{3A3}\r\n";

    struct Sample {
        seq: u32,
        uid: u32,
        flags: FlagSet,
        recent: bool,
        size: u32,
        internal_date: i64,
        modseq: u64,
        parsed: SearchFields,
    }

    fn samples() -> Vec<Sample> {
        let kw = |k: &str| Flag::Keyword(k.to_string());
        vec![
            Sample {
                seq: 1,
                uid: 10,
                flags: [Flag::Seen, Flag::Answered, kw("$Forwarded")].into(),
                recent: false,
                size: 500,
                internal_date: 1_710_113_400, // 2024-03-10 23:30:00 UTC
                modseq: 5,
                parsed: casella_mime::parse(M1.as_bytes()).search,
            },
            Sample {
                seq: 2,
                uid: 20,
                flags: [Flag::Flagged, Flag::Deleted, Flag::Draft, kw("Work")].into(),
                recent: true,
                size: 1500,
                internal_date: 1_710_115_200, // 2024-03-11 00:00:00 UTC
                modseq: 9,
                parsed: casella_mime::parse(M2.as_bytes()).search,
            },
            Sample {
                seq: 3,
                uid: 30,
                flags: [Flag::Seen].into(),
                recent: true,
                size: 100,
                internal_date: 1_704_067_199, // 2023-12-31 23:59:59 UTC
                modseq: 12,
                parsed: casella_mime::parse(M3.as_bytes()).search,
            },
        ]
    }

    fn input(m: &Sample) -> SearchInput<'_> {
        SearchInput {
            seq: m.seq,
            uid: m.uid,
            flags: &m.flags,
            recent: m.recent,
            size: m.size,
            internal_date: m.internal_date,
            // Saved a day after it arrived.
            save_date: m.internal_date + 86_400,
            modseq: m.modseq,
            fields: Some(&m.parsed),
        }
    }

    const SAVED: &[u32] = &[10, 30];

    fn scope() -> SearchScope<'static> {
        SearchScope {
            max_seq: 3,
            max_uid: 30,
            saved: SAVED,
            now: 1_710_115_260, // 2024-03-11 00:01:00 UTC
        }
    }

    /// Sequence numbers of the samples that match `key`.
    fn run(key: &SearchKey, samples: &[Sample]) -> Vec<u32> {
        samples
            .iter()
            .filter(|m| matches(key, &input(m), &scope()))
            .map(|m| m.seq)
            .collect()
    }

    #[test]
    fn samples_parse_as_expected() {
        let m = samples();
        assert_eq!(m[1].parsed.subject, "ÜBER die Grüße");
        assert!(m[1].parsed.from.contains("Jürgen Müller"));
        assert!(m[1].parsed.body_text.contains("Schöne Grüße"));
        assert_eq!(m[2].parsed.sent_date, None);
        assert_eq!(m[2].parsed.subject, "Ping pong");
    }

    #[test]
    fn key_table() {
        use SearchKey as K;
        let table: Vec<(SearchKey, &[u32])> = vec![
            (K::All, &[1, 2, 3]),
            // Flags.
            (K::Answered, &[1]),
            (K::Unanswered, &[2, 3]),
            (K::Deleted, &[2]),
            (K::Undeleted, &[1, 3]),
            (K::Draft, &[2]),
            (K::Undraft, &[1, 3]),
            (K::Flagged, &[2]),
            (K::Unflagged, &[1, 3]),
            (K::Seen, &[1, 3]),
            (K::Unseen, &[2]),
            (K::Keyword(s("$forwarded")), &[1]),
            (K::Keyword(s("WORK")), &[2]),
            (K::Keyword(s("nope")), &[]),
            (K::Unkeyword(s("work")), &[1, 3]),
            (K::Unkeyword(s("nope")), &[1, 2, 3]),
            (K::Recent, &[2, 3]),
            (K::New, &[2]),
            (K::Old, &[1]),
            // Sizes: strictly larger / smaller.
            (K::Larger(500), &[2]),
            (K::Larger(499), &[1, 2]),
            (K::Smaller(500), &[3]),
            (K::Smaller(501), &[1, 3]),
            // INTERNALDATE by UTC date.
            (K::Before(date(2024, 3, 11)), &[1, 3]),
            (K::Before(date(2024, 1, 1)), &[3]),
            (K::Before(date(2023, 12, 31)), &[]),
            (K::On(date(2024, 3, 10)), &[1]),
            (K::On(date(2024, 3, 11)), &[2]),
            (K::On(date(2023, 12, 31)), &[3]),
            (K::Since(date(2024, 3, 11)), &[2]),
            (K::Since(date(2024, 3, 10)), &[1, 2]),
            (K::Since(date(2024, 3, 12)), &[]),
            // RFC 8514 save dates (a day after INTERNALDATE here), by UTC date.
            (K::SavedOn(date(2024, 3, 11)), &[1]),
            (K::SavedOn(date(2024, 3, 12)), &[2]),
            (K::SavedBefore(date(2024, 3, 12)), &[1, 3]),
            (K::SavedSince(date(2024, 3, 12)), &[2]),
            (K::SaveDateSupported, &[1, 2, 3]),
            // Date: by the sender's calendar date; none = 1970-01-01.
            (K::SentOn(date(2024, 3, 11)), &[1]),
            (K::SentOn(date(2024, 3, 10)), &[2]),
            (K::SentOn(date(1970, 1, 1)), &[3]),
            (K::SentBefore(date(2024, 3, 11)), &[2, 3]),
            (K::SentBefore(date(1970, 1, 1)), &[]),
            (K::SentSince(date(2024, 3, 11)), &[1]),
            (K::SentSince(date(2024, 3, 10)), &[1, 2]),
            (K::SentSince(date(1970, 1, 1)), &[1, 2, 3]),
            // Address and subject fields, decoded, case-insensitive.
            (K::From(s("alice")), &[1]),
            (K::From(s("ALICE@EXAMPLE.COM")), &[1]),
            (K::From(s("jürgen")), &[2]),
            (K::From(s("JÜRGEN MÜLLER")), &[2]),
            (K::From(s("")), &[1, 2]),
            (K::To(s("bob")), &[1]),
            (K::To(s("team@")), &[2]),
            (K::To(s("example")), &[1, 2, 3]),
            (K::To(s("")), &[1, 2, 3]),
            (K::Cc(s("CAROL")), &[1]),
            (K::Cc(s("")), &[1]),
            (K::Bcc(s("Boss")), &[2]),
            (K::Bcc(s("")), &[2]),
            (K::Subject(s("report")), &[1]),
            (K::Subject(s("über")), &[2]),
            (K::Subject(s("grüße")), &[2]),
            (K::Subject(s("ping pong")), &[3]),
            (K::Subject(s("")), &[1, 2, 3]),
            // HEADER: any field of that name; "" = field present.
            (K::Header(s("x-priority"), s("1")), &[1]),
            (K::Header(s("X-PRIORITY"), s("")), &[1]),
            (K::Header(s("X-Priority"), s("2")), &[]),
            (K::Header(s("x-empty"), s("")), &[3]),
            (K::Header(s("Subject"), s("über DIE")), &[2]),
            (K::Header(s("date"), s("+0200")), &[1]),
            (K::Header(s("Date"), s("")), &[1, 2]),
            (K::Header(s("X-Missing"), s("")), &[]),
            (K::Header(s("Content-Type"), s("multipart")), &[2]),
            // BODY: text parts only; TEXT: header and body.
            (K::Body(s("numbers")), &[1]),
            (K::Body(s("quarterly")), &[]),
            (K::Body(s("schöne grüße")), &[2]),
            (K::Body(s("SCHÖNE")), &[2]),
            (K::Body(s("Content-Transfer-Encoding")), &[]),
            (K::Body(s("σοφιας")), &[3]),
            (K::Body(s("ΣΟΦΙΑΣ")), &[3]),
            // The simple fold does not equate ß with SS.
            (K::Body(s("GRÜSSE")), &[]),
            (K::Body(s("")), &[1, 2, 3]),
            (K::Text(s("quarterly")), &[1]),
            (K::Text(s("NUMBERS")), &[1]),
            (K::Text(s("münchen")), &[2]),
            (K::Text(s("dave@")), &[3]),
            (K::Text(s("absent")), &[]),
            // UID sets; `*` = highest UID, `n:*` with n > max is max:n.
            (K::Uid(one(20)), &[2]),
            (K::Uid(one(21)), &[]),
            (K::Uid(star()), &[3]),
            (K::Uid(set(&[(Some(25), None)])), &[3]),
            (K::Uid(set(&[(Some(40), None)])), &[3]),
            (K::Uid(set(&[(Some(1), Some(15))])), &[1]),
            (
                K::Uid(set(&[(Some(15), Some(1)), (Some(20), Some(20))])),
                &[1, 2],
            ),
            (K::Uid(SequenceSet::Saved), &[1, 3]),
            // Message numbers; `*` = message count.
            (K::SequenceSet(one(2)), &[2]),
            (K::SequenceSet(star()), &[3]),
            (K::SequenceSet(set(&[(Some(5), None)])), &[3]),
            (K::SequenceSet(set(&[(Some(2), Some(1))])), &[1, 2]),
            (
                K::SequenceSet(set(&[(Some(1), Some(1)), (Some(3), Some(3))])),
                &[1, 3],
            ),
            (K::SequenceSet(SequenceSet::Saved), &[1, 3]),
            // WITHIN: seconds before "now" (2024-03-11 00:01:00 UTC).
            (K::Younger(60), &[2]),
            (K::Younger(59), &[]),
            (K::Older(60), &[1, 3]),
            (K::Older(59), &[1, 2, 3]),
            (K::Younger(1_860), &[1, 2]),
            (K::Older(1_860), &[3]),
            (not(K::Younger(60)), &[1, 3]),
            // MODSEQ: equal or greater.
            (K::ModSeq(0), &[1, 2, 3]),
            (K::ModSeq(9), &[2, 3]),
            (K::ModSeq(13), &[]),
            // NOT, OR, AND, nested.
            (not(K::Seen), &[2]),
            (not(not(K::All)), &[1, 2, 3]),
            (not(K::All), &[]),
            (or(K::Flagged, K::Smaller(200)), &[2, 3]),
            (not(or(K::From(s("alice")), K::Keyword(s("work")))), &[3]),
            (K::And(vec![K::Recent, not(K::Draft)]), &[3]),
            (
                K::And(vec![K::Seen, K::Larger(400), K::Body(s("quarter"))]),
                &[1],
            ),
            (K::And(vec![]), &[1, 2, 3]),
            (
                or(
                    not(K::Uid(SequenceSet::Saved)),
                    K::And(vec![K::Seen, K::Larger(400)]),
                ),
                &[1, 2],
            ),
            (
                or(
                    or(K::SequenceSet(one(1)), K::SequenceSet(one(2))),
                    not(K::All),
                ),
                &[1, 2],
            ),
            (
                K::And(vec![
                    not(K::Deleted),
                    or(K::SentOn(date(1970, 1, 1)), K::Header(s("cc"), s("net"))),
                ]),
                &[1, 3],
            ),
        ];
        let m = samples();
        let mut failures = Vec::new();
        for (key, want) in &table {
            let got = run(key, &m);
            if got != *want {
                failures.push(format!("{key:?}: want {want:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn star_and_saved_in_an_empty_view() {
        // With no messages `*` resolves to 0, which no real number equals.
        let flags = FlagSet::new();
        let msg = SearchInput {
            seq: 1,
            uid: 1,
            flags: &flags,
            recent: false,
            size: 0,
            internal_date: 0,
            save_date: 0,
            modseq: 1,
            fields: None,
        };
        let empty = SearchScope {
            max_seq: 0,
            max_uid: 0,
            saved: &[],
            now: 0,
        };
        assert!(!matches(&SearchKey::Uid(star()), &msg, &empty));
        assert!(!matches(&SearchKey::SequenceSet(star()), &msg, &empty));
        assert!(!matches(&SearchKey::Uid(SequenceSet::Saved), &msg, &empty));
        assert!(!matches(
            &SearchKey::SequenceSet(SequenceSet::Saved),
            &msg,
            &empty
        ));
        // `1:*` still covers 1 (it is 0:1).
        let from_one = set(&[(Some(1), None)]);
        assert!(matches(&SearchKey::Uid(from_one), &msg, &empty));
    }

    #[test]
    fn string_keys_do_not_match_without_parsed_data() {
        let m = samples();
        let mut msg = input(&m[0]);
        msg.fields = None;
        for key in [
            SearchKey::From(s("alice")),
            SearchKey::Subject(s("")),
            SearchKey::Header(s("Date"), s("")),
            SearchKey::Body(s("")),
            SearchKey::Text(s("numbers")),
            SearchKey::SentOn(date(2024, 3, 11)),
        ] {
            assert!(!matches(&key, &msg, &scope()), "{key:?}");
        }
        assert!(matches(&SearchKey::Seen, &msg, &scope()));
    }

    #[test]
    fn text_is_read_only_for_body_text_header_and_empty_field_keys() {
        for key in [
            SearchKey::Body(s("x")),
            SearchKey::Text(s("x")),
            SearchKey::Header(s("X-Spam"), s("")),
            SearchKey::From(s("")),
            SearchKey::Not(Box::new(SearchKey::Subject(s("")))),
            SearchKey::And(vec![SearchKey::Seen, SearchKey::Body(s("x"))]),
        ] {
            assert!(needs_text(&key), "{key:?}");
        }
        for key in [
            SearchKey::From(s("ann")),
            SearchKey::Subject(s("hello")),
            SearchKey::Or(
                Box::new(SearchKey::To(s("bob"))),
                Box::new(SearchKey::Cc(s("carl"))),
            ),
            SearchKey::SentSince(date(2026, 1, 1)),
            SearchKey::Seen,
        ] {
            assert!(!needs_text(&key), "{key:?}");
        }
    }

    #[test]
    fn needs_parsed_only_for_header_body_and_sent_keys() {
        use SearchKey as K;
        let d = date(2024, 1, 1);
        let parsed = [
            K::Bcc(s("x")),
            K::Body(s("")),
            K::Cc(s("x")),
            K::From(s("x")),
            K::Header(s("X"), s("")),
            K::SentBefore(d),
            K::SentOn(d),
            K::SentSince(d),
            K::Subject(s("x")),
            K::Text(s("x")),
            K::To(s("x")),
            not(K::Body(s("x"))),
            or(K::Seen, K::To(s("x"))),
            or(K::To(s("x")), K::Seen),
            K::And(vec![K::Seen, not(or(K::Draft, K::SentOn(d)))]),
        ];
        for key in &parsed {
            assert!(needs_parsed(key), "{key:?}");
        }
        let plain = [
            K::All,
            K::Answered,
            K::Before(d),
            K::Deleted,
            K::Draft,
            K::Flagged,
            K::Keyword(s("x")),
            K::Larger(1),
            K::New,
            K::Old,
            K::On(d),
            K::Recent,
            K::Seen,
            K::Since(d),
            K::Smaller(1),
            K::Uid(star()),
            K::Unanswered,
            K::Undeleted,
            K::Undraft,
            K::Unflagged,
            K::Unkeyword(s("x")),
            K::Unseen,
            K::SequenceSet(SequenceSet::Saved),
            K::ModSeq(1),
            not(K::Seen),
            or(K::Seen, K::Larger(5)),
            K::And(vec![K::Seen, not(or(K::Draft, K::On(d)))]),
            K::And(vec![]),
        ];
        for key in &plain {
            assert!(!needs_parsed(key), "{key:?}");
        }
    }

    #[test]
    fn date_of_unix_known_answers() {
        assert_eq!(date_of_unix(0), date(1970, 1, 1));
        assert_eq!(date_of_unix(86_399), date(1970, 1, 1));
        assert_eq!(date_of_unix(86_400), date(1970, 1, 2));
        assert_eq!(date_of_unix(-1), date(1969, 12, 31));
        assert_eq!(date_of_unix(-86_400), date(1969, 12, 31));
        assert_eq!(date_of_unix(-86_401), date(1969, 12, 30));
        assert_eq!(date_of_unix(951_825_600), date(2000, 2, 29));
        assert_eq!(date_of_unix(1_710_115_200), date(2024, 3, 11));
        assert_eq!(date_of_unix(1_704_067_199), date(2023, 12, 31));
        // 0000-03-01 is day -719468; 9999-12-31 is day 2932896.
        assert_eq!(date_of_unix(-719_468 * 86_400), date(0, 3, 1));
        assert_eq!(date_of_unix(2_932_896 * 86_400), date(9999, 12, 31));
        // Out of range clamps, keeping order.
        assert_eq!(date_of_unix(i64::MIN), date(0, 1, 1));
        assert_eq!(date_of_unix(i64::MAX), date(u16::MAX, 12, 31));
    }

    #[test]
    fn date_of_unix_agrees_with_counting_days() {
        fn days_in_month(y: u16, m: u8) -> u8 {
            match m {
                2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            }
        }
        // Walk day by day from 1600-01-01 to 2400-12-31.
        let mut want = date(1600, 1, 1);
        let mut day = -135_140_i64; // days from 1970-01-01 back to 1600-01-01
        while want.year <= 2400 {
            assert_eq!(date_of_unix(day * 86_400), want, "day {day}");
            assert_eq!(date_of_unix(day * 86_400 + 86_399), want, "day {day}");
            day += 1;
            want.day += 1;
            if want.day > days_in_month(want.year, want.month) {
                want.day = 1;
                want.month += 1;
                if want.month > 12 {
                    want.month = 1;
                    want.year += 1;
                }
            }
        }
    }

    #[test]
    fn fold_is_case_insensitive_for_non_ascii() {
        assert_eq!(fold("ÜBER"), "über");
        assert_eq!(fold("ΟΔΟΣ"), fold("οδος"));
        assert_eq!(fold("ΟΔΟΣ"), fold("οδοσ"));
        assert!(contains_folded("Ein Brief ÜBER Grüße", "über grü"));
        assert!(contains_folded("anything", ""));
        assert!(!contains_folded("", "x"));
    }
}
