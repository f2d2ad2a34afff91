//! Port forwarding (`portforward.k8s.io`) over a SPDY session: for each
//! connection the client opens an `error` and a `data` stream with the
//! same `requestid` and a `port`; the server connects to that port on
//! localhost inside the pod's network namespace (the host's for a
//! host-network pod) and copies bytes both ways. A failed connection is
//! reported as text on its error stream. Connections are independent:
//! many run at once on one session.

use std::collections::HashMap;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{Session, Stream};
use crate::cri::Cri;

/// How long a connection to the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on localhost in network namespace `netns` (empty:
/// berthd's own). The socket is made on a thread of its own that enters
/// the namespace and then ends, so no thread of berthd's pools ever
/// changes namespace; a socket stays in the namespace it was made in.
async fn connect(netns: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("portforward-connect".into())
        .spawn(move || {
            let r = (|| {
                if !netns.is_empty() {
                    let f = std::fs::File::open(&netns)?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                }
                let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
                std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
                    .or_else(|_| std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT))
            })();
            let _ = tx.send(r);
        })?;
    let s = rx
        .await
        .map_err(|_| std::io::Error::other("connect thread ended"))??;
    s.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(s)
}

/// Copies one forwarded connection until both directions end.
async fn forward(netns: String, port: u16, mut data: Stream, error: Stream) {
    let err = error.sender();
    let out = data.sender();
    let conn = match connect(&netns, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod: failed to connect to localhost:{port} inside namespace: {e}"
            );
            err.send(msg.as_bytes()).await;
            err.finish().await;
            out.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let upstream = async move {
        while let Some(bytes) = data.data.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let out2 = out.clone();
    let downstream = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !out2.send(&buf[..n]).await {
                        break;
                    }
                }
            }
        }
        out2.finish().await;
    };
    tokio::join!(upstream, downstream);
    err.finish().await;
    drop(error);
}

impl Cri {
    /// Serves one port-forward session.
    pub(super) async fn serve_port_forward(
        &self,
        mut session: Session,
        req: cri::PortForwardRequest,
    ) {
        let netns = match self.inner.stores.sandboxes.get(&req.pod_sandbox_id) {
            Ok(p) => p.netns_path.clone(),
            Err(e) => {
                tracing::debug!(pod = %req.pod_sandbox_id, error = %e, "portforward: pod gone");
                session.close().await;
                return;
            }
        };
        let mut half: HashMap<String, Stream> = HashMap::new();
        let mut conns = tokio::task::JoinSet::new();
        while let Some(s) = session.incoming.recv().await {
            let kind = s.header("streamtype").unwrap_or("").to_string();
            let rid = s.header("requestid").unwrap_or("").to_string();
            if kind != "data" && kind != "error" {
                s.sender().reset(super::spdy::rst::REFUSED_STREAM).await;
                continue;
            }
            let Some(other) = half.remove(&rid) else {
                half.insert(rid, s);
                continue;
            };
            let (data, error) = if kind == "data" {
                (s, other)
            } else {
                (other, s)
            };
            if data.header("streamtype") != Some("data")
                || error.header("streamtype") != Some("error")
            {
                data.sender().reset(super::spdy::rst::PROTOCOL_ERROR).await;
                error.sender().reset(super::spdy::rst::PROTOCOL_ERROR).await;
                continue;
            }
            let port = data
                .header("port")
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0);
            let Some(port) = port else {
                let e = error.sender();
                e.send(b"invalid port").await;
                e.finish().await;
                data.sender().finish().await;
                continue;
            };
            if !req.port.is_empty() && !req.port.contains(&(port as i32)) {
                tracing::debug!(
                    port,
                    "portforward: port not in the request; allowed as the kubelet does"
                );
            }
            conns.spawn(forward(netns.clone(), port, data, error));
        }
        drop(half);
        while conns.join_next().await.is_some() {}
        session.close().await;
    }
}
