//! Berth-owned bridge networks (the Docker-style `network create`): the
//! conflist berthd writes for one, bridge + host-local + portmap +
//! firewall, and the removal of what such a network leaves on the host.
//!
//! The conflist goes into a conf dir berthd owns (one file per network,
//! `NAME.conflist`), written durably (temp file, fsync, rename, fsync of
//! the dir) so a network that `write_conflist` reported exists after a
//! crash. The plugins do every iptables change; this module only removes
//! the bridge device itself, which the bridge plugin never deletes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{json, Value};

use super::conf::{self, ConfList};
use super::error::Error;
use super::{sys, Result};

/// The cniVersion berth writes.
pub const CNI_VERSION: &str = "1.0.0";

/// A bridge network's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// The network name (CNI `name`; also names its leases and cache).
    pub name: String,
    /// The bridge device (at most 15 characters).
    pub bridge: String,
    /// The subnet containers get addresses from.
    pub subnet: IpNet,
    /// The bridge's address and the containers' default gateway; host-local
    /// takes the subnet's first address when `None`.
    pub gateway: Option<IpAddr>,
    /// Masquerade traffic leaving the subnet (outbound connectivity).
    pub ip_masq: bool,
    /// Hairpin mode on the bridge ports, so a container reaches its own
    /// published ports.
    pub hairpin: bool,
    /// host-local's lease dir (berthd: `ROOT/network/ipam`); the plugin's
    /// default (/var/lib/cni/networks) when `None`.
    pub ipam_data_dir: Option<PathBuf>,
}

impl BridgeNetwork {
    /// A network with masquerade and hairpin on and the plugin's lease dir.
    pub fn new(name: &str, bridge: &str, subnet: IpNet) -> Self {
        BridgeNetwork {
            name: name.into(),
            bridge: bridge.into(),
            subnet,
            gateway: None,
            ip_masq: true,
            hairpin: true,
            ipam_data_dir: None,
        }
    }

    /// Checks names and addresses; the message names the bad field.
    pub fn validate(&self) -> Result<()> {
        conf::validate_network_name(&self.name)?;
        conf::validate_ifname(&self.bridge).map_err(|_| {
            Error::InvalidArgument(format!(
                "bridge name {:?}: 1-15 characters, no '/', ':' or whitespace",
                self.bridge
            ))
        })?;
        if self.subnet != self.subnet.trunc() {
            return Err(Error::InvalidArgument(format!(
                "subnet {}: host bits set (did you mean {}?)",
                self.subnet,
                self.subnet.trunc()
            )));
        }
        let min_hosts_prefix = if self.subnet.addr().is_ipv4() {
            30
        } else {
            126
        };
        if self.subnet.prefix_len() > min_hosts_prefix {
            return Err(Error::InvalidArgument(format!(
                "subnet {}: too small for a gateway and a container",
                self.subnet
            )));
        }
        if let Some(gw) = self.gateway {
            let bad = !self.subnet.contains(&gw)
                || gw == self.subnet.network()
                || (gw.is_ipv4() && gw == self.subnet.broadcast());
            if bad {
                return Err(Error::InvalidArgument(format!(
                    "gateway {gw}: not a host address of subnet {}",
                    self.subnet
                )));
            }
        }
        Ok(())
    }

    /// Whether this network's subnet shares addresses with `other` (so
    /// two networks, or a network and a host route, would clash).
    pub fn overlaps(&self, other: &IpNet) -> bool {
        self.subnet.contains(&other.network()) || other.contains(&self.subnet.network())
    }

    /// The conflist document.
    pub fn to_conflist(&self) -> Value {
        let mut range = json!({"subnet": self.subnet.to_string()});
        if let Some(gw) = self.gateway {
            range["gateway"] = gw.to_string().into();
        }
        let default_route = if self.subnet.addr().is_ipv4() {
            "0.0.0.0/0"
        } else {
            "::/0"
        };
        let mut ipam = json!({
            "type": "host-local",
            "ranges": [[range]],
            "routes": [{"dst": default_route}],
        });
        if let Some(dir) = &self.ipam_data_dir {
            ipam["dataDir"] = dir.display().to_string().into();
        }
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": self.ip_masq,
                    "hairpinMode": self.hairpin,
                    "ipam": ipam,
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall"},
            ],
        })
    }

    /// The file it is written to in a conf dir.
    pub fn file_name(&self) -> String {
        format!("{}.conflist", self.name)
    }
}

