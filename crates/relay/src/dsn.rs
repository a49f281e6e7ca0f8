//! Bounces: delivery status notifications — RFC 3464 (the report), RFC 6522
//! (multipart/report), RFC 3461 (when to send one: NOTIFY, RET, ENVID, ORCPT), RFC
//! 3463 (status codes) and RFC 3834 (Auto-Submitted); RFC 6533 (internationalized
//! reports) when an address or the returned header holds UTF-8.
//!
//! Pure: builds the message bytes; the runner delivers them into the sender's INBOX.

use std::sync::atomic::{AtomicU64, Ordering};

use casella_mime::format_rfc5322_date;
use casella_store::Queued;

use crate::reply::parse_one_line;

/// One recipient the report tells about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    pub address: String,
    /// ORCPT as given (`rfc822;xtext`).
    pub orcpt: Option<String>,
    /// The last reply or error for this recipient.
    pub reply: Option<String>,
    /// Failed because the queue lifetime ran out, not by a permanent reply.
    pub expired: bool,
}

/// RFC 3461 §4.1: a failure notice is wanted unless NOTIFY is NEVER or names only
/// SUCCESS/DELAY. Without NOTIFY the default is FAILURE (and DELAY).
pub fn wants_failure_notice(notify: Option<&str>) -> bool {
    match notify {
        None => true,
        Some(n) => n
            .split(',')
            .any(|k| k.trim().eq_ignore_ascii_case("FAILURE")),
    }
}

/// The RFC 3464 §2.3.4 Status for a failed recipient: the reply's enhanced code when
/// it is a 5.x.y, "5.4.7 delivery time expired" for an expiry, else by reply class.
pub fn status_code(r: &FailedRecipient) -> String {
    let reply = r.reply.as_deref().and_then(parse_one_line);
    if let Some(e) = reply.as_ref().and_then(|r| r.enhanced)
        && e.class == 5
    {
        return e.to_string();
    }
    if r.expired {
        return "5.4.7".into();
    }
    "5.0.0".into()
}

