//! berthd's operator endpoint (`metrics_address`, off by default): plain
//! HTTP/1.1 on a TCP address, served with hyper, apart from the gRPC
//! socket.
//!
//! - `GET /v1/metrics`: Prometheus text (format 0.0.4), as containerd
//!   serves its metrics; the state figures are read at each scrape
//!   ([`gather`]), the counters are [`crate::metrics`]'s.
//! - `GET /healthz`: `200 ok` while berthd serves; `503 starting` until
//!   start-up recovery is done, `503 draining` once a stop has begun (the
//!   endpoint answers from before recovery until the drain ends).
//!
//! Any other path is 404, any other method 405. The endpoint has no
//! authentication: bind it to loopback or a management network.

mod gather;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Where berthd is in its life, as `/healthz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening stores and recovering the shims of a previous run.
    Starting = 0,
    /// Serving.
    Ready = 1,
    /// A stop has begun; in-flight calls drain.
    Draining = 2,
}

/// berthd's phase, shared by the daemon (which moves it) and the endpoint.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health(Arc<AtomicU8>);

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(AtomicU8::new(Phase::Starting as u8)))
    }
}

impl Health {
    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }

    /// The phase now.
    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the address could not be bound
    #[error("metrics_address {address}: {source}")]
    Bind {
        /// the address
        address: String,
        /// the cause
        source: std::io::Error,
    },
}

/// Binds `address` (before recovery, so a failure stops berthd at once).
pub async fn bind(address: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind {
            address: address.to_string(),
            source,
        })
}

/// Serves the endpoint on `listener` until `stop`.
pub fn spawn(listener: TcpListener, app: App, health: Health, stop: CancellationToken) {
    match listener.local_addr() {
        Ok(a) => tracing::info!(address = %a, "metrics and health endpoint listening"),
        Err(e) => tracing::warn!(error = %e, "metrics endpoint: no local address"),
    }
    let ops = Arc::new(Ops { app, health });
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ops = Arc::clone(&ops);
            let stop = stop.clone();
            tokio::spawn(async move { ops.connection(stream, peer, stop).await });
        }
    });
}

struct Ops {
    app: App,
    health: Health,
}

impl Ops {
    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        stop: CancellationToken,
    ) {
        let me = Arc::clone(&self);
        let service = hyper::service::service_fn(move |req| {
            let me = Arc::clone(&me);
            async move { Ok::<_, Infallible>(me.answer(req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        tokio::select! {
            r = conn => if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "metrics endpoint: connection ended");
            },
            _ = stop.cancelled() => {}
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        match req.uri().path() {
            "/healthz" => match self.health.get() {
                Phase::Ready => text(StatusCode::OK, "ok\n"),
                Phase::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                Phase::Draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            },
            "/v1/metrics" => {
                let figures = gather::figures(&self.app).await;
                let body = self.app.metrics.render(figures);
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                r
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /v1/metrics or /healthz\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
