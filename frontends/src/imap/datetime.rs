//! IMAP `date-time` (RFC 9051 section 9): `"17-Jul-1996 02:44:25 -0700"`, for INTERNALDATE
//! and APPEND.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

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
