//! Timestamps as integer microseconds since the Unix epoch.
//!
//! Integers keep window arithmetic exact (`end - D < t <= end`) and make every sum
//! independent of the order events arrive in, which keeps reports deterministic.

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

pub const MICROS_PER_MS: i64 = 1_000;
pub const MICROS_PER_SEC: i64 = 1_000_000;

/// The wall clock.
pub fn now() -> Micros {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Parses an RFC 3339 timestamp that carries `Z` or a numeric offset.
///
/// Hand-written because it runs once per event on the ingest path; it accepts
/// `T`, `t` or a space between date and time and any number of fraction digits
/// (nanoseconds and beyond are truncated to microseconds).
pub fn parse_rfc3339(s: &str) -> Result<Micros, &'static str> {
    match parse_timestamp(s)? {
        (t, false) => Ok(t),
        (_, true) => Err("timestamp has no UTC offset (add Z or +HH:MM)"),
    }
}

/// Parses an RFC 3339 timestamp, also without an offset (as Python's `str(datetime)`
/// and ClickHouse write them): `(micros, naive)`, where a naive time was read as if
/// it were UTC and is for [`Zone::to_utc`] to place.
pub fn parse_timestamp(s: &str) -> Result<(Micros, bool), &'static str> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return Err("timestamp too short for RFC 3339 (e.g. 2024-05-01T12:00:00Z)");
    }
    const NON_DIGIT: &str = "timestamp has a non-digit where RFC 3339 expects one";
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err("timestamp is not RFC 3339 (expected YYYY-MM-DDTHH:MM:SS)");
    }
    if !digits_in_place(b) {
        return Err(NON_DIGIT);
    }
    let two = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
    let (year, month, day) = (two(0) * 100 + two(2), two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    let num = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        let mut v = 0i64;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return Err(NON_DIGIT);
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Ok(v)
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("timestamp has an invalid date");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("timestamp has an invalid time of day");
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return Err("timestamp has an empty fraction");
        }
        for _ in digits..6 {
            micros *= 10;
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err("timestamp has an invalid UTC offset");
            }
            let off = oh * 3600 + om * 60;
            if sign == b'+' { off } else { -off }
        }
        None => {
            let days = days_from_civil(year, month, day);
            let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
            return Ok((secs * MICROS_PER_SEC + micros, true));
        }
        _ => return Err("timestamp has a malformed UTC offset (expected Z or +HH:MM)"),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Ok((secs * MICROS_PER_SEC + micros, false))
}

/// Whether `YYYY-MM-DDTHH:MM:SS`'s fourteen digits are digits, checked eight bytes at a
/// time (its separators checked already). A byte is a digit when its high nibble is 3
/// and adding 6 keeps it so; the separators (`-`, `T`, `t`, space, `:`) carry nothing
/// into the next byte when 6 is added, and a digit position that does is no digit.
#[inline]
fn digits_in_place(b: &[u8]) -> bool {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let off = |w: u64| ((w & HIGH) | ((w.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4)) ^ 0x3333_3333_3333_3333;
    // Digits at bytes 0-3, 5-6 | 8-9, 11-12, 14-15 | 17-18 (the last word starts at 11).
    off(word(0)) & 0x00FF_FF00_FFFF_FFFF == 0
        && off(word(8)) & 0xFFFF_00FF_FF00_FFFF == 0
        && off(word(11)) & 0xFFFF_0000_0000_0000 == 0
}

/// The time zone that timestamps without an offset were written in (`--tz`): UTC
/// unless told otherwise, since logs from servers mostly are.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Zone {
    #[default]
    Utc,
    /// This machine's zone (`TZ`, else `/etc/localtime`).
    Local,
    Fixed(chrono::FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Places a naive time (read as if UTC) in this zone. A local time that a
    /// daylight-saving change skipped or repeated takes the earlier reading.
    pub fn to_utc(self, naive: Micros) -> Micros {
        use chrono::TimeZone;
        let Some(t) = chrono::DateTime::from_timestamp_micros(naive) else { return naive };
        let local = t.naive_utc();
        let placed = match self {
            Zone::Utc => return naive,
            Zone::Local => chrono::Local.from_local_datetime(&local).earliest().map(|t| t.timestamp_micros()),
            Zone::Fixed(z) => z.from_local_datetime(&local).earliest().map(|t| t.timestamp_micros()),
            Zone::Named(z) => z.from_local_datetime(&local).earliest().map(|t| t.timestamp_micros()),
        };
        // A time inside a spring-forward gap did not exist on the clock: read it as the
        // wall time an hour later (02:30 on the night the clocks jump to 03:00 is 03:30).
        placed.unwrap_or_else(|| self.to_utc(naive + 3600 * MICROS_PER_SEC))
    }
}

impl std::str::FromStr for Zone {
    type Err = String;
    fn from_str(s: &str) -> Result<Zone, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(Zone::Utc);
        }
        if t.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        if let Some(sign @ (b'+' | b'-')) = t.bytes().next() {
            let digits: String = t[1..].chars().filter(|c| *c != ':').collect();
            let ok = matches!(digits.len(), 2 | 4) && digits.bytes().all(|b| b.is_ascii_digit());
            let (h, m) = if ok {
                (digits[..2].parse::<i32>().unwrap_or(99), digits.get(2..).map_or(0, |m| m.parse().unwrap_or(99)))
            } else {
                (99, 99)
            };
            let secs = (h * 3600 + m * 60) * if sign == b'+' { 1 } else { -1 };
            return (h <= 23 && m <= 59)
                .then(|| chrono::FixedOffset::east_opt(secs))
                .flatten()
                .map(Zone::Fixed)
                .ok_or_else(|| format!("`{s}` is not a UTC offset: use +HH:MM, e.g. +05:30"));
        }
        t.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            format!(
                "`{s}` is not a time zone: use UTC, local, an offset such as +05:30 or a name such as Europe/Berlin"
            )
        })
    }
}

