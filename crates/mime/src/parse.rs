//! The one-pass parse of a stored message: the MIME tree with exact byte offsets,
//! the ENVELOPE of the message and of every message/rfc822 part, and the decoded
//! text SEARCH needs.
//!
//! The tree is cut straight from the raw bytes with Dovecot's rules (see
//! `header.rs`), so `BODY[section]` slices and `BODYSTRUCTURE` agree with what
//! Dovecot serves. mail-parser does the decoding (encoded-words, charsets,
//! base64, HTML); its own part tree is not used because its boundary search does
//! not require boundaries at the start of a line and it parses encoded
//! message/rfc822 parts from decoded copies, whose offsets are not offsets into
//! the stored message.
//!
//! Limits (beyond them the message still parses, the rest is flattened):
//! nesting depth `MAX_DEPTH`, part count `MAX_PARTS`; `body_text` and
//! `header_text` are capped at `TEXT_CAP` bytes.

mod header;
mod params;
pub(crate) mod text;

use crate::address::{MISSING_DOMAIN, MISSING_MAILBOX};
use crate::{
    Address, BodyPart, Disposition, Envelope, ParsedMessage, PartOffsets, SearchFields,
    parse_address_list, parse_rfc5322_date,
};
use header::{Boundary, Field, find_boundary, scan_header, unfold};
use text::{decode_body, decode_words, to_text, truncate_chars};

/// Deepest nesting of multiparts and message/rfc822 parts that is parsed; deeper
/// parts become leaves. Each level is two levels of JSON when the result is
/// stored, and serde_json refuses to read back more than 128, so this stays well
/// below 64 (real mail nests a handful of levels).
const MAX_DEPTH: usize = 50;
/// Most parts in one message; later parts are not split out.
const MAX_PARTS: usize = 10_000;
/// Cap on `SearchFields::body_text` and `header_text`.
const TEXT_CAP: usize = 1 << 20;

/// Parses a whole message. Never panics, whatever the input: malformed MIME
/// degrades to text/plain and the structure always covers the message.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    // Defence in depth: the parser is written not to panic (and is tested on
    // every prefix of its samples and on random bytes), but a message from the
    // network must never take the delivery path down.
    std::panic::catch_unwind(|| parse_message(raw)).unwrap_or_else(|_| fallback(raw))
}

fn parse_message(raw: &[u8]) -> ParsedMessage {
    let mut walker = Walker {
        raw,
        parts: 0,
        texts: Vec::new(),
    };
    let mut stack = Vec::new();
    let root = walker.part(0, &mut stack, PartContext::TopLevel, 0);
    let envelope = envelope(&root.fields);
    let mut search = search_fields(raw, &root.fields, &walker.texts);
    let references = first_value(&root.fields, "References");
    search.sort = Some(crate::SortKeys::new(
        &envelope,
        &search.subject,
        references.as_deref(),
    ));
    ParsedMessage {
        envelope,
        body: root.part,
        search,
    }
}

/// What a panic would leave: the whole message as one text/plain body.
fn fallback(raw: &[u8]) -> ParsedMessage {
    let len = offset(raw.len());
    ParsedMessage {
        envelope: Envelope::default(),
        body: leaf_text_plain(PartOffsets {
            header_start: 0,
            body_start: 0,
            body_end: len,
        }),
        search: SearchFields {
            sort: Some(crate::SortKeys::default()),
            ..SearchFields::default()
        },
    }
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Where a part sits, which decides its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartContext {
    /// The message itself, or the message inside a message/rfc822 part: Content-*
    /// fields count only with MIME-Version or Content-Type (RFC 2045 §4).
    TopLevel,
    /// A body part of a multipart: always MIME (RFC 2046 §5.1).
    Child,
    /// A body part of multipart/digest: default type message/rfc822 (§5.1.5).
    DigestChild,
}

/// A text/* leaf to decode for `body_text`.
struct TextRef {
    start: usize,
    end: usize,
    encoding: String,
    charset: Option<String>,
    html: bool,
}

struct PartOut<'a> {
    part: BodyPart,
    fields: Vec<Field<'a>>,
    /// `part.offsets.body_end`, unclamped.
    body_end: usize,
    /// The boundary line that ended this part; `None` at the end of input.
    end: Option<Boundary>,
}

struct Walker<'a> {
    raw: &'a [u8],
    parts: usize,
    texts: Vec<TextRef>,
}

