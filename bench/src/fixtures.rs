//! Inputs the workloads share, made once: test images (cached outside the
//! repo), the ~300 MB import image, a random blob, a runc bundle for the
//! floor, the crun wrapper, and a local docker-registry.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One image archive the workloads import: file, name it imports as and its
/// unpacked (sum of layer tars) size.
#[derive(Clone, Debug)]
pub(crate) struct Archive {
    pub(crate) file: PathBuf,
    pub(crate) reference: String,
    pub(crate) unpacked_bytes: u64,
}

/// Run `cmd`, failing with its stderr.
pub(crate) fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Build (once) one test image with `scripts/build-test-images` into
/// `cache/test-images-<only>[-<large_mb>]`; returns that dir and its images.json.
fn test_images(repo: &Path, cache: &Path, only: &str, large_mb: u64) -> Result<(PathBuf, Value)> {
    let out = match only {
        "large" => cache.join(format!("test-images-large-{large_mb}")),
        _ => cache.join(format!("test-images-{only}")),
    };
    let index = out.join("images.json");
    let have = fs::read(&index)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    if let Some(doc) = have.filter(|d| d["images"][only].is_object()) {
        return Ok((out, doc));
    }
    eprintln!(
        "berth-bench: building test images ({only}, large = {large_mb} MiB) into {}",
        out.display()
    );
    let script = repo.join("scripts/build-test-images");
    sh(Command::new("python3")
        .arg(script)
        .arg(&out)
        .arg("--only")
        .arg(only)
        .arg("--large-mb")
        .arg(large_mb.to_string()))?;
    let doc = serde_json::from_slice(&fs::read(&index)?)?;
    Ok((out, doc))
}

fn archive_from(dir: &Path, doc: &Value, image: &str, variant: &str) -> Result<Archive> {
    let rec = &doc["images"][image][variant];
    let file = rec["file"]
        .as_str()
        .with_context(|| format!("{image}/{variant} missing from images.json"))?;
    Ok(Archive {
        file: dir.join(file),
        reference: rec["ref"].as_str().unwrap_or_default().to_owned(),
        unpacked_bytes: rec["uncompressed_size"].as_u64().unwrap_or(0),
    })
}

/// The busybox image (OCI archive, gzip layer) used by the run workloads.
pub(crate) fn busybox(repo: &Path, cache: &Path) -> Result<Archive> {
    let (dir, doc) = test_images(repo, cache, "busybox", 100)?;
    archive_from(&dir, &doc, "busybox", "oci-gzip")
}

/// The import/pull image, gzip and zstd variants, and where it came from.
///
/// With `debootstrap` installed: a Debian bookworm root filesystem (default
/// variant, ~300 MB, thousands of small files and a few large ones) made
/// once into `cache/debian-rootfs` (needs the Debian mirror), turned into an
/// image with two layers (/usr and the rest). Without it, the synthetic
/// `large` test image at `large_mb` MiB.
pub(crate) fn import_image(
    repo: &Path,
    cache: &Path,
    large_mb: u64,
    use_debootstrap: bool,
) -> Result<(Archive, Archive, String)> {
    if use_debootstrap && which("debootstrap") {
        match debian_image(repo, cache) {
            Ok((g, z)) => return Ok((g, z, "debootstrap'd Debian bookworm rootfs".into())),
            Err(e) => eprintln!("berth-bench: debootstrap image unavailable ({e:#}); using the synthetic large image"),
        }
    }
    let (dir, doc) = test_images(repo, cache, "large", large_mb)?;
    let g = archive_from(&dir, &doc, "large", "oci-gzip")?;
    let z = archive_from(&dir, &doc, "large", "oci-zstd")?;
    Ok((
        g,
        z,
        format!("synthetic `large` test image, {large_mb} MiB"),
    ))
}

