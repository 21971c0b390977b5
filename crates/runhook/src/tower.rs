//! tower integration (feature `tower`): a [`Receiver`] is a [`Service`], and
//! [`WebhookLayer`] verifies and de-duplicates in front of any service of yours.
//!
//! **The receiver as a service** acknowledges fast and processes in the background, as
//! [`Receiver::receive`] does: mount it with `Router::route_service` (axum), or anywhere an
//! `http` service goes.
//!
//! **The middleware** runs your service inline, as the extractor style does, in front of an
//! existing endpoint. It reads the body once, up to the receiver's limit, authenticates it on
//! its raw bytes, claims the run, and passes the same bytes on (so that a downstream
//! `axum::Json<T>` still works), with a [`VerifiedRun`] in the request's extensions. Then:
//!
//! | your service answers | the claim | so that |
//! |---|---|---|
//! | 2xx | completed | later deliveries of the run are answered 200 without calling you |
//! | anything else, or fails | released | the sender's retry runs it again |
//!
//! A duplicate of a run still in flight is answered 503 with `Retry-After` (your service may
//! still fail); one already done is answered 200 without calling your service. Rejections
//! (forged, too large, not the provider's payload, ...) are answered as
//! [`Receiver::receive`] answers them. If the request's future is dropped while your service
//! runs (the sender hung up), the claim is released.
//!
//! ```
//! use axum::{routing::post, Extension, Json, Router};
//! use runhook::tower::{VerifiedRun, WebhookLayer};
//! use runhook::{payload::Provider, Receiver, Secret, SkyvernSignature};
//!
//! async fn on_run(Extension(run): Extension<VerifiedRun>, Json(body): Json<serde_json::Value>) -> &'static str {
//!     println!("{} {}: {}", run.event.provider, run.event.dedup_key, body["status"]);
//!     "ok"
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = SkyvernSignature::new(Secret::new("sk_live_example")?);
//! let receiver = Receiver::builder(Provider::Skyvern, verifier)
//!     .build_inline()?; // your endpoint is the handler
//! let app: Router = Router::new()
//!     .route("/webhooks/skyvern", post(on_run))
//!     .layer(WebhookLayer::new(receiver));
//! # let _ = app; Ok(()) }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyDataStream, Full};
pub use tower_layer::Layer;
pub use tower_service::Service;

use crate::budget::Charge;
pub use crate::middleware::WebhookLayer;
use crate::receiver::Authentication;
pub use crate::receiver::VerifiedRun;
use crate::receiver::{HandlerAnswer, InlineReceiver, Outcome, Pipeline, Receiver};
use crate::response::http_response;
use runhook_core::BeforeBody;

/// A boxed, sendable future, as the services here return.
type ServiceFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// Reads `request`'s body under `receiver`'s rules; `Err` is the answer, already counted.
pub(crate) async fn read_request<B>(
    pipeline: &Pipeline,
    request: Request<B>,
) -> Result<(http::request::Parts, Bytes), Outcome>
where
    B: http_body::Body<Data = Bytes>,
{
    let (parts, body) = request.into_parts();
    let declared = crate::body::content_length(&parts.headers);
    let mut chunks = Box::pin(BodyDataStream::new(body));
    let body = pipeline.read_body(&mut chunks, declared).await?;
    Ok((parts, body))
}

/// The request's path as routed: behind axum's nesting, the original one (a `{secret}`
/// segment of a nested route is in it).
pub(crate) fn request_path(parts: &http::request::Parts) -> String {
    #[cfg(feature = "axum")]
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        return original.path().to_string();
    }
    parts.uri.path().to_string()
}

/// The receiver as a service: each request answered as [`Receiver::receive`] answers it (the
/// handler runs in the background).
impl<B> Service<Request<B>> for Receiver
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Send,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ServiceFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let receiver = self.clone();
        Box::pin(async move { Ok(answer(&receiver, request).await) })
    }
}

/// Answers one request with `receiver`, the background handler style.
pub(crate) async fn answer<B, R>(receiver: &Receiver, request: Request<B>) -> Response<R>
where
    B: http_body::Body<Data = Bytes>,
    R: From<String>,
{
    let pipeline = receiver.pipeline();
    let (parts, body) = request.into_parts();
    let path = request_path(&parts);
    // A header token or a path secret is checked before the body is read: a forgery is
    // refused unread, a genuine body is not counted as unauthenticated.
    let (charge, verified) = match pipeline.authenticate_before_body(&parts.headers, &path) {
        BeforeBody::Decided(Err(err)) => {
            return http_response(&pipeline.refused_before_body(err));
        }
        BeforeBody::Decided(Ok(verified)) => (Charge::none(), Some(verified)),
        BeforeBody::NeedsBody => (pipeline.new_charge(), None),
    };
    let declared = crate::body::content_length(&parts.headers);
    let mut chunks = Box::pin(BodyDataStream::new(body));
    let read = pipeline.read_charged(&mut chunks, declared, charge).await;
    let (body, charge) = match read {
        Ok(read) => read,
        Err(outcome) => return http_response(&outcome),
    };
    let authentication = match verified {
        Some(verified) => Authentication::Done(verified),
        None => Authentication::Pending(charge),
    };
    let outcome = receiver
        .receive_read(&parts.headers, &path, body, authentication)
        .await;
    http_response(&outcome)
}

/// The middleware form in tower: [`WebhookLayer`] wraps an inner service; see the
/// [module docs](self).
impl<S> Layer<S> for WebhookLayer {
    type Service = WebhookService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebhookService {
            receiver: self.receiver.clone(),
            inner,
        }
    }
}

/// The service [`WebhookLayer`] wraps around `S`.
#[derive(Clone)]
pub struct WebhookService<S> {
    receiver: InlineReceiver,
    inner: S,
}

impl<S, B, R> Service<Request<B>> for WebhookService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: http_body::Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Send,
    R: From<String> + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ServiceFuture<Response<R>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service that was polled ready runs this request; its clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let receiver = self.receiver.clone();
        Box::pin(run_inline(receiver, inner, request))
    }
}

/// The middleware's path for one request: read, claim, call `inner`, settle the claim by its
/// answer.
async fn run_inline<S, B, R>(
    receiver: InlineReceiver,
    mut inner: S,
    request: Request<B>,
) -> Result<Response<R>, S::Error>
where
    S: Service<Request<B>, Response = Response<R>>,
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    R: From<String>,
{
    let (mut parts, body) = match read_request(receiver.pipeline(), request).await {
        Ok(read) => read,
        Err(outcome) => return Ok(http_response(&outcome)),
    };
    let path = request_path(&parts);
    let claimed = match receiver
        .claim_event(&parts.headers, &path, body.clone())
        .await
    {
        Ok(claimed) => claimed,
        Err(outcome) => return Ok(http_response(&outcome)),
    };
    let (run, claim) = claimed.into_verified_run();
    parts.extensions.insert(run);
    let answered = inner.call(Request::from_parts(parts, B::from(body))).await;
    claim.settle(handler_answer(&answered)).await;
    answered
}

/// How the service behind a middleware answered: a 2xx, or anything else (an error too).
pub(crate) fn handler_answer<R, E>(answered: &Result<Response<R>, E>) -> HandlerAnswer {
    match answered {
        Ok(response) => HandlerAnswer::of(response.status().as_u16()),
        Err(_) => HandlerAnswer::Failure,
    }
}
