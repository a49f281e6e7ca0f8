//! Turning raw bytes into searchable UTF-8: header text (RFC 2047 encoded-words),
//! transfer encodings (RFC 2045 §6.7, §6.8), charsets, and HTML to text. The
//! decoders and charset tables are mail-parser's.

use mail_parser::HeaderValue;
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;

/// Raw header bytes as a string: UTF-8 when valid (RFC 6532), otherwise read as
/// windows-1252 — the usual meaning of stray 8-bit bytes in headers — so no byte
/// is lost to U+FFFD.
pub(crate) fn to_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => match charset_decoder(b"windows-1252") {
            Some(decode) => decode(bytes),
            None => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

/// Decodes RFC 2047 encoded-words in an unfolded header value (whitespace runs
/// become single spaces).
pub(crate) fn decode_words(s: &str) -> String {
    if !s.contains("=?") {
        return s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    // mail-parser reads a value up to the line break that ends the field.
    let mut input = Vec::with_capacity(s.len() + 1);
    input.extend_from_slice(s.as_bytes());
    input.push(b'\n');
    match MessageStream::new(&input).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    }
}

/// Decodes a body: transfer encoding, then charset, then HTML to text. At most
/// `limit` input bytes are looked at (enough for the text budget left).
pub(crate) fn decode_body(
    body: &[u8],
    encoding: &str,
    charset: Option<&str>,
    html: bool,
    limit: usize,
) -> String {
    let body = &body[..body.len().min(limit)];
    let bytes = match encoding {
        "BASE64" => decode_base64(body),
        "QUOTED-PRINTABLE" => decode_quoted_printable(body),
        _ => body.to_vec(),
    };
    let text = decode_charset(&bytes, charset);
    if html { html_to_text(&text) } else { text }
}

fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    let charset = charset.map(str::trim).filter(|c| !c.is_empty());
    match charset {
        Some(c) if is_utf8_name(c) => String::from_utf8_lossy(bytes).into_owned(),
        // 8-bit text labelled (or defaulted to) US-ASCII is in practice UTF-8 when
        // it is valid UTF-8, else the usual Windows code page (as Dovecot reads it).
        Some(c) if is_ascii_name(c) => to_text(bytes),
        Some(c) => match charset_decoder(c.as_bytes()) {
            Some(decode) => decode(bytes),
            None => to_text(bytes),
        },
        None => to_text(bytes),
    }
}

fn is_ascii_name(c: &str) -> bool {
    let c = c.to_ascii_lowercase();
    matches!(
        c.as_str(),
        "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us" | "us"
    )
}

fn is_utf8_name(c: &str) -> bool {
    let c = c.to_ascii_lowercase();
    matches!(
        c.as_str(),
        "utf-8"
            | "utf8"
            | "unicode-1-1-utf-8"
            | "unicode11utf8"
            | "unicode20utf8"
            | "x-unicode20utf8"
    )
}

/// Base64 with mail-parser; if it refuses (stray characters), the same again with
/// everything outside the alphabet dropped.
fn decode_base64(body: &[u8]) -> Vec<u8> {
    if let Some(out) = base64_decode(body) {
        return out;
    }
    let cleaned: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    base64_decode(&cleaned).unwrap_or_default()
}

/// Quoted-printable, tolerant: an "=" that starts neither a soft line break nor
/// a hex pair is kept as it is.
pub(crate) fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        // Soft line break: "=" then optional transport padding, then [CR]LF or end.
        let mut j = i + 1;
        while j < body.len() && matches!(body[j], b' ' | b'\t') {
            j += 1;
        }
        match body.get(j..) {
            Some([]) => {
                i = j;
                continue;
            }
            Some([b'\n', ..]) => {
                i = j + 1;
                continue;
            }
            Some([b'\r', b'\n', ..]) => {
                i = j + 2;
                continue;
            }
            _ => {}
        }
        match (
            body.get(i + 1).copied().and_then(hex),
            body.get(i + 2).copied().and_then(hex),
        ) {
            (Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

/// Truncates to at most `max` bytes on a character boundary.
pub(crate) fn truncate_chars(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_header_bytes() {
        assert_eq!(to_text(b"plain"), "plain");
        assert_eq!(to_text("Grüße".as_bytes()), "Grüße");
        // Latin-1 / windows-1252 bytes.
        assert_eq!(to_text(b"Gr\xfc\xdfe \x80"), "Grüße €");
    }

    #[test]
    fn encoded_words() {
        assert_eq!(decode_words("plain   text"), "plain text");
        assert_eq!(decode_words("=?utf-8?Q?J=C3=B6rg?="), "Jörg");
        assert_eq!(
            decode_words("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?= c"),
            "ab c"
        );
        assert_eq!(
            decode_words("=?UTF-8?B?SGVsbG8gV29ybGQ=?= again"),
            "Hello World again"
        );
        assert_eq!(
            decode_words("broken =?utf-8?x?y?= word"),
            "broken =?utf-8?x?y?= word"
        );
        assert_eq!(decode_words(""), "");
    }

    #[test]
    fn quoted_printable() {
        assert_eq!(decode_quoted_printable(b"a=3Db=\r\nc=\nd"), b"a=bcd");
        assert_eq!(decode_quoted_printable(b"caf=C3=A9"), "café".as_bytes());
        assert_eq!(decode_quoted_printable(b"50=%"), b"50=%");
        assert_eq!(decode_quoted_printable(b"x= \r\ny"), b"xy");
        assert_eq!(decode_quoted_printable(b"end="), b"end");
        assert_eq!(decode_quoted_printable(b"=4"), b"=4");
    }

    #[test]
    fn bodies() {
        assert_eq!(
            decode_body(b"SGVsbG8=\r\n", "BASE64", None, false, usize::MAX),
            "Hello"
        );
        assert_eq!(
            decode_body(b"SGVs!bG8=", "BASE64", None, false, usize::MAX),
            "Hello"
        );
        assert_eq!(
            decode_body(b"caf\xe9", "8BIT", Some("iso-8859-1"), false, usize::MAX),
            "café"
        );
        assert_eq!(
            decode_body(b"caf\xe9", "8BIT", Some("utf-8"), false, usize::MAX),
            "caf\u{fffd}"
        );
        assert_eq!(
            decode_body(b"caf\xe9", "7BIT", Some("x-unknown"), false, usize::MAX),
            "café"
        );
        assert_eq!(
            decode_body(
                b"<html><head><title>t</title></head><body><p>Hello &amp; <b>bye</b></p></body></html>",
                "7BIT",
                None,
                true,
                usize::MAX
            ),
            "Hello & bye\n"
        );
        assert_eq!(decode_body(b"abcdef", "7BIT", None, false, 3), "abc");
    }

    #[test]
    fn truncation() {
        let mut s = "aé".to_string();
        truncate_chars(&mut s, 2);
        assert_eq!(s, "a");
        let mut s = "abc".to_string();
        truncate_chars(&mut s, 10);
        assert_eq!(s, "abc");
    }
}

#[cfg(test)]
mod ascii_label_tests {
    use super::decode_body;

    #[test]
    fn eight_bit_text_labelled_us_ascii_is_read_as_utf8() {
        let text = decode_body(
            "Σοφία über".as_bytes(),
            "8BIT",
            Some("us-ascii"),
            false,
            1000,
        );
        assert_eq!(text, "Σοφία über");
        // Not valid UTF-8: Windows-1252.
        assert_eq!(
            decode_body(b"caf\xe9", "8BIT", Some("us-ascii"), false, 1000),
            "café"
        );
    }
}
