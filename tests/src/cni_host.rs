//! What CNI plugins leave on the host, found and removed: the portmap
//! plugin's shared nat chains (`CNI-HOSTPORT-DNAT`, `-MASQ`, `-SETMARK`)
//! and the jumps to them from `PREROUTING`, `OUTPUT` and `POSTROUTING`,
//! which it makes on its first ADD and never removes; and the per-pod
//! chains (`CNI-DN-…`) and rules of one network, which a test that failed
//! before its pods were removed leaves.
//!
//! [`SharedChains`] records at start which shared chains exist; when the
//! last guard of the process goes (also on a panic), it deletes the ones
//! that were not there before, unless some pod (of any process) still has
//! a port mapped through them. Nothing else on the machine is touched.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;

/// The chains every portmap ADD shares.
pub const SHARED_CHAINS: [&str; 3] = [
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-MASQ",
    "CNI-HOSTPORT-SETMARK",
];

/// The nat table, as `iptables-save` prints it (empty if it cannot run).
pub fn nat_table() -> String {
    Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The chain names of a saved table.
pub fn chains(table: &str) -> BTreeSet<String> {
    table
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A saved rule (`-A CHAIN ...`) as arguments, quotes and `\"` undone.
pub fn rule_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    let mut it = line.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
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

/// The chain a saved rule is in and the chain it jumps to.
fn chain_and_target(args: &[String]) -> (Option<&str>, Option<&str>) {
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    (after("-A"), after("-j"))
}

/// Deletes a saved rule (`-A ...` becomes `-D ...`).
fn delete_rule(args: &[String]) {
    let mut del: Vec<String> = vec!["-t".into(), "nat".into()];
    del.extend(args.iter().map(|a| {
        if a == "-A" {
            "-D".to_string()
        } else {
            a.clone()
        }
    }));
    let _ = Command::new("iptables").args(&del).output();
}

/// Deletes the chains `names` of the nat table: every jump to them, then
/// their rules, then the chains.
pub fn delete_chains(names: &BTreeSet<String>) {
    if names.is_empty() {
        return;
    }
    for line in nat_table().lines().filter(|l| l.starts_with("-A ")) {
        let args = rule_args(line);
        if chain_and_target(&args).1.is_some_and(|t| names.contains(t)) {
            delete_rule(&args);
        }
    }
    for n in names {
        let _ = Command::new("iptables")
            .args(["-t", "nat", "-F", n])
            .output();
    }
    for n in names {
        let _ = Command::new("iptables")
            .args(["-t", "nat", "-X", n])
            .output();
    }
}

/// The per-pod chains of CNI network `network` (those holding a rule
/// whose comment names it, as portmap's and bridge's do), and the rules
/// naming it elsewhere: what a pod of that network leaves if it is never
/// deleted.
pub fn network_leftovers(network: &str) -> (BTreeSet<String>, Vec<String>) {
    let needle = format!("name: \\\"{network}\\\"");
    let table = nat_table();
    let mut owned = BTreeSet::new();
    let mut rules = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("-A ")) {
        if !line.contains(&needle) {
            continue;
        }
        let args = rule_args(line);
        let (chain, target) = chain_and_target(&args);
        for c in [chain, target].into_iter().flatten() {
            if c.starts_with("CNI-") && !SHARED_CHAINS.contains(&c) {
                owned.insert(c.to_string());
            }
        }
        rules.push(line.to_string());
    }
    (owned, rules)
}

/// Removes what network `network`'s pods left in the nat table.
pub fn remove_network_leftovers(network: &str) {
    let (owned, rules) = network_leftovers(network);
    for r in &rules {
        let args = rule_args(r);
        if chain_and_target(&args)
            .0
            .is_some_and(|c| SHARED_CHAINS.contains(&c))
        {
            delete_rule(&args);
        }
    }
    delete_chains(&owned);
}

struct Live {
    guards: usize,
    before: BTreeSet<String>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    guards: 0,
    before: BTreeSet::new(),
});

/// Records which shared portmap chains exist while the first guard of
/// the process is made; the last one dropped deletes those that did not.
pub struct SharedChains(());

impl SharedChains {
    /// A guard; the first of the process records the shared chains.
    pub fn guard() -> Self {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        if live.guards == 0 {
            let have = chains(&nat_table());
            live.before = SHARED_CHAINS
                .iter()
                .filter(|c| have.contains(**c))
                .map(|c| c.to_string())
                .collect();
        }
        live.guards += 1;
        SharedChains(())
    }

    /// The shared chains that existed before this process's first guard.
    pub fn existed_before() -> BTreeSet<String> {
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .before
            .clone()
    }
}

impl Drop for SharedChains {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.guards -= 1;
        if live.guards > 0 {
            return;
        }
        let table = nat_table();
        // A pod still mapping a port (another test's, another process's),
        // or one being set up (its per-pod chain made first), needs them:
        // leave them be.
        let have = chains(&table);
        if table
            .lines()
            .any(|l| l.starts_with("-A CNI-HOSTPORT-DNAT "))
            || have.iter().any(|c| c.starts_with("CNI-DN-"))
        {
            return;
        }
        let ours: BTreeSet<String> = SHARED_CHAINS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| have.contains(c) && !live.before.contains(c))
            .collect();
        delete_chains(&ours);
    }
}

#[cfg(test)]
mod tests {
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

    /// In a network namespace of its own (so no other user's nat table
    /// is touched): a network's leftovers go, then the last guard deletes
    /// the shared chains it saw made.
    #[test]
    #[ignore = "needs root"]
    fn leftovers_and_shared_chains_are_deleted_in_a_private_netns() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(NEWNET)");
            let guard = SharedChains::guard();
            assert!(SharedChains::existed_before().is_empty());
            portmap_add("net-t", "pod1");
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
            drop(guard);
            let t = nat_table();
            assert!(!t.contains("CNI-"), "shared chains left:\n{t}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn saved_rules_split_like_a_shell() {
        let l = r#"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"net-b\" id: \"abc\"" -m multiport --dports 80 -j CNI-DN-1"#;
        let a = rule_args(l);
        assert_eq!(a[7], r#"dnat name: "net-b" id: "abc""#);
        assert_eq!(
            chain_and_target(&a),
            (Some("CNI-HOSTPORT-DNAT"), Some("CNI-DN-1"))
        );
        assert_eq!(
            rule_args(r#"-A X --comment """#),
            ["-A", "X", "--comment", ""]
        );
        let t = ":PREROUTING ACCEPT [0:0]\n:CNI-DN-1 - [0:0]\n-A PREROUTING -j X\n";
        assert_eq!(
            chains(t),
            ["CNI-DN-1", "PREROUTING"]
                .map(String::from)
                .into_iter()
                .collect()
        );
    }
}
