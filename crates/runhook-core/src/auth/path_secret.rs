//! A hard-to-guess segment of the request path, as SmartBrowse suggests
//! (`/webhooks/smartbrowse/8x4Kpz...`).

use super::DigestSet;
use crate::error::{AuthError, SchemeKind};
use crate::secret::Secrets;
use crate::verify::{BeforeBody, Delivery, Verified, Verifier};

/// Which segment of the path holds the secret. Segments are the non-empty parts between `/`,
/// counted from 0, before any `?` or `#`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentPosition {
    /// The last segment (`/webhooks/smartbrowse/<secret>`).
    Last,
    /// The segment at this index (`/hooks/<secret>/smartbrowse` is index 1).
    Index(usize),
}

/// Accepts a delivery whose path segment equals one of the accepted secrets, compared in
/// constant time. The segment is compared as sent, without percent-decoding: choose secrets
/// from URL-safe characters (letters, digits, `-`, `_`).
///
/// ```
/// use runhook_core::{Delivery, PathSecret, Secret, Verifier};
///
/// let scheme = PathSecret::last_segment(Secret::new("8x4KpzQ7")?);
/// let headers: [(&str, &str); 0] = [];
/// let delivery = Delivery::new(&headers, b"{}").with_path("/webhooks/smartbrowse/8x4KpzQ7");
/// assert!(scheme.verify(&delivery).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PathSecret {
    position: SegmentPosition,
    secrets: DigestSet,
}

impl PathSecret {
    /// The secret is the path's last segment.
    pub fn last_segment(secrets: impl Into<Secrets>) -> Self {
        Self::at(SegmentPosition::Last, secrets)
    }

    /// The secret is the segment at `position`.
    pub fn at(position: SegmentPosition, secrets: impl Into<Secrets>) -> Self {
        let secrets: Secrets = secrets.into();
        Self {
            position,
            secrets: DigestSet::new(secrets.iter().map(|s| s.expose())),
        }
    }

    fn segment<'a>(&self, path: &'a str) -> Option<&'a str> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        match self.position {
            SegmentPosition::Last => segments.next_back(),
            SegmentPosition::Index(i) => segments.nth(i),
        }
    }
}

impl Verifier for PathSecret {
    /// The secret is in the path: decided before the body.
    fn verify_before_body(&self, delivery: &Delivery<'_>) -> BeforeBody {
        BeforeBody::Decided(self.verify(delivery))
    }

    fn verify(&self, delivery: &Delivery<'_>) -> Result<Verified, AuthError> {
        let segment = self
            .segment(delivery.path)
            .ok_or_else(|| AuthError::MissingPathSegment {
                position: match self.position {
                    SegmentPosition::Last => "at the end".to_string(),
                    SegmentPosition::Index(i) => format!("at index {i}"),
                },
            })?;
        let index = self
            .secrets
            .position(segment.as_bytes())
            .ok_or(AuthError::PathSecretMismatch)?;
        Ok(Verified::new(SchemeKind::PathSecret, index))
    }

    fn schemes(&self) -> Vec<SchemeKind> {
        vec![SchemeKind::PathSecret]
    }
}

impl std::fmt::Debug for PathSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathSecret")
            .field("position", &self.position)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scheme: &PathSecret, path: &str) -> Result<Verified, AuthError> {
        let headers: [(&str, &str); 0] = [];
        scheme.verify(&Delivery::new(&headers, b"").with_path(path))
    }

    #[test]
    fn last_segment_matches_with_query_and_trailing_slash() {
        let scheme = PathSecret::last_segment(Secrets::from_values(["s3cret", "n3w"]).unwrap());
        assert_eq!(
            check(&scheme, "/webhooks/sb/s3cret").unwrap().key_index,
            Some(0)
        );
        assert_eq!(
            check(&scheme, "/webhooks/sb/n3w/?x=1").unwrap().key_index,
            Some(1)
        );
        assert_eq!(
            check(&scheme, "/webhooks/sb/s3cret#frag").unwrap().scheme,
            SchemeKind::PathSecret
        );
        assert!(matches!(
            check(&scheme, "/webhooks/sb/s3cre"),
            Err(AuthError::PathSecretMismatch)
        ));
        assert!(matches!(
            check(&scheme, "/webhooks/sb/s3cretx"),
            Err(AuthError::PathSecretMismatch)
        ));
        assert!(matches!(
            check(&scheme, "/"),
            Err(AuthError::MissingPathSegment { .. })
        ));
        assert!(matches!(
            check(&scheme, ""),
            Err(AuthError::MissingPathSegment { .. })
        ));
    }

    #[test]
    fn indexed_segment_matches_only_there() {
        let scheme = PathSecret::at(
            SegmentPosition::Index(1),
            Secrets::from_values(["k"]).unwrap(),
        );
        assert!(check(&scheme, "/hooks/k/smartbrowse").is_ok());
        assert!(matches!(
            check(&scheme, "/k/hooks"),
            Err(AuthError::PathSecretMismatch)
        ));
        assert!(matches!(
            check(&scheme, "/hooks"),
            Err(AuthError::MissingPathSegment { .. })
        ));
    }

    #[test]
    fn percent_encoding_is_not_decoded() {
        let scheme = PathSecret::last_segment(Secrets::from_values(["a b"]).unwrap());
        assert!(check(&scheme, "/x/a%20b").is_err());
    }
}
