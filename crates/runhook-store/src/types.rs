//! The values a store hands out and keeps: claims, tokens and body fingerprints.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::RngExt as _;

/// The outcome of [`IdempotencyStore::claim`](crate::IdempotencyStore::claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a claim says whether this caller may run the work"]
pub enum Claim {
    /// The caller now holds the key: run the work, then `complete` (or `release`) with this
    /// token.
    Acquired(Token),
    /// Another caller holds the key and its lease has not lapsed.
    InFlight {
        /// Whether the first body's fingerprint equals the one passed to this claim.
        same_payload: bool,
        /// How long until the holder's lease lapses, when the store knows (a natural
        /// `Retry-After`).
        expires_in: Option<Duration>,
    },
    /// The work was completed and the key is still inside its done window.
    Done {
        /// Whether the first body's fingerprint equals the one passed to this claim.
        same_payload: bool,
    },
}

impl Claim {
    /// The token, if this claim was acquired.
    pub fn token(&self) -> Option<Token> {
        match self {
            Claim::Acquired(t) => Some(*t),
            _ => None,
        }
    }

    /// Whether the claim was acquired.
    pub fn is_acquired(&self) -> bool {
        matches!(self, Claim::Acquired(_))
    }

    /// For a duplicate (in flight or done): whether its body matches the first one's.
    /// `None` for an acquired claim.
    pub fn same_payload(&self) -> Option<bool> {
        match self {
            Claim::Acquired(_) => None,
            Claim::InFlight { same_payload, .. } | Claim::Done { same_payload } => {
                Some(*same_payload)
            }
        }
    }
}

/// The proof of holding a claimed key: 128 random bits, fresh for every acquired claim.
///
/// Drawn from `rand`'s thread-local CSPRNG (ChaCha, seeded and reseeded from the operating
/// system), so it is unguessable and, for all practical purposes, unique. Its text form is 32
/// lowercase hex digits ([`Display`](fmt::Display) and [`FromStr`]), so it can travel with a
/// job through a queue and be used by another process.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; 16]);

impl Token {
    /// Length of the text form, in bytes.
    pub const HEX_LEN: usize = 32;

    /// Draws a fresh random token.
    pub fn random() -> Self {
        Token(rand::rng().random::<u128>().to_le_bytes())
    }

    /// Builds a token from its raw bytes (for a store backend or a queue).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Token(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub(crate) fn hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::encode_to_slice(self.0, &mut out).expect("32 bytes hold 16 as hex");
        out
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        f.write_str(std::str::from_utf8(&hex).expect("hex is ASCII"))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({self})")
    }
}

impl FromStr for Token {
    type Err = ParseHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        decode_hex(s, &mut out)?;
        Ok(Token(out))
    }
}

/// A 128-bit hash of a delivery's raw body (XXH3-128), kept with each record so that a
/// duplicate can say whether its body equals the first one.
///
/// It only tells "same body" from "other body" for counting and logging; nothing is decided on
/// it, and only a sender that can already authenticate could craft a collision. So it needs a
/// hash that is stable across processes and versions (records are shared through Redis), not a
/// cryptographic one: XXH3 reads a webhook body many times faster than SHA-256, and the hash
/// sits on every delivery's path.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// Length of the text form, in bytes.
    pub const HEX_LEN: usize = 32;

    /// The fingerprint of `body`: its XXH3-128 (seed 0), big-endian.
    pub fn of(body: &[u8]) -> Self {
        Fingerprint(xxhash_rust::xxh3::xxh3_128(body).to_be_bytes())
    }

    /// Builds a fingerprint from a hash computed elsewhere.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Fingerprint(bytes)
    }

    /// The raw hash.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub(crate) fn hex(&self) -> [u8; Self::HEX_LEN] {
        let mut out = [0u8; Self::HEX_LEN];
        hex::encode_to_slice(self.0, &mut out).expect("32 bytes hold 16 as hex");
        out
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        f.write_str(std::str::from_utf8(&hex).expect("hex is ASCII"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = ParseHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        decode_hex(s, &mut out)?;
        Ok(Fingerprint(out))
    }
}

/// A [`Token`] or [`Fingerprint`] text was not the expected number of hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex digits, got {got} characters{}", if *.bad_digit { " with a non-hex digit" } else { "" })]
#[non_exhaustive]
pub struct ParseHexError {
    /// How many hex digits were expected.
    pub expected: usize,
    /// How many characters were given.
    pub got: usize,
    /// Whether the length was right but a character was not a hex digit.
    pub bad_digit: bool,
}

fn decode_hex(s: &str, out: &mut [u8]) -> Result<(), ParseHexError> {
    let expected = out.len() * 2;
    if s.len() != expected {
        return Err(ParseHexError {
            expected,
            got: s.len(),
            bad_digit: false,
        });
    }
    hex::decode_to_slice(s, out).map_err(|_| ParseHexError {
        expected,
        got: s.len(),
        bad_digit: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_round_trips_and_tokens_differ() {
        let a = Token::random();
        let b = Token::random();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), Token::HEX_LEN);
        assert_eq!(text.parse::<Token>().unwrap(), a);
        assert!("xyz".parse::<Token>().is_err());
        assert!("g".repeat(32).parse::<Token>().unwrap_err().bad_digit);
    }

    #[test]
    fn fingerprint_is_xxh3_128_of_the_body() {
        // XXH3-128 of "" and "{}", as Python's `xxhash.xxh3_128_hexdigest` gives them.
        assert_eq!(
            Fingerprint::of(b"").to_string(),
            "99aa06d3014798d86001c324468d497f"
        );
        assert_eq!(
            Fingerprint::of(b"{}").to_string(),
            "dc7048f8f8747f561349cde127705c16"
        );
        let fp = Fingerprint::of(b"{}");
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
        assert_ne!(fp, Fingerprint::of(b"{ }"));
    }

    #[test]
    fn claim_accessors() {
        let t = Token::random();
        assert_eq!(Claim::Acquired(t).token(), Some(t));
        assert_eq!(Claim::Acquired(t).same_payload(), None);
        let dup = Claim::Done {
            same_payload: false,
        };
        assert!(!dup.is_acquired());
        assert_eq!(dup.same_payload(), Some(false));
    }
}

/// Where a key stands, as [`IdempotencyStore::state`](crate::IdempotencyStore::state) reads
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// No record: never claimed, released, or its done window passed.
    Absent,
    /// Claimed, its lease running.
    InFlight,
    /// Processed, within its done window.
    Done,
}
