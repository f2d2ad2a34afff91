//! What CNI plugins leave on the host, found and removed: the portmap
//! plugin's shared nat chains (`CNI-HOSTPORT-DNAT`, `-MASQ`, `-SETMARK`)
//! and the jumps to them from `PREROUTING`, `OUTPUT` and `POSTROUTING`,
//! and the firewall plugin's filter chains (`CNI-FORWARD`, `CNI-ADMIN`)
//! and the jump from `FORWARD`, which they make on their first ADD and
//! never remove; and the per-pod chains (`CNI-DN-…`) and rules of one
//! network, which a test that failed before its pods were removed leaves.
//!
//! [`SharedChains`] is one rule for every test process of the host (test
//! binaries run in parallel): the chains that did not exist when the
//! first of them began are deleted when the last of them ends, unless
//! some pod still uses them. Nothing else on the machine is touched.

use std::collections::BTreeSet;
use std::process::Command;

/// The chains every portmap ADD shares.
pub const SHARED_CHAINS: [&str; 3] = [
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-MASQ",
    "CNI-HOSTPORT-SETMARK",
];

/// The nat table, as `iptables-save` prints it (empty if it cannot run).
pub fn nat_table() -> String {
    saved("nat")
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

/// Deletes a saved rule of the nat table (`-A ...` becomes `-D ...`).
fn delete_rule(args: &[String]) {
    delete_rule_in("nat", args);
}

/// Deletes the chains `names` of the nat table: every jump to them, then
/// their rules, then the chains.
pub fn delete_chains(names: &BTreeSet<String>) {
    delete_chains_in("nat", names);
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

/// The chains of the filter table the firewall plugin shares (jumped to
/// from `FORWARD`; `CNI-ADMIN` from `CNI-FORWARD`).
pub const FIREWALL_CHAINS: [&str; 2] = ["CNI-FORWARD", "CNI-ADMIN"];

/// The saved `table` (empty if `iptables-save` cannot run).
fn saved(table: &str) -> String {
    Command::new("iptables-save")
        .args(["-t", table])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Deletes a saved rule of `table` (`-A ...` becomes `-D ...`).
fn delete_rule_in(table: &str, args: &[String]) {
    let mut del: Vec<String> = vec!["-t".into(), table.into()];
    del.extend(args.iter().map(|a| {
        if a == "-A" {
            "-D".to_string()
        } else {
            a.clone()
        }
    }));
    let _ = Command::new("iptables").args(&del).output();
}

/// Deletes the chains `names` of `table`: every jump to them, then their
/// rules, then the chains.
fn delete_chains_in(table: &str, names: &BTreeSet<String>) {
    if names.is_empty() {
        return;
    }
    for line in saved(table).lines().filter(|l| l.starts_with("-A ")) {
        let args = rule_args(line);
        if chain_and_target(&args).1.is_some_and(|t| names.contains(t)) {
            delete_rule_in(table, &args);
        }
    }
    for n in names {
        let _ = Command::new("iptables")
            .args(["-t", table, "-F", n])
            .output();
    }
    for n in names {
        let _ = Command::new("iptables")
            .args(["-t", table, "-X", n])
            .output();
    }
}

mod session;

pub use session::{SharedChains, SESSION_DIR};

#[cfg(test)]
mod tests {
    use super::*;

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
