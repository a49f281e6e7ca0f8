//! SMTP/LMTP command lines — RFC 5321 §4.1, RFC 2033 §4.1 (LHLO).

/// ESMTP parameters of MAIL/RCPT: upper-cased keyword and optional value.
pub type Params = Vec<(String, Option<String>)>;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Lhlo(String),
    Mail {
        from: String,
        params: Params,
    },
    Rcpt {
        to: String,
        params: Params,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// AUTH mechanism [initial-response] — RFC 4954 §4.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// BDAT size [LAST] — RFC 3030 §2.
    Bdat {
        size: u64,
        last: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("500 5.5.2 Syntax error, command unrecognized")]
    Unknown,
    #[error("501 5.5.4 {0}")]
    Syntax(&'static str),
}

pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line =
        std::str::from_utf8(line).map_err(|_| ParseError::Syntax("Command is not valid UTF-8"))?;
    let line = line.trim_end();
    // RFC 5321 §4.1.2: commands are printable text; a NUL or other control
    // character in an address would reach logs, headers and other systems.
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::Syntax(
            "Control characters are not allowed in commands",
        ));
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_start()),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |c| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(ParseError::Syntax("This command takes no arguments"))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" | "LHLO" => {
            let domain = rest.split_whitespace().next().unwrap_or("");
            if domain.is_empty() {
                return Err(ParseError::Syntax(
                    "A domain name or address literal is required",
                ));
            }
            let d = domain.to_string();
            Ok(match verb.as_str() {
                "EHLO" => Command::Ehlo(d),
                "HELO" => Command::Helo(d),
                _ => Command::Lhlo(d),
            })
        }
        "MAIL" => {
            let rest = strip_keyword(rest, "FROM:")
                .ok_or(ParseError::Syntax("Use MAIL FROM:<address>"))?;
            let (from, params) = path_and_params(rest)?;
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let rest =
                strip_keyword(rest, "TO:").ok_or(ParseError::Syntax("Use RCPT TO:<address>"))?;
            let (to, params) = path_and_params(rest)?;
            if to.is_empty() {
                return Err(ParseError::Syntax("A recipient address is required"));
            }
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        // RFC 5321 §4.1.1.9: NOOP may carry an argument, which is ignored.
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => {
            let mut words = rest.split_whitespace();
            let Some(mechanism) = words.next() else {
                return Err(ParseError::Syntax("AUTH needs a mechanism"));
            };
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(ParseError::Syntax(
                    "AUTH takes a mechanism and an initial response",
                ));
            }
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial,
            })
        }
        "BDAT" => {
            let mut words = rest.split_whitespace();
            let size = words
                .next()
                .filter(|w| !w.is_empty() && w.len() <= 18 && w.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|w| w.parse::<u64>().ok())
                .ok_or(ParseError::Syntax("BDAT needs a chunk size"))?;
            let last = match words.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                Some(_) => return Err(ParseError::Syntax("Use BDAT <size> [LAST]")),
            };
            if words.next().is_some() {
                return Err(ParseError::Syntax("Use BDAT <size> [LAST]"));
            }
            Ok(Command::Bdat { size, last })
        }
        _ => Err(ParseError::Unknown),
    }
}

/// Strips "FROM:" / "TO:" case-insensitively, allowing the space some clients put
/// after the colon.
fn strip_keyword<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let head = s.get(..keyword.len())?;
    if head.eq_ignore_ascii_case(keyword) {
        Some(s[keyword.len()..].trim_start())
    } else {
        None
    }
}

