//! Issue 17, config and logs: `berthd --config` with a missing file, a bad
//! key and a bad value each gives one clear line and exit 2; `berthd
//! config check` validates without starting; `--version` names the commit
//! and build date (berthd, berthctl, and the server's revision); a log
//! written to a file has no colour, and `--log-level debug` is berth's own
//! crates while a full filter names others.

mod cli_support;

use std::path::Path;

use berth_tests::{require_root, Berthd};
use cli_support::{git_commit, json, run_bin, text, PlainBerthd};

/// Runs berthd with `args` expecting a configuration error: exit 2, one
/// line on stderr starting with `berthd: `, nothing on stdout. Returns it.
fn config_error(args: &[&str]) -> String {
    let out = run_bin("berthd", args);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "berthd {args:?}: {e}");
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(e.starts_with("berthd: "), "{e}");
    assert!(o.is_empty(), "{o}");
    e.trim_end().to_string()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn config_errors_are_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();

    // A missing file, named with the reason (once: not twice as before).
    let missing = dir.path().join("nope.toml");
    let e = config_error(&["--config", missing.to_str().unwrap(), "--root", root]);
    assert_eq!(
        e,
        format!(
            "berthd: config {}: cannot read it: No such file or directory",
            missing.display()
        )
    );

    // A key berthd does not know: file, line and the key.
    let bad_key = write(dir.path(), "key.toml", "root = \"/x\"\nrooot = \"/y\"\n");
    let e = config_error(&["--config", &bad_key, "--root", root]);
    assert!(
        e.starts_with(&format!(
            "berthd: config {bad_key}, line 2 (rooot = \"/y\"): unknown field `rooot`"
        )),
        "{e}"
    );

    // A value that does not fit its key: the line and what was expected.
    let bad_value = write(dir.path(), "value.toml", "[grpc]\ngid = \"staff\"\n");
    let e = config_error(&["--config", &bad_value, "--root", root]);
    assert!(
        e.contains(&format!("config {bad_value}, line 2 (gid = \"staff\")"))
            && e.contains("expected u32"),
        "{e}"
    );
    let bad_enum = write(dir.path(), "enum.toml", "log_format = \"xml\"\n");
    let e = config_error(&["--config", &bad_enum]);
    assert!(
        e.contains("line 1") && e.contains("`text` or `json`"),
        "{e}"
    );

    // Values that parse but cannot work are refused before anything starts.
    let relative = write(dir.path(), "rel.toml", "root = \"var/lib/berth\"\n");
    let e = config_error(&["--config", &relative]);
    assert_eq!(
        e,
        format!("berthd: config {relative}: root: var/lib/berth: must be an absolute path")
    );
    let e = config_error(&["--root", root, "--log-level", "berth=loud"]);
    assert!(e.starts_with("berthd: log_level \"berth=loud\": "), "{e}");
    let e = config_error(&["--root", root, "--default-snapshotter", "zfs"]);
    assert!(
        e.contains("default_snapshotter") && e.contains("zfs"),
        "{e}"
    );
    assert!(!dir.path().join("root").exists(), "nothing was started");

    // A command line that does not parse: clap's whole message, exit 2.
    let out = run_bin("berthd", &["--grpc-gid", "staff"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("invalid value 'staff'"),
        "{:?}",
        text(&out)
    );
    let out = run_bin("berthd", &["config", "chek"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .contains("a similar subcommand exists: 'check'"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn config_check_validates_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    // The defaults, as berthd prints them, check out; so does a file
    // granting a group the socket.
    let out = run_bin("berthd", &["config", "default"]);
    assert!(out.status.success());
    let defaults = write(dir.path(), "default.toml", &text(&out).0);
    assert!(text(&out).0.contains("[grpc]"), "{}", text(&out).0);
    let out = run_bin("berthd", &["config", "check", &defaults]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, format!("{defaults}: ok\n"));
    let grant = write(
        dir.path(),
        "grant.toml",
        "root = \"/nonexistent/berth\"\nlog_level = \"info,h2=debug\"\n[grpc]\ngid = 4242\n",
    );
    let out = run_bin("berthd", &["config", "check", &grant]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(!Path::new("/nonexistent/berth").exists());

    // A bad file: the same one line as at start-up, exit 2.
    let bad = write(dir.path(), "bad.toml", "runtime_binary = \"\"\n");
    let out = run_bin("berthd", &["config", "check", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out).1,
        format!(
            "berthd: config {bad}: runtime_binary: must name a runtime (runc, crun or a path)\n"
        )
    );
    let ca = write(
        dir.path(),
        "ca.toml",
        "[registry_ca_files]\n\"r.example:5000\" = \"/nonexistent/ca.pem\"\n",
    );
    let out = run_bin("berthd", &["config", "check", &ca]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .contains("/nonexistent/ca.pem: No such file or directory"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn versions_name_the_commit_and_build_date() {
    let commit = git_commit().unwrap_or_else(|| "unknown".into());
    let is_date = |s: &str| {
        s.len() == 10
            && s.chars().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    for bin in ["berthd", "berthctl"] {
        let out = run_bin(bin, &["--version"]);
        let line = text(&out).0;
        assert!(out.status.success());
        let want = format!(
            "{bin} {} (commit {commit}, built ",
            env!("CARGO_PKG_VERSION")
        );
        assert!(line.starts_with(&want), "{line:?} vs {want:?}");
        let date = line
            .trim_end()
            .trim_end_matches(')')
            .rsplit(' ')
            .next()
            .unwrap();
        assert!(is_date(date), "{line}");
    }
    if !require_root("versions_name_the_commit_and_build_date") {
        return;
    }
    let d = Berthd::start();
    let v = json(&d, &["version"]);
    assert_eq!(v["client"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["client"]["revision"], commit.as_str(), "{v}");
    assert!(
        v["client"]["build_date"].as_str().is_some_and(is_date),
        "{v}"
    );
    assert_eq!(v["server"]["revision"], commit.as_str(), "{v}");
    let t = d.berthctl_ok(&["version"]);
    assert!(t.contains(&format!("Revision: {commit}")), "{t}");
}

/// True for a log line at DEBUG from a target starting with `krate`.
fn debug_from(line: &str, krate: &str) -> bool {
    line.split_whitespace()
        .skip_while(|w| *w != "DEBUG")
        .nth(1)
        .is_some_and(|target| {
            target.starts_with(&format!("{krate}::")) || target == format!("{krate}:")
        })
}

#[test]
fn logs_have_no_colour_in_a_file_and_debug_is_berths_own() {
    if !require_root("logs_have_no_colour_in_a_file") {
        return;
    }
    // The harness runs berthd at --log-level debug with stderr in a file.
    let d = Berthd::start();
    d.berthctl_ok(&["namespaces", "create", "logs"]);
    d.berthctl_ok(&["content", "ls"]);
    d.berthctl_ok(&["namespaces", "rm", "logs"]);
    let log = d.log();
    assert!(!log.contains('\x1b'), "ANSI escapes in a log file:\n{log}");
    assert!(
        log.lines().any(|l| debug_from(l, "berth_supervisor")),
        "berth's own debug lines missing:\n{log}"
    );
    for noisy in ["h2", "hyper", "hyper_util", "tonic", "tower", "sled"] {
        let lines: Vec<&str> = log.lines().filter(|l| debug_from(l, noisy)).collect();
        assert!(lines.is_empty(), "{noisy} at debug: {lines:?}");
    }

    // A full filter names what it wants, exactly.
    let p = PlainBerthd::start(&["--log-level", "info,h2=debug"]);
    p.berthctl_ok(&["namespaces", "ls"]);
    let log = p.log();
    assert!(!log.contains('\x1b'), "{log}");
    assert!(
        log.lines().any(|l| debug_from(l, "h2")),
        "no h2 debug lines:\n{log}"
    );
    assert!(
        !log.lines().any(|l| debug_from(l, "berth_supervisor")),
        "berth at debug without asking:\n{log}"
    );
}
