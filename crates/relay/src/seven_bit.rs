//! A message made 7-bit for a next hop that does not offer 8BITMIME — RFC 6152
//! §3: a client with 8-bit content for such a server must convert it to 7-bit
//! MIME (or bounce it). Each leaf part whose body holds 8-bit octets is encoded
//! again, quoted-printable for text (RFC 2045 §6.7) and base64 otherwise (§6.8),
//! and its Content-Transfer-Encoding says so; what contained it and said 8bit or
//! binary says 7bit. Nothing else changes, byte for byte.
//!
//! Must not: touch a header field. An 8-bit octet in a header (UTF-8 header
//! fields, RFC 6532) cannot be made 7-bit without rewriting the header (RFC 6531
//! §3.2 downgrading, which we do not do): that is an error, and the caller
//! bounces.
//!
//! The DKIM signature is made over the converted message, after conversion.

use casella_mime::BodyPart;

/// Why a message cannot be sent in 7 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconvertible(pub String);

/// Whether any octet has the high bit set.
pub fn is_8bit(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b >= 0x80)
}

/// Whether the message's own header block (the top level) holds 8-bit octets:
/// then it needs SMTPUTF8 (RFC 6532 §3).
pub fn has_8bit_header(message: &[u8]) -> bool {
    is_8bit(&message[..casella_mime::header_len(message)])
}

/// The message with 7-bit content only; `message` itself when it has none.
pub fn convert(message: &[u8]) -> Result<Vec<u8>, Unconvertible> {
    if !is_8bit(message) {
        return Ok(message.to_vec());
    }
    let parsed = casella_mime::parse(message);
    let mut edits = Vec::new();
    plan(message, &parsed.body, &mut edits);
    edits.sort_by_key(|e| (e.at, e.end));
    let mut out = Vec::with_capacity(message.len() + message.len() / 3);
    let mut at = 0;
    for e in edits {
        if e.at < at {
            // Overlapping edits would mean a tree that is not a tree; never
            // send a message we may have garbled.
            return Err(Unconvertible(
                "the MIME structure could not be followed".into(),
            ));
        }
        out.extend_from_slice(&message[at..e.at]);
        out.extend_from_slice(&e.with);
        at = e.end;
    }
    out.extend_from_slice(&message[at..]);
    if is_8bit(&out) {
        return Err(Unconvertible(
            "8-bit octets in a header field or outside any MIME part".into(),
        ));
    }
    Ok(out)
}

/// Replace `message[at..end]` by `with`.
struct Edit {
    at: usize,
    end: usize,
    with: Vec<u8>,
}

fn range(part: &BodyPart) -> (usize, usize, usize) {
    let o = part.offsets;
    (
        o.header_start as usize,
        o.body_start as usize,
        o.body_end as usize,
    )
}

/// Edits for `part` and what it contains.
fn plan(message: &[u8], part: &BodyPart, edits: &mut Vec<Edit>) {
    let (header, body, end) = range(part);
    let (Some(body_bytes), true) = (message.get(body..end), header <= body) else {
        return;
    };
    if !is_8bit(body_bytes) {
        return;
    }
    let container = !part.parts.is_empty() || part.message.is_some();
    if container {
        for child in &part.parts {
            plan(message, child, edits);
        }
        if let Some(nested) = &part.message {
            plan(message, &nested.1, edits);
        }
        // RFC 2045 §6.4: a multipart or message/* says 7bit once all it holds is.
        if matches!(part.encoding.as_str(), "8BIT" | "BINARY") {
            edits.push(encoding_header(message, header, body, "7bit", false));
        }
        return;
    }
    if matches!(part.encoding.as_str(), "BASE64" | "QUOTED-PRINTABLE") {
        // Not valid as it stands (these are 7-bit by definition); leave the
        // octets for the final check to refuse.
        return;
    }
    let text = part.media_type == "text";
    let encoded = if text {
        casella_mime::encode_quoted_printable(body_bytes)
    } else {
        base64_lines(body_bytes)
    };
    // A body without header fields at the top level is a plain RFC 5322
    // message: it becomes MIME (RFC 2045 §4).
    let top = header == 0;
    edits.push(encoding_header(
        message,
        header,
        body,
        if text { "quoted-printable" } else { "base64" },
        top,
    ));
    edits.push(Edit {
        at: body,
        end,
        with: encoded,
    });
}

