//! Reading a `Retry-After` answer (delta-seconds or an HTTP-date), capped.

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// How long `value` asks to wait, as of `now`, at most `cap`: `Retry-After: 2` or
/// `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` (a date already past: no wait). `None` when
/// the value is neither.
pub fn parse(value: &HeaderValue, now: SystemTime, cap: Duration) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let wait = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64: as long as can be, then capped.
        Duration::from_secs(text.parse().unwrap_or(u64::MAX))
    } else {
        let when = httpdate::parse_http_date(text).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(60);

    fn read(text: &str, now: SystemTime) -> Option<Duration> {
        parse(&HeaderValue::from_str(text).unwrap(), now, CAP)
    }

    #[test]
    fn delta_seconds_and_dates_are_read_and_capped() {
        let now = SystemTime::now();
        assert_eq!(read("2", now), Some(Duration::from_secs(2)));
        assert_eq!(read(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(read("3600", now), Some(CAP));
        assert_eq!(read("99999999999999999999999", now), Some(CAP));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(10));
        let wait = read(&date, now).unwrap();
        // HTTP-dates have whole seconds.
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(10));
        assert_eq!(read(&past, now), Some(Duration::ZERO));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(86_400));
        assert_eq!(read(&far, now), Some(CAP));
        // The obsolete formats HTTP still allows.
        assert!(read("Sunday, 06-Nov-94 08:49:37 GMT", now).is_some());
        assert!(read("Sun Nov  6 08:49:37 1994", now).is_some());
    }

    #[test]
    fn anything_else_is_no_hint() {
        let now = SystemTime::now();
        for text in [
            "",
            "-1",
            "1.5",
            "soon",
            "2 s",
            "Wed, 99 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(read(text, now), None, "{text:?}");
        }
        let binary = HeaderValue::from_bytes(b"\xff2").unwrap();
        assert_eq!(parse(&binary, now, CAP), None);
    }
}
