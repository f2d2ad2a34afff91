//! A small mutation fuzzer for parsers, run as ordinary tests on the stable
//! toolchain (no coverage guidance: cargo-fuzz needs nightly, and afl.rs /
//! honggfuzz-rs need their own C toolchains built; see fuzz/README.md).
//!
//! Each target has a seed corpus in `fuzz/corpus/<target>/` (small,
//! committed) plus seeds its test builds. Every round takes a seed, applies
//! one to four random mutations (bit flips, interesting bytes, inserts,
//! deletions, duplications, splices with another seed, truncation) and
//! calls the target, which asserts its properties (no panic, errors of the
//! right kind, invariants). The run lasts `BERTH_FUZZ_SECS` seconds (2 by
//! default, as in `make test`; `make fuzz` runs longer) from the seed
//! `BERTH_FUZZ_SEED` (fixed by default, so a failure reproduces). A failing
//! input is written to `target/fuzz-failures/<target>/` before the test
//! fails; copy it into the corpus once fixed.
//!
//! Included by each crate's `tests/fuzz.rs` with `#[path]`.
#![allow(dead_code, unreachable_pub)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic and fast.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const INTERESTING: &[u8] = &[
    0, 0xff, 0x7f, 0x80, b'/', b'.', b':', b'@', b'%', b'\n', b' ', b'0', b'9', b'a', b'A', b'-',
];

/// One random mutation of `data` (which may come back empty).
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(INTERESTING);
        }
        2 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.chance(2) {
                        *rng.pick(INTERESTING)
                    } else {
                        rng.next() as u8
                    }
                })
                .collect();
            data.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            data.drain(at..at + n);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let copy = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, copy);
        }
        5 if !others.is_empty() => {
            let other = rng.pick(others);
            if !other.is_empty() {
                let at = rng.below(other.len());
                let n = 1 + rng.below((other.len() - at).min(256));
                let to = rng.below(len + 1);
                data.splice(to..to, other[at..at + n].iter().copied());
            }
        }
        6 if len > 0 => data.truncate(rng.below(len)),
        _ => {
            // Repeat a slice many times: long inputs.
            if len > 0 {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(8));
                let piece = data[at..at + n].to_vec();
                let times = 1 + rng.below(512);
                for _ in 0..times {
                    data.extend_from_slice(&piece);
                }
            }
        }
    }
}

/// The workspace root (this file lives in `fuzz/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate dir has a parent")
        .to_path_buf()
}

/// The committed seeds of `target`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = workspace().join("fuzz/corpus").join(target);
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
    out
}

fn budget() -> Duration {
    let secs = std::env::var("BERTH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn seed() -> u64 {
    std::env::var("BERTH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b347_u64)
}

/// Runs `check` on the seeds, then on mutations of them until the budget
/// is spent. Returns the number of inputs tried.
pub fn run(target: &str, mut seeds: Vec<Vec<u8>>, mut check: impl FnMut(&[u8])) -> u64 {
    seeds.extend(corpus(target));
    assert!(!seeds.is_empty(), "{target}: no seeds");
    let mut rng = Rng::new(
        seed()
            ^ target
                .bytes()
                .fold(0u64, |h, b| h.rotate_left(5) ^ b as u64),
    );
    let deadline = Instant::now() + budget();
    let mut tried = 0u64;
    let mut try_one = |input: &[u8], tried: &mut u64| {
        *tried += 1;
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            let dir = workspace().join("target/fuzz-failures").join(target);
            let _ = std::fs::create_dir_all(&dir);
            let name = format!("{:016x}", {
                let mut h = 0xcbf2_9ce4_8422_2325u64;
                for b in input {
                    h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
                }
                h
            });
            let path = dir.join(name);
            let _ = std::fs::write(&path, input);
            panic!(
                "{target}: input {} ({} bytes) fails; see the panic above",
                path.display(),
                input.len()
            );
        }
    };
    for s in &seeds {
        try_one(s, &mut tried);
    }
    while Instant::now() < deadline {
        let mut data = rng.pick(&seeds).clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut data, &seeds);
        }
        try_one(&data, &mut tried);
    }
    eprintln!("fuzz {target}: {tried} inputs in {:?}", budget());
    tried
}
