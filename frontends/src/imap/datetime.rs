//! IMAP `date-time` (RFC 9051 section 9): `"17-Jul-1996 02:44:25 -0700"`, for INTERNALDATE
//! and APPEND.

pub use crate::dates::{civil_from_days, days_from_civil, MONTHS};

/// `"dd-Mon-yyyy hh:mm:ss +0000"` (quoted), in UTC.
pub fn format(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86400), unix.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses `date-time` without its quotes (a leading space for one-digit days is allowed).
pub fn parse(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let mut dp = date.split('-');
    let d: u32 = dp.next()?.parse().ok()?;
    let mon = dp.next()?;
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? as u32 + 1;
    let y: i64 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=31).contains(&d) || !(1..=9999).contains(&y) {
        return None;
    }
    let t: Vec<u32> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [hh, mm, ss] = t[..] else { return None };
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let zb = zone.as_bytes();
    if zb.len() != 5 || !(zb[0] == b'+' || zb[0] == b'-') {
        return None;
    }
    let zh: i64 = zone[1..3].parse().ok()?;
    let zm: i64 = zone[3..5].parse().ok()?;
    let off = (zh * 3600 + zm * 60) * if zb[0] == b'-' { -1 } else { 1 };
    Some(days_from_civil(y, m, d) * 86400 + (hh * 3600 + mm * 60 + ss) as i64 - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(format(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(format(837570265), "\"17-Jul-1996 02:24:25 +0000\"");
        assert_eq!(
            parse("17-Jul-1996 02:44:25 -0700"),
            Some(837570265 + 20 * 60 + 7 * 3600)
        );
        assert_eq!(parse(" 7-Feb-1994 21:52:25 -0800"), Some(760686745));
        for t in [0, 951782400, 4102444799] {
            let f = format(t);
            assert_eq!(parse(f.trim_matches('"')), Some(t));
        }
        assert_eq!(parse("32-Jan-2000 00:00:00 +0000"), None);
        assert_eq!(parse("1-Foo-2000 00:00:00 +0000"), None);
        assert_eq!(parse("1-Jan-2000 00:00 +0000"), None);
        assert_eq!(parse("1-Jan-2000 00:00:00 0000"), None);
    }
}
