//! Address lists — RFC 5322 §3.4 (with the obsolete route syntax of §4.4), turned
//! into IMAP address structures (RFC 9051 §7.5.2, "address").
//!
//! Tolerant: malformed input yields a best-effort list, never an error. Rules kept
//! by every result (the IMAP renderer relies on them):
//! - a group start marker has `mailbox = Some(group name)`, everything else `None`;
//! - a group end marker has every field `None`;
//! - every other address has `mailbox` and `host` set: a missing local part becomes
//!   "MISSING_MAILBOX" and a missing domain "MISSING_DOMAIN" (Dovecot's convention),
//!   so an address can never be mistaken for a group marker.
//!
//! Display names stay raw: encoded-words are kept, quotes are removed and
//! quoted-pairs resolved, comments dropped, runs of whitespace become one space.

use crate::Address;

/// Placeholder for an address without a local part.
pub(crate) const MISSING_MAILBOX: &str = "MISSING_MAILBOX";
/// Placeholder for an address without a domain.
pub(crate) const MISSING_DOMAIN: &str = "MISSING_DOMAIN";

/// Parses an RFC 5322 address-list (the unfolded value of From:, To:, …).
pub fn parse_address_list(raw: &str) -> Vec<Address> {
    let tokens = tokenize(raw);
    let mut parser = Parser {
        t: &tokens,
        pos: 0,
        out: Vec::new(),
    };
    parser.list();
    parser.out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// An atom (RFC 5322 atext run; 8-bit/UTF-8 characters count as atext).
    Atom,
    /// A quoted-string, quotes removed, quoted-pairs resolved.
    Quoted,
    /// A domain-literal, brackets kept.
    Literal,
    /// A comment's text, parentheses removed.
    Comment,
    /// One of the specials `<>@,;:.[]` (and stray `)`).
    Special(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    /// Whitespace or a comment came before this token.
    space_before: bool,
}

impl Token {
    fn is(&self, c: char) -> bool {
        self.kind == Kind::Special(c)
    }

    /// Part of a word sequence: an atom, a quoted string or a dot.
    fn is_wordish(&self) -> bool {
        matches!(self.kind, Kind::Atom | Kind::Quoted) || self.is('.')
    }
}

fn tokenize(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    let mut space = false;
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                chars.next();
                space = true;
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                text.push(n);
                            }
                        }
                        '\r' | '\n' => {}
                        _ => text.push(c),
                    }
                }
                out.push(Token {
                    kind: Kind::Quoted,
                    text,
                    space_before: space,
                });
                space = false;
            }
            '(' => {
                chars.next();
                let mut depth = 1u32;
                let mut text = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '(' => {
                            depth += 1;
                            text.push(c);
                        }
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            text.push(c);
                        }
                        '\\' => {
                            if let Some(n) = chars.next() {
                                text.push(n);
                            }
                        }
                        _ => text.push(c),
                    }
                }
                out.push(Token {
                    kind: Kind::Comment,
                    text,
                    space_before: space,
                });
                space = true;
            }
            '[' => {
                chars.next();
                let mut text = String::from("[");
                while let Some(c) = chars.next() {
                    match c {
                        ']' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                text.push(n);
                            }
                        }
                        ' ' | '\t' | '\r' | '\n' => {}
                        _ => text.push(c),
                    }
                }
                text.push(']');
                out.push(Token {
                    kind: Kind::Literal,
                    text,
                    space_before: space,
                });
                space = false;
            }
            '<' | '>' | '@' | ',' | ';' | ':' | '.' | ']' | ')' => {
                chars.next();
                out.push(Token {
                    kind: Kind::Special(c),
                    text: c.to_string(),
                    space_before: space,
                });
                space = false;
            }
            _ => {
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(
                        c,
                        ' ' | '\t'
                            | '\r'
                            | '\n'
                            | '"'
                            | '('
                            | ')'
                            | '['
                            | ']'
                            | '<'
                            | '>'
                            | '@'
                            | ','
                            | ';'
                            | ':'
                            | '.'
                    ) {
                        break;
                    }
                    text.push(c);
                    chars.next();
                }
                out.push(Token {
                    kind: Kind::Atom,
                    text,
                    space_before: space,
                });
                space = false;
            }
        }
    }
    out
}

struct Parser<'t> {
    t: &'t [Token],
    pos: usize,
    out: Vec<Address>,
}

