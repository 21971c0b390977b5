//! `GET /metrics` in the Prometheus text format: the receivers' counters and an ack-latency
//! histogram per route.
//!
//! Written here rather than with a metrics crate: the counters already live in each
//! [`Receiver`](runhook::Receiver) and one fixed-bucket histogram is a few atomics; a registry
//! would add a second copy of every number.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use runhook::Stats;

/// Upper bounds of the ack-latency buckets, in seconds. The senders time out at 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets, updated without locks.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// One route's numbers, labelled by its path and provider.
pub struct RouteMetrics<'a> {
    /// The route's path as configured.
    pub route: &'a str,
    /// The provider's name.
    pub provider: &'a str,
    /// The receiver's counters.
    pub stats: Stats,
    /// Time from request to response on this route.
    pub latency: &'a LatencyHistogram,
}

/// Reads one number from a route's stats.
type Read = fn(&Stats) -> u64;

/// One counter or gauge family: name, help, type, and how to read it from a route's stats.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    read: Read,
}

const FAMILIES: [Family; 20] = [
    Family {
        name: "runhook_received_total",
        help: "Deliveries received.",
        kind: "counter",
        read: |s| s.received,
    },
    Family {
        name: "runhook_accepted_total",
        help: "Deliveries acknowledged and handed off to the workers.",
        kind: "counter",
        read: |s| s.accepted,
    },
    Family {
        name: "runhook_interim_skipped_total",
        help: "Genuine interim events (attempts the platform retries) answered without a handler call (skip_interim).",
        kind: "counter",
        read: |s| s.interim_skipped,
    },
    Family {
        name: "runhook_duplicates_total",
        help: "Genuine duplicates answered without a second handler call.",
        kind: "counter",
        read: |s| s.duplicates,
    },
    Family {
        name: "runhook_duplicates_other_body_total",
        help: "Duplicates whose body differs from the first delivery's.",
        kind: "counter",
        read: |s| s.duplicates_with_other_body,
    },
    Family {
        name: "runhook_processed_total",
        help: "Events the handler processed successfully.",
        kind: "counter",
        read: |s| s.processed,
    },
    Family {
        name: "runhook_failed_total",
        help: "Handler attempts that failed (each is retried until the attempts run out).",
        kind: "counter",
        read: |s| s.failed_attempts,
    },
    Family {
        name: "runhook_dead_lettered_total",
        help: "Deliveries kept in the dead-letter sink.",
        kind: "counter",
        read: |s| s.dead_lettered,
    },
    Family {
        name: "runhook_dead_letter_write_failures_total",
        help: "Dead-letter writes the sink refused (full, at its byte budget, or failing; the delivery was kept and the write retried).",
        kind: "counter",
        read: |s| s.dead_letter_write_failures,
    },
    Family {
        name: "runhook_dead_letters_parked",
        help: "Dead letters the sink refused, parked with their claims and retried in the background (an alarm: see /readyz).",
        kind: "gauge",
        read: |s| s.dead_letters_parked,
    },
    Family {
        name: "runhook_lost_leases_total",
        help: "Attempts stopped because their claim was lost to another holder (never counted as processed).",
        kind: "counter",
        read: |s| s.lost_leases,
    },
    Family {
        name: "runhook_poison_total",
        help: "Stream entries set aside as poison: handed to workers too many times, their process dying each time.",
        kind: "counter",
        read: |s| s.poison,
    },
    Family {
        name: "runhook_canonical_fallback_matches_total",
        help: "Deliveries whose signature matched only the body's canonical form (re-serialized on the way).",
        kind: "counter",
        read: |s| s.canonical_fallback_matches,
    },
    Family {
        name: "runhook_confirmed_total",
        help: "Runs the platform's run API confirmed before the handler ran.",
        kind: "counter",
        read: |s| s.confirmed,
    },
    Family {
        name: "runhook_confirm_failures_total",
        help: "Confirmation fetches that did not confirm the run (API error, unknown or unfinished run).",
        kind: "counter",
        read: |s| s.confirm_failures,
    },
    Family {
        name: "runhook_reconciled_total",
        help: "Expected runs whose webhook never came in time, processed from the run API.",
        kind: "counter",
        read: |s| s.reconciled,
    },
    Family {
        name: "runhook_swept_total",
        help: "Finished runs a sweep of the platform's recent runs found without a processed webhook, processed from the run API.",
        kind: "counter",
        read: |s| s.swept,
    },
    Family {
        name: "runhook_reconcile_given_up_total",
        help: "Expected runs that never finished within the horizon, dead-lettered never_completed.",
        kind: "counter",
        read: |s| s.reconcile_given_up,
    },
    Family {
        name: "runhook_expected_waiting",
        help: "Expected runs still waiting for their webhook or reconciliation (as last seen by this route's reconciler).",
        kind: "gauge",
        read: |s| s.expected_waiting,
    },
    Family {
        name: "runhook_queue_depth",
        help: "Acknowledged deliveries waiting for a worker.",
        kind: "gauge",
        read: |s| s.queue_depth,
    },
];