fn debian_image(repo: &Path, cache: &Path) -> Result<(Archive, Archive)> {
    let rootfs = cache.join("debian-rootfs");
    if !rootfs.join("usr/bin").is_dir() {
        let partial = cache.join("debian-rootfs.partial");
        let _ = fs::remove_dir_all(&partial);
        eprintln!(
            "berth-bench: debootstrap bookworm into {} (once; a few minutes)",
            partial.display()
        );
        let log = fs::File::create(cache.join("debootstrap.log"))?;
        let st = Command::new("debootstrap")
            .args(["bookworm"])
            .arg(&partial)
            .arg("http://deb.debian.org/debian")
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        if !st.success() {
            bail!(
                "debootstrap failed, see {}",
                cache.join("debootstrap.log").display()
            );
        }
        fs::rename(&partial, &rootfs)?;
    }
    let out = cache.join("debian-image");
    if !out.join("images.json").exists() {
        eprintln!(
            "berth-bench: building the Debian image archives into {}",
            out.display()
        );
        sh(Command::new("python3")
            .arg(repo.join("scripts/build-test-images"))
            .arg(&out)
            .arg("--from-rootfs")
            .arg(&rootfs)
            .args(["--name", "debian"]))?;
    }
    let doc: Value = serde_json::from_slice(&fs::read(out.join("images.json"))?)?;
    Ok((
        archive_from(&out, &doc, "debian", "oci-gzip")?,
        archive_from(&out, &doc, "debian", "oci-zstd")?,
    ))
}

pub(crate) fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// `count` distinct files of `mib` MiB of random bytes in the cache, each
/// with its sha256 digest. Distinct, so the content workload never has to
/// delete a blob between runs (a delete makes containerd's GC collect every
/// unreferenced blob, the one just ingested included).
pub(crate) fn random_blobs(cache: &Path, mib: u64, count: usize) -> Result<Vec<(PathBuf, String)>> {
    (0..count)
        .map(|i| {
            let path = cache.join(format!("random-{mib}MiB-{i}.bin"));
            if fs::metadata(&path).map(|m| m.len()).ok() != Some(mib << 20) {
                let tmp = path.with_extension("partial");
                sh(Command::new("dd")
                    .arg("if=/dev/urandom")
                    .arg(format!("of={}", tmp.display()))
                    .arg("bs=1M")
                    .arg(format!("count={mib}"))
                    .arg("iflag=fullblock"))?;
                fs::rename(&tmp, &path)?;
            }
            let out = sh(Command::new("sha256sum").arg(&path))?;
            let hex = out.split_whitespace().next().context("sha256sum output")?;
            Ok((path, format!("sha256:{hex}")))
        })
        .collect()
}

/// An OCI bundle of the busybox image running `true`, for bare `runc run`.
pub(crate) fn bundle(dir: &Path, busybox: &Archive) -> Result<PathBuf> {
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(&rootfs)?;
    // The OCI archive's first (only) layer is the busybox rootfs.
    let index: Value = serde_json::from_str(&sh(Command::new("tar")
        .arg("-xOf")
        .arg(&busybox.file)
        .arg("index.json"))?)?;
    let mdig = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json digest")?;
    let manifest: Value = serde_json::from_str(&sh(Command::new("tar")
        .arg("-xOf")
        .arg(&busybox.file)
        .arg(blob_path(mdig)))?)?;
    let ldig = manifest["layers"][0]["digest"]
        .as_str()
        .context("manifest layer digest")?;
    let script = format!(
        "tar -xOf '{}' '{}' | tar -xz -C '{}'",
        busybox.file.display(),
        blob_path(ldig),
        rootfs.display()
    );
    sh(Command::new("sh").arg("-c").arg(script))?;
    sh(Command::new("runc")
        .arg("spec")
        .arg("--bundle")
        .arg(&bundle))?;
    let path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path)?)?;
    spec["process"]["args"] = serde_json::json!(["true"]);
    spec["process"]["terminal"] = Value::Bool(false);
    fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(bundle)
}

/// The sandbox image both daemons' CRI runs: a pause stand-in made once
/// (into `cache/pause-image/pause.tar`) from the busybox archive with
/// umoci, as the CRI tests make theirs: PID 1 is busybox `sh` waiting on a
/// `sleep` (two processes where the real pause has one), ending on SIGTERM.
pub(crate) const PAUSE_REF: &str = "docker.io/berthbench/pause:busybox";

