//! One debug line per call: method, gRPC status and time to the response
//! headers. Enough to see where a client's round trips go (`--log-level
//! debug`), without the transport crates' per-frame noise.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tower::{Layer, Service};

/// Wraps every service of the router.
#[derive(Clone, Copy, Default)]
pub struct RpcLogLayer;

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcLog { inner }
    }
}

/// See [`RpcLogLayer`].
#[derive(Clone)]
pub struct RpcLog<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for RpcLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return Box::pin(self.inner.call(req));
        }
        let method = req.uri().path().to_string();
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_string(),
                Err(_) => "transport".to_string(),
            };
            tracing::debug!(%method, code, elapsed_us = started.elapsed().as_micros() as u64, "rpc");
            res
        })
    }
}
