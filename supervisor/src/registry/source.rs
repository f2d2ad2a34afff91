//! The pull side of the distribution API, over every endpoint a registry's
//! hosts.toml lists, on a reqwest client of our own.
//!
//! `oci-client` (still used for pushes, [`super::remote`]) builds every URL
//! as `<scheme>://<host>/v2/...` and sends only its own headers, so it can
//! honour neither an entry's `header` table nor its `override_path`. A
//! pull needs two GETs (manifests and blobs) plus the token dance, so it
//! is done here:
//!
//! - **Endpoints** in hosts.toml order (mirrors, then the server), each
//!   with its scheme, API root (`/v2`, or the URL's path as given when the
//!   entry sets `override_path`), `skip_verify`, CA files and headers. A
//!   manifest by tag needs an endpoint that may `resolve`; a manifest by
//!   digest and a blob, one that may `pull`. A mirror (an endpoint on
//!   another host than the one the reference names) gets `?ns=<registry>`,
//!   as containerd sends it. Without a hosts.toml: the registry itself.
//! - **Fallback**: an endpoint that cannot be reached, answers 5xx, 404
//!   or any other refusal is left for the next one; the caller gets the
//!   first error that is not a 404 (else NotFound) once all have failed.
//!   Refused credentials end the walk (they are the caller's, not the
//!   host's). An endpoint that could not be connected to is skipped for the
//!   rest of the session while another one is left.
//! - **Auth**, per endpoint, on the first 401: a `Bearer` challenge is
//!   answered with a token from its realm (scope `repository:<repo>:pull`,
//!   the caller's user and password as basic auth when given), a `Basic`
//!   one with the user and password; a token the caller gave is sent as
//!   `Bearer` from the start. The hosts.toml headers go to the endpoint
//!   only, never to a token realm.
//!
//! Digests: a manifest's digest is computed from its bytes (and checked
//! when it was asked for by digest); a blob's is checked by the content
//! store when its ingest commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_client::Reference;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;

use berth_api::oci::{Descriptor, DocumentError, ACCEPTED_MANIFESTS, MAX_DOCUMENT_SIZE};

use super::challenge::{parse_challenges, Challenge};
use super::hosts::{self, Endpoint};
use super::remote::ByteStream;
use super::{Credentials, Error, Options, Result};

/// One endpoint, ready to be asked.
struct Host {
    endpoint: Endpoint,
    /// `<scheme>://<host><api root>`, without a trailing slash.
    base: String,
    client: reqwest::Client,
    /// The hosts.toml headers.
    headers: HeaderMap,
    /// `?ns=<registry>` when this is not the registry itself.
    ns: String,
    /// The `Authorization` value that worked (or was obtained) here.
    auth: Mutex<Option<HeaderValue>>,
    /// A connection failed: skipped while another endpoint is left.
    dead: AtomicBool,
}

/// The image repository of one reference, reached through its endpoints
/// with one caller's credentials. Made per pull; nothing is shared with
/// other calls.
pub struct Source {
    reference: Reference,
    origin: String,
    hosts: Vec<Host>,
    creds: Credentials,
}

/// What one endpoint's failure means for the walk.
enum Failure {
    /// Try the next endpoint.
    Next(Error),
    /// Stop: no other endpoint changes this.
    Final(Error),
}

impl Source {
    /// A pull session for `reference`: its registry's hosts.toml endpoints
    /// under `opts.hosts_dir` (or the registry itself). `plain_http`, or the
    /// host listed in `opts.insecure`, makes an endpoint plain HTTP.
    pub fn new(
        reference: Reference,
        creds: &Credentials,
        plain_http: bool,
        opts: &Options,
    ) -> Result<Self> {
        super::remote::install_crypto();
        let origin = reference.registry().to_string();
        let endpoints = match &opts.hosts_dir {
            Some(dir) => hosts::load(dir, &origin)
                .map_err(|e| Error::InvalidArgument(format!("registry hosts for {origin}: {e}")))?,
            None => None,
        };
        let endpoints: Vec<Endpoint> = match endpoints {
            Some(list) => {
                let usable: Vec<_> = list
                    .into_iter()
                    .filter(|e| e.capabilities.pull || e.capabilities.resolve)
                    .collect();
                if !usable.iter().any(|e| e.capabilities.pull) {
                    return Err(Error::InvalidArgument(format!(
                        "registry hosts for {origin}: no host may be used to pull"
                    )));
                }
                usable
            }
            None => vec![hosts::default_endpoint(&origin)],
        };
        let hosts = endpoints
            .into_iter()
            .map(|mut e| {
                if plain_http || opts.insecure.contains(&e.host) {
                    e.scheme = "http".into();
                }
                Host::new(e, &origin, opts)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            reference,
            origin,
            hosts,
            creds: creds.clone(),
        })
    }

