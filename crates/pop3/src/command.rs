//! POP3 command lines — RFC 1939 §3: a keyword of 3–4 characters, case-insensitive,
//! then arguments separated by single spaces.

/// A parsed command. Message numbers are 1-based as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    /// `AUTH` alone lists mechanisms; otherwise mechanism and optional initial response.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    Capa,
    Stls,
    Utf8,
    Quit,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Top(u32, u32),
    Uidl(Option<u32>),
    Apop,
}

/// Why a line is not a command; each becomes an `-ERR` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Empty command")]
    Empty,
    #[error("Unknown command")]
    Unknown,
    #[error("{0}")]
    Syntax(&'static str),
}

fn number(s: &str) -> Result<u32, ParseError> {
    // RFC 1939 §3: message numbers are decimal, no signs; 0 is never valid.
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax("Invalid message number"));
    }
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ParseError::Syntax("Invalid message number")),
    }
}

pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line =
        std::str::from_utf8(line).map_err(|_| ParseError::Syntax("Command is not valid UTF-8"))?;
    let line = line.trim_end_matches([' ', '\t']);
    if line.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (line, None),
    };
    let args: Vec<&str> = rest
        .map(|r| r.split(' ').filter(|a| !a.is_empty()).collect())
        .unwrap_or_default();
    let keyword = keyword.to_ascii_uppercase();
    let no_args = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(ParseError::Syntax("This command takes no arguments"))
        }
    };
    match keyword.as_str() {
        // USER and PASS take the rest of the line: passwords may contain spaces
        // (RFC 1939 §7 allows it for PASS; Dovecot and Exchange accept it).
        "USER" => match rest.map(str::trim) {
            Some(name) if !name.is_empty() => Ok(Command::User(name.to_string())),
            _ => Err(ParseError::Syntax("USER needs a user name")),
        },
        "PASS" => match rest {
            Some(pw) if !pw.is_empty() => Ok(Command::Pass(pw.to_string())),
            _ => Err(ParseError::Syntax("PASS needs a password")),
        },
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [m] => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: None,
            }),
            [m, i] => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: Some(i.to_string()),
            }),
            _ => Err(ParseError::Syntax(
                "AUTH takes a mechanism and an optional initial response",
            )),
        },
        "CAPA" => no_args(Command::Capa),
        "STLS" => no_args(Command::Stls),
        "UTF8" => no_args(Command::Utf8),
        "QUIT" => no_args(Command::Quit),
        "STAT" => no_args(Command::Stat),
        "NOOP" => no_args(Command::Noop),
        "RSET" => no_args(Command::Rset),
        "LIST" => match args.as_slice() {
            [] => Ok(Command::List(None)),
            [n] => Ok(Command::List(Some(number(n)?))),
            _ => Err(ParseError::Syntax("LIST takes at most one message number")),
        },
        "UIDL" => match args.as_slice() {
            [] => Ok(Command::Uidl(None)),
            [n] => Ok(Command::Uidl(Some(number(n)?))),
            _ => Err(ParseError::Syntax("UIDL takes at most one message number")),
        },
        "RETR" => match args.as_slice() {
            [n] => Ok(Command::Retr(number(n)?)),
            _ => Err(ParseError::Syntax("RETR needs one message number")),
        },
        "DELE" => match args.as_slice() {
            [n] => Ok(Command::Dele(number(n)?)),
            _ => Err(ParseError::Syntax("DELE needs one message number")),
        },
        "TOP" => match args.as_slice() {
            [n, lines] => {
                let lines = if lines.bytes().all(|b| b.is_ascii_digit()) && lines.len() <= 10 {
                    lines
                        .parse::<u32>()
                        .map_err(|_| ParseError::Syntax("Invalid line count"))?
                } else {
                    return Err(ParseError::Syntax("Invalid line count"));
                };
                Ok(Command::Top(number(n)?, lines))
            }
            _ => Err(ParseError::Syntax(
                "TOP needs a message number and a line count",
            )),
        },
        "APOP" => Ok(Command::Apop),
        _ => Err(ParseError::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let cases: &[(&[u8], Result<Command, ParseError>)] = &[
            (
                b"USER alice@example.org",
                Ok(Command::User("alice@example.org".into())),
            ),
            (b"user Bob", Ok(Command::User("Bob".into()))),
            (
                b"PASS secret with spaces",
                Ok(Command::Pass("secret with spaces".into())),
            ),
            (b"stat", Ok(Command::Stat)),
            (b"LIST", Ok(Command::List(None))),
            (b"LIST 2", Ok(Command::List(Some(2)))),
            (b"RETR 1", Ok(Command::Retr(1))),
            (b"TOP 1 0", Ok(Command::Top(1, 0))),
            (b"UIDL 10", Ok(Command::Uidl(Some(10)))),
            (
                b"AUTH",
                Ok(Command::Auth {
                    mechanism: None,
                    initial: None,
                }),
            ),
            (
                b"AUTH plain AGEAYg==",
                Ok(Command::Auth {
                    mechanism: Some("PLAIN".into()),
                    initial: Some("AGEAYg==".into()),
                }),
            ),
            (b"RETR 0", Err(ParseError::Syntax("Invalid message number"))),
            (
                b"RETR -1",
                Err(ParseError::Syntax("Invalid message number")),
            ),
            (
                b"RETR 99999999999",
                Err(ParseError::Syntax("Invalid message number")),
            ),
            (
                b"RETR",
                Err(ParseError::Syntax("RETR needs one message number")),
            ),
            (
                b"STAT now",
                Err(ParseError::Syntax("This command takes no arguments")),
            ),
            (b"", Err(ParseError::Empty)),
            (b"XYZZY", Err(ParseError::Unknown)),
            (
                b"\xff\xfe",
                Err(ParseError::Syntax("Command is not valid UTF-8")),
            ),
            (b"NOOP ", Ok(Command::Noop)),
        ];
        for (line, want) in cases {
            assert_eq!(&parse(line), want, "{:?}", String::from_utf8_lossy(line));
        }
    }
}
