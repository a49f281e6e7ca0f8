//! `BODY[section]` and `BINARY[part]` data — RFC 9051 §6.4.5, RFC 3516 — cut from
//! the stored message with the part offsets casella-mime computed at delivery.
//!
//! Part numbers (RFC 9051 §6.4.5), resolved as Dovecot does (lib-imap-storage/
//! imap-msgpart.c): in a multipart, `n` is the n-th child; a single-part
//! message (the top level, or the one inside a message/rfc822 part) has only
//! part 1, its body; a further number after a message/rfc822 (or
//! message/global) part descends into the enclosed message. HEADER,
//! HEADER.FIELDS[.NOT] and TEXT after a part number need a message/rfc822 part
//! and address the enclosed message; MIME is the part's own header, whatever its
//! type (for part 1 of a single-part message: the message header, as Dovecot).
//! One difference: Dovecot also takes `n.1` for a leaf part `n` inside a
//! multipart to mean the leaf itself; RFC 9051 gives such a part no subparts,
//! so here it does not exist.
//!
//! A section that does not exist gives `None` / [`BinaryError::NotFound`];
//! Dovecot answers those with an empty string (`BODY[9] ""`), and the session
//! should do the same.

use casella_mime::BodyPart;

use crate::types::{Section, SectionText};

/// The data of `BODY[section]` (before any `<partial>`), or `None` when the
/// section does not exist.
///
/// - `[]`: the whole message; `[HEADER]`: the header with its blank line;
///   `[TEXT]`: the body.
/// - `[HEADER.FIELDS (a b)]`: only the named fields (names compared without
///   case), in message order, folded lines kept, then a blank line;
///   `.NOT`: every other field, then a blank line.
/// - `[1.2]`: the body of that part (for a message/rfc822 part: the whole
///   enclosed message); `[1.2.MIME]`: the part's MIME header with its blank
///   line.
pub fn body_section(raw: &[u8], root: &BodyPart, section: &Section) -> Option<Vec<u8>> {
    let part = if section.part.is_empty() {
        match section.text {
            None => return Some(raw.to_vec()),
            // MIME names a part's own header; it needs a part number.
            Some(SectionText::Mime) => return None,
            Some(_) => root,
        }
    } else {
        let part = find_part(root, &section.part)?;
        match section.text {
            None => return Some(body(raw, part).to_vec()),
            Some(SectionText::Mime) => return Some(header(raw, part).to_vec()),
            // RFC 9051 §6.4.5: HEADER and TEXT after a part number are those
            // of the message inside a message/rfc822 part.
            Some(_) => &part.message.as_ref()?.1,
        }
    };
    Some(match &section.text {
        Some(SectionText::Header) => header(raw, part).to_vec(),
        Some(SectionText::HeaderFields { not, fields }) => {
            header_fields(header(raw, part), fields, *not)
        }
        // Text; None and Mime returned above.
        _ => body(raw, part).to_vec(),
    })
}

/// `<offset.count>` (RFC 9051 §6.4.5): the bytes from `offset`, at most
/// `count` of them; empty when `offset` is past the end.
pub fn partial(data: &[u8], offset: u32, count: u32) -> &[u8] {
    let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
    let len = usize::try_from(count).unwrap_or(usize::MAX);
    let end = start.saturating_add(len).min(data.len());
    &data[start..end]
}

/// Why `BINARY[part]` has no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// The part does not exist (Dovecot answers an empty string).
    #[error("no such body part")]
    NotFound,
    /// The part's Content-Transfer-Encoding is not one this server decodes;
    /// answered with `NO [UNKNOWN-CTE]` (RFC 3516 §4.3, RFC 9051 §7.1).
    #[error("unknown Content-Transfer-Encoding")]
    UnknownCte,
}

/// The data of `BINARY[part]` (RFC 3516 §4.2, RFC 9051 §6.4.5): the part's body
/// with its Content-Transfer-Encoding undone. `BINARY[]` is the raw message.
///
/// Multipart and message/rfc822 parts can only be 7bit, 8bit or binary (RFC
/// 2045 §6.4), so their body is returned as it is stored; should one claim
/// base64 or quoted-printable, it is decoded like a leaf.
pub fn binary_section(raw: &[u8], root: &BodyPart, part: &[u32]) -> Result<Vec<u8>, BinaryError> {
    if part.is_empty() {
        return Ok(raw.to_vec());
    }
    let p = find_part(root, part).ok_or(BinaryError::NotFound)?;
    decode_cte(&p.encoding, body(raw, p))
}