impl Parser<'_> {
    /// address-list = address *("," address), empty elements (obs-addr-list) and
    /// stray ";" skipped.
    fn list(&mut self) {
        loop {
            while self.pos < self.t.len() && (self.t[self.pos].is(',') || self.t[self.pos].is(';'))
            {
                self.pos += 1;
            }
            if self.pos >= self.t.len() {
                break;
            }
            match self.group_colon() {
                Some(colon) => self.group(colon),
                None => self.mailbox(),
            }
        }
    }

    /// If the tokens from here are `display-name ":"`, the index of the colon.
    fn group_colon(&self) -> Option<usize> {
        for (i, tok) in self.t.iter().enumerate().skip(self.pos) {
            match tok.kind {
                Kind::Special(':') => return Some(i),
                Kind::Special('.' | ']' | ')') | Kind::Atom | Kind::Quoted | Kind::Comment => {}
                _ => return None,
            }
        }
        None
    }

    /// group = display-name ":" [group-list] ";" — the ";" may be missing.
    fn group(&mut self, colon: usize) {
        let name = phrase(&self.t[self.pos..colon]).unwrap_or_default();
        self.out.push(Address {
            mailbox: Some(name),
            ..Address::default()
        });
        self.pos = colon + 1;
        loop {
            while self.pos < self.t.len() && self.t[self.pos].is(',') {
                self.pos += 1;
            }
            if self.pos >= self.t.len() {
                break;
            }
            if self.t[self.pos].is(';') {
                self.pos += 1;
                break;
            }
            self.mailbox();
        }
        self.out.push(Address::default());
    }

    /// One mailbox: the tokens up to the next "," or ";" outside an angle-addr.
    fn mailbox(&mut self) {
        let start = self.pos;
        let mut in_angle = false;
        let mut in_route = false;
        while self.pos < self.t.len() {
            let tok = &self.t[self.pos];
            match tok.kind {
                Kind::Special('<') => {
                    in_angle = true;
                    in_route = self.t.get(self.pos + 1).is_some_and(|n| n.is('@'));
                }
                Kind::Special('>') => {
                    in_angle = false;
                    in_route = false;
                }
                Kind::Special(':') if in_angle => in_route = false,
                // Inside "<@a,@b:" commas separate route domains.
                Kind::Special(',') if in_route => {}
                Kind::Special(',' | ';') => break,
                _ => {}
            }
            self.pos += 1;
        }
        if let Some(addr) = build_mailbox(&self.t[start..self.pos]) {
            self.out.push(addr);
        }
    }
}

/// Turns the tokens of one mailbox (name-addr or addr-spec, possibly malformed)
/// into an address; `None` when there is nothing but comments.
fn build_mailbox(seg: &[Token]) -> Option<Address> {
    let last_comment = seg
        .iter()
        .rev()
        .find(|t| t.kind == Kind::Comment)
        .map(|t| collapse_ws(&t.text))
        .filter(|c| !c.is_empty());
    let ts: Vec<Token> = seg
        .iter()
        .filter(|t| t.kind != Kind::Comment)
        .cloned()
        .collect();
    if ts.is_empty() {
        return None;
    }

    let mut addr = Address::default();
    if let Some(lt) = ts.iter().position(|t| t.is('<')) {
        // name-addr = [display-name] "<" [obs-route] addr-spec ">"
        addr.name = phrase(&ts[..lt]);
        let close = ts[lt + 1..]
            .iter()
            .position(|t| t.is('>'))
            .map_or(ts.len(), |i| lt + 1 + i);
        let mut inner = &ts[lt + 1..close];
        if inner.first().is_some_and(|t| t.is('@'))
            && let Some(colon) = inner.iter().position(|t| t.is(':'))
        {
            let route = concat(&inner[..colon]);
            if !route.is_empty() {
                addr.adl = Some(route);
            }
            inner = &inner[colon + 1..];
        }
        let (mailbox, host) = split_addr_spec(inner);
        addr.mailbox = mailbox;
        addr.host = host;
    } else if let Some(at) = ts.iter().position(|t| t.is('@')) {
        // addr-spec, possibly after a display name that lacks the angle brackets.
        let mut local_start = at;
        if at > 0 && ts[at - 1].is_wordish() {
            local_start = at - 1;
            while local_start > 0
                && !ts[local_start].space_before
                && ts[local_start - 1].is_wordish()
            {
                local_start -= 1;
            }
        }
        addr.name = phrase(&ts[..local_start]).or(last_comment);
        let (mailbox, host) = split_addr_spec(&ts[local_start..]);
        addr.mailbox = mailbox;
        addr.host = host;
    } else if ts.iter().skip(1).all(|t| !t.space_before) {
        // A lone local part ("root").
        addr.mailbox = Some(concat(&ts));
        addr.name = last_comment;
    } else {
        // Only a display name.
        addr.name = phrase(&ts);
    }

    if addr.mailbox.as_deref().is_none_or(str::is_empty) {
        addr.mailbox = Some(MISSING_MAILBOX.to_string());
    }
    if addr.host.as_deref().is_none_or(str::is_empty) {
        addr.host = Some(MISSING_DOMAIN.to_string());
    }
    Some(addr)
}