    /// The reference this session serves (as the caller named it).
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The registry host as the caller's reference names it (not the
    /// mirror reached).
    pub fn host(&self) -> &str {
        &self.origin
    }

    /// Fetches the manifest or index the reference names (`digest`:
    /// instead, the one with that digest in the same repository). Returns
    /// its bytes and digest. Larger than [`MAX_DOCUMENT_SIZE`]: refused.
    pub async fn manifest(&self, digest: Option<&str>) -> Result<(Bytes, berth_api::Digest)> {
        let wanted = digest.or(self.reference.digest()).map(str::to_string);
        let target = match &wanted {
            Some(d) => d.clone(),
            None => self.reference.tag().unwrap_or("latest").to_string(),
        };
        let by_tag = wanted.is_none();
        let what = format!("manifest {}", self.name(&target));
        let accept = ACCEPTED_MANIFESTS.join(", ");
        let (what, accept, target, wanted) = (&what, &accept, &target, &wanted);
        self.walk(
            if by_tag { "resolve a tag" } else { "pull" },
            |h| {
                if by_tag {
                    h.endpoint.capabilities.resolve
                } else {
                    h.endpoint.capabilities.pull
                }
            },
            move |h| async move {
                let url = h.url(&self.reference, "manifests", target);
                let resp = self.get(h, &url, Some(accept.as_str()), None, what).await?;
                let body = read_limited(h, resp, what).await?;
                let digest = berth_api::Digest::of(&body);
                if let Some(w) = wanted {
                    if digest.to_string() != *w {
                        return Err(Failure::Final(Error::Mismatch {
                            digest: w.clone(),
                            detail: format!("{} sent a manifest of digest {digest}", h.name()),
                        }));
                    }
                }
                Ok::<_, Failure>((body, digest))
            },
        )
        .await
    }

    /// Opens blob `desc` from byte `offset`. Returns the stream and the
    /// offset it really starts at (0 when the endpoint ignored the range).
    pub async fn blob(&self, desc: &Descriptor, offset: u64) -> Result<(ByteStream, u64)> {
        let digest = desc.digest.to_string();
        let what = format!("blob {digest}");
        let (what, digest) = (&what, &digest);
        self.walk(
            "pull",
            |h| h.endpoint.capabilities.pull,
            move |h| async move {
                let url = h.url(&self.reference, "blobs", digest);
                let range = (offset > 0).then_some(offset);
                let resp = self.get(h, &url, None, range, what).await?;
                let start = if resp.status() == StatusCode::PARTIAL_CONTENT {
                    offset
                } else {
                    0
                };
                let stream: ByteStream = resp
                    .bytes_stream()
                    .map(|r| r.map_err(std::io::Error::other))
                    .boxed();
                Ok::<_, Failure>((stream, start))
            },
        )
        .await
    }

    /// `registry/repo:target` for messages.
    fn name(&self, target: &str) -> String {
        let sep = if target.contains(':') { '@' } else { ':' };
        format!(
            "{}/{}{sep}{target}",
            self.origin,
            self.reference.repository()
        )
    }

