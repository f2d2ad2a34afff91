//! Volumes owned by berthd (issue 16.1) against a real berthd and runc:
//! a named volume keeps its data across containers, a new one gets the
//! image's content (copy-up), `:ro` refuses writes, a volume in use
//! cannot be removed, anonymous volumes go with `rm -v`, binds need an
//! absolute host path, `--mount` takes volume, bind and tmpfs, and
//! volumes with their labels and users survive a kill -9 of berthd.
//!
//! Containers run with `--network none`: no bridge or CNI is involved.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use berth_tests::images::BUSYBOX as IMAGE;
use berth_tests::{requires_root, Berthd};
use serde_json::Value;

fn daemon() -> Berthd {
    requires_root(&["runc"]);
    let d = Berthd::start();
    let tar = berth_tests::images::busybox();
    d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
    d
}

/// `berthctl run --rm --network none ARGS... IMAGE CMD...`.
fn run(d: &Berthd, opts: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(opts);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    d.berthctl_cmd(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run berthctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn data(d: &Berthd, name: &str) -> PathBuf {
    d.root().join("volumes").join(name).join("_data")
}

fn volumes(d: &Berthd) -> Vec<Value> {
    d.json(&["volume", "ls"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn volume(d: &Berthd, name: &str) -> Value {
    d.json(&["volume", "inspect", name])[0].clone()
}

#[test]
#[ignore = "needs root"]
fn named_volumes_copy_up_read_only_in_use_and_anonymous() {
    let d = daemon();

    // create, ls (table and JSON), inspect.
    assert_eq!(
        d.berthctl_ok(&["volume", "create", "--label", "team=a", "data1"])
            .trim(),
        "data1"
    );
    let v = volume(&d, "data1");
    assert_eq!(v["driver"], "local");
    assert_eq!(v["labels"]["team"], "a");
    assert_eq!(v["mountpoint"], data(&d, "data1").display().to_string());
    assert!(data(&d, "data1").is_dir());
    let table = d.berthctl_ok(&["volume", "ls"]);
    assert!(
        table.lines().next().unwrap().contains("VOLUME NAME"),
        "{table}"
    );
    assert!(table.contains("data1"), "{table}");

    // Data written through one container is on disk and seen by the next.
    let out = run(
        &d,
        &["-v", "data1:/data"],
        &["sh", "-c", "echo hi > /data/f"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(data(&d, "data1").join("f")).unwrap(),
        "hi\n"
    );
    let out = run(&d, &["-v", "data1:/data"], &["cat", "/data/f"]);
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));

    // Read-only: the write fails inside the container, nothing lands.
    let out = run(
        &d,
        &["-v", "data1:/data:ro"],
        &["sh", "-c", "echo x > /data/g"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(!data(&d, "data1").join("g").exists());
    let out = run(
        &d,
        &["--mount", "type=volume,src=data1,dst=/data,readonly"],
        &["touch", "/data/g"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(!data(&d, "data1").join("g").exists());

    // Copy-up: a new named volume gets the image's /etc; nocopy does not.
    let out = run(&d, &["-v", "etc1:/etc"], &["cat", "/etc/passwd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let passwd = std::fs::read_to_string(data(&d, "etc1").join("passwd")).unwrap();
    assert_eq!(passwd, text(&out.stdout));
    assert!(passwd.contains("root:"), "{passwd}");
    let out = run(
        &d,
        &["--mount", "type=volume,src=etc2,dst=/etc,volume-nocopy"],
        &["ls", "/etc"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(std::fs::read_dir(data(&d, "etc2")).unwrap().count(), 0);
    // An existing volume is not filled again.
    std::fs::write(data(&d, "etc2").join("mine"), "kept").unwrap();
    let out = run(&d, &["-v", "etc2:/etc"], &["ls", "/etc"]);
    assert_eq!(text(&out.stdout), "mine\n");

    // In use by a container (even a stopped one): refused.
    d.berthctl_ok(&[
        "create",
        "--name",
        "holder",
        "--network",
        "none",
        "-v",
        "data1:/data",
        IMAGE,
        "true",
    ]);
    let v = volume(&d, "data1");
    assert_eq!(v["containers"][0]["name"], "holder", "{v}");
    let err = d.berthctl_fails(&["volume", "rm", "data1"]);
    assert!(err.contains("in use"), "{err}");
    assert!(data(&d, "data1").join("f").exists());
    assert!(!d
        .berthctl_ok(&["volume", "prune"])
        .lines()
        .any(|l| l == "data1"));
    d.berthctl_ok(&["rm", "holder"]);
    d.berthctl_ok(&["volume", "rm", "data1"]);
    assert!(!d.root().join("volumes/data1").exists());
    let err = d.berthctl_fails(&["volume", "inspect", "data1"]);
    assert!(err.contains("no such volume"), "{err}");

    // Anonymous volumes: `-v /path` makes one; `rm -v` removes it, `rm`
    // leaves it for prune.
    let before: Vec<String> = volumes(&d)
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    d.berthctl_ok(&[
        "create",
        "--name",
        "anon",
        "--network",
        "none",
        "-v",
        "/scratch",
        IMAGE,
        "true",
    ]);
    let anon: Vec<Value> = volumes(&d)
        .into_iter()
        .filter(|v| !before.contains(&v["name"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(anon.len(), 1, "{anon:?}");
    assert_eq!(anon[0]["anonymous"], true);
    assert_eq!(anon[0]["name"].as_str().unwrap().len(), 64);
    let name = anon[0]["name"].as_str().unwrap().to_string();
    let inspect = d.json(&["inspect", "anon"]);
    assert_eq!(
        inspect[0]["Mounts"][0]["Source"],
        name.as_str(),
        "{inspect}"
    );
    d.berthctl_ok(&["rm", "-v", "anon"]);
    assert!(volumes(&d).iter().all(|v| v["name"] != name.as_str()));
    assert!(!d.root().join("volumes").join(&name).exists());

    d.berthctl_ok(&[
        "create",
        "--name",
        "anon2",
        "--network",
        "none",
        "-v",
        "/scratch",
        IMAGE,
        "true",
    ]);
    d.berthctl_ok(&["rm", "anon2"]);
    let dangling = d.json(&["volume", "ls", "--filter", "dangling=true"]);
    let dangling: Vec<&str> = dangling
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(dangling.iter().any(|n| n.len() == 64), "{dangling:?}");
    let pruned = d.berthctl_ok(&["volume", "prune"]);
    for n in dangling {
        assert!(pruned.lines().any(|l| l == n), "{pruned}");
        assert!(!d.root().join("volumes").join(n).exists());
    }
    assert!(volumes(&d).is_empty(), "{:?}", volumes(&d));
}

#[test]
#[ignore = "needs root"]
fn binds_tmpfs_and_bad_mounts() {
    let d = daemon();
    let host = tempfile::tempdir().unwrap();
    let hp = host.path().display().to_string();

    // An absolute bind: writes land on the host; :ro refuses them.
    let out = run(
        &d,
        &["-v", &format!("{hp}:/h")],
        &["sh", "-c", "echo b > /h/f"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).unwrap(),
        "b\n"
    );
    let out = run(
        &d,
        &["--mount", &format!("type=bind,src={hp},dst=/h,readonly")],
        &["rm", "/h/f"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(host.path().join("f").exists());

    // tmpfs: writable even on a read-only rootfs.
    let out = run(
        &d,
        &["--read-only", "--mount", "type=tmpfs,dst=/t"],
        &["sh", "-c", "touch /t/x && ! touch /y"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A relative host path: one clear error, nothing made.
    for v in ["data/x:/x", "./x:/x"] {
        let out = run(&d, &["-v", v], &["true"]);
        assert_eq!(out.status.code(), Some(1), "{v}");
        let err = text(&out.stderr);
        assert!(err.contains("must be absolute"), "{v}: {err}");
    }
    // A bad volume name, a relative target.
    let out = run(&d, &["-v", "b@d:/x"], &["true"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&d, &["--mount", "type=volume,src=ok1,dst=rel"], &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("absolute"),
        "{}",
        text(&out.stderr)
    );
    assert!(volumes(&d).is_empty(), "{:?}", volumes(&d));
    assert!(d.json(&["ps", "-a"]).as_array().unwrap().is_empty());
}

#[test]
#[ignore = "needs root"]
fn volumes_labels_and_users_survive_a_berthd_kill() {
    let mut d = daemon();
    d.berthctl_ok(&["volume", "create", "--label", "k=v", "keep"]);
    d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "user1",
        "--network",
        "none",
        "-v",
        "keep:/k",
        IMAGE,
        "sh",
        "-c",
        "echo alive > /k/a; sleep 1000",
    ]);
    wait_for(&data(&d, "keep").join("a"));
    d.kill9();
    d.restart();
    let v = volume(&d, "keep");
    assert_eq!(v["labels"]["k"], "v");
    assert_eq!(v["containers"][0]["name"], "user1", "{v}");
    let err = d.berthctl_fails(&["volume", "rm", "keep"]);
    assert!(err.contains("in use"), "{err}");
    d.berthctl_ok(&["rm", "-f", "user1"]);
    assert_eq!(
        std::fs::read_to_string(data(&d, "keep").join("a")).unwrap(),
        "alive\n"
    );
    // The collector does not touch volumes.
    let _ = d.ctr(&["content", "prune", "references"]);
    assert!(data(&d, "keep").join("a").exists());
    d.berthctl_ok(&["volume", "rm", "keep"]);
    assert!(volumes(&d).is_empty());
}

fn wait_for(p: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !p.exists() {
        assert!(std::time::Instant::now() < deadline, "{p:?} never appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root"]
fn image_volumes_get_anonymous_volumes_with_the_image_content() {
    let d = daemon();
    // An image declaring VOLUME /data, with a file there (made by commit).
    d.berthctl_ok(&[
        "create",
        "--name",
        "seed",
        "--network",
        "none",
        IMAGE,
        "true",
    ]);
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir(host.path().join("data")).unwrap();
    std::fs::write(host.path().join("data/seed"), "from the image").unwrap();
    d.berthctl_ok(&["cp", host.path().join("data").to_str().unwrap(), "seed:/"]);
    d.berthctl_ok(&[
        "commit",
        "--change",
        "VOLUME /data",
        "seed",
        "example.com/withvol:1",
    ]);
    d.berthctl_ok(&["rm", "seed"]);

    d.berthctl_ok(&[
        "create",
        "--name",
        "v1",
        "--network",
        "none",
        "example.com/withvol:1",
        "true",
    ]);
    let vols = volumes(&d);
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0]["anonymous"], true);
    assert_eq!(vols[0]["containers"][0]["name"], "v1");
    let name = vols[0]["name"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(data(&d, &name).join("seed")).unwrap(),
        "from the image"
    );
    let inspect = d.json(&["inspect", "v1"]);
    assert_eq!(inspect[0]["Mounts"][0]["Destination"], "/data", "{inspect}");
    // A mount at the same path replaces the image's volume.
    let out = d
        .berthctl_cmd(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "mine:/data",
            "example.com/withvol:1",
            "cat",
            "/data/seed",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "from the image", "{}", text(&out.stderr));
    assert_eq!(volumes(&d).len(), 2);
    d.berthctl_ok(&["rm", "-v", "v1"]);
    let left: Vec<_> = volumes(&d).iter().map(|v| v["name"].clone()).collect();
    assert_eq!(left, [Value::from("mine")]);
}
