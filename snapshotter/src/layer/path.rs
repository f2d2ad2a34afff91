//! An entry's path as apply takes it: split into checked components,
//! within bounded limits, and packed for keeping.
//!
//! Limits (refused with InvalidArgument, the message naming the entry by a
//! shortened path):
//! - an entry path (or hard-link target) longer than [`MAX_PATH_BYTES`]
//!   (4095: `PATH_MAX` less its NUL; no program in the container could name
//!   a longer path in one call, and containerd's unpack, which works on full
//!   paths, fails on them with ENAMETOOLONG);
//! - a component longer than [`MAX_NAME_BYTES`] (255, `NAME_MAX`; the
//!   kernel's ENAMETOOLONG would otherwise surface as an internal error);
//! - more than [`MAX_DEPTH`] components (1024, half what `PATH_MAX` can
//!   spell as `a/a/a/...`).

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::errors::refuse;
use super::safe;
use crate::error::Result;

/// Longest entry path or link target accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4095;

/// Longest component (`NAME_MAX`: no filesystem here takes a longer name).
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Most components an entry path or link target may have.
pub const MAX_DEPTH: usize = 1024;

/// One open level of the directory cache that [`super::walk`] keeps: its
/// name and, for the first levels and the deepest one, its fd.
pub(super) struct Level {
    pub(super) name: OsString,
    pub(super) fd: Option<OwnedFd>,
}

/// Splits `path` (the path of entry `raw`, or its link target) into
/// components, refusing paths beyond the limits above; errors name `raw`.
pub(super) fn components(path: &[u8], raw: &[u8], what: &str) -> Result<Vec<OsString>> {
    if path.len() > MAX_PATH_BYTES {
        return Err(refuse(
            raw,
            format!(
                "{what} is {} bytes long, more than the {MAX_PATH_BYTES} allowed",
                path.len()
            ),
        ));
    }
    let comps = safe::clean(path).map_err(|w| refuse(raw, format!("{what}: {w}")))?;
    if let Some(c) = comps.iter().find(|c| c.len() > MAX_NAME_BYTES) {
        return Err(refuse(
            raw,
            format!(
                "{what} has a component of {} bytes, more than the {MAX_NAME_BYTES} allowed",
                c.len()
            ),
        ));
    }
    if comps.len() > MAX_DEPTH {
        return Err(refuse(
            raw,
            format!(
                "{what} is {} levels deep, more than the {MAX_DEPTH} allowed",
                comps.len()
            ),
        ));
    }
    Ok(comps)
}

/// A directory's path as kept until the end of the apply: the components
/// joined by `/` in one allocation.
pub(super) fn pack(comps: &[OsString]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(comps.iter().map(|c| c.len() + 1).sum());
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    out.into_boxed_slice()
}

/// The components of a path made by [`pack`].
pub(super) fn unpack(packed: &[u8]) -> Vec<OsString> {
    packed
        .split(|b| *b == b'/')
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}
