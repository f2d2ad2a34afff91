//! Hardening (issue 19, item 3): applying a deep tree costs memory linear
//! in its entries. Alone in its binary: a counting allocator measures the
//! peak heap of one apply, which other tests running at once would blur.
// A counting global allocator needs an unsafe impl; it only forwards.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_snapshotter::{apply_layer, Backend, Snapshotter, MAX_DEPTH};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap above the level at the start of one apply of `tar`.
fn peak_of(s: &Snapshotter, key: &str, tar: &[u8]) -> usize {
    let m = s.prepare("default", key, None, HashMap::new()).unwrap();
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    apply_layer(&m, tar, "application/vnd.oci.image.layer.v1.tar").unwrap();
    PEAK.load(Ordering::Relaxed).saturating_sub(start)
}

fn tree(levels: usize, deep: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in 1..=levels {
        let path = if deep {
            vec!["a"; d].join("/")
        } else {
            format!("d{d}")
        };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(common::MTIME);
        b.append_data(&mut h, path, &b""[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn deep_tree_memory_is_linear() {
    if !common::need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Overlay).unwrap();
    // Same entry count, flat then MAX_DEPTH deep: the deep tree adds about
    // 1 MB of kept paths (MAX_DEPTH^2 bytes) and a few more 1 MiB chunks
    // of its longer tar in flight (3 MB measured); quadratic bookkeeping
    // (a component list per directory) added 13 MB more (16 MB measured).
    let flat = peak_of(&s, "flat", &tree(MAX_DEPTH, false));
    let deep = peak_of(&s, "deep", &tree(MAX_DEPTH, true));
    eprintln!("peak heap: flat {flat} bytes, deep {deep} bytes");
    assert!(
        deep < flat + (8 << 20),
        "deep tree used {deep} bytes of heap, flat {flat}"
    );
}
