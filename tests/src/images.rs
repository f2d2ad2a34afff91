//! The test images (scripts/build-test-images: busybox, multilayer,
//! many-layers, large, multiplatform and the hostile archives), built once
//! per target dir and shared by every test binary of the run.
//!
//! Test binaries run side by side, so the first one to ask builds under an
//! exclusive file lock (`target/berth-test-images.lock`) into a temp dir
//! and renames it into place; the others wait on the lock and reuse the
//! finished build. A stamp (a digest of the build script, its Python
//! modules, `/bin/busybox` and `BERTH_TEST_LARGE_MB`) makes a changed
//! script rebuild instead of serving stale archives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::paths::{scripts_dir, target_dir};

/// Reference of the busybox image every container test runs.
pub const BUSYBOX: &str = "docker.io/berthtest/busybox:oci-gzip";

const STAMP: &str = "stamp";

/// The directory holding every test image and `images.json`; built on
/// first use (see the module docs).
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_once)
}

/// An archive as a command-line argument: `<dir>/<image>/<variant>.tar`.
pub fn archive(image: &str, variant: &str) -> String {
    dir()
        .join(image)
        .join(format!("{variant}.tar"))
        .to_string_lossy()
        .into_owned()
}

/// The busybox archive ([`BUSYBOX`]).
pub fn busybox() -> PathBuf {
    dir().join("busybox/oci-gzip.tar")
}

/// `images.json`, parsed.
pub fn catalog() -> &'static Value {
    static CATALOG: OnceLock<Value> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let p = dir().join("images.json");
        serde_json::from_slice(&std::fs::read(&p).expect("images.json"))
            .expect("images.json parses")
    })
}

/// The catalogue entry of one image variant (`Null` when absent).
pub fn entry(image: &str, variant: &str) -> Value {
    catalog()["images"][image][variant].clone()
}

/// The chain IDs of one image variant, base first.
pub fn chain_ids(image: &str, variant: &str) -> Vec<String> {
    strings(&catalog()["images"][image][variant]["chain_ids"])
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn build_once() -> PathBuf {
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("target dir");
    let out = target.join("berth-test-images");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target.join("berth-test-images.lock"))
        .expect("test image lock file");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock test images");
    let stamp = stamp();
    if std::fs::read_to_string(out.join(STAMP)).is_ok_and(|s| s == stamp) {
        return out;
    }
    let tmp = target.join(format!("berth-test-images.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let started = std::time::Instant::now();
    let built = Command::new("python3")
        .arg(scripts_dir().join("build-test-images"))
        .arg(&tmp)
        .stdout(Stdio::null())
        .output()
        .expect("run scripts/build-test-images (python3)");
    assert!(
        built.status.success(),
        "scripts/build-test-images failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::write(tmp.join(STAMP), &stamp).expect("write stamp");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&tmp, &out).expect("move test images into place");
    eprintln!(
        "built the test images into {} in {:.1}s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    out
}

/// What the images are made from: the build script, its modules, the
/// busybox binary and the large image's size.
fn stamp() -> String {
    let mut h = Sha256::new();
    let scripts = scripts_dir();
    let mut files = vec![scripts.join("build-test-images")];
    let mut modules: Vec<PathBuf> = std::fs::read_dir(scripts.join("testimages"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    modules.retain(|p| p.extension().is_some_and(|e| e == "py"));
    modules.sort();
    files.extend(modules);
    for f in &files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(f).unwrap_or_default());
    }
    if let Ok(m) = std::fs::metadata("/bin/busybox") {
        use std::os::unix::fs::MetadataExt;
        h.update(format!("busybox {} {}", m.len(), m.mtime()));
    }
    h.update(std::env::var("BERTH_TEST_LARGE_MB").unwrap_or_default());
    hex::encode(h.finalize())
}
