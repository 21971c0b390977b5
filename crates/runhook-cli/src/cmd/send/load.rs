//! `runhook send --count N`: load made from one template, each delivery with a fresh run id,
//! some of them resent as duplicates, several in flight at once.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::RngExt as _;
use runhook::payload::{DedupProbe, Provider};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use super::{delivered, millis, now, say, Prepared, SendError, Sender, Target};
use crate::deliver::{Attempt, AttemptResult};

/// The field added to `webrun-ai` bodies, which carry no id: it gives each body a new hash,
/// which is their dedup key.
pub(super) const LOAD_ID_FIELD: &str = "runhook_load_id";

/// The template file and how a fresh run id goes into it.
pub(super) struct Template {
    sender: Sender,
    text: Vec<u8>,
    id: IdSlot,
    /// Random per invocation, so that two runs against one receiver never share an id.
    nonce: u32,
}

/// Where the run id goes.
enum IdSlot {
    /// Every JSON string equal to the template's run id (this, quoted) is replaced.
    Replace(Vec<u8>),
    /// A [`LOAD_ID_FIELD`] is added at the start of the object.
    Inject,
}

impl Template {
    /// A template from `text`, checked: its run id can be replaced (or, for `webrun-ai`, it is
    /// an object) and the platform can send the result.
    pub(super) fn new(sender: Sender, text: Vec<u8>) -> Result<Self, SendError> {
        let provider = sender.provider;
        let id = match provider {
            Provider::WebRunAi => IdSlot::Inject,
            _ => {
                let probe = DedupProbe::read(provider, &text)
                    .map_err(|source| SendError::NotATemplate { provider, source })?;
                // Every platform but webrun-ai (handled above) names its runs.
                let run_id = probe.run_id.ok_or(SendError::NoRunId(provider))?;
                IdSlot::Replace(json_string(&run_id))
            }
        };
        let template = Self {
            sender,
            text,
            id,
            nonce: rand::rng().random(),
        };
        template.check()?;
        Ok(template)
    }

    fn check(&self) -> Result<(), SendError> {
        let payload = self.payload(0)?;
        if matches!(self.id, IdSlot::Replace(_)) {
            let provider = self.sender.provider;
            let carried = DedupProbe::read(provider, &payload).map(|probe| probe.run_id);
            if carried.ok().flatten().as_deref() != Some(self.run_id(0).as_str()) {
                return Err(SendError::IdNotReplaceable(provider));
            }
        }
        self.sender.prepare(&payload, now()).map(drop)
    }

    /// The run id of the `index`th unique delivery.
    fn run_id(&self, index: usize) -> String {
        format!("load-{:08x}-{index}", self.nonce)
    }

    /// The payload of the `index`th unique delivery.
    fn payload(&self, index: usize) -> Result<Vec<u8>, SendError> {
        let id = self.run_id(index);
        match &self.id {
            IdSlot::Replace(old) => Ok(replace_all(&self.text, old, &json_string(&id))),
            IdSlot::Inject => inject_field(&self.text, &id).ok_or(SendError::NotAnObject),
        }
    }

