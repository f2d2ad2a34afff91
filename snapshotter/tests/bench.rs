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
    let t = Instant::now();
    let a = apply_layer(&m, f, &mt).unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "applied {} compressed bytes in {secs:.2}s: {:.1} MB/s compressed ({})",
        a.compressed_size,
        a.compressed_size as f64 / secs / 1e6,
        a.diff_id
    );
}