pub(crate) fn pause(cache: &Path, busybox: &Archive) -> Result<Archive> {
    let dir = cache.join("pause-image");
    let tar = dir.join("pause.tar");
    let archive = Archive {
        file: tar.clone(),
        reference: PAUSE_REF.into(),
        unpacked_bytes: busybox.unpacked_bytes,
    };
    if tar.is_file() {
        return Ok(archive);
    }
    fs::create_dir_all(&dir)?;
    let work = tempfile::tempdir_in(&dir)?;
    let layout = work.path().join("layout");
    fs::create_dir_all(&layout)?;
    sh(Command::new("tar")
        .arg("-xf")
        .arg(&busybox.file)
        .arg("-C")
        .arg(&layout))?;
    let index_path = layout.join("index.json");
    let index: Value = serde_json::from_slice(&fs::read(&index_path)?)?;
    let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .context("busybox index.json has no ref.name")?
        .to_owned();
    sh(Command::new("umoci").args([
        "config",
        "--image",
        &format!("{}:{tag}", layout.display()),
        "--tag",
        "pause",
        "--clear",
        "config.cmd",
        "--config.entrypoint",
        "sh",
        "--config.entrypoint",
        "-c",
        "--config.entrypoint",
        "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done",
    ]))?;
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path)?)?;
    let manifests = index["manifests"]
        .as_array_mut()
        .context("index.json manifests")?;
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "pause");
    let m = manifests.first_mut().context("umoci made no pause tag")?;
    m["annotations"]["io.containerd.image.name"] = PAUSE_REF.into();
    fs::write(&index_path, serde_json::to_vec(&index)?)?;
    let partial = dir.join("pause.tar.partial");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&partial)
        .arg("-C")
        .arg(&layout)
        .arg("."))?;
    fs::rename(&partial, &tar)?;
    Ok(archive)
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// crun refuses this machine's hybrid cgroup layout unless the cgroup2
/// mount at /sys/fs/cgroup/unified is absent, so crun runs through a wrapper
/// that unmounts it in a private mount namespace (same for both daemons).
pub(crate) fn crun_wrapper(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("crun-hybrid");
    let mut f = fs::File::create(&path)?;
    writeln!(f, "#!/bin/sh")?;
    writeln!(f, "exec unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec crun \"$@\"' crun \"$@\"")?;
    drop(f);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Debian's docker-registry on a free 127.0.0.1 port, storage in `dir`;
/// stopped by its PID on drop.
pub(crate) struct Registry {
    child: Child,
    pub(crate) host: String,
}

impl Registry {
    pub(crate) fn start(dir: &Path) -> Result<Registry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        fs::create_dir_all(dir.join("storage"))?;
        let cfg = dir.join("config.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.join("storage").display()
        );
        fs::write(&cfg, yaml)?;
        let log = fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start docker-registry")?;
        let reg = Registry { child, host };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&reg.host).is_err() {
            if Instant::now() > deadline {
                bail!("docker-registry did not listen on {}", reg.host);
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(reg)
    }

    /// Push an OCI archive with skopeo; returns the pullable reference.
    pub(crate) fn push(&self, archive: &Archive, repo_tag: &str) -> Result<String> {
        let dest = format!("{}/{repo_tag}", self.host);
        sh(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", archive.file.display()))
            .arg(format!("docker://{dest}")))?;
        Ok(dest)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sync`, then drop the page cache, dentries and inodes so the next read
/// comes from disk. Needs root; returns false (and says why) otherwise.
pub(crate) fn drop_caches() -> bool {
    nix::unistd::sync();
    match fs::write("/proc/sys/vm/drop_caches", "3") {
        Ok(()) => true,
        Err(e) => {
            eprintln!("berth-bench: cannot drop caches ({e}); figures include a warm page cache");
            false
        }
    }
}
