//! casella-mime: everything IMAP and POP3 need to know about a message, computed
//! once at delivery with a real MIME parser (mail-parser), so no command ever
//! re-parses stored bytes.
//!
//! Owns: the typed ENVELOPE (RFC 9051 §7.5.2), the BODYSTRUCTURE tree with the byte
//! offsets of every part (for BODY[section] and BINARY[section]), and the decoded
//! header fields that SEARCH matches on, and the keys SORT and THREAD compare.
//! Must not: do I/O, know about mailboxes, or render IMAP syntax (that is the IMAP
//! protocol crate's job).
//! Invariant: `parse` never panics on any input and always returns a structure;
//! malformed MIME degrades to text/plain, as Dovecot does.

mod address;
mod date;
mod parse;
mod present;
mod sort_keys;
mod transfer;

pub use address::parse_address_list;
pub use date::{
    civil_from_days, days_from_civil, format_asctime, format_rfc5322_date, format_utc,
    month_number, parse_rfc5322_date,
};
pub use parse::parse;
pub use present::{Presentation, RetrievalFormat};
pub use sort_keys::{AddressKey, SortKeys, base_subject, msg_ids};
pub use transfer::encode_quoted_printable;

use serde::{Deserialize, Serialize};

/// The result of parsing one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedMessage {
    pub envelope: Envelope,
    pub body: BodyPart,
    pub search: SearchFields,
}

/// What FETCH needs of a parsed message: ENVELOPE and BODYSTRUCTURE with the
/// part offsets. Stored apart from the [`SearchFields`], which are as large as
/// the message's text and only SEARCH reads. Deserializes from a whole
/// `ParsedMessage` too (the extra field is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStructure {
    pub envelope: Envelope,
    pub body: BodyPart,
}

impl ParsedMessage {
    /// The structure for FETCH and the fields for SEARCH.
    pub fn split(self) -> (MessageStructure, SearchFields) {
        (
            MessageStructure {
                envelope: self.envelope,
                body: self.body,
            },
            self.search,
        )
    }
}

/// IMAP ENVELOPE fields — RFC 9051 §7.5.2. Strings are the raw header values
/// (encoded-words kept as they are, folding CRLF removed), as Dovecot returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// One element of an IMAP address list. Groups follow RFC 9051 §7.5.2: a start
/// marker with `mailbox = group name, host = None`, and an end marker with all
/// fields `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: Option<String>,
    pub adl: Option<String>,
    pub mailbox: Option<String>,
    pub host: Option<String>,
}

/// Byte offsets of a part within the whole message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartOffsets {
    /// First byte of the part's MIME header (for the top level: 0).
    pub header_start: u32,
    /// First byte of the part's body (after the blank line ending the header).
    pub body_start: u32,
    /// One past the last byte of the part's body.
    pub body_end: u32,
}

/// Content-Disposition: the value and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disposition {
    pub kind: String,
    pub params: Vec<(String, String)>,
}

/// One node of the BODYSTRUCTURE tree — RFC 9051 §7.5.2 (BODYSTRUCTURE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyPart {
    /// Lower-case type and subtype, e.g. "text", "plain"; "multipart", "mixed".
    pub media_type: String,
    pub media_subtype: String,
    /// Content-Type parameters in header order, names lower-cased.
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    /// Content-Transfer-Encoding, upper-case as IMAP examples show ("7BIT", "BASE64").
    pub encoding: String,
    /// Size of the body in octets (body_end - body_start).
    pub size: u32,
    /// Number of lines of the body, for text/* and message/rfc822 parts.
    pub lines: u32,
    pub md5: Option<String>,
    pub disposition: Option<Disposition>,
    pub language: Vec<String>,
    pub location: Option<String>,
    pub offsets: PartOffsets,
    /// Children of a multipart (empty otherwise).
    pub parts: Vec<BodyPart>,
    /// For message/rfc822 (and message/global): the enclosed message's envelope and body.
    pub message: Option<Box<(Envelope, BodyPart)>>,
}

