//! Accept a delivery if any one of several schemes does.

use crate::error::{AuthError, ConfigError, SchemeKind};
use crate::verify::{BeforeBody, Delivery, Verified, Verifier};

/// Tries each scheme in order and accepts with the first that succeeds; the success says which
/// scheme and key matched. When all fail, [`AuthError::NoSchemeMatched`] lists every reason.
///
/// Typical use: SmartBrowse with a secret path *or* a bearer header during a migration.
///
/// ```
/// use runhook_core::{AnyOf, Delivery, HeaderToken, PathSecret, SchemeKind, Secret, Verifier};
///
/// let scheme = AnyOf::new(vec![
///     Box::new(PathSecret::last_segment(Secret::new("s3cretpath")?)),
///     Box::new(HeaderToken::authorization(Secret::new("Bearer t0ken")?)),
/// ])?;
/// let headers = [("authorization", "Bearer t0ken")];
/// let verified = scheme.verify(&Delivery::new(&headers, b"{}").with_path("/hooks/sb"))?;
/// assert_eq!(verified.scheme, SchemeKind::HeaderToken);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AnyOf {
    schemes: Vec<Box<dyn Verifier>>,
}

impl AnyOf {
    /// Combines `schemes`; refuses an empty list (it would accept nothing, silently).
    pub fn new(schemes: Vec<Box<dyn Verifier>>) -> Result<Self, ConfigError> {
        if schemes.is_empty() {
            return Err(ConfigError::NoSchemes);
        }
        Ok(Self { schemes })
    }
}

