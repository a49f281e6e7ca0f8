//! Times on the command line: printed in UTC, read as a date, a date and
//! time, or an age (`7d`: seven days ago).

use anyhow::{Context, bail};
use casella_mime::days_from_civil;
pub use casella_mime::format_utc;

/// `2026-12-01` (midnight UTC), `2026-12-01T08:30` or `…T08:30:00[Z]` (UTC),
/// or an age before `now` such as `7d`, `12h`, `30m`.
pub fn parse_since(v: &str, now: i64) -> anyhow::Result<i64> {
    let v = v.trim();
    let bad =
        || format!("{v:?}: a date such as 2026-12-01, 2026-12-01T08:30, or an age such as 7d");
    if v.len() >= 10 && v.as_bytes().get(4) == Some(&b'-') {
        let (date, time) = v.split_once(['T', ' ']).unwrap_or((v, ""));
        let parts: Vec<u32> = date
            .split('-')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(bad)?;
        let [y, m, d] = parts[..] else { bail!(bad()) };
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            bail!(bad());
        }
        let time = time.trim_end_matches('Z');
        let mut secs = 0i64;
        if !time.is_empty() {
            let hms: Vec<i64> = time
                .split(':')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(bad)?;
            let (h, mi, s) = match hms[..] {
                [h, mi] => (h, mi, 0),
                [h, mi, s] => (h, mi, s),
                _ => bail!(bad()),
            };
            if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&s) {
                bail!(bad());
            }
            secs = h * 3600 + mi * 60 + s;
        }
        return Ok(days_from_civil(i64::from(y), m, d) * 86_400 + secs);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).with_context(bad)?;
    let n: i64 = v[..split].parse().with_context(bad)?;
    let unit = match &v[split..] {
        "d" => 86_400,
        "h" => 3600,
        "m" | "min" => 60,
        "s" => 1,
        _ => bail!(bad()),
    };
    Ok(now.saturating_sub(n.saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ages() {
        let now = 1_765_000_000;
        assert_eq!(parse_since("1970-01-02", now).unwrap(), 86_400);
        assert_eq!(parse_since("1970-01-01T01:02", now).unwrap(), 3720);
        assert_eq!(parse_since("1970-01-01T00:00:07Z", now).unwrap(), 7);
        assert_eq!(parse_since("7d", now).unwrap(), now - 7 * 86_400);
        assert_eq!(parse_since("2h", now).unwrap(), now - 7200);
        assert!(parse_since("2026-13-01", now).is_err());
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5y", now).is_err());
        assert_eq!(format_utc(86_400 + 3720), "1970-01-02 01:02 UTC");
        let t = parse_since("2026-12-07T22:40", now).unwrap();
        assert_eq!(format_utc(t), "2026-12-07 22:40 UTC");
    }
}
