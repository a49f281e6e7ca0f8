//! Date: header parsing — RFC 5322 §3.3, plus the obsolete forms of §4.3 (two- and
//! three-digit years, alphabetic zones, comments anywhere), for SEARCH SENT*.
//!
//! Tolerant on purpose: the day of week is optional and never checked against the
//! date, a missing or unknown zone counts as "-0000" (UTC, zone unknown, as §4.3
//! asks for military zones), seconds are optional, and the asctime order
//! ("Mon Jan  2 15:04:05 2006") and "02-Jan-2006" are accepted too.

/// Parses an RFC 5322 date-time. Returns the instant as seconds since the Unix epoch
/// (UTC) and the zone's offset east of UTC in seconds, or `None` if no valid
/// calendar date and time can be found.
pub fn parse_rfc5322_date(s: &str) -> Option<(i64, i32)> {
    let cleaned = strip_comments(s);
    let tokens: Vec<&str> = cleaned
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    let mut rest = tokens.as_slice();

    // Optional day-of-week ("Mon", "Monday", "Mon.").
    if let Some(first) = rest.first()
        && first.chars().all(|c| c.is_ascii_alphabetic() || c == '.')
        && month_number(first).is_none()
    {
        rest = &rest[1..];
    }

    let (year, month, day, time, zone) = split_fields(rest)?;
    let (hour, minute, second) = parse_time(time)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let offset = zone.map_or(0, parse_zone);

    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    let instant = local - i64::from(offset);
    // An instant outside years 1–9999 in UTC cannot be written back as a
    // date (a four-digit year), so it is not one.
    (FIRST_INSTANT..=LAST_INSTANT)
        .contains(&instant)
        .then_some((instant, offset))
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the instants a date with a
/// four-digit year can name in UTC.
const FIRST_INSTANT: i64 = -62_135_596_800;
const LAST_INSTANT: i64 = 253_402_300_799;

type Fields<'a> = (i64, u32, u32, &'a str, Option<&'a str>);

/// Picks year, month, day, time and zone out of the tokens after the day of week.
fn split_fields<'a>(t: &[&'a str]) -> Option<Fields<'a>> {
    match t {
        // "02-Jan-2006 15:04:05 [zone]"
        [dmy, time, rest @ ..] if dmy.matches('-').count() == 2 => {
            let mut it = dmy.split('-');
            let day = parse_num(it.next()?)?;
            let month = month_number(it.next()?)?;
            let year = parse_year(it.next()?)?;
            Some((year, month, day, time, rest.first().copied()))
        }
        // asctime: "Jan 2 15:04:05 2006 [zone]"
        [mon, day, time, year, rest @ ..] if month_number(mon).is_some() && time.contains(':') => {
            Some((
                parse_year(year)?,
                month_number(mon)?,
                parse_num(day)?,
                time,
                rest.first().copied(),
            ))
        }
        // RFC 5322: "2 Jan 2006 15:04:05 [zone]"
        [day, mon, year, time, rest @ ..] => Some((
            parse_year(year)?,
            month_number(mon)?,
            parse_num(day)?,
            time,
            rest.first().copied(),
        )),
        _ => None,
    }
}

/// "hh:mm" or "hh:mm:ss" (a fractional part on the seconds is ignored).
fn parse_time(t: &str) -> Option<(u32, u32, u32)> {
    let mut it = t.split(':');
    let hour = parse_num(it.next()?)?;
    let minute = parse_num(it.next()?)?;
    let second = match it.next() {
        Some(s) => parse_num(s.split('.').next().unwrap_or(s))?,
        None => 0,
    };
    if it.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some((hour, minute, second))
}

/// Zone offset in seconds east of UTC. RFC 5322 §4.3: unknown alphabetic zones
/// (including military ones) mean "-0000", i.e. UTC with no zone information.
fn parse_zone(z: &str) -> i32 {
    let bytes = z.as_bytes();
    if let [sign @ (b'+' | b'-'), digits @ ..] = bytes {
        let digits: Vec<u8> = digits.iter().copied().filter(|&b| b != b':').collect();
        if digits.len() == 4 && digits.iter().all(u8::is_ascii_digit) {
            let n = |i: usize| i32::from(digits[i] - b'0');
            let hours = n(0) * 10 + n(1);
            let minutes = n(2) * 10 + n(3);
            if hours <= 23 && minutes <= 59 {
                let off = hours * 3600 + minutes * 60;
                return if *sign == b'-' { -off } else { off };
            }
        }
        return 0;
    }
    let hours = match z.to_ascii_uppercase().as_str() {
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        _ => 0,
    };
    hours * 3600
}

