//! What SORT (RFC 5256 §3, RFC 5957) and THREAD (RFC 5256 §3) compare, taken
//! from a message once at delivery so that neither ever reads message bytes:
//! the base subject (RFC 5256 §2.1) and whether the subject marks a reply or
//! forward, the first From/To/Cc address as addr-mailbox and as display name,
//! and the message ids that link a message to its thread.
//!
//! Pure functions; strings are kept as found (decoded to UTF-8) and compared by
//! the caller under i;ascii-casemap.

use serde::{Deserialize, Serialize};

use crate::Address;
use crate::address::{MISSING_DOMAIN, MISSING_MAILBOX};

/// The stored sort and thread keys of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortKeys {
    /// RFC 5256 §2.1 base subject, UTF-8, case kept.
    #[serde(default)]
    pub base_subject: String,
    /// RFC 5256 §2.1: extracting the base subject removed a `Re:`/`Fwd:`
    /// leader, a `(fwd)` trailer or a `[fwd: …]` wrapper (THREAD=REFERENCES
    /// step 5 uses it).
    #[serde(default)]
    pub subject_is_reply: bool,
    /// The first From address (SORT FROM, DISPLAYFROM).
    #[serde(default)]
    pub from: AddressKey,
    /// The first To address (SORT TO, DISPLAYTO).
    #[serde(default)]
    pub to: AddressKey,
    /// The first Cc address (SORT CC).
    #[serde(default)]
    pub cc: AddressKey,
    /// The first valid msg-id of Message-ID, without the angle brackets.
    #[serde(default)]
    pub message_id: Option<String>,
    /// The valid msg-ids of References, in order.
    #[serde(default)]
    pub references: Vec<String>,
    /// The first valid msg-id of In-Reply-To.
    #[serde(default)]
    pub in_reply_to: Option<String>,
}

/// The two sort keys of the first address of a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressKey {
    /// RFC 5256 §3: the addr-mailbox of the first address (for a group, the
    /// group name, as IMAP's ENVELOPE gives it); empty when there is none.
    #[serde(default)]
    pub mailbox: String,
    /// RFC 5957 §3: the decoded display name of the first address, or its
    /// addr-spec (`mailbox@host`) when it has none; for a group, the group name.
    #[serde(default)]
    pub display: String,
}

impl SortKeys {
    /// The keys of a message from its ENVELOPE, its decoded Subject and its raw
    /// (unfolded) References field.
    pub fn new(
        envelope: &crate::Envelope,
        decoded_subject: &str,
        references: Option<&str>,
    ) -> SortKeys {
        let (base_subject, subject_is_reply) = base_subject(decoded_subject);
        SortKeys {
            base_subject,
            subject_is_reply,
            from: AddressKey::of_first(&envelope.from),
            to: AddressKey::of_first(&envelope.to),
            cc: AddressKey::of_first(&envelope.cc),
            message_id: envelope
                .message_id
                .as_deref()
                .and_then(|v| msg_ids(v).into_iter().next()),
            references: references.map(msg_ids).unwrap_or_default(),
            in_reply_to: envelope
                .in_reply_to
                .as_deref()
                .and_then(|v| msg_ids(v).into_iter().next()),
        }
    }
}

impl AddressKey {
    fn of_first(list: &[Address]) -> AddressKey {
        let Some(first) = list.first() else {
            return AddressKey::default();
        };
        let mailbox = first
            .mailbox
            .as_deref()
            .filter(|m| *m != MISSING_MAILBOX)
            .unwrap_or_default();
        let is_group_start = first.host.is_none();
        let display = if is_group_start {
            crate::parse::text::decode_words(mailbox)
        } else {
            let name = first
                .name
                .as_deref()
                .map(crate::parse::text::decode_words)
                .unwrap_or_default();
            if name.trim().is_empty() {
                let host = first.host.as_deref().filter(|h| *h != MISSING_DOMAIN);
                match host {
                    Some(h) => format!("{mailbox}@{h}"),
                    None => mailbox.to_string(),
                }
            } else {
                name
            }
        };
        AddressKey {
            mailbox: mailbox.to_string(),
            display,
        }
    }
}

