//! One way for tests to reach berthd's gRPC socket directly, for what
//! neither `ctr` nor `berthctl` can say: a channel over the unix socket and
//! requests carrying the namespace and, when a test holds one, the lease
//! header (`containerd-lease`), as containerd's clients send them.
//!
//! A test that creates something the garbage collector may see (an active
//! snapshot, a blob outside an image) holds it with a lease, as containerd's
//! clients do: berthd schedules a collection after imports and deletes, and
//! an unleased, unreferenced object is fair game for it.

use std::path::Path;

use berth_api::services::leases::v1 as lpb;
use berth_api::services::snapshots::v1 as spb;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Request;

/// Connects to berthd's socket at `addr`.
pub async fn try_channel(addr: &Path) -> Result<Channel, tonic::transport::Error> {
    let p = addr.to_path_buf();
    Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
            }
        }))
        .await
}

/// Connects to berthd's socket at `addr`; panics when it cannot.
pub async fn channel(addr: &Path) -> Channel {
    try_channel(addr).await.expect("connect to berthd")
}

/// A request in namespace `ns`, under `lease` when given.
pub fn request<T>(msg: T, ns: &str, lease: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        berth_api::namespace::GRPC_HEADER,
        ns.parse().expect("namespace is ASCII"),
    );
    if let Some(l) = lease {
        r.metadata_mut().insert(
            berth_api::lease::GRPC_HEADER,
            l.parse().expect("lease id is ASCII"),
        );
    }
    r
}

/// A current-thread runtime for driving a few calls from a sync test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A lease held by a test: what is created under it survives garbage
/// collection until [`Lease::release`] (or drop) deletes the lease.
pub struct Lease {
    addr: std::path::PathBuf,
    ns: String,
    id: String,
    released: bool,
}

impl Lease {
    /// Creates a lease in namespace `ns` on the daemon at `addr`.
    pub fn create(addr: &Path, ns: &str) -> Self {
        let rt = runtime();
        let id = rt.block_on(async {
            let mut c = lpb::leases_client::LeasesClient::new(channel(addr).await);
            c.create(request(lpb::CreateRequest::default(), ns, None))
                .await
                .expect("create lease")
                .into_inner()
                .lease
                .expect("lease in reply")
                .id
        });
        Self {
            addr: addr.to_path_buf(),
            ns: ns.to_string(),
            id,
            released: false,
        }
    }

    /// The lease id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Prepares active snapshot `key` on `parent` (overlayfs)
    /// under this lease.
    pub fn prepare_snapshot(&self, key: &str, parent: &str) -> Vec<berth_api::types::Mount> {
        runtime().block_on(async {
            let mut c = spb::snapshots_client::SnapshotsClient::new(channel(&self.addr).await);
            c.prepare(request(
                spb::PrepareSnapshotRequest {
                    snapshotter: "overlayfs".into(),
                    key: key.into(),
                    parent: parent.into(),
                    labels: Default::default(),
                },
                &self.ns,
                Some(&self.id),
            ))
            .await
            .unwrap_or_else(|e| panic!("prepare snapshot {key:?} under lease: {e}"))
            .into_inner()
            .mounts
        })
    }

    /// Creates read-only view `key` of `parent` (overlayfs) under
    /// this lease.
    pub fn view_snapshot(&self, key: &str, parent: &str) -> Vec<berth_api::types::Mount> {
        runtime().block_on(async {
            let mut c = spb::snapshots_client::SnapshotsClient::new(channel(&self.addr).await);
            c.view(request(
                spb::ViewSnapshotRequest {
                    snapshotter: "overlayfs".into(),
                    key: key.into(),
                    parent: parent.into(),
                    labels: Default::default(),
                },
                &self.ns,
                Some(&self.id),
            ))
            .await
            .unwrap_or_else(|e| panic!("view snapshot {key:?} under lease: {e}"))
            .into_inner()
            .mounts
        })
    }

    /// Deletes the lease (synchronously collecting what only it held);
    /// panics when the daemon refuses.
    pub fn release(mut self) {
        self.released = true;
        self.delete().expect("delete lease");
    }

    fn delete(&self) -> Result<(), tonic::Status> {
        runtime().block_on(async {
            let ch = try_channel(&self.addr)
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            lpb::leases_client::LeasesClient::new(ch)
                .delete(request(
                    lpb::DeleteRequest {
                        id: self.id.clone(),
                        sync: true,
                    },
                    &self.ns,
                    None,
                ))
                .await
                .map(drop)
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.delete();
        }
    }
}
