//! actix-web 4 integration.

use std::ops::ControlFlow;

use actix_web::http::header::HeaderMap;
use runhook_core::HeaderLookup;

/// actix-web's header map seen through [`HeaderLookup`], borrowed without copying.
///
/// ```
/// use runhook::actix::ActixHeaders;
/// use runhook::{Delivery, HeaderToken, Secret, Verifier};
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