/// `<path> [param[=value] ...]` — RFC 5321 §4.1.2. A source route (`@a,@b:`) is
/// accepted and dropped (§4.1.1.3). Returns the address without angle brackets.
fn path_and_params(s: &str) -> Result<(String, Params), ParseError> {
    let s = s.trim();
    let (path, rest) = if let Some(inner) = s.strip_prefix('<') {
        // The path ends at the first '>' outside a quoted local part.
        let mut quoted = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in inner.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or(ParseError::Syntax("Missing '>' after the address"))?;
        (&inner[..end], &inner[end + 1..])
    } else {
        // Lenient: a bare address without brackets, as some scripts send.
        match s.find(' ') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    let path = match path.find(':') {
        Some(i) if path.starts_with('@') => &path[i + 1..],
        _ => path,
    };
    check_mailbox(path)?;
    let mut params = Vec::new();
    for p in rest.split_whitespace() {
        match p.split_once('=') {
            Some((k, v)) => params.push((k.to_ascii_uppercase(), Some(v.to_string()))),
            None => params.push((p.to_ascii_uppercase(), None)),
        }
    }
    Ok((path.to_string(), params))
}

/// The address as RFC 5321 §4.1.2 has it, as far as reading it back the same
/// needs: spaces, quotes and angle brackets only inside a quoted local part at
/// its start, and no second source route (`1<a@b>`, `"a" >b@c`, `@a:@b:c` are
/// malformed, not addresses).
fn check_mailbox(path: &str) -> Result<(), ParseError> {
    let rest = match path.strip_prefix('"') {
        Some(quoted) => {
            let mut escaped = false;
            let close = quoted.char_indices().find_map(|(i, c)| {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => return Some(i),
                    _ => {}
                }
                None
            });
            let close = close.ok_or(ParseError::Syntax("Malformed address"))?;
            &quoted[close + 1..]
        }
        None => path,
    };
    if rest.contains(char::is_whitespace) {
        return Err(ParseError::Syntax("Addresses may not contain spaces"));
    }
    if rest.contains(['<', '>', '"']) || path.starts_with('@') {
        return Err(ParseError::Syntax("Malformed address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(
            parse(b"EHLO client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(parse(b"lhlo x"), Ok(Command::Lhlo("x".into())));
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME"),
            Ok(Command::Mail {
                from: "a@b.example".into(),
                params: vec![
                    ("SIZE".into(), Some("100".into())),
                    ("BODY".into(), Some("8BITMIME".into()))
                ]
            })
        );
        assert_eq!(
            parse(b"MAIL FROM:<>"),
            Ok(Command::Mail {
                from: "".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"mail from: <x@y>"),
            Ok(Command::Mail {
                from: "x@y".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<@relay.example:user@d.example>"),
            Ok(Command::Rcpt {
                to: "user@d.example".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<\"odd>name\"@d.example>"),
            Ok(Command::Rcpt {
                to: "\"odd>name\"@d.example".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<postmaster>"),
            Ok(Command::Rcpt {
                to: "postmaster".into(),
                params: vec![]
            })
        );
        assert!(parse(b"RCPT TO:<>").is_err());
        // Found by the submission_checks fuzz target (issue 24): a bare path
        // with angle brackets inside was taken whole as the address.
        assert!(parse(b"MAIL FROM:1<alice@example.org> SIZE=1").is_err());
        assert!(parse(b"RCPT TO:bob>@example.org").is_err());
        assert!(parse(b"RCPT TO:<<bob@example.org>>").is_err());
        // A quote in a source route made the rest of the line the address.
        assert!(parse(b"RCPT TO:<@re\"lay.example:bob@example.net> NOTIFY=NEVER x\">").is_err());
        assert!(parse(b"RCPT TO:<@a.example:@b.example:bob@example.net>").is_err());
        assert_eq!(
            parse(b"RCPT TO:<\"odd name\\\"\"@d.example> NOTIFY=NEVER"),
            Ok(Command::Rcpt {
                to: "\"odd name\\\"\"@d.example".into(),
                params: vec![("NOTIFY".into(), Some("NEVER".into()))]
            })
        );
        assert!(parse(b"MAIL FROM:<a@b").is_err());
        assert!(parse(b"EHLO").is_err());
        assert_eq!(parse(b"FOO"), Err(ParseError::Unknown));
        assert_eq!(parse(b"NOOP hello"), Ok(Command::Noop));
        assert_eq!(
            parse(b"BDAT 100 LAST"),
            Ok(Command::Bdat {
                size: 100,
                last: true
            })
        );
        assert_eq!(
            parse(b"bdat 0"),
            Ok(Command::Bdat {
                size: 0,
                last: false
            })
        );
        assert!(parse(b"BDAT x").is_err());
        assert!(parse(b"BDAT 1 NOW").is_err());
        assert_eq!(
            parse(b"AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            })
        );
        assert!(parse(b"AUTH").is_err());
        assert_eq!(
            parse("RCPT TO:<josé@exämple.org>".as_bytes()),
            Ok(Command::Rcpt {
                to: "josé@exämple.org".into(),
                params: vec![]
            })
        );
    }
}
