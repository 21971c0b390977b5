//! `HeaderToken` (and `PathSecret`, its path-segment twin, and `AnyOf` over both) on arbitrary
//! headers and paths, with part of the configuration taken from the input too.
//!
//! Flags: bit 0 reads the token from the header named by the input's first header line
//! (`HeaderToken::new`, whose name may be invalid: a configuration error, never a panic)
//! instead of `Authorization`; bit 1 also accepts the last header's value as a token; bits 4-7
//! choose the path segment the `PathSecret` reads (0 = the last one, n = index n - 1).
//!
//! Checked against a reference written here: a header token is accepted exactly when the one
//! (trimmed) value equals a configured (trimmed) token, reporting that token's index; a path
//! secret exactly when the chosen segment equals a secret; `AnyOf` accepts exactly when one of
//! them does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runhook_core::{
    AnyOf, AuthError, Delivery, HeaderToken, PathSecret, SchemeKind, Secret, Secrets,
    SegmentPosition, Verifier,
};
use runhook_fuzz::Message;

const TOKENS: [&str; 2] = ["Bearer webrun-fuzz-token", "  padded token\t"];
const PATH_SECRETS: [&str; 2] = ["s3cr3t-segment", "tf7Qm2Kx9sLwPzR4"];

fuzz_target!(|data: &[u8]| {
    let Some(message) = Message::parse(data) else {
        return;
    };
    let mut tokens: Vec<Vec<u8>> = TOKENS.iter().map(|t| t.as_bytes().to_vec()).collect();
    if message.flag(1) {
        if let Some((_, value)) = message.headers.last() {
            tokens.push(value.clone());
        }
    }
    let secrets = match Secrets::from_values(&tokens) {
        Ok(secrets) => secrets,
        Err(err) => {
            // Only an empty or blank token, or a publicly known placeholder, is refused.
            assert!(
                tokens.iter().any(|t| t.trim_ascii().is_empty()
                    || runhook_core::PUBLIC_PLACEHOLDER_KEYS.contains(&t.trim_ascii())),
                "{err}"
            );
            tokens.pop();
            Secrets::from_values(&tokens).unwrap()
        }
    };
    let header_token = if message.flag(0) {
        let Some((name, _)) = message.headers.first() else {
            return;
        };
        match HeaderToken::new(name, secrets) {
            Ok(scheme) => {
                assert_eq!(scheme.header_name(), name.trim().to_ascii_lowercase());
                scheme
            }
            Err(err) => {
                assert!(http::HeaderName::from_bytes(name.trim().as_bytes()).is_err());
                let _ = err.to_string();
                return;
            }
        }
    } else {
        HeaderToken::authorization(secrets)
    };
    let name = header_token.header_name().to_string();

    let delivery = Delivery::new(&message.headers, &message.body).with_path(&message.path);
    let by_header = header_token.verify(&delivery);
    let presented = message.single(&name);
    let expected = presented.and_then(|value| {
        tokens
            .iter()
            .position(|t| !value.is_empty() && t.trim_ascii() == value)
    });
    match &by_header {
        Ok(verified) => {
            assert_eq!(verified.key_index, expected, "accepted the wrong token");
            assert_eq!(verified.scheme, SchemeKind::HeaderToken);
        }
        Err(err) => {
            assert_eq!(expected, None, "refused a configured token: {err}");
            assert_eq!(err.status(), 401);
        }
    }

    let position = match message.flags >> 4 {
        0 => SegmentPosition::Last,
        n => SegmentPosition::Index(usize::from(n - 1)),
    };
    let path_secret = PathSecret::at(
        position,
        Secrets::new(PATH_SECRETS.map(|s| Secret::new(s).unwrap())).unwrap(),
    );
    let by_path = path_secret.verify(&delivery);
    let segment = segment(&message.path, position);
    match &by_path {
        Ok(verified) => {
            let index = verified.key_index.unwrap();
            assert_eq!(segment, Some(PATH_SECRETS[index]));
        }
        Err(AuthError::MissingPathSegment { .. }) => assert_eq!(segment, None),
        Err(err) => {
            assert!(matches!(err, AuthError::PathSecretMismatch), "{err}");
            assert!(segment.is_some_and(|s| !PATH_SECRETS.contains(&s)));
        }
    }

    let any = AnyOf::new(vec![Box::new(header_token), Box::new(path_secret)]).unwrap();
    match any.verify(&delivery) {
        Ok(verified) => {
            let first = by_header.as_ref().or(by_path.as_ref()).unwrap();
            assert_eq!(&verified, first);
        }
        Err(AuthError::NoSchemeMatched(errors)) => {
            assert!(by_header.is_err() && by_path.is_err());
            assert_eq!(errors.len(), 2);
        }
        Err(other) => panic!("AnyOf answered {other}"),
    }
});

/// The reference: the path (without query or fragment) split on `/`, empty segments skipped.
fn segment(path: &str, position: SegmentPosition) -> Option<&str> {
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match position {
        SegmentPosition::Last => segments.last().copied(),
        SegmentPosition::Index(i) => segments.get(i).copied(),
        _ => unreachable!(),
    }
}