    /// Runs `attempt` on each endpoint `fits` allows, in order, until one
    /// succeeds; see the module doc for what ends the walk.
    async fn walk<'a, T, F, Fut>(
        &'a self,
        need: &str,
        fits: impl Fn(&Host) -> bool,
        attempt: F,
    ) -> Result<T>
    where
        F: Fn(&'a Host) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Failure>>,
    {
        let candidates: Vec<&Host> = self.hosts.iter().filter(|h| fits(h)).collect();
        if candidates.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "registry hosts for {}: no host may be used to {need}",
                self.origin
            )));
        }
        let all_dead = candidates.iter().all(|h| h.dead.load(Ordering::Relaxed));
        let mut first: Option<Error> = None;
        let mut not_found: Option<Error> = None;
        for h in candidates {
            if !all_dead && h.dead.load(Ordering::Relaxed) {
                continue;
            }
            match attempt(h).await {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Next(e)) => {
                    tracing::debug!(
                        registry = self.origin,
                        host = h.name(),
                        error = %e,
                        "registry host failed, trying the next one"
                    );
                    if matches!(e, Error::NotFound(_)) {
                        not_found.get_or_insert(e);
                    } else {
                        first.get_or_insert(e);
                    }
                }
            }
        }
        Err(first
            .or(not_found)
            .expect("at least one endpoint was tried"))
    }

    /// One GET on `h`, authorizing on a first 401.
    async fn get(
        &self,
        h: &Host,
        url: &str,
        accept: Option<&str>,
        range: Option<u64>,
        what: &str,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let mut authorized = !self.creds.token.is_empty();
        loop {
            let mut rb = h.client.get(url).headers(h.headers.clone());
            if let Some(a) = accept {
                rb = rb.header(reqwest::header::ACCEPT, a);
            }
            if let Some(off) = range {
                rb = rb.header(reqwest::header::RANGE, format!("bytes={off}-"));
            }
            let cached = h.auth.lock().expect("auth lock").clone();
            if let Some(a) = cached {
                rb = rb.header(reqwest::header::AUTHORIZATION, a);
            } else if !self.creds.token.is_empty() {
                rb = rb.bearer_auth(&self.creds.token);
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    if e.is_connect() {
                        h.dead.store(true, Ordering::Relaxed);
                    }
                    return Err(Failure::Next(
                        h.error(format!("{what}: {:#}", anyhow::Error::from(e))),
                    ));
                }
            };
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED && !authorized {
                authorized = true;
                let value = self.authorize(h, resp.headers()).await?;
                *h.auth.lock().expect("auth lock") = Some(value);
                continue;
            }
            let body = resp.bytes().await.unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(match status {
                StatusCode::UNAUTHORIZED => {
                    Failure::Final(Error::Unauthenticated { registry: h.name() })
                }
                StatusCode::NOT_FOUND => Failure::Next(Error::NotFound(format!(
                    "{}: {what} (on {})",
                    self.reference.whole(),
                    h.name()
                ))),
                StatusCode::FORBIDDEN => Failure::Next(Error::Denied {
                    registry: h.name(),
                    detail: format!("{what}: {}", text.trim()),
                }),
                s => Failure::Next(h.error(format!("{what}: HTTP {s}: {}", text.trim()))),
            });
        }
    }

    /// The `Authorization` value answering the challenge in `headers`.
    async fn authorize(
        &self,
        h: &Host,
        headers: &HeaderMap,
    ) -> std::result::Result<HeaderValue, Failure> {
        let unauthenticated = || Failure::Final(Error::Unauthenticated { registry: h.name() });
        let challenges: Vec<Challenge> = headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let basic = || {
            let (u, p) = (&self.creds.username, &self.creds.password);
            use base64::Engine as _;
            let text = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            HeaderValue::from_str(&format!("Basic {text}")).map_err(|_| unauthenticated())
        };
        if let Some(bearer) = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            let realm = bearer.param("realm").ok_or_else(unauthenticated)?;
            let scope = format!("repository:{}:pull", self.reference.repository());
            let mut query = vec![("scope", scope.as_str())];
            if let Some(service) = bearer.param("service") {
                query.push(("service", service));
            }
            let mut rb = h.client.get(realm).query(&query);
            if !self.creds.username.is_empty() {
                rb = rb.basic_auth(&self.creds.username, Some(&self.creds.password));
            }
            let resp = rb.send().await.map_err(|e| {
                Failure::Final(h.error(format!(
                    "token service {realm}: {:#}",
                    anyhow::Error::from(e)
                )))
            })?;
            if !resp.status().is_success() {
                return Err(unauthenticated());
            }
            #[derive(serde::Deserialize)]
            struct Token {
                #[serde(default)]
                token: String,
                #[serde(default)]
                access_token: String,
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| Failure::Final(h.error(format!("token service {realm}: {e}"))))?;
            let t: Token = serde_json::from_slice(&body).map_err(|e| {
                Failure::Final(h.error(format!("token service {realm}: bad answer: {e}")))
            })?;
            let token = if t.token.is_empty() {
                t.access_token
            } else {
                t.token
            };
            if token.is_empty() {
                return Err(unauthenticated());
            }
            return HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| unauthenticated());
        }
        if !self.creds.username.is_empty()
            && challenges
                .iter()
                .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        {
            return basic();
        }
        Err(unauthenticated())
    }
}

