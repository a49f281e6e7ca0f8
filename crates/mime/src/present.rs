//! What a POP3 or IMAP client is shown of a stored message: Exchange's
//! MessageRetrievalFormat (which body formats a message carries) and
//! SuppressReadReceipt. The stored bytes never change; a presentation is computed
//! when a message is read.
//!
//! The "body" of a message is the top level when it is text/plain, text/html,
//! multipart/alternative or multipart/related; otherwise the first part of a
//! top-level multipart (mixed, typically with attachments after it) when it is one
//! of those. Attachments and everything else are kept byte for byte.

use serde::{Deserialize, Serialize};

use crate::BodyPart;
use crate::parse::text::decode_body;

/// Exchange's MessageRetrievalFormat, with names a Unix admin expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetrievalFormat {
    /// The message as it was received (Exchange's BestBodyFormat).
    #[default]
    BestBody,
    /// Plain text only; an HTML-only body is converted to text.
    TextOnly,
    /// HTML only; a text-only body is converted to HTML.
    HtmlOnly,
    /// Both, as multipart/alternative; the missing one is converted.
    HtmlAndText,
}

impl RetrievalFormat {
    pub fn parse(s: &str) -> Option<RetrievalFormat> {
        Some(
            match s
                .trim()
                .to_ascii_lowercase()
                .replace(['_', ' '], "-")
                .as_str()
            {
                "best-body" | "bestbody" | "bestbodyformat" | "best-body-format" => {
                    RetrievalFormat::BestBody
                }
                "text-only" | "textonly" => RetrievalFormat::TextOnly,
                "html-only" | "htmlonly" => RetrievalFormat::HtmlOnly,
                "html-and-text" | "htmlandtext" | "htmlandtextalternative" => {
                    RetrievalFormat::HtmlAndText
                }
                _ => return None,
            },
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            RetrievalFormat::BestBody => "best-body",
            RetrievalFormat::TextOnly => "text-only",
            RetrievalFormat::HtmlOnly => "html-only",
            RetrievalFormat::HtmlAndText => "html-and-text",
        }
    }
}

/// Header fields that ask the reader's program for a read receipt: RFC 8098 §2.1
/// and the older non-standard forms.
const RECEIPT_FIELDS: &[&str] = &[
    "disposition-notification-to",
    "disposition-notification-options",
    "return-receipt-to",
    "x-confirm-reading-to",
];

/// How one session presents messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Presentation {
    pub format: RetrievalFormat,
    /// Remove read-receipt requests, so the client never sends a receipt.
    pub suppress_read_receipt: bool,
}

impl Presentation {
    /// Shows every message exactly as stored.
    pub fn is_identity(&self) -> bool {
        self.format == RetrievalFormat::BestBody && !self.suppress_read_receipt
    }

    /// The message as this presentation shows it, or `None` when that is the
    /// stored bytes unchanged. `body` is the stored structure of `raw`.
    pub fn apply(&self, raw: &[u8], body: &BodyPart) -> Option<Vec<u8>> {
        if self.is_identity() {
            return None;
        }
        let converted = convert(raw, body, self.format);
        let current: &[u8] = converted.as_deref().unwrap_or(raw);
        let stripped = if self.suppress_read_receipt {
            let header_end = body.offsets.body_start as usize;
            let header_end = if converted.is_some() {
                crate::header_end(current) as usize
            } else {
                header_end
            };
            strip_fields(current, header_end, RECEIPT_FIELDS)
        } else {
            None
        };
        stripped.or(converted)
    }
}

