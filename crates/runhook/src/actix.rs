//! actix-web 4 integration: a ready handler that does everything and acknowledges, an
//! extractor that hands the verified, de-duplicated run to your own handler, and
//! [`ActixHeaders`] to read actix-web's header map without copying.
//!
//! Both read the raw payload themselves, refuse a payload over the receiver's body limit (413,
//! closing the connection, after reading and discarding a bounded amount of the rest so that
//! the sender reads the 413 rather than a reset) or not received within its body read timeout
//! (408, closing the connection), and answer every rejection with the response policy's
//! status and a short plain body. After a 413 whose body was not drained to its end, actix-web
//! itself still reads and discards for its `client_disconnect_timeout` (1 s by default) before
//! closing.
//!
//! **Pitfall:** put nothing that reads the body before them: not a `web::Json<T>` or
//! `web::Bytes` extractor, not a body-logging middleware. Such a layer does not re-serialize
//! anything, but it consumes the payload, and the signature is then checked on what is left.
//!
//! ```
//! use std::sync::Arc;
//! use actix_web::{web, App};
//! use runhook::{payload::{Provider, RunEvent}, HeaderToken, Receiver, Secret};
//!
//! # #[actix_web::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = HeaderToken::authorization(Secret::new("Bearer webrun-token")?);
//! let webrun = Receiver::builder(Provider::WebRun, verifier)
//!     .handler(|event: Arc<RunEvent>| async move {
//!         println!("processed {} {}", event.provider, event.dedup_key);
//!         Ok::<(), std::io::Error>(())
//!     })
//!     .build()?;
//! let app = App::new().route("/webhooks/webrun", runhook::actix::post(webrun));
//! # let _ = app; Ok(()) }
//! ```

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::rc::Rc;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::HttpMessage as _;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, Responder, ResponseError};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use runhook_core::HeaderLookup;

pub use crate::middleware::WebhookLayer;
use crate::receiver::OutcomeKind;
pub use crate::receiver::VerifiedRun;
use crate::receiver::{ClaimedEvent, HandlerAnswer, InlineReceiver, Outcome, Pipeline, Receiver};

/// A `POST` route that receives, acknowledges and hands each delivery to the receiver's
/// handler in the background.
pub fn post(receiver: Receiver) -> actix_web::Route {
    web::post().to(move |request: HttpRequest, payload: web::Payload| {
        let receiver = receiver.clone();
        async move { handle(&receiver, &request, payload.into_inner()).await }
    })
}

/// Answers one request with `receiver` (what [`post`] does), for use in your own handler.
pub async fn handle(receiver: &Receiver, request: &HttpRequest, payload: Payload) -> HttpResponse {
    let body = match read_body(receiver.pipeline(), request, payload).await {
        Ok(body) => body,
        Err(rejection) => return rejection.error_response(),
    };
    let outcome = receiver
        .receive(&ActixHeaders(request.headers()), request.path(), body)
        .await;
    outcome.respond_to(request)
}

/// An outcome is an actix-web answer: its status, `Retry-After` when set, and a short plain
/// body; `Connection: close` after a body read timeout or a body over the limit, so that a
/// stalled connection, or one whose body was not read to its end, is dropped.
impl Responder for Outcome {
    type Body = BoxBody;

    fn respond_to(self, _request: &HttpRequest) -> HttpResponse {
        Rejection::from_outcome(&self).error_response()
    }
}

/// The extractor style: a genuine, new, parsed run, claimed for your handler. The receiver is
/// taken from the app data (`App::new().app_data(receiver)`); rejections and duplicates are
/// answered as the response policy says and never reach your handler.
///
/// Complete the claim when your work is done; if you drop it instead, the claim is released
/// and the sender's retry can succeed.
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use runhook::{actix::Webhook, payload::Provider, Receiver, Secret, SkyvernSignature};
///
/// async fn on_run(Webhook(claimed): Webhook) -> HttpResponse {
///     println!("run {} {}", claimed.event.dedup_key, claimed.event.status);
///     let _ = claimed.complete().await;
///     HttpResponse::Ok().body("ok")
/// }
///
/// # #[actix_web::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = SkyvernSignature::new(Secret::new("sk_live_example")?);
/// let receiver = Receiver::builder(Provider::Skyvern, verifier)
///     .build_inline()?; // your actix handler is the handler
/// let app = App::new().app_data(receiver).route("/webhooks/skyvern", web::post().to(on_run));
/// # let _ = app; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Webhook(pub ClaimedEvent);

