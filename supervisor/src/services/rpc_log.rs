//! Every call, once it ends: counted in berthd's metrics (service, method,
//! gRPC code, time from the request to the end of the response) and, at
//! `--log-level debug`, one line (method, code, time to the response
//! headers). Enough to see where a client's round trips go, without the
//! transport crates' per-frame noise.
//!
//! The code is the response's `grpc-status`: in its headers (a call
//! refused before its reply, or any unary error) or in its trailers (a
//! reply, a stream); a response dropped before its end (the client went
//! away) counts as Canceled.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::http::{self, HeaderMap};
use tower::{Layer, Service};

use crate::metrics::Rpc;

/// Wraps every service of the router.
#[derive(Clone)]
pub struct RpcLogLayer {
    rpc: Rpc,
}

impl RpcLogLayer {
    /// Counts calls into `rpc`.
    pub fn new(rpc: Rpc) -> Self {
        Self { rpc }
    }
}

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcLog {
            inner,
            rpc: self.rpc.clone(),
        }
    }
}

/// See [`RpcLogLayer`].
#[derive(Clone)]
pub struct RpcLog<S> {
    inner: S,
    rpc: Rpc,
}

/// `grpc-status` in `headers`, if there.
fn status_in(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl<S, B, R> Service<http::Request<B>> for RpcLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RpcBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let started = Instant::now();
        let fut = self.inner.call(req);
        let rpc = self.rpc.clone();
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => status_in(r.headers()),
                // The service failed before a response: the transport's.
                Err(_) => Some(2),
            };
            if tracing::enabled!(tracing::Level::DEBUG) {
                let code = code.map_or_else(|| "0".to_string(), |c| c.to_string());
                tracing::debug!(%method, code, elapsed_us = started.elapsed().as_micros() as u64, "rpc");
            }
            let call = Call {
                rpc,
                method,
                started,
                code,
                ended: false,
            };
            // A service error is counted as the call drops here.
            let (parts, body) = res?.into_parts();
            Ok(http::Response::from_parts(
                parts,
                RpcBody {
                    inner: body,
                    call: Some(call),
                },
            ))
        })
    }
}

/// One call being answered; counted once, when it ends or is dropped.
struct Call {
    rpc: Rpc,
    method: String,
    started: Instant,
    /// The status seen so far (headers, then trailers).
    code: Option<i32>,
    /// The body reached its end (else a drop means the client left).
    ended: bool,
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = match (self.code, self.ended) {
            (Some(c), _) => c,
            (None, true) => 0,
            (None, false) => 1,
        };
        self.rpc.observe(&self.method, code, self.started.elapsed());
    }
}

/// A response body that counts its call when it ends.
pub struct RpcBody<R> {
    inner: R,
    call: Option<Call>,
}

impl<R: Body + Unpin> Body for RpcBody<R> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(t), Some(call)) = (frame.trailers_ref(), me.call.as_mut()) {
                    if let Some(c) = status_in(t) {
                        call.code = Some(c);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(mut call) = me.call.take() {
                    call.ended = true;
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = me.call.as_mut() {
                    call.code.get_or_insert(2);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
