//! The connection to berthd: a tonic channel over the unix socket, and one
//! typed client per service, each sending the namespace in the
//! `containerd-namespace` metadata key on every call.

use std::path::{Path, PathBuf};

use berth_api::services;
use hyper_util::rt::TokioIo;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// Largest message we accept from the daemon (content reads, big lists).
const MAX_MESSAGE: usize = 64 << 20;

/// Adds the namespace header (and the lease header, when set) to every
/// request.
#[derive(Clone)]
pub struct NamespaceInterceptor {
    namespace: AsciiMetadataValue,
    lease: Option<AsciiMetadataValue>,
}

impl tonic::service::Interceptor for NamespaceInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut()
            .insert(berth_api::namespace::GRPC_HEADER, self.namespace.clone());
        if let Some(l) = &self.lease {
            req.metadata_mut()
                .insert(berth_api::lease::GRPC_HEADER, l.clone());
        }
        Ok(req)
    }
}

/// A channel with the namespace interceptor, as every typed client uses.
pub type Svc = InterceptedService<Channel, NamespaceInterceptor>;

/// A connected client for one namespace. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    namespace: String,
    interceptor: NamespaceInterceptor,
}

macro_rules! service_client {
    ($(#[$doc:meta])* $name:ident, $($module:ident)::+, $client:ident) => {
        $(#[$doc])*
        pub fn $name(&self) -> $($module)::+::$client<Svc> {
            $($module)::+::$client::with_interceptor(
                self.channel.clone(),
                self.interceptor.clone(),
            )
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
        }
    };
}

impl Client {
    /// Connects to the daemon listening on the unix socket `address`, for
    /// calls in `namespace`. Fails when nothing answers on the socket.
    pub async fn connect(address: &Path, namespace: &str) -> Result<Self> {
        let value: AsciiMetadataValue = MetadataValue::try_from(namespace).map_err(|_| {
            Error::Input(format!(
                "namespace {namespace:?}: must be printable ASCII (a containerd identifier)"
            ))
        })?;
        let path: PathBuf = address.to_path_buf();
        // The URI is required by tonic but unused: the connector below
        // always dials the socket.
        let endpoint = Endpoint::from_static("http://berthd.local");
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| Error::Connect {
                address: address.display().to_string(),
                reason: error_chain(&e),
            })?;
        Ok(Self {
            channel,
            namespace: namespace.to_string(),
            interceptor: NamespaceInterceptor {
                namespace: value,
                lease: None,
            },
        })
    }

    /// The same connection, with every call made under lease `id` (what
    /// it creates is protected from garbage collection until the lease
    /// goes).
    pub fn with_lease(&self, id: &str) -> Result<Self> {
        let lease = MetadataValue::try_from(id)
            .map_err(|_| Error::Input(format!("lease {id:?}: must be printable ASCII")))?;
        let mut c = self.clone();
        c.interceptor.lease = Some(lease);
        Ok(c)
    }

    /// The namespace every call is made in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    service_client!(
        /// containerd.services.version.v1.Version
        version, services::version::v1::version_client, VersionClient
    );
    service_client!(
        /// containerd.services.namespaces.v1.Namespaces
        namespaces, services::namespaces::v1::namespaces_client, NamespacesClient
    );
    service_client!(
        /// containerd.services.content.v1.Content
        content, services::content::v1::content_client, ContentClient
    );
    service_client!(
        /// containerd.services.leases.v1.Leases
        leases, services::leases::v1::leases_client, LeasesClient
    );
    service_client!(
        /// containerd.services.images.v1.Images
        images, services::images::v1::images_client, ImagesClient
    );
    service_client!(
        /// containerd.services.snapshots.v1.Snapshots
        snapshots, services::snapshots::v1::snapshots_client, SnapshotsClient
    );
    service_client!(
        /// containerd.services.diff.v1.Diff
        diff, services::diff::v1::diff_client, DiffClient
    );
    service_client!(
        /// containerd.services.containers.v1.Containers
        containers, services::containers::v1::containers_client, ContainersClient
    );
    service_client!(
        /// containerd.services.tasks.v1.Tasks
        tasks, services::tasks::v1::tasks_client, TasksClient
    );
    service_client!(
        /// containerd.services.events.v1.Events
        events, services::events::v1::events_client, EventsClient
    );
    service_client!(
        /// berth.images.v1.Transfer (server-side import and export)
        transfer, berth_api::berth_images::v1::transfer_client, TransferClient
    );
    service_client!(
        /// berth.images.v1.Registry (server-side pull and push)
        registry, berth_api::berth_images::v1::registry_client, RegistryClient
    );
    service_client!(
        /// berth.containers.v1.Containers (the Docker-style workflow)
        engine, berth_api::berth_containers::v1::containers_client, ContainersClient
    );
    service_client!(
        /// berth.networks.v1.Networks (berthd's own networks)
        networks, berth_api::berth_networks::v1::networks_client, NetworksClient
    );
    service_client!(
        /// berth.containers.v1.ContainerFiles (commit, diff, cp)
        files, berth_api::berth_containers::v1::container_files_client, ContainerFilesClient
    );
    service_client!(
        /// berth.volumes.v1.Volumes (berthd's volumes)
        volumes, berth_api::berth_volumes::v1::volumes_client, VolumesClient
    );
    service_client!(
        /// containerd.services.introspection.v1.Introspection
        introspection, services::introspection::v1::introspection_client, IntrospectionClient
    );
}

/// An error and its sources, joined with `: `, skipping repeats.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = Some(e);
    while let Some(s) = source {
        let msg = s.to_string();
        if msg != "transport error" && !out.contains(&msg) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}
