//! SEARCH — RFC 9051 §6.4.4; rev1 NEW/OLD/RECENT (RFC 3501 §6.4.4); RETURN
//! options (ESEARCH, RFC 4731 §3.1; SAVE, RFC 5182 §2.1); MODSEQ (RFC 7162 §3.1.5);
//! OLDER/YOUNGER (WITHIN, RFC 5032 §4).

use std::borrow::Cow;

use super::cursor::{Cursor, PResult, fail, show, utf8};
use super::datetime::search_date;
use crate::types::{CommandBody, PartialRange, SearchKey, SearchReturn};

/// How deeply parentheses, NOT and OR may nest: deep enough for clients that chain
/// ORs, shallow enough that the recursion cannot exhaust a 2 MiB thread stack (a
/// debug build overflows one somewhere past 600 levels).
pub(super) const MAX_DEPTH: usize = 100;

/// `search = "SEARCH" [search-return-opts] SP search-program`, after the keyword.
pub(super) fn search(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sep("search criteria")?;
    let mut returns = None;
    if c.eat_keyword("RETURN") {
        c.sep("search return options")?;
        returns = Some(return_options(c)?);
        c.sep("search criteria")?;
    }
    let mut charset = None;
    if c.eat_keyword("CHARSET") {
        c.sep("charset")?;
        charset = Some(c.astring_text("charset")?);
        c.sep("search criteria")?;
    }
    // Strings in a charset other than UTF-8/US-ASCII are decoded lossily so that
    // the command still parses; the session answers NO [BADCHARSET] for charsets it
    // does not support (RFC 9051 §6.4.4).
    let criteria = program(c, charset.as_deref())?;
    Ok(CommandBody::Search {
        uid,
        returns,
        charset,
        criteria,
    })
}

/// `search-key *(SP search-key)` up to the end of the command, strings read in
/// `charset` (see above).
pub(super) fn program(c: &mut Cursor<'_>, charset: Option<&str>) -> PResult<SearchKey> {
    let lossy = charset.is_some_and(|cs| {
        !["UTF-8", "US-ASCII"]
            .iter()
            .any(|u| cs.eq_ignore_ascii_case(u))
    });
    let mut parser = KeyParser { lossy };
    let mut keys = vec![parser.key(c, 0)?];
    while c.eat(b' ') {
        keys.push(parser.key(c, 0)?);
    }
    c.end()?;
    Ok(and(keys))
}

/// `"(" [search-return-opt *(SP search-return-opt)] ")"`; `()` means ALL
/// (RFC 4731 §3.1). UPDATE and CONTEXT are RFC 5267 §4.2–4.3's, PARTIAL its
/// §4.4's as RFC 9394 §3.1 widens it; each may be given once, and PARTIAL
/// not with ALL (RFC 9394 §3.1: they would contradict each other).
pub(super) fn return_options(c: &mut Cursor<'_>) -> PResult<Vec<SearchReturn>> {
    c.expect(b'(', "Invalid search return options")?;
    if c.eat(b')') {
        return Ok(vec![SearchReturn::All]);
    }
    let mut options: Vec<SearchReturn> = Vec::new();
    loop {
        let name = c.word();
        let option = match name.as_str() {
            "MIN" => SearchReturn::Min,
            "MAX" => SearchReturn::Max,
            "ALL" => SearchReturn::All,
            "COUNT" => SearchReturn::Count,
            "SAVE" => SearchReturn::Save,
            "UPDATE" => SearchReturn::Update,
            "CONTEXT" => SearchReturn::Context,
            "PARTIAL" => {
                c.sep("partial range")?;
                SearchReturn::Partial(partial_range(c)?)
            }
            "" => return fail("Invalid search return option"),
            _ => {
                return fail(format!(
                    "Unknown search return option {}",
                    show(name.as_bytes())
                ));
            }
        };
        let same_kind =
            |o: &SearchReturn| std::mem::discriminant(o) == std::mem::discriminant(&option);
        if options.iter().any(same_kind) {
            return fail(format!("Search return option {name} given twice"));
        }
        options.push(option);
        if c.eat(b')') {
            break;
        }
        c.expect(b' ', "Expected ')' after search return options")?;
    }
    let partial = options
        .iter()
        .any(|o| matches!(o, SearchReturn::Partial(_)));
    if partial && options.contains(&SearchReturn::All) {
        return fail("PARTIAL and ALL cannot be used together");
    }
    Ok(options)
}

