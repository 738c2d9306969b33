//! Wall-clock time as whole seconds since the Unix epoch (UTC), and the calendar arithmetic the
//! features need (hour of day, day of week). Written without `std` so that the edge and the
//! exporter agree on every date.

use core::fmt;
use core::str::FromStr;

/// Seconds in one day.
pub const SECONDS_PER_DAY: i64 = 86_400;

/// A point in time: whole seconds since 1970-01-01 00:00:00 UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Why a text could not be read as a [`Timestamp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampError {
    /// The text is not of the form `YYYY-MM-DD HH:MM:SS` (a `T` may replace the space, a `Z` may end it).
    BadFormat,
    /// A field is out of its range (month 13, day 31 in April, hour 24, ...).
    OutOfRange,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimestampError::BadFormat => f.write_str("is not a date-time of the form YYYY-MM-DD HH:MM:SS"),
            TimestampError::OutOfRange => f.write_str("has a date or time field out of range"),
        }
    }
}

impl core::error::Error for TimestampError {}

/// A calendar date and time of day, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Year, e.g. 2018.
    pub year: i32,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of month, 1..=31.
    pub day: u8,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=59.
    pub second: u8,
}

impl Timestamp {
    /// The timestamp of a calendar date and time (UTC), or `None` when a field is out of range.
    pub fn from_datetime(dt: DateTime) -> Option<Timestamp> {
        let DateTime { year, month, day, hour, minute, second } = dt;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(Timestamp(
            days * SECONDS_PER_DAY + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second),
        ))
    }

    /// The calendar date and time (UTC) of this timestamp.
    pub fn to_datetime(self) -> DateTime {
        let days = self.0.div_euclid(SECONDS_PER_DAY);
        let secs = self.0.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
        }
    }

    /// Hour of the day, 0..=23 (UTC).
    pub fn hour(self) -> u8 {
        (self.0.rem_euclid(SECONDS_PER_DAY) / 3600) as u8
    }

    /// Day of the week, 0 = Monday ..= 6 = Sunday (UTC).
    pub fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        ((self.0.div_euclid(SECONDS_PER_DAY) + 3).rem_euclid(7)) as u8
    }

    /// True on Saturday and Sunday (UTC).
    pub fn is_weekend(self) -> bool {
        self.weekday() >= 5
    }

    /// The timestamp `seconds` later (earlier when negative).
    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp(self.0 + seconds)
    }

    /// Midnight (UTC) at the start of this timestamp's day.
    pub fn start_of_day(self) -> Timestamp {
        Timestamp(self.0.div_euclid(SECONDS_PER_DAY) * SECONDS_PER_DAY)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.to_datetime();
        write!(f, "{:04}-{:02}-{:02} {:02}:{:02}:{:02}", d.year, d.month, d.day, d.hour, d.minute, d.second)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Reads `YYYY-MM-DD HH:MM:SS`, also with `T` for the space and an optional trailing `Z`,
    /// and a bare date `YYYY-MM-DD` (midnight).
    fn from_str(text: &str) -> Result<Timestamp, TimestampError> {
        let b = text.as_bytes();
        let b = b.strip_suffix(b"Z").unwrap_or(b);
        let date_only = b.len() == 10;
        if !(date_only || b.len() == 19) || b[4] != b'-' || b[7] != b'-' {
            return Err(TimestampError::BadFormat);
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        let (hour, minute, second) = if date_only {
            (0, 0, 0)
        } else {
            if !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' || b[16] != b':' {
                return Err(TimestampError::BadFormat);
            }
            (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?)
        };
        let narrow = |v: u32| u8::try_from(v).map_err(|_| TimestampError::OutOfRange);
        Timestamp::from_datetime(DateTime {
            year: year as i32,
            month: narrow(month)?,
            day: narrow(day)?,
            hour: narrow(hour)?,
            minute: narrow(minute)?,
            second: narrow(second)?,
        })
        .ok_or(TimestampError::OutOfRange)
    }
}

fn digits(b: &[u8]) -> Result<u32, TimestampError> {
    b.iter().try_fold(0u32, |acc, &c| {
        if c.is_ascii_digit() { Ok(acc * 10 + u32::from(c - b'0')) } else { Err(TimestampError::BadFormat) }
    })
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days: exact for every proleptic Gregorian date.
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use proptest::prelude::*;

    #[test]
    fn reads_the_handbook_first_timestamp() {
        let t: Timestamp = "2018-04-01 00:00:31".parse().unwrap();
        assert_eq!(t.0, 1_522_540_831);
        assert_eq!(t.weekday(), 6);
        assert_eq!(t.hour(), 0);
    }

    #[test]
    fn accepts_iso_t_and_z_and_bare_dates() {
        let a: Timestamp = "2018-08-14T23:59:59Z".parse().unwrap();
        let b: Timestamp = "2018-08-14 23:59:59".parse().unwrap();
        assert_eq!(a, b);
        let d: Timestamp = "2018-08-14".parse().unwrap();
        assert_eq!(d, b.start_of_day());
    }

    #[test]
    fn refuses_out_of_range_and_malformed_text() {
        assert_eq!("2018-02-29 00:00:00".parse::<Timestamp>(), Err(TimestampError::OutOfRange));
        assert_eq!("2018-04-01 24:00:00".parse::<Timestamp>(), Err(TimestampError::OutOfRange));
        assert_eq!("2018-4-01 00:00:00".parse::<Timestamp>(), Err(TimestampError::BadFormat));
        assert_eq!("2018-04-01 00:00:3x".parse::<Timestamp>(), Err(TimestampError::BadFormat));
        assert_eq!("".parse::<Timestamp>(), Err(TimestampError::BadFormat));
        assert_eq!(
            "2016-02-29".parse::<Timestamp>().map(|t| t.to_string()),
            Ok("2016-02-29 00:00:00".to_string())
        );
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(secs in -62_000_000_000i64..250_000_000_000i64) {
            let t = Timestamp(secs);
            let text = t.to_string();
            prop_assert_eq!(text.parse::<Timestamp>(), Ok(t));
        }

        #[test]
        fn parse_never_panics(text in ".{0,24}") {
            let _ = text.parse::<Timestamp>();
        }
    }
}
