//! Body sections and transfer encodings (issue 24): `BODY[section]`,
//! `BINARY[part]` and `<partial>` cut from any message with the offsets its
//! parse gave, and the Content-Transfer-Encodings both ways.
//!
//! - `HEADER.FIELDS (names)` and `HEADER.FIELDS.NOT (names)` split the header's
//!   lines between them: together they hold each line once;
//! - `[n]`, `[n.MIME]`, `[HEADER]`, `[TEXT]` are pieces of the message;
//! - `BINARY[part]` exists exactly where `BODY[part]` does;
//! - `<offset.count>` is the slice asked for, clamped;
//! - quoted-printable written by casella decodes back to the input (line
//!   ends as CRLF) and keeps its lines within 76 characters, 7-bit; base64
//!   as mail carries it (wrapped at 76) decodes back too.
#![no_main]

use base64::Engine;
use casella_mime::encode_quoted_printable;
use casella_proto_imap::section::{BinaryError, binary_section, body_section, decode_cte, partial};
use casella_proto_imap::{Section, SectionText};
use libfuzzer_sys::fuzz_target;

/// Every bare LF as CRLF: the line ends quoted-printable keeps.
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Lines of a HEADER.FIELDS answer: each ends in CRLF, then the blank line.
fn kept(answer: &[u8]) -> usize {
    answer.iter().filter(|&&b| b == b'\n').count() - 1
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, raw @ ..] = data else {
        return;
    };

    // Transfer encodings.
    let qp = encode_quoted_printable(raw);
    assert!(qp.is_ascii());
    for line in qp.split(|&b| b == b'\n') {
        assert!(
            line.strip_suffix(b"\r").unwrap_or(line).len() <= 76,
            "{qp:?}"
        );
    }
    assert_eq!(decode_cte("quoted-printable", &qp), Ok(crlf(raw)));
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    let wrapped: Vec<u8> = b64
        .as_bytes()
        .chunks(76)
        .flat_map(|l| l.iter().copied().chain(*b"\r\n"))
        .collect();
    assert_eq!(decode_cte(" Base64 ", &wrapped), Ok(raw.to_vec()));
    let _ = decode_cte("base64", raw);
    let _ = decode_cte("quoted-printable", raw);

    // Sections of the message.
    let parsed = casella_mime::parse(raw);
    let root = &parsed.body;
    let depth = usize::from(a % 4);
    let path: Vec<u32> = [b, c, d][..depth.min(3)]
        .iter()
        .map(|&&n| u32::from(n % 5))
        .collect();
    let names: Vec<String> = ["Subject", "from", "X-Any", "Content-Type"][..usize::from(b % 5)]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let section = |text| Section {
        part: path.clone(),
        text,
    };
    let small = raw.len() <= 1024;
    let whole = body_section(raw, root, &section(None));
    for text in [SectionText::Header, SectionText::Text, SectionText::Mime] {
        if let Some(piece) = body_section(raw, root, &section(Some(text))) {
            assert!(piece.len() <= raw.len());
            assert!(!small || contains(raw, &piece));
        }
    }
    if let Some(piece) = &whole {
        assert!(!small || contains(raw, piece));
    }
    let header = body_section(raw, root, &section(Some(SectionText::Header)));
    let fields = body_section(
        raw,
        root,
        &section(Some(SectionText::HeaderFields {
            not: false,
            fields: names.clone(),
        })),
    );
    let others = body_section(
        raw,
        root,
        &section(Some(SectionText::HeaderFields {
            not: true,
            fields: names,
        })),
    );
    match (&header, &fields, &others) {
        (Some(h), Some(f), Some(o)) => {
            assert!(f.ends_with(b"\r\n") && o.ends_with(b"\r\n"));
            // The header up to its blank line, split between the two.
            let header_lines = h
                .split_inclusive(|&b| b == b'\n')
                .take_while(|l| *l != b"\r\n" && *l != b"\n")
                .count();
            assert_eq!(kept(f) + kept(o), header_lines, "{h:?}\n{f:?}\n{o:?}");
        }
        (None, None, None) => {}
        other => panic!("HEADER and HEADER.FIELDS disagree: {other:?}"),
    }
    if !path.is_empty() {
        match binary_section(raw, root, &path) {
            Err(BinaryError::NotFound) => assert!(whole.is_none()),
            _ => assert!(whole.is_some()),
        }
    }

    // <partial>
    let offset = u32::from_le_bytes([*b, *c, 0, 0]);
    let count = u32::from(*d) * 64;
    let p = partial(raw, offset, count);
    let start = (offset as usize).min(raw.len());
    assert_eq!(p, &raw[start..(start + count as usize).min(raw.len())]);
});