/// The reasons a delivery is rejected, with how to read each count.
const REJECTIONS: [(&str, Read); 5] = [
    ("unauthorized", |s| s.rejected_unauthorized),
    ("too_large", |s| s.rejected_too_large),
    ("unparseable", |s| s.rejected_unparseable),
    ("unavailable", |s| s.rejected_unavailable),
    ("other", |s| {
        // Saturating: the counts are read one by one while deliveries go on.
        s.rejected
            .saturating_sub(s.rejected_unauthorized)
            .saturating_sub(s.rejected_too_large)
            .saturating_sub(s.rejected_unparseable)
            .saturating_sub(s.rejected_unavailable)
    }),
];

/// Renders every route's numbers in the Prometheus text exposition format (version 0.0.4).
pub fn render(routes: &[RouteMetrics<'_>]) -> String {
    let mut out = String::new();
    for family in &FAMILIES {
        header(&mut out, family.name, family.help, family.kind);
        for route in routes {
            let _ = writeln!(
                out,
                "{}{{{}}} {}",
                family.name,
                labels(route),
                (family.read)(&route.stats)
            );
        }
    }
    header(
        &mut out,
        "runhook_rejected_total",
        "Deliveries rejected, by reason (unparseable ones are answered 202 and dead-lettered).",
        "counter",
    );
    for route in routes {
        for (reason, read) in &REJECTIONS {
            let _ = writeln!(
                out,
                "runhook_rejected_total{{{},reason=\"{reason}\"}} {}",
                labels(route),
                read(&route.stats)
            );
        }
    }
    header(
        &mut out,
        "runhook_ack_latency_seconds",
        "Time from request to response (the ack), in seconds.",
        "histogram",
    );
    for route in routes {
        histogram(&mut out, route);
    }
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, route: &RouteMetrics<'_>) {
    let labels = labels(route);
    let mut cumulative = 0;
    for (bound, bucket) in BUCKETS.iter().zip(&route.latency.buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "runhook_ack_latency_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
        );
    }
    let count = route.latency.count();
    let sum = route.latency.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let _ = writeln!(
        out,
        "runhook_ack_latency_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(out, "runhook_ack_latency_seconds_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "runhook_ack_latency_seconds_count{{{labels}}} {count}");
}

/// `route="...",provider="..."`, escaped as the text format requires.
fn labels(route: &RouteMetrics<'_>) -> String {
    format!(
        "route=\"{}\",provider=\"{}\"",
        escape(route.route),
        escape(route.provider)
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_rejections_and_a_cumulative_histogram() {
        let latency = LatencyHistogram::default();
        latency.observe(Duration::from_micros(300));
        latency.observe(Duration::from_millis(3));
        latency.observe(Duration::from_secs(20));
        let stats = Stats {
            received: 9,
            rejected: 4,
            rejected_unauthorized: 3,
            rejected_unavailable: 1,
            canonical_fallback_matches: 2,
            confirmed: 5,
            reconciled: 6,
            expected_waiting: 7,
            dead_letters_parked: 8,
            ..Stats::default()
        };
        let route = RouteMetrics {
            route: "/hooks/\"x\"",
            provider: "skyvern",
            stats,
            latency: &latency,
        };
        let text = render(&[route]);
        let labels = r#"route="/hooks/\"x\"",provider="skyvern""#;
        for line in [
            format!("runhook_received_total{{{labels}}} 9"),
            format!("runhook_canonical_fallback_matches_total{{{labels}}} 2"),
            format!("runhook_rejected_total{{{labels},reason=\"unauthorized\"}} 3"),
            format!("runhook_rejected_total{{{labels},reason=\"other\"}} 0"),
            format!("runhook_ack_latency_seconds_bucket{{{labels},le=\"0.0005\"}} 1"),
            format!("runhook_ack_latency_seconds_bucket{{{labels},le=\"0.005\"}} 2"),
            format!("runhook_ack_latency_seconds_bucket{{{labels},le=\"10\"}} 2"),
            format!("runhook_ack_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 3"),
            format!("runhook_ack_latency_seconds_count{{{labels}}} 3"),
            "# TYPE runhook_queue_depth gauge".to_string(),
            format!("runhook_confirmed_total{{{labels}}} 5"),
            format!("runhook_reconciled_total{{{labels}}} 6"),
            format!("runhook_expected_waiting{{{labels}}} 7"),
            "# TYPE runhook_dead_letters_parked gauge".to_string(),
            format!("runhook_dead_letters_parked{{{labels}}} 8"),
            format!("runhook_reconcile_given_up_total{{{labels}}} 0"),
            format!("runhook_confirm_failures_total{{{labels}}} 0"),
            "# TYPE runhook_expected_waiting gauge".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
