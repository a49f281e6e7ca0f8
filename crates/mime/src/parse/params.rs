//! Structured MIME header values: Content-Type (RFC 2045 §5.1), Content-Disposition
//! (RFC 2183), Content-Transfer-Encoding (RFC 2045 §6.1) and Content-Language
//! (RFC 3282), with parameter continuations joined (RFC 2231 §3).
//!
//! Values are kept as given (quotes removed, quoted-pairs resolved, encoded-words
//! and RFC 2231 extended values left encoded), which is what IMAP BODYSTRUCTURE
//! reports. Input is an unfolded header value.

/// More parameters than this on one header are ignored (bounds the work spent on
/// hostile input; real messages have a handful).
const MAX_PARAMS: usize = 256;

/// A `type/subtype` with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContentType {
    pub media_type: String,
    pub media_subtype: String,
    pub params: Vec<(String, String)>,
}

/// Parses a Content-Type value; `None` when it has no valid `type "/" subtype`
/// (the part then defaults to text/plain, as Dovecot does).
pub(crate) fn content_type(value: &str) -> Option<ContentType> {
    let mut c = Cursor::new(value);
    c.skip_cfws();
    let media_type = c.token();
    c.skip_cfws();
    if media_type.is_empty() || !c.eat('/') {
        return None;
    }
    c.skip_cfws();
    let media_subtype = c.token();
    if media_subtype.is_empty() {
        return None;
    }
    Some(ContentType {
        media_type: media_type.to_ascii_lowercase(),
        media_subtype: media_subtype.to_ascii_lowercase(),
        params: parameters(&mut c),
    })
}

/// Parses a Content-Disposition value into its lower-cased kind and parameters.
pub(crate) fn disposition(value: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut c = Cursor::new(value);
    c.skip_cfws();
    let kind = c.token();
    if kind.is_empty() {
        return None;
    }
    Some((kind.to_ascii_lowercase(), parameters(&mut c)))
}

/// The mechanism token of Content-Transfer-Encoding, upper-cased; `None` when the
/// value does not start with a valid token (Dovecot then reports the default).
pub(crate) fn transfer_encoding(value: &str) -> Option<String> {
    let mut c = Cursor::new(value);
    c.skip_cfws();
    let token = c.token();
    (!token.is_empty()).then(|| token.to_ascii_uppercase())
}

/// Content-Language: a comma-separated list of language tags.
pub(crate) fn languages(value: &str) -> Vec<String> {
    let mut c = Cursor::new(value);
    let mut out = Vec::new();
    loop {
        c.skip_cfws();
        if c.at_end() {
            break;
        }
        let tag = c.token();
        if tag.is_empty() {
            // Skip whatever is not a tag up to the next comma.
            c.bump();
            continue;
        }
        out.push(tag.to_string());
    }
    out
}

/// `*(";" attribute "=" value)`, tolerant of missing semicolons, stray
/// semicolons and whitespace around "=". Names are lower-cased.
fn parameters(c: &mut Cursor<'_>) -> Vec<(String, String)> {
    let mut raw = Vec::new();
    loop {
        c.skip_cfws();
        while c.eat(';') {
            c.skip_cfws();
        }
        if c.at_end() {
            break;
        }
        let name = c.token();
        if name.is_empty() {
            // Not an attribute: skip to the next parameter.
            c.skip_until(';');
            continue;
        }
        let name = name.to_ascii_lowercase();
        c.skip_cfws();
        if !c.eat('=') {
            c.skip_until(';');
            continue;
        }
        c.skip_cfws();
        let value = if c.peek() == Some('"') {
            c.quoted_string()
        } else {
            c.loose_value().to_string()
        };
        if raw.len() < MAX_PARAMS {
            raw.push((name, value));
        }
    }
    join_continuations(raw)
}

