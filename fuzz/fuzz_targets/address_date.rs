//! Address lists and dates (issue 24).
//!
//! - Addresses: any text gives a list that keeps the rules the IMAP renderer
//!   relies on (group markers, no address without a mailbox and host), and a
//!   plain address written as `"name" <local@domain>` parses back to itself.
//! - Dates: a parsed date is formatted (RFC 5322, UTC) and parsed back to the
//!   same instant; any instant from year 1 to 9999 formats to a date that
//!   parses back to it; the calendar conversions are inverse.
#![no_main]

use casella_mime::{
    civil_from_days, days_from_civil, format_rfc5322_date, parse_address_list, parse_rfc5322_date,
};
use libfuzzer_sys::fuzz_target;

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const FIRST: i64 = -62_135_596_800;
const LAST: i64 = 253_402_300_799;

fn atext(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
}

fn dot_atom(s: &str) -> bool {
    s.split('.').all(atext)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // Addresses.
    let mut depth = 0;
    for a in parse_address_list(&text) {
        match (&a.mailbox, &a.host) {
            // A group's start, then its end.
            (Some(_), None) => {
                assert!(a.name.is_none() && a.adl.is_none(), "{a:?}");
                depth += 1;
            }
            (None, None) => {
                assert!(a.name.is_none() && a.adl.is_none(), "{a:?}");
                assert!(depth > 0, "a group end without its start");
                depth -= 1;
            }
            (Some(m), Some(h)) => assert!(!m.is_empty() && !h.is_empty(), "{a:?}"),
            (None, Some(_)) => panic!("a host without a mailbox: {a:?}"),
        }
    }
    if let Some((local, domain)) = text.split_once('@')
        && dot_atom(local)
        && dot_atom(domain)
    {
        let name: String = data
            .iter()
            .filter(|b| b.is_ascii_alphanumeric())
            .map(|&b| char::from(b))
            .take(20)
            .collect();
        let written = format!("\"{name}\" <{local}@{domain}>, other@example.org");
        let list = parse_address_list(&written);
        assert_eq!(list.len(), 2, "{written:?}: {list:?}");
        assert_eq!(list[0].mailbox.as_deref(), Some(local));
        assert_eq!(list[0].host.as_deref(), Some(domain));
        assert_eq!(
            list[0].name.as_deref(),
            (!name.is_empty()).then_some(name.as_str())
        );
    }

    // Dates.
    if let Some((instant, offset)) = parse_rfc5322_date(&text) {
        assert!(offset.abs() < 24 * 3600);
        assert!(
            (FIRST..=LAST).contains(&instant),
            "{text:?} gives {instant}"
        );
        let written = format_rfc5322_date(instant);
        assert_eq!(
            parse_rfc5322_date(&written),
            Some((instant, 0)),
            "{text:?} -> {instant} -> {written:?}"
        );
    }
    if data.len() >= 8 {
        let n = i64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let instant = FIRST + n.rem_euclid(LAST - FIRST + 1);
        let written = format_rfc5322_date(instant);
        assert_eq!(
            parse_rfc5322_date(&written),
            Some((instant, 0)),
            "{instant} -> {written:?}"
        );
        let days = n >> 20;
        let (y, m, d) = civil_from_days(days);
        assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        assert_eq!(days_from_civil(y, m, d), days);
    }
});
