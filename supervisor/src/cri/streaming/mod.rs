//! The CRI streaming server: exec, attach and port-forward sessions that
//! the kubelet (or crictl) opens on the URL that Exec, Attach and
//! PortForward answer, upgraded to SPDY/3.1 (the kubelet's protocol).
//!
//! Each URL carries a single-use random token that expires after
//! [`TOKEN_TTL`]; a used, expired or unknown token gets 404 and nothing
//! is started. The request the token stands for was validated by the RPC
//! that made it (container exists and runs, pod exists); the session runs
//! what it names, never what the URL's query says.
//!
//! Parts: `spdy.rs` (framing, no I/O), `session.rs` (a SPDY connection),
//! `remotecommand.rs` (exec and attach), `portforward.rs`, `tls.rs`
//! (`stream_tls`).

mod portforward;
mod remotecommand;
pub mod session;
pub mod spdy;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use tokio_util::sync::CancellationToken;

use super::Cri;

/// How long a URL stays valid (the kubelet's default, and containerd's).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// How long a client has for its TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// The sub-protocols of remote command (exec, attach), best first.
pub const REMOTECOMMAND_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The sub-protocol of port forwarding.
pub const PORTFORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// What a token stands for.
#[derive(Debug, Clone)]
pub enum Pending {
    /// A command to run in a container.
    Exec(cri::ExecRequest),
    /// A running container's own stdio.
    Attach(cri::AttachRequest),
    /// Ports of a pod.
    PortForward(cri::PortForwardRequest),
}

