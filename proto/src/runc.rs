//! runc's options (`containerd.runc.v1.Options`, generated in [`v1`]), read
//! one way by berthd and the shim, and where runtime binaries are found.

use std::path::PathBuf;

use prost::Message as _;
use prost_types::Any;

pub use crate::generated::containerd::runc::v1;

/// Why runtime options were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    /// the `Any` holds another message type
    #[error("options: unsupported type {0:?} (want containerd.runc.v1.Options)")]
    UnsupportedType(String),
    /// the bytes do not decode
    #[error("options: {0}")]
    Malformed(String),
}

/// Decodes `containerd.runc.v1.Options` from an `Any`; an empty `Any` (no
/// type, no bytes) is the default options.
pub fn decode_options(any: &Any) -> Result<v1::Options, OptionsError> {
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(v1::Options::default());
    }
    if !any.type_url.ends_with(crate::type_urls::RUNC_OPTIONS) {
        return Err(OptionsError::UnsupportedType(any.type_url.clone()));
    }
    v1::Options::decode(any.value.as_slice()).map_err(|e| OptionsError::Malformed(e.to_string()))
}

/// `options` as an `Any` of type `containerd.runc.v1.Options`.
pub fn encode_options(options: &v1::Options) -> Any {
    Any {
        type_url: crate::type_urls::RUNC_OPTIONS.to_string(),
        value: options.encode_to_vec(),
    }
}

/// Resolves a runtime binary name (looked up on `PATH`) or path; None
/// when it is nowhere.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_and_refusals() {
        let o = v1::Options {
            binary_name: "crun".into(),
            root: "/r".into(),
            ..Default::default()
        };
        assert_eq!(decode_options(&encode_options(&o)).unwrap(), o);
        assert_eq!(
            decode_options(&Any::default()).unwrap(),
            v1::Options::default()
        );
        let other = Any {
            type_url: "x.Other".into(),
            value: vec![1],
        };
        assert!(matches!(
            decode_options(&other),
            Err(OptionsError::UnsupportedType(_))
        ));
        let junk = Any {
            type_url: crate::type_urls::RUNC_OPTIONS.into(),
            value: vec![0xff, 0xff],
        };
        assert!(matches!(
            decode_options(&junk),
            Err(OptionsError::Malformed(_))
        ));
    }

    #[test]
    fn binaries_are_found_on_path_or_by_path() {
        assert!(find_binary("sh").is_some());
        assert!(find_binary("no-such-binary-berth").is_none());
        assert!(find_binary("/nonexistent/runc").is_none());
    }
}
