//! A container's own files in `ROOT/containers/ID`: `hosts` (itself and,
//! on user networks, its peers by name, kept current as containers come
//! and go), `resolv.conf` (the host's resolvers) and `hostname`. They are
//! bind-mounted into the container, so a change is written into the same
//! file (never replaced by a rename, which the mount would not see).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::{Error, Result};

/// Google's resolvers, as Docker falls back to when the host has only
/// local ones (a container cannot reach the host's 127.0.0.53).
const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// Creates the container's directory (0700).
pub(super) fn make_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io("create container dir", dir))
}

/// Writes `text` into `path`, in place.
pub(super) fn write_in_place(path: &Path, text: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(Error::io("open", path))?;
    f.write_all(text.as_bytes())
        .map_err(Error::io("write", path))
}

/// The host's resolv.conf for a container: its local name servers
/// (127.0.0.0/8, ::1) left out, Google's when none is left; search and
/// options kept. With the host's network, the host's file as it is.
pub(super) fn resolv_conf(host: &str, host_network: bool) -> String {
    if host_network {
        return host.to_string();
    }
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let addr = ns.trim();
            let local = addr
                .parse::<IpAddr>()
                .map(|a| a.is_loopback())
                .unwrap_or(false);
            if local {
                continue;
            }
            servers += 1;
        }
        if t.starts_with("nameserver")
            || t.starts_with("search")
            || t.starts_with("options")
            || t.starts_with("domain")
        {
            out.push_str(t);
            out.push('\n');
        }
    }
    if servers == 0 {
        for s in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    out
}

/// One line of a hosts file: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostEntry {
    pub(super) ip: IpAddr,
    pub(super) names: Vec<String>,
}

/// A container's hosts file: localhost, its own addresses under its
/// hostname and name, then its peers on user networks.
pub(super) fn hosts(own: &[HostEntry], peers: &[HostEntry]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for e in own.iter().chain(peers) {
        if e.names.is_empty() {
            continue;
        }
        out.push_str(&format!("{}\t{}\n", e.ip, e.names.join(" ")));
    }
    out
}

/// Writes the three files of a new container (blocking).
pub(super) fn write_initial(dir: &Path, hostname: &str, host_network: bool) -> Result<()> {
    make_dir(dir)?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write_in_place(
        &dir.join("resolv.conf"),
        &resolv_conf(&host_resolv, host_network),
    )?;
    write_in_place(&dir.join("hostname"), &format!("{hostname}\n"))?;
    let hosts_text = if host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_else(|_| hosts(&[], &[]))
    } else {
        hosts(&[], &[])
    };
    write_in_place(&dir.join("hosts"), &hosts_text)
}

/// The default network gives no name resolution (as Docker's default
/// bridge does not); user networks do.
fn resolves_names(network: &str) -> bool {
    network != crate::netman::DEFAULT_NETWORK
}

impl super::Engine {
    /// A container's own lines: each of its addresses under its hostname,
    /// name and aliases.
    pub(super) fn own_hosts(
        &self,
        rec: &super::Record,
        endpoints: &[super::EndpointState],
    ) -> Vec<HostEntry> {
        let mut names = vec![rec.state_hostname()];
        if !names.contains(&rec.name) {
            names.push(rec.name.clone());
        }
        for a in &rec.config.network_aliases {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        endpoints
            .iter()
            .filter_map(|e| e.ip)
            .map(|ip| HostEntry {
                ip: ip.addr(),
                names: names.clone(),
            })
            .collect()
    }

    /// The other running containers on `networks` (user networks only):
    /// their address there under their name, aliases and short ID.
    pub(super) fn peer_hosts(&self, _ns: &str, id: &str, networks: &[String]) -> Vec<HostEntry> {
        let mut out: Vec<HostEntry> = Vec::new();
        for slot in self.everywhere() {
            if slot.id == id {
                continue;
            }
            let rec = slot.record();
            if !rec.state.status.is_running() {
                continue;
            }
            for ep in &rec.state.endpoints {
                if !resolves_names(&ep.network) || !networks.contains(&ep.network) {
                    continue;
                }
                let Some(ip) = ep.ip else { continue };
                let mut names = vec![rec.name.clone()];
                names.extend(rec.config.network_aliases.iter().cloned());
                names.push(rec.id[..12].to_string());
                let e = HostEntry {
                    ip: ip.addr(),
                    names,
                };
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        out
    }

    /// Rewrites the hosts file of every running container on one of
    /// `networks`, so names follow containers joining and leaving.
    pub(super) async fn refresh_hosts(&self, networks: &[String]) {
        let touched: Vec<&String> = networks.iter().filter(|n| resolves_names(n)).collect();
        if touched.is_empty() {
            return;
        }
        let mut writes = Vec::new();
        for slot in self.everywhere() {
            let rec = slot.record();
            if !rec.state.status.is_running()
                || !rec
                    .state
                    .endpoints
                    .iter()
                    .any(|e| touched.contains(&&e.network))
            {
                continue;
            }
            let own = self.own_hosts(&rec, &rec.state.endpoints);
            let peers = self.peer_hosts(&slot.ns, &slot.id, &rec.config.networks);
            writes.push((rec.dir.join("hosts"), hosts(&own, &peers)));
        }
        let _ = tokio::task::spawn_blocking(move || {
            for (p, text) in writes {
                if let Err(e) = write_in_place(&p, &text) {
                    tracing::warn!(path = %p.display(), error = %e, "updating a hosts file");
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_local_servers() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.org\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, false),
            "nameserver 10.0.0.2\nsearch example.org\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", false),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(host, true), host);
    }

    #[test]
    fn hosts_lists_self_then_peers() {
        let own = HostEntry {
            ip: "10.91.0.2".parse().unwrap(),
            names: vec!["abc".into(), "web".into()],
        };
        let peer = HostEntry {
            ip: "10.91.0.3".parse().unwrap(),
            names: vec!["db".into()],
        };
        let h = hosts(&[own], &[peer]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.91.0.2\tabc web\n10.91.0.3\tdb\n"), "{h}");
    }

    #[test]
    fn writes_in_place() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts");
        write_in_place(&p, "one\n").unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&p).unwrap());
        write_in_place(&p, "two\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&fs::metadata(&p).unwrap()),
            ino
        );
    }
}