impl Pending {
    fn path(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

/// The tokens handed out and the address they are served on.
#[derive(Default)]
pub struct Tokens {
    pending: Mutex<HashMap<String, (Pending, Instant)>>,
    base: OnceLock<String>,
}

impl Tokens {
    /// A URL for `p`: a fresh token, valid once within [`TOKEN_TTL`].
    /// Unavailable until the server listens.
    pub fn issue(&self, p: Pending) -> Result<String, tonic::Status> {
        let base = self
            .base
            .get()
            .ok_or_else(|| tonic::Status::unavailable("the streaming server is not listening"))?;
        let mut raw = [0u8; 24];
        getrandom(&mut raw);
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let url = format!("{base}/{}/{token}", p.path());
        let now = Instant::now();
        let mut m = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, (_, at)| now.duration_since(*at) < TOKEN_TTL);
        m.insert(token, (p, now));
        Ok(url)
    }

    /// Takes token `t` of kind `path`: None when unknown, used, expired,
    /// or of another kind.
    fn take(&self, path: &str, t: &str) -> Option<Pending> {
        let mut m = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (p, at) = m.remove(t)?;
        (at.elapsed() < TOKEN_TTL && p.path() == path).then_some(p)
    }
}

fn getrandom(buf: &mut [u8]) {
    // Two v4 UUIDs' worth of OS randomness per 32 bytes.
    for chunk in buf.chunks_mut(16) {
        let u = uuid::Uuid::new_v4();
        let b = u.as_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

type Body = Full<Bytes>;

fn plain(code: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = code;
    r
}

/// The sub-protocol both sides speak: the client's first that `ours`
/// has; the oldest of `ours` when the client names none.
fn negotiate(req: &Request<Incoming>, ours: &[&str]) -> Result<String, String> {
    let theirs: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect();
    if theirs.is_empty() {
        return Ok(ours[ours.len() - 1].to_string());
    }
    theirs
        .iter()
        .find(|t| ours.contains(&t.as_str()))
        .cloned()
        .ok_or_else(|| format!("no common protocol: client {theirs:?}, server {ours:?}"))
}

impl Cri {
    /// Starts the streaming server on `[cri] stream_address:stream_port`
    /// (TLS with a self-signed certificate when `stream_tls`), until
    /// `stop`; the address it listens on.
    pub fn spawn_streaming(&self, stop: CancellationToken) -> std::io::Result<SocketAddr> {
        let c = self.config();
        let addr = format!("{}:{}", c.stream_address, c.stream_port);
        let std_listener = std::net::TcpListener::bind(&addr)?;
        std_listener.set_nonblocking(true)?;
        let local = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let host = match local.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        let tls = if c.stream_tls {
            let file = self.state_dir().join("stream.crt");
            Some(tls::acceptor(local.ip(), &file).map_err(std::io::Error::other)?)
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let _ = self
            .inner
            .tokens
            .base
            .set(format!("{scheme}://{host}:{}", local.port()));
        tracing::info!(address = %local, tls = tls.is_some(), "cri: streaming server listening");
        let cri = self.clone();
        tokio::spawn(async move {
            loop {
                let (conn, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "cri: streaming accept");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let cri = cri.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => cri.serve_http(conn).await,
                        Some(acceptor) => {
                            let handshake =
                                tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(conn));
                            match handshake.await {
                                Ok(Ok(s)) => cri.serve_http(s).await,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "cri: streaming TLS handshake")
                                }
                                Err(_) => tracing::debug!("cri: streaming TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
        });
        Ok(local)
    }

    /// Serves HTTP/1.1 (with upgrades) on one connection.
    async fn serve_http<T>(self, conn: T)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let svc = hyper::service::service_fn(move |req| {
            let cri = self.clone();
            async move { Ok::<_, std::convert::Infallible>(cri.route(req)) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(conn), svc)
            .with_upgrades()
            .await;
    }

    /// One HTTP request on the streaming server.
    fn route(&self, mut req: Request<Incoming>) -> Response<Body> {
        let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
        let (kind, token) = match parts.as_slice() {
            [kind, token] => (kind.to_string(), token.to_string()),
            _ => return plain(StatusCode::NOT_FOUND, "not found"),
        };
        let upgrade = req
            .headers()
            .get(hyper::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(pending) = self.inner.tokens.take(&kind, &token) else {
            return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
        };
        if !upgrade.contains("spdy/3.1") {
            return plain(
                StatusCode::BAD_REQUEST,
                "unsupported upgrade: this server speaks SPDY/3.1",
            );
        }
        let ours: &[&str] = match pending {
            Pending::PortForward(_) => &[PORTFORWARD_PROTOCOL],
            _ => REMOTECOMMAND_PROTOCOLS,
        };
        let protocol = match negotiate(&req, ours) {
            Ok(p) => p,
            Err(e) => return plain(StatusCode::FORBIDDEN, &e),
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let cri = self.clone();
        let chosen = protocol.clone();
        tokio::spawn(async move {
            let io = match on_upgrade.await {
                Ok(io) => TokioIo::new(io),
                Err(e) => {
                    tracing::debug!(error = %e, "cri: streaming upgrade failed");
                    return;
                }
            };
            let session = session::Session::start(io);
            match pending {
                Pending::Exec(r) => cri.serve_exec(session, &chosen, r).await,
                Pending::Attach(r) => cri.serve_attach(session, &chosen, r).await,
                Pending::PortForward(r) => cri.serve_port_forward(session, r).await,
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("Upgrade"),
        );
        h.insert(
            hyper::header::UPGRADE,
            hyper::header::HeaderValue::from_static("SPDY/3.1"),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&protocol) {
            h.insert("x-stream-protocol-version", v);
        }
        r
    }

    /// Exec: validates and answers the URL.
    pub(super) async fn exec(
        &self,
        req: cri::ExecRequest,
    ) -> Result<cri::ExecResponse, tonic::Status> {
        if req.cmd.is_empty() {
            return Err(tonic::Status::invalid_argument("cmd: required"));
        }
        check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
        self.running_container(&req.container_id).await?;
        let url = self.inner.tokens.issue(Pending::Exec(req))?;
        Ok(cri::ExecResponse { url })
    }

    /// Attach: validates and answers the URL. The container's own tty
    /// decides whether the session has one.
    pub(super) async fn attach(
        &self,
        mut req: cri::AttachRequest,
    ) -> Result<cri::AttachResponse, tonic::Status> {
        check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
        let m = self.running_container(&req.container_id).await?;
        req.container_id = m.id.clone();
        req.tty = m.config.tty;
        if req.tty {
            req.stderr = false;
        }
        let url = self.inner.tokens.issue(Pending::Attach(req))?;
        Ok(cri::AttachResponse { url })
    }

    /// PortForward: validates and answers the URL.
    pub(super) async fn port_forward(
        &self,
        req: cri::PortForwardRequest,
    ) -> Result<cri::PortForwardResponse, tonic::Status> {
        let pod = self
            .inner
            .stores
            .sandboxes
            .get(&req.pod_sandbox_id)
            .map_err(|e| super::helpers::fail(berth_api::ErrorKind::NotFound, e))?;
        if !pod.ready {
            return Err(super::helpers::fail(
                berth_api::ErrorKind::FailedPrecondition,
                format!("pod {} is not ready", pod.id),
            ));
        }
        let url = self.inner.tokens.issue(Pending::PortForward(req))?;
        Ok(cri::PortForwardResponse { url })
    }

    /// The container `id`, FailedPrecondition unless its task runs.
    async fn running_container(
        &self,
        id: &str,
    ) -> Result<Arc<super::metadata::ContainerMetadata>, tonic::Status> {
        let m = self.get_container(id)?;
        let running = matches!(
            self.inner.deps.tasks.state(super::NAMESPACE, &m.id, "").await,
            Ok(p) if p.status == crate::tasks::Status::Running
        );
        if !running {
            return Err(super::helpers::fail(
                berth_api::ErrorKind::FailedPrecondition,
                format!("container {} is not running", m.id),
            ));
        }
        Ok(m)
    }
}

/// The kubelet's rules: one of the streams, and no stderr with a tty
/// (a terminal multiplexes both into stdout).
fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), tonic::Status> {
    if tty && stderr {
        return Err(tonic::Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(tonic::Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(cri::ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
    }

    #[test]
    fn tokens_are_single_use_of_their_kind_and_expire() {
        let t = Tokens::default();
        assert!(t.issue(exec()).is_err(), "no URL before the server listens");
        t.base.set("http://127.0.0.1:1".into()).unwrap();
        let url = t.issue(exec()).unwrap();
        let token = url.rsplit('/').next().unwrap().to_string();
        assert_eq!(token.len(), 48);
        assert!(url.starts_with("http://127.0.0.1:1/exec/"));
        assert!(t.take("portforward", &token).is_none(), "another kind");
        // The wrong-kind attempt used it up as well: nothing is retried.
        assert!(t.take("exec", &token).is_none());

        let url = t.issue(exec()).unwrap();
        let token = url.rsplit('/').next().unwrap().to_string();
        assert!(t.take("exec", &token).is_some());
        assert!(t.take("exec", &token).is_none(), "second use");
        assert!(t.take("exec", "garbage").is_none());

        let url = t.issue(exec()).unwrap();
        let token = url.rsplit('/').next().unwrap().to_string();
        if let Some(old) = Instant::now().checked_sub(TOKEN_TTL + Duration::from_secs(1)) {
            t.pending.lock().unwrap().get_mut(&token).unwrap().1 = old;
            assert!(t.take("exec", &token).is_none(), "expired");
        }
        let a = t.issue(exec()).unwrap();
        let b = t.issue(exec()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn streams_rules() {
        assert!(check_streams(true, true, true, true).is_err());
        assert!(check_streams(false, false, false, false).is_err());
        assert!(check_streams(true, true, true, false).is_ok());
        assert!(check_streams(false, false, true, true).is_ok());
    }
}
