//! axum integration: a ready handler that does everything and acknowledges, and an extractor
//! that hands the verified, de-duplicated run to your own handler.
//!
//! Both read the raw body themselves, refuse a body over the receiver's body limit (413,
//! closing the connection, after reading and discarding a bounded amount of the rest so that
//! the sender reads the 413 rather than a reset) or not received within its body read timeout
//! (408, closing the connection), and answer every rejection with the response policy's
//! status and a short plain body.
//!
//! **Pitfall:** put nothing that reads the body before them: not a `Json<T>` extractor, not a
//! body-logging or decompression middleware. Such a layer does not re-serialize anything, but
//! it consumes the body: the signature is then checked on whatever is left, and fails.
//!
//! ```
//! use std::sync::Arc;
//! use runhook::{payload::{Provider, RunEvent}, Receiver, Secret, SkyvernSignature};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let skyvern = Receiver::builder(Provider::Skyvern)
//!     .verifier(SkyvernSignature::new(Secret::new("sk_live_example")?))
//!     .handler(|event: Arc<RunEvent>| async move {
//!         println!("processed {} {}", event.provider, event.run_id);
//!         Ok::<(), std::io::Error>(())
//!     })
//!     .build()?;
//! let app: axum::Router = axum::Router::new().route("/webhooks/skyvern", runhook::axum::post(skyvern));
//! # let _ = app; Ok(()) }
//! ```

use axum::body::Body;
use axum::extract::{FromRef, FromRequest, OriginalUri, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use bytes::Bytes;

use crate::body::ReadError;
use crate::receiver::{ClaimedEvent, Outcome, Receiver};

/// A `POST` route that receives, acknowledges and hands each delivery to the receiver's
/// handler in the background.
pub fn post<S: Clone + Send + Sync + 'static>(receiver: Receiver) -> MethodRouter<S> {
    axum::routing::post(move |request: Request| {
        let receiver = receiver.clone();
        async move { handle(&receiver, request).await }
    })
}

/// Answers one request with `receiver` (what [`post`] does), for use in your own handler.
pub async fn handle(receiver: &Receiver, request: Request) -> Response {
    let path = request_path(&request);
    let (parts, body) = request.into_parts();
    let body = match read_body(receiver, &parts.headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let outcome = receiver.receive(&parts.headers, &path, body).await;
    respond(&outcome)
}

/// The extractor style: a genuine, new, parsed run, claimed for your handler. Rejections and
/// duplicates never reach your handler: they are answered as the response policy says.
///
/// Complete the claim when your work is done (`webhook.0.complete().await`); if you drop it
/// instead, the claim is released and the sender's retry can succeed.
///
/// ```
/// use axum::{routing::post, Router};
/// use runhook::{axum::Webhook, payload::Provider, Receiver, Secret, HeaderToken};
///
/// async fn on_run(Webhook(claimed): Webhook) -> &'static str {
///     println!("run {} {}", claimed.event.run_id, claimed.event.status);
///     match claimed.complete().await {
///         Ok(()) => "ok",
///         Err(_) => "ok (completion not recorded)",
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let receiver = Receiver::builder(Provider::WebRun)
///     .verifier(HeaderToken::authorization(Secret::new("Bearer webrun-token")?))
///     .build()?; // no handler: your axum handler is the handler
/// let app: Router = Router::new().route("/webhooks/webrun", post(on_run)).with_state(receiver);
/// # let _ = app; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Webhook(pub ClaimedEvent);

impl<S> FromRequest<S> for Webhook
where
    S: Send + Sync,
    Receiver: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let receiver = Receiver::from_ref(state);
        let path = request_path(&request);
        let (parts, body) = request.into_parts();
        let body = read_body(&receiver, &parts.headers, body).await?;
        receiver
            .claim_event(&parts.headers, &path, body)
            .await
            .map(Webhook)
            .map_err(|outcome| respond(&outcome))
    }
}

/// The response for `outcome`: its status, `Retry-After` when set, and a short plain body;
/// `Connection: close` after a body read timeout or a body over the limit, so that a stalled
/// connection, or one whose body was not read to its end, is dropped.
pub fn respond(outcome: &Outcome) -> Response {
    let mut response = (outcome.status, outcome.body_text()).into_response();
    if let Some(after) = outcome.retry_after {
        let seconds = after.as_secs().max(1);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if outcome.closes_connection() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn request_path(request: &Request) -> String {
    request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().path(), |uri| uri.path())
        .to_string()
}

/// Reads the whole body under the receiver's limits ([`crate::body`]): 413 past the body limit
/// (after draining what can be drained of the rest), 408 when the whole body has not arrived
/// within the receiver's body read timeout.
async fn read_body(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut chunks = body.into_data_stream();
    let read = crate::body::read_limited(
        &mut chunks,
        declared,
        receiver.body_limit(),
        receiver.body_read_timeout(),
    );
    match read.await {
        Ok(bytes) => Ok(bytes),
        Err(ReadError::TooLarge) => Err(respond(&receiver.too_large())),
        Err(ReadError::TimedOut) => Err(respond(&receiver.body_timed_out())),
        Err(ReadError::Broken) => {
            Err((StatusCode::BAD_REQUEST, "could not read the body").into_response())
        }
    }
}
