//! Apply throughput on a real layer: not a test, run on demand with
//! `BERTH_BENCH_LAYER=path BERTH_BENCH_MEDIA_TYPE=... cargo test -p
//! berth-snapshotter --test bench -- --ignored --nocapture`.

use std::collections::HashMap;
use std::time::Instant;

use berth_snapshotter::{apply_layer, Backend, Snapshotter};

#[test]
#[ignore = "benchmark; needs BERTH_BENCH_LAYER"]
fn apply_throughput() {
    let Ok(path) = std::env::var("BERTH_BENCH_LAYER") else {
        eprintln!("SKIPPING: set BERTH_BENCH_LAYER to a layer file");
        return;
    };
    let mt = std::env::var("BERTH_BENCH_MEDIA_TYPE")
        .unwrap_or_else(|_| "application/vnd.oci.image.layer.v1.tar+gzip".into());
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Overlay).unwrap();
    let m = s.prepare("default", "k", None, HashMap::new()).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let (u0, s0) = cpu_ticks();
    let t = Instant::now();
    let a = apply_layer(&m, f, &mt).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (u1, s1) = cpu_ticks();
    eprintln!(
        "applied {} compressed bytes in {secs:.2}s: {:.1} MB/s compressed; cpu user {:.2}s sys {:.2}s ({})",
        a.compressed_size,
        a.compressed_size as f64 / secs / 1e6,
        (u1 - u0) as f64 / 100.0,
        (s1 - s0) as f64 / 100.0,
        a.diff_id
    );
}

/// utime and stime of this process in clock ticks (assumed 100/s).
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse().unwrap(), f[12].parse().unwrap())
}
