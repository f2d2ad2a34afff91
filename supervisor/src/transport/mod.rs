//! How berthd's gRPC server meets its clients on the unix socket, as
//! containerd does:
//!
//! - messages up to [`MAX_MESSAGE`] (16 MiB) both ways on every service;
//!   above it the call fails with ResourceExhausted ([`MessageSizeLayer`]);
//! - any `:authority` is accepted (grpc-core clients send the
//!   percent-encoded socket path; see [`authority`]);
//! - a connection that has not sent the HTTP/2 preface within
//!   [`PREFACE_TIMEOUT`] is closed, so idle sockets cannot pile up.

mod authority;
mod conn;
mod status;

use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};

pub use conn::Conn;
pub use status::{MessageSize, MessageSizeLayer, SizeBody};

/// Largest gRPC message accepted or sent, as containerd's default.
pub const MAX_MESSAGE: usize = 16 << 20;

/// How long a new connection may take to send the HTTP/2 preface.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(20);

/// The accepted connections of `listener`, each wrapped in a [`Conn`].
pub fn incoming(listener: UnixListener) -> impl Stream<Item = std::io::Result<Conn>> {
    UnixListenerStream::new(listener).map(|r| r.map(|io| Conn::new(io, PREFACE_TIMEOUT)))
}

/// A generated `...Server` with [`MAX_MESSAGE`] as its limit both ways.
#[macro_export]
macro_rules! sized {
    ($server:expr) => {
        $server
            .max_decoding_message_size($crate::transport::MAX_MESSAGE)
            .max_encoding_message_size($crate::transport::MAX_MESSAGE)
    };
}