/// The kinds of body a message can have.
enum Body<'a> {
    Plain(&'a BodyPart),
    Html(&'a BodyPart),
    /// multipart/related whose root is HTML (HTML with inline images).
    Related(&'a BodyPart, &'a BodyPart),
    Alternative {
        plain: Option<&'a BodyPart>,
        /// text/html or multipart/related with an HTML root.
        html: Option<&'a BodyPart>,
        /// The HTML part itself (inside `html` when that is a related part).
        html_leaf: Option<&'a BodyPart>,
    },
}

fn is(part: &BodyPart, t: &str, s: &str) -> bool {
    part.media_type == t && part.media_subtype == s
}

fn is_attachment(part: &BodyPart) -> bool {
    part.disposition
        .as_ref()
        .is_some_and(|d| d.kind.eq_ignore_ascii_case("attachment"))
}

/// The HTML root of a multipart/related.
fn related_root(part: &BodyPart) -> Option<&BodyPart> {
    part.parts.first().filter(|p| is(p, "text", "html"))
}

fn classify(part: &BodyPart) -> Option<Body<'_>> {
    if is_attachment(part) {
        return None;
    }
    if is(part, "text", "plain") {
        return Some(Body::Plain(part));
    }
    if is(part, "text", "html") {
        return Some(Body::Html(part));
    }
    if is(part, "multipart", "related") {
        return related_root(part).map(|root| Body::Related(part, root));
    }
    if is(part, "multipart", "alternative") {
        let plain = part.parts.iter().find(|p| is(p, "text", "plain"));
        let (html, html_leaf) = match part.parts.iter().rev().find_map(|p| {
            if is(p, "text", "html") {
                Some((p, p))
            } else if is(p, "multipart", "related") {
                related_root(p).map(|root| (p, root))
            } else {
                None
            }
        }) {
            Some((h, leaf)) => (Some(h), Some(leaf)),
            None => (None, None),
        };
        if plain.is_none() && html.is_none() {
            return None;
        }
        return Some(Body::Alternative {
            plain,
            html,
            html_leaf,
        });
    }
    None
}

/// Finds the body: the top level, or the first part of a top-level multipart.
/// Returns it with whether it is the top level.
fn find_body(top: &BodyPart) -> Option<(&BodyPart, Body<'_>, bool)> {
    if let Some(b) = classify(top) {
        return Some((top, b, true));
    }
    if top.media_type == "multipart" {
        let first = top.parts.first()?;
        return classify(first).map(|b| (first, b, false));
    }
    None
}

fn text_of(raw: &[u8], part: &BodyPart, html_to_text: bool) -> String {
    let body = slice(raw, part.offsets.body_start, part.offsets.body_end);
    let charset = part
        .params
        .iter()
        .find(|(n, _)| n == "charset")
        .map(|(_, v)| v.as_str());
    decode_body(body, &part.encoding, charset, html_to_text, usize::MAX)
}

fn slice(raw: &[u8], from: u32, to: u32) -> &[u8] {
    let to = (to as usize).min(raw.len());
    let from = (from as usize).min(to);
    &raw[from..to]
}

/// A part as a self-contained MIME entity (its header and body). For the top
/// level only the Content-* fields of the header are kept.
fn entity(raw: &[u8], part: &BodyPart, top: bool) -> Vec<u8> {
    if !top {
        return slice(raw, part.offsets.header_start, part.offsets.body_end).to_vec();
    }
    let header = slice(raw, 0, part.offsets.body_start);
    let mut out = Vec::new();
    for field in fields(header) {
        if field.len() >= 8 && field[..8].eq_ignore_ascii_case(b"content-") {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(slice(raw, part.offsets.body_start, part.offsets.body_end));
    out
}

/// A generated text/plain or text/html entity, UTF-8.
fn text_entity(subtype: &str, text: &str) -> Vec<u8> {
    let (encoding, body) = encode_body(text);
    format!(
        "Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    .into_bytes()
    .into_iter()
    .chain(body)
    .collect()
}

/// Plain text as an HTML document: every special character escaped, line
/// breaks kept, long lines wrapped by the reader's program.
fn text_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 120);
    out.push_str(
        "<html><head><meta charset=\"utf-8\"></head><body><div style=\"white-space: pre-wrap\">",
    );
    for c in text.replace("\r\n", "\n").chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("<br>\n"),
            c => out.push(c),
        }
    }
    out.push_str("</div></body></html>\n");
    out
}

