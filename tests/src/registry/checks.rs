//! Checks shared by the registry tests.

use std::path::Path;

use super::Transfer;

/// A pull of `reference` with default options.
pub fn pull_of(reference: &str) -> Transfer {
    Transfer {
        reference: reference.to_string(),
        ..Transfer::default()
    }
}

/// Digests `ctr content ls` lists in the default namespace.
pub fn content(d: &crate::Berthd) -> Vec<String> {
    d.ctr_ok(&["content", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Files under a directory, recursively.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Nothing of a failed pull is recorded: no image, no content, no blob
/// file, no ingest left.
pub fn assert_nothing_stored(d: &crate::Berthd) {
    assert_eq!(
        d.ctr_ok(&["images", "ls", "-q"]).trim(),
        "",
        "an image was recorded"
    );
    assert!(content(d).is_empty(), "content recorded: {:?}", content(d));
    let blobs = files_under(&d.root().join("content/blobs"));
    assert!(blobs.is_empty(), "blob files left: {blobs:?}");
    let ingests = files_under(&d.root().join("content/ingest"));
    assert!(ingests.is_empty(), "ingests left: {ingests:?}");
}