/// Splits `local-part "@" domain`; the domain is the run of tokens right after
/// the "@" with no whitespace in between.
fn split_addr_spec(ts: &[Token]) -> (Option<String>, Option<String>) {
    let Some(at) = ts.iter().position(|t| t.is('@')) else {
        return (Some(concat(ts)), None);
    };
    let local = concat(&ts[..at]);
    let mut end = at + 1;
    while end < ts.len() && (end == at + 1 || !ts[end].space_before) && !ts[end].is('>') {
        end += 1;
    }
    let domain = concat(&ts[at + 1..end]);
    (Some(local), Some(domain))
}

/// Token texts glued together without spaces (local parts, domains, routes).
fn concat(ts: &[Token]) -> String {
    ts.iter().map(|t| t.text.as_str()).collect()
}

/// A display name: words joined by one space where the input had whitespace.
fn phrase(ts: &[Token]) -> Option<String> {
    let mut out = String::new();
    for t in ts {
        if t.kind == Kind::Comment {
            continue;
        }
        if t.space_before && !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&t.text);
    }
    let trimmed = out.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: Option<&str>, adl: Option<&str>, mailbox: &str, host: &str) -> Address {
        Address {
            name: name.map(str::to_string),
            adl: adl.map(str::to_string),
            mailbox: Some(mailbox.to_string()),
            host: Some(host.to_string()),
        }
    }

    fn group_start(name: &str) -> Address {
        Address {
            mailbox: Some(name.to_string()),
            ..Address::default()
        }
    }

    fn group_end() -> Address {
        Address::default()
    }

    #[test]
    fn known_answers() {
        let cases: Vec<(&str, Vec<Address>)> = vec![
            ("", vec![]),
            ("   ", vec![]),
            (" , ,, ", vec![]),
            ("(just a comment)", vec![]),
            (
                "user@example.com",
                vec![a(None, None, "user", "example.com")],
            ),
            (
                "  user.name+tag@sub.example.co.uk  ",
                vec![a(None, None, "user.name+tag", "sub.example.co.uk")],
            ),
            (
                "John Doe <john@example.com>",
                vec![a(Some("John Doe"), None, "john", "example.com")],
            ),
            (
                "<john@example.com>",
                vec![a(None, None, "john", "example.com")],
            ),
            (
                "\"Doe, John\" <john@example.com>",
                vec![a(Some("Doe, John"), None, "john", "example.com")],
            ),
            (
                r#""John \"JD\" Doe" <jd@x.org>"#,
                vec![a(Some("John \"JD\" Doe"), None, "jd", "x.org")],
            ),
            (
                "John Q. Public <jqp@x.example>",
                vec![a(Some("John Q. Public"), None, "jqp", "x.example")],
            ),
            (
                "John   Q.   Public <jqp@x.example>",
                vec![a(Some("John Q. Public"), None, "jqp", "x.example")],
            ),
            (
                "=?utf-8?Q?J=C3=B6rg?= Smith <j@x.example>",
                vec![a(
                    Some("=?utf-8?Q?J=C3=B6rg?= Smith"),
                    None,
                    "j",
                    "x.example",
                )],
            ),
            (
                "=?utf-8?Q?Mr._Foo?= <f@x>",
                vec![a(Some("=?utf-8?Q?Mr._Foo?="), None, "f", "x")],
            ),
            (
                "Jörg Müller <jm@bücher.example>",
                vec![a(Some("Jörg Müller"), None, "jm", "bücher.example")],
            ),
            (
                "a@b, c@d",
                vec![a(None, None, "a", "b"), a(None, None, "c", "d")],
            ),
            (
                "a@b,,c@d,",
                vec![a(None, None, "a", "b"), a(None, None, "c", "d")],
            ),
            (
                "a@b; c@d",
                vec![a(None, None, "a", "b"), a(None, None, "c", "d")],
            ),
            (
                "user@host (John Doe)",
                vec![a(Some("John Doe"), None, "user", "host")],
            ),
            (
                "(John Doe) user@host",
                vec![a(Some("John Doe"), None, "user", "host")],
            ),
            (
                "(comment) John (x) Doe <j@d> (trailing)",
                vec![a(Some("John Doe"), None, "j", "d")],
            ),
            (
                "John <john@example.com> (work)",
                vec![a(Some("John"), None, "john", "example.com")],
            ),
            (
                "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
                vec![a(Some("Pete"), None, "pete", "silly.test")],
            ),
            (
                "<@route1,@route2:user@host>",
                vec![a(None, Some("@route1,@route2"), "user", "host")],
            ),
            (
                "Joe <@a.example, @b.example : joe@c.example>, x@y",
                vec![
                    a(
                        Some("Joe"),
                        Some("@a.example,@b.example"),
                        "joe",
                        "c.example",
                    ),
                    a(None, None, "x", "y"),
                ],
            ),
            (
                "<user@[192.168.0.1]>",
                vec![a(None, None, "user", "[192.168.0.1]")],
            ),
            (
                "\"quoted local\"@example.com",
                vec![a(None, None, "quoted local", "example.com")],
            ),
            (
                "Undisclosed recipients:;",
                vec![group_start("Undisclosed recipients"), group_end()],
            ),
            (
                "undisclosed-recipients: ;",
                vec![group_start("undisclosed-recipients"), group_end()],
            ),
            (
                "Friends: a@b, \"C\" <c@d>; , e@f",
                vec![
                    group_start("Friends"),
                    a(None, None, "a", "b"),
                    a(Some("C"), None, "c", "d"),
                    group_end(),
                    a(None, None, "e", "f"),
                ],
            ),
            (
                "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
                vec![
                    group_start("A Group"),
                    a(Some("Ed Jones"), None, "c", "a.test"),
                    a(None, None, "joe", "where.test"),
                    a(Some("John"), None, "jdoe", "one.test"),
                    group_end(),
                ],
            ),
            (
                "\"My Group\": a@b",
                vec![
                    group_start("My Group"),
                    a(None, None, "a", "b"),
                    group_end(),
                ],
            ),
            (
                "g1: a@b;, g2: ; c@d",
                vec![
                    group_start("g1"),
                    a(None, None, "a", "b"),
                    group_end(),
                    group_start("g2"),
                    group_end(),
                    a(None, None, "c", "d"),
                ],
            ),
            ("root", vec![a(None, None, "root", MISSING_DOMAIN)]),
            (
                "root (Super User)",
                vec![a(Some("Super User"), None, "root", MISSING_DOMAIN)],
            ),
            (
                "John Smith",
                vec![Address {
                    name: Some("John Smith".into()),
                    adl: None,
                    mailbox: Some(MISSING_MAILBOX.into()),
                    host: Some(MISSING_DOMAIN.into()),
                }],
            ),
            (
                "John Smith john@example.com",
                vec![a(Some("John Smith"), None, "john", "example.com")],
            ),
            (
                "A <a@b>, B <b@c",
                vec![a(Some("A"), None, "a", "b"), a(Some("B"), None, "b", "c")],
            ),
            ("<>", vec![a(None, None, MISSING_MAILBOX, MISSING_DOMAIN)]),
            ("user@", vec![a(None, None, "user", MISSING_DOMAIN)]),
            (
                "@example.com",
                vec![a(None, None, MISSING_MAILBOX, "example.com")],
            ),
            ("<@route>", vec![a(None, None, MISSING_MAILBOX, "route")]),
            ("a@b@c", vec![a(None, None, "a", "b@c")]),
            ("\"\" <empty@name>", vec![a(None, None, "empty", "name")]),
            (
                "\"unterminated <x@y>",
                vec![Address {
                    name: None,
                    adl: None,
                    mailbox: Some("unterminated <x@y>".into()),
                    host: Some(MISSING_DOMAIN.into()),
                }],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_address_list(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn invariants_hold_on_odd_input() {
        let inputs = [
            "<<<>>>",
            ":::",
            ";;;",
            "@@@",
            "((((",
            "))))",
            "\"",
            "\\",
            "[",
            "]",
            "a:b:c;d;",
            "g: <a@b, c@d",
            "<@a,@b",
            "x <@a:> y",
            ". . .",
            "a.@.b",
            "\u{0}\u{1}",
        ];
        for input in inputs {
            let list = parse_address_list(input);
            let mut in_group = false;
            for addr in &list {
                let is_start = addr.name.is_none()
                    && addr.adl.is_none()
                    && addr.mailbox.is_some()
                    && addr.host.is_none();
                let is_end = *addr == Address::default();
                if is_start {
                    assert!(!in_group, "nested group in {input:?}: {list:?}");
                    in_group = true;
                } else if is_end {
                    assert!(in_group, "stray group end in {input:?}: {list:?}");
                    in_group = false;
                } else {
                    assert!(addr.mailbox.is_some() && addr.host.is_some(), "{input:?}");
                }
            }
            assert!(!in_group, "unterminated group in {input:?}: {list:?}");
        }
    }
}