/// Undoes a Content-Transfer-Encoding (RFC 2045 §6): 7BIT, 8BIT and BINARY
/// (and none given) are identities; BASE64 and QUOTED-PRINTABLE are decoded
/// leniently; anything else is [`BinaryError::UnknownCte`].
pub fn decode_cte(encoding: &str, data: &[u8]) -> Result<Vec<u8>, BinaryError> {
    let e = encoding.trim();
    if e.is_empty()
        || ["7BIT", "8BIT", "BINARY"]
            .iter()
            .any(|k| e.eq_ignore_ascii_case(k))
    {
        Ok(data.to_vec())
    } else if e.eq_ignore_ascii_case("BASE64") {
        Ok(decode_base64(data))
    } else if e.eq_ignore_ascii_case("QUOTED-PRINTABLE") {
        Ok(decode_quoted_printable(data))
    } else {
        Err(BinaryError::UnknownCte)
    }
}

/// Resolves part numbers (see the module documentation).
fn find_part<'a>(root: &'a BodyPart, path: &[u32]) -> Option<&'a BodyPart> {
    let mut part = root;
    // `part` is a message: the top level or the one inside a message/rfc822.
    let mut is_message = true;
    for (i, &num) in path.iter().enumerate() {
        if num == 0 {
            return None;
        }
        if is_multipart(part) {
            part = part.parts.get(usize::try_from(num - 1).ok()?)?;
        } else if num != 1 || !is_message {
            // Only a single-part message has a part (1, its body); a leaf
            // inside a multipart has none.
            return None;
        }
        is_message = false;
        if i + 1 < path.len()
            && let Some(m) = &part.message
        {
            part = &m.1;
            is_message = true;
        }
    }
    Some(part)
}

fn is_multipart(p: &BodyPart) -> bool {
    p.media_type.eq_ignore_ascii_case("multipart")
}

/// `raw[start..end]`, clamped so offsets from another message cannot panic.
fn slice(raw: &[u8], start: u32, end: u32) -> &[u8] {
    let end = (end as usize).min(raw.len());
    let start = (start as usize).min(end);
    &raw[start..end]
}

/// The part's header block, blank line included.
fn header<'r>(raw: &'r [u8], p: &BodyPart) -> &'r [u8] {
    slice(raw, p.offsets.header_start, p.offsets.body_start)
}

fn body<'r>(raw: &'r [u8], p: &BodyPart) -> &'r [u8] {
    slice(raw, p.offsets.body_start, p.offsets.body_end)
}

/// HEADER.FIELDS / HEADER.FIELDS.NOT: the fields of `header` whose name is (or,
/// with `not`, is not) in `names`, each line ending in CRLF, then the blank
/// line. Lines that are not fields (no colon) are never in `names`, so only
/// `.NOT` keeps them — what Dovecot's header filter does.
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    // Continuation lines before the first field belong to no field: like
    // lines without a colon, only `.NOT` keeps them.
    let mut keep = not;
    let mut pos = 0;
    while pos < header.len() {
        let next = header[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |i| pos + i + 1);
        let mut line = &header[pos..next];
        if let Some(l) = line.strip_suffix(b"\n") {
            line = l.strip_suffix(b"\r").unwrap_or(l);
        }
        pos = next;
        if line.is_empty() {
            // The blank line that ends the header.
            break;
        }
        if !matches!(line[0], b' ' | b'\t') {
            // A new field; continuation lines follow its fate.
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|colon| trim_end(&line[..colon]));
            let listed =
                name.is_some_and(|n| names.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(n)));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The value of a base64 digit (RFC 2045 §6.8, Table 1).
