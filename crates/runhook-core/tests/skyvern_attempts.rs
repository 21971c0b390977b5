//! Skyvern workflow runs with a retry policy: the attempt fields, typed and in the summary, and
//! the interim event's own de-duplication key.

use runhook_core::payload::{
    DedupProbe, PayloadError, Provider, RunEvent, RunPhase, RunStatus, SkyvernRun,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../testdata/payloads/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn an_interim_attempt_is_read_by_the_summary_with_its_own_key() {
    let body = fixture("skyvern-workflow-interim.json");
    let event = RunEvent::parse_summary(Provider::Skyvern, body.clone()).unwrap();
    assert_eq!(event.run_id.as_deref(), Some("wr_512200000000000301"));
    assert_eq!(event.dedup_key, "skyvern:wr_512200000000000301#attempt-1");
    assert_eq!(event.attempt, Some(1));
    assert_eq!(event.status, RunStatus::Failed);
    assert_eq!(
        event.phase,
        RunPhase::Interim {
            next_attempt_at: Some("2026-09-15T12:35:00.250000".into())
        }
    );
    assert!(!event.phase.is_final());
    let at = event.phase.retry_not_before().unwrap();
    let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(secs.as_millis(), 1_789_475_700_250);
    let probe = DedupProbe::read(Provider::Skyvern, &body).unwrap();
    assert_eq!(probe.dedup_key, event.dedup_key);
}

#[test]
fn the_final_attempt_keeps_the_run_key() {
    let body = fixture("skyvern-workflow-retried-completed.json");
    let event = RunEvent::parse_summary(Provider::Skyvern, body.clone()).unwrap();
    assert_eq!(event.dedup_key, "skyvern:wr_512200000000000301");
    assert_eq!(event.attempt, Some(2));
    assert_eq!(event.phase, RunPhase::Final);
    assert_eq!(event.phase.retry_not_before(), None);
    assert_eq!(event.status, RunStatus::Completed);
    let probe = DedupProbe::read(Provider::Skyvern, &body).unwrap();
    assert_eq!(probe.dedup_key, "skyvern:wr_512200000000000301");
}

#[test]
fn the_typed_payload_has_every_attempt() {
    let event = RunEvent::parse(
        Provider::Skyvern,
        fixture("skyvern-workflow-retried-completed.json"),
    )
    .unwrap();
    let run: &SkyvernRun = event.payload_as().unwrap();
    assert_eq!(run.attempt, Some(2));
    assert_eq!(run.retry_pending, Some(false));
    assert_eq!(run.next_attempt_at, None);
    let attempts = run.attempts.as_ref().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].attempt_number, Some(1));
    assert_eq!(attempts[0].status.as_deref(), Some("failed"));
    assert_eq!(
        attempts[0].error_codes.as_deref(),
        Some(&["PAGE_LOAD_TIMEOUT".to_string()][..])
    );
    assert_eq!(attempts[0].retry_decision.as_deref(), Some("retry"));
    assert_eq!(
        attempts[0].webhook_sent_at.as_deref(),
        Some("2026-09-15T12:30:01.100000")
    );
    assert_eq!(attempts[1].retry_decision.as_deref(), Some("final"));
    assert!(!run.extra.contains_key("attempts"), "typed, not in extra");
}

#[test]
fn a_run_without_retry_fields_is_final_with_no_attempt() {
    let body = br#"{"run_id":"tsk_1","status":"completed"}"#;
    let event = RunEvent::parse_summary(Provider::Skyvern, &body[..]).unwrap();
    assert_eq!(event.attempt, None);
    assert!(event.phase.is_final());
    assert_eq!(event.dedup_key, "skyvern:tsk_1");
    // `retry_pending: null` and `false` are final too.
    for pending in ["null", "false"] {
        let body =
            format!(r#"{{"run_id":"r","status":"failed","attempt":3,"retry_pending":{pending}}}"#);
        let event = RunEvent::parse_summary(Provider::Skyvern, body.into_bytes()).unwrap();
        assert!(event.phase.is_final(), "{pending}");
        assert_eq!(event.dedup_key, "skyvern:r");
    }
}

#[test]
fn an_interim_event_without_a_number_still_has_its_own_key() {
    let body = br#"{"run_id":"r","status":"failed","retry_pending":true}"#;
    let event = RunEvent::parse_summary(Provider::Skyvern, &body[..]).unwrap();
    assert_eq!(event.dedup_key, "skyvern:r#interim");
    assert_eq!(
        event.phase,
        RunPhase::Interim {
            next_attempt_at: None
        }
    );
}

#[test]
fn the_lenient_path_reads_the_attempt_too() {
    let body =
        br#"{"run_id":"r","status":"failed","attempt":2,"retry_pending":true,"output":{"x":NaN}}"#;
    let event = RunEvent::parse_summary(Provider::Skyvern, &body[..]).unwrap();
    assert_eq!(event.dedup_key, "skyvern:r#attempt-2");
}

#[test]
fn a_malformed_attempt_is_a_payload_error_not_a_panic() {
    for body in [
        &br#"{"run_id":"r","attempt":-1}"#[..],
        br#"{"run_id":"r","attempt":"two"}"#,
        br#"{"run_id":"r","attempt":99999999999}"#,
        br#"{"run_id":"r","retry_pending":"yes"}"#,
    ] {
        let err = RunEvent::parse_summary(Provider::Skyvern, body).unwrap_err();
        assert!(
            matches!(
                err,
                PayloadError::InvalidField { .. } | PayloadError::NotJson { .. }
            ),
            "{err:?}"
        );
    }
}
