//! berthd's own networks, Docker's bridge driver over the CNI module
//! ([`crate::network`]): named networks with a subnet, a gateway and a
//! bridge, kept in the metadata store, each written as a conflist
//! (bridge + host-local + portmap + firewall) into berthd's own conf dir.
//!
//! # Contract
//!
//! - Networks are the host's (not namespaced): bridges and subnets are.
//!   `bridge` is the default network, made from berthd's config on first
//!   use; `host` and `none` are built in and attach nothing.
//! - A network's record and conflist are durable before `create` returns;
//!   at start-up every record's conflist is written again, so a conf dir
//!   lost or edited by hand heals.
//! - Subnets never overlap another network's or a route of the host
//!   (checked at create, InvalidArgument naming both).
//! - Attachments are the CNI module's (its cache under the state dir, so
//!   they survive berthd's restarts and not the host's). A network is in
//!   use while one is cached; `remove` refuses it then.
//! - The bridge device exists while a container is attached: the detach
//!   that removes a network's last attachment deletes it (the plugins
//!   remove the veths and their iptables chains in their DEL). Attaches
//!   to one network run side by side; that last-detach step excludes
//!   them, so a bridge is never deleted under a container being added.

mod error;
mod records;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ipnet::{IpNet, Ipv4Net};
use tokio::sync::RwLock;

pub use error::Error;
pub use records::NetworkRecord;

use crate::network::bridge::{self, BridgeNetwork};
use crate::network::{
    AttachRequest, CachedAttachment, DetachRequest, NetworkOptions, Networks, PortMapping,
};
use crate::store::Store;

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The host's network namespace.
pub const HOST: &str = "host";
/// A network namespace with loopback only.
pub const NONE: &str = "none";

/// Where networks live and what the default network is.
#[derive(Debug, Clone)]
pub struct Options {
    /// Conflists of berthd's networks (`ROOT/networks/conf`).
    pub conf_dir: PathBuf,
    /// The CNI attachment cache (`STATE/networks/cache`).
    pub cache_dir: PathBuf,
    /// host-local's leases (`STATE/networks/ipam`).
    pub ipam_dir: PathBuf,
    /// Where CNI plugins are looked for.
    pub bin_dirs: Vec<PathBuf>,
    /// The default network's bridge.
    pub default_bridge: String,
    /// The default network's subnet.
    pub default_subnet: IpNet,
    /// Where `create` without a subnet takes a free /24 from.
    pub pool: IpNet,
}

/// What kind of network a name is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// The host's namespace.
    Host,
    /// Loopback only.
    None,
    /// A bridge network (the default one or a user's).
    Bridge(NetworkRecord),
}

/// A network to create.
#[derive(Debug, Clone, Default)]
pub struct NewNetwork {
    /// Its name.
    pub name: String,
    /// `bridge` (or empty).
    pub driver: String,
    /// Its subnet; `None`: a free /24 of the pool.
    pub subnet: Option<IpNet>,
    /// Its gateway; `None`: the subnet's first address.
    pub gateway: Option<IpAddr>,
    /// Its bridge device; `None`: `berth-<8 hex of its id>`.
    pub bridge: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// No masquerading out of the subnet.
    pub internal: bool,
}

/// One container's attachment to a network, as [`NetworkManager::attach`]
/// is asked for it.
#[derive(Debug, Clone)]
pub struct Attach {
    /// The network.
    pub network: String,
    /// The container (CNI_CONTAINERID).
    pub container_id: String,
    /// Its network namespace.
    pub netns: PathBuf,
    /// The interface in it (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// Ports published through this attachment.
    pub ports: Vec<PortMapping>,
}

/// What an attachment got.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The network.
    pub network: String,
    /// The interface in the container.
    pub ifname: String,
    /// Its address, with the prefix.
    pub ip: Option<IpNet>,
    /// Its gateway.
    pub gateway: Option<IpAddr>,
    /// Its MAC address, when the plugin said.
    pub mac: Option<String>,
}

/// berthd's networks. Cheap to clone.
#[derive(Clone)]
pub struct NetworkManager {
    inner: Arc<Inner>,
}

struct Inner {
    opts: Options,
    store: Store,
    cni: Networks,
    /// Per network: attaches share it, the last detach's bridge removal
    /// and `remove` take it exclusively.
    locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
    /// Serialises creates and removes (name and subnet checks).
    admin: tokio::sync::Mutex<()>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("network task: {e}")))?
}

