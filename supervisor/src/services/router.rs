//! The wiring: every adapter over the [`App`], in one router, and the
//! plugin list Introspection reports, made from what is registered here
//! (so the two cannot drift apart).

use berth_api::services as svc;
use tonic::transport::server::Router;
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tower::layer::util::{Identity, Stack};

use super::introspection::{IntrospectionService, PluginInfo};
use super::rpc_log::RpcLogLayer;
use crate::app::App;
use crate::transport::MessageSizeLayer;

/// The plugins registered so far, in registration order.
#[derive(Default)]
struct Plugins(Vec<PluginInfo>);

impl Plugins {
    /// Records a plugin of `kind` named `id`.
    fn add(&mut self, kind: &str, id: &str) {
        self.0.push(PluginInfo {
            kind: kind.to_string(),
            id: id.to_string(),
            capabilities: vec![],
        });
    }

    /// Records the gRPC service `id` and hands `service` on.
    fn grpc<S>(&mut self, id: &str, service: S) -> S {
        self.add("io.containerd.grpc.v1", id);
        service
    }
}

/// The router serving every service of `app`; `uuid` is the server's,
/// `health` the `grpc.health.v1.Health` server whose status the daemon
/// drives (see [`crate::health`]). Every service takes messages up to the
/// transport's limit, and the size layer turns a bigger one into
/// ResourceExhausted (see transport).
pub fn router<H: HealthApi>(
    app: &App,
    uuid: String,
    health: HealthServer<H>,
) -> Router<Stack<MessageSizeLayer, Stack<RpcLogLayer, Identity>>> {
    use super::*;
    use crate::sized;
    let mut p = Plugins::default();
    let mut r = Server::builder()
        .layer(RpcLogLayer::new(app.metrics.rpc()))
        .layer(MessageSizeLayer)
        .add_service(p.grpc(
            "version",
            sized!(svc::version::v1::version_server::VersionServer::new(
                version::VersionService
            )),
        ));
    // containerd registers it as the grpc plugin "healthcheck".
    r = r.add_service(p.grpc("healthcheck", sized!(health)));
    r = r.add_service(p.grpc(
        "namespaces",
        sized!(
            svc::namespaces::v1::namespaces_server::NamespacesServer::new(
                namespaces::NamespacesService::new(app.namespaces.clone()),
            )
        ),
    ));
    r = r.add_service(p.grpc(
        "leases",
        sized!(svc::leases::v1::leases_server::LeasesServer::new(
            leases::LeasesService::new(app.leases.clone()),
        )),
    ));
    r = r.add_service(p.grpc(
        "snapshots",
        sized!(svc::snapshots::v1::snapshots_server::SnapshotsServer::new(
            snapshots::SnapshotsService::new(app.snapshots.clone()),
        )),
    ));
    for name in app.snapshots.backends().names() {
        p.add("io.containerd.snapshotter.v1", &name);
    }
    r = r.add_service(p.grpc(
        "images",
        sized!(svc::images::v1::images_server::ImagesServer::new(
            images::ImagesService::new(app.images.clone()),
        )),
    ));
    r = r.add_service(p.grpc(
        "diff",
        sized!(svc::diff::v1::diff_server::DiffServer::new(
            diff::DiffService::new(app.differ.clone())
        )),
    ));
    p.add("io.containerd.differ.v1", "walking");
    r = r.add_service(p.grpc(
        "content",
        sized!(svc::content::v1::content_server::ContentServer::new(
            content::ContentService::new(app.content.clone()),
        )),
    ));
    p.add("io.containerd.content.v1", "content");
    r = r.add_service(p.grpc(
        "events",
        sized!(svc::events::v1::events_server::EventsServer::new(
            events::EventsService::new(app.events.clone()),
        )),
    ));
    r = r.add_service(p.grpc(
        "containers",
        sized!(
            svc::containers::v1::containers_server::ContainersServer::new(
                containers::ContainersService::new(app.containers.clone()),
            )
        ),
    ));
    r = r.add_service(p.grpc(
        "tasks",
        sized!(svc::tasks::v1::tasks_server::TasksServer::new(
            tasks::TasksService::new(app.tasks.clone())
        )),
    ));
    p.add("io.containerd.runtime.v2", "task");
    // Its v1 Linux runtime name is taken too (tasks::RUNC_RUNTIMES).
    p.add("io.containerd.runtime.v1", "linux");
    // Berth's own image services are not containerd plugins.
    r = r.add_service(sized!(
        berth_api::berth_images::v1::transfer_server::TransferServer::new(
            transfer::TransferService::new(app.archives.clone()),
        )
    ));
    r = r.add_service(sized!(
        berth_api::images::v1::registry_server::RegistryServer::new(
            registry::RegistryService::new(app.transfers.clone()),
        )
    ));
    // Berth's Docker-style workflow and networks.
    r = r.add_service(sized!(
        berth_api::berth_containers::v1::containers_server::ContainersServer::new(
            berth_containers::ContainersService::new(app.engine.clone()),
        )
    ));
    r = r.add_service(sized!(
        berth_api::berth_networks::v1::networks_server::NetworksServer::new(
            berth_networks::NetworksService::new(app.networks.clone(), app.engine.clone()),
        )
    ));
    r = r.add_service(sized!(
        berth_api::berth_containers::v1::container_files_server::ContainerFilesServer::new(
            berth_files::FilesService::new(app.engine.clone()),
        )
    ));
    r = r.add_service(sized!(
        berth_api::berth_volumes::v1::volumes_server::VolumesServer::new(
            berth_volumes::VolumesService::new(app.volumes.clone(), app.engine.clone()),
        )
    ));
    // The Kubernetes CRI, as containerd serves it: one plugin, two services.
    r = r.add_service(p.grpc("cri", sized!(app.cri.runtime_server())));
    r = r.add_service(sized!(app.cri.image_server()));
    p.add("io.containerd.grpc.v1", "introspection");
    r.add_service(sized!(
        svc::introspection::v1::introspection_server::IntrospectionServer::new(
            IntrospectionService::new(p.0, uuid),
        )
    ))
}
