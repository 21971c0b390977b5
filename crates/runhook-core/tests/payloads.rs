//! Every documented payload (fixtures in `testdata/payloads/`, written with our own values),
//! its failure and cancel variants, and the edge cases: lenient where senders vary, precise
//! where a body is not the provider's payload.

use runhook_core::payload::{
    DedupProbe, PayloadError, Provider, ProviderPayload, RunEvent, RunIdentity, RunStatus,
    WebRunPayload,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../testdata/payloads/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(provider: Provider, name: &str) -> RunEvent {
    RunEvent::parse(provider, fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn skyvern_completed_task() {
    let event = parse(Provider::Skyvern, "skyvern-task-completed.json");
    assert_eq!(event.dedup_key, "skyvern:tsk_v2_511223344556677001");
    assert_eq!(event.status, RunStatus::Completed);
    assert!(event.status.is_terminal());
    assert_eq!(event.event, None);
    assert_eq!(
        event.result().cloned(),
        Some(json!({"headline": "Città di prova: nuovo parco aperto"}))
    );
    assert_eq!(event.error, None);
    assert_eq!(
        event.timestamps.finished_at.as_deref(),
        Some("2026-11-02T08:02:11.119000")
    );
    assert_eq!(event.raw_body, fixture("skyvern-task-completed.json"));
    let ProviderPayload::Skyvern(run) = event.payload().unwrap() else {
        panic!("wrong payload kind")
    };
    assert_eq!(run.step_count, Some(5));
    assert_eq!(run.run_type.as_deref(), Some("task_v2"));
    assert_eq!(
        run.workflow_permanent_id.as_deref(),
        Some("wpid_511223344556677004")
    );
    // A field the model does not list is kept, not rejected.
    assert_eq!(run.extra.get("browser_session_id"), Some(&json!(null)));
}

#[test]
fn skyvern_terminal_states() {
    let cases = [
        ("skyvern-task-failed.json", RunStatus::Failed),
        ("skyvern-workflow-timed-out.json", RunStatus::TimedOut),
        ("skyvern-terminated.json", RunStatus::Terminated),
        ("skyvern-canceled.json", RunStatus::Cancelled),
    ];
    for (name, status) in cases {
        let event = parse(Provider::Skyvern, name);
        assert_eq!(event.status, status, "{name}");
        assert!(event.status.is_terminal());
    }
    let failed = parse(Provider::Skyvern, "skyvern-task-failed.json");
    assert!(failed
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("Failed to send webhook"));
    assert_eq!(failed.result().cloned(), Some(json!({"price": "$12.50"})));
}

#[test]
fn skyvern_nan_infinity_and_huge_integers_parse() {
    let event = parse(Provider::Skyvern, "skyvern-nonfinite-and-bigint.json");
    assert_eq!(event.dedup_key, "skyvern:tsk_v2_511223344556677050");
    assert_eq!(
        event.result().cloned(),
        Some(json!({
            "score": "NaN",
            "upper": "Infinity",
            "lower": "-Infinity",
            "serial": "1234567890123456789012345678901234567890",
            "ratio": 0.25
        }))
    );
}

#[test]
fn skyvern_realistic_workflow_body_parses() {
    let body = include_bytes!("../../../testdata/skyvern-run-pretty.json");
    let event = RunEvent::parse(Provider::Skyvern, &body[..]).unwrap();
    assert!(event.dedup_key.starts_with("skyvern:"));
    assert!(event.status.is_terminal());
    assert!(event.result().cloned().is_some());
}

#[test]
fn tinyfish_completed_failed_and_cancelled() {
    let done = parse(Provider::TinyFish, "tinyfish-completed.json");
    assert_eq!(
        done.dedup_key,
        "tinyfish:7f1c2e94-0d1a-4b7e-9c55-2d6a8f3b1e01"
    );
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.event.as_deref(), Some("run.completed"));
    assert_eq!(
        done.result().cloned(),
        Some(json!({"route": "LIS-OPO", "price": 41.9}))
    );
    assert_eq!(
        done.timestamps.started_at.as_deref(),
        Some("2026-11-03T12:00:04Z")
    );
    let ProviderPayload::TinyFish(run) = done.payload().unwrap() else {
        panic!("wrong payload kind")
    };
    let data = run.data.as_ref().unwrap();
    assert_eq!(data.num_of_steps, Some(2));
    assert_eq!(
        data.steps.as_ref().unwrap()[1].duration.as_deref(),
        Some("2.4s")
    );

    // The failure example carries only `error` and `result` in `data`.
    let failed = parse(Provider::TinyFish, "tinyfish-failed.json");
    assert_eq!(failed.status, RunStatus::Failed);
    let error = failed.error.clone().unwrap();
    assert_eq!(error.message, "Login wall blocked the agent");
    assert_eq!(error.category.as_deref(), Some("AGENT_FAILURE"));
    assert_eq!(failed.result().cloned(), None);

    let cancelled = parse(Provider::TinyFish, "tinyfish-cancelled.json");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.event.as_deref(), Some("run.cancelled"));
}

#[test]
fn tinyfish_status_falls_back_to_the_event_name() {
    let body = br#"{"event":"run.failed","run_id":"r9","data":{}}"#;
    let event = RunEvent::parse(Provider::TinyFish, &body[..]).unwrap();
    assert_eq!(event.status, RunStatus::Failed);
}

#[test]
fn webrun_full_response_gives_parsed_message() {
    let event = parse(Provider::WebRun, "webrun-full-response.json");
    assert_eq!(event.dedup_key, "webrun:task_m42");
    assert_eq!(event.status, RunStatus::Completed);
    assert_eq!(event.event.as_deref(), Some("task_completed"));
    assert_eq!(
        event.result().cloned(),
        Some(json!({"title": "Desk lamp", "price": 34.5}))
    );
    let ProviderPayload::WebRun(payload) = event.payload().unwrap() else {
        panic!("wrong payload kind")
    };
    let WebRunPayload::FullResponse(full) = payload else {
        panic!("wrong WebRun mode")
    };
    let data = full.data.as_ref().unwrap();
    assert_eq!(data.total_tokens, Some(7000));
    assert_eq!(
        data.message_json(),
        Some(json!({"title": "Desk lamp", "price": 34.5}))
    );
    assert_eq!(full.usage.as_ref().unwrap().cost, Some(0.0093));
    assert_eq!(full.session_id.as_deref(), Some("sess_q81"));
}

#[test]
fn webrun_plain_text_message_is_kept_as_text() {
    let body = br#"{"type":"task_completed","taskId":"t1","data":{"message":"The headline is X"}}"#;
    let event = RunEvent::parse(Provider::WebRun, &body[..]).unwrap();
    assert_eq!(event.result().cloned(), Some(json!("The headline is X")));
}

#[test]
fn webrun_just_ping() {
    let event = parse(Provider::WebRun, "webrun-just-ping.json");
    assert_eq!(event.dedup_key, "webrun:task_m43");
    assert_eq!(event.status, RunStatus::Completed);
    assert_eq!(event.result().cloned(), None);
    assert!(matches!(
        event.payload().unwrap(),
        ProviderPayload::WebRun(WebRunPayload::JustPing(_))
    ));
}

#[test]
fn webrun_ai_response_is_keyed_by_the_body_hash() {
    let body = fixture("webrun-ai-response.json");
    let event = RunEvent::parse(Provider::WebRunAi, body.clone()).unwrap();
    let hash = hex::encode(Sha256::digest(&body));
    assert_eq!(event.dedup_key, format!("webrun-ai:{hash}"));
    // No run id of its own: the hash is the key, never presented as the run's id.
    assert_eq!(event.run_id, None);
    let probe = DedupProbe::read(Provider::WebRunAi, &body).unwrap();
    assert_eq!(probe.dedup_key, event.dedup_key);
    assert_eq!(probe.run_id, None);
    assert_eq!(event.status, RunStatus::Completed);
    assert_eq!(event.result().unwrap()["inStock"], json!(false));
    // Plain-text output is kept as a string; non-text bytes are refused.
    let text = RunEvent::parse(Provider::WebRunAi, &b"just words"[..]).unwrap();
    assert_eq!(text.result().cloned(), Some(json!("just words")));
    assert!(matches!(
        RunEvent::parse(Provider::WebRunAi, &b"\xff\xfe"[..]),
        Err(PayloadError::NotJson { .. })
    ));
}

#[test]
fn smartbrowse_completed_failed_and_cancelled() {
    let done = parse(Provider::SmartBrowse, "smartbrowse-completed.json");
    assert_eq!(done.dedup_key, "smartbrowse:Qx7Lm2Pa9Rt");
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.error, None, "an empty error string is no error");
    let ProviderPayload::SmartBrowse(run) = done.payload().unwrap() else {
        panic!("wrong payload kind")
    };
    assert_eq!(run.items_extracted, Some(42));
    assert_eq!(run.drift, Some(0.01));
    assert_eq!(run.mode.as_deref(), Some("replay"));

    let failed = parse(Provider::SmartBrowse, "smartbrowse-failed.json");
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error.unwrap().message, "listing page returned 503");
    let cancelled = parse(Provider::SmartBrowse, "smartbrowse-cancelled.json");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
}

