//! Framing: how a session cuts its input into one complete command.
//!
//! RFC 9051 §2.2 and §4.3: a command is one or more lines; a line that ends with a
//! literal announcement (`{n}`, or `{n+}` with LITERAL+/LITERAL- — RFC 7888, or
//! `~{n}` literal8 — RFC 3516 §4.4) is followed by exactly `n` octets, after which
//! the command continues on the next line.
//!
//! The session loop this module supports (no I/O here):
//!
//! 1. read one line and strip its CRLF;
//! 2. if [`literal_at_end`] finds an announcement, check `len` against the limits,
//!    send `+ ` for a synchronizing literal (`non_sync == false`), read `len` octets,
//!    append `line CRLF literal-bytes` to the command buffer and go back to 1;
//! 3. otherwise append the line: the buffer is a complete command for
//!    [`crate::parse::parse_command`].

/// A literal announced at the end of a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralSpec {
    /// The number of octets that follow the line's CRLF.
    pub len: u64,
    /// `{n+}`: LITERAL+/LITERAL- (RFC 7888); the client does not wait for `+ `.
    pub non_sync: bool,
    /// `~{n}`: literal8 (RFC 3516 §4.4), which may contain NUL.
    pub binary: bool,
}

/// The most digits accepted in a literal's length. `u64::MAX` has 20 digits; more
/// than that is never a real literal.
const MAX_LEN_DIGITS: usize = 20;

/// Whether `line` (one line, without its CRLF) ends with a literal announcement:
/// `{n}`, `{n+}`, `~{n}` or `~{n+}`.
///
/// Returns `None` for anything else, including lengths with more than 20 digits or
/// beyond `u64::MAX`; the parser then answers BAD for the malformed command.
pub fn literal_at_end(line: &[u8]) -> Option<LiteralSpec> {
    let rest = line.strip_suffix(b"}")?;
    let (rest, non_sync) = match rest.strip_suffix(b"+") {
        Some(rest) => (rest, true),
        None => (rest, false),
    };
    let digits = rest
        .iter()
        .rev()
        .take(MAX_LEN_DIGITS + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > MAX_LEN_DIGITS {
        return None;
    }
    let (rest, number) = rest.split_at(rest.len() - digits);
    let rest = rest.strip_suffix(b"{")?;
    let mut len: u64 = 0;
    for &d in number {
        len = len.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(LiteralSpec {
        len,
        non_sync,
        binary: rest.ends_with(b"~"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(len: u64, non_sync: bool, binary: bool) -> Option<LiteralSpec> {
        Some(LiteralSpec {
            len,
            non_sync,
            binary,
        })
    }

    #[test]
    fn announcements_are_found() {
        let cases: &[(&[u8], Option<LiteralSpec>)] = &[
            (b"a LOGIN {5}", spec(5, false, false)),
            (b"a LOGIN alice {3+}", spec(3, true, false)),
            (b"a APPEND INBOX ~{12}", spec(12, false, true)),
            (b"a APPEND INBOX (\\Seen) ~{12+}", spec(12, true, true)),
            (b"{0}", spec(0, false, false)),
            (b"a LOGIN {007}", spec(7, false, false)),
            (b"a X {18446744073709551615}", spec(u64::MAX, false, false)),
        ];
        for (line, want) in cases {
            assert_eq!(
                literal_at_end(line),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn non_announcements_are_rejected() {
        let cases: &[&[u8]] = &[
            b"",
            b"}",
            b"{}",
            b"{+}",
            b"a NOOP",
            b"a LOGIN alice secret",
            b"a LOGIN {5} x",
            b"a LOGIN {5}\r",
            b"a LOGIN 5}",
            b"a LOGIN {5a}",
            b"a LOGIN {-5}",
            b"a LOGIN {5++}",
            b"a LOGIN {+5}",
            b"a LOGIN { 5}",
            // 21 digits: absurd.
            b"a LOGIN {100000000000000000000}",
            b"a LOGIN {000000000000000000001}",
            // 20 digits but beyond u64::MAX.
            b"a X {18446744073709551616}",
            b"a X {99999999999999999999}",
        ];
        for line in cases {
            assert_eq!(
                literal_at_end(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn long_digit_runs_do_not_matter() {
        let mut line = b"a X {".to_vec();
        line.extend(std::iter::repeat_n(b'9', 10_000));
        line.push(b'}');
        assert_eq!(literal_at_end(&line), None);
    }
}