/// Decoded (UTF-8) header values SEARCH matches on — RFC 9051 §6.4.4.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchFields {
    pub from: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    /// The Date: header as seconds since the Unix epoch (UTC), if it parses.
    pub sent_date: Option<i64>,
    /// Offset in seconds east of UTC of the Date: header (for SENTON etc. by the
    /// date in the sender's zone, as RFC 9051 §6.4.4 asks).
    pub sent_tz_offset: Option<i32>,
    /// The whole header block, unfolded and with encoded-words decoded, one field per
    /// line, for HEADER searches.
    pub header_text: String,
    /// Decoded text of all text/* parts (HTML stripped to text), for BODY/TEXT searches.
    pub body_text: String,
    /// What SORT and THREAD compare (RFC 5256, RFC 5957). `None` in rows stored
    /// before casella kept them: the store fills those in on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<SortKeys>,
}

/// The case fold SEARCH matches strings under (RFC 9051 §6.4.4 leaves it to
/// the server): per-character Unicode lower case, with final sigma (ς) folded
/// to σ so that word-final and upper-case Σ agree. A string matches where its
/// fold is a substring of the text's fold. The store's text index holds text
/// folded by this same function, so that it finds exactly what SEARCH does.
pub fn search_fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            for l in c.to_lowercase() {
                out.push(if l == 'ς' { 'σ' } else { l });
            }
        }
    }
    out
}

impl BodyPart {
    /// The top level of a message as far as its header goes — where the header
    /// ends and the body starts — found without parsing MIME. Enough for
    /// `BODY[HEADER]`, `BODY[HEADER.FIELDS (...)]` and `BODY[TEXT]` of the whole
    /// message; the other fields are those of an untyped text/plain part.
    pub fn top_level(raw: &[u8]) -> BodyPart {
        let body_start = header_end(raw);
        let len = raw.len().min(u32::MAX as usize) as u32;
        BodyPart {
            media_type: "text".into(),
            media_subtype: "plain".into(),
            params: Vec::new(),
            id: None,
            description: None,
            encoding: "7BIT".into(),
            size: len.saturating_sub(body_start),
            lines: 0,
            md5: None,
            disposition: None,
            language: Vec::new(),
            location: None,
            offsets: PartOffsets {
                header_start: 0,
                body_start,
                body_end: len,
            },
            parts: Vec::new(),
            message: None,
        }
    }
}

/// One past the empty line that ends the header (CRLF CRLF, or LF LF), or the end
/// of the message when there is none.
/// The length of the message's header block, the blank line that ends it
/// included (all of `raw` when there is no blank line).
pub fn header_len(raw: &[u8]) -> usize {
    header_end(raw) as usize
}

fn header_end(raw: &[u8]) -> u32 {
    let mut at_line_start = true;
    let mut i = 0;
    while i < raw.len() {
        if at_line_start {
            if raw[i..].starts_with(b"\r\n") {
                return (i + 2).min(u32::MAX as usize) as u32;
            }
            if raw[i] == b'\n' {
                return (i + 1).min(u32::MAX as usize) as u32;
            }
        }
        at_line_start = raw[i] == b'\n';
        i += 1;
    }
    raw.len().min(u32::MAX as usize) as u32
}

#[cfg(test)]
mod top_level_tests {
    use super::*;

    #[test]
    fn top_level_agrees_with_the_full_parse() {
        let samples: &[&[u8]] = &[
            b"Subject: a\r\nFrom: b@c\r\n\r\nbody\r\n",
            b"Subject: a\r\n folded\r\n\r\n\r\nbody after an empty line\r\n",
            b"Subject: no body\r\n",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\npart\r\n--x--\r\n",
            b"",
        ];
        for raw in samples {
            let fast = BodyPart::top_level(raw);
            let full = parse(raw).body;
            assert_eq!(
                fast.offsets,
                full.offsets,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