#[test]
fn unknown_statuses_keep_their_text_and_are_not_terminal() {
    let body = br#"{"run_id":"r1","status":"paused"}"#;
    let event = RunEvent::parse(Provider::Skyvern, &body[..]).unwrap();
    assert_eq!(event.status, RunStatus::Unknown("paused".into()));
    assert!(!event.status.is_terminal());
    assert_eq!(event.status.as_str(), "unknown");
}

#[test]
fn bodies_that_are_not_the_payload_get_precise_errors() {
    let cases: [(Provider, &[u8], PayloadError); 9] = [
        (
            Provider::Skyvern,
            br#"{"status":"completed"}"#,
            PayloadError::MissingField {
                field: "run_id".into(),
            },
        ),
        (
            Provider::WebRun,
            br#"{"type":"task_completed","sessionId":"s"}"#,
            PayloadError::MissingField {
                field: "taskId".into(),
            },
        ),
        (
            Provider::WebRun,
            br#"{"event":"task_completed"}"#,
            PayloadError::MissingField {
                field: "taskId".into(),
            },
        ),
        (Provider::SmartBrowse, b"[1,2]", PayloadError::NotAnObject),
        (Provider::TinyFish, b"\"run\"", PayloadError::NotAnObject),
        (
            Provider::Skyvern,
            br#"{"run_id":42}"#,
            PayloadError::InvalidField {
                path: "run_id".into(),
                reason: "invalid type: integer `42`, expected a string".into(),
            },
        ),
        (
            Provider::TinyFish,
            br#"{"run_id":"r","data":{"num_of_steps":"two"}}"#,
            PayloadError::InvalidField {
                path: "data.num_of_steps".into(),
                reason: "invalid type: string \"two\", expected u64".into(),
            },
        ),
        (
            Provider::Skyvern,
            br#"{"run_id":""}"#,
            PayloadError::InvalidField {
                path: "run_id".into(),
                reason: "is empty".into(),
            },
        ),
        (
            Provider::SmartBrowse,
            br#"{"run_id":null}"#,
            PayloadError::InvalidField {
                path: "run_id".into(),
                reason: "invalid type: null, expected a string".into(),
            },
        ),
    ];
    for (provider, body, expected) in cases {
        let err = RunEvent::parse(provider, body).unwrap_err();
        assert_eq!(err, expected, "{}", String::from_utf8_lossy(body));
        assert_eq!(err.status(), http::StatusCode::ACCEPTED);
    }
}

