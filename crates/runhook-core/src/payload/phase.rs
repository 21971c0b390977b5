//! Which attempt of a run an event reports, and whether it is the run's final word.
//!
//! A Skyvern workflow with a retry policy runs again under the same run id. With
//! `webhook_on_retry: "every_attempt"`, an attempt that fails while a retry is scheduled sends
//! an *interim* webhook (`retry_pending: true`, `attempt: N`, `next_attempt_at`); the last
//! attempt sends the final one. Each has its own de-duplication key
//! ([`Provider::attempt_dedup_key`]), so that neither swallows the other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Provider;

/// Whether an event is the run's outcome or the report of an attempt that will be retried.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RunPhase {
    /// The run's outcome: no retry is pending (`retry_pending` false or absent).
    #[default]
    Final,
    /// An attempt ended and the platform will retry the run (`retry_pending: true`).
    Interim {
        /// When the next attempt starts, as the sender wrote it (ISO 8601; UTC without a zone).
        next_attempt_at: Option<String>,
    },
}

/// Which attempt a body reports, as a summary reads it.
#[derive(Debug, Default)]
pub(super) struct Attempt {
    /// The attempt's number, where the platform gives one.
    pub number: Option<u32>,
    pub phase: RunPhase,
}

impl RunPhase {
    /// The phase a body's `retry_pending` and `next_attempt_at` say.
    pub(crate) fn of(retry_pending: Option<bool>, next_attempt_at: Option<String>) -> Self {
        match retry_pending {
            Some(true) => RunPhase::Interim { next_attempt_at },
            _ => RunPhase::Final,
        }
    }

    /// Whether this is the run's outcome (no retry pending).
    pub fn is_final(&self) -> bool {
        matches!(self, RunPhase::Final)
    }

    /// When the next attempt starts, when an interim event says (and its time reads).
    pub fn retry_not_before(&self) -> Option<SystemTime> {
        match self {
            RunPhase::Interim {
                next_attempt_at: Some(at),
            } => parse_iso8601(at),
            _ => None,
        }
    }
}

impl Provider {
    /// The de-duplication key of one attempt's event of run `id`: [`Provider::dedup_key`] for
    /// the final event, `<provider>:<id>#attempt-<n>` for an interim one (`#interim` when the
    /// sender gave no attempt number), so that interim and final are each processed once.
    ///
    /// ```
    /// use runhook_core::payload::{Provider, RunPhase};
    /// let interim = RunPhase::Interim { next_attempt_at: None };
    /// assert_eq!(Provider::Skyvern.attempt_dedup_key("wr_1", Some(1), &interim), "skyvern:wr_1#attempt-1");
    /// assert_eq!(Provider::Skyvern.attempt_dedup_key("wr_1", Some(2), &RunPhase::Final), "skyvern:wr_1");
    /// ```
    pub fn attempt_dedup_key(self, id: &str, attempt: Option<u32>, phase: &RunPhase) -> String {
        match (phase, attempt) {
            (RunPhase::Final, _) => self.dedup_key(id),
            (RunPhase::Interim { .. }, Some(n)) => format!("{}:{id}#attempt-{n}", self.as_str()),
            (RunPhase::Interim { .. }, None) => format!("{}:{id}#interim", self.as_str()),
        }
    }
}

/// Reads `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM]` (no zone: UTC, as Skyvern writes its
/// times). `None` for anything else, or a time before 1970.
pub fn parse_iso8601(text: &str) -> Option<SystemTime> {
    let b = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 9 {
                nanos = nanos * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match &b[at..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let rest = [*h1, *h2, *m1, *m2];
            if !rest.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let minutes = i64::from(h1 - b'0') * 600
                + i64::from(h2 - b'0') * 60
                + i64::from(m1 - b'0') * 10
                + i64::from(m2 - b'0');
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Option<u64> {
        parse_iso8601(text).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn iso_times_read_as_utc_unless_zoned() {
        assert_eq!(secs("1970-01-01T00:00:00"), Some(0));
        assert_eq!(secs("2026-09-15T12:30:00"), Some(1_789_475_400));
        assert_eq!(secs("2026-09-15T12:30:00.123456"), Some(1_789_475_400));
        assert_eq!(secs("2026-09-15 12:30:00Z"), Some(1_789_475_400));
        assert_eq!(secs("2026-09-15T14:30:00+02:00"), Some(1_789_475_400));
        assert_eq!(secs("2026-09-15T10:30:00-02:00"), Some(1_789_475_400));
        assert_eq!(secs("2000-02-29T00:00:00"), Some(951_782_400));
        let nanos = parse_iso8601("1970-01-01T00:00:01.5").unwrap();
        assert_eq!(nanos.duration_since(UNIX_EPOCH).unwrap().as_millis(), 1500);
    }

    #[test]
    fn anything_else_is_none() {
        for bad in [
            "",
            "soon",
            "2026-13-01T00:00:00",
            "2026-09-15",
            "2026-09-15T12:30",
            "2026-09-15T12:30:00.",
            "2026-09-15T12:30:00+2",
            "1969-12-31T23:59:59",
            "2026-09-15T12:30:00 trailing",
            "２026-09-15T12:30:00",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
