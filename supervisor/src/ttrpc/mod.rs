//! containerd's ttrpc endpoint: a second socket at the gRPC address plus
//! `.ttrpc`, speaking ttrpc (containerd's lean RPC over a unix socket).
//!
//! containerd's shims publish their events through it
//! (`containerd.services.events.ttrpc.v1.Events/Forward`), and clients
//! connect to it and expect it back after a reconnect. berthd serves the
//! events Forward service there, delivering into the same event bus the
//! gRPC Events service serves ([`events`]).
//!
//! Lifetime, like the gRPC socket: bound with mode 0660 before recovery
//! (a stale file left by a killed daemon is replaced, a live server's
//! socket never), served once berthd is ready, closed and removed on
//! shutdown, made anew on the next start. The daemon binds the socket and
//! hands the listener here.
//!
//! The `ttrpc` crate brings its own protobuf stack (rust-protobuf) for its
//! framing messages; it stays inside this module. The one request served
//! here is decoded with our prost types: the ttrpc events service's
//! `ForwardRequest` and `Envelope` have the same fields and numbers as the
//! gRPC events service's, so `berth_api`'s messages read them as they are.

pub mod events;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ::ttrpc::asynchronous::{transport::Listener, MethodHandler, Server, Service};
use tokio::net::UnixListener;

/// The ttrpc address for a gRPC address: the same path plus `.ttrpc`.
pub fn address_for(grpc: &Path) -> PathBuf {
    let mut s = grpc.as_os_str().to_owned();
    s.push(".ttrpc");
    PathBuf::from(s)
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the ttrpc server refused to start
    #[error("ttrpc server {path}: {msg}")]
    Start {
        /// the socket
        path: PathBuf,
        /// what the server said
        msg: String,
    },
}

/// The running endpoint; [`Endpoint::stop`] closes it and removes its
/// socket.
pub struct Endpoint {
    server: Server,
    path: PathBuf,
}

impl Endpoint {
    /// Serves berthd's ttrpc services on `listener`, bound at `path`.
    pub async fn start(
        listener: UnixListener,
        path: PathBuf,
        bus: crate::events::Events,
    ) -> Result<Self, Error> {
        let mut server = Server::new()
            .add_listener(Listener::from(listener))
            .register_service(services(bus));
        server.start().await.map_err(|e| Error::Start {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        Ok(Self { server, path })
    }

    /// Stops accepting, closes the connections (bounded by the ttrpc
    /// server's own timeout) and removes the socket.
    pub async fn stop(mut self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!(error = %e, "stopping the ttrpc server");
        }
        let path = self.path.clone();
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(&path)).await;
        if let Ok(Err(e)) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "removing the ttrpc socket");
            }
        }
    }
}

/// Every ttrpc service berthd serves, by full service name.
fn services(bus: crate::events::Events) -> HashMap<String, Service> {
    let mut methods: HashMap<String, Box<dyn MethodHandler + Send + Sync>> = HashMap::new();
    methods.insert(
        events::FORWARD.to_string(),
        Box::new(events::Forward::new(bus)),
    );
    HashMap::from([(
        events::SERVICE.to_string(),
        Service {
            methods,
            streams: HashMap::new(),
        },
    )])
}
