//! Finding and removing the iptables rules a test's plugins made: only
//! rules that mention one of the test's needles (its container IDs, its
//! subnet, its quoted network name), and the per-container chains they
//! jump to. Shared chains of the plugins are never flushed or removed.

use std::process::Command;

const TABLES: &[&str] = &["nat", "filter"];

/// Chains every CNI host shares; never removed here.
fn is_shared_chain(chain: &str) -> bool {
    chain.starts_with("CNI-HOSTPORT-") || chain == "CNI-FORWARD" || chain == "CNI-ADMIN"
}

fn rules(table: &str) -> Vec<String> {
    match Command::new("iptables")
        .args(["-w", "-t", table, "-S"])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The `-A` rules of nat and filter mentioning any needle, prefixed with
/// their table.
pub(super) fn mentioning(needles: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for table in TABLES {
        for rule in rules(table) {
            if rule.starts_with("-A ") && needles.iter().any(|n| rule.contains(n.as_str())) {
                out.push(format!("{table}: {rule}"));
            }
        }
    }
    out
}

/// Deletes the rules mentioning any needle, then the non-shared CNI-*
/// chains those rules jumped to or lived in (flushed, then removed).
pub(super) fn remove_mentioning(needles: &[String]) {
    for table in TABLES {
        let mut chains: Vec<String> = Vec::new();
        for rule in rules(table) {
            if !rule.starts_with("-A ") || !needles.iter().any(|n| rule.contains(n.as_str())) {
                continue;
            }
            let mut words = split(&rule);
            let own_chain = words.get(1).cloned().unwrap_or_default();
            if let Some(i) = words.iter().position(|w| w == "-j") {
                if let Some(target) = words.get(i + 1) {
                    chains.push(target.clone());
                }
            }
            chains.push(own_chain);
            words[0] = "-D".into();
            let status = Command::new("iptables")
                .args(["-w", "-t", table])
                .args(&words)
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("iptables cleanup: could not delete {table}: {rule}");
            }
        }
        chains.sort();
        chains.dedup();
        for chain in chains {
            if !chain.starts_with("CNI-") || is_shared_chain(&chain) {
                continue;
            }
            // anything still jumping to it (its twin rules) goes first
            for rule in rules(table) {
                let words = split(&rule);
                if rule.starts_with("-A ")
                    && words.windows(2).any(|w| w[0] == "-j" && w[1] == chain)
                {
                    let mut del = words.clone();
                    del[0] = "-D".into();
                    let _ = Command::new("iptables")
                        .args(["-w", "-t", table])
                        .args(&del)
                        .status();
                }
            }
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-F", &chain])
                .status();
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-X", &chain])
                .status();
        }
    }
}

/// Splits an `iptables -S` line into words: double quotes group, a
/// backslash escapes the next character inside them.
pub(super) fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            ' ' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[test]
fn split_handles_quoted_comments() {
    let line = r#"-A POSTROUTING -s 10.89.0.2/32 -m comment --comment "name: \"berth-nt0\" id: \"c1\"" -j CNI-abc"#;
    assert_eq!(
        split(line),
        [
            "-A",
            "POSTROUTING",
            "-s",
            "10.89.0.2/32",
            "-m",
            "comment",
            "--comment",
            r#"name: "berth-nt0" id: "c1""#,
            "-j",
            "CNI-abc"
        ]
    );
    assert_eq!(split(r#"-A X --comment """#), ["-A", "X", "--comment", ""]);
}
