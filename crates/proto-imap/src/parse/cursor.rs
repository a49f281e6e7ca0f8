//! Lexical primitives of RFC 9051 §9 over one complete command: atoms, strings
//! (quoted and literal), numbers and sequence sets.
//!
//! Invariants: no indexing that can panic (every access goes through `get`), no
//! allocation larger than the input, errors are short human-readable reasons.

use std::borrow::Cow;

use crate::types::{SeqNumber, SeqRange, SequenceSet};

/// A parse failure: the reason, ready for `tag BAD reason`.
pub(super) type PResult<T> = Result<T, String>;

pub(super) fn fail<T>(msg: impl Into<String>) -> PResult<T> {
    Err(msg.into())
}

/// RFC 7162 §3.1.1: mod-sequences are positive 63-bit numbers.
const MAX_MODSEQ: u64 = i64::MAX as u64;

/// ATOM-CHAR: any CHAR except atom-specials — `(`, `)`, `{`, SP, CTL, `%`, `*`,
/// `"`, `\` and `]`.
pub(super) fn is_atom_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// ASTRING-CHAR: ATOM-CHAR or `]`.
pub(super) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// list-char: ATOM-CHAR, list-wildcards (`%`, `*`) or `]`.
pub(super) fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

/// tag: ASTRING-CHAR except `+`.
pub(super) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// Some client-supplied token, safe to put in a BAD reason: printable ASCII only,
/// cut short.
pub(super) fn show(token: &[u8]) -> String {
    const MAX: usize = 32;
    let mut s: String = token
        .iter()
        .take(MAX)
        .map(|&b| {
            if (0x21..=0x7e).contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect();
    if token.len() > MAX {
        s.push_str("...");
    }
    s
}

/// A string's bytes as UTF-8 text (RFC 6855 allows UTF-8 in quoted strings and
/// literals); NUL is refused (CHAR8 excludes it).
pub(super) fn utf8(bytes: Cow<'_, [u8]>, what: &str) -> PResult<String> {
    if bytes.contains(&0) {
        return fail(format!("NUL not allowed in {what}"));
    }
    let text = match bytes {
        Cow::Borrowed(b) => std::str::from_utf8(b).map(str::to_owned).ok(),
        Cow::Owned(v) => String::from_utf8(v).ok(),
    };
    text.ok_or_else(|| format!("Invalid UTF-8 in {what}"))
}

pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(super) fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.buf.get(self.pos.saturating_add(ahead)).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn bump(&mut self) {
        if !self.at_end() {
            self.pos += 1;
        }
    }

    pub(super) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn expect(&mut self, b: u8, msg: &str) -> PResult<()> {
        if self.eat(b) { Ok(()) } else { fail(msg) }
    }

    pub(super) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().take_while(|&&b| f(b)).count();
        self.pos += n;
        rest.get(..n).unwrap_or_default()
    }

    /// Whether the next byte ends a token: end of input, SP or `)`.
    pub(super) fn delimited(&self) -> bool {
        matches!(self.peek(), None | Some(b' ' | b')'))
    }

    /// The single SP before the next argument, described by `what`.
    pub(super) fn sep(&mut self, what: &str) -> PResult<()> {
        match self.peek() {
            None => fail(format!("Missing {what}")),
            Some(b' ') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => fail(format!("Expected space before {what}")),
        }
    }

    /// The command must be over.
    pub(super) fn end(&self) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            fail("Unexpected data after end of command")
        }
    }

    /// Whether the input continues with keyword `kw` (any case) as a whole word.
    pub(super) fn peek_keyword(&self, kw: &str) -> bool {
        let rest = self.rest();
        rest.get(..kw.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
            && !rest.get(kw.len()).is_some_and(|&b| is_astring_char(b))
    }

    pub(super) fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek_keyword(kw) {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    /// `*ATOM-CHAR` (possibly empty).
    pub(super) fn atom(&mut self) -> &'a [u8] {
        self.take_while(is_atom_char)
    }

    /// An atom, upper-cased, for matching keywords (possibly empty).
    pub(super) fn word(&mut self) -> String {
        String::from_utf8_lossy(self.atom()).to_ascii_uppercase()
    }

    /// An atom that must be present and end at a delimiter.
    pub(super) fn required_atom(&mut self, what: &str) -> PResult<String> {
        let missing = self.at_end();
        let atom = self.atom();
        if atom.is_empty() && missing {
            return fail(format!("Missing {what}"));
        }
        if atom.is_empty() || !self.delimited() {
            return fail(format!("Invalid {what}"));
        }
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    /// Whether a quoted string or a literal (`{`, `~{`) starts here.
    pub(super) fn at_string(&self) -> bool {
        match self.peek() {
            Some(b'"' | b'{') => true,
            Some(b'~') => self.peek_at(1) == Some(b'{'),
            _ => false,
        }
    }

    /// astring: `1*ASTRING-CHAR / string`.
    pub(super) fn astring(&mut self, what: &str) -> PResult<Cow<'a, [u8]>> {
        if self.at_string() {
            return self.string(what);
        }
        let missing = self.at_end();
        let atom = self.take_while(is_astring_char);
        if atom.is_empty() {
            return fail(if missing {
                format!("Missing {what}")
            } else {
                format!("Invalid {what}")
            });
        }
        Ok(Cow::Borrowed(atom))
    }

    /// astring as UTF-8 text.
    pub(super) fn astring_text(&mut self, what: &str) -> PResult<String> {
        let bytes = self.astring(what)?;
        utf8(bytes, what)
    }

    /// string: quoted or literal (`{n}`, `{n+}`, and `~{n}` leniently).
    pub(super) fn string(&mut self, what: &str) -> PResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"') => self.quoted(what),
            Some(b'{' | b'~') => Ok(Cow::Borrowed(self.literal()?.0)),
            None => fail(format!("Missing {what}")),
            Some(_) => fail(format!("Invalid {what}")),
        }
    }

    /// quoted: `DQUOTE *QUOTED-CHAR DQUOTE`, with `\"` and `\\` escapes. UTF-8 is
    /// checked by the caller when it wants text.
    pub(super) fn quoted(&mut self, what: &str) -> PResult<Cow<'a, [u8]>> {
        self.expect(b'"', &format!("Invalid {what}"))?;
        let start = self.pos;
        // Fast path: no escapes, borrow.
        let plain = self.rest().iter().position(|&b| matches!(b, b'"' | b'\\'));
        if let Some(n) = plain
            && self.peek_at(n) == Some(b'"')
        {
            let body = self.buf.get(start..start + n).unwrap_or_default();
            if body.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
                return fail(format!("Invalid character in {what}"));
            }
            self.pos = start + n + 1;
            return Ok(Cow::Borrowed(body));
        }
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return fail(format!("Unterminated quoted {what}"));
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(Cow::Owned(out)),
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.pos += 1;
                        out.push(e);
                    }
                    _ => return fail(format!("Invalid escape in {what}")),
                },
                b'\r' | b'\n' | 0 => return fail(format!("Invalid character in {what}")),
                _ => out.push(b),
            }
        }
    }

    /// A literal `{n}` / `{n+}` / `~{n}` / `~{n+}`, its CRLF and its `n` bytes.
    /// Returns the bytes and whether it was a literal8.
    pub(super) fn literal(&mut self) -> PResult<(&'a [u8], bool)> {
        let binary = self.eat(b'~');
        self.expect(b'{', "Invalid literal")?;
        let digits = self.take_while(|b| b.is_ascii_digit());
        let len = parse_u64(digits).ok_or("Invalid literal length")?;
        self.eat(b'+');
        self.expect(b'}', "Invalid literal")?;
        if !(self.eat(b'\r') && self.eat(b'\n')) {
            return fail("Missing CRLF after literal length");
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.buf.len())
            .ok_or("Literal is truncated")?;
        let bytes = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok((bytes, binary))
    }

    /// `1*DIGIT` as a u64; `what` names it in errors.
    pub(super) fn number64(&mut self, what: &str) -> PResult<u64> {
        let missing = self.at_end();
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() && missing {
            return fail(format!("Missing {what}"));
        }
        parse_u64(digits).ok_or_else(|| format!("Invalid {what}"))
    }

    /// `number`: a u32.
    pub(super) fn number(&mut self, what: &str) -> PResult<u32> {
        let n = self.number64(what)?;
        u32::try_from(n).map_err(|_| format!("Invalid {what}"))
    }

    /// `nz-number`: 1..=u32::MAX.
    pub(super) fn nz_number(&mut self, what: &str) -> PResult<u32> {
        match self.number(what)? {
            0 => fail(format!("Invalid {what}")),
            n => Ok(n),
        }
    }

    /// `mod-sequence-valzer` (RFC 7162 §7): 0..=2^63-1, ending at a delimiter.
    pub(super) fn modseq(&mut self) -> PResult<u64> {
        let n = self.number64("mod-sequence")?;
        if n > MAX_MODSEQ || !self.delimited() {
            return fail("Invalid mod-sequence");
        }
        Ok(n)
    }

    /// sequence-set (RFC 9051 §9) or `$` (RFC 5182), ending at a delimiter.
    pub(super) fn sequence_set(&mut self) -> PResult<SequenceSet> {
        const BAD: &str = "Invalid sequence set";
        if self.at_end() {
            return fail("Missing sequence set");
        }
        if self.eat(b'$') {
            return if self.delimited() {
                Ok(SequenceSet::Saved)
            } else {
                fail(BAD)
            };
        }
        let mut ranges = Vec::new();
        loop {
            let start = self.seq_number().ok_or(BAD)?;
            let end = if self.eat(b':') {
                self.seq_number().ok_or(BAD)?
            } else {
                start
            };
            ranges.push(SeqRange { start, end });
            if !self.eat(b',') {
                break;
            }
        }
        if !self.delimited() {
            return fail(BAD);
        }
        Ok(SequenceSet::Ranges(ranges))
    }

    fn seq_number(&mut self) -> Option<SeqNumber> {
        if self.eat(b'*') {
            return Some(SeqNumber::Last);
        }
        let digits = self.take_while(|b| b.is_ascii_digit());
        match u32::try_from(parse_u64(digits)?).ok()? {
            0 => None,
            n => Some(SeqNumber::Value(n)),
        }
    }
}

/// Decimal digits as a u64; `None` when empty or too large.
pub(super) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}