impl<'a> Walker<'a> {
    /// Parses the part whose header starts at `start`, up to the next boundary
    /// line from `stack` (the boundaries of the enclosing multiparts) or the end.
    fn part(
        &mut self,
        start: usize,
        stack: &mut Vec<Vec<u8>>,
        ctx: PartContext,
        depth: usize,
    ) -> PartOut<'a> {
        let raw = self.raw;
        self.parts += 1;
        let hb = scan_header(raw, start, stack);
        let mut part = describe(&hb.fields, ctx);
        let body_start = hb.body_start;
        let flatten = depth >= MAX_DEPTH || self.parts >= MAX_PARTS;
        let kind = if part.media_type == "multipart" {
            Kind::Multipart
        } else if part.media_type == "message"
            && matches!(part.media_subtype.as_str(), "rfc822" | "global")
        {
            Kind::Message
        } else {
            Kind::Leaf
        };

        let (body_end, end) = match (hb.cut_by, kind) {
            // A boundary cut the header short: no body at all.
            (Some(b), Kind::Multipart) => {
                part.parts.push(empty_part(body_start));
                (body_start, Some(b))
            }
            (Some(b), Kind::Message) => {
                part.message = Some(Box::new((Envelope::default(), empty_part(body_start))));
                (body_start, Some(b))
            }
            (Some(b), Kind::Leaf) => (body_start, Some(b)),

            (None, Kind::Multipart) => {
                let boundary = param(&part.params, "boundary").unwrap_or_default();
                if flatten || boundary.is_empty() {
                    // Not parseable as a multipart: Dovecot reports it with a
                    // single empty text/plain child.
                    let found = find_boundary(raw, body_start, stack);
                    part.parts.push(empty_part(body_start));
                    (found.map_or(raw.len(), |b| b.end), found)
                } else {
                    let child_ctx = if part.media_subtype == "digest" {
                        PartContext::DigestChild
                    } else {
                        PartContext::Child
                    };
                    let (children, body_end, end) =
                        self.multipart(body_start, boundary.into_bytes(), stack, child_ctx, depth);
                    part.parts = children;
                    if part.parts.is_empty() {
                        part.parts.push(empty_part(body_start));
                    }
                    (body_end, end)
                }
            }
            (None, Kind::Message) if !flatten => {
                let inner = self.part(body_start, stack, PartContext::TopLevel, depth + 1);
                let env = envelope(&inner.fields);
                part.message = Some(Box::new((env, inner.part)));
                (inner.body_end, inner.end)
            }
            (None, Kind::Message) => {
                // Too deep: the enclosed message becomes one text/plain body.
                let found = find_boundary(raw, body_start, stack);
                let body_end = found.map_or(raw.len(), |b| b.end);
                let mut inner = leaf_text_plain(PartOffsets {
                    header_start: offset(body_start),
                    body_start: offset(body_start),
                    body_end: offset(body_end),
                });
                inner.lines = count_lines(&raw[body_start..body_end]);
                part.message = Some(Box::new((Envelope::default(), inner)));
                (body_end, found)
            }
            (None, Kind::Leaf) => {
                let found = find_boundary(raw, body_start, stack);
                (found.map_or(raw.len(), |b| b.end), found)
            }
        };