/// The header `message[header..body]` with its Content-Transfer-Encoding fields
/// replaced by one saying `cte` (and MIME-Version added when `top` lacks one).
fn encoding_header(message: &[u8], header: usize, body: usize, cte: &str, top: bool) -> Edit {
    let block = &message[header..body];
    // Split into fields (a field with its continuation lines), keeping bytes.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < block.len() {
        let next = block[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |n| i + n + 1);
        match spans.last_mut() {
            Some(last) if matches!(block[i], b' ' | b'\t') => last.1 = next,
            _ => spans.push((i, next)),
        }
        i = next;
    }
    let fields: Vec<&[u8]> = spans.iter().map(|&(a, b)| &block[a..b]).collect();
    let is_field = |f: &[u8], name: &str| {
        f.len() > name.len()
            && f[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && f[name.len()..]
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t'))
                .is_some_and(|&b| b == b':')
    };
    let mut out = Vec::with_capacity(block.len() + 48);
    let mut has_mime_version = false;
    // The blank line that ends the header is the last "field" (just a line end).
    let blank = fields
        .last()
        .filter(|f| *f == b"\r\n" || *f == b"\n")
        .copied();
    let body_fields = if blank.is_some() {
        &fields[..fields.len() - 1]
    } else {
        &fields[..]
    };
    for f in body_fields {
        if is_field(f, "Content-Transfer-Encoding") {
            continue;
        }
        has_mime_version |= is_field(f, "MIME-Version");
        out.extend_from_slice(f);
    }
    if top && !has_mime_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n").as_bytes());
    out.extend_from_slice(blank.unwrap_or(b"\r\n"));
    Edit {
        at: header,
        end: body,
        with: out,
    }
}

/// RFC 2045 §6.8: base64 in lines of 76 characters, each ending in CRLF.
fn base64_lines(body: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(body);
    let mut out = Vec::with_capacity(text.len() + text.len() / 38 + 2);
    for chunk in text.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded_text(message: &[u8]) -> Vec<String> {
        let parsed = mail_parser::MessageParser::default()
            .parse(message)
            .expect("parses");
        (0..parsed.text_body_count())
            .filter_map(|i| parsed.body_text(i).map(|t| t.into_owned()))
            .collect()
    }

    #[test]
    fn a_plain_message_becomes_mime_quoted_printable() {
        let m = "From: a@example.org\r\nSubject: s\r\n\r\nGrüße aus Köln\r\n".as_bytes();
        let out = convert(m).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"), "{text}");
        assert!(!is_8bit(&out));
        assert_eq!(decoded_text(&out), vec!["Grüße aus Köln\r\n".to_string()]);
    }

    #[test]
    fn only_the_8bit_parts_of_a_multipart_change() {
        let m = "From: a@example.org\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=\"b\"\r\n\
            Content-Transfer-Encoding: 8bit\r\n\r\n\
            preamble\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\
            Content-Transfer-Encoding: 8bit\r\n\r\nÄrger = groß\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nascii stays\r\n\
            --b\r\nContent-Type: application/octet-stream\r\n\r\n\u{ff}\u{fe}bin\r\n\
            --b--\r\n"
            .as_bytes();
        let out = convert(m).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!is_8bit(&out), "{text}");
        assert!(text.contains("Content-Type: multipart/mixed; boundary=\"b\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\npreamble\r\n--b\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=84rger =3D gro=C3=9F\r\n--b\r\n"), "{text}");
        assert!(
            text.contains("--b\r\nContent-Type: text/plain\r\n\r\nascii stays\r\n--b\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nw7/DvmJpbg==\r\n\r\n--b--"), "{text}");
        assert_eq!(decoded_text(&out)[0], "Ärger = groß");
    }

    #[test]
    fn an_8bit_header_cannot_be_converted() {
        let m = "From: a@example.org\r\nSubject: Grüße\r\n\r\nbody\r\n".as_bytes();
        assert!(has_8bit_header(m));
        assert!(convert(m).is_err());
        let ascii = b"Subject: hi\r\n\r\nbody\r\n";
        assert_eq!(convert(ascii).unwrap(), ascii);
    }
}
