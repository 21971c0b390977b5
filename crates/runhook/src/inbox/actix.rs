//! The inbox as an actix-web `Transform` (`wrap`), and [`Inbox`] as an actix-web extractor.

use std::future::{ready, Ready};
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, Responder as _};
use futures_util::future::LocalBoxFuture;
use runhook_store::PostgresStore;

use super::{open, Inbox, InboxLayer};
use crate::actix::{answer_with, handler_answer, take_body, ActixHeaders};
use crate::receiver::InlineReceiver;

/// The inbox in actix-web: `web::resource(path).wrap(InboxLayer::new(builder, store)?)`.
impl<S, B> Transform<S, ServiceRequest> for InboxLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ActixInboxService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ActixInboxService {
            receiver: self.receiver.clone(),
            store: self.store.clone(),
            service: Rc::new(service),
        }))
    }
}

/// The service [`InboxLayer`] wraps around yours in actix-web.
pub struct ActixInboxService<S> {
    receiver: InlineReceiver,
    store: PostgresStore,
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for ActixInboxService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let (receiver, store) = (self.receiver.clone(), self.store.clone());
        Box::pin(run_in_transaction(
            receiver,
            store,
            self.service.clone(),
            request,
        ))
    }
}

/// One delivery: read, open the transaction and claim the run in it, call `service`, then
/// commit the handler's writes with the run's done mark, or roll everything back.
async fn run_in_transaction<S, B>(
    receiver: InlineReceiver,
    store: PostgresStore,
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
    let opened = open(&receiver, &store, &headers, request.path(), body.clone()).await;
    let (inbox, run, opened) = match opened {
        Ok(opened) => opened,
        Err(outcome) => {
            let response = outcome.respond_to(request.request());
            return Ok(answer_with(request, response));
        }
    };
    request.extensions_mut().insert(inbox);
    request.extensions_mut().insert(run);
    request.set_payload(Payload::from(body));
    let answered = service.call(request).await;
    match opened.settle(handler_answer(&answered)).await {
        Ok(()) => answered.map(ServiceResponse::map_into_left_body),
        Err(outcome) => match answered {
            Ok(response) => {
                let (request, _) = response.into_parts();
                let response = outcome.respond_to(&request);
                Ok(ServiceResponse::new(request, response).map_into_right_body())
            }
            Err(err) => Err(err),
        },
    }
}

/// The extractor: the [`Inbox`] the layer put in the request's extensions.
impl FromRequest for Inbox {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(request.extensions().get::<Inbox>().cloned().ok_or_else(|| {
            actix_web::error::ErrorInternalServerError(
                "no inbox: this route is not behind an InboxLayer",
            )
        }))
    }
}
