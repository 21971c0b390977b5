//! The steps every delivery goes through, whichever style serves it: reading the body under
//! the limits, authenticating it on its raw bytes, reading its summary, claiming its run, and
//! setting aside what is genuine but cannot be processed. [`super::Receiver`] hands the claimed
//! run off to the background workers; [`super::InlineReceiver`] hands it to the caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use runhook_core::payload::{DedupProbe, PayloadError, Provider, RunEvent, MAX_RUN_ID_LEN};
use runhook_core::platform::{Duplicates, Platform};
use runhook_core::{AuthError, BodyMatch, Delivery, HeaderLookup, Verified, Verifier};
use runhook_store::{Claim, Fingerprint, IdempotencyStore, StoreError, Token};

use super::claim::{ClaimGuard, ClaimedEvent};
use super::outcome::{
    probe_of, store_unavailable, with_probe, InFlightDuplicates, Outcome, OutcomeKind, Unavailable,
};
use crate::body::ReadError;
use crate::dead_letter::{is_credential_header, DeadLetter, DeadLetterReason, DeadLetterSink};
use crate::handler::{BoxFuture, HandlerError};
use crate::stats::Counters;

/// Chooses the scheme for one delivery when one endpoint serves many accounts (secrets picked
/// by a path segment, or by the account id in the body).
pub trait KeyResolver: Send + Sync + 'static {
    /// The scheme that authenticates a delivery on `path` with `body`, or `None` when no
    /// account matches (answered 401). An error means the keys cannot be looked up now
    /// (answered 503).
    fn resolve<'a>(
        &'a self,
        path: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Arc<dyn Verifier>>, HandlerError>>;

    /// The names of the headers that carry the credentials of the schemes this resolver
    /// returns ([`Verifier::credential_headers`]), never stored with a delivery. Empty by
    /// default: name your custom token headers here.
    fn credential_headers(&self) -> Vec<String> {
        Vec::new()
    }
}

pub(super) enum Auth {
    Fixed(Arc<dyn Verifier>),
    Resolved(Arc<dyn KeyResolver>),
}

/// One route's settings and the state every style shares.
pub(crate) struct Pipeline {
    pub(super) provider: Provider,
    pub(super) auth: Auth,
    pub(super) store: Arc<dyn IdempotencyStore>,
    pub(super) dead_letters: Arc<dyn DeadLetterSink>,
    pub(super) body_limit: usize,
    pub(super) body_read_timeout: Duration,
    pub(super) lease: Duration,
    pub(super) shutting_down: AtomicBool,
    pub(super) keep_for: Duration,
    pub(super) counters: Arc<Counters>,
    /// The verifier's credential headers, dropped from stored headers with the fixed list.
    pub(super) credential_headers: Vec<String>,
}

