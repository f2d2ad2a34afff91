//! A stand-in registry for cases docker-registry cannot serve.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};

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
