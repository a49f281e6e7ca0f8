//! FETCH — RFC 9051 §6.4.5; rev1 RFC822* items (RFC 3501 §6.4.5); BINARY
//! (RFC 3516 §4.2); MODSEQ, CHANGEDSINCE (RFC 7162 §3.1.4) and VANISHED
//! (RFC 7162 §3.2.6); PARTIAL (RFC 9394 §3.3).

use super::cursor::{Cursor, PResult, fail, show, utf8};
use super::search::partial_range;
use crate::types::{CommandBody, FetchAttr, FetchItems, Partial, Section, SectionText};

/// `fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
/// "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]`, after the keyword.
pub(super) fn fetch(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sep("sequence set")?;
    let set = c.sequence_set()?;
    c.sep("fetch attributes")?;
    let attrs = if c.eat(b'(') {
        let mut attrs = vec![attr(c)?];
        while !c.eat(b')') {
            c.expect(b' ', "Expected ')' after fetch attributes")?;
            attrs.push(attr(c)?);
        }
        attrs
    } else if let Some(attrs) = macro_items(c) {
        attrs
    } else {
        vec![attr(c)?]
    };

    let mut changed_since = None;
    let mut vanished = false;
    let mut partial = None;
    // fetch-modifiers (RFC 4466 §2.4): SP "(" fetch-modifier *(SP fetch-modifier) ")".
    if c.eat(b' ') {
        c.expect(b'(', "Invalid FETCH modifiers")?;
        loop {
            let name = c.word();
            match name.as_str() {
                "CHANGEDSINCE" => {
                    c.sep("mod-sequence")?;
                    changed_since = Some(c.modseq()?);
                }
                "VANISHED" => vanished = true,
                // RFC 9394 §3.3.
                "PARTIAL" if partial.is_none() => {
                    c.sep("partial range")?;
                    partial = Some(partial_range(c)?);
                }
                "" => return fail("Invalid FETCH modifier"),
                _ => return fail(format!("Unknown FETCH modifier {}", show(name.as_bytes()))),
            }
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected ')' after FETCH modifiers")?;
        }
    }
    c.end()?;
    // RFC 7162 §3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
    if vanished && !uid {
        return fail("VANISHED is only allowed with UID FETCH");
    }
    if vanished && changed_since.is_none() {
        return fail("VANISHED requires CHANGEDSINCE");
    }
    Ok(CommandBody::Fetch {
        uid,
        set,
        items: FetchItems { attrs },
        changed_since,
        vanished,
        partial,
    })
}

/// ALL, FAST and FULL (RFC 9051 §6.4.5), only outside parentheses.
fn macro_items(c: &mut Cursor<'_>) -> Option<Vec<FetchAttr>> {
    use FetchAttr::*;
    if c.eat_keyword("ALL") {
        Some(vec![Flags, InternalDate, Rfc822Size, Envelope])
    } else if c.eat_keyword("FAST") {
        Some(vec![Flags, InternalDate, Rfc822Size])
    } else if c.eat_keyword("FULL") {
        Some(vec![Flags, InternalDate, Rfc822Size, Envelope, Body])
    } else {
        None
    }
}

/// One `fetch-att`.
pub(super) fn attr(c: &mut Cursor<'_>) -> PResult<FetchAttr> {
    let missing = c.at_end();
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
    let upper = String::from_utf8_lossy(name).to_ascii_uppercase();
    let attr = match upper.as_str() {
        "ENVELOPE" => FetchAttr::Envelope,
        "FLAGS" => FetchAttr::Flags,
        "INTERNALDATE" => FetchAttr::InternalDate,
        "SAVEDATE" => FetchAttr::SaveDate,
        "RFC822" => FetchAttr::Rfc822,
        "RFC822.HEADER" => FetchAttr::Rfc822Header,
        "RFC822.TEXT" => FetchAttr::Rfc822Text,
        "RFC822.SIZE" => FetchAttr::Rfc822Size,
        "BODYSTRUCTURE" => FetchAttr::BodyStructure,
        "UID" => FetchAttr::Uid,
        "MODSEQ" => FetchAttr::ModSeq,
        "BODY" if c.peek() != Some(b'[') => FetchAttr::Body,
        "BODY" | "BODY.PEEK" => {
            let section = section(c)?;
            FetchAttr::BodySection {
                peek: upper == "BODY.PEEK",
                section,
                partial: partial(c)?,
            }
        }
        "BINARY" | "BINARY.PEEK" => {
            let part = binary_section(c)?;
            FetchAttr::Binary {
                peek: upper == "BINARY.PEEK",
                part,
                partial: partial(c)?,
            }
        }
        "BINARY.SIZE" => FetchAttr::BinarySize {
            part: binary_section(c)?,
        },
        "" if missing => return fail("Missing fetch attribute"),
        "" => return fail("Invalid fetch attribute"),
        _ => return fail(format!("Unknown fetch attribute {}", show(name))),
    };
    if !c.delimited() {
        return fail("Invalid fetch attribute");
    }
    Ok(attr)
}