/// Writes the network's conflist into `dir` durably and returns its path.
/// Replaces an earlier file of the same network. Blocking.
pub fn write_conflist(dir: &Path, net: &BridgeNetwork) -> Result<PathBuf> {
    net.validate()?;
    let doc = net.to_conflist();
    let bytes = serde_json::to_vec_pretty(&doc).expect("a JSON value always encodes");
    let path = dir.join(net.file_name());
    // what we write must load back as the same network
    let list = ConfList::from_list_bytes(&bytes, &path)?;
    debug_assert_eq!(list.name, net.name);
    fs::create_dir_all(dir).map_err(|e| Error::io("create conf dir", dir, e))?;
    let tmp = dir.join(format!(".{}.tmp", net.file_name()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Removes network `name`'s conflist from `dir`, durably. Returns whether
/// there was one. Blocking.
pub fn remove_conflist(dir: &Path, name: &str) -> Result<bool> {
    conf::validate_network_name(name)?;
    let path = dir.join(format!("{name}.conflist"));
    match fs::remove_file(&path) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove conflist", &path, e)),
    }
}

/// Deletes the bridge device `name` from the host (what is left once a
/// network's last container is detached). Returns whether it existed;
/// refuses a device that is not a bridge. Blocking.
pub fn delete_bridge(name: &str) -> Result<bool> {
    conf::validate_ifname(name)?;
    sys::delete_bridge(name).map_err(|e| Error::sys(format!("delete bridge {name}"), e))
}

/// Removes host-local's lease dir of network `name` under `data_dir`.
/// Idempotent. Blocking.
pub fn remove_leases(data_dir: &Path, name: &str) -> Result<()> {
    conf::validate_network_name(name)?;
    let dir = data_dir.join(name);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove lease dir", &dir, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync dir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> BridgeNetwork {
        let mut n = BridgeNetwork::new("blue", "berth-nt9", "10.89.9.0/24".parse().unwrap());
        n.gateway = Some("10.89.9.1".parse().unwrap());
        n.ipam_data_dir = Some("/var/lib/berth/network/ipam".into());
        n
    }

    #[test]
    fn conflist_has_the_four_plugins() {
        let doc = net().to_conflist();
        assert_eq!(doc["name"], "blue");
        assert_eq!(doc["cniVersion"], CNI_VERSION);
        let types: Vec<&str> = doc["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "firewall"]);
        let bridge = &doc["plugins"][0];
        assert_eq!(bridge["bridge"], "berth-nt9");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.89.9.0/24");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.89.9.1");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/berth/network/ipam");
        assert_eq!(doc["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn written_conflist_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_conflist(dir.path(), &net()).unwrap();
        assert!(path.ends_with("blue.conflist"));
        let list = conf::load_by_name(dir.path(), "blue").unwrap();
        assert_eq!(list.plugins.len(), 3);
        assert_eq!(
            list.plugins[1].capabilities.get("portMappings"),
            Some(&true)
        );
        // rewriting replaces; no temp file stays
        write_conflist(dir.path(), &net()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(remove_conflist(dir.path(), "blue").unwrap());
        assert!(!remove_conflist(dir.path(), "blue").unwrap());
    }

    #[test]
    fn bad_settings_are_refused_by_field() {
        let cases: Vec<(BridgeNetwork, &str)> = vec![
            (
                BridgeNetwork {
                    name: "a/b".into(),
                    ..net()
                },
                "network name",
            ),
            (
                BridgeNetwork {
                    bridge: "a-very-long-bridge".into(),
                    ..net()
                },
                "bridge name",
            ),
            (
                BridgeNetwork {
                    subnet: "10.89.9.5/24".parse().unwrap(),
                    ..net()
                },
                "host bits",
            ),
            (
                BridgeNetwork {
                    subnet: "10.89.9.0/31".parse().unwrap(),
                    gateway: None,
                    ..net()
                },
                "too small",
            ),
            (
                BridgeNetwork {
                    gateway: Some("10.89.10.1".parse().unwrap()),
                    ..net()
                },
                "gateway",
            ),
            (
                BridgeNetwork {
                    gateway: Some("10.89.9.255".parse().unwrap()),
                    ..net()
                },
                "gateway",
            ),
        ];
        for (n, want) in cases {
            let e = n.validate().unwrap_err();
            assert!(e.to_string().contains(want), "{n:?}: {e}");
            let dir = tempfile::tempdir().unwrap();
            assert!(write_conflist(dir.path(), &n).is_err());
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                0,
                "nothing written"
            );
        }
    }

    #[test]
    fn overlap() {
        let n = net();
        for (other, want) in [
            ("10.89.9.0/24", true),
            ("10.89.9.128/25", true),
            ("10.89.0.0/16", true),
            ("10.89.10.0/24", false),
            ("fd00::/8", false),
        ] {
            assert_eq!(n.overlaps(&other.parse().unwrap()), want, "{other}");
        }
    }

    #[test]
    fn ipv6_subnets_route_by_default() {
        let n = BridgeNetwork::new("v6", "berth-nt6", "fd00:89::/64".parse().unwrap());
        n.validate().unwrap();
        assert_eq!(
            n.to_conflist()["plugins"][0]["ipam"]["routes"][0]["dst"],
            "::/0"
        );
    }

    #[test]
    fn leases_removal_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("blue")).unwrap();
        fs::write(dir.path().join("blue/10.89.9.2"), "c1").unwrap();
        remove_leases(dir.path(), "blue").unwrap();
        assert!(!dir.path().join("blue").exists());
        remove_leases(dir.path(), "blue").unwrap();
    }
}