/// `partial-range = partial-range-first / partial-range-last`,
/// `partial-range-first = nz-number ":" nz-number`, `partial-range-last =
/// MINUS nz-number ":" MINUS nz-number` (RFC 9394 §4). Either order.
pub(super) fn partial_range(c: &mut Cursor<'_>) -> PResult<PartialRange> {
    const BAD: &str = "Invalid partial range (expected n:m or -n:-m)";
    let from_end = c.eat(b'-');
    let first = c.nz_number("partial range").map_err(|_| BAD.to_string())?;
    c.expect(b':', BAD)?;
    if from_end {
        c.expect(b'-', BAD)?;
    }
    let second = c.nz_number("partial range").map_err(|_| BAD.to_string())?;
    if !c.delimited() {
        return fail(BAD);
    }
    Ok(PartialRange {
        from_end,
        low: first.min(second),
        high: first.max(second),
    })
}

/// A list of keys is their conjunction; a list of one is that key.
fn and(mut keys: Vec<SearchKey>) -> SearchKey {
    if keys.len() == 1
        && let Some(key) = keys.pop()
    {
        return key;
    }
    SearchKey::And(keys)
}

struct KeyParser {
    /// Decode strings lossily (a charset other than UTF-8 was named).
    lossy: bool,
}

impl KeyParser {
    fn text(&self, c: &mut Cursor<'_>, what: &str) -> PResult<String> {
        c.sep(what)?;
        let bytes = c.astring(what)?;
        if self.lossy && !bytes.contains(&0) {
            return Ok(match bytes {
                Cow::Borrowed(b) => String::from_utf8_lossy(b).into_owned(),
                Cow::Owned(v) => String::from_utf8_lossy(&v).into_owned(),
            });
        }
        utf8(bytes, what)
    }

    /// One `search-key`.
    fn key(&mut self, c: &mut Cursor<'_>, depth: usize) -> PResult<SearchKey> {
        use SearchKey::*;
        if depth >= MAX_DEPTH {
            return fail("Search criteria nested too deeply");
        }
        match c.peek() {
            None => return fail("Missing search criteria"),
            Some(b'(') => {
                c.bump();
                let mut keys = vec![self.key(c, depth + 1)?];
                while !c.eat(b')') {
                    c.expect(b' ', "Expected ')' after search criteria")?;
                    keys.push(self.key(c, depth + 1)?);
                }
                return Ok(and(keys));
            }
            Some(b'0'..=b'9' | b'*' | b'$') => return Ok(SequenceSet(c.sequence_set()?)),
            Some(_) => {}
        }
        let name = c.word();
        let key = match name.as_str() {
            "NOT" => {
                c.sep("search criteria")?;
                Not(Box::new(self.key(c, depth + 1)?))
            }
            "OR" => {
                c.sep("search criteria")?;
                let a = self.key(c, depth + 1)?;
                c.sep("search criteria")?;
                Or(Box::new(a), Box::new(self.key(c, depth + 1)?))
            }
            _ => self.simple_key(c, &name)?,
        };
        if !c.delimited() {
            return fail(format!("Invalid {name} criterion"));
        }
        Ok(key)
    }

