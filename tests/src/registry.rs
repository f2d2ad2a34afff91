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

/// The Debian binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// True when docker-registry and skopeo exist; otherwise prints a loud
/// skip notice.
pub fn available(test: &str) -> bool {
    if !Path::new(REGISTRY_BIN).exists() {
        eprintln!("\n!!! SKIPPED {test}: {REGISTRY_BIN} is missing (apt-get install docker-registry) !!!\n");
        return false;
    }
    crate::require_tool(test, "skopeo")
}

/// The test images (scripts/build-test-images), built once per target dir
/// and shared by every test (a lock file serialises the first build).
pub fn test_images() -> PathBuf {
    let target = crate::bin_dir();
    let out = target.join("berth-test-images-registry");
    let lock_path = target.join("berth-test-images-registry.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("test image lock file");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock test images");
    if out.join("images.json").exists() {
        return out;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts/build-test-images");
    let tmp = target.join("berth-test-images-registry.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let out_status = Command::new(&script)
        .arg(&tmp)
        .args(["--only", "busybox,multilayer,multiplatform,large"])
        .stdout(Stdio::null())
        .output()
        .expect("run scripts/build-test-images");
    assert!(
        out_status.status.success(),
        "build-test-images failed: {}",
        String::from_utf8_lossy(&out_status.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move test images into place");
    out
}

/// `images.json` of [`test_images`], parsed.
pub fn images_json() -> serde_json::Value {
    let p = test_images().join("images.json");
    serde_json::from_slice(&std::fs::read(p).expect("images.json")).expect("images.json parses")
}

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
        let file = test_images().join(image).join(format!("{variant}.tar"));
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

/// What a pull or push through berthd's Registry service asks for.
#[derive(Debug, Clone, Default)]
pub struct Transfer {
    /// Remote reference.
    pub reference: String,
    /// Local image (push only).
    pub image: String,
    /// `os/arch[/variant]`, empty for the default.
    pub platform: String,
    /// Basic auth user.
    pub username: String,
    /// Basic auth password.
    pub password: String,
    /// Fetch only (pull).
    pub skip_unpack: bool,
    /// Namespace; empty: `default`.
    pub namespace: String,
    /// Speak HTTPS (default: plain HTTP, as the test registries serve).
    pub tls: bool,
    /// Snapshotter to unpack into (empty: the default).
    pub snapshotter: String,
}

/// What the last progress message said, with the count of messages.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The final result.
    pub result: berth_api::images::v1::TransferResult,
    /// The blobs of the last message.
    pub blobs: Vec<berth_api::images::v1::RegistryBlob>,
    /// Progress messages received.
    pub messages: usize,
    /// Whether the pull joined one in flight.
    pub joined: bool,
}

/// A gRPC failure: code and message.
pub type Failure = (tonic::Code, String);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn client(
    address: &Path,
    namespace: &str,
) -> berth_api::images::v1::registry_client::RegistryClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor,
    >,
> {
    let path = address.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://berthd.local")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .expect("connect to berthd");
    let ns: tonic::metadata::AsciiMetadataValue = namespace.parse().expect("namespace");
    berth_api::images::v1::registry_client::RegistryClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("containerd-namespace", ns.clone());
            Ok(req)
        },
    )
}

fn creds(t: &Transfer) -> Option<berth_api::images::v1::RegistryCredentials> {
    (!t.username.is_empty()).then(|| berth_api::images::v1::RegistryCredentials {
        username: t.username.clone(),
        password: t.password.clone(),
        token: String::new(),
    })
}

fn ns(t: &Transfer) -> &str {
    if t.namespace.is_empty() {
        "default"
    } else {
        &t.namespace
    }
}

/// Pulls through berthd's Registry service (plain HTTP), following the
/// progress stream to its end. `on_progress` sees every message and may
/// return false to stop following (the pull goes on in berthd).
pub fn pull_with(
    address: &Path,
    t: &Transfer,
    mut on_progress: impl FnMut(&berth_api::images::v1::PullProgress) -> bool,
) -> Result<Outcome, Failure> {
    use berth_api::images::v1 as pb;
    runtime().block_on(async {
        let mut c = client(address, ns(t)).await;
        let req = pb::PullRequest {
            reference: t.reference.clone(),
            platform: t.platform.clone(),
            credentials: creds(t),
            plain_http: !t.tls,
            snapshotter: t.snapshotter.clone(),
            skip_unpack: t.skip_unpack,
            labels: Default::default(),
        };
        let mut stream = c
            .pull(req)
            .await
            .map_err(|s| (s.code(), s.message().to_string()))?
            .into_inner();
        let mut out = Outcome::default();
        loop {
            match stream.message().await {
                Ok(Some(p)) => {
                    out.messages += 1;
                    out.joined |= p.joined;
                    out.blobs = p.blobs.clone();
                    if let Some(r) = &p.result {
                        out.result = r.clone();
                    }
                    if !on_progress(&p) {
                        return Ok(out);
                    }
                }
                Ok(None) => return Ok(out),
                Err(s) => return Err((s.code(), s.message().to_string())),
            }
        }
    })
}

/// [`pull_with`] following to the end.
pub fn pull(address: &Path, t: &Transfer) -> Result<Outcome, Failure> {
    pull_with(address, t, |_| true)
}

/// Pushes through berthd's Registry service (plain HTTP).
pub fn push(address: &Path, t: &Transfer) -> Result<Outcome, Failure> {
    use berth_api::images::v1 as pb;
    runtime().block_on(async {
        let mut c = client(address, ns(t)).await;
        let req = pb::PushRequest {
            image: t.image.clone(),
            reference: t.reference.clone(),
            platform: t.platform.clone(),
            credentials: creds(t),
            plain_http: !t.tls,
        };
        let mut stream = c
            .push(req)
            .await
            .map_err(|s| (s.code(), s.message().to_string()))?
            .into_inner();
        let mut out = Outcome::default();
        loop {
            match stream.message().await {
                Ok(Some(p)) => {
                    out.messages += 1;
                    out.blobs = p.blobs.clone();
                    if let Some(r) = &p.result {
                        out.result = r.clone();
                    }
                }
                Ok(None) => return Ok(out),
                Err(s) => return Err((s.code(), s.message().to_string())),
            }
        }
    })
}

/// Bearer-token auth for [`FakeRegistry`]: `/v2/...` answers 401 with a
/// `Bearer` challenge pointing at `/token`, which hands out `token` for
/// basic auth `user:password`.
#[derive(Debug, Clone)]
pub struct BearerAuth {
    /// The user the token service accepts.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The token it hands out.
    pub token: String,
}

/// A stand-in registry for what the real one cannot do here (serve an
/// oversized manifest, bearer-token auth): fixed bodies by exact path,
/// HTTP/1.1, one request per connection. Records the request lines it got.
/// Stops on drop.
pub struct FakeRegistry {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn sha256_of(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

fn base64(input: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = input.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

impl FakeRegistry {
    /// Serves `body` as the manifest `NAME:TAG` (path `/v2/NAME/manifests/TAG`).
    pub fn serve_manifest(name_tag: &str, body: Vec<u8>, media_type: &str) -> Self {
        let (name, tag) = name_tag.split_once(':').expect("NAME:TAG");
        Self::start(
            vec![(
                format!("/v2/{name}/manifests/{tag}"),
                media_type.to_string(),
                body,
            )],
            None,
        )
    }

    /// Serves a one-layer image as `NAME:TAG` (manifest, config and a layer
    /// of `layer` bytes, by tag and by digest). Returns it and the
    /// manifest digest.
    pub fn serve_image(name_tag: &str, layer: &[u8], auth: Option<BearerAuth>) -> (Self, String) {
        let (name, tag) = name_tag.split_once(':').expect("NAME:TAG");
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256_of(layer)
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            sha256_of(config.as_bytes()),
            config.len(),
            sha256_of(layer),
            layer.len()
        );
        let md = sha256_of(manifest.as_bytes());
        let mt = "application/vnd.oci.image.manifest.v1+json".to_string();
        let routes = vec![
            (
                format!("/v2/{name}/manifests/{tag}"),
                mt.clone(),
                manifest.clone().into_bytes(),
            ),
            (
                format!("/v2/{name}/manifests/{md}"),
                mt,
                manifest.into_bytes(),
            ),
            (
                format!("/v2/{name}/blobs/{}", sha256_of(config.as_bytes())),
                "application/octet-stream".into(),
                config.into_bytes(),
            ),
            (
                format!("/v2/{name}/blobs/{}", sha256_of(layer)),
                "application/octet-stream".into(),
                layer.to_vec(),
            ),
        ];
        (Self::start(routes, auth), md)
    }

    /// Serves `routes` (path, content type, body); with `auth`, every
    /// `/v2/` path wants the bearer token.
    pub fn start(routes: Vec<(String, String, Vec<u8>)>, auth: Option<BearerAuth>) -> Self {
        use std::io::{BufRead as _, BufReader};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake registry");
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut authz = String::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            authz = v.trim().to_string();
                        }
                    }
                }
                requests2.lock().unwrap().push(line.trim().to_string());
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let path = target.split('?').next().unwrap_or("").to_string();
                let head = line.starts_with("HEAD");
                let mut extra = String::new();
                let (status, ctype, payload): (&str, String, Vec<u8>) = match &auth {
                    Some(a) if path == "/token" => {
                        let want =
                            format!("Basic {}", base64(&format!("{}:{}", a.user, a.password)));
                        if authz == want {
                            (
                                "200 OK",
                                "application/json".into(),
                                format!(r#"{{"token":"{}"}}"#, a.token).into_bytes(),
                            )
                        } else {
                            ("401 Unauthorized", "application/json".into(), br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_vec())
                        }
                    }
                    Some(a) if authz != format!("Bearer {}", a.token) => {
                        extra = format!(
                            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\"\r\n"
                        );
                        (
                            "401 Unauthorized",
                            "application/json".into(),
                            br#"{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}"#
                                .to_vec(),
                        )
                    }
                    _ if path == "/v2/" => ("200 OK", "application/json".into(), b"{}".to_vec()),
                    _ => match routes.iter().find(|r| r.0 == path) {
                        Some((_, ct, body)) => {
                            extra = format!("Docker-Content-Digest: {}\r\n", sha256_of(body));
                            ("200 OK", ct.clone(), body.clone())
                        }
                        None => (
                            "404 Not Found",
                            "application/json".into(),
                            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#
                                .to_vec(),
                        ),
                    },
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                    payload.len()
                );
                if !head {
                    let _ = conn.write_all(&payload);
                }
            }
        });
        Self {
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT/NAME`.
    pub fn reference(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }

    /// The request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
