//! The host-wide rule for the chains CNI plugins share (see
//! [`SharedChains`]): a session file under a `flock` in [`SESSION_DIR`]
//! that every test process of the host joins and leaves.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::{chains, delete_chains_in, saved, FIREWALL_CHAINS, SHARED_CHAINS};

/// Where test processes of every binary meet: the lock file and the
/// session file.
pub const SESSION_DIR: &str = "/run/berth-tests";

/// Whether a pod (of any process, test or not) still needs the shared
/// chains: a port mapped through `CNI-HOSTPORT-DNAT`, a per-pod DNAT chain
/// (made first while a pod is set up), or a pod's rule in `CNI-FORWARD`
/// (anything but its jump to `CNI-ADMIN`) or in `CNI-ADMIN`.
fn shared_chains_in_use(nat: &str, filter: &str) -> bool {
    nat.lines().any(|l| l.starts_with("-A CNI-HOSTPORT-DNAT "))
        || chains(nat).iter().any(|c| c.starts_with("CNI-DN-"))
        || filter.lines().any(|l| {
            (l.starts_with("-A CNI-FORWARD ") && !l.ends_with("-j CNI-ADMIN"))
                || l.starts_with("-A CNI-ADMIN ")
        })
}

/// The host-wide test session: which test processes hold a guard, and
/// which shared chains existed before the first of them came.
#[derive(Debug, Default, PartialEq, Eq)]
struct Session {
    /// `(pid, start time)` of each holder (the start time tells a reused
    /// PID apart).
    holders: Vec<(u32, u64)>,
    /// Whether `before` was recorded (by the session's first holder).
    recorded: bool,
    /// `(table, chain)` of the shared chains that existed before, and
    /// `("cgroup", path)` of the `/k8s.io` cgroups.
    before: BTreeSet<(String, String)>,
}

impl Session {
    fn parse(text: &str) -> Self {
        let mut s = Session::default();
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["holder", pid, start] => {
                    if let (Ok(p), Ok(t)) = (pid.parse(), start.parse()) {
                        s.holders.push((p, t));
                    }
                }
                ["before", table, chain] => {
                    s.before.insert((table.to_string(), chain.to_string()));
                }
                ["recorded"] => s.recorded = true,
                _ => {}
            }
        }
        s
    }

    fn text(&self) -> String {
        let mut out = String::new();
        if self.recorded {
            out.push_str("recorded\n");
        }
        for (t, c) in &self.before {
            out.push_str(&format!("before {t} {c}\n"));
        }
        for (p, t) in &self.holders {
            out.push_str(&format!("holder {p} {t}\n"));
        }
        out
    }

    /// Drops holders that are gone (a test process killed before its
    /// guards dropped).
    fn prune(&mut self) {
        self.holders
            .retain(|&(pid, start)| start_time(pid) == Some(start));
    }
}

/// The start time (clock ticks since boot) of process `pid`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Runs `f` on the session in `dir` under its exclusive lock (a `flock`
/// on `dir/cni-host.lock`, so every test process of the host takes turns);
/// the session file is rewritten after, or removed once it is empty. None
/// (and a line on stderr) when the lock cannot be had (not root).
fn with_session<T>(dir: &std::path::Path, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
    use nix::fcntl::{Flock, FlockArg};
    let lock = std::fs::create_dir_all(dir).and_then(|_| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("cni-host.lock"))
    });
    let held = lock
        .map_err(|e| e.to_string())
        .and_then(|l| Flock::lock(l, FlockArg::LockExclusive).map_err(|(_, e)| e.to_string()));
    let _held = match held {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cni_host: no test session in {}: {e}", dir.display());
            return None;
        }
    };
    let path = dir.join("cni-host.state");
    let mut session = Session::parse(&std::fs::read_to_string(&path).unwrap_or_default());
    let out = f(&mut session);
    if session == Session::default() {
        let _ = std::fs::remove_file(&path);
    } else {
        let tmp = dir.join("cni-host.state.tmp");
        std::fs::write(&tmp, session.text()).expect("write the test session");
        std::fs::rename(&tmp, &path).expect("write the test session");
    }
    Some(out)
}

/// The CRI's default cgroup parent (`/k8s.io`) in each cgroup hierarchy
/// mounted under /sys/fs/cgroup (v1 controllers, the unified one, or a
/// pure v2 root), whether it exists or not.
fn k8s_cgroups() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut out = vec![root.join("k8s.io")];
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != "k8s.io" {
                out.push(e.path().join("k8s.io"));
            }
        }
    }
    out.sort();
    out
}

/// Joins the host's session as this process; its first holder records
/// which shared chains exist.
fn enter(dir: &std::path::Path, cgroups: bool) {
    let me = std::process::id();
    let start = start_time(me).unwrap_or(0);
    with_session(dir, |s| {
        s.prune();
        if !s.recorded {
            // A session whose holders all died keeps what it recorded:
            // the chains it made are still not the host's own.
            let (nat, filter) = (chains(&saved("nat")), chains(&saved("filter")));
            let tables = [
                ("nat", &nat, &SHARED_CHAINS[..]),
                ("filter", &filter, &FIREWALL_CHAINS[..]),
            ];
            for (table, have, shared) in tables {
                for c in shared.iter().filter(|c| have.contains(**c)) {
                    s.before.insert((table.to_string(), c.to_string()));
                }
            }
            for cg in k8s_cgroups().into_iter().filter(|p| cgroups && p.exists()) {
                s.before
                    .insert(("cgroup".to_string(), cg.display().to_string()));
            }
            s.recorded = true;
        }
        s.holders.push((me, start));
    });
}

