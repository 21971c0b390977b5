//! What runhook knows about each platform, in one table: which credentials its deliveries can
//! carry, how its sender times out and retries, and where its run API lives.
//!
//! The receiver's defaults (its scheme, the schemes it refuses), the CLI's `send` and `demo`
//! (how a platform delivers) and the run clients all read [`Platform`], so that a fact about a
//! platform is written once.
//!
//! | platform | default scheme | per attempt | attempts | retried on |
//! |---|---|---|---|---|
//! | Skyvern (server, since May 2026) | signature | 30 s | 3, `1 s × 2ⁿ` + 0–1 s, or `Retry-After` ≤ 30 s | 403, 408, 425, 429, 5xx, network, timeout |
//! | Skyvern (its docs page) | signature | 10 s | 1 | never |
//! | TinyFish | path secret | 10 s | 4, after 1 s, 2 s, 4 s | 5xx, network, timeout |
//! | WebRun | `Authorization` token | 30 s | 1 | never |
//! | SmartBrowse | header token | 10 s | 1 | never |
//! | Browserbase | Standard Webhooks | 15 s | 9: at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h | any failure |
//! | Firecrawl | `x-firecrawl-signature` | 10 s | 4, after 1, 5, 15 min | any failure |
//! | Browser Use | `x-browser-use-signature` | 10 s (undocumented) | 1 (no retries documented) | never |
//!
//! ```
//! use runhook_core::payload::Provider;
//! use runhook_core::platform::{DefaultScheme, Platform};
//! use runhook_core::SchemeKind;
//!
//! let skyvern = Platform::of(Provider::Skyvern);
//! assert_eq!(skyvern.default_scheme, DefaultScheme::SkyvernSignature);
//! assert!(!skyvern.sends(SchemeKind::HeaderToken)); // Skyvern sends no custom header
//! assert_eq!(skyvern.sender.attempts, 3);
//! ```

use std::time::Duration;

use crate::auth::{
    BrowserUseSignature, FirecrawlSignature, HeaderToken, PathSecret, SkyvernSignature,
    StandardWebhooks,
};
use crate::error::SchemeKind;
use crate::payload::Provider;
use crate::secret::Secrets;
use crate::verify::Verifier;

/// One platform's row of the table; [`Platform::of`] looks it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Platform {
    /// The platform.
    pub provider: Provider,
    /// Its name as its documentation writes it (`Skyvern`, `TinyFish`, …).
    pub display_name: &'static str,
    /// How a route of this platform authenticates unless told otherwise.
    pub default_scheme: DefaultScheme,
    /// Every scheme this platform's deliveries can satisfy (the default first). A receiver
    /// refuses to be built with any other: a Skyvern route checking a header token would
    /// reject every genuine delivery.
    pub schemes: &'static [SchemeKind],
    /// How its sender delivers today.
    pub sender: SenderProfile,
    /// How its webhook documentation says it delivers, where that differs from
    /// [`Platform::sender`] (Skyvern's page still describes a single 10 s attempt); else the
    /// same profile.
    pub documented_sender: SenderProfile,
    /// Whether a second delivery of a run can carry another body than the first.
    pub duplicates: Duplicates,
    /// Its API for fetching one run, if it documents one (WebRun does not).
    pub run_api: Option<RunApi>,
}

/// How the bodies of a platform's repeated deliveries of one run compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    /// Every repeat resends the first body (automatic retries), so a repeat with another body
    /// is worth a warning.
    SameBody,
    /// Some repeats are built afresh and differ from the first by design.
    Rebuilt {
        /// Why, in a few words, for logs.
        why: &'static str,
    },
}

