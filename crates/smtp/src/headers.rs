//! Header work on accepted messages: the Received: trace, and what RFC 6409 §8 lets
//! a submission server add (Date, Message-ID) or check (From).

use std::net::IpAddr;

use casella_store::now_unix;

use crate::rfc5322_date;

/// The header block: up to the first empty line (or all of it).
fn header_block(message: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < message.len() {
        // An empty line: CRLF or LF at a line start.
        if message[i..].starts_with(b"\r\n") || message[i] == b'\n' {
            return &message[..i];
        }
        match message[i..].iter().position(|&b| b == b'\n') {
            Some(n) => i += n + 1,
            None => return message,
        }
    }
    message
}

/// Unfolded header fields as (lower-case name, value).
fn fields(message: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header_block(message)).into_owned();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

fn has_field(message: &[u8], name: &str) -> bool {
    fields(message).iter().any(|(n, _)| n == name)
}

/// The addresses in the From: header(s); `None` when there is no From:.
pub fn from_addresses(message: &[u8]) -> Option<Vec<String>> {
    let froms: Vec<String> = fields(message)
        .into_iter()
        .filter(|(n, _)| n == "from")
        .map(|(_, v)| v)
        .collect();
    if froms.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for value in froms {
        for a in casella_mime::parse_address_list(&value) {
            if let (Some(m), Some(h)) = (a.mailbox, a.host) {
                out.push(format!("{m}@{h}"));
            }
        }
    }
    Some(out)
}

/// RFC 5322 §2.1.1 (and RFC 5321 §4.5.3.1.6): a line holds at most 998
/// characters before its CRLF.
pub const MAX_LINE: usize = 998;

/// The number (from 1) of the first line, header or body, longer than
/// [`MAX_LINE`] without its line end; `None` when every line fits.
pub fn first_long_line(message: &[u8]) -> Option<usize> {
    message
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .position(|n| n > MAX_LINE)
        .map(|i| i + 1)
}

pub(crate) fn prepend(header: &str, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Adds Date: and Message-ID: when missing (RFC 6409 §8.2, §8.3).
pub fn complete_for_submission(body: Vec<u8>, hostname: &str) -> Vec<u8> {
    let mut add = String::new();
    if !has_field(&body, "date") {
        add.push_str(&format!("Date: {}\r\n", rfc5322_date(now_unix())));
    }
    if !has_field(&body, "message-id") {
        add.push_str(&format!("Message-ID: <{}@{hostname}>\r\n", unique_id()));
    }
    if add.is_empty() {
        body
    } else {
        prepend(&add, body)
    }
}

fn unique_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}.{:x}.{n:x}.casella", std::process::id())
}

/// RFC 5321 §4.4 trace header. For an authenticated submission it names the
/// account (never a password or token); CR/LF from the client are removed.
pub(crate) fn received(
    helo: &str,
    ip: IpAddr,
    hostname: &str,
    with: &str,
    id: &str,
    authenticated: Option<&str>,
    recipient: Option<&str>,
) -> String {
    let clean = |s: &str| s.chars().filter(|c| !c.is_control()).collect::<String>();
    let mut h = format!("Received: from {} ([{ip}])", clean(helo));
    if let Some(user) = authenticated {
        h.push_str(&format!("\r\n\t(authenticated sender: {})", clean(user)));
    }
    h.push_str(&format!(
        "\r\n\tby {hostname} (casella) with {with} id {id}"
    ));
    if let Some(r) = recipient {
        h.push_str(&format!("\r\n\tfor <{}>", clean(r)));
    }
    h.push_str(&format!("; {}\r\n", rfc5322_date(now_unix())));
    h
}

pub(crate) fn with_received(trace: &str, body: &[u8]) -> Vec<u8> {
    prepend(trace, body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_found_with_either_line_end() {
        let fits = "a".repeat(MAX_LINE);
        let long = "b".repeat(MAX_LINE + 1);
        assert_eq!(
            first_long_line(format!("S: x\r\n\r\n{fits}\r\n").as_bytes()),
            None
        );
        assert_eq!(
            first_long_line(format!("S: x\r\n\r\n{fits}").as_bytes()),
            None
        );
        assert_eq!(
            first_long_line(format!("S: x\r\n\r\nok\r\n{long}\r\n").as_bytes()),
            Some(4)
        );
        assert_eq!(
            first_long_line(format!("S: x\n\n{long}").as_bytes()),
            Some(3)
        );
        assert_eq!(
            first_long_line(format!("X: {long}\r\n\r\n").as_bytes()),
            Some(1)
        );
    }

    #[test]
    fn from_and_fixups() {
        let m = b"From: \"Ann\" <Ann@Example.org>,\r\n bob@example.org\r\nSubject: x\r\n\r\nFrom: fake@evil.test\r\n";
        assert_eq!(
            from_addresses(m),
            Some(vec![
                "Ann@Example.org".to_string(),
                "bob@example.org".to_string()
            ])
        );
        assert_eq!(from_addresses(b"Subject: none\r\n\r\nFrom: x@y\r\n"), None);
        let fixed = complete_for_submission(b"Subject: s\r\n\r\nbody\r\n".to_vec(), "mail.test");
        let text = String::from_utf8(fixed).unwrap();
        assert!(text.starts_with("Date: "), "{text}");
        assert!(
            text.contains("\r\nMessage-ID: <") && text.contains("@mail.test>\r\n"),
            "{text}"
        );
        let kept = complete_for_submission(b"Date: x\r\nMessage-ID: <a@b>\r\n\r\n".to_vec(), "h");
        assert_eq!(kept, b"Date: x\r\nMessage-ID: <a@b>\r\n\r\n");
    }

    #[test]
    fn received_names_the_user_but_no_secret() {
        let r = received(
            "client\r\nX-Evil: 1",
            "127.0.0.1".parse().unwrap(),
            "mail.test",
            "ESMTPSA",
            "id1",
            Some("a@b"),
            None,
        );
        assert!(r.starts_with("Received: from clientX-Evil: 1 ([127.0.0.1])\r\n\t(authenticated sender: a@b)\r\n\tby mail.test (casella) with ESMTPSA id id1; "), "{r}");
        assert!(r.ends_with("\r\n") && r.matches("\r\n").count() == 3, "{r}");
    }
}