#[test]
fn malformed_json_is_not_json() {
    for body in [
        &b"{"[..],
        b"",
        b"{\"run_id\":\"r\"} trailing",
        b"{'run_id':'r'}",
        b"{\"run_id\":\"\\ud800\"}",
    ] {
        let err = RunEvent::parse(Provider::Skyvern, body).unwrap_err();
        assert!(
            matches!(err, PayloadError::NotJson { .. }),
            "{body:?}: {err:?}"
        );
    }
}

#[test]
fn over_long_run_ids_are_refused() {
    let body = format!(r#"{{"run_id":"{}"}}"#, "r".repeat(257));
    let err = RunEvent::parse(Provider::SmartBrowse, body.into_bytes()).unwrap_err();
    assert!(
        matches!(err, PayloadError::RunIdTooLong { ref field, ref run_id } if field == "run_id" && run_id.len() == 257),
        "{err:?}"
    );
    let body = format!(r#"{{"run_id":"{}"}}"#, "r".repeat(256));
    assert!(RunEvent::parse(Provider::SmartBrowse, body.into_bytes()).is_ok());
}

/// Ids no handler could pass on (control characters) or that a run API would read as a path
/// (`.`, `..`) are genuine but set aside, from the summary and the full parse alike; ids that
/// merely look odd are kept as they are.
#[test]
fn run_ids_with_control_characters_or_dot_segments_are_refused() {
    for id in ["a\\u0000b", "nl\\nhere", "del\u{7f}", "tab\\t", ".", ".."] {
        let body = format!(r#"{{"run_id":"{id}","status":"completed"}}"#);
        for parsed in [
            RunEvent::parse(Provider::Skyvern, body.clone().into_bytes()),
            RunEvent::parse_summary(Provider::Skyvern, body.clone().into_bytes()),
        ] {
            let err = parsed.unwrap_err();
            assert!(
                matches!(err, PayloadError::InvalidField { ref path, .. } if path == "run_id"),
                "{id:?}: {err:?}"
            );
        }
    }
    for id in ["a/b", "...", ".hidden", "wr_123", "é"] {
        let body = format!(r#"{{"run_id":"{id}","status":"completed"}}"#);
        let event = RunEvent::parse(Provider::Skyvern, body.into_bytes()).unwrap();
        assert_eq!(event.run_id.as_deref(), Some(id));
    }
}

#[test]
fn a_repeated_key_keeps_the_last_value_as_python_does() {
    let body = br#"{"run_id":"first","status":"failed","run_id":"second"}"#;
    let event = RunEvent::parse(Provider::Skyvern, &body[..]).unwrap();
    assert_eq!(event.run_id.as_deref(), Some("second"));
    assert_eq!(event.status, RunStatus::Failed);
}

#[test]
fn provider_names_round_trip() {
    for provider in Provider::ALL {
        assert_eq!(Provider::from_name(provider.as_str()), Some(provider));
    }
    assert_eq!(Provider::from_name("github"), None);
}

#[test]
fn the_probe_agrees_with_the_full_parse() {
    use runhook_core::payload::DedupProbe;
    let cases = [
        (Provider::Skyvern, "skyvern-task-completed.json"),
        (Provider::Skyvern, "skyvern-nonfinite-and-bigint.json"),
        (Provider::TinyFish, "tinyfish-failed.json"),
        (Provider::WebRun, "webrun-full-response.json"),
        (Provider::WebRun, "webrun-just-ping.json"),
        (Provider::WebRunAi, "webrun-ai-response.json"),
        (Provider::SmartBrowse, "smartbrowse-completed.json"),
        (
            Provider::Browserbase,
            "browserbase-invocation-completed.json",
        ),
        (Provider::Browserbase, "browserbase-navigation-blocked.json"),
        (Provider::Firecrawl, "firecrawl-crawl-completed.json"),
        (Provider::Firecrawl, "firecrawl-crawl-page.json"),
        (Provider::BrowserUse, "browser-use-task-finished.json"),
        (Provider::BrowserUse, "browser-use-task-started.json"),
        (Provider::BrowserUse, "browser-use-test.json"),
    ];
    for (provider, name) in cases {
        let event = parse(provider, name);
        let probe = DedupProbe::read(provider, &fixture(name)).unwrap();
        assert_eq!(
            (probe.dedup_key, probe.run_id),
            (event.dedup_key, event.run_id),
            "{name}"
        );
    }
    assert_eq!(
        DedupProbe::read(Provider::Skyvern, b"{\"status\":\"completed\"}").unwrap_err(),
        PayloadError::MissingField {
            field: "run_id".into()
        }
    );
    assert!(matches!(
        DedupProbe::read(Provider::Skyvern, b"{\"run_id\":\"r\",").unwrap_err(),
        PayloadError::NotJson { .. }
    ));
}

#[test]
fn summary_parse_defers_the_payload_and_reports_its_errors_there() {
    let good = fixture("tinyfish-completed.json");
    let lazy = RunEvent::parse_summary(Provider::TinyFish, good.clone()).unwrap();
    let eager = RunEvent::parse(Provider::TinyFish, good).unwrap();
    assert_eq!(
        (
            &lazy.dedup_key,
            &lazy.status,
            &lazy.event,
            &lazy.error,
            &lazy.timestamps
        ),
        (
            &eager.dedup_key,
            &eager.status,
            &eager.event,
            &eager.error,
            &eager.timestamps
        )
    );
    assert_eq!(lazy.result(), eager.result());
    assert_eq!(lazy.payload().unwrap(), eager.payload().unwrap());

    // A field of the wrong type outside the summary: the eager parse refuses the body, the
    // summary parse accepts it and reports the error when the payload is asked for.
    let body = br#"{"run_id":"r1","status":"COMPLETED","data":{"num_of_steps":"many"}}"#;
    assert!(RunEvent::parse(Provider::TinyFish, &body[..]).is_err());
    let lazy = RunEvent::parse_summary(Provider::TinyFish, &body[..]).unwrap();
    assert_eq!(lazy.status, RunStatus::Completed);
    assert!(
        matches!(lazy.payload(), Err(PayloadError::InvalidField { path, .. }) if path == "data.num_of_steps")
    );
    assert_eq!(lazy.result(), None);
}

/// `raw_result` is the same JSON as `result`, sliced from the body, wherever the body is
/// strict JSON and the result is a slice of it; and says so where it is not.
#[test]
fn raw_result_is_the_result_as_sent() {
    use runhook_core::payload::RawResult;

    let cases = [
        (Provider::Skyvern, "skyvern-task-completed.json"),
        (Provider::Skyvern, "skyvern-task-failed.json"),
        (Provider::Skyvern, "skyvern-workflow-timed-out.json"),
        (Provider::TinyFish, "tinyfish-completed.json"),
        (Provider::TinyFish, "tinyfish-failed.json"),
        (Provider::WebRunAi, "webrun-ai-response.json"),
        (Provider::SmartBrowse, "smartbrowse-completed.json"),
    ];
    let mut slices = 0;
    for (provider, name) in cases {
        let summary = RunEvent::parse_summary(provider, fixture(name)).unwrap();
        match summary.raw_result() {
            RawResult::Json(text) => {
                let sliced: serde_json::Value = serde_json::from_slice(text).unwrap();
                assert_eq!(Some(&sliced), summary.result(), "{name}");
                slices += 1;
            }
            RawResult::Absent => assert_eq!(summary.result(), None, "{name}"),
            RawResult::NotASlice => panic!("{name}: strict JSON, yet no slice"),
        }
    }
    assert!(slices >= 4, "only {slices} results were slices");

    // WebRun's answer is JSON inside a string; a NaN body is read leniently.
    let webrun = RunEvent::parse_summary(Provider::WebRun, fixture("webrun-full-response.json"));
    assert_eq!(webrun.unwrap().raw_result(), RawResult::NotASlice);
    let lenient = RunEvent::parse_summary(
        Provider::Skyvern,
        fixture("skyvern-nonfinite-and-bigint.json"),
    );
    assert_eq!(lenient.unwrap().raw_result(), RawResult::NotASlice);

    // Absent and null results; a nested object keeps its bytes, whitespace included.
    let body = br#"{"run_id":"r","output":null}"#;
    let event = RunEvent::parse_summary(Provider::Skyvern, &body[..]).unwrap();
    assert_eq!(event.raw_result(), RawResult::Absent);
    let body = br#"{"run_id":"r","data":{"result": [1, {"a" : 2}] }}"#;
    let event = RunEvent::parse_summary(Provider::TinyFish, &body[..]).unwrap();
    assert_eq!(event.raw_result(), RawResult::Json(br#"[1, {"a" : 2}]"#));
}

/// `payload_as` gives each platform's typed payload, and says why it cannot.
#[test]
fn payload_as_is_typed_per_platform() {
    use runhook_core::payload::{PayloadAsError, SkyvernRun, SmartBrowseRun, TinyFishRun};

    let tinyfish = parse(Provider::TinyFish, "tinyfish-completed.json");
    let run: &TinyFishRun = tinyfish.payload_as().unwrap();
    assert_eq!(Some(&run.run_id), tinyfish.run_id.as_ref());
    let smartbrowse = parse(Provider::SmartBrowse, "smartbrowse-completed.json");
    assert!(smartbrowse.payload_as::<SmartBrowseRun>().is_ok());
    let webrun = parse(Provider::WebRun, "webrun-full-response.json");
    assert!(matches!(
        webrun.payload_as::<WebRunPayload>(),
        Ok(WebRunPayload::FullResponse(_))
    ));
    assert_eq!(
        webrun.payload_as::<SkyvernRun>().unwrap_err(),
        PayloadAsError::OtherProvider {
            actual: Provider::WebRun,
            wanted: Provider::Skyvern
        }
    );
    // The summary reads, the full payload does not (a field of the wrong type).
    let body = br#"{"run_id":"r","status":"completed","step_count":"many"}"#;
    let event = RunEvent::parse_summary(Provider::Skyvern, &body[..]).unwrap();
    assert!(matches!(
        event.payload_as::<SkyvernRun>(),
        Err(PayloadAsError::Unparseable(_))
    ));
}

#[test]
fn every_platform_but_webrun_ai_names_its_runs() {
    let named = [
        (Provider::Skyvern, "skyvern-task-completed.json"),
        (Provider::TinyFish, "tinyfish-completed.json"),
        (Provider::WebRun, "webrun-full-response.json"),
        (Provider::SmartBrowse, "smartbrowse-completed.json"),
    ];
    for (provider, name) in named {
        assert!(matches!(provider.identity(), RunIdentity::RunId { .. }));
        let event = parse(provider, name);
        let id = event.run_id.as_deref().unwrap();
        assert_eq!(event.dedup_key, format!("{provider}:{id}"));
        let probe = DedupProbe::read(provider, &fixture(name)).unwrap();
        assert_eq!(probe.run_id.as_deref(), Some(id));
    }
    assert_eq!(Provider::WebRunAi.identity(), RunIdentity::BodyHash);
}

#[test]
fn firecrawl_job_ends_are_keyed_on_the_job_and_progress_on_the_delivery() {
    use runhook_core::payload::FirecrawlEvent;
    let done = parse(Provider::Firecrawl, "firecrawl-crawl-completed.json");
    assert_eq!(
        done.dedup_key,
        "firecrawl:7c1e9a52-3f0d-4b7e-9a41-1d2c3b4a5f60"
    );
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.event.as_deref(), Some("crawl.completed"));
    assert_eq!(done.result().unwrap()[0]["metadata"]["statusCode"], 200);
    let event: &FirecrawlEvent = done.payload_as().unwrap();
    assert_eq!(event.metadata, Some(json!({"order": "A-1024"})));
    // A page of the same crawl: its own key, so that it never swallows the crawl's end.
    let page = parse(Provider::Firecrawl, "firecrawl-crawl-page.json");
    assert_eq!(
        page.dedup_key,
        "firecrawl:7c1e9a52-3f0d-4b7e-9a41-1d2c3b4a5f60#0a8f2c1d-0002-4e5f-8a9b-223344556677"
    );
    assert_eq!(page.run_id, done.run_id);
    assert!(!page.status.is_terminal());
    let failed = parse(Provider::Firecrawl, "firecrawl-agent-failed.json");
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        failed.error.unwrap().message,
        "Agent exceeded its credit limit"
    );
    let cancelled = parse(Provider::Firecrawl, "firecrawl-agent-cancelled.json");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    for (event_type, status) in [
        ("batch_scrape.completed", RunStatus::Completed),
        ("extract.failed", RunStatus::Failed),
        ("agent.started", RunStatus::Unknown("agent.started".into())),
        ("agent.action", RunStatus::Unknown("agent.action".into())),
    ] {
        let body =
            json!({"success": true, "type": event_type, "id": "j", "webhookId": "w", "data": []});
        let event = RunEvent::parse(Provider::Firecrawl, body.to_string().into_bytes()).unwrap();
        assert_eq!(event.status, status, "{event_type}");
        let key = if status.is_terminal() {
            "firecrawl:j"
        } else {
            "firecrawl:j#w"
        };
        assert_eq!(event.dedup_key, key, "{event_type}");
    }
    // The job id is what identifies it: without one the body is set aside.
    let err = RunEvent::parse(
        Provider::Firecrawl,
        br#"{"type":"crawl.completed"}"#.to_vec(),
    );
    assert!(
        matches!(err, Err(PayloadError::MissingField { .. })),
        "{err:?}"
    );
}

#[test]
fn browserbase_invocations_end_on_their_resource_and_other_events_on_their_id() {
    use runhook_core::payload::BrowserbaseEvent;
    let done = parse(
        Provider::Browserbase,
        "browserbase-invocation-completed.json",
    );
    assert_eq!(
        done.dedup_key,
        "browserbase:9b2e4c71-5a3d-4e8f-b1c0-7d6e5f4a3b21"
    );
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(
        done.result(),
        Some(&json!({"title": "Città di prova", "items": 3}))
    );
    assert_eq!(
        done.timestamps.finished_at.as_deref(),
        Some("2026-11-02T08:02:11Z")
    );
    let event: &BrowserbaseEvent = done.payload_as().unwrap();
    assert_eq!(event.id.as_deref(), Some("evt_2f6c1b9e4d3a"));
    let failed = parse(Provider::Browserbase, "browserbase-invocation-failed.json");
    assert_eq!(failed.status, RunStatus::Failed);
    let error = failed.error.clone().unwrap();
    assert_eq!(error.category.as_deref(), Some("TIMED_OUT"));
    assert_eq!(error.message, "The invocation ran past its timeout");
    assert_eq!(failed.result(), None);
    let blocked = parse(Provider::Browserbase, "browserbase-navigation-blocked.json");
    assert_eq!(
        blocked.dedup_key,
        "browserbase:6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d#evt_2f6c1b9e4d3c"
    );
    assert!(!blocked.status.is_terminal());
    assert_eq!(
        blocked.event.as_deref(),
        Some("sessions.navigations.blocked")
    );
}

/// Every fixture read as every provider: wherever the summary parses, the dedup probe reads the
/// same key and run id (the fuzz target `payloads` checks the same on arbitrary bodies; this
/// keeps the fixtures' cross-provider readings in the plain test run).
#[test]
fn the_probe_agrees_with_the_summary_on_every_fixture_as_every_provider() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/payloads");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let body = std::fs::read(entry.unwrap().path()).unwrap();
        for provider in Provider::ALL {
            let Ok(event) = RunEvent::parse_summary(provider, body.clone()) else {
                continue;
            };
            let probe = DedupProbe::read(provider, &body).unwrap();
            assert_eq!(
                (probe.dedup_key, probe.run_id),
                (event.dedup_key, event.run_id),
                "{provider}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked}");
}

#[test]
fn browser_use_tasks_end_on_their_id_and_other_statuses_are_progress() {
    use runhook_core::payload::BrowserUseEvent;
    let finished = parse(Provider::BrowserUse, "browser-use-task-finished.json");
    assert_eq!(
        finished.dedup_key,
        "browser-use:3f1d9c2e-7a4b-4e8f-b1c6-5d2a9e0f8b71"
    );
    assert_eq!(finished.status, RunStatus::Completed);
    assert_eq!(finished.event.as_deref(), Some("agent.task.status_update"));
    assert_eq!(
        finished.timestamps.finished_at.as_deref(),
        Some("2026-12-07T09:14:03.512Z")
    );
    let typed: &BrowserUseEvent = finished.payload_as().unwrap();
    assert_eq!(
        typed.payload.session_id.as_deref(),
        Some("a8c4e2f1-3b5d-4c7e-9f1a-2b4d6e8f0a13")
    );
    assert_eq!(
        typed.payload.metadata,
        Some(serde_json::json!({"order": "ord-4471", "attempt": 1}))
    );

    let started = parse(Provider::BrowserUse, "browser-use-task-started.json");
    assert_eq!(
        started.dedup_key,
        "browser-use:3f1d9c2e-7a4b-4e8f-b1c6-5d2a9e0f8b71#started"
    );
    assert!(!started.status.is_terminal());
    assert_eq!(started.run_id, finished.run_id);

    // The other documented spelling: camelCase ids.
    let stopped = parse(Provider::BrowserUse, "browser-use-task-stopped-camel.json");
    assert_eq!(stopped.dedup_key, "browser-use:task_7Qm2xP");
    assert_eq!(stopped.status, RunStatus::Cancelled);
    let typed: &BrowserUseEvent = stopped.payload_as().unwrap();
    assert_eq!(typed.payload.session_id.as_deref(), Some("session_K3v9Lw"));

    // The dashboard's ping names no task: keyed by its time, never terminal.
    let ping = parse(Provider::BrowserUse, "browser-use-test.json");
    assert_eq!(ping.dedup_key, "browser-use:test#2026-12-07T08:00:00Z");
    assert!(!ping.status.is_terminal());
    assert_eq!(ping.event.as_deref(), Some("test"));

    for (status, expected) in [
        ("failed", RunStatus::Failed),
        ("timed_out", RunStatus::TimedOut),
        ("idle", RunStatus::Unknown("idle".into())),
    ] {
        let body = format!(
            r#"{{"type":"agent.task.status_update","payload":{{"task_id":"t","status":"{status}"}}}}"#
        );
        let event = RunEvent::parse(Provider::BrowserUse, body.into_bytes()).unwrap();
        assert_eq!(event.status, expected, "{status}");
    }
    let no_task = br#"{"type":"agent.task.status_update","payload":{"status":"finished"}}"#;
    assert_eq!(
        RunEvent::parse(Provider::BrowserUse, &no_task[..]).unwrap_err(),
        PayloadError::MissingField {
            field: "payload.task_id".into()
        }
    );
}
