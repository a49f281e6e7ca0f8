//! Bounces (issue 24): a delivery status notification built from any sender,
//! recipients, ORCPT/ENVID, replies and original message.
//!
//! The report parses as multipart/report with its three parts, names each
//! failed recipient once in a Final-Recipient field, keeps every line of its
//! own text within RFC 5322's 998 octets, carries no bare CR or LF of its
//! own, and returns the original (whole with RET=FULL, else its header).
//! xtext written out decodes back to the bytes it was made from.
#![no_main]

use casella_relay::dsn::{FailedRecipient, build_dsn, xtext_decode};
use casella_store::{QueueId, Queued};
use libfuzzer_sys::fuzz_target;

/// RFC 3461 §4: xtext, `+HH` for `+`, `=`, controls, space and 8-bit bytes.
fn xtext(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    // Fields separated by NUL: sender, envid, then address/orcpt/reply per
    // recipient; the original message after the last SOH.
    let (fields, original) = match rest.iter().rposition(|&b| b == 1) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b"Subject: x\r\n\r\nbody\r\n"[..]),
    };
    let text = String::from_utf8_lossy(fields);
    let mut parts = text.split('\0');
    let sender = parts.next().unwrap_or("").to_string();
    let envid = parts.next().map(str::to_string);
    let mut failed = Vec::new();
    while let Some(address) = parts.next() {
        failed.push(FailedRecipient {
            address: address.to_string(),
            orcpt: parts.next().filter(|o| !o.is_empty()).map(str::to_string),
            reply: parts.next().filter(|r| !r.is_empty()).map(str::to_string),
            expired: failed.len() % 2 == usize::from(flags & 1),
        });
        if failed.len() == 8 {
            break;
        }
    }
    if let Some(e) = &envid {
        assert_eq!(xtext_decode(&xtext(e)), *e);
    }
    let entry = Queued {
        id: QueueId(i64::from(flags)),
        sender,
        account: None,
        recipients: Vec::new(),
        size: original.len() as u64,
        envid,
        ret: Some(if flags & 2 == 0 { "FULL" } else { "HDRS" }.to_string()),
        created: i64::from(u32::from_le_bytes([flags, 0, 0, 0x70])),
        expires: 0,
        next_attempt: 0,
        attempts: 1,
        last_error: None,
        claimed_until: None,
    };
    let report = build_dsn("mx.example.org", &entry, &failed, original, 1_800_000_000);

    // Our own text is everything before the third part's header.
    let boundary = {
        let header_end = report
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header");
        let text = String::from_utf8_lossy(&report[..header_end]).into_owned();
        // Content-Type is the header's last field (the sender, in To:, may
        // hold the same text).
        let start = text.rfind("boundary=\"").expect("a boundary") + 10;
        let end = start + text[start..].find('"').expect("quoted");
        format!("\r\n--{}\r\n", &text[start..end])
    };
    let start = report
        .windows(boundary.len())
        .enumerate()
        .filter(|(_, w)| *w == boundary.as_bytes())
        .nth(2)
        .expect("the third part")
        .0;
    let own = &report[..start];
    for line in own.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            !line.contains(&b'\r'),
            "a bare CR in {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            line.len() <= 998,
            "a line of {} octets: {:?}",
            line.len(),
            String::from_utf8_lossy(&line[..80])
        );
    }
    let needle: &[u8] = b"\r\nReporting-MTA: dns; ";
    let status_start = own
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the delivery status");
    let finals = own[status_start..]
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"Final-Recipient: "))
        .count();
    assert_eq!(finals, failed.len());

    let parsed = casella_mime::parse(&report);
    let top = &parsed.body;
    assert!(top.media_type.eq_ignore_ascii_case("multipart"), "{top:?}");
    assert!(top.media_subtype.eq_ignore_ascii_case("report"));
    assert_eq!(top.parts.len(), 3, "{top:?}");
    let returned = &top.parts[2];
    let o = returned.offsets;
    let body = &report[o.body_start as usize..o.body_end as usize];
    let header_end = if original.starts_with(b"\r\n") {
        2
    } else {
        original
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(original.len(), |i| i + 4)
    };
    let expected = if flags & 2 == 0 {
        original
    } else {
        &original[..header_end]
    };
    // The part's body ends before the CRLF that precedes its boundary.
    assert!(
        expected.starts_with(body) || body.starts_with(expected),
        "returned {:?}",
        String::from_utf8_lossy(body)
    );
});
