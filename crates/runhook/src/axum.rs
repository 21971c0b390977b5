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
//! let verifier = SkyvernSignature::new(Secret::new("sk_live_example")?);
//! let skyvern = Receiver::builder(Provider::Skyvern, verifier)
//!     .handler(|event: Arc<RunEvent>| async move {
//!         println!("processed {} {}", event.provider, event.dedup_key);
//!         Ok::<(), std::io::Error>(())
//!     })
//!     .build()?;
//! let app: axum::Router = axum::Router::new().route("/webhooks/skyvern", runhook::axum::post(skyvern));
//! # let _ = app; Ok(()) }
//! ```

use axum::body::Body;
use axum::extract::{FromRef, FromRequest, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use crate::receiver::{ClaimedEvent, InlineReceiver, Outcome, Receiver};
use crate::tower::{read_request, request_path};
pub use crate::tower::{VerifiedRun, WebhookLayer, WebhookService};

/// A `POST` route that receives, acknowledges and hands each delivery to the receiver's
/// handler in the background: the receiver as a service
/// ([`Receiver`'s `Service` impl](crate::tower)).
pub fn post<S: Clone + Send + Sync + 'static>(receiver: Receiver) -> MethodRouter<S> {
    axum::routing::post_service(receiver)
}

/// Answers one request with `receiver` (what [`post`] does), for use in your own handler.
pub async fn handle(receiver: &Receiver, request: Request) -> Response {
    crate::tower::answer(receiver, request).await
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
///     println!("run {} {}", claimed.event.dedup_key, claimed.event.status);
///     match claimed.complete().await {
///         Ok(()) => "ok",
///         Err(_) => "ok (completion not recorded)",
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = HeaderToken::authorization(Secret::new("Bearer webrun-token")?);
/// let receiver = Receiver::builder(Provider::WebRun, verifier)
///     .build_inline()?; // your axum handler is the handler
/// let app: Router = Router::new().route("/webhooks/webrun", post(on_run)).with_state(receiver);
/// # let _ = app; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Webhook(pub ClaimedEvent);

impl<S> FromRequest<S> for Webhook
where
    S: Send + Sync,
    InlineReceiver: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let receiver = InlineReceiver::from_ref(state);
        let (parts, body) = read_request(receiver.pipeline(), request)
            .await
            .map_err(IntoResponse::into_response)?;
        let path = request_path(&parts);
        receiver
            .claim_event(&parts.headers, &path, body)
            .await
            .map(Webhook)
            .map_err(IntoResponse::into_response)
    }
}

/// An outcome is an axum answer: its status, `Retry-After` when set, and a short plain body;
/// `Connection: close` after a body read timeout or a body over the limit, so that a stalled
/// connection, or one whose body was not read to its end, is dropped.
impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        crate::response::http_response::<Body>(&self)
    }
}
