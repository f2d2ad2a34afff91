//! Network connect and disconnect of an existing container (Docker's
//! `network connect/disconnect`). The network joins (leaves) the
//! container's config, so every later start attaches it; a running
//! container gets (loses) the interface at once, a CNI ADD (DEL) into its
//! network namespace as the next free `ethN`. Hosts files of the
//! network's containers are brought up to date.

use ipnet::IpNet;

use super::model::EndpointState;
use super::{Engine, Error, Result, HOST, NONE};
use crate::netman::{Attach, Kind};

impl Engine {
    /// Connects container `what` to `network`; its address there when it
    /// runs.
    pub async fn connect(&self, ns: &str, what: &str, network: &str) -> Result<Option<IpNet>> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let rec = slot.record();
        let name = match self.deps().networks.kind(network).await? {
            Kind::Bridge(r) => r.name,
            Kind::Host | Kind::None => {
                return Err(Error::InvalidArgument(format!(
                    "network {network:?}: a container cannot be connected to host or none"
                )))
            }
        };
        if rec.config.networks.iter().any(|n| n == HOST || n == NONE) {
            return Err(Error::InvalidArgument(format!(
                "container {}: on the {} network, it cannot join others",
                rec.name,
                rec.config.networks.join(",")
            )));
        }
        if rec.config.networks.contains(&name) {
            return Err(Error::AlreadyExists(format!(
                "container {} is already on network {name:?}",
                rec.name
            )));
        }
        let mut endpoint = None;
        if rec.state.status.is_running() {
            let ifname = (0..)
                .map(|i| format!("eth{i}"))
                .find(|f| !rec.state.endpoints.iter().any(|e| &e.ifname == f))
                .expect("a free interface name");
            let ep = self
                .deps()
                .networks
                .attach(&Attach {
                    network: name.clone(),
                    container_id: slot.id.clone(),
                    netns: self.netns_path(&slot.id),
                    ifname,
                    ports: Vec::new(),
                })
                .await?;
            endpoint = Some(EndpointState {
                network: ep.network,
                ifname: ep.ifname,
                ip: ep.ip,
                gateway: ep.gateway,
                mac: ep.mac,
            });
        }
        let ip = endpoint.as_ref().and_then(|e| e.ip);
        let rec = self
            .update(&slot, |r| {
                r.config.networks.push(name.clone());
                r.state.endpoints.extend(endpoint);
            })
            .await?;
        self.refresh_hosts(&rec.config.networks).await;
        tracing::info!(namespace = ns, id = %slot.id, network = %name, "container connected");
        Ok(ip)
    }

    /// Disconnects container `what` from `network`.
    pub async fn disconnect(&self, ns: &str, what: &str, network: &str) -> Result<()> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let rec = slot.record();
        let name = match self.deps().networks.get(network).await {
            Ok(r) => r.name,
            Err(_) => network.to_string(),
        };
        if !rec.config.networks.contains(&name) {
            return Err(Error::NotFound(format!(
                "container {} is not on network {name:?}",
                rec.name
            )));
        }
        if let Some(ep) = rec.state.endpoints.iter().find(|e| e.network == name) {
            self.deps()
                .networks
                .detach(
                    &name,
                    &slot.id,
                    &ep.ifname,
                    Some(&self.netns_path(&slot.id)),
                )
                .await?;
        }
        self.update(&slot, |r| {
            r.config.networks.retain(|n| n != &name);
            r.state.endpoints.retain(|e| e.network != name);
        })
        .await?;
        self.refresh_hosts(std::slice::from_ref(&name)).await;
        tracing::info!(namespace = ns, id = %slot.id, network = %name, "container disconnected");
        Ok(())
    }
}
