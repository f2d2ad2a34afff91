//! Content digests (`sha256:<64 hex>`), parsed once at the edge. A refused
//! string is echoed shortened (see [`crate::echo`]).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Why a digest string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// the digest has no `algorithm:` prefix
    #[error("digest {0:?} has no algorithm prefix")]
    NoAlgorithm(String),
    /// only sha256 is served
    #[error("digest {0:?} uses an unsupported algorithm")]
    Unsupported(String),
    /// the encoded part is not 64 lowercase hex characters
    #[error("digest {0:?} is not 64 lowercase hex characters")]
    BadEncoding(String),
}

/// A validated sha256 digest. Display gives the canonical `sha256:...` form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher computed.
    pub fn from_hasher(h: Sha256) -> Self {
        Self {
            hex: hex::encode(h.finalize()),
        }
    }

    /// The 64 hex characters, without the algorithm; used for file names.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Always "sha256" for now.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s
            .split_once(':')
            .ok_or_else(|| DigestError::NoAlgorithm(echo(s)))?;
        if alg != "sha256" {
            return Err(DigestError::Unsupported(echo(s)));
        }
        let ok = enc.len() == 64 && enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(DigestError::BadEncoding(echo(s)));
        }
        Ok(Self {
            hex: enc.to_owned(),
        })
    }
}

fn echo(s: &str) -> String {
    crate::echo::shorten(s).into_owned()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let d = Digest::of(b"hello");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert!(matches!(
            "nocolon".parse::<Digest>(),
            Err(DigestError::NoAlgorithm(_))
        ));
        assert!(matches!(
            "md5:abc".parse::<Digest>(),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            "sha256:ABC".parse::<Digest>(),
            Err(DigestError::BadEncoding(_))
        ));
        let upper = format!("sha256:{}", d.hex().to_uppercase());
        assert!(upper.parse::<Digest>().is_err());
        let huge = format!("sha256:{}", "0".repeat(3 << 20));
        let msg = huge.parse::<Digest>().unwrap_err().to_string();
        assert!(msg.len() < 512, "echoed {} bytes", msg.len());
    }
}
