//! containerd's identifier rules, shared by namespaces, containers, leases,
//! snapshots keys' components and ingest refs' checks.
//!
//! An identifier is 1..=76 characters of `[A-Za-z0-9]`, where single `.`, `_`
//! or `-` may separate alphanumeric runs (so no leading/trailing or doubled
//! separators, no `/`, no `..`, no NUL).

/// Longest identifier containerd accepts.
pub const MAX_LEN: usize = 76;

/// Why an identifier was refused; the message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentifierError {
    /// empty
    #[error("{field}: identifier must not be empty")]
    Empty {
        /// which field
        field: &'static str,
    },
    /// longer than [`MAX_LEN`]
    #[error("{field}: identifier {value:?} is longer than {MAX_LEN} characters")]
    TooLong {
        /// which field
        field: &'static str,
        /// the (truncated) value
        value: String,
    },
    /// a character or separator placement that is not allowed
    #[error("{field}: identifier {value:?} must match [A-Za-z0-9]+([._-][A-Za-z0-9]+)*")]
    Invalid {
        /// which field
        field: &'static str,
        /// the value, shortened (see [`crate::echo`])
        value: String,
    },
}

/// Checks `value` against containerd's identifier grammar.
pub fn validate(field: &'static str, value: &str) -> Result<(), IdentifierError> {
    if value.is_empty() {
        return Err(IdentifierError::Empty { field });
    }
    if value.len() > MAX_LEN {
        return Err(IdentifierError::TooLong {
            field,
            value: value.chars().take(MAX_LEN).collect(),
        });
    }
    let mut prev_sep = true; // a separator may not come first
    for b in value.bytes() {
        let sep = matches!(b, b'.' | b'_' | b'-');
        if sep {
            if prev_sep {
                return Err(invalid(field, value));
            }
        } else if !b.is_ascii_alphanumeric() {
            return Err(invalid(field, value));
        }
        prev_sep = sep;
    }
    if prev_sep {
        return Err(invalid(field, value));
    }
    Ok(())
}

fn invalid(field: &'static str, value: &str) -> IdentifierError {
    IdentifierError::Invalid {
        field,
        value: crate::echo::shorten(value).into_owned(),
    }
}

/// Label keys and values: containerd limits a label (key + value) to 4096
/// bytes; we also refuse empty keys and NUL bytes.
pub fn validate_label(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("labels: label key must not be empty".into());
    }
    if key.len() + value.len() > 4096 {
        return Err(format!(
            "labels: label {} exceeds the 4096 byte maximum",
            crate::echo::Echo(key)
        ));
    }
    if key.contains('\0') || value.contains('\0') {
        return Err(format!(
            "labels: label {} contains NUL",
            crate::echo::Echo(key)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in ["a", "default", "k8s.io", "a-b_c.d", "A9", &"x".repeat(76)] {
            assert_eq!(validate("id", ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a/b",
            "..",
            "a\0b",
            "é",
            " a",
            &"x".repeat(77),
        ] {
            assert!(validate("id", bad).is_err(), "{bad:?}");
        }
        let msg = validate("container id", "a/b").unwrap_err().to_string();
        assert!(msg.starts_with("container id:"), "{msg}");
        let huge = format!("a/{}", "b".repeat(3 << 20));
        let msg = validate("container id", &huge).unwrap_err().to_string();
        assert!(msg.len() < 512, "echoed {} bytes", msg.len());
    }

    #[test]
    fn labels() {
        assert!(validate_label("a", "b").is_ok());
        assert!(validate_label("", "b").is_err());
        assert!(validate_label("a\0", "b").is_err());
        assert!(validate_label("a", &"v".repeat(5000)).is_err());
        let msg = validate_label(&"k".repeat(1 << 20), "").unwrap_err();
        assert!(msg.len() < 512, "echoed {} bytes", msg.len());
    }
}