/// The base subject of a decoded subject — RFC 5256 §2.1 — and whether the
/// extraction removed a reply/forward marker.
pub fn base_subject(decoded: &str) -> (String, bool) {
    // Step 1: tabs and line breaks become spaces, runs of spaces one space.
    let mut s = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if !(c == ' ' && s.ends_with(' ')) {
            s.push(c);
        }
    }
    let mut reply = false;
    let mut s = s.as_str();
    loop {
        // Step 2: trailers, "(fwd)" and WSP, as long as any remain.
        loop {
            if let Some(rest) = s.strip_suffix(' ') {
                s = rest;
            } else if s.len() >= 5 && s.as_bytes()[s.len() - 5..].eq_ignore_ascii_case(b"(fwd)") {
                s = &s[..s.len() - 5];
                reply = true;
            } else {
                break;
            }
        }
        // Steps 3–5: leaders and a leading blob, until none is left.
        loop {
            let before = s.len();
            while let Some((rest, was_refwd)) = strip_leader(s) {
                reply |= was_refwd;
                s = rest;
            }
            // Step 4: a blob goes only when a non-empty subj-base is left.
            if let Some(rest) = strip_blob(s)
                && !rest.is_empty()
            {
                s = rest;
            }
            if s.len() == before {
                break;
            }
        }
        // Step 6: "[fwd: …]" around the whole subject.
        let b = s.as_bytes();
        if b.len() >= 6 && b[..5].eq_ignore_ascii_case(b"[fwd:") && b[b.len() - 1] == b']' {
            s = &s[5..s.len() - 1];
            reply = true;
            continue;
        }
        break;
    }
    (s.to_string(), reply)
}

/// One subj-leader: `*subj-blob subj-refwd` (true) or one WSP (false).
fn strip_leader(s: &str) -> Option<(&str, bool)> {
    if let Some(rest) = s.strip_prefix(' ') {
        return Some((rest, false));
    }
    let mut rest = s;
    while let Some(r) = strip_blob(rest) {
        rest = r;
    }
    strip_refwd(rest).map(|r| (r, true))
}

/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`.
fn strip_refwd(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let n = if b.len() >= 3 && b[..3].eq_ignore_ascii_case(b"fwd") {
        3
    } else if b.len() >= 2
        && (b[..2].eq_ignore_ascii_case(b"re") || b[..2].eq_ignore_ascii_case(b"fw"))
    {
        2
    } else {
        return None;
    };
    let mut rest = s[n..].trim_start_matches(' ');
    if let Some(r) = strip_blob(rest) {
        rest = r;
    }
    rest.strip_prefix(':')
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` (BLOBCHAR: anything but brackets).
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(['[', ']'])?;
    if inner.as_bytes()[end] != b']' {
        return None;
    }
    Some(inner[end + 1..].trim_start_matches(' '))
}

