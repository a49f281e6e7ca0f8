//! IMAP URLs as CATENATE takes them — RFC 5092 §6 (`imapurl`,
//! `path-absolute`), the forms that name a message or a part of one:
//! `imap://user@host/mailbox;UIDVALIDITY=n/;UID=n/;SECTION=s/;PARTIAL=o.l`,
//! or the same from the first `/` on. Keywords are matched in any case;
//! mailbox and section are percent-decoded.

use super::cursor::{Cursor, PResult, fail};
use super::fetch::section;
use crate::types::ImapUrl;

/// Parses an IMAP URL naming a message (RFC 5092 `imessagepart`).
pub fn parse_imap_url(url: &str) -> PResult<ImapUrl> {
    let (user, path) = match strip_prefix_ci(url, "imap://") {
        Some(rest) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            // `iuserinfo "@" host [":" port]`; `;AUTH=…` after the user.
            let user = authority
                .rsplit_once('@')
                .map(|(userinfo, _)| userinfo.split(';').next().unwrap_or(""))
                .map(percent_decode)
                .transpose()?;
            (user, path)
        }
        None => (None, url),
    };
    let Some(path) = path.strip_prefix('/') else {
        return fail("An IMAP URL must name a mailbox from the server's root");
    };
    // Parameters follow "/;": the mailbox (with ";UIDVALIDITY=") comes first.
    let mut pieces = path.split("/;");
    let first = pieces.next().unwrap_or("");
    let (mailbox, uid_validity) = match find_ci(first, ";UIDVALIDITY=") {
        Some(i) => (
            &first[..i],
            Some(nz_number(
                &first[i + ";UIDVALIDITY=".len()..],
                "UIDVALIDITY",
            )?),
        ),
        None => (first, None),
    };
    let mailbox = percent_decode(mailbox.strip_suffix('/').unwrap_or(mailbox))?;
    if mailbox.is_empty() {
        return fail("The IMAP URL names no mailbox");
    }
    let mut uid = None;
    let mut spec = None;
    let mut partial = None;
    for piece in pieces {
        let (key, value) = piece
            .split_once('=')
            .ok_or_else(|| format!("Invalid IMAP URL parameter {piece:?}"))?;
        match key.to_ascii_uppercase().as_str() {
            "UID" if uid.is_none() => uid = Some(nz_number(value, "UID")?),
            "SECTION" if uid.is_some() && spec.is_none() => {
                let text = percent_decode(value)?;
                let bracketed = format!("[{text}]");
                let mut c = Cursor::new(bracketed.as_bytes());
                let parsed = section(&mut c)?;
                if !c.at_end() {
                    return fail("Invalid SECTION in the IMAP URL");
                }
                spec = Some(parsed);
            }
            "PARTIAL" if uid.is_some() && partial.is_none() => {
                let (offset, length) = match value.split_once('.') {
                    Some((o, l)) => (number(o, "PARTIAL")?, Some(nz_number(l, "PARTIAL")?)),
                    None => (number(value, "PARTIAL")?, None),
                };
                partial = Some((offset, length));
            }
            _ => return fail(format!("Unsupported IMAP URL parameter {key:?}")),
        }
    }
    let Some(uid) = uid else {
        return fail("The IMAP URL names no message (no ;UID=)");
    };
    Ok(ImapUrl {
        user,
        mailbox,
        uid_validity,
        uid,
        section: spec,
        partial,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn find_ci(s: &str, needle: &str) -> Option<usize> {
    s.to_ascii_uppercase().find(&needle.to_ascii_uppercase())
}

fn number(s: &str, what: &str) -> PResult<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return fail(format!("Invalid {what} in the IMAP URL"));
    }
    s.parse()
        .map_err(|_| format!("Invalid {what} in the IMAP URL"))
}

fn nz_number(s: &str, what: &str) -> PResult<u32> {
    match number(s, what)? {
        0 => fail(format!("Invalid {what} in the IMAP URL")),
        n => Ok(n),
    }
}

/// `%XX` escapes decoded (RFC 3986 §2.1); the result must be UTF-8.
fn percent_decode(s: &str) -> PResult<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("Invalid percent escape in the IMAP URL")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "The IMAP URL is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Section, SectionText};

    #[test]
    fn server_relative_and_absolute_urls() {
        let u = parse_imap_url("/INBOX;UIDVALIDITY=785799047/;UID=113330/;section=1.5.9").unwrap();
        assert_eq!(u.mailbox, "INBOX");
        assert_eq!(u.uid_validity, Some(785799047));
        assert_eq!(u.uid, 113330);
        assert_eq!(
            u.section,
            Some(Section {
                part: vec![1, 5, 9],
                text: None
            })
        );
        let u = parse_imap_url(
            "imap://fred@example.com/my%20box/;uid=20/;section=HEADER/;partial=0.1024",
        )
        .unwrap();
        assert_eq!(u.user.as_deref(), Some("fred"));
        assert_eq!(u.mailbox, "my box");
        assert_eq!(u.uid_validity, None);
        assert_eq!(
            u.section,
            Some(Section {
                part: vec![],
                text: Some(SectionText::Header)
            })
        );
        assert_eq!(u.partial, Some((0, Some(1024))));
        let u = parse_imap_url("/a/b/;UID=3/;PARTIAL=100000.1").unwrap();
        assert_eq!(
            (u.mailbox.as_str(), u.partial),
            ("a/b", Some((100000, Some(1))))
        );
    }

    #[test]
    fn urls_that_name_no_message_are_refused() {
        for bad in [
            "INBOX/;UID=1",
            "/INBOX",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/;UID=1",
            "/INBOX/;SECTION=1",
            "/INBOX/;UID=1/;SECTION=1.",
            "/INBOX/;UID=1/;URLAUTH=anonymous",
            "/INBOX/;UID=1/;PARTIAL=1.0",
            "/IN%ZZ/;UID=1",
        ] {
            assert!(parse_imap_url(bad).is_err(), "{bad}");
        }
    }
}
