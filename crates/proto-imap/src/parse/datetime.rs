//! Dates: APPEND's `date-time` and SEARCH's `date` (RFC 9051 §9).

use super::cursor::{Cursor, PResult, fail};
use crate::types::Date;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// `date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone
/// DQUOTE`, as Unix seconds with the zone applied. The day may be `" 1"`, `"01"` or,
/// leniently, `"1"`.
pub(super) fn date_time(c: &mut Cursor<'_>) -> PResult<i64> {
    const BAD: &str = "Invalid date-time";
    c.expect(b'"', BAD)?;
    c.eat(b' ');
    let day = digits(c, 1, 2).ok_or(BAD)?;
    c.expect(b'-', BAD)?;
    let month = month(c).ok_or(BAD)?;
    c.expect(b'-', BAD)?;
    let year = digits(c, 4, 4).ok_or(BAD)?;
    c.expect(b' ', BAD)?;
    let hour = digits(c, 2, 2).ok_or(BAD)?;
    c.expect(b':', BAD)?;
    let minute = digits(c, 2, 2).ok_or(BAD)?;
    c.expect(b':', BAD)?;
    let second = digits(c, 2, 2).ok_or(BAD)?;
    c.expect(b' ', BAD)?;
    let sign: i64 = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return fail(BAD);
    };
    let zone_hour = digits(c, 2, 2).ok_or(BAD)?;
    let zone_minute = digits(c, 2, 2).ok_or(BAD)?;
    c.expect(b'"', BAD)?;
    // RFC 9051 §9: time is 2DIGIT each; 60 seconds allows a leap second.
    if !valid_date(year, month, day)
        || hour > 23
        || minute > 59
        || second > 60
        || zone_hour > 23
        || zone_minute > 59
    {
        return fail(BAD);
    }
    let local = casella_mime::days_from_civil(i64::from(year), month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    let offset = sign * (i64::from(zone_hour) * 3600 + i64::from(zone_minute) * 60);
    // `+0100` means local time is one hour ahead of UTC.
    Ok(local - offset)
}

/// SEARCH `date = date-text / DQUOTE date-text DQUOTE`,
/// `date-text = date-day "-" date-month "-" date-year`, `date-day = 1*2DIGIT`.
pub(super) fn search_date(c: &mut Cursor<'_>) -> PResult<Date> {
    const BAD: &str = "Invalid date";
    if c.at_end() {
        return fail("Missing date");
    }
    let quoted = c.eat(b'"');
    let day = digits(c, 1, 2).ok_or(BAD)?;
    c.expect(b'-', BAD)?;
    let month = month(c).ok_or(BAD)?;
    c.expect(b'-', BAD)?;
    let year = digits(c, 4, 4).ok_or(BAD)?;
    if quoted {
        c.expect(b'"', BAD)?;
    }
    if !valid_date(year, month, day) || !c.delimited() {
        return fail(BAD);
    }
    Ok(Date {
        year: u16::try_from(year).map_err(|_| BAD)?,
        month: u8::try_from(month).map_err(|_| BAD)?,
        day: u8::try_from(day).map_err(|_| BAD)?,
    })
}

/// Between `min` and `max` decimal digits.
fn digits(c: &mut Cursor<'_>, min: usize, max: usize) -> Option<u32> {
    let mut n = 0u32;
    let mut count = 0;
    while count < max {
        match c.peek() {
            Some(d @ b'0'..=b'9') => {
                c.bump();
                n = n * 10 + u32::from(d - b'0');
                count += 1;
            }
            _ => break,
        }
    }
    (count >= min).then_some(n)
}

/// `date-month`, any case; 1..=12.
fn month(c: &mut Cursor<'_>) -> Option<u32> {
    let name = [c.peek()?, c.peek_at(1)?, c.peek_at(2)?];
    let index = MONTHS
        .iter()
        .position(|m| m.as_bytes().eq_ignore_ascii_case(&name))?;
    for _ in 0..3 {
        c.bump();
    }
    u32::try_from(index + 1).ok()
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn valid_date(year: u32, month: u32, day: u32) -> bool {
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(casella_mime::days_from_civil(1970, 1, 1), 0);
        assert_eq!(casella_mime::days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(casella_mime::days_from_civil(1969, 12, 31), -1);
        assert_eq!(casella_mime::days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn leap_years() {
        assert!(valid_date(2000, 2, 29));
        assert!(!valid_date(1900, 2, 29));
        assert!(valid_date(2024, 2, 29));
        assert!(!valid_date(2023, 2, 29));
        assert!(!valid_date(2023, 4, 31));
        assert!(!valid_date(2023, 13, 1));
        assert!(!valid_date(2023, 1, 0));
    }
}
