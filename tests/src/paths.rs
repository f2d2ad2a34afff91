//! Where the binaries under test and the shared build outputs live.

use std::path::{Path, PathBuf};

/// The workspace's target dir (`$CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.parent().expect("workspace root").join("target"))
}

/// Where the binaries under test live: `$BERTH_BIN_DIR` or `target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_BIN_DIR") {
        return d.into();
    }
    target_dir().join("debug")
}

/// Path of one of our binaries; panics with instructions when missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (or set BERTH_BIN_DIR)",
        p.display()
    );
    p
}

/// The workspace's `scripts/` dir.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("scripts")
}
