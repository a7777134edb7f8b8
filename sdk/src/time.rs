//! A small RFC 3339 timestamp parser and formatter (plugins have no clock and
//! need no time-zone database: the offset is kept as given).

use std::fmt::Write as _;

/// A parsed RFC 3339 timestamp: the local date and time plus its UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Year, 0–9999.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of month, 1–31 (checked against the month).
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–59 (a leap second `60` is read as 59).
    pub second: u8,
    /// Fraction of the second in nanoseconds (digits past 9 are dropped).
    pub nanos: u32,
    /// Offset from UTC in minutes (`Z` is 0).
    pub offset_minutes: i16,
}

impl Timestamp {
    /// Parses RFC 3339 text such as `2026-11-22T10:00:00Z` or
    /// `2026-11-22t11:00:00.123456+01:00`.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        parse(text.as_bytes()).ok_or_else(|| format!("not an RFC 3339 timestamp: {text:?}"))
    }

    /// Seconds since the Unix epoch (UTC), ignoring the fraction.
    pub fn unix_seconds(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60
    }

    /// Milliseconds since the Unix epoch (UTC), fraction truncated.
    pub fn unix_millis(&self) -> i64 {
        self.unix_seconds() * 1_000 + i64::from(self.nanos / 1_000_000)
    }

    /// Seconds since the Unix epoch as a float, with the fraction.
    pub fn unix_seconds_f64(&self) -> f64 {
        self.unix_seconds() as f64 + f64::from(self.nanos) / 1e9
    }

    /// Formats as RFC 3339 in the original offset with `frac_digits` (0–9)
    /// fraction digits, upper-case `T` and `Z`: `2026-11-22T10:00:00.000Z`.
    pub fn format_rfc3339(&self, frac_digits: u8) -> String {
        let mut out = String::with_capacity(35);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        let digits = usize::from(frac_digits.min(9));
        if digits > 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(&frac[..digits]);
        }
        if self.offset_minutes == 0 {
            out.push('Z');
        } else {
            let sign = if self.offset_minutes < 0 { '-' } else { '+' };
            let abs = self.offset_minutes.unsigned_abs();
            let _ = write!(out, "{sign}{:02}:{:02}", abs / 60, abs % 60);
        }
        out
    }
}

fn parse(b: &[u8]) -> Option<Timestamp> {
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let at = |i: usize, expected: &[u8]| b.get(i).is_some_and(|c| expected.contains(c));

    let year = num(0..4)?;
    let month = num(5..7)?;
    let day = num(8..10)?;
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > u32::from(days_in_month(year, month))
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut i = 19;
    let mut nanos = 0u32;
    if at(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }

    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 && at(i + 3, b":") => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            if h > 23 || m > 59 {
                return None;
            }
            let total = i16::try_from(h * 60 + m).ok()?;
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };

    Some(Timestamp {
        year: u16::try_from(year).ok()?,
        month: u8::try_from(month).ok()?,
        day: u8::try_from(day).ok()?,
        hour: u8::try_from(hour).ok()?,
        minute: u8::try_from(minute).ok()?,
        second: u8::try_from(second.min(59)).ok()?,
        nanos,
        offset_minutes,
    })
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn matches_the_time_crate() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2026-11-22T10:00:00Z",
            "2026-11-22T10:00:00.5Z",
            "2026-11-22T11:00:00.123456789+01:00",
            "2024-02-29T23:59:59.999-07:30",
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999+14:00",
            "2000-03-01t00:00:00z",
        ] {
            let ours = Timestamp::parse_rfc3339(s).unwrap();
            let theirs = OffsetDateTime::parse(s, &Rfc3339).unwrap();
            assert_eq!(ours.unix_seconds(), theirs.unix_timestamp(), "{s}");
            assert_eq!(ours.nanos, theirs.nanosecond(), "{s}");
            assert_eq!(
                i128::from(ours.unix_millis()),
                theirs.unix_timestamp_nanos().div_euclid(1_000_000),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2026-11-22",
            "2026-11-22T10:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00+0100",
            "2026-11-22T10:00:00Zjunk",
            "2026-11-22T10:00:00+01:00x",
            "２026-11-22T10:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn formats_with_fraction_and_offset() {
        let t = Timestamp::parse_rfc3339("2026-11-22t10:00:00z").unwrap();
        assert_eq!(t.format_rfc3339(3), "2026-11-22T10:00:00.000Z");
        let t = Timestamp::parse_rfc3339("2026-11-22T10:00:00.1234567-05:30").unwrap();
        assert_eq!(t.format_rfc3339(6), "2026-11-22T10:00:00.123456-05:30");
        assert_eq!(t.format_rfc3339(0), "2026-11-22T10:00:00-05:30");
        let leap = Timestamp::parse_rfc3339("2016-12-31T23:59:60Z").unwrap();
        assert_eq!(leap.second, 59);
    }
}