    /// A search key that does not nest. Kept out of [`Self::key`] so that the
    /// recursive frame stays small.
    #[inline(never)]
    fn simple_key(&self, c: &mut Cursor<'_>, name: &str) -> PResult<SearchKey> {
        use SearchKey::*;
        Ok(match name {
            "ALL" => All,
            "ANSWERED" => Answered,
            "DELETED" => Deleted,
            "DRAFT" => Draft,
            "FLAGGED" => Flagged,
            "NEW" => New,
            "OLD" => Old,
            "RECENT" => Recent,
            "SEEN" => Seen,
            "UNANSWERED" => Unanswered,
            "UNDELETED" => Undeleted,
            "UNDRAFT" => Undraft,
            "UNFLAGGED" => Unflagged,
            "UNSEEN" => Unseen,
            "BCC" => Bcc(self.text(c, "BCC string")?),
            "BODY" => Body(self.text(c, "BODY string")?),
            "CC" => Cc(self.text(c, "CC string")?),
            "FROM" => From(self.text(c, "FROM string")?),
            "SUBJECT" => Subject(self.text(c, "SUBJECT string")?),
            "TEXT" => Text(self.text(c, "TEXT string")?),
            "TO" => To(self.text(c, "TO string")?),
            "HEADER" => {
                let field = self.text(c, "header field name")?;
                Header(field, self.text(c, "HEADER string")?)
            }
            "BEFORE" => Before(date(c)?),
            "ON" => On(date(c)?),
            "SINCE" => Since(date(c)?),
            "SENTBEFORE" => SentBefore(date(c)?),
            "SENTON" => SentOn(date(c)?),
            "SENTSINCE" => SentSince(date(c)?),
            // RFC 8514 §5.
            "SAVEDBEFORE" => SavedBefore(date(c)?),
            "SAVEDON" => SavedOn(date(c)?),
            "SAVEDSINCE" => SavedSince(date(c)?),
            "SAVEDATESUPPORTED" => SaveDateSupported,
            "KEYWORD" => Keyword(keyword(c)?),
            "UNKEYWORD" => Unkeyword(keyword(c)?),
            "LARGER" => Larger(size(c)?),
            "SMALLER" => Smaller(size(c)?),
            "UID" => {
                c.sep("sequence set")?;
                Uid(c.sequence_set()?)
            }
            "MODSEQ" => ModSeq(modseq(c)?),
            // RFC 5032 §4: `"OLDER" SP nz-number` / `"YOUNGER" SP nz-number`.
            "OLDER" => {
                c.sep("interval")?;
                Older(c.nz_number("interval")?)
            }
            "YOUNGER" => {
                c.sep("interval")?;
                Younger(c.nz_number("interval")?)
            }
            "" => return fail("Invalid search criteria"),
            _ => {
                return fail(format!(
                    "Unknown search criterion {}",
                    show(name.as_bytes())
                ));
            }
        })
    }
}

fn date(c: &mut Cursor<'_>) -> PResult<crate::types::Date> {
    c.sep("date")?;
    search_date(c)
}

/// `flag-keyword = atom` (no `\`).
fn keyword(c: &mut Cursor<'_>) -> PResult<String> {
    c.sep("keyword")?;
    c.required_atom("keyword")
}

/// `number64`; values beyond u32 saturate (no message is that large, so
/// LARGER/SMALLER answer the same).
fn size(c: &mut Cursor<'_>) -> PResult<u32> {
    c.sep("size")?;
    let n = c.number64("size")?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// `search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer`,
/// `search-modseq-ext = SP entry-name SP entry-type-req`; the entry is parsed and
/// ignored (RFC 7162 §3.1.5 lets the server treat all entries alike).
fn modseq(c: &mut Cursor<'_>) -> PResult<u64> {
    c.sep("mod-sequence")?;
    if !c.peek().is_some_and(|b| b.is_ascii_digit()) {
        c.astring("entry name")?;
        c.sep("entry type")?;
        let kind = c.word();
        if !matches!(kind.as_str(), "PRIV" | "SHARED" | "ALL") {
            return fail("Invalid entry type");
        }
        c.sep("mod-sequence")?;
    }
    c.modseq()
}