fn parse_num(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// RFC 5322 §4.3: two-digit years 00–49 are 2000–2049, 50–99 are 1950–1999;
/// three-digit years are added to 1900.
fn parse_year(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = s.parse().ok()?;
    let y = match s.len() {
        1 | 2 if y < 50 => y + 2000,
        1 | 2 => y + 1900,
        3 => y + 1900,
        _ => y,
    };
    (1..=9999).contains(&y).then_some(y)
}

/// English month abbreviations, as dates in mail write them.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/// Day names from 1970-01-01, a Thursday.
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// The month (1-12) a name starts with (`Dec`, `december`, any case).
pub fn month_number(s: &str) -> Option<u32> {
    if s.len() < 3 || !s.is_ascii() {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(&s[..3]))
        .map(|i| i as u32 + 1)
}

/// asctime(3), in UTC, as mbox `From ` lines carry it: `Mon Dec  7 23:48:32 2026`.
pub fn format_asctime(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {d:2} {:02}:{:02}:{:02} {y}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A time for people to read, to the minute: `2026-12-07 22:40 UTC`.
pub fn format_utc(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        s % 3600 / 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil algorithm). The one calendar implementation of casella.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Year, month (1-12) and day (1-31) of the proleptic Gregorian calendar for a
/// count of days since 1970-01-01 (the inverse of [`days_from_civil`]).
///
/// Works in 400-year eras that start on 1 March, so the leap day is the last day
/// of its year: an era has 146097 days, and inside it the year of the era
/// follows from the day of the era by taking out one day per 4 years, adding
/// one back per 100 and taking one out again per 400.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // 0000-03-01 is 719468 days before 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March … 11 = February. The month lengths
    // from March repeat 31 30 31 30 31 in blocks of 153 days over 5 months.
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are small and positive by construction.
    (year, month as u32, day as u32)
}

/// `Tue, 24 Nov 2026 12:05:00 +0000` — RFC 5322 §3.3 — for a Unix time, in UTC.
/// The year has four digits at least (`0999`): §3.3's `4*DIGIT`, and what
/// [`parse_rfc5322_date`] reads back as the same year (three digits would be
/// the obsolete form, read as 1900 more).
pub fn format_rfc5322_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {} {} {:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Replaces RFC 5322 comments (nested, with quoted-pairs) by a space.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                depth += 1;
                out.push(' ');
            }
            ')' if depth > 0 => depth -= 1,
            '\\' if depth > 0 => {
                chars.next();
            }
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<(i64, i32)> {
        parse_rfc5322_date(s)
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1900, 1, 1), -25_567);
    }

    #[test]
    fn rfc5322_examples() {
        // RFC 5322 Appendix A.1.1
        assert_eq!(
            p("Fri, 21 Nov 1997 09:55:06 -0600"),
            Some((880_127_706, -6 * 3600))
        );
        // Appendix A.6.2: obsolete two-digit year, comments, zone name
        assert_eq!(p("21 Nov 97 09:55:06 GMT"), Some((880_106_106, 0)));
        // Appendix A.6.3: folding whitespace and comments everywhere
        assert_eq!(
            p(
                "Thu,\r\n      13\r\n        Feb\r\n          1969\r\n      23:32\r\n               -0330 (Newfoundland Time)"
            ),
            Some((-27_723_480, -(3 * 3600 + 30 * 60)))
        );
    }

    #[test]
    fn known_answers() {
        let cases: &[(&str, Option<(i64, i32)>)] = &[
            (
                "Sat, 24 Mar 2007 23:00:00 +0200",
                Some((1_174_770_000, 7200)),
            ),
            ("24 Mar 2007 23:00:00 +0200", Some((1_174_770_000, 7200))),
            (
                "Sat 24 Mar 2007 23:00:00 +0200",
                Some((1_174_770_000, 7200)),
            ),
            (
                "Sun, 12 Aug 2012 12:34:56 +0300",
                Some((1_344_764_096, 10_800)),
            ),
            ("Thu, 01 Jan 1970 00:00:00 +0000", Some((0, 0))),
            ("Thu, 01 Jan 1970 00:00:00 -0000", Some((0, 0))),
            ("Thu, 1 Jan 1970 00:00 UT", Some((0, 0))),
            ("Thu, 1 Jan 1970 00:00:00 Z", Some((0, 0))),
            ("Thu, 1 Jan 1970 00:00:00", Some((0, 0))),
            ("Thu, 1 Jan 1970 00:00:00 XYZ", Some((0, 0))),
            ("Thu, 1 Jan 1970 00:00:00 A", Some((0, 0))),
            ("1 Jan 1970 00:00:00 EST", Some((5 * 3600, -5 * 3600))),
            ("1 Jan 1970 00:00:00 EDT", Some((4 * 3600, -4 * 3600))),
            ("1 Jan 1970 00:00:00 cst", Some((6 * 3600, -6 * 3600))),
            ("1 Jan 1970 00:00:00 CDT", Some((5 * 3600, -5 * 3600))),
            ("1 Jan 1970 00:00:00 MST", Some((7 * 3600, -7 * 3600))),
            ("1 Jan 1970 00:00:00 MDT", Some((6 * 3600, -6 * 3600))),
            ("1 Jan 1970 00:00:00 PST", Some((8 * 3600, -8 * 3600))),
            ("1 Jan 1970 00:00:00 PDT", Some((7 * 3600, -7 * 3600))),
            ("1 Jan 1970 00:00:00 +0530", Some((-19_800, 19_800))),
            ("1 Jan 1970 00:00:00 +05:30", Some((-19_800, 19_800))),
            ("1 Jan 49 00:00:00 +0000", Some((2_493_072_000, 0))),
            ("1 Jan 50 00:00:00 +0000", Some((-631_152_000, 0))),
            ("1 Jan 070 00:00:00 +0000", Some((0, 0))),
            ("Mon, 29 Feb 2024 12:00:00 +0000", Some((1_709_208_000, 0))),
            (
                "Monday, 1 January 2024 00:00:00 +0000",
                Some((1_704_067_200, 0)),
            ),
            ("01-Jan-2024 00:00:00 +0000", Some((1_704_067_200, 0))),
            ("Mon Jan  1 00:00:00 2024", Some((1_704_067_200, 0))),
            (
                "Mon Jan  1 00:00:00 2024 +0100",
                Some((1_704_063_600, 3600)),
            ),
            ("1 Jan 2024 23:59:60 +0000", Some((1_704_153_600, 0))),
            (
                "(comment) 1 (x) Jan 2024 00:00:00 +0000 (UTC)",
                Some((1_704_067_200, 0)),
            ),
            ("1 Jan 2024 00:00:00.123 +0000", Some((1_704_067_200, 0))),
            // Invalid
            ("", None),
            ("garbage", None),
            ("30 Feb 2024 00:00:00 +0000", None),
            ("29 Feb 2023 00:00:00 +0000", None),
            ("1 Foo 2024 00:00:00 +0000", None),
            ("1 Jan 2024 24:00:00 +0000", None),
            ("1 Jan 2024 23:60:00 +0000", None),
            ("1 Jan 2024", None),
            ("0 Jan 2024 00:00:00 +0000", None),
            ("1 Jan 20245 00:00:00 +0000", None),
            ("1 Jan 2024 00:00:00:00 +0000", None),
            ("1 Jan 2024 aa:00:00 +0000", None),
        ];
        for (input, expected) in cases {
            assert_eq!(p(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn bad_numeric_zone_is_utc() {
        assert_eq!(p("1 Jan 1970 00:00:00 +2500"), Some((0, 0)));
        assert_eq!(p("1 Jan 1970 00:00:00 +12"), Some((0, 0)));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "((((",
            "))))",
            "\\",
            "1 Jan 2024 00:00:00 +",
            "1-2-3 4",
            "ä ö ü",
            "1 Jän 2024 00:00:00",
            "9 Jan 0 0:0",
            "-",
            "1 Jan -1 00:00:00",
        ] {
            let _ = p(s);
        }
    }
}

#[cfg(test)]
mod calendar_tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_formatting() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(format_rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            format_rfc5322_date(1_795_521_900),
            "Tue, 24 Nov 2026 12:05:00 +0000"
        );
        assert_eq!(
            format_rfc5322_date(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }
}

#[cfg(test)]
mod round_trip_tests {
    use super::*;

    /// Found by the `address_date` fuzz target (issue 24): a parsed date,
    /// formatted and parsed again, must give the same instant.
    #[test]
    fn early_years_and_the_calendar_edges_round_trip() {
        for date in [
            "1 Jan 0999 00:00:00 +0000",
            "31 Dec 0049 23:59:59 +0000",
            "15 Jun 0001 12:00:00 +0000",
            "31 Dec 9999 23:59:59 +0000",
        ] {
            let (instant, _) = parse_rfc5322_date(date).expect(date);
            let written = format_rfc5322_date(instant);
            assert_eq!(
                parse_rfc5322_date(&written),
                Some((instant, 0)),
                "{date} -> {written}"
            );
        }
        let written = format_rfc5322_date(parse_rfc5322_date("1 Jan 0999 00:00 +0000").unwrap().0);
        assert!(
            written.ends_with(", 1 Jan 0999 00:00:00 +0000"),
            "RFC 5322 §3.3: a year has at least four digits: {written}"
        );
        // A zone that moves the instant out of years 1–9999: not a date
        // that can be written back.
        assert_eq!(parse_rfc5322_date("1 Jan 0001 00:30:00 +0100"), None);
        assert_eq!(parse_rfc5322_date("31 Dec 9999 23:30:00 -0100"), None);
    }
}
