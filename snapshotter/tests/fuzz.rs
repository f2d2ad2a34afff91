//! Fuzzing (issue 19, item 14) of layer apply. Each input is read as a
//! recipe for a tar (entry kinds, paths from a pool of hostile components,
//! link targets, modes, PAX records incl. xattrs and GNU sparse maps) or,
//! for one input in four, applied as raw tar bytes. Properties: apply never
//! panics, every refusal is InvalidArgument, and a canary directory outside
//! the snapshot (reachable through a symlink planted by the lower layer)
//! is never touched. See fuzz/engine.rs for how the runs work.

mod common;
#[path = "../../fuzz/engine.rs"]
mod engine;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use berth_snapshotter::{apply_layer, Backend, ErrorKind, Snapshotter};
use common::{need_root, snapshot_tree, Layer};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Reads bytes of the input; zeros once it runs out.
struct Recipe<'a>(&'a [u8]);

impl Recipe<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

const COMPONENTS: &[&str] = &[
    "a",
    "b",
    "..",
    ".",
    "",
    "etc",
    "lower_evil",
    ".wh.a",
    ".wh..wh..opq",
    ".wh.",
    ".wh..",
    "sp ace",
    "GNUSparseFile.0",
];

fn path(r: &mut Recipe<'_>, canary: &str) -> String {
    match r.below(16) {
        0 => format!("{canary}/passwd"),
        1 => "n".repeat(256 + r.below(64)),
        2 => vec!["d"; 1 + r.below(3) * 700].join("/"),
        _ => {
            let n = 1 + r.below(4);
            let mut parts: Vec<String> = (0..n)
                .map(|_| COMPONENTS[r.below(COMPONENTS.len())].to_string())
                .collect();
            if r.below(4) == 0 {
                parts.insert(0, String::new()); // leading slash
            }
            let mut p = parts.join("/");
            if r.below(5) == 0 {
                p.push('/');
            }
            p
        }
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(common::MTIME);
    h
}

/// Appends an entry with raw (unchecked) name and link name, using GNU
/// long-name entries when they do not fit the header.
fn append(b: &mut tar::Builder<Vec<u8>>, mut h: tar::Header, name: &str, link: &str, data: &[u8]) {
    for (kind, value) in [
        (tar::EntryType::GNULongName, name),
        (tar::EntryType::GNULongLink, link),
    ] {
        if value.len() >= 100 {
            let mut l = header(kind, value.len() as u64 + 1, 0o644);
            l.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            l.set_cksum();
            let mut v = value.as_bytes().to_vec();
            v.push(0);
            b.append(&l, &v[..]).unwrap();
        }
    }
    let old = h.as_old_mut();
    let n = name.len().min(99);
    old.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let n = link.len().min(99);
    old.linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn build(input: &[u8], canary: &str) -> Vec<u8> {
    let mut r = Recipe(input);
    let mut b = tar::Builder::new(Vec::new());
    for _ in 0..1 + r.below(8) {
        let name = path(&mut r, canary);
        let mode = u32::from(r.byte()) << 4 | u32::from(r.byte() & 0x0f);
        let data_len = r.below(48);
        let data = r.take(data_len);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if r.below(4) == 0 {
            let key = [
                "SCHILY.xattr.user.k",
                "SCHILY.xattr.security.capability",
                "SCHILY.xattr.trusted.overlay.opaque",
                "SCHILY.xattr.bogus.ns",
                "uid",
                "mtime",
                "path",
            ][r.below(7)];
            let v_len = r.below(24);
            pax.push((key.into(), r.take(v_len)));
        }
        let kind = match r.below(9) {
            0 => tar::EntryType::Directory,
            1 => tar::EntryType::Symlink,
            2 => tar::EntryType::Link,
            3 => tar::EntryType::Fifo,
            4 => tar::EntryType::Char,
            5 => {
                // A GNU sparse 1.0 file with a map from the recipe.
                pax.push(("GNU.sparse.major".into(), b"1".to_vec()));
                pax.push(("GNU.sparse.minor".into(), b"0".to_vec()));
                pax.push(("GNU.sparse.name".into(), name.clone().into_bytes()));
                let real = r.below(200);
                pax.push(("GNU.sparse.realsize".into(), real.to_string().into_bytes()));
                tar::EntryType::Regular
            }
            _ => tar::EntryType::Regular,
        };
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), &v[..])))
                .unwrap();
        }
        let link = if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            path(&mut r, canary)
        } else {
            String::new()
        };
        let mut body = data;
        if pax.iter().any(|(k, _)| k == "GNU.sparse.major") {
            let chunks = r.below(3);
            let mut map = format!("{chunks}\n");
            for _ in 0..chunks {
                map.push_str(&format!("{}\n{}\n", r.below(220), r.below(40)));
            }
            let mut m = map.into_bytes();
            m.resize(512, 0);
            m.extend_from_slice(&body);
            body = m;
        }
        let h = header(kind, body.len() as u64, mode);
        append(&mut b, h, &name, &link, &body);
    }
    b.into_inner().unwrap()
}

#[test]
fn fuzz_layer_tar() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    fs::create_dir(&canary).unwrap();
    fs::write(canary.join("passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    let canary_before = snapshot_tree(&canary);
    let c = canary.to_str().unwrap().to_owned();
    let s = Snapshotter::open(&dir.path().join("root"), Backend::Overlay).unwrap();
    let mut base = Layer::new();
    base.dir("etc/", 0o755)
        .file("etc/passwd", b"inside")
        .dir("a/", 0o750)
        .file("a/f", b"lower")
        .symlink("lower_evil", &c);
    let m = s
        .prepare("default", "k-base", None, HashMap::new())
        .unwrap();
    apply_layer(&m, &base.finish()[..], TAR).unwrap();
    s.commit("default", "base", "k-base", HashMap::new())
        .unwrap();

    let mut seeds: Vec<Vec<u8>> = (0u8..16)
        .map(|i| {
            (0u8..64)
                .map(|j| i.wrapping_mul(37).wrapping_add(j.wrapping_mul(11)))
                .collect()
        })
        .collect();
    seeds.push(Vec::new());
    let mut round = 0u64;
    engine::run("layer_tar", seeds, |input| {
        round += 1;
        let raw = input.first().is_some_and(|b| b % 4 == 0) && input.len() > 1;
        let tar = if raw {
            input[1..].to_vec()
        } else {
            build(input, &c)
        };
        let key = format!("k-{round}");
        let m = s
            .prepare("default", &key, Some("base"), HashMap::new())
            .unwrap();
        let res = apply_layer(&m, &tar[..], TAR);
        if let Err(e) = &res {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "refusal kind: {e}");
            assert!(
                e.to_string().len() < 2048,
                "{} bytes echoed",
                e.to_string().len()
            );
        }
        assert_eq!(snapshot_tree(&canary), canary_before, "canary changed");
        s.remove("default", &key).unwrap();
        assert!(!Path::new(&c).join("x").exists());
    });
}