/// A multipart/alternative of two entities, the preferred one last (RFC 2046 §5.1.4).
fn alternative(text: &[u8], html: &[u8], seed: &[u8]) -> Vec<u8> {
    let boundary = boundary_for(seed);
    let mut out = format!(
        "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n"
    )
    .into_bytes();
    out.extend_from_slice(text);
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    out.extend_from_slice(html);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A boundary that does not occur in `content` (RFC 2046 §5.1.1).
fn boundary_for(content: &[u8]) -> String {
    let mut n: u64 = content.len() as u64;
    loop {
        let b = format!("=_casella_alt_{n:x}");
        if !content.windows(b.len()).any(|w| w == b.as_bytes()) {
            return b;
        }
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
}

/// 7bit when the text is short-lined ASCII, else quoted-printable (RFC 2045 §6.7).
fn encode_body(text: &str) -> (&'static str, Vec<u8>) {
    let normalized = text.replace("\r\n", "\n");
    if normalized.is_ascii()
        && normalized.lines().all(|l| l.len() <= 76)
        && !normalized.contains('\r')
        && !normalized.contains('\0')
    {
        let mut out = normalized.replace('\n', "\r\n").into_bytes();
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        return ("7bit", out);
    }
    let mut out = crate::encode_quoted_printable(normalized.as_bytes());
    out.extend_from_slice(b"\r\n");
    ("quoted-printable", out)
}

/// The header fields of a header block, each with its continuation lines and
/// line break; the empty line ending the block is not included.
fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < header.len() {
        let end = header[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |i| pos + i + 1);
        let line = &header[pos..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation && pos > start {
            out.push(&header[start..pos]);
            start = pos;
        }
        pos = end;
    }
    if pos > start {
        out.push(&header[start..pos]);
    }
    out
}

fn field_name(field: &[u8]) -> &[u8] {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(0);
    let name = &field[..colon];
    let trimmed = name.iter().rposition(|b| !b.is_ascii_whitespace());
    &name[..trimmed.map_or(0, |i| i + 1)]
}

fn named(field: &[u8], names: &[&str]) -> bool {
    let name = field_name(field);
    names
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// The message without the top-level fields in `names`; `None` when it has none.
fn strip_fields(raw: &[u8], header_end: usize, names: &[&str]) -> Option<Vec<u8>> {
    let header_end = header_end.min(raw.len());
    let header = &raw[..header_end];
    let all = fields(header);
    if !all.iter().any(|f| named(f, names)) {
        return None;
    }
    // The fields are contiguous from the start of the message.
    let fields_end: usize = all.iter().map(|f| f.len()).sum();
    let mut out = Vec::with_capacity(raw.len());
    for f in all.iter().filter(|f| !named(f, names)) {
        out.extend_from_slice(f);
    }
    // The empty line and the body stay as they were.
    out.extend_from_slice(&raw[fields_end..]);
    Some(out)
}

/// Replaces the body with `new_entity`, or returns `None` when the format needs
/// no change for this message.
fn convert(raw: &[u8], top: &BodyPart, format: RetrievalFormat) -> Option<Vec<u8>> {
    let (node, body, is_top) = find_body(top)?;
    let new_entity = match (format, body) {
        (RetrievalFormat::BestBody, _) => return None,
        (RetrievalFormat::TextOnly, Body::Plain(_)) => return None,
        (RetrievalFormat::TextOnly, Body::Alternative { plain: Some(p), .. }) => {
            entity(raw, p, false)
        }
        (RetrievalFormat::TextOnly, Body::Html(h) | Body::Related(_, h)) => {
            text_entity("plain", &text_of(raw, h, true))
        }
        (
            RetrievalFormat::TextOnly,
            Body::Alternative {
                plain: None,
                html_leaf: Some(h),
                ..
            },
        ) => text_entity("plain", &text_of(raw, h, true)),
        (RetrievalFormat::HtmlOnly, Body::Html(_) | Body::Related(..)) => return None,
        (RetrievalFormat::HtmlOnly, Body::Alternative { html: Some(h), .. }) => {
            entity(raw, h, false)
        }
        (
            RetrievalFormat::HtmlOnly,
            Body::Plain(p)
            | Body::Alternative {
                plain: Some(p),
                html: None,
                ..
            },
        ) => text_entity("html", &text_to_html(&text_of(raw, p, false))),
        (
            RetrievalFormat::HtmlAndText,
            Body::Alternative {
                plain: Some(_),
                html: Some(_),
                ..
            },
        ) => return None,
        (RetrievalFormat::HtmlAndText, Body::Plain(p)) => {
            let html = text_to_html(&text_of(raw, p, false));
            alternative(&entity(raw, p, is_top), &text_entity("html", &html), raw)
        }
        (
            RetrievalFormat::HtmlAndText,
            Body::Alternative {
                plain: Some(p),
                html: None,
                ..
            },
        ) => {
            let html = text_to_html(&text_of(raw, p, false));
            alternative(&entity(raw, p, false), &text_entity("html", &html), raw)
        }
        (RetrievalFormat::HtmlAndText, Body::Html(h)) => alternative(
            &text_entity("plain", &text_of(raw, h, true)),
            &entity(raw, h, is_top),
            raw,
        ),
        (RetrievalFormat::HtmlAndText, Body::Related(r, h)) => alternative(
            &text_entity("plain", &text_of(raw, h, true)),
            &entity(raw, r, is_top),
            raw,
        ),
        (
            RetrievalFormat::HtmlAndText,
            Body::Alternative {
                plain: None,
                html: Some(h),
                html_leaf: Some(leaf),
            },
        ) => alternative(
            &text_entity("plain", &text_of(raw, leaf, true)),
            &entity(raw, h, false),
            raw,
        ),
        _ => return None,
    };
    Some(splice(raw, node, is_top, new_entity))
}

/// Puts `new_entity` where `node` was.
fn splice(raw: &[u8], node: &BodyPart, is_top: bool, mut new_entity: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + new_entity.len());
    if is_top {
        // The message's own header, less the fields that described the old body.
        let header = slice(raw, 0, node.offsets.body_start);
        let mut has_version = false;
        for f in fields(header) {
            if named(f, &["mime-version"]) {
                has_version = true;
            }
            if !named(f, &["content-type", "content-transfer-encoding"]) {
                out.extend_from_slice(f);
            }
        }
        if !has_version {
            out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        }
        out.extend_from_slice(&new_entity);
        return out;
    }
    // Inside a multipart the line break before the next boundary belongs to the
    // boundary, so the entity ends without one.
    while new_entity.ends_with(b"\r\n") {
        new_entity.truncate(new_entity.len() - 2);
    }
    out.extend_from_slice(slice(raw, 0, node.offsets.header_start));
    out.extend_from_slice(&new_entity);
    out.extend_from_slice(slice(raw, node.offsets.body_end, u32::MAX));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn present(raw: &[u8], format: RetrievalFormat, suppress: bool) -> Vec<u8> {
        let p = Presentation {
            format,
            suppress_read_receipt: suppress,
        };
        p.apply(raw, &parse(raw).body)
            .unwrap_or_else(|| raw.to_vec())
    }

    const HTML_ONLY: &[u8] = b"From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hello <b>world</b></p><p>Second</p></body></html>\r\n";
    const TEXT_ONLY: &[u8] =
        b"From: a@example.org\r\nSubject: hi\r\n\r\nHello world & <friends>\r\nLine two\r\n";
    const BOTH: &[u8] = b"From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain body\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>html body</p>\r\n--b1--\r\n";
    const MIXED: &[u8] = b"From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain body\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>html body</p>\r\n--b1--\r\n\r\n--m\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--m--\r\n";

    fn leaves(raw: &[u8]) -> Vec<String> {
        fn walk(p: &BodyPart, out: &mut Vec<String>) {
            if p.parts.is_empty() {
                out.push(format!("{}/{}", p.media_type, p.media_subtype));
            }
            for c in &p.parts {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(&parse(raw).body, &mut out);
        out
    }

    #[test]
    fn best_body_changes_nothing() {
        for m in [HTML_ONLY, TEXT_ONLY, BOTH, MIXED] {
            assert_eq!(present(m, RetrievalFormat::BestBody, false), m);
        }
    }

    #[test]
    fn text_only_converts_html() {
        let out = present(HTML_ONLY, RetrievalFormat::TextOnly, false);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.starts_with("From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"));
        assert!(s.contains("Content-Type: text/plain; charset=utf-8"), "{s}");
        assert!(!s.contains("<b>") && !s.contains("text/html"), "{s}");
        let parsed = parse(&out);
        assert!(parsed.search.body_text.contains("Hello world"), "{s}");
        assert!(parsed.search.body_text.contains("Second"), "{s}");
        assert_eq!(leaves(&out), ["text/plain"]);
        // Plain text stays as it is.
        assert_eq!(
            present(TEXT_ONLY, RetrievalFormat::TextOnly, false),
            TEXT_ONLY
        );
    }

    #[test]
    fn text_only_keeps_the_plain_alternative_and_attachments() {
        let out = present(BOTH, RetrievalFormat::TextOnly, false);
        assert_eq!(leaves(&out), ["text/plain"]);
        assert!(String::from_utf8_lossy(&out).contains("plain body"));
        let out = present(MIXED, RetrievalFormat::TextOnly, false);
        assert_eq!(leaves(&out), ["text/plain", "application/pdf"]);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("plain body") && !s.contains("html body"), "{s}");
        assert!(s.contains("JVBERi0=\r\n--m--\r\n"), "{s}");
    }

    #[test]
    fn html_only_and_both() {
        let out = present(TEXT_ONLY, RetrievalFormat::HtmlOnly, false);
        let s = String::from_utf8_lossy(&out);
        assert_eq!(leaves(&out), ["text/html"]);
        assert!(s.contains("&amp;") && s.contains("&lt;friends&gt;"), "{s}");
        assert_eq!(
            leaves(&present(MIXED, RetrievalFormat::HtmlOnly, false)),
            ["text/html", "application/pdf"]
        );
        let out = present(HTML_ONLY, RetrievalFormat::HtmlAndText, false);
        assert_eq!(leaves(&out), ["text/plain", "text/html"]);
        let out = present(TEXT_ONLY, RetrievalFormat::HtmlAndText, false);
        assert_eq!(leaves(&out), ["text/plain", "text/html"]);
        assert!(String::from_utf8_lossy(&out).contains("Hello world & <friends>"));
        assert_eq!(present(BOTH, RetrievalFormat::HtmlAndText, false), BOTH);
    }

    #[test]
    fn read_receipt_requests_are_removed() {
        let raw = b"From: a@example.org\r\nDisposition-Notification-To:\r\n a@example.org\r\nSubject: s\r\nReturn-Receipt-To: a@example.org\r\n\r\nbody\r\n";
        let out = present(raw, RetrievalFormat::BestBody, true);
        assert_eq!(out, b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n");
        assert_eq!(
            present(TEXT_ONLY, RetrievalFormat::BestBody, true),
            TEXT_ONLY
        );
        // Together with a conversion.
        let mut with = b"Disposition-Notification-To: a@example.org\r\n".to_vec();
        with.extend_from_slice(HTML_ONLY);
        let out = present(&with, RetrievalFormat::TextOnly, true);
        let s = String::from_utf8_lossy(&out);
        assert!(
            !s.contains("Disposition") && s.contains("text/plain"),
            "{s}"
        );
    }

    #[test]
    fn quoted_printable_is_used_for_long_or_8bit_lines() {
        let (enc, body) = encode_body("caf\u{e9} = ok");
        assert_eq!(enc, "quoted-printable");
        assert_eq!(body, b"caf=C3=A9 =3D ok\r\n");
        let long = "x".repeat(200);
        let (enc, body) = encode_body(&long);
        assert_eq!(enc, "quoted-printable");
        assert!(body.split(|&b| b == b'\n').all(|l| l.len() <= 77));
    }

    #[test]
    fn formats_parse() {
        assert_eq!(
            RetrievalFormat::parse("TextOnly"),
            Some(RetrievalFormat::TextOnly)
        );
        assert_eq!(
            RetrievalFormat::parse("html-and-text"),
            Some(RetrievalFormat::HtmlAndText)
        );
        assert_eq!(RetrievalFormat::parse("rtf"), None);
    }
}
