//! Reading an answer's `Retry-After` (RFC 9110 §10.2.3), for the senders and clients that
//! honour it: `runhook send`, `serve --forward`, the run API client.

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// How long `value` asks to wait, counted from `now`: delta-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, and the obsolete forms HTTP still allows; a date already
/// past asks for no wait). `None` for anything else, so that the caller falls back on its own
/// schedule. Capping is the caller's business.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderValue;
///
/// let now = SystemTime::now();
/// assert_eq!(runhook_core::parse_retry_after(&HeaderValue::from_static("3"), now), Some(Duration::from_secs(3)));
/// assert_eq!(runhook_core::parse_retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 still means "a very long time".
        let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(&HeaderValue::from_str(text).unwrap(), now)
    }

    #[test]
    fn delta_seconds_and_http_dates_are_read() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parsed("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parsed(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parsed("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parsed("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        let later = now + Duration::from_secs(60);
        assert_eq!(
            parsed("Wed, 21 Oct 2015 07:28:00 GMT", later),
            Some(Duration::ZERO)
        );
        // The obsolete formats HTTP still allows.
        assert!(parsed("Sunday, 06-Nov-94 08:49:37 GMT", now).is_some());
        assert!(parsed("Sun Nov  6 08:49:37 1994", now).is_some());
    }

    #[test]
    fn anything_else_is_ignored() {
        let now = SystemTime::now();
        for text in [
            "",
            "-1",
            "1.5",
            "soon",
            "3 s",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(parsed(text, now), None, "{text:?}");
        }
        let opaque = HeaderValue::from_bytes(b"\xff3").unwrap();
        assert_eq!(parse_retry_after(&opaque, now), None);
    }
}