    /// The request of the `index`th unique delivery, sent at `unix_now`: the same arguments
    /// give the same bytes, which is how a duplicate resends an earlier delivery exactly.
    fn delivery(&self, index: usize, unix_now: i64) -> Result<Prepared, SendError> {
        self.sender.prepare(&self.payload(index)?, unix_now)
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> Vec<u8> {
    serde_json::Value::from(text).to_string().into_bytes()
}

/// `text` with every occurrence of `from` (not empty) replaced by `to`.
fn replace_all(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        let (before, after) = rest.split_at(at);
        out.extend_from_slice(before);
        out.extend_from_slice(to);
        rest = after.get(from.len()..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    out
}

/// The JSON object `text` with `"runhook_load_id": id` as its first member; `None` if `text`
/// does not start with `{`.
fn inject_field(text: &[u8], id: &str) -> Option<Vec<u8>> {
    let open = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let (head, rest) = text.split_at(open + 1);
    if head.last() != Some(&b'{') {
        return None;
    }
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = head.to_vec();
    out.extend_from_slice(&json_string(LOAD_ID_FIELD));
    out.push(b':');
    out.extend_from_slice(&json_string(id));
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// What one delivery of the load is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The `n`th unique delivery (counted from 0), with its fresh run id.
    Original(usize),
    /// An exact resend of the `n`th unique delivery, which comes earlier.
    Duplicate(usize),
}

/// `count` slots of which `ratio` (rounded; never the first) are duplicates of a random
/// earlier original, at random positions.
fn plan<R: rand::Rng + ?Sized>(count: usize, ratio: f64, rng: &mut R) -> Vec<Slot> {
    let later = count.saturating_sub(1);
    // `ratio` is within 0..=1, so the product is within 0..=count.
    let duplicates = ((count as f64 * ratio).round() as usize).min(later);
    let mut is_duplicate = vec![false; count];
    for position in rand::seq::index::sample(rng, later, duplicates) {
        if let Some(slot) = is_duplicate.get_mut(position + 1) {
            *slot = true;
        }
    }
    let mut originals = 0;
    is_duplicate
        .into_iter()
        .map(|duplicate| {
            if duplicate && originals > 0 {
                Slot::Duplicate(rng.random_range(0..originals))
            } else {
                originals += 1;
                Slot::Original(originals - 1)
            }
        })
        .collect()
}

/// The shape of a load.
pub(super) struct Load {
    /// How many deliveries.
    pub(super) count: usize,
    /// The fraction of them that are duplicates.
    pub(super) duplicates: f64,
    /// How many are in flight at once.
    pub(super) concurrency: usize,
}

impl Load {
    /// Sends the load with a progress bar on standard error, then prints the summary;
    /// `Ok(true)` if every delivery was answered 2xx.
    pub(super) async fn run(self, target: Target, template: Template) -> Result<bool, SendError> {
        let plan = plan(self.count, self.duplicates, &mut rand::rng());
        let target = Arc::new(target);
        let bar = progress_bar(self.count);
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let mut tally = Tally::default();
        // The `x-skyvern-timestamp` of each original, which its duplicates resend.
        let mut sent_at: Vec<i64> = Vec::new();
        let started = Instant::now();
        for slot in plan {
            let permit = Arc::clone(&permits).acquire_owned().await?;
            let prepared = match slot {
                Slot::Original(index) => {
                    let at = now();
                    sent_at.push(at);
                    template.delivery(index, at)?
                }
                Slot::Duplicate(index) => {
                    let at = sent_at.get(index).copied().unwrap_or_else(now);
                    template.delivery(index, at)?
                }
            };
            let (target, bar) = (Arc::clone(&target), bar.clone());
            tasks.spawn(async move {
                let attempts = target.deliver(prepared, |_| {}).await;
                drop(permit);
                bar.inc(1);
                attempts
            });
            while let Some(done) = tasks.try_join_next() {
                tally.add(done);
            }
        }
        while let Some(done) = tasks.join_next().await {
            tally.add(done);
        }
        bar.finish_and_clear();
        let summary = Summary {
            unique: sent_at.len(),
            elapsed: started.elapsed(),
            tally,
        };
        say(format_args!("{summary}"));
        Ok(summary.tally.delivered == summary.tally.deliveries)
    }
}

fn progress_bar(count: usize) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{bar:40} {pos}/{len} deliveries, {per_sec}, {elapsed} elapsed, eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(count as u64).with_style(style)
}

/// Counts of how deliveries ended, and every attempt's latency.
#[derive(Debug, Default)]
struct Tally {
    deliveries: usize,
    attempts: usize,
    delivered: usize,
    client_errors: usize,
    server_errors: usize,
    other_statuses: usize,
    network_errors: usize,
    timeouts: usize,
    /// Deliveries whose task failed (a bug): counted, never silently lost.
    aborted: usize,
    latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, done: Result<Vec<Attempt>, JoinError>) {
        self.deliveries += 1;
        let Ok(attempts) = done else {
            self.aborted += 1;
            return;
        };
        self.attempts += attempts.len();
        self.latencies.extend(attempts.iter().map(|a| a.latency));
        let counter = match attempts.last().map(|a| &a.result) {
            _ if delivered(&attempts) => &mut self.delivered,
            Some(AttemptResult::Status(400..=499)) => &mut self.client_errors,
            Some(AttemptResult::Status(500..=599)) => &mut self.server_errors,
            Some(AttemptResult::Status(_)) => &mut self.other_statuses,
            Some(AttemptResult::Network(_)) => &mut self.network_errors,
            Some(AttemptResult::TimedOut) => &mut self.timeouts,
            None => &mut self.aborted,
        };
        *counter += 1;
    }
}

/// What `send --count` prints at the end.
struct Summary {
    tally: Tally,
    unique: usize,
    elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tally;
        let mut latencies = t.latencies.clone();
        latencies.sort_unstable();
        let rate = t.deliveries as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON);
        let mut rows: Vec<(&str, String)> = vec![
            (
                "sent",
                format!("{} deliveries in {} attempts", t.deliveries, t.attempts),
            ),
            ("unique run ids", self.unique.to_string()),
            (
                "duplicates sent",
                (t.deliveries - self.unique.min(t.deliveries)).to_string(),
            ),
            ("2xx", t.delivered.to_string()),
            ("4xx", t.client_errors.to_string()),
            ("5xx", t.server_errors.to_string()),
            ("other status", t.other_statuses.to_string()),
            ("network errors", t.network_errors.to_string()),
            ("timed out", t.timeouts.to_string()),
            ("latency p50", percentile(&latencies, 0.50)),
            ("latency p99", percentile(&latencies, 0.99)),
            ("elapsed", format!("{:.3} s", self.elapsed.as_secs_f64())),
            ("rate", format!("{rate:.1} deliveries/s")),
        ];
        if t.aborted > 0 {
            rows.push((
                "aborted",
                format!("{} (a bug: please report it)", t.aborted),
            ));
        }
        let lines: Vec<String> = rows
            .into_iter()
            .map(|(label, value)| format!("{label:<16} {value}"))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

/// The nearest-rank `p` percentile of `sorted` latencies, per attempt, or `-` if none.
fn percentile(sorted: &[Duration], p: f64) -> String {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    match sorted.get(rank.clamp(1, sorted.len().max(1)) - 1) {
        Some(latency) => format!("{} per attempt", millis(*latency)),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_has_the_asked_share_of_duplicates_each_after_its_original() {
        let plan = plan(50, 0.3, &mut rand::rng());
        assert_eq!(plan.len(), 50);
        assert_eq!(plan[0], Slot::Original(0));
        let mut originals = 0;
        for slot in &plan {
            match *slot {
                Slot::Original(n) => {
                    assert_eq!(n, originals);
                    originals += 1;
                }
                Slot::Duplicate(n) => assert!(n < originals),
            }
        }
        assert_eq!(originals, 35);
        assert_eq!(
            super::plan(3, 1.0, &mut rand::rng())[0],
            Slot::Original(0),
            "there is always one original"
        );
    }

    #[test]
    fn the_run_id_is_replaced_as_a_whole_string_only() {
        let text = br#"{"run_id":"r1","task_id":"r1","url":"https://x/r1","other":"r12"}"#;
        let out = replace_all(text, &json_string("r1"), &json_string("new"));
        assert_eq!(
            out,
            br#"{"run_id":"new","task_id":"new","url":"https://x/r1","other":"r12"}"#
        );
    }

    #[test]
    fn a_field_is_injected_into_objects_only() {
        assert_eq!(
            inject_field(b" {\"a\":1}", "x").as_deref(),
            Some(&b" {\"runhook_load_id\":\"x\",\"a\":1}"[..])
        );
        assert_eq!(
            inject_field(b"{ }", "x").as_deref(),
            Some(&b"{\"runhook_load_id\":\"x\" }"[..])
        );
        assert_eq!(inject_field(b"[1]", "x"), None);
        assert_eq!(inject_field(b"", "x"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), "50.0 ms per attempt");
        assert_eq!(percentile(&sorted, 0.99), "99.0 ms per attempt");
        assert_eq!(percentile(&[], 0.5), "-");
    }
}