/// `section = "[" [section-spec] "]"`;
/// `section-spec = section-msgtext / (section-part ["." section-text])`.
pub(super) fn section(c: &mut Cursor<'_>) -> PResult<Section> {
    const BAD: &str = "Invalid section";
    c.expect(b'[', "Missing section")?;
    let mut part = Vec::new();
    // After `1.2.` a section-text must follow.
    let mut text_follows = false;
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        loop {
            part.push(c.nz_number("section part")?);
            if !c.eat(b'.') {
                break;
            }
            if !c.peek().is_some_and(|b| b.is_ascii_digit()) {
                text_follows = true;
                break;
            }
        }
    }
    let text = if text_follows || (part.is_empty() && c.peek() != Some(b']')) {
        Some(section_text(c, !part.is_empty())?)
    } else {
        None
    };
    c.expect(b']', BAD)?;
    Ok(Section { part, text })
}

/// `section-msgtext / "MIME"`.
fn section_text(c: &mut Cursor<'_>, has_part: bool) -> PResult<SectionText> {
    let name = c.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
    let upper = String::from_utf8_lossy(name).to_ascii_uppercase();
    match upper.as_str() {
        "HEADER" => Ok(SectionText::Header),
        "TEXT" => Ok(SectionText::Text),
        // RFC 9051 §6.4.5: MIME refers to a part's MIME header; it needs a part.
        "MIME" if has_part => Ok(SectionText::Mime),
        "MIME" => fail("MIME requires a part number"),
        "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
            c.sep("header field list")?;
            c.expect(b'(', "Invalid header field list")?;
            let mut fields = vec![header_name(c)?];
            while !c.eat(b')') {
                c.expect(b' ', "Expected ')' after header field list")?;
                fields.push(header_name(c)?);
            }
            Ok(SectionText::HeaderFields {
                not: upper.ends_with(".NOT"),
                fields,
            })
        }
        _ => fail("Invalid section"),
    }
}

/// `header-fld-name = astring`, kept as sent.
fn header_name(c: &mut Cursor<'_>) -> PResult<String> {
    let bytes = c.astring("header field name")?;
    utf8(bytes, "header field name")
}

/// `section-binary = "[" [section-part] "]"`.
fn binary_section(c: &mut Cursor<'_>) -> PResult<Vec<u32>> {
    c.expect(b'[', "Missing section")?;
    let mut part = Vec::new();
    if !c.eat(b']') {
        loop {
            part.push(c.nz_number("section part")?);
            if !c.eat(b'.') {
                break;
            }
        }
        c.expect(b']', "Invalid section")?;
    }
    Ok(part)
}

/// `partial = "<" number64 "." nz-number64 ">"`. Values beyond u32 saturate: no
/// message is that large, so the answer is the same.
fn partial(c: &mut Cursor<'_>) -> PResult<Option<Partial>> {
    const BAD: &str = "Invalid partial range";
    if !c.eat(b'<') {
        return Ok(None);
    }
    let offset = c.number64("partial offset").map_err(|_| BAD)?;
    c.expect(b'.', BAD)?;
    let count = c.number64("partial length").map_err(|_| BAD)?;
    c.expect(b'>', BAD)?;
    if count == 0 {
        return fail(BAD);
    }
    Ok(Some(Partial {
        offset: u32::try_from(offset).unwrap_or(u32::MAX),
        count: u32::try_from(count).unwrap_or(u32::MAX),
    }))
}
