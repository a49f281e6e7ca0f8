//! One SEARCH case decoded from fuzz input, shared by search_match and
//! search_text_narrowing (included with `#[path]`; not a target itself).
//!
//! Input: the criteria, a NUL, three bytes (`bits` for flags and the view, `a`
//! and `b` for numbers), then the message.

use casella_imap::search::{SearchInput, SearchScope};
use casella_proto_imap::{CommandBody, SearchKey, parse_command};
use casella_store::{Flag, FlagSet, SearchFields};

pub struct SearchCase<'a> {
    pub key: SearchKey,
    /// Bits 0–4 system flags, 0x20 a keyword, 0x40 \Recent; 0x80 is left to
    /// the target.
    pub bits: u8,
    a: u8,
    b: u8,
    pub message: &'a [u8],
    pub flags: FlagSet,
    saved: Vec<u32>,
}

impl<'a> SearchCase<'a> {
    /// `None` when the input has no NUL, is too short, or its criteria are not
    /// a SEARCH the parser accepts.
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let nul = data.iter().position(|&b| b == 0)?;
        let (criteria, rest) = (&data[..nul], &data[nul + 1..]);
        let [bits, a, b, message @ ..] = rest else {
            return None;
        };
        let mut line = b"t SEARCH ".to_vec();
        line.extend_from_slice(criteria);
        let CommandBody::Search { criteria: key, .. } = parse_command(&line).ok()?.body else {
            return None;
        };
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
        Some(SearchCase {
            key,
            bits: *bits,
            a: *a,
            b: *b,
            message,
            flags,
            saved: (1..=u32::from(*b % 8)).map(|n| n * 3).collect(),
        })
    }

    pub fn scope(&self) -> SearchScope<'_> {
        SearchScope {
            max_seq: u32::from(self.a) + 1,
            max_uid: u32::from(self.b) * 7 + 1,
            saved: &self.saved,
            // WITHIN's clock: fixed per input, so a run can be replayed.
            now: 1_700_000_000 + i64::from(self.a) * 86_400,
        }
    }

    /// The message as SEARCH sees it, with `fields` as given.
    pub fn input<'s>(&'s self, fields: Option<&'s SearchFields>) -> SearchInput<'s> {
        SearchInput {
            seq: u32::from(self.a % 16) + 1,
            uid: u32::from(self.b % 32) * 3 + 1,
            flags: &self.flags,
            recent: self.bits & 0x40 != 0,
            size: self.message.len() as u32,
            internal_date: i64::from(i32::from_le_bytes([self.a, self.b, self.bits, 0x60])),
            // Saved some days after it arrived, or unknown (0) now and then.
            save_date: if self.bits & 0x20 != 0 {
                0
            } else {
                i64::from(i32::from_le_bytes([self.a, self.b, self.bits, 0x61]))
            },
            modseq: u64::from(self.a),
            fields,
        }
    }
}