impl Verifier for AnyOf {
    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        let mut errors = Vec::with_capacity(self.schemes.len());
        for scheme in &self.schemes {
            match scheme.verify(delivery) {
                Ok(verified) => return Ok(verified),
                Err(err) => errors.push(err),
            }
        }
        Err(AuthError::NoSchemeMatched(errors))
    }

    fn verify_exact(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        let mut errors = Vec::with_capacity(self.schemes.len());
        for scheme in &self.schemes {
            match scheme.verify_exact(delivery) {
                Ok(verified) => return Ok(verified),
                Err(err) => errors.push(err),
            }
        }
        Err(AuthError::NoSchemeMatched(errors))
    }

    /// Accepted before the body if one scheme accepts then; refused only if every scheme
    /// refuses then; otherwise the body is needed.
    fn verify_before_body(&self, delivery: &Delivery<'_>) -> BeforeBody {
        let mut errors = Vec::with_capacity(self.schemes.len());
        let mut needs_body = false;
        for scheme in &self.schemes {
            match scheme.verify_before_body(delivery) {
                BeforeBody::Decided(Ok(verified)) => return BeforeBody::Decided(Ok(verified)),
                BeforeBody::Decided(Err(err)) => errors.push(err),
                BeforeBody::NeedsBody => needs_body = true,
            }
        }
        if needs_body {
            BeforeBody::NeedsBody
        } else {
            BeforeBody::Decided(Err(AuthError::NoSchemeMatched(errors)))
        }
    }

    fn has_fallback(&self) -> bool {
        self.schemes.iter().any(|scheme| scheme.has_fallback())
    }

    fn credential_headers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.schemes.iter().flat_map(|s| s.credential_headers()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    fn schemes(&self) -> Vec<SchemeKind> {
        let mut kinds = Vec::new();
        for kind in self.schemes.iter().flat_map(|s| s.schemes()) {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds
    }
}

impl std::fmt::Debug for AnyOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyOf")
            .field("schemes", &self.schemes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{sign_skyvern, HeaderToken, PathSecret, SkyvernSignature};
    use crate::error::SchemeKind;
    use crate::secret::Secret;

    #[test]
    fn header_and_path_schemes_decide_before_the_body_and_signatures_do_not() {
        let token = || HeaderToken::authorization(Secret::new("Bearer t0k").unwrap());
        let path = || PathSecret::last_segment(Secret::new("p4th").unwrap());
        let skyvern = || SkyvernSignature::new(Secret::new("sk").unwrap());
        fn at<'a>(headers: &'a http::HeaderMap, path: &'a str) -> Delivery<'a> {
            Delivery::new(headers, b"").with_path(path)
        }
        let mut good = http::HeaderMap::new();
        good.insert("authorization", "Bearer t0k".parse().unwrap());
        let (good, none) = (&good, &http::HeaderMap::new());
        let decided_ok = |b: BeforeBody| matches!(b, BeforeBody::Decided(Ok(_)));
        let decided_err = |b: BeforeBody| matches!(b, BeforeBody::Decided(Err(_)));
        assert!(decided_ok(token().verify_before_body(&at(good, "/x"))));
        assert!(decided_err(token().verify_before_body(&at(none, "/x"))));
        assert!(decided_ok(path().verify_before_body(&at(none, "/h/p4th"))));
        assert!(decided_err(path().verify_before_body(&at(none, "/h/nope"))));
        assert_eq!(
            skyvern().verify_before_body(&at(none, "/x")),
            BeforeBody::NeedsBody
        );
        let both = AnyOf::new(vec![Box::new(token()), Box::new(path())]).unwrap();
        assert!(decided_ok(both.verify_before_body(&at(none, "/h/p4th"))));
        assert!(decided_err(both.verify_before_body(&at(none, "/h/nope"))));
        let with_signature = AnyOf::new(vec![Box::new(token()), Box::new(skyvern())]).unwrap();
        assert!(decided_ok(
            with_signature.verify_before_body(&at(good, "/x"))
        ));
        assert_eq!(
            with_signature.verify_before_body(&at(none, "/x")),
            BeforeBody::NeedsBody
        );
    }

    #[test]
    fn first_success_wins_and_all_failures_are_listed() {
        let key = Secret::new("sk").unwrap();
        let scheme = AnyOf::new(vec![
            Box::new(SkyvernSignature::new(key.clone())),
            Box::new(PathSecret::last_segment(Secret::new("p4th").unwrap())),
        ])
        .unwrap();
        let sig = sign_skyvern(&key, b"{}");
        let headers = [("x-skyvern-signature", sig.as_str())];
        let by_sig = scheme
            .verify(&Delivery::new(&headers, b"{}").with_path("/x"))
            .unwrap();
        assert_eq!(by_sig.scheme, SchemeKind::Skyvern);
        let none: [(&str, &str); 0] = [];
        let by_path = scheme
            .verify(&Delivery::new(&none, b"{}").with_path("/x/p4th"))
            .unwrap();
        assert_eq!(
            (by_path.scheme, by_path.key_index),
            (SchemeKind::PathSecret, Some(0))
        );
        match scheme.verify(&Delivery::new(&none, b"{}").with_path("/x")) {
            Err(AuthError::NoSchemeMatched(errors)) => {
                assert_eq!(errors.len(), 2);
                assert!(matches!(errors[0], AuthError::MissingHeader { .. }));
                assert!(matches!(errors[1], AuthError::PathSecretMismatch));
            }
            other => panic!("expected NoSchemeMatched, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_combination_is_refused() {
        assert_eq!(AnyOf::new(Vec::new()).unwrap_err(), ConfigError::NoSchemes);
    }

    #[test]
    fn header_token_reports_its_key_index_through_any_of() {
        let tokens = crate::secret::Secrets::from_values(["a", "b"]).unwrap();
        let scheme = AnyOf::new(vec![Box::new(HeaderToken::authorization(tokens))]).unwrap();
        let headers = [("authorization", "b")];
        assert_eq!(
            scheme
                .verify(&Delivery::new(&headers, b""))
                .unwrap()
                .key_index,
            Some(1)
        );
    }

    #[test]
    fn exact_check_and_fallback_are_those_of_the_members() {
        let key = Secret::new("sk").unwrap();
        let signed = br#"{"a":1}"#;
        let sig = sign_skyvern(&key, signed);
        let headers = [("x-skyvern-signature", sig.as_str())];
        let reserialized = br#"{ "a": 1.0 }"#;
        let delivery = Delivery::new(&headers, reserialized).with_path("/x");
        let token = || Box::new(HeaderToken::new("x-t", Secret::new("t0k").unwrap()).unwrap());
        let lenient = AnyOf::new(vec![
            token(),
            Box::new(SkyvernSignature::new(key.clone()).with_canonical_fallback()),
        ])
        .unwrap();
        assert!(lenient.has_fallback());
        assert!(matches!(
            lenient.verify_exact(&delivery),
            Err(AuthError::NoSchemeMatched(errors)) if errors.len() == 2
        ));
        let verified = lenient.verify(&delivery).unwrap();
        assert!(matches!(verified.body, crate::BodyMatch::Canonical { .. }));
        assert_eq!(verified.signed_body().map(|b| &b[..]), Some(&signed[..]));

        let strict = AnyOf::new(vec![token(), Box::new(SkyvernSignature::new(key))]).unwrap();
        assert!(!strict.has_fallback());
        assert!(strict.verify(&delivery).is_err());
    }
}
