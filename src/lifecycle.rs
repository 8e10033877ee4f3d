//! Deprecation and sunset: configured dates → the response headers of RFC 9745
//! (`Deprecation: @<unix seconds>`), RFC 8594 (`Sunset: <HTTP-date>`) and RFC 8288
//! (`Link: <url>; rel="successor-version"`), and the instant after which a version is gone.

/// A deployment's lifecycle, compiled: instants in unix seconds, headers ready to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// From this instant on the version is deprecated (counted as deprecated use).
    pub deprecated_at: Option<i64>,
    /// After this instant the version is gone (410).
    pub sunset_at: Option<i64>,
    /// The version clients should move to, named in the 410 answer.
    pub successor: Option<String>,
    /// `Deprecation`, `Sunset` and `Link` as they go on every response it serves.
    pub response_headers: Vec<(&'static str, String)>,
}

impl Lifecycle {
    pub fn new(
        deprecated_at: Option<i64>,
        sunset_at: Option<i64>,
        successor: Option<String>,
        link: Option<&str>,
    ) -> Self {
        let mut response_headers = Vec::new();
        if let Some(at) = deprecated_at {
            response_headers.push(("deprecation", format!("@{at}")));
        }
        if let Some(at) = sunset_at {
            response_headers.push(("sunset", http_date(at)));
        }
        if let Some(url) = link {
            response_headers.push(("link", format!("<{url}>; rel=\"successor-version\"")));
        }
        Lifecycle { deprecated_at, sunset_at, successor, response_headers }
    }

    /// Whether the deprecation is in force at `now` (unix seconds, the proxy's clock).
    pub fn is_deprecated(&self, now: i64) -> bool {
        self.deprecated_at.is_some_and(|at| now >= at)
    }

    /// Whether the sunset has passed at `now` (unix seconds, the proxy's clock).
    pub fn is_gone(&self, now: i64) -> bool {
        self.sunset_at.is_some_and(|at| now >= at)
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` into unix seconds.
pub fn parse_instant(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) {
        return None;
    }
    let seconds = match b.len() {
        10 => 0,
        20 if b.get(10) == Some(&b'T')
            && b.get(13) == Some(&b':')
            && b.get(16) == Some(&b':')
            && b.get(19) == Some(&b'Z') =>
        {
            let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
            if h > 23 || m > 59 || s > 59 {
                return None;
            }
            h * 3600 + m * 60 + s
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + seconds)
}

/// IMF-fixdate, as HTTP dates are sent: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = DAYS.get(days.rem_euclid(7) as usize).copied().unwrap_or("Thu");
    let month_name = MONTHS.get((month - 1) as usize).copied().unwrap_or("Jan");
    format!("{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} GMT", secs / 3600, secs % 3600 / 60, secs % 60)
}

// Howard Hinnant's civil calendar algorithms (public domain), proleptic Gregorian.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dates_and_instants() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01", Some(0)),
            ("2026-06-01", Some(1_780_272_000)),
            ("2026-06-01T12:30:15Z", Some(1_780_272_000 + 45_015)),
            ("2024-02-29", Some(1_709_164_800)),
            ("2023-02-29", None),
            ("2026-13-01", None),
            ("2026-6-1", None),
            ("2026-06-01T24:00:00Z", None),
            ("2026-06-01T12:00:00+02:00", None),
            ("tomorrow", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_instant(text), *want, "{text}");
        }
    }

    #[test]
    fn formats_http_dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_780_272_000), "Mon, 01 Jun 2026 00:00:00 GMT");
    }

    #[test]
    fn builds_the_response_headers() {
        let l = Lifecycle::new(Some(1_780_272_000), Some(1_800_000_000), Some("2".into()), Some("https://x/v2"));
        assert_eq!(
            l.response_headers,
            vec![
                ("deprecation", "@1780272000".to_string()),
                ("sunset", http_date(1_800_000_000)),
                ("link", "<https://x/v2>; rel=\"successor-version\"".to_string())
            ]
        );
        assert!(!l.is_gone(1_799_999_999));
        assert!(l.is_gone(1_800_000_000));
        assert!(!l.is_deprecated(1_780_271_999));
        assert!(l.is_deprecated(1_780_272_000));
        assert!(!Lifecycle::default().is_deprecated(i64::MAX));
    }
}