/// Decodes RFC 3461 §4 xtext: `+HH` is the byte 0xHH.
pub fn xtext_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes what may not appear inside a header field body, and cuts what is
/// longer than `max` octets (at a character boundary, "..." added): the lines
/// of the report stay within RFC 5322's 998 octets whatever the script.
fn one_line(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The header section of a message, up to and including the blank line.
fn header_section(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"\r\n") {
        return &raw[..2];
    }
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &raw[..i + 4],
        None => raw,
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A token unique within this host: time, process and a counter.
fn unique_token(now: i64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{now:x}.{nanos:x}.{:x}.{:x}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds the non-delivery report for `failed` recipients of `entry`, addressed to
/// its sender. `original` is the queued message (CRLF line ends); RET=FULL returns
/// it whole as message/rfc822, otherwise only its header as text/rfc822-headers.
pub fn build_dsn(
    hostname: &str,
    entry: &Queued,
    failed: &[FailedRecipient],
    original: &[u8],
    now: i64,
) -> Vec<u8> {
    let token = unique_token(now);
    let boundary = format!("=_casella-dsn.{token}");
    let date = format_rfc5322_date(now);
    let full = entry
        .ret
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case("FULL"));
    // RFC 6533 §6: UTF-8 in an address or in the returned header field takes
    // the global types: message/global-delivery-status (its "utf-8" address
    // type, §3), message/global or message/global-headers for the original.
    let global = failed.iter().any(|r| {
        !r.address.is_ascii()
            || r.orcpt
                .as_deref()
                .is_some_and(|o| !xtext_decode(o).is_ascii())
    }) || !entry.sender.is_ascii()
        || !header_section(original).is_ascii();
    let report_type = if global {
        "global-delivery-status"
    } else {
        "delivery-status"
    };
    let mut m = String::new();
    let mut h = |name: &str, value: &str| {
        m.push_str(name);
        m.push_str(": ");
        m.push_str(value);
        m.push_str("\r\n");
    };
    h(
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{hostname}>"),
    );
    h("To", &format!("<{}>", one_line(&entry.sender, 500)));
    h("Subject", "Undelivered Mail Returned to Sender");
    h("Date", &date);
    h("Message-ID", &format!("<dsn.{token}@{hostname}>"));
    // RFC 3834 §5: an automatic reply; RFC 3464 bounces are "auto-replied".
    h("Auto-Submitted", "auto-replied");
    h("MIME-Version", "1.0");
    h(
        "Content-Type",
        &format!("multipart/report; report-type={report_type};\r\n\tboundary=\"{boundary}\""),
    );
    m.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    // 1. The human-readable part.
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Description: Notification\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    m.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    m.push_str(&format!(
        "This is the mail system at host {hostname}.\r\n\r\n"
    ));
    m.push_str(
        "I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients. It's attached below.\r\n\r\n",
    );
    for r in failed {
        // One line with the address (500 octets at most): the reply is cut
        // shorter here than in its Diagnostic-Code.
        let why = match (&r.reply, r.expired) {
            (Some(reply), true) => format!(
                "delivery time expired; the last attempt said: {}",
                one_line(reply, 400)
            ),
            (None, true) => "delivery time expired".to_string(),
            (Some(reply), false) => format!("the mail system said: {}", one_line(reply, 400)),
            (None, false) => "delivery failed".to_string(),
        };
        m.push_str(&format!("<{}>: {why}\r\n\r\n", one_line(&r.address, 500)));
    }

    // 2. The machine-readable report — RFC 3464 §2.2 (per message), §2.3 (per
    // recipient), each group ending in a blank line.
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Description: Delivery report\r\n");
    m.push_str(&format!("Content-Type: message/{report_type}\r\n\r\n"));
    m.push_str(&format!("Reporting-MTA: dns; {hostname}\r\n"));
    m.push_str(&format!("X-Casella-Queue-ID: {}\r\n", entry.id.0));
    if let Some(envid) = &entry.envid {
        m.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            one_line(&xtext_decode(envid), 200)
        ));
    }
    m.push_str(&format!(
        "Arrival-Date: {}\r\n",
        format_rfc5322_date(entry.created)
    ));
    m.push_str("\r\n");
    for r in failed {
        let kind = if r.address.is_ascii() {
            "rfc822"
        } else {
            "utf-8"
        };
        m.push_str(&format!(
            "Final-Recipient: {kind}; {}\r\n",
            one_line(&r.address, 500)
        ));
        if let Some(orcpt) = &r.orcpt {
            // RFC 3464 §2.3.1: the address type, then the decoded address.
            let (kind, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            m.push_str(&format!(
                "Original-Recipient: {}; {}\r\n",
                one_line(kind, 40),
                one_line(&xtext_decode(addr), 500)
            ));
        }
        m.push_str("Action: failed\r\n");
        m.push_str(&format!("Status: {}\r\n", status_code(r)));
        if let Some(reply) = &r.reply {
            // A remote (or remote-style) reply is an "smtp" diagnostic; our own
            // errors (a refused connect) get an X- type (RFC 3464 §2.3.6).
            let kind = if parse_one_line(reply).is_some() {
                "smtp"
            } else {
                "X-Casella"
            };
            m.push_str(&format!(
                "Diagnostic-Code: {kind}; {}\r\n",
                one_line(reply, 900)
            ));
        }
        m.push_str(&format!("Last-Attempt-Date: {date}\r\n\r\n"));
    }

    // 3. The original: whole (RET=FULL) or its header.
    m.push_str(&format!("--{boundary}\r\n"));
    let mut out = m.into_bytes();
    if full {
        let kind = if global { "global" } else { "rfc822" };
        out.extend_from_slice(
            format!(
                "Content-Description: Undelivered Message\r\nContent-Type: message/{kind}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(original);
        if !original.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    } else {
        let kind = if global {
            "message/global-headers"
        } else {
            "text/rfc822-headers"
        };
        out.extend_from_slice(
            format!(
                "Content-Description: Undelivered Message Headers\r\nContent-Type: {kind}\r\n\r\n"
            )
            .as_bytes(),
        );
        let header = header_section(original);
        out.extend_from_slice(header);
        if !header.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_store::{QueueId, QueuedRecipient, RecipientState};

    fn entry(ret: Option<&str>) -> Queued {
        Queued {
            id: QueueId(7),
            sender: "alice@example.org".into(),
            account: None,
            recipients: vec![QueuedRecipient {
                address: "bob@remote.example".into(),
                orcpt: None,
                notify: None,
                state: RecipientState::Failed,
                last_reply: None,
            }],
            size: 10,
            envid: Some("QQ+2Bid".into()),
            ret: ret.map(Into::into),
            created: 1_700_000_000,
            expires: 1_700_432_000,
            next_attempt: 0,
            attempts: 1,
            last_error: None,
            claimed_until: None,
        }
    }

    const ORIGINAL: &[u8] =
        b"From: alice@example.org\r\nTo: bob@remote.example\r\nSubject: hi\r\n\r\nsecret body\r\n";

    /// Found by the dsn_report fuzz target (issue 24): text cut to a number
    /// of characters made lines of 2,000 octets and more from UTF-8
    /// addresses and replies; RFC 5322 §2.1.1 allows 998.
    #[test]
    fn lines_stay_within_998_octets_whatever_the_script() {
        let mut e = entry(Some("HDRS"));
        e.sender = "é".repeat(600) + "@example.org";
        e.envid = Some("€".repeat(300));
        let failed = [FailedRecipient {
            address: "ü".repeat(600) + "@remote.example",
            orcpt: Some(format!("utf-8;{}", "ö".repeat(600))),
            reply: Some(format!("550 5.1.1 {}", "€".repeat(1000))),
            expired: true,
        }];
        let report = build_dsn("mx.example.org", &e, &failed, ORIGINAL, 1_700_000_000);
        for line in report.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(line.len() <= 998, "{} octets", line.len());
            assert!(std::str::from_utf8(line).is_ok(), "cut inside a character");
        }
    }

    #[test]
    fn notify_rules() {
        assert!(wants_failure_notice(None));
        assert!(wants_failure_notice(Some("FAILURE")));
        assert!(wants_failure_notice(Some("success,failure")));
        assert!(!wants_failure_notice(Some("NEVER")));
        assert!(!wants_failure_notice(Some("SUCCESS,DELAY")));
    }

    #[test]
    fn status_from_the_reply() {
        let f = |reply: Option<&str>, expired| FailedRecipient {
            address: "x@y".into(),
            orcpt: None,
            reply: reply.map(Into::into),
            expired,
        };
        assert_eq!(
            status_code(&f(Some("550 5.1.1 no such user"), false)),
            "5.1.1"
        );
        assert_eq!(status_code(&f(Some("550 no such user"), false)), "5.0.0");
        assert_eq!(status_code(&f(Some("556 5.1.10 null MX"), false)), "5.1.10");
        assert_eq!(status_code(&f(Some("451 4.7.1 greylisted"), true)), "5.4.7");
        assert_eq!(
            status_code(&f(Some("connect to x: refused"), true)),
            "5.4.7"
        );
        assert_eq!(status_code(&f(None, false)), "5.0.0");
    }

    // Issue 23, finding 4: RFC 6533 for a UTF-8 recipient or header.
    #[test]
    fn utf8_recipients_and_headers_get_the_global_types() {
        let failed = vec![FailedRecipient {
            address: "jösé@exämple.test".into(),
            orcpt: None,
            reply: Some("553 5.6.7 The recipient address needs SMTPUTF8".into()),
            expired: false,
        }];
        let dsn =
            String::from_utf8(build_dsn("mx.test", &entry(None), &failed, ORIGINAL, 0)).unwrap();
        assert!(dsn.contains("report-type=global-delivery-status;"), "{dsn}");
        assert!(
            dsn.contains("Content-Type: message/global-delivery-status\r\n"),
            "{dsn}"
        );
        assert!(
            dsn.contains("Final-Recipient: utf-8; jösé@exämple.test\r\n"),
            "{dsn}"
        );
        assert!(
            dsn.contains("Content-Type: message/global-headers\r\n"),
            "{dsn}"
        );
        // An ASCII recipient, but the returned message has a UTF-8 header.
        let failed = vec![FailedRecipient {
            address: "bob@remote.example".into(),
            orcpt: None,
            reply: Some("550 5.1.1 no".into()),
            expired: false,
        }];
        let original = "Subject: Grüße\r\n\r\nbody\r\n".as_bytes();
        let dsn = String::from_utf8(build_dsn(
            "mx.test",
            &entry(Some("FULL")),
            &failed,
            original,
            0,
        ))
        .unwrap();
        assert!(
            dsn.contains("Final-Recipient: rfc822; bob@remote.example\r\n"),
            "{dsn}"
        );
        assert!(dsn.contains("Content-Type: message/global\r\n"), "{dsn}");
        // All ASCII: the RFC 3464 types as before.
        let dsn = String::from_utf8(build_dsn(
            "mx.test",
            &entry(Some("FULL")),
            &failed,
            ORIGINAL,
            0,
        ))
        .unwrap();
        assert!(dsn.contains("report-type=delivery-status;"), "{dsn}");
        assert!(
            dsn.contains("Content-Type: message/delivery-status\r\n"),
            "{dsn}"
        );
        assert!(dsn.contains("Content-Type: message/rfc822\r\n"), "{dsn}");
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("a+2Bb+3Dc@d"), "a+b=c@d");
        assert_eq!(xtext_decode("plain"), "plain");
        assert_eq!(xtext_decode("trailing+2"), "trailing+2");
        assert_eq!(xtext_decode("+zz"), "+zz");
    }

    #[test]
    fn report_structure_headers_only() {
        let failed = vec![FailedRecipient {
            address: "bob@remote.example".into(),
            orcpt: Some("rfc822;bob+2Btag@remote.example".into()),
            reply: Some("550 5.1.1 <bob@remote.example>: User unknown".into()),
            expired: false,
        }];
        let dsn = build_dsn(
            "mx.example.org",
            &entry(None),
            &failed,
            ORIGINAL,
            1_700_000_100,
        );
        let text = String::from_utf8(dsn.clone()).unwrap();
        for want in [
            "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n",
            "To: <alice@example.org>\r\n",
            "Subject: Undelivered Mail Returned to Sender\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n",
            "Original-Envelope-Id: QQ+id\r\n",
            "Final-Recipient: rfc822; bob@remote.example\r\n",
            "Original-Recipient: rfc822; bob+tag@remote.example\r\n",
            "Action: failed\r\nStatus: 5.1.1\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.example>: User unknown\r\n",
            "Last-Attempt-Date: Tue, 14 Nov 2023 22:15:00 +0000\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: alice@example.org\r\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(
            !text.contains("secret body"),
            "RET=HDRS must not return the body"
        );
        assert!(text.lines().all(|l| l.len() <= 998));

        // casella's own MIME parser sees a three-part report.
        let parsed = casella_mime::parse(&dsn);
        assert_eq!(
            parsed.envelope.subject.as_deref(),
            Some("Undelivered Mail Returned to Sender")
        );
        let body = format!("{:?}", parsed.body);
        assert!(body.contains("delivery-status"), "{body}");
        assert!(body.contains("rfc822-headers"), "{body}");
    }

    #[test]
    fn report_with_the_full_message_and_an_expiry() {
        let failed = vec![FailedRecipient {
            address: "bob@remote.example".into(),
            orcpt: None,
            reply: Some("connect to 192.0.2.1:25: Connection refused".into()),
            expired: true,
        }];
        let dsn = build_dsn(
            "mx.example.org",
            &entry(Some("FULL")),
            &failed,
            ORIGINAL,
            1_700_000_100,
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("Status: 5.4.7\r\n"));
        assert!(text.contains("Diagnostic-Code: X-Casella; connect to 192.0.2.1:25"));
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nFrom: alice@example.org"));
        assert!(text.contains("secret body\r\n"));
        assert!(text.contains("delivery time expired"));
        assert!(text.ends_with("--\r\n"));
    }
}
