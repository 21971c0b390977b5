//! The middleware form's one type for every framework: [`WebhookLayer`] in front of your own
//! handler, which runs inline. tower's `Layer` impl is in `tower.rs`, actix-web's `Transform`
//! impl in `actix.rs`.

use crate::receiver::InlineReceiver;

/// Verifies and de-duplicates in front of your existing handler, which then runs inline: a 2xx
/// answer completes the run's claim, anything else releases it. The same type is a tower
/// `Layer` (feature `tower`; axum's `Router::layer`) and an actix-web `Transform` (feature
/// `actix`; `App::wrap`); see the `runhook::tower` and `runhook::actix` docs.
#[derive(Clone)]
pub struct WebhookLayer {
    pub(crate) receiver: InlineReceiver,
}

impl WebhookLayer {
    /// The middleware for `receiver`'s route (built with
    /// [`build_inline`](crate::ReceiverBuilder::build_inline): your handler is the handler).
    pub fn new(receiver: InlineReceiver) -> Self {
        Self { receiver }
    }
}