/// RFC 2231 §3: `name*0`, `name*1`, … are joined into one `name` parameter (or
/// `name*` when the first section is extended, keeping the value encoded, like
/// Dovecot). The joined parameter takes the place of its first section; sections
/// that do not continue a run starting at 0 are kept as they are.
fn join_continuations(raw: Vec<(String, String)>) -> Vec<(String, String)> {
    // Parameter name split into base name, section number and extended flag.
    fn section(name: &str) -> Option<(&str, u32, bool)> {
        let (base, rest) = name.split_once('*')?;
        let (num, ext) = match rest.strip_suffix('*') {
            Some(num) => (num, true),
            None => (rest, false),
        };
        if base.is_empty() || num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Leading zeros are not allowed (RFC 2231 §3); "0" itself is.
        if num.len() > 1 && num.starts_with('0') {
            return None;
        }
        Some((base, num.parse().ok()?, ext))
    }

    if !raw.iter().any(|(n, _)| section(n).is_some()) {
        return raw;
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(raw.len());
    let mut used = vec![false; raw.len()];
    for i in 0..raw.len() {
        if used[i] {
            continue;
        }
        let Some((base, 0, first_ext)) = section(&raw[i].0) else {
            if section(&raw[i].0).is_none() {
                used[i] = true;
                out.push(raw[i].clone());
            }
            continue;
        };
        // Collect sections 0, 1, 2, … of this base name, in numeric order.
        let mut value = String::new();
        let mut want = 0u32;
        loop {
            let found = (0..raw.len()).find(|&j| {
                !used[j] && section(&raw[j].0).is_some_and(|(b, n, _)| b == base && n == want)
            });
            let Some(j) = found else { break };
            used[j] = true;
            let ext = section(&raw[j].0).is_some_and(|(_, _, e)| e);
            if first_ext && !ext {
                // A plain section inside an extended value: percent-encode it so
                // the joined value stays a valid extended value.
                percent_encode_into(&raw[j].1, &mut value);
            } else {
                value.push_str(&raw[j].1);
            }
            want += 1;
        }
        let name = if first_ext {
            format!("{base}*")
        } else {
            base.to_string()
        };
        out.push((name, value));
    }
    // Sections that did not belong to a run starting at 0.
    for (i, p) in raw.iter().enumerate() {
        if !used[i] {
            out.push(p.clone());
        }
    }
    out
}

fn percent_encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// RFC 2045 tspecials.
fn is_tspecial(c: char) -> bool {
    matches!(
        c,
        '(' | ')' | '<' | '>' | '@' | ',' | ';' | ':' | '\\' | '"' | '/' | '[' | ']' | '?' | '='
    )
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, want: char) -> bool {
        if self.peek() == Some(want) {
            self.pos += want.len_utf8();
            true
        } else {
            false
        }
    }

    /// Skips whitespace and (nested) comments.
    fn skip_cfws(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('(') => {
                    let mut depth = 0u32;
                    while let Some(c) = self.bump() {
                        match c {
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            '\\' => {
                                self.bump();
                            }
                            _ => {}
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// An RFC 2045 token (8-bit characters tolerated).
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c.is_control() || is_tspecial(c) {
                break;
            }
            self.bump();
        }
        &self.s[start..self.pos]
    }

    /// A parameter value that is not quoted: everything up to ";", whitespace or
    /// a comment (tolerates "/", "@", "=" and such, often seen unquoted).
    fn loose_value(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == ';' || c == '(' || c.is_whitespace() {
                break;
            }
            self.bump();
        }
        &self.s[start..self.pos]
    }

    /// A quoted-string at the cursor, quotes removed and quoted-pairs resolved;
    /// an unterminated one runs to the end.
    fn quoted_string(&mut self) -> String {
        let mut out = String::new();
        self.bump();
        while let Some(c) = self.bump() {
            match c {
                '"' => break,
                '\\' => {
                    if let Some(n) = self.bump() {
                        out.push(n);
                    }
                }
                _ => out.push(c),
            }
        }
        out
    }

    fn skip_until(&mut self, stop: char) {
        while let Some(c) = self.peek() {
            if c == stop {
                return;
            }
            if c == '"' {
                self.quoted_string();
            } else {
                self.bump();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn content_types() {
        let ct = content_type("Text/HTML; Charset=\"UTF-8\"; format=flowed").unwrap();
        assert_eq!(ct.media_type, "text");
        assert_eq!(ct.media_subtype, "html");
        assert_eq!(ct.params, p(&[("charset", "UTF-8"), ("format", "flowed")]));

        let ct = content_type(" multipart/mixed (c) ; boundary = \"foo bar\" ").unwrap();
        assert_eq!(ct.media_subtype, "mixed");
        assert_eq!(ct.params, p(&[("boundary", "foo bar")]));

        let ct = content_type("text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"").unwrap();
        assert_eq!(
            ct.params,
            p(&[("charset", "us-ascii"), ("foo", "quoted\"string")])
        );

        // Missing semicolon, stray semicolons, unquoted specials, empty value.
        let ct = content_type("application/x-foo name=a/b@c;; ;x=;y").unwrap();
        assert_eq!(ct.params, p(&[("name", "a/b@c"), ("x", "")]));

        // Encoded words are kept.
        let ct = content_type("image/png; name=\"=?utf-8?B?w6Q=?=.png\"").unwrap();
        assert_eq!(ct.params, p(&[("name", "=?utf-8?B?w6Q=?=.png")]));

        assert_eq!(content_type(""), None);
        assert_eq!(content_type("text"), None);
        assert_eq!(content_type("text/"), None);
        assert_eq!(content_type("/plain"), None);
        assert_eq!(content_type("garbage here"), None);
        assert!(content_type("text / plain").is_some());
    }

    #[test]
    fn rfc2231_continuations() {
        // RFC 2231 §3 example.
        let ct = content_type(
            "message/external-body; access-type=URL;\
             URL*0=\"ftp://\";URL*1=\"cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\"",
        )
        .unwrap();
        assert_eq!(
            ct.params,
            p(&[
                ("access-type", "URL"),
                (
                    "url",
                    "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"
                )
            ])
        );
        // RFC 2231 §4.1 example: extended first section keeps "name*".
        let ct = content_type(
            "application/x-stuff; title*0*=us-ascii'en'This%20is%20even%20more%20;\
             title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2=\"isn't it!\"",
        )
        .unwrap();
        assert_eq!(
            ct.params,
            p(&[(
                "title*",
                "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!"
            )])
        );
        // Out of order sections are sorted; a gap keeps the rest as they are.
        let ct = content_type("a/b; n*1=b; x=1; n*0=a; n*3=d").unwrap();
        assert_eq!(ct.params, p(&[("x", "1"), ("n", "ab"), ("n*3", "d")]));
        // Extended single value stays as given.
        let ct = content_type("a/b; name*=utf-8''%C3%A4.txt").unwrap();
        assert_eq!(ct.params, p(&[("name*", "utf-8''%C3%A4.txt")]));
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            disposition("Attachment; filename=\"a b.pdf\"; size=123"),
            Some((
                "attachment".to_string(),
                p(&[("filename", "a b.pdf"), ("size", "123")])
            ))
        );
        assert_eq!(disposition("inline"), Some(("inline".to_string(), vec![])));
        assert_eq!(disposition("; filename=x"), None);
        assert_eq!(disposition(""), None);
    }

    #[test]
    fn transfer_encodings() {
        assert_eq!(transfer_encoding(" base64 "), Some("BASE64".into()));
        assert_eq!(
            transfer_encoding("Quoted-Printable (comment)"),
            Some("QUOTED-PRINTABLE".into())
        );
        assert_eq!(transfer_encoding("?invalid"), None);
        assert_eq!(transfer_encoding(""), None);
    }

    #[test]
    fn language_lists() {
        assert_eq!(languages("en, fi, se"), vec!["en", "fi", "se"]);
        assert_eq!(languages("en-US (English)"), vec!["en-US"]);
        assert_eq!(languages(" , de ,, "), vec!["de"]);
        assert!(languages("").is_empty());
    }
}
