//! Create: check the request, take the name, make sure the image is
//! there (pulling it by the policy), prepare the rootfs snapshot, write
//! the container's files, build its spec, and record it (containerd's
//! record, then the engine's). A failure at any step undoes the earlier
//! ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_api::oci::Platform;

use super::error::blocking;
use super::image::{self, PullArgs};
use super::model::{ContainerConfig, PullPolicy, Record, RestartPolicy, State, Status};
use super::users::Users;
use super::{files, names, ports, records, spec, stop, Engine, Error, Result, Slot};
use crate::netman::{self, Kind};
use crate::registry::{Credentials, Progress};
use crate::snapshots::NewSnapshot;
use crate::store::containers::{AnyRec, Container, Runtime};

/// The runtime every engine container runs under.
const RUNTIME: &str = "io.containerd.runc.v2";
/// Leases holding a half-made container's snapshot; one left by a crash
/// is deleted at start-up (the GC then takes what only it held).
pub const CREATE_LEASE_PREFIX: &str = "berth.create.";
/// The containerd label holding the engine's name of a container.
pub(crate) const NAME_LABEL: &str = "berth.name";

/// A create as the adapter asks for it.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// What the container is to be.
    pub config: ContainerConfig,
    /// When to pull its image.
    pub pull: PullPolicy,
    /// Credentials for the pull.
    pub credentials: Credentials,
    /// Plain HTTP for the pull.
    pub plain_http: bool,
}

/// What a create made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Its ID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The image, short name expanded.
    pub image: String,
    /// Things the caller should know.
    pub warnings: Vec<String>,
}

/// Frees a name taken for a create that did not finish.
struct NameTicket<'a> {
    engine: &'a Engine,
    key: (String, String),
}