impl Pipeline {
    /// Reads a request body under the limits; see [`super::Receiver::read_body`].
    pub(crate) async fn read_body<S, E>(
        &self,
        chunks: &mut S,
        content_length: Option<u64>,
    ) -> Result<Bytes, Outcome>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let read = crate::body::read_limited(
            chunks,
            content_length,
            self.body_limit,
            self.body_read_timeout,
        );
        let outcome = match read.await {
            Ok(body) => return Ok(body),
            Err(ReadError::TooLarge) => Outcome::too_large(self.body_limit),
            Err(ReadError::TimedOut) => {
                tracing::info!(
                    provider = %self.provider,
                    timeout_ms = self.body_read_timeout.as_millis() as u64,
                    "the body did not arrive in time; closing the connection"
                );
                Outcome::body_timeout(self.body_read_timeout)
            }
            Err(ReadError::Broken) => {
                Outcome::new(StatusCode::BAD_REQUEST, OutcomeKind::BodyUnreadable)
            }
        };
        Counters::bump(&self.counters.received);
        self.count(&outcome);
        Err(outcome)
    }

    /// Logs a duplicate whose body differs from the first: expected, at debug level, from a
    /// platform whose replays are rebuilt (Skyvern); else a warning.
    fn log_other_body(&self, outcome: &Outcome) {
        let key = outcome.probe.as_ref().map(|p| p.dedup_key.as_str());
        let message = "duplicate delivery with a different body than the first";
        match Platform::of(self.provider).duplicates {
            Duplicates::Rebuilt { why } => {
                tracing::debug!(provider = %self.provider, key, reason = why, "{message}")
            }
            Duplicates::SameBody => tracing::warn!(provider = %self.provider, key, "{message}"),
        }
    }

    pub(super) fn count(&self, outcome: &Outcome) {
        match outcome.kind {
            OutcomeKind::Accepted => Counters::bump(&self.counters.accepted),
            OutcomeKind::Duplicate { same_payload, .. } => {
                Counters::bump(&self.counters.duplicates);
                if !same_payload {
                    Counters::bump(&self.counters.duplicates_with_other_body);
                    self.log_other_body(outcome);
                }
            }
            ref rejection => {
                Counters::bump(&self.counters.rejected);
                let reason = match rejection {
                    OutcomeKind::Unauthorized(_) => &self.counters.rejected_unauthorized,
                    OutcomeKind::TooLarge { .. } => &self.counters.rejected_too_large,
                    OutcomeKind::Unparseable(_) | OutcomeKind::UnusableKey(_) => {
                        &self.counters.rejected_unparseable
                    }
                    OutcomeKind::Unavailable(_) | OutcomeKind::ShuttingDown => {
                        &self.counters.rejected_unavailable
                    }
                    _ => return,
                };
                Counters::bump(reason);
            }
        }
    }

    /// Everything up to and including the claim: the answer if the delivery stops here, or
    /// the claimed run.
    pub(super) async fn admit(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
        in_flight: InFlightDuplicates,
    ) -> Admission {
        if self.shutting_down.load(Ordering::Acquire) {
            return Admission::Answered(Outcome::shutting_down());
        }
        if body.len() > self.body_limit {
            return Admission::Answered(Outcome::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                OutcomeKind::TooLarge {
                    limit: self.body_limit,
                },
            ));
        }
        let verifier: Arc<dyn Verifier> = match &self.auth {
            Auth::Fixed(verifier) => verifier.clone(),
            Auth::Resolved(resolver) => match resolver.resolve(path, &body).await {
                Ok(Some(verifier)) => verifier,
                Ok(None) => {
                    let err = AuthError::NoSchemeMatched(Vec::new());
                    return Admission::Answered(Outcome::new(
                        err.status(),
                        OutcomeKind::Unauthorized(err),
                    ));
                }
                Err(err) => {
                    tracing::error!(error = %err, "key resolver failed");
                    return Admission::Answered(Outcome::unavailable(
                        Unavailable::KeyResolver(err),
                        Duration::from_secs(1),
                    ));
                }
            },
        };
        // The exact check inline; a fallback (canonical form) off the async workers.
        let exact = verifier.verify_exact(&Delivery::new(headers, &body).with_path(path));
        let verified = match exact {
            Err(exact) if verifier.has_fallback() => {
                verify_blocking(verifier, headers, path, &body, exact).await
            }
            verified => verified,
        };
        let verified = match verified {
            Ok(verified) => verified,
            Err(err) => {
                tracing::info!(provider = %self.provider, reason = %err, "rejected a delivery");
                return Admission::Answered(Outcome::new(
                    err.status(),
                    OutcomeKind::Unauthorized(err),
                ));
            }
        };
        let signed_body = verified
            .signed_body
            .clone()
            .filter(|_| verified.body == BodyMatch::Canonical);
        if signed_body.is_some() {
            Counters::bump(&self.counters.canonical_fallback_matches);
            tracing::info!(provider = %self.provider, "signature matched the body's canonical form only: it was re-serialized on its way");
        }
        // The summary, read once, here: the worker is handed the parsed event. A body that
        // is genuine but not the provider's payload is kept whole and answered 202.
        let mut event = match RunEvent::parse_summary(self.provider, body.clone()) {
            Ok(event) => event,
            Err(PayloadError::RunIdTooLong { field, run_id }) => {
                // Genuine, but its id cannot be a key: kept whole, findable by its id.
                let probe = DedupProbe {
                    dedup_key: self.provider.dedup_key(&run_id),
                    run_id: Some(run_id),
                };
                let why = format!("field `{field}` is longer than {MAX_RUN_ID_LEN} bytes");
                return Admission::Answered(
                    self.unusable_key(headers, body, probe, why, None).await,
                );
            }
            Err(err) => {
                // Keep the run's key with the letter when at least the id reads.
                let probe = DedupProbe::read(self.provider, &body).ok();
                let outcome = self.unparseable(headers, body, probe.as_ref(), err).await;
                return Admission::Answered(match probe {
                    Some(probe) => with_probe(outcome, probe),
                    None => outcome,
                });
            }
        };
        event.signed_body = signed_body;
        let probe = probe_of(&event);
        let fingerprint = Fingerprint::of(&body);
        let claim = match self
            .store
            .claim(&probe.dedup_key, self.lease, fingerprint)
            .await
        {
            Ok(claim) => claim,
            Err(err @ (StoreError::KeyTooLong { .. } | StoreError::EmptyKey)) => {
                // Genuine, but its key cannot be stored: a retry cannot cure it, so it is
                // kept whole and answered 202, never a 4xx.
                let why = err.to_string();
                return Admission::Answered(
                    self.unusable_key(headers, body, probe, why, Some(err))
                        .await,
                );
            }
            Err(err) => return Admission::Answered(with_probe(store_unavailable(err), probe)),
        };
        let outcome = match claim {
            Claim::Acquired(token) => {
                return Admission::New(Admitted {
                    verified,
                    event,
                    token,
                })
            }
            Claim::Done { same_payload } => {
                let kind = OutcomeKind::Duplicate {
                    same_payload,
                    in_flight: false,
                };
                let outcome = Outcome::new(StatusCode::OK, kind);
                return Admission::Answered(with_probe(outcome, probe));
            }
            Claim::InFlight {
                same_payload,
                expires_in,
            } => {
                let kind = OutcomeKind::Duplicate {
                    same_payload,
                    in_flight: true,
                };
                if in_flight == InFlightDuplicates::Acknowledge {
                    Outcome::new(StatusCode::OK, kind)
                } else {
                    // Shared store with an in-process queue (the instance holding the run may
                    // die), or no hand-off at all (extractor style): a retry later finds the
                    // run done or claimable.
                    let wait = expires_in
                        .unwrap_or(Duration::from_secs(5))
                        .clamp(Duration::from_secs(1), Duration::from_secs(60));
                    Outcome {
                        retry_after: Some(wait),
                        ..Outcome::new(StatusCode::SERVICE_UNAVAILABLE, kind)
                    }
                }
            }
        };
        Admission::InFlight(with_probe(outcome, probe))
    }

    /// For the extractor style: authenticates, de-duplicates and parses the delivery, and
    /// hands the claimed run to the caller instead of the background workers. `Err` is the
    /// answer to send when there is nothing for the caller to do (rejected, duplicate, ...).
    pub(super) async fn claim_event(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<ClaimedEvent, Outcome> {
        Counters::bump(&self.counters.received);
        let result = self.claim_event_inner(headers, path, body).await;
        match &result {
            Ok(_) => Counters::bump(&self.counters.accepted),
            Err(outcome) => self.count(outcome),
        }
        result
    }

    async fn claim_event_inner(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        path: &str,
        body: Bytes,
    ) -> Result<ClaimedEvent, Outcome> {
        let Admitted {
            verified,
            event,
            token,
        } = match self
            .admit(headers, path, body, InFlightDuplicates::AskToRetry)
            .await
        {
            Admission::New(admitted) => admitted,
            Admission::InFlight(outcome) | Admission::Answered(outcome) => return Err(outcome),
        };
        let guard = ClaimGuard {
            store: self.store.clone(),
            key: event.dedup_key.clone(),
            token,
            keep_for: self.keep_for,
            counters: self.counters.clone(),
            settled: false,
        };
        // The caller's handler runs now, on the typed payload: read it in full first.
        match event.payload() {
            Ok(_) => Ok(ClaimedEvent {
                event,
                verified,
                claim: guard,
            }),
            Err(err) => {
                let (err, probe) = (err.clone(), probe_of(&event));
                let outcome = self
                    .unparseable(headers, event.raw_body.clone(), Some(&probe), err)
                    .await;
                guard.release().await;
                Err(with_probe(outcome, probe))
            }
        }
    }

    /// Keeps a genuine but unusable delivery whole in the dead letters and answers 202 with
    /// `kind`; 503 if the sink refuses it (the sender's retry brings it back).
    async fn set_aside(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: Option<&DedupProbe>,
        reason: DeadLetterReason,
        kind: OutcomeKind,
    ) -> Outcome {
        tracing::warn!(provider = %self.provider, %reason, "genuine delivery cannot be processed; dead-lettering it");
        let letter = DeadLetter {
            provider: Some(self.provider),
            dedup_key: probe.map(|p| p.dedup_key.clone()),
            run_id: probe.and_then(|p| p.run_id.clone()),
            reason,
            attempts: 0,
            received_at: SystemTime::now(),
            headers: kept_headers(headers, &self.credential_headers),
            body,
            source: runhook_core::payload::EventSource::Webhook,
        };
        if let Err(io) = self.dead_letters.put(letter).await {
            tracing::error!(error = %io, "could not write a dead letter");
            return Outcome::unavailable(Unavailable::DeadLetters(io), Duration::from_secs(1));
        }
        Counters::bump(&self.counters.dead_lettered);
        Outcome::new(StatusCode::ACCEPTED, kind)
    }

    /// A genuine run whose id cannot be a de-duplication key (`why`; the store's refusal when
    /// it was the store): kept whole with its key and id, answered 202.
    async fn unusable_key(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: DedupProbe,
        why: String,
        store_error: Option<StoreError>,
    ) -> Outcome {
        let reason = DeadLetterReason::UnusableKey { reason: why };
        let kind = OutcomeKind::UnusableKey(store_error);
        let outcome = self
            .set_aside(headers, body, Some(&probe), reason, kind)
            .await;
        with_probe(outcome, probe)
    }

    async fn unparseable(
        &self,
        headers: &(dyn HeaderLookup + Sync),
        body: Bytes,
        probe: Option<&DedupProbe>,
        err: PayloadError,
    ) -> Outcome {
        let reason = DeadLetterReason::Unparseable(err.clone());
        self.set_aside(headers, body, probe, reason, OutcomeKind::Unparseable(err))
            .await
    }
}