/// Why the [`Webhook`] extractor answered instead of calling your handler: the status,
/// `Retry-After` and plain body of the response policy.
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    retry_after: Option<u64>,
    text: String,
    /// Close the connection after answering (the body was not read to its end).
    close: bool,
    /// The rest of a payload over the limit, held until the answer is sent.
    unread: Unread,
}

/// The unread rest of a payload refused as too large, kept alive until the answer's body has
/// been sent. actix-web closes a connection whose payload is still open when the answer is
/// complete; once the payload is dropped, it would instead read a chunked body to its end
/// itself, without bound.
#[derive(Default)]
struct Unread(Cell<Option<Payload>>);

impl std::fmt::Debug for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unread")
    }
}

/// A plain answer body that holds the payload's unread rest until it has been sent.
struct HoldingBody {
    text: Bytes,
    _unread: Option<Payload>,
}

impl MessageBody for HoldingBody {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.text.len() as u64)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if this.text.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(std::mem::take(&mut this.text))))
        }
    }
}

impl Rejection {
    fn from_outcome(outcome: &Outcome) -> Self {
        Self {
            status: StatusCode::from_u16(outcome.status.as_u16())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            retry_after: outcome.retry_after.map(|after| after.as_secs().max(1)),
            text: outcome.body_text(),
            close: outcome.closes_connection(),
            unread: Unread::default(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((RETRY_AFTER, seconds));
        }
        if self.close {
            response.force_close();
        }
        response.content_type("text/plain; charset=utf-8");
        match self.unread.0.take() {
            Some(unread) => response.body(HoldingBody {
                text: Bytes::from(self.text.clone()),
                _unread: Some(unread),
            }),
            None => response.body(self.text.clone()),
        }
    }
}

impl FromRequest for Webhook {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let request = request.clone();
        let payload = payload.take();
        Box::pin(async move {
            let Some(receiver) = request.app_data::<InlineReceiver>().cloned() else {
                return Err(actix_web::error::ErrorInternalServerError(
                    "runhook: no InlineReceiver in the app data",
                ));
            };
            let body = read_body(receiver.pipeline(), &request, payload).await?;
            receiver
                .claim_event(&ActixHeaders(request.headers()), request.path(), body)
                .await
                .map(Webhook)
                .map_err(|outcome| Rejection::from_outcome(&outcome).into())
        })
    }
}

/// The middleware form in actix-web (`App::wrap` / `Resource::wrap`): [`WebhookLayer`] verifies
/// and de-duplicates in front of your existing handlers, which then run inline, with the same
/// semantics as in tower (the table in [`crate::tower`]'s docs): the body is read once under the
/// receiver's rules and handed on unchanged (a downstream `web::Json<T>` still works), a
/// [`VerifiedRun`] is in the request's extensions, a 2xx answer completes
/// the claim and any other answer or an error releases it; a duplicate still in flight gets
/// 503 with `Retry-After`, one already done gets 200 without calling your handler.
///
/// ```
/// use actix_web::{web, App, HttpMessage, HttpRequest, HttpResponse};
/// use runhook::actix::WebhookLayer;
/// use runhook::{payload::Provider, HeaderToken, Receiver, Secret};
/// use runhook::receiver::VerifiedRun;
///
/// async fn on_run(request: HttpRequest, body: web::Json<serde_json::Value>) -> HttpResponse {
///     let run = request.extensions().get::<VerifiedRun>().cloned().expect("set by the middleware");
///     println!("{} {}: {}", run.event.provider, run.event.dedup_key, body["type"]);
///     HttpResponse::Ok().finish()
/// }
///
/// # #[actix_web::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = HeaderToken::authorization(Secret::new("Bearer webrun-token")?);
/// let receiver = Receiver::builder(Provider::WebRun, verifier)
///     .build_inline()?; // your actix handler is the handler
/// let app = App::new().service(
///     web::resource("/webhooks/webrun")
///         .wrap(WebhookLayer::new(receiver))
///         .route(web::post().to(on_run)),
/// );
/// # let _ = app; Ok(()) }
/// ```
impl<S, B> Transform<S, ServiceRequest> for WebhookLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = WebhookService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(WebhookService {
            receiver: self.receiver.clone(),
            service: Rc::new(service),
        }))
    }
}

/// The service [`WebhookLayer`] wraps around yours.
pub struct WebhookService<S> {
    receiver: InlineReceiver,
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for WebhookService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let (receiver, service) = (self.receiver.clone(), self.service.clone());
        Box::pin(run_inline(receiver, service, request))
    }
}