/// Leaves the session; the last holder of the host deletes the shared
/// chains made since the session began, unless a pod still needs them,
/// and the empty `/k8s.io` cgroups made since.
fn leave(dir: &std::path::Path, cgroups: bool) {
    let me = std::process::id();
    with_session(dir, |s| {
        if let Some(i) = s.holders.iter().position(|h| h.0 == me) {
            s.holders.remove(i);
        }
        s.prune();
        if !s.holders.is_empty() {
            return;
        }
        let (nat, filter) = (saved("nat"), saved("filter"));
        if !shared_chains_in_use(&nat, &filter) {
            for (table, have, shared) in [
                ("nat", chains(&nat), &SHARED_CHAINS[..]),
                ("filter", chains(&filter), &FIREWALL_CHAINS[..]),
            ] {
                let made: BTreeSet<String> = shared
                    .iter()
                    .filter(|c| have.contains(**c))
                    .filter(|c| !s.before.contains(&(table.to_string(), c.to_string())))
                    .map(|c| c.to_string())
                    .collect();
                delete_chains_in(table, &made);
            }
        }
        // The CRI's `/k8s.io` parents the session made: rmdir removes a
        // cgroup only while it has no child and no process.
        for cg in k8s_cgroups() {
            if cgroups
                && cg.exists()
                && !s
                    .before
                    .contains(&("cgroup".to_string(), cg.display().to_string()))
            {
                let _ = std::fs::remove_dir(&cg);
            }
        }
        // The session is over (chains a pod outside the tests still uses
        // are the host's from now on).
        *s = Session::default();
    });
}

struct Live {
    guards: usize,
    /// The session dir, and whether `/k8s.io` cgroups are looked after.
    dir: Option<(std::path::PathBuf, bool)>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    guards: 0,
    dir: None,
});

/// One rule for the whole host, whatever test binaries run at once:
/// every test that lets CNI plugins make their shared chains (portmap's
/// `CNI-HOSTPORT-*` in nat, the firewall plugin's `CNI-FORWARD` and
/// `CNI-ADMIN` in filter) holds a guard while it runs. A process's first
/// guard joins the host-wide session in [`SESSION_DIR`] (a file under an
/// exclusive `flock`, listing the holding processes by PID and start
/// time); the first process of a session records which shared chains
/// exist. The last guard of the last process (processes that died
/// without leaving are pruned) deletes the shared chains made since, with
/// their jumps, unless a pod still needs them, and the CRI's `/k8s.io`
/// parent cgroups made since, when empty; chains and cgroups that were
/// there before are never touched.
pub struct SharedChains(());

impl SharedChains {
    /// A guard; the first of the process joins the host-wide session.
    pub fn guard() -> Self {
        Self::guard_at(std::path::Path::new(SESSION_DIR), true)
    }

    /// A guard whose session lives in `dir`, looking after the `/k8s.io`
    /// cgroups too when `cgroups` (tests of this module: not).
    fn guard_at(dir: &std::path::Path, cgroups: bool) -> Self {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        if live.guards == 0 {
            enter(dir, cgroups);
            live.dir = Some((dir.to_path_buf(), cgroups));
        }
        live.guards += 1;
        SharedChains(())
    }

    /// The shared chains (nat and filter) that existed before the
    /// host-wide session began.
    pub fn existed_before() -> BTreeSet<String> {
        let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = live
            .dir
            .clone()
            .map_or_else(|| SESSION_DIR.into(), |(d, _)| d);
        let text = std::fs::read_to_string(dir.join("cni-host.state")).unwrap_or_default();
        Session::parse(&text)
            .before
            .into_iter()
            .filter(|(t, _)| t != "cgroup")
            .map(|(_, c)| c)
            .collect()
    }
}

