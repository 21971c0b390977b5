//! The demo's table: one row per scene, with what was answered, how often the handler ran,
//! whether that was expected, and why a delivery was refused.

use std::collections::HashMap;

use runhook::payload::{EventSource, Provider};
use runhook::Secrets;
use runhook_core::platform::Platform;

use super::script::{demo_secret, Act, Scene, SKYVERN_KEY, WINDOW};
use super::Played;
use crate::cmd::canonicalize::reserialized_explanation_with;
use crate::deliver::{Attempt, AttemptResult};

/// What became of one scene, next to what the script expected.
struct Row<'a> {
    /// Each attempt's status.
    answers: String,
    /// The handler's runs for the scene's run, by where the event came from.
    runs: &'a [EventSource],
    /// Where the scene's events should have come from.
    from: EventSource,
    /// The reason code the run was dead-lettered with, if it was.
    letter: Option<&'static str>,
    /// Whether all of it is as the script expected.
    expected: bool,
}

impl<'a> Row<'a> {
    fn of(
        scene: &Scene,
        played: &Played,
        calls: &'a HashMap<String, Vec<EventSource>>,
        letters: &HashMap<String, &'static str>,
    ) -> Self {
        let (answers, from) = match scene.act {
            Act::Post => (answers(&played.attempts), EventSource::Webhook),
            Act::NeverArrives => ("no webhook".to_string(), EventSource::Reconciled),
        };
        let runs = calls.get(&played.dedup_key).map_or(&[][..], Vec::as_slice);
        let letter = letters.get(&played.dedup_key).copied();
        let expected = answers_match(&played.attempts, scene.expect_answers)
            && runs.len() == scene.expect_calls
            && runs.iter().all(|source| *source == from)
            && letter == scene.expect_dead_letter;
        Self {
            answers,
            runs,
            from,
            letter,
            expected,
        }
    }

    /// `3`, or `1 reconciled`.
    fn calls(&self) -> String {
        match self.runs.first() {
            Some(EventSource::Reconciled) => format!("{} reconciled", self.runs.len()),
            _ => self.runs.len().to_string(),
        }
    }

    /// `yes`, or what was expected instead.
    fn verdict(&self, scene: &Scene) -> String {
        if self.expected {
            return "yes".to_string();
        }
        format!(
            "NO: expected {:?}, {} handler runs from {}, dead letter {:?}",
            scene.expect_answers,
            scene.expect_calls,
            self.from.as_str(),
            scene.expect_dead_letter
        )
    }
}

/// Prints one row per scene; returns whether every row was as expected.
/// `calls` holds each run's handler calls (by source), `letters` each dead-lettered run's
/// reason code.
pub fn print_table(
    scenes: &[Scene],
    played: &[Played],
    calls: &HashMap<String, Vec<EventSource>>,
    letters: &HashMap<String, &'static str>,
) -> bool {
    println!(
        "{:>2}  {:<12} {:<37} {:<22} {:<13} as expected",
        "#", "platform", "delivery", "answered", "handler runs"
    );
    let mut all = true;
    for (i, (scene, played)) in scenes.iter().zip(played).enumerate() {
        let row = Row::of(scene, played, calls, letters);
        all &= row.expected;
        println!(
            "{:>2}  {:<12} {:<37} {:<22} {:<13} {}",
            i + 1,
            scene.platform.as_str(),
            scene.what,
            row.answers,
            row.calls(),
            row.verdict(scene)
        );
        for line in run_api_explanation(scene, row.letter)
            .into_iter()
            .chain(explanations(scene, played))
        {
            println!("{:>17} {line}", "");
        }
    }
    all
}

/// What the run API did for a scene of the confirming route.
fn run_api_explanation(scene: &Scene, letter: Option<&str>) -> Option<String> {
    match (scene.act, letter) {
        (Act::NeverArrives, _) => Some(format!(
            "↳ expected for {} ms; no webhook came, so the reconciler fetched the run from \
             the run API and processed it",
            WINDOW.as_millis()
        )),
        (Act::Post, Some(code)) => Some(format!(
            "↳ confirm: the run API does not know this run: never processed, dead-lettered \
             {code}"
        )),
        (Act::Post, None) => None,
    }
}

/// `503 → 200 (+1.0 s)`: each attempt's status, and when the last one started.
fn answers(attempts: &[Attempt]) -> String {
    let statuses: Vec<String> = attempts
        .iter()
        .map(|a| match &a.result {
            AttemptResult::Status(status) => status.to_string(),
            other => other.to_string(),
        })
        .collect();
    match attempts.last() {
        Some(last) if attempts.len() > 1 => format!(
            "{} (+{:.1} s)",
            statuses.join(" → "),
            last.started_after.as_secs_f64()
        ),
        _ => statuses.join(" → "),
    }
}

fn answers_match(attempts: &[Attempt], expected: &[u16]) -> bool {
    attempts.len() == expected.len()
        && attempts
            .iter()
            .zip(expected)
            .all(|(a, want)| a.result == AttemptResult::Status(*want))
}

/// The receiver's reason for the last rejection (its answer's text) and, for a Skyvern
/// signature that fails only because the body was re-serialized, what `runhook verify` would
/// say about it.
fn explanations(scene: &Scene, played: &Played) -> Vec<String> {
    let Some(last) = played.attempts.last() else {
        return Vec::new();
    };
    let AttemptResult::Status(status @ 400..) = last.result else {
        return Vec::new();
    };
    let mut lines = vec![format!("↳ {status}: {}", last.reply.trim())];
    if !Platform::of(scene.platform).sender.retry_on.status(status) {
        lines.push(format!(
            "  {} does not retry a {status}: this run is not delivered again",
            scene.platform
        ));
    }
    if scene.platform == Provider::Skyvern {
        let keys = demo_secret(SKYVERN_KEY).ok().map(Secrets::from);
        let why =
            keys.and_then(|keys| reserialized_explanation_with(keys, &scene.headers, &scene.body));
        lines.extend(
            why.iter()
                .flat_map(|text| text.lines())
                .map(|l| format!("  {l}")),
        );
    }
    lines
}
