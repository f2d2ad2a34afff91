//! Issue 17, berthctl's output and addressing: every `-o json` field is
//! snake_case and keeps one type wherever it appears (`runtime` in
//! `containers ls` and `info` alike); removals and tags print one JSON
//! array; `BERTH_ADDRESS`/`--address` take `unix://PATH` as ctr does;
//! usage errors are clap's whole message with its hints, exit 2; a pull
//! reports the image's size as `images ls` does, and its progress on a
//! terminal is in words with sane rates.

mod cli_support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use berth_tests::registry::{self, Registry, Throttle};
use berth_tests::{requires_root, Berthd};
use cli_support::text;
use serde_json::Value;

const IMAGE: &str = "docker.io/berthtest/busybox:oci-gzip";

fn import_busybox(d: &Berthd) {
    let tar = berth_tests::images::dir().join("busybox/oci-gzip.tar");
    let out = d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
    assert_eq!(out.trim(), IMAGE);
}

/// Fields whose values are documents in someone else's schema, shown
/// as they are: map keys there are data, not berthctl's field names.
const VERBATIM: &[&str] = &["labels", "annotations", "spec", "image_config"];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Records every field name under `v` with the JSON type of its value.
fn walk(v: &Value, at: &str, seen: &mut BTreeMap<String, BTreeMap<&'static str, String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let path = format!("{at}.{k}");
                if !child.is_null() {
                    seen.entry(k.clone())
                        .or_default()
                        .entry(kind(child))
                        .or_insert(path.clone());
                }
                if !VERBATIM.contains(&k.as_str()) {
                    walk(child, &path, seen);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| walk(c, &format!("{at}[]"), seen)),
        _ => {}
    }
}

fn snake_case(k: &str) -> bool {
    k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[test]
#[ignore = "needs root"]
fn json_fields_are_snake_case_with_one_type_each() {
    requires_root(&["runc"]);
    let d = Berthd::start();
    import_busybox(&d);
    d.berthctl_ok(&[
        "containers",
        "run",
        "-d",
        "--null-io",
        IMAGE,
        "j1",
        "sleep",
        "60",
    ]);
    d.berthctl_ok(&["containers", "create", IMAGE, "j2"]);

    let mut outputs: Vec<(String, Value)> = Vec::new();
    let mut grab = |args: &[&str]| {
        let v = d.json(args);
        outputs.push((args.join(" "), v.clone()));
        v
    };
    grab(&["version"]);
    grab(&["namespaces", "ls"]);
    grab(&["content", "ls"]);
    grab(&["content", "active"]);
    grab(&["leases", "ls"]);
    let images = grab(&["images", "ls"]);
    let inspected = grab(&["images", "inspect", IMAGE]);
    grab(&["snapshots", "ls"]);
    grab(&["snapshots", "tree"]);
    grab(&["snapshots", "usage"]);
    grab(&["snapshots", "info", "j1"]);
    let listed = grab(&["containers", "ls"]);
    let info = grab(&["containers", "info", "j1"]);
    grab(&["tasks", "ls"]);
    grab(&["tasks", "ps", "j1"]);
    grab(&["tasks", "metrics", "j1"]);

    // Writes that used to print nothing under -o json print one array.
    let tagged = grab(&["images", "tag", IMAGE, "j:1", "j:2"]);
    assert_eq!(
        tagged,
        serde_json::json!([{"name": "j:1"}, {"name": "j:2"}])
    );
    let removed = grab(&["images", "rm", "j:1", "j:2"]);
    assert_eq!(
        removed,
        serde_json::json!([{"name": "j:1"}, {"name": "j:2"}])
    );
    grab(&["leases", "create", "--id", "jl"]);
    assert_eq!(
        grab(&["leases", "rm", "jl"]),
        serde_json::json!([{"id": "jl"}])
    );
    grab(&["namespaces", "create", "jns"]);
    assert_eq!(
        grab(&["namespaces", "rm", "jns"]),
        serde_json::json!([{"name": "jns"}])
    );
    let task = grab(&["tasks", "rm", "-f", "j1"]);
    assert_eq!(task[0]["id"], "j1", "{task}");
    assert!(task[0]["exit_status"].is_number(), "{task}");
    assert_eq!(
        grab(&["containers", "rm", "j1", "j2"]),
        serde_json::json!([{"id": "j1"}, {"id": "j2"}])
    );

    // `runtime` is the same object in the listing and in `info`.
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "j1")
        .expect("j1 listed");
    assert!(row["runtime"].is_object(), "{row}");
    assert_eq!(row["runtime"], info["runtime"]);
    assert_eq!(row["runtime"]["name"], "io.containerd.runc.v2");
    assert_eq!(row["created_at"], info["created_at"]);
    // `size` means the same in `images ls` and `images inspect`.
    let listed_image = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == IMAGE)
        .unwrap();
    assert_eq!(listed_image["size"], inspected["size"]);
    assert_eq!(
        inspected["manifest"]["media_type"],
        listed_image["media_type"]
    );

    let mut seen = BTreeMap::new();
    for (args, v) in &outputs {
        walk(v, args, &mut seen);
    }
    let bad_names: Vec<&String> = seen.keys().filter(|k| !snake_case(k)).collect();
    assert!(
        bad_names.is_empty(),
        "not snake_case: {bad_names:?}\n{seen:#?}"
    );
    let mixed: Vec<_> = seen.iter().filter(|(_, kinds)| kinds.len() > 1).collect();
    assert!(mixed.is_empty(), "fields with several types: {mixed:#?}");
    for common in [
        "id",
        "name",
        "digest",
        "size",
        "labels",
        "created_at",
        "runtime",
        "pid",
    ] {
        assert!(seen.contains_key(common), "{common} never seen: {seen:#?}");
    }
}

