//! Date formatting without a calendar crate: the HTTP `Date` header
//! (RFC 9110 IMF-fixdate) and gunicorn's log timestamp.

use std::time::{SystemTime, UNIX_EPOCH};

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Broken-down time: (year, month 1-12, day, hour, minute, second, weekday index from Thursday).
fn broken_down(secs: i64) -> (i64, u32, u32, u32, u32, u32, usize) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        days.rem_euclid(7) as usize,
    )
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub fn http_date(secs: i64) -> String {
    let (y, mo, d, h, mi, s, wd) = broken_down(secs);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[wd],
        d,
        MONTHS[(mo - 1) as usize],
        y,
        h,
        mi,
        s
    )
}

/// Local UTC offset in seconds for the given instant.
pub fn local_offset(secs: i64) -> i64 {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r only writes into the tm we own; t is a valid time_t.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

/// gunicorn's error-log timestamp: `2026-01-02 03:04:05 +0000` (local time).
pub fn log_timestamp(secs: i64) -> String {
    let off = local_offset(secs);
    let (y, mo, d, h, mi, s, _) = broken_down(secs + off);
    let sign = if off < 0 { '-' } else { '+' };
    let a = off.abs();
    format!(
        "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} {sign}{:02}{:02}",
        a / 3600,
        a % 3600 / 60
    )
}

/// The access log's `%(t)s`: `[22/Nov/2026:11:12:45 +0000]` (local time).
pub fn clf_timestamp(secs: i64) -> String {
    let off = local_offset(secs);
    let (y, mo, d, h, mi, s, _) = broken_down(secs + off);
    let sign = if off < 0 { '-' } else { '+' };
    let a = off.abs();
    format!(
        "[{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} {sign}{:02}{:02}]",
        MONTHS[(mo - 1) as usize],
        a / 3600,
        a % 3600 / 60
    )
}

/// ISO 8601 local time with milliseconds and the UTC offset, for JSON
/// access-log lines: `2026-11-22T11:12:45.123+01:00`.
pub fn iso_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let off = local_offset(secs);
    let (y, mo, d, h, mi, s, _) = broken_down(secs + off);
    let sign = if off < 0 { '-' } else { '+' };
    let a = off.abs();
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}{sign}{:02}:{:02}",
        since.subsec_millis(),
        a / 3600,
        a % 3600 / 60
    )
}

/// Caches the `Date` header value for the current second.
#[derive(Default)]
pub struct DateCache {
    secs: i64,
    value: String,
}

impl DateCache {
    pub fn get(&mut self) -> &str {
        let now = unix_now();
        if now != self.secs || self.value.is_empty() {
            self.secs = now;
            self.value = http_date(now);
        }
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_709_210_096), "Thu, 29 Feb 2024 12:34:56 GMT");
        let iso = iso_timestamp(UNIX_EPOCH + std::time::Duration::from_millis(1_709_210_096_007));
        if local_offset(1_709_210_096) == 0 {
            assert_eq!(iso, "2024-02-29T12:34:56.007+00:00");
        }
        let clf = clf_timestamp(1_709_210_096);
        if local_offset(1_709_210_096) == 0 {
            assert_eq!(clf, "[29/Feb/2024:12:34:56 +0000]");
        } else {
            assert_eq!(clf.len(), "[29/Feb/2024:12:34:56 +0000]".len(), "{clf}");
        }
    }
}