impl Drop for NameTicket<'_> {
    fn drop(&mut self) {
        self.engine
            .inner
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// What has been made so far, undone on drop unless disarmed.
struct Undo {
    engine: Engine,
    ns: String,
    id: String,
    snapshot: Option<String>,
    lease: Option<String>,
    dir: Option<std::path::PathBuf>,
    record: bool,
    volumes: bool,
    armed: bool,
}

impl Undo {
    async fn run(mut self) {
        let deps = self.engine.deps().clone();
        if self.armed {
            if self.record {
                let _ = deps.containers.delete(&self.ns, &self.id).await;
            }
            if let Some(sn) = self.snapshot.take() {
                let _ = deps.snapshots.remove(&self.ns, &sn, &self.id).await;
            }
            if self.volumes {
                self.engine.release_volumes(&self.ns, &self.id, true).await;
            }
            if let Some(dir) = self.dir.take() {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            }
        }
        if let Some(lease) = self.lease.take() {
            let _ = deps.leases.delete(&self.ns, &lease, false).await;
        }
    }
}

impl Engine {
    /// Creates a container; see the module doc. Pull progress goes to
    /// `on_progress`.
    pub async fn create(
        &self,
        ns: &str,
        req: CreateRequest,
        on_progress: &(dyn Fn(&Progress) + Send + Sync),
    ) -> Result<Created> {
        let mut c = req.config;
        let mut warnings = Vec::new();
        self.check(&mut c).await?;
        let ticket = self.take_name(ns, &c.name)?;
        c.name = ticket.key.1.clone();

        let platform = match c.platform.as_str() {
            "" => Platform::host(),
            p => {
                Platform::parse(p).map_err(|e| Error::InvalidArgument(format!("platform: {e}")))?
            }
        };
        let snapshotter = self
            .deps()
            .snapshots
            .resolve(if c.snapshotter.is_empty() {
                &self.cfg().default_snapshotter
            } else {
                &c.snapshotter
            })?
            .0;
        let reference = image::normalise_reference(&c.image);
        let resolved = image::ensure(
            self.deps(),
            ns,
            &reference,
            &PullArgs {
                policy: req.pull,
                credentials: req.credentials,
                plain_http: req.plain_http,
                platform: &platform,
                snapshotter: &snapshotter,
                on_progress,
            },
        )
        .await?;
        let exec = resolved.config.config.clone().unwrap_or_default();
        let id = names::new_id();
        let hostname = if c.hostname.is_empty() {
            id[..12].to_string()
        } else {
            c.hostname.clone()
        };
        let stop_signal = match (c.stop_signal.as_str(), exec.stop_signal.as_deref()) {
            ("", Some(s)) if !s.is_empty() => s.to_string(),
            ("", _) => "SIGTERM".to_string(),
            (s, _) => s.to_string(),
        };
        stop::signal_number(&stop_signal)?;
        if c.publish_all && exec.exposed_ports.as_ref().is_none_or(|p| p.is_empty()) {
            warnings.push("publish all: the image exposes no ports".to_string());
        }
        let dir = self.cfg().root.join("containers").join(&id);
        let host_network = c.networks.iter().any(|n| n == netman::HOST);
        let netns = (!host_network).then(|| self.netns_path(&id));

        let mut undo = Undo {
            engine: self.clone(),
            ns: ns.to_string(),
            id: id.clone(),
            snapshot: None,
            lease: None,
            dir: None,
            record: false,
            volumes: false,
            armed: true,
        };
        let result = async {
            let lease = format!("{CREATE_LEASE_PREFIX}{id}");
            let mut labels = crate::store::labels::Labels::new();
            labels.insert(
                berth_api::lease::EXPIRE_LABEL.to_string(),
                berth_api::lease::format_rfc3339(SystemTime::now() + Duration::from_secs(3600)),
            );
            self.deps().leases.create(ns, &lease, labels).await?;
            undo.lease = Some(lease.clone());
            let mounts = self
                .deps()
                .snapshots
                .prepare(
                    ns,
                    Some(&lease),
                    NewSnapshot {
                        snapshotter: snapshotter.clone(),
                        key: id.clone(),
                        parent: resolved.chain_id.clone(),
                        labels: HashMap::new(),
                    },
                )
                .await?;
            undo.snapshot = Some(snapshotter.clone());
            undo.dir = Some(dir.clone());
            let user = if c.user.is_empty() {
                exec.user.clone().unwrap_or_default()
            } else {
                c.user.clone()
            };
            undo.volumes = true;
            let spec_mounts = self.attach_volumes(ns, &id, &mut c, &exec, &mounts).await?;
            let mut cc = c.clone();
            cc.mounts = spec_mounts;
            let (d, h, cc, ex, ns2, id2, nsp) = (
                dir.clone(),
                hostname.clone(),
                cc,
                exec.clone(),
                ns.to_string(),
                id.clone(),
                netns.clone(),
            );
            let spec = blocking(move || {
                files::write_initial(&d, &h, host_network)?;
                let users = Users::read(&mounts);
                let user = users.resolve(&user)?;
                let host_caps = berth_api::caps::host_bounding_set();
                spec::build(&spec::SpecInputs {
                    namespace: &ns2,
                    id: &id2,
                    hostname: &h,
                    image: &ex,
                    config: &cc,
                    user,
                    netns: nsp.as_deref(),
                    dir: &d,
                    host_caps: &host_caps,
                })
            })
            .await?;
            let mut labels = crate::store::labels::Labels::new();
            labels.extend(c.labels.clone());
            labels.insert(NAME_LABEL.to_string(), c.name.clone());
            let options = (!c.runtime_binary.is_empty()).then(|| {
                berth_api::runc::encode_options(&berth_api::runc::v1::Options {
                    binary_name: c.runtime_binary.clone(),
                    ..Default::default()
                })
                .into()
            });
            let now = SystemTime::now();
            self.deps()
                .containers
                .create(
                    ns,
                    Container {
                        id: id.clone(),
                        labels,
                        image: resolved.name.clone(),
                        runtime: Runtime {
                            name: RUNTIME.into(),
                            options,
                        },
                        spec: Some(AnyRec {
                            type_url: berth_api::type_urls::OCI_SPEC.into(),
                            value: serde_json::to_vec(&spec)
                                .map_err(|e| Error::Internal(format!("encode spec: {e}")))?,
                        }),
                        snapshotter: snapshotter.clone(),
                        snapshot_key: id.clone(),
                        created_at: now,
                        updated_at: now,
                        extensions: Default::default(),
                        sandbox: String::new(),
                    },
                )
                .await?;
            undo.record = true;
            let rec = Record {
                id: id.clone(),
                name: c.name.clone(),
                image: resolved.name.clone(),
                image_digest: resolved.digest.clone(),
                command: spec::args(&exec, &c),
                config: c.clone(),
                stop_signal: stop_signal.clone(),
                exposed: exec
                    .exposed_ports
                    .as_ref()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
                dir: dir.clone(),
                snapshotter: snapshotter.clone(),
                created_at: now,
                state: State {
                    status: Status::Created,
                    ..Default::default()
                },
            };
            records::put(&self.deps().store, ns, &rec).await?;
            Ok::<_, Error>(rec)
        }
        .await;
        match result {
            Ok(rec) => {
                undo.armed = false;
                undo.run().await;
                let slot = Slot::new(ns, rec);
                self.slots()
                    .insert((ns.to_string(), id.clone()), Arc::clone(&slot));
                drop(ticket);
                tracing::info!(namespace = ns, id = %id, name = %c.name, image = %resolved.name, "container created");
                Ok(Created {
                    id,
                    name: c.name,
                    image: resolved.name,
                    warnings,
                })
            }
            Err(e) => {
                undo.run().await;
                Err(e)
            }
        }
    }

    /// Where a container's network namespace is bind-mounted.
    pub(super) fn netns_path(&self, id: &str) -> std::path::PathBuf {
        self.cfg().state.join("netns").join(id)
    }

    /// Checks what does not need the image; fills defaults.
    async fn check(&self, c: &mut ContainerConfig) -> Result<()> {
        if c.image.trim().is_empty() {
            return Err(Error::InvalidArgument("image: required".into()));
        }
        if !c.name.is_empty() {
            names::validate(&c.name)?;
        }
        if c.auto_remove && c.restart != RestartPolicy::No {
            return Err(Error::InvalidArgument(
                "conflicting options: a restart policy and removal on exit (--rm)".into(),
            ));
        }
        for p in &c.ports {
            ports::validate(p)?;
        }
        for e in &c.env {
            if e.is_empty() || e.starts_with('=') {
                return Err(Error::InvalidArgument(format!(
                    "environment variable {e:?}: expected KEY=value"
                )));
            }
        }
        if c.networks.is_empty() {
            c.networks.push(self.cfg().default_network.clone());
        }
        let mut seen = Vec::new();
        for n in &c.networks {
            if seen.contains(n) {
                return Err(Error::InvalidArgument(format!(
                    "network {n:?}: named twice"
                )));
            }
            seen.push(n.clone());
            match self.deps().networks.kind(n).await? {
                Kind::Host | Kind::None if c.networks.len() > 1 => {
                    return Err(Error::InvalidArgument(format!(
                        "network {n:?}: cannot be combined with other networks"
                    )))
                }
                Kind::Host | Kind::None if !c.ports.is_empty() || c.publish_all => {
                    return Err(Error::InvalidArgument(format!(
                        "published ports need a bridge network, not {n:?}"
                    )))
                }
                _ => {}
            }
        }
        if !c.network_aliases.is_empty() {
            for a in &c.network_aliases {
                names::validate(a)?;
            }
        }
        Ok(())
    }

    /// Takes `name` (or a generated one) in `ns` until the ticket drops.
    fn take_name(&self, ns: &str, name: &str) -> Result<NameTicket<'_>> {
        let existing: Vec<String> = self.all(ns).iter().map(|s| s.record().name).collect();
        let mut reserved = self
            .inner
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let taken = |n: &str| {
            existing.iter().any(|e| e == n) || reserved.contains(&(ns.to_string(), n.to_string()))
        };
        let name = if name.is_empty() {
            names::generate(&taken)
        } else if taken(name) {
            return Err(Error::AlreadyExists(format!(
                "container name {name:?} is already in use in namespace {ns:?}: remove or rename that container"
            )));
        } else {
            name.to_string()
        };
        let key = (ns.to_string(), name);
        reserved.insert(key.clone());
        Ok(NameTicket { engine: self, key })
    }
}
