//! [`Networks`] (the node's networks: status, lookups, detach, the cache)
//! and [`Network`] (one loaded plugin list: attach). The contract is in
//! the module doc of `network`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::cache::{AttachState, Cache, CacheEntry, KIND};
use super::conf::{self, ConfList, Fingerprint, Loaded};
use super::error::Error;
use super::exec::Invoker;
use super::locks::KeyedLocks;
use super::netns::{self, NetNs};
use super::plugins::{self, RuntimeConf};
use super::result::CniResult;
use super::standin;
use super::{
    AttachRequest, Attachment, CachedAttachment, DetachRequest, NetworkOptions, NetworkStatus,
    PodRef, Result,
};

/// The node's CNI networks. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Networks {
    inner: Arc<Inner>,
}

struct Inner {
    opts: NetworkOptions,
    invoker: Invoker,
    cache: Cache,
    loaded: Mutex<Option<(Fingerprint, Arc<Loaded>)>>,
    locks: KeyedLocks,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks")
            .field("opts", &self.inner.opts)
            .finish()
    }
}

/// One network's plugin list, ready to attach containers to.
#[derive(Clone, Debug)]
pub struct Network {
    networks: Networks,
    list: Arc<ConfList>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

impl Networks {
    /// The networks configured by `opts`. Nothing is read until first use.
    pub fn new(opts: NetworkOptions) -> Self {
        let invoker = Invoker {
            bin_dirs: opts.bin_dirs.clone(),
            timeout: opts.plugin_timeout,
        };
        let cache = Cache::new(opts.cache_dir.clone());
        Networks {
            inner: Arc::new(Inner {
                opts,
                invoker,
                cache,
                loaded: Mutex::new(None),
                locks: KeyedLocks::default(),
            }),
        }
    }

    /// The options it was built with.
    pub fn options(&self) -> &NetworkOptions {
        &self.inner.opts
    }

    /// The conf dir's scan, re-read only when the dir changed.
    async fn loaded(&self) -> Result<Arc<Loaded>> {
        let dir = self.inner.opts.conf_dir.clone();
        let known = self.inner.loaded.lock().expect("loaded lock").clone();
        let fresh = blocking(move || {
            let print = conf::fingerprint(&dir)?;
            if let Some((old, loaded)) = known {
                if old == print {
                    return Ok((print, loaded, false));
                }
            }
            Ok((print, Arc::new(conf::load_first(&dir)?), true))
        })
        .await?;
        let (print, loaded, changed) = fresh;
        if changed {
            match &loaded.list {
                Some(list) => {
                    tracing::info!(network = %list.name, file = %list.source.display(), "cni config loaded")
                }
                None => {
                    tracing::info!(dir = %self.inner.opts.conf_dir.display(), "no valid cni config")
                }
            }
            *self.inner.loaded.lock().expect("loaded lock") = Some((print, loaded.clone()));
        }
        Ok(loaded)
    }

    /// Ready when a valid config is present and all its plugins are
    /// installed; otherwise why not (the CRI's NetworkReady condition).
    pub async fn status(&self) -> NetworkStatus {
        let not_ready = |message: String| NetworkStatus::NotReady {
            reason: "NetworkPluginNotReady".into(),
            message,
        };
        match self.default_network().await {
            Ok(net) => {
                let invoker = self.inner.invoker.clone();
                let list = net.list.clone();
                match blocking(move || plugins::preflight(&invoker, &list)).await {
                    Ok(()) => NetworkStatus::Ready {
                        network: net.name().into(),
                    },
                    Err(e) => not_ready(e.to_string()),
                }
            }
            Err(e) => not_ready(e.to_string()),
        }
    }

    /// The default network: the first valid config of the conf dir.
    pub async fn default_network(&self) -> Result<Network> {
        let loaded = self.loaded().await?;
        match &loaded.list {
            Some(list) => Ok(Network {
                networks: self.clone(),
                list: Arc::new(list.clone()),
            }),
            None => Err(Error::NotInitialized {
                dir: self.inner.opts.conf_dir.clone(),
                detail: loaded.detail(),
            }),
        }
    }

    /// The network called `name` in the conf dir (the first valid file
    /// with that name), for berth's named networks.
    pub async fn network(&self, name: &str) -> Result<Network> {
        let dir = self.inner.opts.conf_dir.clone();
        let name = name.to_owned();
        let list = blocking(move || conf::load_by_name(&dir, &name)).await?;
        Ok(Network {
            networks: self.clone(),
            list: Arc::new(list),
        })
    }