impl NetworkManager {
    /// The manager over `opts`, keeping records in `store`.
    pub fn new(opts: Options, store: Store) -> Self {
        let mut cni_opts = NetworkOptions::new(&opts.conf_dir, &opts.cache_dir);
        cni_opts.bin_dirs = opts.bin_dirs.clone();
        NetworkManager {
            inner: Arc::new(Inner {
                cni: Networks::new(cni_opts),
                opts,
                store,
                locks: Mutex::new(HashMap::new()),
                admin: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    fn lock_of(&self, network: &str) -> Arc<RwLock<()>> {
        let mut m = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(network.to_string()).or_default().clone()
    }

    /// Writes every network's conflist again (start-up).
    pub async fn recover(&self) {
        let records = match records::all(&self.inner.store) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading network records");
                return;
            }
        };
        for rec in records {
            let conf = self.conflist_of(&rec);
            let dir = self.inner.opts.conf_dir.clone();
            let name = rec.name.clone();
            if let Err(e) = blocking(move || Ok(bridge::write_conflist(&dir, &conf)?)).await {
                tracing::warn!(network = %name, error = %e, "rewriting conflist");
            }
        }
    }

    fn conflist_of(&self, rec: &NetworkRecord) -> BridgeNetwork {
        let mut b = BridgeNetwork::new(&rec.name, &rec.bridge, rec.subnet);
        b.gateway = Some(rec.gateway);
        b.ip_masq = !rec.internal;
        b.ipam_data_dir = Some(self.inner.opts.ipam_dir.clone());
        b
    }

    /// What kind of network `name` is; NotFound for an unknown one.
    pub async fn kind(&self, name: &str) -> Result<Kind> {
        match name {
            HOST => Ok(Kind::Host),
            NONE => Ok(Kind::None),
            DEFAULT_NETWORK => Ok(Kind::Bridge(self.default_network().await?)),
            _ => Ok(Kind::Bridge(self.find(name)?)),
        }
    }

    /// A user network by name, or by a unique prefix of its id.
    fn find(&self, name: &str) -> Result<NetworkRecord> {
        if let Some(r) = records::get(&self.inner.store, name)? {
            return Ok(r);
        }
        let all = records::all(&self.inner.store)?;
        let hits: Vec<_> = all
            .into_iter()
            .filter(|r| !name.is_empty() && r.id.starts_with(name))
            .collect();
        match hits.len() {
            1 => Ok(hits.into_iter().next().expect("one")),
            0 => Err(Error::NotFound(format!("network {name:?}: not found"))),
            n => Err(Error::InvalidArgument(format!(
                "network {name:?}: the prefix matches {n} networks"
            ))),
        }
    }

    /// The default network, created from the config on first use.
    async fn default_network(&self) -> Result<NetworkRecord> {
        if let Some(r) = records::get(&self.inner.store, DEFAULT_NETWORK)? {
            return Ok(r);
        }
        let _admin = self.inner.admin.lock().await;
        if let Some(r) = records::get(&self.inner.store, DEFAULT_NETWORK)? {
            return Ok(r);
        }
        let opts = &self.inner.opts;
        let rec = NetworkRecord {
            name: DEFAULT_NETWORK.into(),
            id: records::new_id(),
            driver: "bridge".into(),
            subnet: opts.default_subnet,
            gateway: first_host(&opts.default_subnet)?,
            bridge: opts.default_bridge.clone(),
            labels: BTreeMap::new(),
            created_at: SystemTime::now(),
            internal: false,
            builtin: true,
        };
        self.check_overlap(&rec, &records::all(&self.inner.store)?)?;
        self.persist_new(&rec).await?;
        Ok(rec)
    }

    /// Creates a bridge network; see the module doc.
    pub async fn create(&self, req: NewNetwork) -> Result<NetworkRecord> {
        records::validate_name(&req.name)?;
        if matches!(req.name.as_str(), DEFAULT_NETWORK | HOST | NONE) {
            return Err(Error::AlreadyExists(format!(
                "network {:?}: a built-in network has this name",
                req.name
            )));
        }
        if !req.driver.is_empty() && req.driver != "bridge" {
            return Err(Error::InvalidArgument(format!(
                "driver {:?}: berthd has the bridge driver only",
                req.driver
            )));
        }
        let _admin = self.inner.admin.lock().await;
        if records::get(&self.inner.store, &req.name)?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "network {:?}: already exists",
                req.name
            )));
        }
        let existing = records::all(&self.inner.store)?;
        let id = records::new_id();
        let subnet = match req.subnet {
            Some(s) => s,
            None => self.free_subnet(&existing)?,
        };
        let gateway = match req.gateway {
            Some(g) => g,
            None => first_host(&subnet)?,
        };
        let bridge_name = req
            .bridge
            .clone()
            .unwrap_or_else(|| format!("berth-{}", &id[..8]));
        if existing.iter().any(|r| r.bridge == bridge_name) {
            return Err(Error::AlreadyExists(format!(
                "bridge {bridge_name:?}: another network uses it"
            )));
        }
        let rec = NetworkRecord {
            name: req.name,
            id,
            driver: "bridge".into(),
            subnet,
            gateway,
            bridge: bridge_name,
            labels: req.labels,
            created_at: SystemTime::now(),
            internal: req.internal,
            builtin: false,
        };
        self.conflist_of(&rec).validate()?;
        self.check_overlap(&rec, &existing)?;
        self.persist_new(&rec).await?;
        tracing::info!(network = %rec.name, subnet = %rec.subnet, bridge = %rec.bridge, "network created");
        Ok(rec)
    }

    /// Writes the conflist, then the record (a conflist without a record
    /// is overwritten by the next create of that name).
    async fn persist_new(&self, rec: &NetworkRecord) -> Result<()> {
        let conf = self.conflist_of(rec);
        let dir = self.inner.opts.conf_dir.clone();
        blocking(move || Ok(bridge::write_conflist(&dir, &conf)?)).await?;
        records::put(&self.inner.store, rec).await
    }

    fn check_overlap(&self, rec: &NetworkRecord, existing: &[NetworkRecord]) -> Result<()> {
        let conf = self.conflist_of(rec);
        if let Some(other) = existing
            .iter()
            .find(|o| o.name != rec.name && conf.overlaps(&o.subnet))
        {
            return Err(Error::InvalidArgument(format!(
                "subnet {} overlaps network {:?} ({})",
                rec.subnet, other.name, other.subnet
            )));
        }
        let own: Vec<&str> = existing.iter().map(|r| r.bridge.as_str()).collect();
        for route in routes::host_routes() {
            if own.contains(&route.device.as_str()) {
                continue;
            }
            if conf.overlaps(&IpNet::V4(route.dest)) {
                return Err(Error::InvalidArgument(format!(
                    "subnet {} overlaps the host's route to {} (dev {})",
                    rec.subnet, route.dest, route.device
                )));
            }
        }
        Ok(())
    }

    /// The first /24 of the pool no network or host route overlaps.
    fn free_subnet(&self, existing: &[NetworkRecord]) -> Result<IpNet> {
        let IpNet::V4(pool) = self.inner.opts.pool else {
            return Err(Error::InvalidArgument(
                "the subnet pool must be IPv4".into(),
            ));
        };
        let routes = routes::host_routes();
        let subnets: Box<dyn Iterator<Item = Ipv4Net>> = if pool.prefix_len() <= 24 {
            Box::new(
                pool.subnets(24)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            )
        } else {
            Box::new(std::iter::once(pool))
        };
        for s in subnets {
            let cand = IpNet::V4(s);
            let clash = existing
                .iter()
                .any(|r| r.subnet.contains(&cand.network()) || cand.contains(&r.subnet.network()))
                || routes
                    .iter()
                    .any(|r| r.dest.contains(&s.network()) || s.contains(&r.dest.network()));
            if !clash {
                return Ok(cand);
            }
        }
        Err(Error::FailedPrecondition(format!(
            "no free /24 left in the subnet pool {pool}: give --subnet"
        )))
    }

    /// Every network: the built-in ones, then the users', by name.
    pub async fn list(&self) -> Result<Vec<NetworkRecord>> {
        let default = self.default_network().await.ok();
        let mut out: Vec<NetworkRecord> = records::all(&self.inner.store)?
            .into_iter()
            .filter(|r| r.name != DEFAULT_NETWORK)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let mut all: Vec<NetworkRecord> = default.into_iter().collect();
        all.push(records::builtin(HOST, "host"));
        all.push(records::builtin(NONE, "null"));
        all.extend(out);
        Ok(all)
    }

    /// One network (a name or an id prefix).
    pub async fn get(&self, name: &str) -> Result<NetworkRecord> {
        match name {
            HOST => Ok(records::builtin(HOST, "host")),
            NONE => Ok(records::builtin(NONE, "null")),
            DEFAULT_NETWORK => self.default_network().await,
            _ => self.find(name),
        }
    }

    /// The attachments of `network` (every container, every interface).
    pub async fn endpoints(&self, network: &str) -> Result<Vec<CachedAttachment>> {
        Ok(self
            .inner
            .cni
            .attachments()
            .await?
            .into_iter()
            .filter(|a| a.network == network)
            .collect())
    }

    /// Removes a user network no container is attached to: its record,
    /// conflist, leases dir and bridge.
    pub async fn remove(&self, name: &str) -> Result<String> {
        if matches!(name, DEFAULT_NETWORK | HOST | NONE) {
            return Err(Error::FailedPrecondition(format!(
                "network {name:?}: a built-in network cannot be removed"
            )));
        }
        let _admin = self.inner.admin.lock().await;
        let rec = self.find(name)?;
        let lock = self.lock_of(&rec.name);
        let _excl = lock.write().await;
        let users = self.endpoints(&rec.name).await?;
        if !users.is_empty() {
            let ids: Vec<&str> = users
                .iter()
                .map(|a| &a.container_id[..a.container_id.len().min(12)])
                .collect();
            return Err(Error::FailedPrecondition(format!(
                "network {:?} is in use by container(s) {}: disconnect or remove them first",
                rec.name,
                ids.join(", ")
            )));
        }
        records::delete(&self.inner.store, &rec.name).await?;
        let (dir, ipam, n, br) = (
            self.inner.opts.conf_dir.clone(),
            self.inner.opts.ipam_dir.clone(),
            rec.name.clone(),
            rec.bridge.clone(),
        );
        blocking(move || {
            bridge::remove_conflist(&dir, &n)?;
            bridge::remove_leases(&ipam, &n)?;
            bridge::delete_bridge(&br)?;
            Ok(())
        })
        .await?;
        tracing::info!(network = %rec.name, "network removed");
        Ok(rec.name)
    }

    /// Removes every user network without attachments; their names.
    pub async fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for rec in records::all(&self.inner.store)? {
            if rec.builtin {
                continue;
            }
            match self.remove(&rec.name).await {
                Ok(n) => removed.push(n),
                Err(Error::FailedPrecondition(_)) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// CNI ADD of a container to a bridge network. On failure nothing of
    /// the attachment is left.
    pub async fn attach(&self, a: &Attach) -> Result<Endpoint> {
        let rec = match self.kind(&a.network).await? {
            Kind::Bridge(r) => r,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "network {:?}: host and none take no attachments",
                    a.network
                )))
            }
        };
        let lock = self.lock_of(&rec.name);
        let _shared = lock.read().await;
        let net = self.inner.cni.network(&rec.name).await?;
        let att = net
            .attach(&AttachRequest {
                container_id: a.container_id.clone(),
                netns: a.netns.clone(),
                ifname: a.ifname.clone(),
                port_mappings: a.ports.clone(),
                ..Default::default()
            })
            .await?;
        let ip = att.result.ips_of(&a.ifname).into_iter().next();
        let gateway = att
            .result
            .ips
            .iter()
            .find(|c| Some(c.address) == ip)
            .and_then(|c| c.gateway);
        let mac = att
            .result
            .interfaces
            .iter()
            .find(|i| i.name == a.ifname && i.sandbox.is_some())
            .and_then(|i| i.mac.clone());
        Ok(Endpoint {
            network: rec.name,
            ifname: a.ifname.clone(),
            ip,
            gateway,
            mac,
        })
    }

    /// CNI DEL of one attachment (idempotent); deletes the bridge when it
    /// was the network's last.
    pub async fn detach(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
        netns: Option<&Path>,
    ) -> Result<()> {
        let name = match self.get(network).await {
            Ok(r) => r.name,
            // a network removed meanwhile: its cache entry still says what to undo
            Err(Error::NotFound(_)) => network.to_string(),
            Err(e) => return Err(e),
        };
        let lock = self.lock_of(&name);
        {
            let _shared = lock.read().await;
            self.inner
                .cni
                .detach(&DetachRequest {
                    network: name.clone(),
                    container_id: container_id.to_string(),
                    ifname: ifname.to_string(),
                    netns: netns.map(Path::to_path_buf),
                    pod: None,
                })
                .await?;
        }
        let _excl = lock.write().await;
        if self.endpoints(&name).await?.is_empty() {
            if let Ok(rec) = self.get(&name).await {
                let br = rec.bridge.clone();
                let gone = blocking(move || Ok(bridge::delete_bridge(&br)?)).await?;
                if gone {
                    tracing::info!(network = %name, bridge = %rec.bridge, "last container left; bridge deleted");
                }
            }
        }
        Ok(())
    }

    /// Every cached attachment of a container.
    pub async fn attachments_of(&self, container_id: &str) -> Result<Vec<CachedAttachment>> {
        Ok(self
            .inner
            .cni
            .attachments()
            .await?
            .into_iter()
            .filter(|a| a.container_id == container_id)
            .collect())
    }
}

/// The first host address of a subnet (the default gateway).
fn first_host(subnet: &IpNet) -> Result<IpAddr> {
    subnet
        .hosts()
        .next()
        .ok_or_else(|| Error::InvalidArgument(format!("subnet {subnet}: has no host addresses")))
}

#[cfg(test)]
mod tests;
