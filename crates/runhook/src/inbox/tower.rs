//! The inbox as a tower `Layer` (axum's `Router::layer`), and [`Inbox`] as an axum extractor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use runhook_store::PostgresStore;
use tower_layer::Layer;
use tower_service::Service;

use super::{open, InboxLayer};
use crate::receiver::InlineReceiver;
use crate::response::http_response;
use crate::tower::{handler_answer, read_request, request_path};

impl<S> Layer<S> for InboxLayer {
    type Service = InboxService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InboxService {
            receiver: self.receiver.clone(),
            store: self.store.clone(),
            inner,
        }
    }
}

/// The service [`InboxLayer`] wraps around `S`.
#[derive(Clone)]
pub struct InboxService<S> {
    receiver: InlineReceiver,
    store: PostgresStore,
    inner: S,
}

type ServiceFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<S, B, R> Service<Request<B>> for InboxService<S>
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
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run_in_transaction(
            self.receiver.clone(),
            self.store.clone(),
            inner,
            request,
        ))
    }
}

/// One delivery: read, open the transaction and claim the run in it, call `inner`, then commit
/// the handler's writes with the run's done mark, or roll everything back.
async fn run_in_transaction<S, B, R>(
    receiver: InlineReceiver,
    store: PostgresStore,
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
    let opened = open(&receiver, &store, &parts.headers, &path, body.clone()).await;
    let (inbox, run, opened) = match opened {
        Ok(opened) => opened,
        Err(outcome) => return Ok(http_response(&outcome)),
    };
    parts.extensions.insert(inbox);
    parts.extensions.insert(run);
    let answered = inner.call(Request::from_parts(parts, B::from(body))).await;
    match opened.settle(handler_answer(&answered)).await {
        Ok(()) => answered,
        Err(outcome) => Ok(http_response(&outcome)),
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for super::Inbox {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<super::Inbox>().cloned().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "no inbox: this route is not behind an InboxLayer",
        ))
    }
}