/// How a route authenticates by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultScheme {
    /// `x-skyvern-signature`, the HMAC of the body with the account's API key.
    SkyvernSignature,
    /// The platform signs nothing and sends no configurable header: a hard-to-guess segment
    /// of the webhook URL is the only credential it can carry.
    PathSecret,
    /// The platform sends a configured header value: a static token in `header`.
    HeaderToken {
        /// The header's (lowercase) name.
        header: &'static str,
    },
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`, or their
    /// `svix-*` aliases), keyed by the decoded bytes of `whsec_` secrets.
    StandardWebhooks,
    /// `x-firecrawl-signature`, the HMAC of the body with the account's webhook secret.
    FirecrawlSignature,
    /// `x-browser-use-signature`, the HMAC of the timestamp and the sorted-key payload with
    /// the webhook secret (or the older `x-webhook-signature` of the raw body).
    BrowserUseSignature,
}

impl DefaultScheme {
    /// This scheme with `secrets` as its keys: a [`SkyvernSignature`], a [`PathSecret`] on the
    /// last path segment, a [`HeaderToken`], a [`StandardWebhooks`] (`secrets` are the decoded
    /// keys: see [`Secret::from_standard_webhooks`](crate::Secret::from_standard_webhooks)) or
    /// a [`FirecrawlSignature`] or a [`BrowserUseSignature`].
    pub fn verifier(self, secrets: impl Into<Secrets>) -> Box<dyn Verifier> {
        let secrets = secrets.into();
        match self {
            DefaultScheme::SkyvernSignature => Box::new(SkyvernSignature::new(secrets)),
            DefaultScheme::PathSecret => Box::new(PathSecret::last_segment(secrets)),
            DefaultScheme::HeaderToken { header } => {
                Box::new(HeaderToken::in_known_header(header, secrets))
            }
            DefaultScheme::StandardWebhooks => Box::new(StandardWebhooks::new(secrets)),
            DefaultScheme::FirecrawlSignature => Box::new(FirecrawlSignature::new(secrets)),
            DefaultScheme::BrowserUseSignature => Box::new(BrowserUseSignature::new(secrets)),
        }
    }
}

/// How a platform's sender delivers one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SenderProfile {
    /// How long one attempt may take before the sender gives up on it.
    pub attempt_timeout: Duration,
    /// The most attempts, the first included.
    pub attempts: u32,
    /// Which answers it retries.
    pub retry_on: RetryOn,
    /// How long it waits before each retry.
    pub backoff: Backoff,
}

/// Which outcomes of an attempt a sender retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// None: one attempt.
    Nothing,
    /// Any 5xx, a network error, a timeout; never a 4xx (TinyFish).
    ServerErrors,
    /// 403, 408, 425, 429, any 5xx, a network error, a timeout (Skyvern's server).
    SkyvernSet,
    /// Every answer but a 2xx, a network error, a timeout (Browserbase, Firecrawl).
    AnyFailure,
}

impl RetryOn {
    /// Whether an answer with HTTP `status` is retried.
    pub fn status(self, status: u16) -> bool {
        match self {
            RetryOn::Nothing => false,
            RetryOn::ServerErrors => (500..=599).contains(&status),
            RetryOn::SkyvernSet => {
                matches!(status, 403 | 408 | 425 | 429) || (500..=599).contains(&status)
            }
            RetryOn::AnyFailure => !(200..=299).contains(&status),
        }
    }

    /// Whether no answer at all (a network error, a timeout) is retried.
    pub fn no_answer(self) -> bool {
        !matches!(self, RetryOn::Nothing)
    }
}

/// How long a sender waits before a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Fixed pauses, one per retry, in order (TinyFish: 1 s, 2 s, 4 s).
    Fixed(&'static [Duration]),
    /// `base × 2ⁿ` for the n-th retry counted from 0, plus a random pause of up to `jitter`;
    /// or the answer's `Retry-After` when it has one, at most `retry_after_cap` (Skyvern).
    Exponential {
        /// The pause before the first retry, before jitter.
        base: Duration,
        /// The most random pause added.
        jitter: Duration,
        /// The longest `Retry-After` honoured.
        retry_after_cap: Duration,
    },
}

impl Backoff {
    /// Whether a retry waits what the failed answer's `Retry-After` asks rather than the
    /// schedule.
    pub fn honours_retry_after(self) -> bool {
        matches!(self, Backoff::Exponential { .. })
    }
}

/// How long an outage of the receiver's store or queue the senders' retries should span:
/// a platform whose sender honours `Retry-After` is asked to wait so that its retries cover at
/// least this long ([`SenderProfile::outage_retry_after`]).
pub const OUTAGE_SPAN: Duration = Duration::from_secs(60);

impl SenderProfile {
    /// The `Retry-After` to answer while the receiver's store or queue is unavailable, for a
    /// sender that honours it: the pause that makes its remaining retries span [`OUTAGE_SPAN`]
    /// (at most what it honours: Skyvern, 3 attempts and a 30 s cap, gets 30 s). `None` for a
    /// sender that ignores the header, or that never retries.
    pub fn outage_retry_after(&self) -> Option<Duration> {
        let Backoff::Exponential {
            retry_after_cap, ..
        } = self.backoff
        else {
            return None;
        };
        let retries = self.attempts.checked_sub(1).filter(|&n| n > 0)?;
        let even_share = OUTAGE_SPAN.div_f64(f64::from(retries));
        let whole_seconds = Duration::from_secs(even_share.as_secs_f64().ceil() as u64);
        Some(
            whole_seconds
                .min(retry_after_cap)
                .max(Duration::from_secs(1)),
        )
    }

    /// The pause before retry `retry` (1 for the first retry), given the failed answer's
    /// `Retry-After` and a random `unit` in `[0, 1)` for the jitter; `None` when no retry of
    /// that number is made.
    pub fn delay_before(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        if retry == 0 || retry >= self.attempts {
            return None;
        }
        match self.backoff {
            Backoff::Fixed(pauses) => pauses.get(retry as usize - 1).copied(),
            Backoff::Exponential {
                base,
                jitter,
                retry_after_cap,
            } => Some(match retry_after {
                Some(asked) => asked.min(retry_after_cap),
                None => {
                    let doubling = 1u32 << (retry - 1).min(16);
                    base * doubling + jitter.mul_f64(unit.clamp(0.0, 1.0))
                }
            }),
        }
    }
}

/// A platform's API for fetching one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunApi {
    /// The hosted API's base URL (self-hosted installs have their own).
    pub default_base: &'static str,
    /// The path of one run, with `{id}` where the run id goes.
    pub run_path: &'static str,
    /// The header that carries the API key.
    pub key_header: &'static str,
    /// The run statuses after which nothing more happens, as the API spells them.
    pub terminal_states: &'static [&'static str],
    /// How the platform lists its recent runs, for a sweep; `None` when it documents no list.
    pub list: Option<RunList>,
}

/// How a platform's run API lists recent runs, newest first, one page at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunList {
    /// `GET {path}?created_after=<RFC 3339>&limit=<n>[&cursor=<c>]` answering
    /// `{"data": [run, …], "pagination": {"next_cursor": …, "has_more": …}}`, each item the
    /// whole run as one run's fetch returns it (TinyFish).
    CreatedAfterCursor {
        /// The list's path.
        path: &'static str,
    },
    /// `GET {path}?page=<n>&page_size=<n>` (pages from 1) answering a JSON array of runs, or
    /// an object holding it under `data` or `runs`, newest first by `created_at`; each item
    /// names a run (`run_id`, `status`, `created_at`) that is then fetched by id (Skyvern).
    NumberedPages {
        /// The list's path.
        path: &'static str,
    },
}

impl RunApi {
    /// The path of run `id` (`id` as given: callers percent-encode it).
    pub fn path_of(&self, id: &str) -> String {
        self.run_path.replace("{id}", id)
    }

    /// Whether `status` is terminal.
    pub fn is_terminal(&self, status: &str) -> bool {
        self.terminal_states.contains(&status)
    }
}

const SINGLE_ATTEMPT_10S: SenderProfile = SenderProfile {
    attempt_timeout: Duration::from_secs(10),
    attempts: 1,
    retry_on: RetryOn::Nothing,
    backoff: Backoff::Fixed(&[]),
};

const SKYVERN: Platform = Platform {
    provider: Provider::Skyvern,
    display_name: "Skyvern",
    default_scheme: DefaultScheme::SkyvernSignature,
    schemes: &[
        SchemeKind::Skyvern,
        SchemeKind::PathSecret,
        SchemeKind::Unsigned,
    ],
    // skyvern/services/webhook_delivery.py: every attempt resends the same signed request.
    sender: SenderProfile {
        attempt_timeout: Duration::from_secs(30),
        attempts: 3,
        retry_on: RetryOn::SkyvernSet,
        backoff: Backoff::Exponential {
            base: Duration::from_secs(1),
            jitter: Duration::from_secs(1),
            retry_after_cap: Duration::from_secs(30),
        },
    },
    documented_sender: SINGLE_ATTEMPT_10S,
    // `POST /v1/runs/{run_id}/retry_webhook` builds the payload again: fresh presigned URLs,
    // a new timestamp, so another body and signature for the same run.
    duplicates: Duplicates::Rebuilt {
        why: "Skyvern replays rebuild the payload",
    },
    run_api: Some(RunApi {
        default_base: "https://api.skyvern.com",
        run_path: "/v1/runs/{id}",
        key_header: "x-api-key",
        terminal_states: &["completed", "failed", "terminated", "timed_out", "canceled"],
        // `GET /v1/runs` (hidden in Skyvern's API docs): page ≤ 100, page_size ≤ 100.
        list: Some(RunList::NumberedPages { path: "/v1/runs" }),
    }),
};

const TINYFISH_SENDER: SenderProfile = SenderProfile {
    attempt_timeout: Duration::from_secs(10),
    attempts: 4,
    retry_on: RetryOn::ServerErrors,
    backoff: Backoff::Fixed(&[
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(4),
    ]),
};

const TINYFISH: Platform = Platform {
    provider: Provider::TinyFish,
    display_name: "TinyFish",
    default_scheme: DefaultScheme::PathSecret,
    schemes: &[SchemeKind::PathSecret, SchemeKind::Unsigned],
    sender: TINYFISH_SENDER,
    documented_sender: TINYFISH_SENDER,
    duplicates: Duplicates::SameBody,
    run_api: Some(RunApi {
        default_base: "https://agent.tinyfish.ai",
        run_path: "/v1/runs/{id}",
        key_header: "x-api-key",
        terminal_states: &["COMPLETED", "FAILED", "CANCELLED"],
        list: Some(RunList::CreatedAfterCursor { path: "/v1/runs" }),
    }),
};

const WEBRUN_SENDER: SenderProfile = SenderProfile {
    attempt_timeout: Duration::from_secs(30),
    ..SINGLE_ATTEMPT_10S
};

const WEBRUN_SCHEMES: &[SchemeKind] = &[
    SchemeKind::HeaderToken,
    SchemeKind::PathSecret,
    SchemeKind::Unsigned,
];

const WEBRUN: Platform = Platform {
    provider: Provider::WebRun,
    display_name: "WebRun",
    // The webhook's `auth` value, sent as `Authorization`.
    default_scheme: DefaultScheme::HeaderToken {
        header: "authorization",
    },
    schemes: WEBRUN_SCHEMES,
    sender: WEBRUN_SENDER,
    documented_sender: WEBRUN_SENDER,
    duplicates: Duplicates::SameBody,
    run_api: None,
};

const WEBRUN_AI: Platform = Platform {
    provider: Provider::WebRunAi,
    ..WEBRUN
};

const SMARTBROWSE: Platform = Platform {
    provider: Provider::SmartBrowse,
    display_name: "SmartBrowse",
    // Custom request headers, "for example an Authorization header".
    default_scheme: DefaultScheme::HeaderToken {
        header: "authorization",
    },
    // Standard Webhooks too: SmartBrowse announces signed deliveries ("until we ship signed
    // deliveries"), and a route may verify them beside its header.
    schemes: &[
        SchemeKind::HeaderToken,
        SchemeKind::PathSecret,
        SchemeKind::StandardWebhooks,
        SchemeKind::Unsigned,
    ],
    sender: SINGLE_ATTEMPT_10S,
    documented_sender: SINGLE_ATTEMPT_10S,
    duplicates: Duplicates::SameBody,
    run_api: Some(RunApi {
        default_base: "https://api.webscrape.ai",
        run_path: "/v1/smartbrowse/runs/{id}",
        key_header: "x-api-key",
        terminal_states: &["completed", "failed", "cancelled"],
        list: None,
    }),
};

// docs.browserbase.com/platform/webhooks/verifying-deliveries: 2xx within 15 s, else retried
// immediately, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h; no ordering per resource.
const BROWSERBASE_SENDER: SenderProfile = SenderProfile {
    attempt_timeout: Duration::from_secs(15),
    attempts: 9,
    retry_on: RetryOn::AnyFailure,
    backoff: Backoff::Fixed(&[
        Duration::ZERO,
        Duration::from_secs(5),
        Duration::from_secs(5 * 60),
        Duration::from_secs(30 * 60),
        Duration::from_secs(2 * 3600),
        Duration::from_secs(5 * 3600),
        Duration::from_secs(10 * 3600),
        Duration::from_secs(10 * 3600),
    ]),
};

const BROWSERBASE: Platform = Platform {
    provider: Provider::Browserbase,
    display_name: "Browserbase",
    default_scheme: DefaultScheme::StandardWebhooks,
    schemes: &[SchemeKind::StandardWebhooks],
    sender: BROWSERBASE_SENDER,
    documented_sender: BROWSERBASE_SENDER,
    // Every retry resends the same envelope (its `id` is stable across retries).
    duplicates: Duplicates::SameBody,
    // Its events concern sessions and Functions invocations; no webhook-shaped run is fetched.
    run_api: None,
};

// docs.firecrawl.dev/webhooks: 2xx within 10 s, else retried after 1, 5 and 15 minutes.
const FIRECRAWL_SENDER: SenderProfile = SenderProfile {
    attempt_timeout: Duration::from_secs(10),
    attempts: 4,
    retry_on: RetryOn::AnyFailure,
    backoff: Backoff::Fixed(&[
        Duration::from_secs(60),
        Duration::from_secs(5 * 60),
        Duration::from_secs(15 * 60),
    ]),
};

const FIRECRAWL: Platform = Platform {
    provider: Provider::Firecrawl,
    display_name: "Firecrawl",
    default_scheme: DefaultScheme::FirecrawlSignature,
    schemes: &[SchemeKind::Firecrawl],
    sender: FIRECRAWL_SENDER,
    documented_sender: FIRECRAWL_SENDER,
    // A retry resends the same delivery (its `webhookId` is stable across retries).
    duplicates: Duplicates::SameBody,
    // Its status endpoints differ per job kind (`/v2/crawl/{id}`, `/v2/batch/scrape/{id}`,
    // `/v2/agent/{id}`) and none answers in the webhook's shape: not wired yet.
    run_api: None,
};

const BROWSER_USE: Platform = Platform {
    provider: Provider::BrowserUse,
    display_name: "Browser Use",
    default_scheme: DefaultScheme::BrowserUseSignature,
    schemes: &[SchemeKind::BrowserUse],
    // docs.browser-use.com documents no timeout and no retries: one attempt, answered within
    // the field's usual 10 s. A missed delivery is for reconcile or a sweep.
    sender: SINGLE_ATTEMPT_10S,
    documented_sender: SINGLE_ATTEMPT_10S,
    duplicates: Duplicates::SameBody,
    // `GET /api/v2/tasks/{id}` (`TaskView`: `id`, `sessionId`, `status`, `output`, …).
    run_api: Some(RunApi {
        default_base: "https://api.browser-use.com",
        run_path: "/api/v2/tasks/{id}",
        key_header: "x-browser-use-api-key",
        terminal_states: &["finished", "failed", "stopped"],
        list: None,
    }),
};

impl Platform {
    /// `provider`'s row.
    pub const fn of(provider: Provider) -> &'static Platform {
        match provider {
            Provider::Skyvern => &SKYVERN,
            Provider::TinyFish => &TINYFISH,
            Provider::WebRun => &WEBRUN,
            Provider::WebRunAi => &WEBRUN_AI,
            Provider::SmartBrowse => &SMARTBROWSE,
            Provider::Browserbase => &BROWSERBASE,
            Provider::Firecrawl => &FIRECRAWL,
            Provider::BrowserUse => &BROWSER_USE,
        }
    }

    /// Whether this platform's deliveries can satisfy `scheme`.
    pub fn sends(&self, scheme: SchemeKind) -> bool {
        self.schemes.contains(&scheme)
    }

    /// How long the receiver has to answer: the shortest attempt timeout among the
    /// platform's profiles (Skyvern's docs say 10 s, its server waits 30 s).
    pub fn answer_within(&self) -> Duration {
        self.sender
            .attempt_timeout
            .min(self.documented_sender.attempt_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_its_own_row_with_the_default_among_its_schemes() {
        for provider in Provider::ALL {
            let platform = Platform::of(provider);
            assert_eq!(platform.provider, provider);
            let default = match platform.default_scheme {
                DefaultScheme::SkyvernSignature => SchemeKind::Skyvern,
                DefaultScheme::PathSecret => SchemeKind::PathSecret,
                DefaultScheme::HeaderToken { .. } => SchemeKind::HeaderToken,
                DefaultScheme::StandardWebhooks => SchemeKind::StandardWebhooks,
                DefaultScheme::FirecrawlSignature => SchemeKind::Firecrawl,
                DefaultScheme::BrowserUseSignature => SchemeKind::BrowserUse,
            };
            assert_eq!(platform.schemes[0], default, "{provider}");
            if let DefaultScheme::HeaderToken { header } = platform.default_scheme {
                let valid = http::HeaderName::from_bytes(header.as_bytes()).unwrap();
                assert_eq!(valid.as_str(), header, "{provider}: lowercase");
            }
            let key = crate::Secret::new("k").unwrap();
            assert_eq!(
                platform.default_scheme.verifier(key).schemes(),
                [default],
                "{provider}"
            );
            assert!(platform.sender.attempts >= 1);
        }
    }

    #[test]
    fn skyvern_retries_its_set_and_nothing_else() {
        let retry = Platform::of(Provider::Skyvern).sender.retry_on;
        for status in [403, 408, 425, 429, 500, 502, 503, 599] {
            assert!(retry.status(status), "{status}");
        }
        for status in [200, 202, 400, 401, 404, 409, 413, 422] {
            assert!(!retry.status(status), "{status}");
        }
        assert!(retry.no_answer());
        assert!(!RetryOn::Nothing.no_answer());
        assert!(!RetryOn::ServerErrors.status(429));
        assert!(!RetryOn::ServerErrors.status(403));
        assert!(RetryOn::ServerErrors.no_answer());
    }

    #[test]
    fn only_skyvern_honours_retry_after_and_rebuilds_its_replays() {
        for provider in Provider::ALL {
            let platform = Platform::of(provider);
            let skyvern = provider == Provider::Skyvern;
            assert_eq!(platform.sender.backoff.honours_retry_after(), skyvern);
            assert_eq!(
                matches!(platform.duplicates, Duplicates::Rebuilt { .. }),
                skyvern
            );
        }
    }

    #[test]
    fn skyvern_backs_off_exponentially_with_jitter_or_honours_retry_after_capped() {
        let sender = Platform::of(Provider::Skyvern).sender;
        assert_eq!(
            sender.delay_before(1, None, 0.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            sender.delay_before(1, None, 0.5),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            sender.delay_before(2, None, 0.999),
            Some(Duration::from_millis(2999))
        );
        assert_eq!(
            sender.delay_before(1, Some(Duration::from_secs(3)), 0.9),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            sender.delay_before(2, Some(Duration::from_secs(120)), 0.0),
            Some(Duration::from_secs(30))
        );
        // Three attempts: no third retry.
        assert_eq!(sender.delay_before(3, None, 0.0), None);
        assert_eq!(sender.delay_before(0, None, 0.0), None);
    }

    #[test]
    fn an_outage_answer_spans_a_minute_of_the_senders_retries_where_it_honours_retry_after() {
        let skyvern = Platform::of(Provider::Skyvern).sender;
        let pause = skyvern
            .outage_retry_after()
            .expect("Skyvern honours Retry-After");
        assert_eq!(pause, Duration::from_secs(30));
        // Every retry waits the pause: the retries together span the outage.
        let spanned: Duration = (1..skyvern.attempts)
            .map(|retry| skyvern.delay_before(retry, Some(pause), 0.0).unwrap())
            .sum();
        assert!(spanned >= OUTAGE_SPAN, "{spanned:?}");
        for provider in [Provider::TinyFish, Provider::WebRun, Provider::SmartBrowse] {
            assert_eq!(Platform::of(provider).sender.outage_retry_after(), None);
        }
    }

    #[test]
    fn tinyfish_waits_its_documented_pauses_and_ignores_retry_after() {
        let sender = Platform::of(Provider::TinyFish).sender;
        let pauses: Vec<_> = (1..=4)
            .map(|n| sender.delay_before(n, Some(Duration::from_secs(9)), 0.5))
            .collect();
        assert_eq!(
            pauses,
            [Some(1), Some(2), Some(4), None].map(|s| s.map(Duration::from_secs))
        );
        assert_eq!(sender.attempt_timeout, Duration::from_secs(10));
    }

    #[test]
    fn single_attempt_senders_never_retry() {
        for provider in [Provider::WebRun, Provider::WebRunAi, Provider::SmartBrowse] {
            let sender = Platform::of(provider).sender;
            assert_eq!(sender.attempts, 1);
            assert_eq!(sender.delay_before(1, None, 0.0), None);
            assert!(!sender.retry_on.status(503));
        }
        assert_eq!(
            Platform::of(Provider::WebRun).sender.attempt_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(
            Platform::of(Provider::Skyvern).documented_sender.attempts,
            1
        );
        assert_eq!(
            Platform::of(Provider::Skyvern).answer_within(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn browserbase_and_firecrawl_wait_their_documented_pauses_and_retry_any_failure() {
        let browserbase = Platform::of(Provider::Browserbase).sender;
        let pauses: Vec<_> = (1..=9)
            .map(|n| browserbase.delay_before(n, Some(Duration::from_secs(1)), 0.5))
            .collect();
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        assert_eq!(
            pauses,
            [
                Some(Duration::ZERO),
                Some(Duration::from_secs(5)),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
                None
            ]
        );
        assert_eq!(browserbase.attempt_timeout, Duration::from_secs(15));
        let firecrawl = Platform::of(Provider::Firecrawl).sender;
        let pauses: Vec<_> = (1..=4)
            .map(|n| firecrawl.delay_before(n, None, 0.0))
            .collect();
        assert_eq!(pauses, [minutes(1), minutes(5), minutes(15), None]);
        assert_eq!(firecrawl.attempt_timeout, Duration::from_secs(10));
        for sender in [browserbase, firecrawl] {
            for status in [301, 400, 401, 404, 429, 500] {
                assert!(sender.retry_on.status(status), "{status}");
            }
            assert!(!sender.retry_on.status(200) && !sender.retry_on.status(204));
            assert!(sender.retry_on.no_answer());
            assert_eq!(sender.outage_retry_after(), None);
        }
    }

    #[test]
    fn run_apis_are_where_the_platforms_document_them() {
        assert_eq!(Platform::of(Provider::WebRun).run_api, None);
        let smartbrowse = Platform::of(Provider::SmartBrowse).run_api.unwrap();
        assert_eq!(smartbrowse.path_of("r1"), "/v1/smartbrowse/runs/r1");
        assert!(smartbrowse.is_terminal("cancelled"));
        assert!(!smartbrowse.is_terminal("running"));
        let tinyfish = Platform::of(Provider::TinyFish).run_api.unwrap();
        assert!(tinyfish.is_terminal("COMPLETED"));
        assert!(!tinyfish.is_terminal("completed"));
    }
}