/// `verifier`'s whole check, fallback included, on tokio's blocking pool: the fallback may
/// canonicalize the whole body. `exact` is the inline check's error, answered if the task
/// cannot run.
async fn verify_blocking(
    verifier: Arc<dyn Verifier>,
    headers: &(dyn HeaderLookup + Sync),
    path: &str,
    body: &Bytes,
    exact: AuthError,
) -> Result<Verified, AuthError> {
    let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
    headers.visit_all(&mut |name, value| owned.push((name.to_string(), value.to_vec())));
    let (path, body) = (path.to_string(), body.clone());
    let check = tokio::task::spawn_blocking(move || {
        verifier.verify(&Delivery::new(&owned, &body).with_path(&path))
    });
    check.await.unwrap_or(Err(exact))
}

/// Where a delivery stands once [`Pipeline::admit`] is done with it.
// `New` is large (the parsed event), but an admission lives for one match on the stack;
// boxing it would cost an allocation on every delivery's path.
#[allow(clippy::large_enum_variant)]
pub(super) enum Admission {
    /// Genuine and new: its run is claimed for this delivery.
    New(Admitted),
    /// Genuine, a duplicate of a run another delivery holds: answered 200 or 503 as the
    /// caller's [`InFlightDuplicates`] said. An acknowledged one may still need the durable
    /// hand-off's append ([`super::Receiver`]).
    InFlight(Outcome),
    /// The delivery stops here with this answer: rejected, a duplicate of a run done, set
    /// aside, or refused for now.
    Answered(Outcome),
}

/// A genuine, new run, claimed: what authenticated it, its summary read, its claim's token.
pub(super) struct Admitted {
    pub(super) verified: Verified,
    pub(super) event: RunEvent,
    pub(super) token: Token,
}

/// The headers worth keeping with a dead letter or a queued delivery: all but credentials
/// (the fixed list, `set-cookie`, and the verifier's own `credential_headers`).
pub(super) fn kept_headers(
    headers: &dyn HeaderLookup,
    credential_headers: &[String],
) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    headers.visit_all(&mut |name, value| {
        let credential = is_credential_header(name)
            || name.eq_ignore_ascii_case("set-cookie")
            || credential_headers
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name));
        if !credential {
            kept.push((
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    });
    kept
}
