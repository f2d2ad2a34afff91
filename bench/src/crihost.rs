//! The host side of the CRI workloads: each daemon's CNI network (a bridge
//! and subnet of its own inside 10.92.0.0/16, Debian's plugins), the cgroup
//! parent its pods use, and the removal of everything a pod run can leave on
//! the host: pods (through the CRI), shims, veths, the bridge, iptables
//! rules and chains the bridge and portmap plugins made, cgroups, and
//! `ip_forward` if the bridge plugin turned it on.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::side::Kind;

/// One daemon's CRI network and cgroup parent, with what the host had
/// before it (so only what the run made is removed).
#[derive(Debug)]
pub(crate) struct CriHost {
    pub(crate) bridge: String,
    pub(crate) subnet: String,
    /// The CNI network's name (iptables comments carry it).
    pub(crate) network: String,
    /// Pods' `cgroup_parent`: every pod cgroup goes below it.
    pub(crate) cgroup_parent: String,
    pub(crate) sandbox_image: String,
    ipam_dir: PathBuf,
    chains_before: Vec<(&'static str, BTreeSet<String>)>,
    ip_forward_before: Option<String>,
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const TABLES: [&str; 2] = ["nat", "filter"];

impl CriHost {
    /// The network of `kind`'s daemon, whose directory is `dir`.
    pub(crate) fn new(kind: Kind, dir: &Path, sandbox_image: &str) -> CriHost {
        let pid = std::process::id();
        let (tag, subnet) = match kind {
            Kind::Containerd => ('c', "10.92.0.0/20"),
            Kind::Berthd => ('b', "10.92.16.0/20"),
        };
        let mut bridge = format!("bbench{tag}{pid}");
        bridge.truncate(15);
        CriHost {
            bridge,
            subnet: subnet.into(),
            network: format!("berth-bench-{tag}{pid}"),
            cgroup_parent: format!("/berth-bench-cri-{pid}"),
            sandbox_image: sandbox_image.into(),
            ipam_dir: dir.join("ipam"),
            chains_before: TABLES.iter().map(|t| (*t, chains(&save(t)))).collect(),
            ip_forward_before: fs::read_to_string(IP_FORWARD)
                .ok()
                .map(|s| s.trim().to_owned()),
        }
    }

    /// The conflist, as a kubelet node has it: bridge (gateway, no
    /// masquerading: the pods talk to nothing) with host-local leases under
    /// the daemon's directory, then portmap.
    pub(crate) fn conflist(&self) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]],
                          "dataDir": self.ipam_dir.display().to_string()}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ]
        })
    }

    /// Write the conflist into `dir` (the daemon's CNI conf dir).
    pub(crate) fn write_conflist(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        fs::write(
            dir.join("10-berth-bench.conflist"),
            serde_json::to_vec_pretty(&self.conflist())?,
        )?;
        Ok(())
    }

    /// Host-local leases still held (IPs handed out and not released).
    pub(crate) fn leases(&self) -> Vec<String> {
        fs::read_dir(self.ipam_dir.join(&self.network))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remove what the pods left on the host, after the daemon stopped:
    /// veths on the bridge, the bridge, iptables rules naming the network
    /// and chains made since the start that are then empty, the cgroup
    /// parent, and `ip_forward` back to 0 if it was 0.
    pub(crate) fn clean_host(&self) {
        let leases = self.leases();
        if !leases.is_empty() {
            eprintln!(
                "berth-bench: {} host-local leases left in {}: {leases:?}",
                leases.len(),
                self.network
            );
        }
        for veth in ports_of(&self.bridge) {
            eprintln!("berth-bench: removing {veth} (left on {})", self.bridge);
            let _ = Command::new("ip").args(["link", "del", &veth]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        for (table, before) in &self.chains_before {
            remove_rules_naming(table, &[&self.network, &self.bridge]);
            remove_new_empty_chains(table, before);
        }
        remove_cgroup_tree(&self.cgroup_parent);
        if self.ip_forward_before.as_deref() == Some("0") {
            let _ = fs::write(IP_FORWARD, "0");
        }
    }
}

/// Stop and remove every pod of the daemon through its CRI (CNI DEL frees
/// the veth, lease and rules of each), within a minute.
pub(crate) fn remove_pods(kind: Kind, sock: &Path) {
    let sock = sock.to_path_buf();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-bench: no runtime to remove pods: {e}");
            return;
        }
    };
    let res = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut c = crate::cri::Cri::connect(&sock).await?;
            c.remove_all_pods().await
        })
        .await
    });
    match res {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => eprintln!("berth-bench: removed {n} pods left on {}", kind.name()),
        Ok(Err(e)) => eprintln!("berth-bench: removing {}'s pods: {e}", kind.name()),
        Err(_) => eprintln!("berth-bench: removing {}'s pods timed out", kind.name()),
    }
}

/// One process, from /proc.
#[derive(Clone, Debug)]
pub(crate) struct Proc {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) comm: String,
    pub(crate) cmdline: String,
}