        let body = &raw[body_start..body_end];
        part.offsets = PartOffsets {
            header_start: offset(start),
            body_start: offset(body_start),
            body_end: offset(body_end),
        };
        part.size = offset(body.len());
        if part.media_type == "text" || kind == Kind::Message {
            part.lines = count_lines(body);
        }
        if part.media_type == "text" {
            self.texts.push(TextRef {
                start: body_start,
                end: body_end,
                encoding: part.encoding.clone(),
                charset: param(&part.params, "charset"),
                html: part.media_subtype == "html",
            });
        }
        PartOut {
            part,
            fields: hb.fields,
            body_end,
            end,
        }
    }

    /// The children of a multipart whose body starts at `body_start`. Returns
    /// them with the end of the multipart's body and the boundary that ended it.
    fn multipart(
        &mut self,
        body_start: usize,
        boundary: Vec<u8>,
        stack: &mut Vec<Vec<u8>>,
        child_ctx: PartContext,
        depth: usize,
    ) -> (Vec<BodyPart>, usize, Option<Boundary>) {
        let raw = self.raw;
        let own = stack.len();
        stack.push(boundary);
        let mut children = Vec::new();
        // The preamble runs to the first boundary line.
        let mut found = find_boundary(raw, body_start, stack);
        let result = loop {
            let Some(b) = found else {
                break (raw.len(), None);
            };
            if b.idx < own {
                // An enclosing multipart's boundary: this one ends unclosed.
                break (b.end, Some(b));
            }
            if b.close {
                // "--boundary--": the epilogue runs to an enclosing boundary.
                stack.truncate(own);
                let after = find_boundary(raw, b.next, stack);
                break (after.map_or(raw.len(), |a| a.end), after);
            }
            if self.parts >= MAX_PARTS {
                // Too many parts: skip this one without describing it.
                found = find_boundary(raw, b.next, stack);
                continue;
            }
            let child = self.part(b.next, stack, child_ctx, depth + 1);
            children.push(child.part);
            found = child.end;
        };
        stack.truncate(own);
        (children, result.0, result.1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Multipart,
    Message,
    Leaf,
}

/// RFC 9051 §7.5.2 body-fld-lines: the LF count, plus one for a last line
/// without a line break.
fn count_lines(body: &[u8]) -> u32 {
    let lf = body.iter().filter(|&&b| b == b'\n').count();
    let partial = usize::from(body.last().is_some_and(|&b| b != b'\n'));
    offset(lf + partial)
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// The text/plain part with default fields.
fn leaf_text_plain(offsets: PartOffsets) -> BodyPart {
    BodyPart {
        media_type: "text".into(),
        media_subtype: "plain".into(),
        params: vec![("charset".into(), "us-ascii".into())],
        id: None,
        description: None,
        encoding: "7BIT".into(),
        size: offsets.body_end.saturating_sub(offsets.body_start),
        lines: 0,
        md5: None,
        disposition: None,
        language: Vec::new(),
        location: None,
        offsets,
        parts: Vec::new(),
        message: None,
    }
}

/// An empty text/plain part at `pos` (stands in for a missing child).
fn empty_part(pos: usize) -> BodyPart {
    let pos = offset(pos);
    leaf_text_plain(PartOffsets {
        header_start: pos,
        body_start: pos,
        body_end: pos,
    })
}

/// The value of the first field called `name`, unfolded and trimmed.
fn first_value(fields: &[Field<'_>], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|f| f.is(name))
        .map(|f| to_text(&unfold(f.value)))
}

/// The BODYSTRUCTURE fields of a part from its header (offsets, size and lines
/// are filled in by the caller). Only the first of each Content-* field counts.
fn describe(fields: &[Field<'_>], ctx: PartContext) -> BodyPart {
    let is_mime = ctx != PartContext::TopLevel
        || fields
            .iter()
            .any(|f| f.is("MIME-Version") || f.is("Content-Type"));
    let get = |name: &str| {
        if is_mime {
            first_value(fields, name)
        } else {
            None
        }
    };

    let mut part = leaf_text_plain(PartOffsets::default());
    let content_type = get("Content-Type").and_then(|v| params::content_type(&v));
    match content_type {
        Some(ct) => {
            part.media_type = ct.media_type;
            part.media_subtype = ct.media_subtype;
            part.params = ct.params;
        }
        None if ctx == PartContext::DigestChild => {
            part.media_type = "message".into();
            part.media_subtype = "rfc822".into();
            part.params = Vec::new();
        }
        None => part.params = Vec::new(),
    }
    // Dovecot reports charset=us-ascii (the RFC 2045 §5.2 default) for every
    // text part that names none.
    if part.media_type == "text" && !part.params.iter().any(|(n, _)| n == "charset") {
        part.params.push(("charset".into(), "us-ascii".into()));
    }
    part.id = get("Content-ID");
    part.description = get("Content-Description");
    part.encoding = get("Content-Transfer-Encoding")
        .and_then(|v| params::transfer_encoding(&v))
        .unwrap_or_else(|| "7BIT".into());
    part.md5 = get("Content-MD5");
    part.disposition = get("Content-Disposition")
        .and_then(|v| params::disposition(&v))
        .map(|(kind, params)| Disposition { kind, params });
    part.language = get("Content-Language")
        .map(|v| params::languages(&v))
        .unwrap_or_default();
    part.location = get("Content-Location");
    part
}

/// ENVELOPE — RFC 9051 §7.5.2. Raw values (encoded-words kept), first occurrence
/// of each field; Sender and Reply-To default to From when absent or empty.
fn envelope(fields: &[Field<'_>]) -> Envelope {
    let addresses = |name: &str| {
        first_value(fields, name)
            .map(|v| parse_address_list(&v))
            .unwrap_or_default()
    };
    let from = addresses("From");
    let mut sender = addresses("Sender");
    if sender.is_empty() {
        sender = from.clone();
    }
    let mut reply_to = addresses("Reply-To");
    if reply_to.is_empty() {
        reply_to = from.clone();
    }
    Envelope {
        date: first_value(fields, "Date"),
        subject: first_value(fields, "Subject"),
        from,
        sender,
        reply_to,
        to: addresses("To"),
        cc: addresses("Cc"),
        bcc: addresses("Bcc"),
        in_reply_to: first_value(fields, "In-Reply-To"),
        message_id: first_value(fields, "Message-ID"),
    }
}

/// SEARCH fields — RFC 9051 §6.4.4: decoded header values and body text.
fn search_fields(raw: &[u8], fields: &[Field<'_>], texts: &[TextRef]) -> SearchFields {
    let addresses = |name: &str| {
        first_value(fields, name)
            .map(|v| format_addresses(&parse_address_list(&v)))
            .unwrap_or_default()
    };
    let date = first_value(fields, "Date").and_then(|d| parse_rfc5322_date(&d));

    let mut header_text = String::new();
    for f in fields {
        if header_text.len() >= TEXT_CAP {
            break;
        }
        header_text.push_str(to_text(f.name).trim());
        header_text.push_str(": ");
        header_text.push_str(&decode_words(&to_text(&unfold(f.value))));
        header_text.push('\n');
    }
    truncate_chars(&mut header_text, TEXT_CAP);

    let mut body_text = String::new();
    for t in texts {
        if body_text.len() >= TEXT_CAP {
            break;
        }
        if !body_text.is_empty() {
            body_text.push('\n');
        }
        // Four input bytes per output byte left covers base64, quoted-printable
        // and UTF-16; the result is cut to size below anyway.
        let budget = (TEXT_CAP - body_text.len()).saturating_mul(4);
        body_text.push_str(&decode_body(
            &raw[t.start..t.end],
            &t.encoding,
            t.charset.as_deref(),
            t.html,
            budget,
        ));
    }
    truncate_chars(&mut body_text, TEXT_CAP);

    SearchFields {
        from: addresses("From"),
        to: addresses("To"),
        cc: addresses("Cc"),
        bcc: addresses("Bcc"),
        subject: first_value(fields, "Subject")
            .map(|s| decode_words(&s))
            .unwrap_or_default(),
        sent_date: date.map(|(t, _)| t),
        sent_tz_offset: date.map(|(_, z)| z),
        header_text,
        body_text,
        sort: None,
    }
}

/// "Name <a@b>, c@d, Group: e@f;" with display names decoded.
fn format_addresses(list: &[Address]) -> String {
    let mut out = String::new();
    let mut in_group = false;
    let mut group_first = false;
    for a in list {
        let is_group_start = a.host.is_none() && a.mailbox.is_some() && a.name.is_none();
        let is_group_end = a.mailbox.is_none() && a.host.is_none();
        if is_group_end {
            if in_group {
                out.push(';');
                in_group = false;
            }
            continue;
        }
        if !out.is_empty() && !group_first {
            out.push_str(", ");
        }
        group_first = false;
        if is_group_start && !in_group {
            out.push_str(&decode_words(a.mailbox.as_deref().unwrap_or_default()));
            out.push_str(": ");
            in_group = true;
            group_first = true;
            continue;
        }
        let spec = addr_spec(a);
        match a.name.as_deref().map(decode_words) {
            Some(name) if !name.is_empty() && !spec.is_empty() => {
                out.push_str(&name);
                out.push_str(" <");
                out.push_str(&spec);
                out.push('>');
            }
            Some(name) if !name.is_empty() => out.push_str(&name),
            _ => out.push_str(&spec),
        }
    }
    out
}

/// "mailbox@host", leaving out the placeholders for missing pieces.
fn addr_spec(a: &Address) -> String {
    let mailbox = a.mailbox.as_deref().filter(|m| *m != MISSING_MAILBOX);
    let host = a.host.as_deref().filter(|h| *h != MISSING_DOMAIN);
    match (mailbox, host) {
        (Some(m), Some(h)) => format!("{m}@{h}"),
        (Some(m), None) => m.to_string(),
        (None, Some(h)) => format!("@{h}"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests;
