//! Echoing a client's value back in an error message or a log line, bounded.
//!
//! A refused identifier, digest, reference or path is quoted in the status
//! message so the caller sees what was wrong, but never in full: a 3 MB
//! value echoed whole pushes some clients over their metadata limit (they
//! then see ResourceExhausted instead of the real error) and floods the log.
//! Every echo goes through [`Echo`] (or [`shorten`]): at most [`ECHO_MAX`]
//! bytes of the value, cut at a character boundary, then an ellipsis and the
//! full length.

use std::borrow::Cow;
use std::fmt;

/// Most bytes of a value echoed in a message.
pub const ECHO_MAX: usize = 256;

/// `value` if it fits in [`ECHO_MAX`] bytes, else its first bytes (cut at a
/// char boundary) followed by `…` and the full length, e.g.
/// `aaaa…(3000000 bytes)`. Not quoted; see [`Echo`] for the quoted form.
pub fn shorten(value: &str) -> Cow<'_, str> {
    if value.len() <= ECHO_MAX {
        return Cow::Borrowed(value);
    }
    let mut end = ECHO_MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…({} bytes)", &value[..end], value.len()))
}

/// Like [`shorten`] for bytes that may not be UTF-8 (tar paths, metadata
/// values): invalid sequences are shown as U+FFFD.
pub fn shorten_bytes(value: &[u8]) -> String {
    let head = &value[..value.len().min(ECHO_MAX)];
    let text = String::from_utf8_lossy(head);
    if value.len() <= ECHO_MAX {
        return text.into_owned();
    }
    // A multi-byte character cut in two shows as U+FFFD at the end: drop it.
    let text = text.trim_end_matches('\u{FFFD}');
    format!("{text}…({} bytes)", value.len())
}

/// Displays a value quoted and escaped like `{:?}`, shortened as
/// [`shorten`] does: `"aaaa"…(3000000 bytes)`.
#[derive(Clone, Copy)]
pub struct Echo<'a>(pub &'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.len() <= ECHO_MAX {
            return write!(f, "{v:?}");
        }
        let mut end = ECHO_MAX;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}…({} bytes)", &v[..end], v.len())
    }
}

impl fmt::Debug for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Displays bytes (a path, a header value) quoted, lossily decoded and
/// shortened like [`shorten_bytes`].
#[derive(Clone, Copy)]
pub struct EchoBytes<'a>(pub &'a [u8]);

impl fmt::Display for EchoBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let head = String::from_utf8_lossy(&v[..v.len().min(ECHO_MAX)]);
        if v.len() <= ECHO_MAX {
            return write!(f, "{head:?}");
        }
        let head = head.trim_end_matches('\u{FFFD}');
        write!(f, "{head:?}…({} bytes)", v.len())
    }
}

impl fmt::Debug for EchoBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_echoed_whole() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(Echo("a\"b").to_string(), r#""a\"b""#);
        assert_eq!(EchoBytes(b"a/b").to_string(), r#""a/b""#);
        assert_eq!(shorten(&"x".repeat(ECHO_MAX)).len(), ECHO_MAX);
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let big = "y".repeat(3_000_000);
        let s = shorten(&big);
        assert!(s.starts_with(&"y".repeat(ECHO_MAX)));
        assert!(s.ends_with("…(3000000 bytes)"), "{s}");
        assert!(s.len() < ECHO_MAX + 32);
        let e = Echo(&big).to_string();
        assert!(e.len() < ECHO_MAX + 40, "{}", e.len());
        assert!(e.ends_with("\"…(3000000 bytes)"), "{e}");
        let b = EchoBytes(big.as_bytes()).to_string();
        assert_eq!(b, e);
    }

    #[test]
    fn cuts_fall_on_char_boundaries() {
        // 'é' is two bytes: 255 ASCII bytes then 'é' straddles the limit.
        let v = format!("{}{}", "a".repeat(ECHO_MAX - 1), "é".repeat(100));
        let s = shorten(&v);
        assert!(s.starts_with(&"a".repeat(ECHO_MAX - 1)));
        assert!(!s.contains('\u{FFFD}'));
        let b = shorten_bytes(v.as_bytes());
        assert!(!b.contains('\u{FFFD}'), "{b}");
        assert!(b.ends_with(&format!("…({} bytes)", v.len())));
    }
}
