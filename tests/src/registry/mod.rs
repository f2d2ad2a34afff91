//! A real registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on a free 127.0.0.1 port with its storage in a temp dir, with or
//! without htpasswd auth, filled with the test images through `skopeo`.
//! On drop it kills the one registry process it started (by its PID) and
//! removes its dir.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod checks;
mod client;
mod fake;
mod mirror;
mod throttle;

pub use crate::images::{entry, strings};
pub use checks::{assert_nothing_stored, content, files_under, pull_of};
pub use client::{pull, pull_with, push, Failure, Outcome, Transfer};
pub use fake::{BearerAuth, FakeRegistry};
pub use mirror::{Mirror, Seen};
pub use throttle::Throttle;

/// The Debian binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// What the registry tests run besides berthd (with `requires_root`).
pub const TOOLS: &[&str] = &["ctr", "docker-registry", "skopeo"];

/// A running docker-registry.
pub struct Registry {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    auth: Option<(String, String)>,
}

/// Waits until the registry accepts connections; false if it died or
/// took longer than 15 s.
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`
/// (`ca.pem`, `cert.pem`, `key.pem`).
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=berth test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Registry {
    /// A registry anyone may pull from and push to.
    pub fn start() -> Self {
        Self::spawn(None, false)
    }

    /// A registry serving HTTPS with a certificate for 127.0.0.1 signed by
    /// a throwaway CA ([`Registry::ca_file`]), made with `openssl`.
    pub fn start_tls() -> Self {
        Self::spawn(None, true)
    }

    /// The CA that signed a TLS registry's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A registry requiring basic auth from `user`/`password` (htpasswd,
    /// bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::spawn(Some((user.to_string(), password.to_string())), false)
    }

    fn spawn(auth: Option<(String, String)>, tls: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .expect("temp dir");
        if tls {
            make_certs(dir.path());
        }
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            );
            if tls {
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("cert.pem").display(),
                    dir.path().join("key.pem").display()
                ));
            }
            if let Some((user, password)) = &auth {
                let hash = bcrypt::hash(password, 5).expect("bcrypt");
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            let mut child = child;
            if wait_ready(&mut child, port) {
                return Self {
                    dir,
                    child: Some(child),
                    port,
                    auth,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start; log:\n{last_log}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/NAME`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// The registry's output so far (its access log included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many GETs of blob `digest` returned data (200 or 206).
    pub fn blob_gets(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest} HTTP");
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(&needle))
            .filter(|l| l.contains("\" 200 ") || l.contains("\" 206 "))
            .count()
    }

    /// The storage root (`docker/registry/v2` lives under it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage/docker/registry/v2")
    }

    /// The file holding blob `digest` (`sha256:HEX`).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Copies image `src` (a skopeo source such as
    /// `oci-archive:FILE`) to `NAME:TAG` here, keeping digests and every
    /// platform of an index.
    pub fn push(&self, src: &str, name_tag: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some((u, p)) = &self.auth {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        let out = cmd
            .arg(src)
            .arg(format!("docker://{}", self.reference(name_tag)))
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {src} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Pushes test image `IMAGE/VARIANT.tar` as `IMAGE:VARIANT`; returns the
    /// reference `127.0.0.1:PORT/IMAGE:VARIANT`.
    pub fn push_test_image(&self, image: &str, variant: &str) -> String {
        let file = crate::images::dir()
            .join(image)
            .join(format!("{variant}.tar"));
        let name_tag = format!("{image}:{variant}");
        self.push(&format!("oci-archive:{}", file.display()), &name_tag);
        self.reference(&name_tag)
    }

    /// Writes a manifest straight into the registry's storage under
    /// `repo:tag` (for manifests the registry would refuse to take by
    /// PUT, such as oversized ones). Returns its digest.
    pub fn plant_manifest(&self, repo: &str, tag: &str, bytes: &[u8]) -> String {
        use sha2::Digest as _;
        let hex = format!("{:x}", sha2::Sha256::digest(bytes));
        let digest = format!("sha256:{hex}");
        let data = self.blob_file(&digest);
        std::fs::create_dir_all(data.parent().unwrap()).unwrap();
        std::fs::write(&data, bytes).unwrap();
        let m = self
            .storage()
            .join("repositories")
            .join(repo)
            .join("_manifests");
        let links = [
            m.join("revisions/sha256").join(&hex).join("link"),
            m.join("tags").join(tag).join("current/link"),
            m.join("tags")
                .join(tag)
                .join("index/sha256")
                .join(&hex)
                .join("link"),
        ];
        for l in links {
            std::fs::create_dir_all(l.parent().unwrap()).unwrap();
            std::fs::write(l, &digest).unwrap();
        }
        digest
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- docker-registry log ---\n{}", self.log());
        }
    }
}