/// Every process on the host (those that vanish while read are left out).
pub(crate) fn processes() -> Vec<Proc> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let ppid = crate::procfs::parent_pid(pid)?;
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some(Proc {
                pid,
                ppid,
                comm: comm.trim().to_owned(),
                cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
            })
        })
        .collect()
}

/// Shims serving the daemon on `sock` (their command line names it).
pub(crate) fn shims_of(procs: &[Proc], sock: &Path) -> Vec<Proc> {
    let sock = sock.to_string_lossy();
    procs
        .iter()
        .filter(|p| p.comm.contains("shim") && p.cmdline.contains(sock.as_ref()))
        .cloned()
        .collect()
}

/// SIGKILL every shim still serving the daemon on `sock`.
pub(crate) fn kill_shims(sock: &Path) {
    for p in shims_of(&processes(), sock) {
        eprintln!("berth-bench: killing shim {} (left behind)", p.pid);
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
    }
}

/// `iptables-save -t TABLE` (empty if it cannot run).
fn save(table: &str) -> String {
    Command::new("iptables-save")
        .args(["-t", table])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The chain names of a saved table.
fn chains(saved: &str) -> BTreeSet<String> {
    saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A saved rule line as arguments (double quotes and `\"` undone).
fn rule_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    let mut it = line.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' if quoted => cur.extend(it.next()),
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Delete every rule of `table` whose text contains one of `names`.
fn remove_rules_naming(table: &str, names: &[&str]) {
    for line in save(table).lines() {
        if !line.starts_with("-A ") || !names.iter().any(|n| line.contains(n)) {
            continue;
        }
        let mut args = rule_args(line);
        args[0] = "-D".into();
        eprintln!("berth-bench: iptables -t {table} {}", args.join(" "));
        let _ = Command::new("iptables")
            .args(["-t", table])
            .args(&args)
            .output();
    }
}

/// Delete the `CNI-` chains of `table` made since `before` that hold no
/// rule (the jumps to them first); repeated while one goes, since a chain
/// may empty another.
fn remove_new_empty_chains(table: &str, before: &BTreeSet<String>) {
    for _ in 0..4 {
        let saved = save(table);
        let now = chains(&saved);
        let empty: Vec<&String> = now
            .iter()
            .filter(|c| c.starts_with("CNI-") && !before.contains(*c))
            .filter(|c| !saved.lines().any(|l| l.starts_with(&format!("-A {c} "))))
            .collect();
        if empty.is_empty() {
            return;
        }
        for c in empty {
            for line in saved.lines() {
                let args = rule_args(line);
                if line.starts_with("-A ") && args.windows(2).any(|w| w[0] == "-j" && w[1] == *c) {
                    let mut del = args.clone();
                    del[0] = "-D".into();
                    let _ = Command::new("iptables")
                        .args(["-t", table])
                        .args(&del)
                        .output();
                }
            }
            eprintln!("berth-bench: iptables -t {table} -X {c}");
            let _ = Command::new("iptables")
                .args(["-t", table, "-X", c])
                .output();
        }
    }
}

/// The interfaces enslaved to `bridge`.
fn ports_of(bridge: &str) -> Vec<String> {
    Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split(':').nth(1))
                .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// rmdir `parent` and every directory below it, deepest first, in every
/// cgroup hierarchy (only empty cgroups go; a busy one is reported).
fn remove_cgroup_tree(parent: &str) {
    let rel = parent.trim_start_matches('/');
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(rel)];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path().join(rel)));
    }
    for root in roots {
        if root.is_dir() {
            rmdir_tree(&root);
        }
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        eprintln!("berth-bench: could not remove {}: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_rules_split_like_the_shell() {
        let l = r#"-A POSTROUTING -s 10.92.0.2/32 -m comment --comment "name: \"net\" id: \"abc\"" -j CNI-1"#;
        assert_eq!(
            rule_args(l),
            [
                "-A",
                "POSTROUTING",
                "-s",
                "10.92.0.2/32",
                "-m",
                "comment",
                "--comment",
                r#"name: "net" id: "abc""#,
                "-j",
                "CNI-1"
            ]
        );
        assert_eq!(
            chains(":CNI-1 - [0:0]\n:POSTROUTING ACCEPT [0:0]\n"),
            BTreeSet::from(["CNI-1".to_string(), "POSTROUTING".to_string()])
        );
    }

    #[test]
    fn networks_stay_in_their_range() {
        let t = Path::new("/t/c");
        let c = CriHost::new(Kind::Containerd, t, "p:1");
        let b = CriHost::new(Kind::Berthd, t, "p:1");
        assert!(c.subnet.starts_with("10.92.") && b.subnet.starts_with("10.92."));
        assert_ne!(c.subnet, b.subnet);
        assert_ne!(c.bridge, b.bridge);
        assert!(c.bridge.len() <= 15);
        let conf = c.conflist();
        assert_eq!(conf["plugins"][0]["bridge"], c.bridge.as_str());
        assert_eq!(conf["plugins"][0]["ipam"]["dataDir"], "/t/c/ipam");
    }
}