/// The middleware's path for one request: read, claim, call `service`, settle the claim by
/// its answer.
async fn run_inline<S, B>(
    receiver: InlineReceiver,
    service: Rc<S>,
    mut request: ServiceRequest,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let body = match take_body(receiver.pipeline(), &mut request).await {
        Ok(body) => body,
        Err(response) => return Ok(answer_with(request, response)),
    };
    let headers = ActixHeaders(request.headers());
    let claimed = receiver
        .claim_event(&headers, request.path(), body.clone())
        .await;
    let claimed = match claimed {
        Ok(claimed) => claimed,
        Err(outcome) => {
            let response = outcome.respond_to(request.request());
            return Ok(answer_with(request, response));
        }
    };
    let (run, claim) = claimed.into_verified_run();
    request.extensions_mut().insert(run);
    request.set_payload(Payload::from(body));
    let answered = service.call(request).await;
    claim.settle(handler_answer(&answered)).await;
    answered.map(ServiceResponse::map_into_left_body)
}

/// The request's whole body, read under the receiver's rules (the middleware forms); or the
/// response that refuses it.
pub(crate) async fn take_body(
    pipeline: &Pipeline,
    request: &mut ServiceRequest,
) -> Result<Bytes, HttpResponse> {
    let payload = request.take_payload();
    read_body(pipeline, request.request(), payload)
        .await
        .map_err(|rejection| rejection.error_response())
}

/// `response` as the answer to `request`, in place of the wrapped service's.
pub(crate) fn answer_with<B>(
    request: ServiceRequest,
    response: HttpResponse,
) -> ServiceResponse<EitherBody<B>> {
    request.into_response(response).map_into_right_body()
}

/// How the wrapped service answered: a 2xx, or anything else (an error too).
pub(crate) fn handler_answer<B>(
    answered: &Result<ServiceResponse<B>, actix_web::Error>,
) -> HandlerAnswer {
    match answered {
        Ok(response) => HandlerAnswer::of(response.status().as_u16()),
        Err(_) => HandlerAnswer::Failure,
    }
}

/// Reads the whole payload under the receiver's rules ([`Receiver::read_body`]); a payload
/// refused as too large keeps its unread rest with the rejection until the answer is sent.
async fn read_body(
    pipeline: &Pipeline,
    request: &HttpRequest,
    mut payload: Payload,
) -> Result<Bytes, Rejection> {
    let declared = crate::body::content_length(&ActixHeaders(request.headers()));
    match pipeline.read_body(&mut payload, declared).await {
        Ok(bytes) => Ok(bytes),
        Err(outcome) => {
            let rejection = Rejection::from_outcome(&outcome);
            if matches!(outcome.kind, OutcomeKind::TooLarge { .. }) {
                rejection.unread.0.set(Some(payload));
            }
            Err(rejection)
        }
    }
}

/// actix-web's header map seen through [`HeaderLookup`], borrowed without copying.
///
/// ```
/// use runhook::actix::ActixHeaders;
/// use runhook::{HeaderToken, Secret, Verifier};
/// use runhook::verify::Delivery;
///
/// let request = actix_web::test::TestRequest::default()
///     .insert_header(("Authorization", "Bearer t0ken"))
///     .to_http_request();
/// let headers = ActixHeaders(request.headers());
/// let scheme = HeaderToken::authorization(Secret::new("Bearer t0ken")?);
/// assert!(scheme.verify(&Delivery::new(&headers, b"{}")).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ActixHeaders<'a>(pub &'a HeaderMap);

impl HeaderLookup for ActixHeaders<'_> {
    fn visit_values<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> ControlFlow<()>) {
        for value in self.0.get_all(name) {
            if visit(value.as_bytes()).is_break() {
                return;
            }
        }
    }

    fn visit_all(&self, visit: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self.0.iter() {
            visit(name.as_str(), value.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runhook_core::{single_header, SingleHeader};

    #[test]
    fn sees_every_value_case_insensitively() {
        let request = actix_web::test::TestRequest::default()
            .append_header(("X-Token", "a"))
            .append_header(("x-token", "b"))
            .to_http_request();
        let headers = ActixHeaders(request.headers());
        assert_eq!(
            single_header(&headers, "x-token"),
            SingleHeader::Conflicting
        );
        assert_eq!(
            single_header(&headers, "X-TOKEN"),
            SingleHeader::Conflicting
        );
        assert_eq!(single_header(&headers, "absent"), SingleHeader::Missing);
    }
}
