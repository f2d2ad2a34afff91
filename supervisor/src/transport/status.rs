//! The code of a call refused for its message size: ResourceExhausted, as
//! containerd (grpc-go) answers, where tonic says OutOfRange.
//!
//! tonic checks the limits itself (set per service to
//! [`super::MAX_MESSAGE`]) and reports a message over them with OutOfRange
//! and a fixed text ("Error, decoded message length too large: ..." for a
//! request, "Error, encoded message length too large: ..." for a reply),
//! either in the response headers (a call refused before its handler ran)
//! or in the trailers (a stream, or a reply too large to send). This layer
//! rewrites exactly those statuses to ResourceExhausted, keeping the text.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tower::{Layer, Service};

/// Wraps every service of the router.
#[derive(Clone, Copy, Default)]
pub struct MessageSizeLayer;

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MessageSize { inner }
    }
}

/// See [`MessageSizeLayer`].
#[derive(Clone)]
pub struct MessageSize<S> {
    inner: S,
}

/// tonic's texts for a message over its limit (grpc-message may carry
/// them percent-encoded).
fn is_size_refusal(headers: &HeaderMap) -> bool {
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(b"11") {
        return false;
    }
    let Some(msg) = headers.get("grpc-message").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let msg = msg.replace("%20", " ").replace("%2C", ",");
    msg.starts_with("Error, decoded message length too large")
        || msg.starts_with("Error, encoded message length too large")
}

fn fix(headers: &mut HeaderMap) {
    if is_size_refusal(headers) {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
}

impl<S, B, R> Service<http::Request<B>> for MessageSize<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<SizeBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let (mut parts, body) = fut.await?.into_parts();
            fix(&mut parts.headers);
            Ok(http::Response::from_parts(parts, SizeBody { inner: body }))
        })
    }
}

/// A response body whose trailers get the same rewrite.
pub struct SizeBody<R> {
    inner: R,
}

impl<R: Body + Unpin> Body for SizeBody<R> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.get_mut().inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(match frame.into_trailers() {
                Ok(mut trailers) => {
                    fix(&mut trailers);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            }))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_size_refusals_change_code() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static(
                "Error, decoded message length too large: found 20000000 bytes, the limit is: 16777216 bytes",
            ),
        );
        fix(&mut h);
        assert_eq!(h["grpc-status"], "8");
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("offset out of range"),
        );
        fix(&mut h);
        assert_eq!(h["grpc-status"], "11");
    }
}