/// Converts epoch milliseconds (possibly fractional) to microseconds.
pub fn from_epoch_ms(ms: f64) -> Result<Micros, &'static str> {
    if !ms.is_finite() {
        return Err("epoch milliseconds must be a finite number");
    }
    let us = (ms * 1000.0).round();
    if us.abs() > 9.0e15 * 1000.0 {
        return Err("epoch milliseconds out of range");
    }
    Ok(us as i64)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats microseconds as RFC 3339 UTC, with millisecond precision when needed.
pub fn format_rfc3339(t: Micros) -> String {
    use chrono::{DateTime, SecondsFormat};
    match DateTime::from_timestamp_micros(t) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => t.to_string(),
    }
}

/// Parses a duration written like `30s`, `5m`, `1h`, `7d` (also `500ms`, `2w`).
pub fn parse_duration(s: &str) -> Result<Micros, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("`{s}` is not a duration: write it like 30s, 5m, 1h or 7d"))?;
    let mult = match unit {
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        "d" => 86_400e6,
        "w" => 604_800e6,
        _ => return Err(format!("`{s}` has no known unit: use ms, s, m, h, d or w (e.g. 15m)")),
    };
    let us = n * mult;
    if !(1.0..1e17).contains(&us) {
        return Err(format!("`{s}` is not a positive duration"));
    }
    Ok(us as i64)
}

/// Formats a duration compactly (`90s` → `1m30s` is not needed: we print the largest exact unit).
pub fn format_duration(us: Micros) -> String {
    for (unit, size) in [("d", 86_400_000_000i64), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)] {
        if us >= size && us % size == 0 {
            return format!("{}{unit}", us / size);
        }
    }
    format!("{}ms", us / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_chrono() {
        for s in [
            "2024-05-01T12:00:00Z",
            "2024-02-29T23:59:59.999999Z",
            "1999-12-31T23:00:00-05:30",
            "2024-05-01 12:00:00.5+02:00",
            "2030-01-01T00:00:00.123456789Z",
            "1970-01-01T00:00:00Z",
        ] {
            let ours = parse_rfc3339(s).unwrap();
            let theirs = chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
            assert_eq!(ours, theirs, "{s}");
        }
    }

    #[test]
    fn digits_are_checked_at_once_as_one_by_one() {
        const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
        let mut rng = crate::synth::Rng::new(5);
        for base in ["2024-05-01T12:00:00Z", "1999-12-31 23:59:60.5+01:00", "0000-00-00t00:00:00"] {
            // Every byte value at every digit's place, then random bytes at two of them
            // (the separators are checked before).
            let mut cases: Vec<Vec<u8>> = Vec::new();
            for at in DIGITS {
                for v in 0..=255u8 {
                    let mut b = base.as_bytes().to_vec();
                    b[at] = v;
                    cases.push(b);
                }
            }
            for _ in 0..100_000 {
                let mut b = base.as_bytes().to_vec();
                for _ in 0..2 {
                    b[DIGITS[rng.below(14) as usize]] = rng.below(256) as u8;
                }
                cases.push(b);
            }
            for b in cases {
                let want = DIGITS.iter().all(|&i| b[i].is_ascii_digit());
                assert_eq!(digits_in_place(&b), want, "{b:?}");
            }
        }
    }

    #[test]
    fn rfc3339_rejects_bad_input() {
        for s in [
            "2024-05-01T12:00:00",
            "2024-13-01T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+0200",
            "1714564800000",
            "yesterday at noon, roughly",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000);
        assert_eq!(parse_duration("5m").unwrap(), 300_000_000);
        assert_eq!(parse_duration("7d").unwrap(), 604_800_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(format_duration(3_600_000_000), "1h");
        assert_eq!(format_duration(90_000_000), "90s");
    }

    #[test]
    fn naive_times_are_placed_in_their_zone() {
        let (t, naive) = parse_timestamp("2025-07-01 12:00:00.25").unwrap();
        assert!(naive);
        assert_eq!(t, parse_rfc3339("2025-07-01T12:00:00.25Z").unwrap());
        assert!(!parse_timestamp("2025-07-01T12:00:00Z").unwrap().1);
        let z = |s: &str| s.parse::<Zone>().unwrap();
        assert_eq!(z("UTC").to_utc(t), t);
        assert_eq!(z("+05:30").to_utc(t), t - (5 * 3600 + 1800) * MICROS_PER_SEC);
        assert_eq!(z("-0800").to_utc(t), t + 8 * 3600 * MICROS_PER_SEC);
        assert_eq!(z("Europe/Berlin").to_utc(t), t - 2 * 3600 * MICROS_PER_SEC, "CEST in July");
        // 02:30 on the spring-forward night does not exist in Berlin: an hour later's offset.
        let gap = parse_timestamp("2025-03-30 02:30:00").unwrap().0;
        assert_eq!(z("Europe/Berlin").to_utc(gap), gap - 3600 * MICROS_PER_SEC);
        assert!("Mars/Olympus".parse::<Zone>().unwrap_err().contains("Europe/Berlin"));
        assert!("+25:00".parse::<Zone>().is_err());
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_500), "1970-01-01T00:00:00.001500Z");
    }
}