    /// The cached attachment, if any (IPs after a restart, or a set-up to
    /// undo).
    pub async fn attachment(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CachedAttachment>> {
        validate_key(network, container_id, ifname)?;
        let cache = self.inner.cache.clone();
        let (n, c, i) = (
            network.to_owned(),
            container_id.to_owned(),
            ifname.to_owned(),
        );
        let entry = blocking(move || cache.read(&n, &c, &i)).await?;
        Ok(entry.map(to_cached))
    }

    /// Every cached attachment, of every network and container.
    pub async fn attachments(&self) -> Result<Vec<CachedAttachment>> {
        let cache = self.inner.cache.clone();
        let entries = blocking(move || cache.list()).await?;
        Ok(entries.into_iter().map(to_cached).collect())
    }

    /// CNI DEL of one attachment; see the module doc for its guarantees.
    pub async fn detach(&self, req: &DetachRequest) -> Result<()> {
        validate_key(&req.network, &req.container_id, &req.ifname)?;
        let _guard = self
            .inner
            .locks
            .lock(key(&req.network, &req.container_id, &req.ifname))
            .await;
        let cache = self.inner.cache.clone();
        let (n, c, i) = (
            req.network.clone(),
            req.container_id.clone(),
            req.ifname.clone(),
        );
        let entry = blocking(move || cache.read(&n, &c, &i)).await?;
        self.del_locked(req, entry).await
    }

    /// CNI DEL of every cached attachment of `container_id` (all networks
    /// and interfaces), e.g. when a pod or container is removed. Returns
    /// how many were detached; stops at the first failure.
    pub async fn detach_container(
        &self,
        container_id: &str,
        netns: Option<&Path>,
    ) -> Result<usize> {
        conf::validate_container_id(container_id)?;
        let mine: Vec<CachedAttachment> = self
            .attachments()
            .await?
            .into_iter()
            .filter(|a| a.container_id == container_id)
            .collect();
        for a in &mine {
            self.detach(&DetachRequest {
                network: a.network.clone(),
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
                netns: netns
                    .map(Path::to_path_buf)
                    .or_else(|| Some(a.netns.clone())),
                pod: None,
            })
            .await?;
        }
        Ok(mine.len())
    }

    /// CNI CHECK of an added attachment.
    pub async fn check(&self, req: &DetachRequest) -> Result<()> {
        validate_key(&req.network, &req.container_id, &req.ifname)?;
        let _guard = self
            .inner
            .locks
            .lock(key(&req.network, &req.container_id, &req.ifname))
            .await;
        let cache = self.inner.cache.clone();
        let (n, c, i) = (
            req.network.clone(),
            req.container_id.clone(),
            req.ifname.clone(),
        );
        let entry = blocking(move || cache.read(&n, &c, &i)).await?;
        let Some(entry) = entry.filter(|e| e.state == AttachState::Added) else {
            return Err(Error::AttachmentNotFound {
                network: req.network.clone(),
                container_id: req.container_id.clone(),
                ifname: req.ifname.clone(),
            });
        };
        let list = self
            .list_for(&req.network, Some(&entry))
            .await?
            .ok_or_else(|| Error::NetworkNotFound {
                name: req.network.clone(),
                dir: self.inner.opts.conf_dir.clone(),
            })?;
        if !list.supports_check() {
            return Err(Error::FailedPrecondition(format!(
                "network {:?}: cniVersion {} has no CHECK (0.4.0 or later)",
                list.name, list.cni_version
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        let raw = entry.result.as_ref().expect("an added entry has a result");
        let prev = plugins::prev_result_for(&list, raw).ok_or_else(|| {
            Error::FailedPrecondition(format!("network {:?}: cached result unreadable", list.name))
        })?;
        let netns = req
            .netns
            .clone()
            .unwrap_or_else(|| PathBuf::from(&entry.netns));
        let rt = RuntimeConf {
            container_id: &req.container_id,
            netns: Some(&netns),
            ifname: &req.ifname,
            args: &entry.cni_args,
            capability_args: &entry.capability_args,
        };
        plugins::check(&self.inner.invoker, &list, &rt, &prev).await
    }

    /// The plugin list for a DEL or CHECK: the cached one, else the conf
    /// dir's list of that name, else none.
    async fn list_for(
        &self,
        network: &str,
        entry: Option<&CacheEntry>,
    ) -> Result<Option<ConfList>> {
        if let Some(entry) = entry {
            match ConfList::from_value(&entry.config, Path::new("<cache>")) {
                Ok(list) => return Ok(Some(list)),
                Err(e) => {
                    tracing::warn!(network, error = %e, "cached cni config unusable; trying the conf dir")
                }
            }
        }
        match self.network(network).await {
            Ok(net) => Ok(Some((*net.list).clone())),
            Err(Error::NetworkNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// DEL with the key's lock held.
    async fn del_locked(&self, req: &DetachRequest, entry: Option<CacheEntry>) -> Result<()> {
        let Some(list) = self.list_for(&req.network, entry.as_ref()).await? else {
            tracing::warn!(
                network = %req.network, id = %req.container_id, ifname = %req.ifname,
                "cni DEL: no cached attachment and no config of that network; nothing to undo"
            );
            return Ok(());
        };
        let (args, caps) = match &entry {
            Some(e) => (e.cni_args.clone(), e.capability_args.clone()),
            None => (
                pod_args(&req.container_id, req.pod.as_ref(), &[]),
                Map::new(),
            ),
        };
        let netns = req
            .netns
            .clone()
            .or_else(|| entry.as_ref().map(|e| PathBuf::from(&e.netns)));
        let cached_addrs = entry
            .as_ref()
            .and_then(|e| e.result.as_ref())
            .and_then(|raw| CniResult::from_value(raw).ok())
            .map(|r| r.ips_of(&req.ifname))
            .unwrap_or_default();
        let (netns, standin) = match netns {
            Some(p) => {
                let ifname = req.ifname.clone();
                blocking(move || Ok(netns_for_del(p, &ifname, &cached_addrs))).await?
            }
            None => (None, None),
        };
        // prevResult on DEL came with 0.4.0 (as CHECK did); older lists get none
        let prev = entry
            .as_ref()
            .and_then(|e| e.result.as_ref())
            .filter(|_| list.supports_check())
            .and_then(|raw| plugins::prev_result_for(&list, raw));
        let rt = RuntimeConf {
            container_id: &req.container_id,
            netns: netns.as_deref(),
            ifname: &req.ifname,
            args: &args,
            capability_args: &caps,
        };
        let deleted = plugins::del(&self.inner.invoker, &list, &rt, prev.as_ref()).await;
        if let Some(path) = standin {
            blocking(move || netns::remove(&path)).await?;
        }
        deleted?;
        let cache = self.inner.cache.clone();
        let (n, c, i) = (
            req.network.clone(),
            req.container_id.clone(),
            req.ifname.clone(),
        );
        blocking(move || cache.remove(&n, &c, &i)).await?;
        tracing::info!(network = %req.network, id = %req.container_id, ifname = %req.ifname, "cni detached");
        Ok(())
    }
}

impl Network {
    /// The network name.
    pub fn name(&self) -> &str {
        &self.list.name
    }

    /// The plugin list.
    pub fn conf(&self) -> &ConfList {
        &self.list
    }

    /// CNI ADD; see the module doc for what is durable when it returns and
    /// what a failure leaves.
    pub async fn attach(&self, req: &AttachRequest) -> Result<Attachment> {
        let list = self.list.clone();
        validate_key(&list.name, &req.container_id, &req.ifname)?;
        let args = pod_args(&req.container_id, req.pod.as_ref(), &req.args);
        validate_args(&args)?;
        let mut caps = req.capabilities.clone();
        if !req.port_mappings.is_empty() {
            if let Some(bad) = req
                .port_mappings
                .iter()
                .find(|p| p.host_port == 0 || p.container_port == 0)
            {
                return Err(Error::InvalidArgument(format!(
                    "port mapping {bad:?}: ports must be non-zero"
                )));
            }
            let ports = req.port_mappings.iter().map(|p| p.to_value()).collect();
            caps.insert("portMappings".into(), Value::Array(ports));
        }
        let inner = &self.networks.inner;
        let _guard = inner
            .locks
            .lock(key(&list.name, &req.container_id, &req.ifname))
            .await;

        let entry = CacheEntry {
            kind: KIND.into(),
            network: list.name.clone(),
            container_id: req.container_id.clone(),
            if_name: req.ifname.clone(),
            netns: req.netns.display().to_string(),
            config: list.to_value(),
            cni_args: args.clone(),
            capability_args: caps.clone(),
            state: AttachState::Adding,
            result: None,
        };
        // Before anything runs: the plugins are installed, the netns is
        // one, and no earlier attachment is in the way (a leftover of a
        // crash is undone first).
        let (invoker, cache) = (inner.invoker.clone(), inner.cache.clone());
        let (l, netns, e) = (list.clone(), req.netns.clone(), entry.clone());
        let earlier = blocking(move || {
            plugins::preflight(&invoker, &l)?;
            NetNs::open(&netns)?;
            cache.read(&e.network, &e.container_id, &e.if_name)
        })
        .await?;
        let detach_req = DetachRequest {
            network: list.name.clone(),
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
            netns: Some(req.netns.clone()),
            pod: req.pod.clone(),
        };
        match earlier {
            Some(old) if old.state == AttachState::Added => {
                return Err(Error::FailedPrecondition(format!(
                    "container {:?} is already attached to network {:?} on {:?}: detach it first",
                    req.container_id, list.name, req.ifname
                )));
            }
            Some(old) => {
                tracing::info!(network = %list.name, id = %req.container_id, "undoing an attach cut short");
                self.networks.del_locked(&detach_req, Some(old)).await?;
            }
            None => {}
        }
        let cache = inner.cache.clone();
        let e = entry.clone();
        blocking(move || cache.write(&e)).await?;

        let rt = RuntimeConf {
            container_id: &req.container_id,
            netns: Some(&req.netns),
            ifname: &req.ifname,
            args: &args,
            capability_args: &caps,
        };
        let (raw, result) = match plugins::add(&inner.invoker, &list, &rt).await {
            Ok(r) => r,
            Err(e) => {
                if let Err(undo) = self.networks.del_locked(&detach_req, Some(entry)).await {
                    tracing::warn!(
                        network = %list.name, id = %req.container_id, error = %undo,
                        "cleanup after a failed cni ADD failed; the attachment stays cached for a later detach"
                    );
                }
                return Err(e);
            }
        };
        let mut done = entry;
        done.state = AttachState::Added;
        done.result = Some(raw);
        let cache = inner.cache.clone();
        blocking(move || cache.write(&done)).await?;
        tracing::info!(network = %list.name, id = %req.container_id, ifname = %req.ifname, "cni attached");
        Ok(Attachment {
            network: list.name.clone(),
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
            netns: req.netns.clone(),
            result,
        })
    }
}

/// The CNI_NETNS for a DEL, and the stand-in to remove after it, if one
/// was made. A live netns is used as it is. A netns that is gone is
/// replaced by a stand-in holding the cached addresses (see `standin`)
/// when there are any; otherwise it is passed as empty, and the plugins
/// clean up what they can without entering it.
fn netns_for_del(
    path: PathBuf,
    ifname: &str,
    addrs: &[ipnet::IpNet],
) -> (Option<PathBuf>, Option<PathBuf>) {
    if NetNs::open(&path).is_ok() {
        return (Some(path), None);
    }
    if addrs.is_empty() || !standin::possible(&path) {
        return (None, None);
    }
    match standin::create(&path, ifname, addrs) {
        Ok(_) => (Some(path.clone()), Some(path)),
        Err(e) => {
            tracing::warn!(netns = %path.display(), error = %e, "no stand-in netns for DEL; passing none");
            (None, None)
        }
    }
}

fn to_cached(e: CacheEntry) -> CachedAttachment {
    let result = e
        .result
        .as_ref()
        .and_then(|raw| CniResult::from_value(raw).ok());
    CachedAttachment {
        network: e.network,
        container_id: e.container_id,
        ifname: e.if_name,
        netns: PathBuf::from(e.netns),
        state: e.state,
        result,
    }
}

fn validate_key(network: &str, container_id: &str, ifname: &str) -> Result<()> {
    conf::validate_network_name(network)?;
    conf::validate_container_id(container_id)?;
    conf::validate_ifname(ifname)
}

/// CNI_ARGS: for a pod, IgnoreUnknown=1 and the K8S_POD_* keys (as the
/// CRI plugins pass them); then the caller's extra pairs.
fn pod_args(
    container_id: &str,
    pod: Option<&PodRef>,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut args = Vec::new();
    if pod.is_some() || !extra.is_empty() {
        args.push(("IgnoreUnknown".into(), "1".into()));
    }
    if let Some(pod) = pod {
        args.push(("K8S_POD_NAMESPACE".into(), pod.namespace.clone()));
        args.push(("K8S_POD_NAME".into(), pod.name.clone()));
        args.push(("K8S_POD_INFRA_CONTAINER_ID".into(), container_id.into()));
        if let Some(uid) = &pod.uid {
            args.push(("K8S_POD_UID".into(), uid.clone()));
        }
    }
    args.extend(extra.iter().cloned());
    args
}

fn validate_args(args: &[(String, String)]) -> Result<()> {
    for (k, v) in args {
        if k.is_empty() || k.contains(['=', ';', '\0']) || v.contains([';', '\0']) {
            return Err(Error::InvalidArgument(format!(
                "CNI_ARGS pair {k:?}={v:?}: keys need no '=' or ';', values no ';'"
            )));
        }
    }
    Ok(())
}

fn key(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{network}/{container_id}/{ifname}")
}

#[cfg(test)]
#[path = "networks_tests.rs"]
mod tests;