fn base64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Base64 as mail really carries it: characters outside the alphabet (line
/// breaks, spaces, junk) are skipped, as RFC 2045 §6.8 says; `=` ends a group
/// and drops its leftover bits, so padded chunks glued together still decode;
/// a last incomplete group gives what whole bytes it holds.
fn decode_base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in data {
        if b == b'=' {
            acc = 0;
            bits = 0;
            continue;
        }
        let Some(v) = base64_value(b) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation intended: the top byte of the pending bits.
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 §6.7), leniently: `=XX` in either case is a byte;
/// `=` before the end of a line (spaces allowed in between) is a soft break;
/// whitespace at the end of a line is dropped (rule 3: transports may add it);
/// a `=` that starts nothing valid is kept as it is. Line breaks come out as
/// CRLF, the canonical form.
fn decode_quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    // Where the literal whitespace at the end of the output starts.
    let mut ws_start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'=' => {
                let hex = data
                    .get(i + 1)
                    .and_then(|&h| hex_value(h))
                    .zip(data.get(i + 2).and_then(|&l| hex_value(l)));
                if let Some((h, l)) = hex {
                    out.push(h << 4 | l);
                    ws_start = out.len();
                    i += 3;
                    continue;
                }
                // A soft line break: "=" [spaces] CRLF (or LF, or the end).
                let mut j = i + 1;
                while j < data.len() && matches!(data[j], b' ' | b'\t') {
                    j += 1;
                }
                // Whitespace before the "=" is data: the "=" protects it.
                if j == data.len() {
                    ws_start = out.len();
                    i = j;
                } else if data[j] == b'\n' {
                    ws_start = out.len();
                    i = j + 1;
                } else if data[j] == b'\r' && data.get(j + 1) == Some(&b'\n') {
                    ws_start = out.len();
                    i = j + 2;
                } else {
                    out.push(b'=');
                    ws_start = out.len();
                    i += 1;
                }
            }
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.truncate(ws_start);
                out.extend_from_slice(b"\r\n");
                ws_start = out.len();
                i += 2;
            }
            b'\n' => {
                out.truncate(ws_start);
                out.extend_from_slice(b"\r\n");
                ws_start = out.len();
                i += 1;
            }
            b @ (b' ' | b'\t') => {
                out.push(b);
                i += 1;
            }
            b => {
                out.push(b);
                ws_start = out.len();
                i += 1;
            }
        }
    }
    out.truncate(ws_start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_mime::parse;

    const PLAIN: &str = "From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
Subject: afternoon\r\n\
\x20meeting\r\n\
To: mooch@owatagu.siam.edu.example\r\n\
X-Note: one\r\n\
x-note: two\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

    const MIXED: &str = "From: \"Doe, Jane\" <jane@example.com>\r\n\
To: team@example.com\r\n\
Subject: report\r\n\
Date: Tue, 1 Aug 2023 10:00:00 +0200\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed;\r\n\
\x20boundary=\"XyZ\"\r\n\
\r\n\
--XyZ\r\n\
Content-Type: text/plain\r\n\
\r\n\
See attached.\r\n\
\r\n\
--XyZ\r\n\
Content-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"report.pdf\";\r\n\
\x20size=12\r\n\
\r\n\
JVBERi0xLjQKJeLj\r\n\
z9MK\r\n\
--XyZ\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Caf=C3=A9 at =\r\n\
noon?\r\n\
--XyZ\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\
\r\n\
begin 644 x\r\n\
--XyZ--\r\n";

    const MIXED_HEADER: &str = "From: \"Doe, Jane\" <jane@example.com>\r\n\
To: team@example.com\r\n\
Subject: report\r\n\
Date: Tue, 1 Aug 2023 10:00:00 +0200\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed;\r\n\
\x20boundary=\"XyZ\"\r\n\
\r\n";

    const INNER: &str = "From: Inner Sender <inner@example.net>\r\n\
Subject: inner\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
Inner text.\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<div>Inner html.</div>\r\n\
--inner--\r\n";

    fn forwarded() -> String {
        format!(
            "From: outer@example.com\r\n\
Subject: Fwd: inner\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=outer\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Forwarded message below.\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: attachment\r\n\
\r\n\
{INNER}\
\r\n\
--outer--\r\n"
        )
    }

    fn sec(part: &[u32], text: Option<SectionText>) -> Section {
        Section {
            part: part.to_vec(),
            text,
        }
    }

    fn fields(not: bool, names: &[&str]) -> Option<SectionText> {
        Some(SectionText::HeaderFields {
            not,
            fields: names.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// BODY[section] of `raw` as text; "NONE" when the section does not exist.
    fn get(raw: &str, part: &[u32], text: Option<SectionText>) -> String {
        let m = parse(raw.as_bytes());
        body_section(raw.as_bytes(), &m.body, &sec(part, text))
            .map_or("NONE".into(), |v| String::from_utf8(v).unwrap())
    }

    fn binary(raw: &str, part: &[u32]) -> Result<Vec<u8>, BinaryError> {
        let m = parse(raw.as_bytes());
        binary_section(raw.as_bytes(), &m.body, part)
    }

    #[test]
    fn whole_message_header_and_text() {
        assert_eq!(get(MIXED, &[], None), MIXED);
        assert_eq!(get(MIXED, &[], Some(SectionText::Header)), MIXED_HEADER);
        assert_eq!(
            get(MIXED, &[], Some(SectionText::Text)),
            &MIXED[MIXED_HEADER.len()..]
        );
        // MIME needs a part number.
        assert_eq!(get(MIXED, &[], Some(SectionText::Mime)), "NONE");
    }

    #[test]
    fn header_fields_in_message_order_with_folding() {
        assert_eq!(
            get(MIXED, &[], fields(false, &["content-type", "SUBJECT"])),
            "Subject: report\r\nContent-Type: multipart/mixed;\r\n boundary=\"XyZ\"\r\n\r\n"
        );
        assert_eq!(
            get(
                MIXED,
                &[],
                fields(true, &["Content-Type", "date", "MIME-Version"])
            ),
            "From: \"Doe, Jane\" <jane@example.com>\r\nTo: team@example.com\r\n\
             Subject: report\r\n\r\n"
        );
        assert_eq!(get(MIXED, &[], fields(false, &["X-None"])), "\r\n");
        // Every occurrence of a repeated field, and folded values.
        assert_eq!(
            get(PLAIN, &[], fields(false, &["x-note", "subject"])),
            "Subject: afternoon\r\n meeting\r\nX-Note: one\r\nx-note: two\r\n\r\n"
        );
        assert_eq!(
            get(PLAIN, &[], fields(true, &["x-note", "subject", "from"])),
            "To: mooch@owatagu.siam.edu.example\r\n\r\n"
        );
    }

    /// Found by the `body_sections` fuzz target (issue 24): a header that
    /// starts with a continuation line belongs to no field; like a line
    /// without a colon it is in `.NOT` only, so the two answers still hold
    /// every line of the header between them.
    #[test]
    fn a_leading_continuation_line_is_kept_by_not_only() {
        let raw = b" stray\r\nSubject: x\r\n\r\nbody";
        let header = &raw[..raw.len() - 4];
        let names = ["Subject".to_string()];
        assert_eq!(header_fields(header, &names, false), b"Subject: x\r\n\r\n");
        assert_eq!(header_fields(header, &names, true), b" stray\r\n\r\n");
    }

    #[test]
    fn header_fields_edge_lines() {
        // Bare LF comes out as CRLF; a line without a colon only survives .NOT;
        // whitespace before the colon does not hide a field.
        let raw = "Subject : spaced\nnot a field\nTo: a@b\n\nbody";
        assert_eq!(
            get(raw, &[], fields(false, &["subject"])),
            "Subject : spaced\r\n\r\n"
        );
        assert_eq!(
            get(raw, &[], fields(true, &["subject"])),
            "not a field\r\nTo: a@b\r\n\r\n"
        );
        // A header without a blank line or final line break.
        assert_eq!(
            get("Subject: x", &[], fields(false, &["subject"])),
            "Subject: x\r\n\r\n"
        );
    }

    #[test]
    fn parts_of_a_multipart() {
        assert_eq!(get(MIXED, &[1], None), "See attached.\r\n");
        assert_eq!(
            get(MIXED, &[1], Some(SectionText::Mime)),
            "Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(get(MIXED, &[2], None), "JVBERi0xLjQKJeLj\r\nz9MK");
        assert!(
            get(MIXED, &[2], Some(SectionText::Mime)).starts_with("Content-Type: application/pdf")
        );
        assert!(get(MIXED, &[2], Some(SectionText::Mime)).ends_with(" size=12\r\n\r\n"));
        assert_eq!(get(MIXED, &[3], None), "Caf=C3=A9 at =\r\nnoon?");
        // Nonexistent parts.
        assert_eq!(get(MIXED, &[5], None), "NONE");
        assert_eq!(get(MIXED, &[0], None), "NONE");
        assert_eq!(get(MIXED, &[1, 1], None), "NONE");
        assert_eq!(get(MIXED, &[1, 2], None), "NONE");
        // HEADER and TEXT after a part number need a message/rfc822 part.
        assert_eq!(get(MIXED, &[1], Some(SectionText::Header)), "NONE");
        assert_eq!(get(MIXED, &[1], Some(SectionText::Text)), "NONE");
        assert_eq!(get(MIXED, &[1], fields(false, &["content-type"])), "NONE");
    }

    #[test]
    fn single_part_message() {
        let body = "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
        let header = &PLAIN[..PLAIN.len() - body.len()];
        assert_eq!(get(PLAIN, &[1], None), body);
        assert_eq!(get(PLAIN, &[], Some(SectionText::Text)), body);
        // Dovecot: the MIME header of part 1 of a single-part message is the
        // message header.
        assert_eq!(get(PLAIN, &[1], Some(SectionText::Mime)), header);
        assert_eq!(get(PLAIN, &[2], None), "NONE");
        assert_eq!(get(PLAIN, &[1, 1], None), "NONE");
    }

    #[test]
    fn encapsulated_message() {
        let raw = forwarded();
        let inner_header = &INNER[..INNER.find("\r\n\r\n").unwrap() + 4];
        assert_eq!(get(&raw, &[1], None), "Forwarded message below.");
        assert_eq!(get(&raw, &[2], None), INNER);
        assert_eq!(
            get(&raw, &[2], Some(SectionText::Mime)),
            "Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        );
        assert_eq!(get(&raw, &[2], Some(SectionText::Header)), inner_header);
        assert_eq!(
            get(&raw, &[2], Some(SectionText::Text)),
            &INNER[inner_header.len()..]
        );
        assert_eq!(
            get(&raw, &[2], fields(false, &["subject"])),
            "Subject: inner\r\n\r\n"
        );
        assert_eq!(get(&raw, &[2, 1], None), "Inner text.");
        assert_eq!(get(&raw, &[2, 2], None), "<div>Inner html.</div>");
        assert_eq!(
            get(&raw, &[2, 1], Some(SectionText::Mime)),
            "Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(get(&raw, &[2, 3], None), "NONE");
        assert_eq!(get(&raw, &[2, 1, 1], None), "NONE");
        assert_eq!(get(&raw, &[2, 1], Some(SectionText::Header)), "NONE");
    }

    #[test]
    fn message_rfc822_as_the_whole_message() {
        // A top-level message/rfc822 holding a single-part message: part 1 is
        // the enclosed message, 1.1 its body (Dovecot's numbering).
        let inner = "Subject: in\r\n\r\ninner body\r\n";
        let raw = format!("MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n{inner}");
        assert_eq!(get(&raw, &[1], None), inner);
        assert_eq!(get(&raw, &[1, 1], None), "inner body\r\n");
        assert_eq!(
            get(&raw, &[1], Some(SectionText::Header)),
            "Subject: in\r\n\r\n"
        );
        assert_eq!(get(&raw, &[1], Some(SectionText::Text)), "inner body\r\n");
        assert_eq!(get(&raw, &[1, 2], None), "NONE");
        assert_eq!(get(&raw, &[], Some(SectionText::Text)), inner);
    }

    #[test]
    fn partials() {
        assert_eq!(partial(b"hello", 0, 5), b"hello");
        assert_eq!(partial(b"hello", 1, 3), b"ell");
        assert_eq!(partial(b"hello", 3, u32::MAX), b"lo");
        assert_eq!(partial(b"hello", 5, 1), b"");
        assert_eq!(partial(b"hello", u32::MAX, u32::MAX), b"");
        assert_eq!(partial(b"hello", 2, 0), b"");
    }

    #[test]
    fn binary_sections() {
        assert_eq!(binary(MIXED, &[]).unwrap(), MIXED.as_bytes());
        assert_eq!(binary(MIXED, &[1]).unwrap(), b"See attached.\r\n");
        assert_eq!(
            binary(MIXED, &[2]).unwrap(),
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
        );
        assert_eq!(binary(MIXED, &[3]).unwrap(), "Café at noon?".as_bytes());
        assert_eq!(binary(MIXED, &[4]), Err(BinaryError::UnknownCte));
        assert_eq!(binary(MIXED, &[5]), Err(BinaryError::NotFound));
        assert_eq!(binary(MIXED, &[1, 1]), Err(BinaryError::NotFound));
        let raw = forwarded();
        assert_eq!(binary(&raw, &[2]).unwrap(), INNER.as_bytes());
        assert_eq!(binary(&raw, &[2, 2]).unwrap(), b"<div>Inner html.</div>");
        // A single-part base64 message: part 1 is its decoded body.
        let raw = "Content-Type: image/png\r\nMIME-Version: 1.0\r\n\
                   Content-Transfer-Encoding: BASE64\r\n\r\nAAECAw==\r\n";
        assert_eq!(binary(raw, &[1]).unwrap(), b"\x00\x01\x02\x03");
    }

    #[test]
    fn base64_is_lenient() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"aGVsbG8=", b"hello"),
            (b"aGVs\r\nbG8=\r\n", b"hello"),
            (b"aGVsbG8", b"hello"),
            (b" a G V s b G 8 ", b"hello"),
            (b"!!aGVs*bG8=!!", b"hello"),
            (b"aGk=aGk=", b"hihi"),
            (b"aQ==", b"i"),
            (b"+/+/", b"\xfb\xff\xbf"),
            (b"", b""),
            (b"====", b""),
            (b"a", b""),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_base64(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn quoted_printable_is_lenient() {
        let cases: &[(&str, &[u8])] = &[
            ("Caf=C3=A9", "Café".as_bytes()),
            ("caf=c3=a9", "café".as_bytes()),
            ("soft =\r\nbreak", b"soft break"),
            ("soft=  \r\nbreak", b"softbreak"),
            ("lf soft=\nbreak", b"lf softbreak"),
            ("trailing  \t\r\nnext", b"trailing\r\nnext"),
            ("bare lf  \nnext", b"bare lf\r\nnext"),
            ("kept=20\r\n", b"kept \r\n"),
            ("kept =\r\n\r\n", b"kept \r\n"),
            ("bad=ZZ and =4", b"bad=ZZ and =4"),
            ("end=", b"end"),
            ("end  ", b"end"),
            ("a=3D=3d", b"a=="),
            ("nul=00", b"nul\0"),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_quoted_printable(input.as_bytes()),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn transfer_encodings() {
        assert_eq!(decode_cte("7BIT", b"a=3D"), Ok(b"a=3D".to_vec()));
        assert_eq!(decode_cte("binary", b"\0"), Ok(b"\0".to_vec()));
        assert_eq!(decode_cte("", b"x"), Ok(b"x".to_vec()));
        assert_eq!(decode_cte("Quoted-Printable", b"a=3D"), Ok(b"a=".to_vec()));
        assert_eq!(decode_cte("base64", b"YQ=="), Ok(b"a".to_vec()));
        assert_eq!(decode_cte("X-UUENCODE", b""), Err(BinaryError::UnknownCte));
    }

    #[test]
    fn never_panics_on_mismatched_offsets() {
        // A structure from one message used on other bytes: clamped, no panic.
        let m = parse(forwarded().as_bytes());
        for raw in [&b""[..], b"short", MIXED.as_bytes()] {
            for part in [&[][..], &[1], &[2], &[2, 1], &[2, 2], &[3]] {
                for text in [
                    None,
                    Some(SectionText::Header),
                    Some(SectionText::Text),
                    Some(SectionText::Mime),
                    fields(false, &["subject"]),
                    fields(true, &["subject"]),
                ] {
                    let _ = body_section(raw, &m.body, &sec(part, text));
                }
                let _ = binary_section(raw, &m.body, part);
            }
        }
    }
}