impl Host {
    fn new(endpoint: Endpoint, origin: &str, opts: &Options) -> Result<Self> {
        let name = endpoint.host.clone();
        let setup =
            |detail: String| Error::InvalidArgument(format!("registry host {name}: {detail}"));
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(endpoint.skip_verify)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("berthd/", env!("CARGO_PKG_VERSION")));
        let mut certs = Vec::new();
        let cas = opts
            .ca_files
            .get(&endpoint.host)
            .into_iter()
            .chain(endpoint.ca.iter());
        for path in cas {
            let data = std::fs::read(path)
                .map_err(|e| setup(format!("CA file {}: {e}", path.display())))?;
            certs.push(
                reqwest::Certificate::from_pem(&data)
                    .map_err(|e| setup(format!("CA file {}: {e}", path.display())))?,
            );
        }
        if !certs.is_empty() {
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| Error::Registry {
            registry: name.clone(),
            detail: format!("client setup: {e}"),
        })?;
        let mut headers = HeaderMap::new();
        for (k, v) in &endpoint.headers {
            let key = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| setup(format!("header name {k:?}")))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| setup(format!("header {k}: bad value")))?;
            headers.append(key, value);
        }
        let own = hosts::default_endpoint(origin).host;
        let ns = if endpoint.host == origin || endpoint.host == own {
            String::new()
        } else {
            format!("?ns={origin}")
        };
        Ok(Self {
            base: format!("{}://{}{}", endpoint.scheme, endpoint.host, endpoint.path),
            endpoint,
            client,
            headers,
            ns,
            auth: Mutex::new(None),
            dead: AtomicBool::new(false),
        })
    }

    /// `host[:port]`, for messages.
    fn name(&self) -> String {
        self.endpoint.host.clone()
    }

    /// `<base>/<repo>/<kind>/<target>[?ns=...]`.
    fn url(&self, r: &Reference, kind: &str, target: &str) -> String {
        format!(
            "{}/{}/{kind}/{target}{}",
            self.base,
            r.repository(),
            self.ns
        )
    }

    fn error(&self, detail: String) -> Error {
        Error::Registry {
            registry: self.name(),
            detail,
        }
    }
}

/// A manifest's body, refused past [`MAX_DOCUMENT_SIZE`].
async fn read_limited(
    h: &Host,
    resp: reqwest::Response,
    what: &str,
) -> std::result::Result<Bytes, Failure> {
    let too_large = |size: u64| {
        Failure::Final(
            DocumentError::TooLarge {
                size,
                limit: MAX_DOCUMENT_SIZE,
            }
            .into(),
        )
    };
    if let Some(n) = resp.content_length() {
        if n > MAX_DOCUMENT_SIZE {
            return Err(too_large(n));
        }
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure::Next(h.error(format!("reading {what}: {e}"))))?;
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(too_large(body.len() as u64));
        }
    }
    Ok(body.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(hosts_toml: &str, registry: &str) -> Source {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(registry)).unwrap();
        std::fs::write(dir.path().join(registry).join("hosts.toml"), hosts_toml).unwrap();
        let opts = Options {
            hosts_dir: Some(dir.path().to_path_buf()),
            ..Options::default()
        };
        let r = super::super::remote::parse_reference(&format!("{registry}/lib/img:v1")).unwrap();
        Source::new(r, &Credentials::default(), false, &opts).unwrap()
    }

    #[test]
    fn urls_follow_the_endpoints() {
        let s = session(
            r#"server = "https://origin.example"
[host."https://m1.example/base"]
  override_path = true
  [host."https://m1.example/base".header]
    x-a = ["1", "2"]
[host."http://m2.example:5000"]
  capabilities = ["pull"]
"#,
            "origin.example",
        );
        let r = s.reference();
        let urls: Vec<_> = s
            .hosts
            .iter()
            .map(|h| h.url(r, "manifests", "v1"))
            .collect();
        assert_eq!(
            urls,
            [
                "https://m1.example/base/lib/img/manifests/v1?ns=origin.example",
                "http://m2.example:5000/v2/lib/img/manifests/v1?ns=origin.example",
                "https://origin.example/v2/lib/img/manifests/v1",
            ]
        );
        let xa: Vec<_> = s.hosts[0].headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert!(!s.hosts[1].endpoint.capabilities.resolve);
    }

    #[test]
    fn no_host_fit_to_pull_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("r.example")).unwrap();
        std::fs::write(
            dir.path().join("r.example/hosts.toml"),
            "server = \"https://r.example\"\ncapabilities = [\"push\"]\n",
        )
        .unwrap();
        let opts = Options {
            hosts_dir: Some(dir.path().to_path_buf()),
            ..Options::default()
        };
        let r = super::super::remote::parse_reference("r.example/a:b").unwrap();
        let e = Source::new(r, &Credentials::default(), false, &opts)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("r.example") && e.contains("pull"), "{e}");
    }
}