#[test]
fn unix_addresses_and_usage_errors() {
    let d = Berthd::start();
    let unix = format!("unix://{}", d.address().display());
    let via_env = d
        .berthctl_cmd(&["version"])
        .env("BERTH_ADDRESS", &unix)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(via_env.status.success(), "{:?}", text(&via_env));
    assert!(text(&via_env).0.contains("Server:"));
    let via_flag = d
        .berthctl_cmd(&["--address", &unix, "namespaces", "ls"])
        .env_remove("BERTH_ADDRESS")
        .output()
        .unwrap();
    assert!(via_flag.status.success(), "{:?}", text(&via_flag));

    // Not a unix socket: a usage error naming the scheme, exit 2.
    let tcp = d
        .berthctl_cmd(&["version"])
        .env("BERTH_ADDRESS", "tcp://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(tcp.status.code(), Some(2));
    assert!(
        text(&tcp).1.contains("tcp:// addresses are not supported"),
        "{:?}",
        text(&tcp)
    );
    // A unix:// path nobody listens on: one line naming the path.
    let gone = d
        .berthctl_cmd(&["version"])
        .env("BERTH_ADDRESS", "unix:///nonexistent/berthd.sock")
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1));
    let e = text(&gone).1;
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("at /nonexistent/berthd.sock:"), "{e}");

    // A misspelt group: clap's message kept whole, with its hint.
    let out = d.berthctl(&["imags", "ls"]);
    assert_eq!(out.status.code(), Some(2));
    let (o, e) = text(&out);
    assert!(o.is_empty(), "{o}");
    assert!(
        e.starts_with("error: unrecognized subcommand 'imags'"),
        "{e}"
    );
    assert!(e.contains("tip:") && e.contains("'images'"), "{e}");
    assert!(e.contains("Usage: berthctl"), "{e}");
    let out = d.berthctl(&["tasks", "kill"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("<ID>"), "{:?}", text(&out));
    // Help goes to stdout, exit 0.
    let out = d.berthctl(&["images", "--help"]);
    assert!(out.status.success());
    assert!(text(&out).0.contains("pull"), "{:?}", text(&out));
}

#[test]
#[ignore = "needs root"]
fn pull_reports_size_as_listed_and_progress_in_words() {
    berth_tests::requires(registry::TOOLS);
    requires_root(&["script", "runc"]);
    let reg = Registry::start();
    let reference = reg.push_test_image("busybox", "oci-gzip");
    let d = Berthd::start();

    // Through a slow proxy, on a terminal (`script` gives it a pty), so
    // progress is drawn while the layer downloads.
    let slow = Throttle::start(&reg.host(), 256 << 10);
    let slow_ref = reference.replacen(&reg.host(), &slow.host(), 1);
    let cmd = format!(
        "{} --address {} images pull --plain-http {}",
        berth_tests::bin("berthctl").display(),
        d.address().display(),
        slow_ref
    );
    let out = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .env("COLUMNS", "160")
        .env("LINES", "40")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (screen, e) = text(&out);
    assert!(out.status.success(), "{screen}\n{e}");
    for word in ["downloading", "total: "] {
        assert!(screen.contains(word), "{word:?} not drawn:\n{screen}");
    }
    assert!(
        !screen.contains("blob_unpacking") && !screen.contains("active"),
        "{screen}"
    );
    // Rates are of bytes moving through a 256 KiB/s proxy: never GiB/s.
    let rates = rates_in(&screen);
    assert!(!rates.is_empty(), "no rate drawn:\n{screen}");
    for r in &rates {
        assert!(
            *r <= 2.0 * 1024.0 * 1024.0,
            "rate {r} B/s through a 256 KiB/s proxy"
        );
    }

    // -o json: `size` is the image's bytes for the platform, as `images
    // ls` reports it (not the manifest's own size).
    let again = d.json(&["images", "pull", "--plain-http", &reference]);
    let listed = d.json(&["images", "ls"]);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == reference.as_str())
        .expect("pulled image listed");
    assert_eq!(again["size"], row["size"], "{again}\n{row}");
    assert_eq!(again["digest"], row["digest"]);
    assert_eq!(again["media_type"], row["media_type"]);
    let inspected = d.json(&["images", "inspect", &reference]);
    assert!(again["size"].as_i64().unwrap() > inspected["manifest"]["size"].as_i64().unwrap());
    assert_eq!(again["chain_id"], inspected["chain_id"]);
    assert_eq!(
        d.json(&["images", "rm", &reference]),
        serde_json::json!([{"name": reference}])
    );
}

/// Every `N.N UNIT/s` on the screen, in bytes per second.
fn rates_in(screen: &str) -> Vec<f64> {
    let units = [
        ("B/s", 1.0),
        ("KiB/s", 1024.0),
        ("MiB/s", 1048576.0),
        ("GiB/s", 1073741824.0),
    ];
    let words: Vec<&str> = screen
        .split(|c: char| c.is_whitespace() || c == '\r')
        .collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        if let Some((_, scale)) = units.iter().find(|(u, _)| pair[1].starts_with(u)) {
            if let Ok(n) = pair[0].parse::<f64>() {
                out.push(n * scale);
            }
        }
    }
    out
}
