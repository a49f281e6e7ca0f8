//! SMTP replies as a client reads them — RFC 5321 §4.2 (multi-line replies, §4.2.1),
//! with the enhanced status codes of RFC 3463 as RFC 2034 puts them in the text.
//! Sans-I/O: the client feeds lines, the parser answers when a reply is complete.

use std::fmt;

/// The longest reply line we accept, CRLF included. RFC 5321 §4.5.3.1.5 allows 512;
/// real servers write longer ones, so we are lenient up to this cap.
pub const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have (EHLO lists run to a few dozen).
pub const MAX_REPLY_LINES: usize = 128;

/// An enhanced mail system status code — RFC 3463 §2: `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    /// Parses `c.s.d` at the start of `text`: returns the code and the rest.
    pub fn parse_prefix(text: &str) -> Option<(EnhancedCode, &str)> {
        let end = text.find(' ').unwrap_or(text.len());
        let mut parts = text[..end].split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let num = |s: &str, max: usize| {
            (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u16>().ok())
                .flatten()
        };
        let class = num(class, 1)? as u8;
        if !matches!(class, 2 | 4 | 5) {
            return None;
        }
        let code = EnhancedCode {
            class,
            subject: num(subject, 3)?,
            detail: num(detail, 3)?,
        };
        Some((code, text[end..].trim_start()))
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced code of the first line, when it has one whose class matches
    /// the reply code's first digit.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line, without the code and without the enhanced code.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2yz — RFC 5321 §4.2.1.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3yz: the server waits for more (DATA's 354).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4yz: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5yz: do not try again as it is.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The lines' text joined with spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

/// `550 5.1.1 first line second line`: one line for logs, the queue and bounces.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("reply has more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// Collects the lines of one reply.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Feeds one line (with or without its CRLF). Answers the reply when this line
    /// was its last (`250 ...`), `None` while more lines follow (`250-...`).
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        let bytes = line.as_bytes();
        let malformed = || ReplyError::Malformed(line.chars().take(80).collect());
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) || bytes[0] == b'0' {
            return Err(malformed());
        }
        let code: u16 = line[..3].parse().map_err(|_| malformed())?;
        let last = match bytes.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(malformed()),
        };
        // RFC 5321 §4.2.1: every line carries the same code; lenient about servers
        // that do not, we keep the first.
        self.code.get_or_insert(code);
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        self.lines.push(line.get(4..).unwrap_or("").to_string());
        if !last {
            return Ok(None);
        }
        let code = self.code.take().unwrap_or(code);
        let mut lines = std::mem::take(&mut self.lines);
        // RFC 2034 §3: the enhanced code prefixes the text of every line.
        let mut enhanced = None;
        for (i, l) in lines.iter_mut().enumerate() {
            if let Some((e, rest)) = EnhancedCode::parse_prefix(l)
                && u16::from(e.class) == code / 100
            {
                if i == 0 {
                    enhanced = Some(e);
                }
                *l = rest.to_string();
            }
        }
        Ok(Some(Reply {
            code,
            enhanced,
            lines,
        }))
    }
}

/// Parses a reply written as one line (`550 5.1.1 text`), as the queue keeps them.
/// `None` when the text is not a reply (a local error such as a refused connect).
pub fn parse_one_line(s: &str) -> Option<Reply> {
    ReplyParser::new().push(s.as_bytes()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(lines: &[&str]) -> Result<Reply, ReplyError> {
        let mut p = ReplyParser::new();
        for (i, l) in lines.iter().enumerate() {
            match p.push(l.as_bytes())? {
                Some(r) => {
                    assert_eq!(i, lines.len() - 1, "reply ended early");
                    return Ok(r);
                }
                None => assert!(i < lines.len() - 1, "reply did not end"),
            }
        }
        unreachable!()
    }

    #[test]
    fn single_and_multi_line_replies() {
        let r = parse_all(&["250 2.1.0 Ok\r\n"]).unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced.unwrap().to_string(), "2.1.0");
        assert_eq!(r.lines, ["Ok"]);
        assert_eq!(r.to_string(), "250 2.1.0 Ok");

        let r = parse_all(&[
            "250-mx.example.org\r\n",
            "250-SIZE 1000\r\n",
            "250 STARTTLS\r\n",
        ])
        .unwrap();
        assert_eq!(r.lines, ["mx.example.org", "SIZE 1000", "STARTTLS"]);
        assert_eq!(r.enhanced, None);

        let r = parse_all(&[
            "550-5.1.1 The email account that you tried to reach does not exist.\r\n",
            "550 5.1.1 Please try again.\r\n",
        ])
        .unwrap();
        assert!(r.is_permanent());
        assert_eq!(
            r.to_string(),
            "550 5.1.1 The email account that you tried to reach does not exist. Please try again."
        );
        // Code alone, no text.
        let r = parse_all(&["354\r\n"]).unwrap();
        assert!(r.is_intermediate());
        assert_eq!(r.lines, [""]);
    }

    #[test]
    fn enhanced_code_must_match_the_class() {
        let r = parse_all(&["250 5.1.1 odd"]).unwrap();
        assert_eq!(r.enhanced, None);
        assert_eq!(r.lines, ["5.1.1 odd"]);
        let r = parse_all(&["451 4.7.1 Greylisted, see https://x"]).unwrap();
        assert_eq!(
            r.enhanced,
            Some(EnhancedCode {
                class: 4,
                subject: 7,
                detail: 1
            })
        );
        assert!(r.is_transient());
        assert_eq!(
            EnhancedCode::parse_prefix("5.1.10 null MX")
                .unwrap()
                .0
                .detail,
            10
        );
        for bad in ["5.1", "5.1.1.1", "3.1.1", "5.a.1", "5.1234.1", ""] {
            assert!(EnhancedCode::parse_prefix(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in ["", "25", "2500 x", "abc", "250x", "099 x", "é50 x"] {
            assert!(ReplyParser::new().push(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let mut p = ReplyParser::new();
        for _ in 0..MAX_REPLY_LINES {
            assert_eq!(p.push(b"250-x"), Ok(None));
        }
        assert_eq!(p.push(b"250 x"), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn one_line_form_round_trips() {
        let r = parse_one_line("552 5.3.4 Message too big").unwrap();
        assert_eq!(r.to_string(), "552 5.3.4 Message too big");
        assert!(parse_one_line("connect to 127.0.0.1:25: Connection refused").is_none());
    }
}