/// The msg-ids (`<id-left@id-right>`, RFC 5322 §3.6.4) in a Message-ID,
/// In-Reply-To or References value, without their brackets; text between them
/// (comments, phrases of old mailers) and malformed ids are skipped.
pub fn msg_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(['>', '<']) else {
            break;
        };
        if after.as_bytes()[close] == b'<' {
            rest = &after[close..];
            continue;
        }
        let id: String = after[..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Some((left, right)) = id.split_once('@')
            && !left.is_empty()
            && !right.is_empty()
        {
            out.push(id);
        }
        rest = &after[close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> (String, bool) {
        base_subject(s)
    }

    #[test]
    fn base_subject_rfc5256_cases() {
        let table: &[(&str, &str, bool)] = &[
            ("", "", false),
            ("a", "a", false),
            ("Re: foo", "foo", true),
            ("RE:  foo  ", "foo", true),
            ("re: re: Re:foo", "foo", true),
            ("Fw: foo", "foo", true),
            ("FWD: foo", "foo", true),
            ("Re [2]: foo", "foo", true),
            ("[list] Re: foo", "foo", true),
            ("foo (fwd)", "foo", true),
            ("foo (FWD) (fwd) ", "foo", true),
            ("Re: [fwd: Fw: subject] (fwd)", "subject", true),
            ("[fwd: subject]", "subject", true),
            ("[xyz]", "[xyz]", false),
            ("[xyz] ", "[xyz]", false),
            ("[a] [b] c", "c", false),
            ("[a] [b]", "[b]", false),
            ("Ad: Re: Ad: Re: Ad: x", "Ad: Re: Ad: Re: Ad: x", false),
            ("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b", true),
            ("Re: [FWD: c]", "c", true),
            ("re: [fwd: [fwd: re: [fwd: babylon]]]", "babylon", true),
            ("b (a)", "b (a)", false),
            ("Reply: x", "Reply: x", false),
            ("Re\tfoo\r\n  bar", "Re foo bar", false),
            ("fwd:", "", true),
            ("[unclosed re: x", "[unclosed re: x", false),
            ("Re: Grüße", "Grüße", true),
            ("   ", "", false),
        ];
        let mut failures = Vec::new();
        for (input, want, reply) in table {
            let got = base(input);
            if got != (want.to_string(), *reply) {
                failures.push(format!("{input:?}: want ({want:?}, {reply}), got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn base_subject_of_encoded_words_comes_from_the_decoded_text() {
        let keys = |subject: &str| {
            let raw = format!("Subject: {subject}\r\n\r\nbody\r\n");
            crate::parse(raw.as_bytes()).search.sort.expect("keys")
        };
        assert_eq!(keys("=?iso-8859-1?q?RE:_C?=").base_subject, "C");
        assert!(keys("=?iso-8859-1?q?RE:_C?=").subject_is_reply);
        assert_eq!(keys("=?us-ascii?b?UmU6IGM=?=").base_subject, "c");
        assert_eq!(keys("Re: =?utf-8?q?b?=").base_subject, "b");
        assert_eq!(keys("=?iso-8859-1?q?_?=").base_subject, "");
        assert_eq!(
            keys("=?UTF-8?Q?Re=3A_=C3=9Cber?= =?UTF-8?Q?_die_Gr=C3=BC=C3=9Fe?=").base_subject,
            "Über die Grüße"
        );
    }

    #[test]
    fn address_keys_follow_rfc5256_and_rfc5957() {
        let keys = |header: &str| {
            let raw = format!("{header}\r\n\r\nbody\r\n");
            crate::parse(raw.as_bytes()).search.sort.expect("keys")
        };
        let k = keys("From: foo bar <A@b.c>, x@y.z\r\nTo: b@c.d\r\nCc: user2: blah@d.org;");
        assert_eq!(k.from.mailbox, "A");
        assert_eq!(k.from.display, "foo bar");
        assert_eq!(k.to.mailbox, "b");
        assert_eq!(k.to.display, "b@c.d");
        // A group: its name, as the first ENVELOPE address says.
        assert_eq!(k.cc.mailbox, "user2");
        assert_eq!(k.cc.display, "user2");
        let k = keys("From: =?iso-8859-1?q?foo_aar?= <e@f.g>\r\nTo: d");
        assert_eq!(k.from.display, "foo aar");
        assert_eq!(k.to.mailbox, "d");
        assert_eq!(k.to.display, "d");
        let k = keys("Subject: none");
        assert_eq!(k.from, AddressKey::default());
        let k = keys("From: \"\" <q@r.s>");
        assert_eq!(k.from.display, "q@r.s");
    }

    #[test]
    fn message_ids() {
        assert_eq!(msg_ids("<a@b>"), vec!["a@b"]);
        assert_eq!(
            msg_ids(" <a@b> (comment) <c@d>\t<e@f> "),
            vec!["a@b", "c@d", "e@f"]
        );
        assert_eq!(msg_ids("<no-at> <x@y>"), vec!["x@y"]);
        assert_eq!(msg_ids("<<a@b>"), vec!["a@b"]);
        assert_eq!(msg_ids("<a@b"), Vec::<String>::new());
        assert_eq!(msg_ids("foo@bar"), Vec::<String>::new());
        assert_eq!(msg_ids("Your message of ... <m1@x>"), vec!["m1@x"]);
        let raw =
            b"Message-Id: <m@x>\r\nIn-Reply-To: <p@x> <q@x>\r\nReferences: <r@x>\r\n <p@x>\r\n\r\n";
        let k = crate::parse(raw).search.sort.expect("keys");
        assert_eq!(k.message_id.as_deref(), Some("m@x"));
        assert_eq!(k.in_reply_to.as_deref(), Some("p@x"));
        assert_eq!(k.references, vec!["r@x", "p@x"]);
    }

    #[test]
    fn rows_without_keys_still_read() {
        let old = r#"{"from":"a","to":"","cc":"","bcc":"","subject":"s","sent_date":null,"sent_tz_offset":null,"header_text":"","body_text":""}"#;
        let f: crate::SearchFields = serde_json::from_str(old).expect("old row");
        assert_eq!(f.sort, None);
        let f = crate::parse(b"Subject: Re: x\r\n\r\n").search;
        let json = serde_json::to_string(&f).expect("json");
        let back: crate::SearchFields = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back.sort.expect("keys").base_subject, "x");
    }
}