impl Drop for SharedChains {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.guards -= 1;
        if live.guards > 0 {
            return;
        }
        if let Some((dir, cgroups)) = live.dir.take() {
            leave(&dir, cgroups);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::{nat_table, network_leftovers, remove_network_leftovers};
    use super::*;

    fn ipt(args: &[&str]) {
        let out = Command::new("iptables").args(args).output().unwrap();
        assert!(out.status.success(), "iptables {args:?}: {out:?}");
    }

    /// What portmap makes for one pod of network `net`: the shared chains
    /// and their jumps, a per-pod DNAT chain and the jump to it.
    fn portmap_add(net: &str, pod: &str) {
        for c in SHARED_CHAINS {
            let _ = Command::new("iptables")
                .args(["-t", "nat", "-N", c])
                .output();
        }
        ipt(&[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "CNI-HOSTPORT-DNAT",
        ]);
        ipt(&[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "CNI-HOSTPORT-DNAT",
        ]);
        ipt(&[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "CNI portfwd requiring masquerade",
            "-j",
            "CNI-HOSTPORT-MASQ",
        ]);
        ipt(&[
            "-t",
            "nat",
            "-A",
            "CNI-HOSTPORT-MASQ",
            "-m",
            "mark",
            "--mark",
            "0x2000/0x2000",
            "-j",
            "MASQUERADE",
        ]);
        ipt(&["-t", "nat", "-N", "CNI-DN-test1"]);
        let comment = format!("dnat name: \"{net}\" id: \"{pod}\"");
        ipt(&[
            "-t",
            "nat",
            "-A",
            "CNI-DN-test1",
            "-p",
            "tcp",
            "--dport",
            "8080",
            "-j",
            "DNAT",
            "--to-destination",
            "10.90.250.2:80",
        ]);
        ipt(&[
            "-t",
            "nat",
            "-A",
            "CNI-HOSTPORT-DNAT",
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            &comment,
            "-m",
            "multiport",
            "--dports",
            "8080",
            "-j",
            "CNI-DN-test1",
        ]);
    }

    /// What the firewall plugin makes on its first ADD.
    fn firewall_add() {
        ipt(&["-N", "CNI-FORWARD"]);
        ipt(&["-N", "CNI-ADMIN"]);
        ipt(&[
            "-A",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "CNI firewall plugin rules",
            "-j",
            "CNI-FORWARD",
        ]);
        ipt(&[
            "-A",
            "CNI-FORWARD",
            "-m",
            "comment",
            "--comment",
            "CNI firewall plugin admin overrides",
            "-j",
            "CNI-ADMIN",
        ]);
    }

    /// In a network namespace of its own (so no other user's tables are
    /// touched) and a session dir of its own: a network's leftovers go;
    /// the shared chains stay while another process holds the session and
    /// go with the last holder; a chain that existed before stays.
    #[test]
    #[ignore = "needs root"]
    fn leftovers_and_shared_chains_are_deleted_in_a_private_netns() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(NEWNET)");
            let dir = tempfile::tempdir().unwrap();
            ipt(&["-t", "nat", "-N", "CNI-HOSTPORT-SETMARK"]);
            let guard = SharedChains::guard_at(dir.path(), false);
            assert_eq!(
                SharedChains::existed_before(),
                BTreeSet::from(["CNI-HOSTPORT-SETMARK".to_string()])
            );
            portmap_add("net-t", "pod1");
            firewall_add();
            let (owned, rules) = network_leftovers("net-t");
            assert_eq!(
                owned.iter().map(String::as_str).collect::<Vec<_>>(),
                ["CNI-DN-test1"]
            );
            assert_eq!(rules.len(), 1, "{rules:?}");
            remove_network_leftovers("net-t");
            let t = nat_table();
            assert!(!t.contains("CNI-DN-test1"), "{t}");
            assert!(chains(&t).contains("CNI-HOSTPORT-DNAT"), "{t}");
            // Another live process (PID 1 here) holds the session.
            with_session(dir.path(), |s| s.holders.push((1, start_time(1).unwrap())));
            drop(guard);
            assert!(chains(&nat_table()).contains("CNI-HOSTPORT-DNAT"));
            assert!(chains(&saved("filter")).contains("CNI-FORWARD"));
            // It leaves; this process's last guard ends the session.
            let guard = SharedChains::guard_at(dir.path(), false);
            with_session(dir.path(), |s| s.holders.retain(|h| h.0 != 1));
            drop(guard);
            let (nat, filter) = (nat_table(), saved("filter"));
            assert_eq!(
                chains(&nat)
                    .into_iter()
                    .filter(|c| c.starts_with("CNI-"))
                    .collect::<Vec<_>>(),
                ["CNI-HOSTPORT-SETMARK"],
                "{nat}"
            );
            assert!(!filter.contains("CNI-"), "{filter}");
            assert!(!dir.path().join("cni-host.state").exists());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn sessions_round_trip_and_forget_dead_holders() {
        let me = (std::process::id(), start_time(std::process::id()).unwrap());
        let s = Session {
            holders: vec![me, (me.0, me.1 + 1), (u32::MAX - 1, 5)],
            recorded: true,
            before: BTreeSet::from([("filter".to_string(), "CNI-FORWARD".to_string())]),
        };
        let mut back = Session::parse(&s.text());
        assert_eq!(back, s);
        back.prune();
        assert_eq!(
            back.holders,
            [me],
            "a reused PID and a gone one are dropped"
        );
        assert_eq!(Session::parse(""), Session::default());
        assert!(!shared_chains_in_use(
            "-A OUTPUT -j CNI-HOSTPORT-DNAT\n",
            "-A CNI-FORWARD -m comment --comment \"x\" -j CNI-ADMIN\n"
        ));
        assert!(shared_chains_in_use(
            "",
            "-A CNI-FORWARD -d 10.90.7.2/32 -j ACCEPT\n"
        ));
        assert!(shared_chains_in_use(":CNI-DN-abc - [0:0]\n", ""));
    }
}
