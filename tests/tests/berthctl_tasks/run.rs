//! `berthctl run`: exit codes and stdio, the spec from flags, bad input.

use super::support::*;

#[test]
#[ignore = "needs root"]
fn berthctl_run_foreground_exit_codes_and_stdio() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let t1 = unique("t1");
    let t2 = unique("t2");
    let t3 = unique("t3");
    let kept = unique("kept");
    let out = d.berthctl(&["containers", "run", "--rm", IMAGE, &t1, "echo", "hello"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    let out = d.berthctl(&[
        "containers",
        "run",
        "--rm",
        IMAGE,
        &t2,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    let (code, stdout, _) = run_with_stdin(
        &d,
        &[
            "containers",
            "run",
            "--rm",
            IMAGE,
            &t3,
            "sh",
            "-c",
            "tr a-z A-Z",
        ],
        b"piped in\n",
    );
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "PIPED IN\n");

    // Without --rm the container stays, its task is gone.
    d.berthctl_ok(&["containers", "run", IMAGE, &kept, "true"]);
    assert_eq!(
        d.berthctl_ok(&["containers", "ls", "-q"]),
        format!("{kept}\n")
    );
    assert_eq!(d.berthctl_ok(&["tasks", "ls", "-q"]), "");
    let ctr_ls = d.ctr_ok(&["containers", "ls"]);
    assert!(ctr_ls.contains(&kept) && ctr_ls.contains(IMAGE), "{ctr_ls}");
    // It can be started again.
    let out = d.berthctl(&["tasks", "start", &kept]);
    assert_eq!(out.status.code(), Some(0));
    d.berthctl_ok(&["containers", "rm", &kept]);

    // --rm left nothing: no containers, only the image's snapshot.
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
    let snaps = d.json(&["snapshots", "ls"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(snaps[0]["kind"], "committed");
}

#[test]
#[ignore = "needs root"]
fn berthctl_run_spec_from_flags() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let s1 = unique("s1");
    let n1 = unique("n1");
    let n2 = unique("n2");
    let c1 = unique("c1");
    let host = d.dir().join("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from the host\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        host.display()
    );
    let out = d.berthctl_ok(&[
        "containers",
        "run",
        "--rm",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        "--mount",
        &mount,
        IMAGE,
        &s1,
        "sh",
        "-c",
        "echo $GREETING; pwd; id -u; id -g; cat /data/f; hostname",
    ]);
    assert_eq!(out, format!("hi\n/tmp\n1000\n1000\nfrom the host\n{s1}\n"));

    // User names resolve through the image's /etc/passwd and /etc/group.
    let out = d.berthctl_ok(&[
        "containers",
        "run",
        "--rm",
        "--user",
        "nobody",
        IMAGE,
        &n1,
        "id",
    ]);
    assert!(out.starts_with("uid=65534(nobody) gid=65534"), "{out}");
    let err = d.berthctl(&[
        "containers",
        "run",
        "--rm",
        "--user",
        "ghost",
        IMAGE,
        &n2,
        "id",
    ]);
    assert_eq!(err.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&err.stderr).contains("ghost"));

    d.berthctl_ok(&[
        "containers",
        "create",
        "--memory-limit",
        "33554432",
        "--cpus",
        "0.5",
        "--runtime-binary",
        "runc",
        IMAGE,
        &c1,
    ]);
    let info = d.json(&["containers", "info", &c1]);
    let spec = &info["spec"];
    assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 33554432);
    assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50000);
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(spec["linux"]["cgroupsPath"], format!("/default/{c1}"));
    assert_eq!(info["runtime"]["name"], "io.containerd.runc.v2");
    assert_eq!(
        info["runtime"]["options_type"],
        "containerd.runc.v1.Options"
    );
    assert_eq!(info["snapshot_key"], c1.as_str());
    d.berthctl_ok(&["containers", "rm", &c1]);
    assert_eq!(d.json(&["snapshots", "ls"]).as_array().unwrap().len(), 1);
}

#[test]
#[ignore = "needs root"]
fn berthctl_run_bad_input() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let dup = unique("dup");
    let one_line = |args: &[&str], want: &str| {
        let out = d.berthctl(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{args:?}: want {want}: {err}");
    };
    one_line(
        &[
            "containers",
            "run",
            "--rm",
            "docker.io/nope:latest",
            "x1",
            "true",
        ],
        "NotFound",
    );
    one_line(
        &["containers", "run", "--rm", IMAGE, "a/b", "true"],
        "container id",
    );
    one_line(
        &[
            "containers",
            "run",
            "--rm",
            "--mount",
            "src=/tmp",
            IMAGE,
            "x2",
            "true",
        ],
        "--mount",
    );
    one_line(
        &[
            "containers",
            "run",
            "--rm",
            "--runtime-binary",
            "/nonexistent/runc",
            IMAGE,
            "x3",
            "true",
        ],
        "runc",
    );
    d.berthctl_ok(&["containers", "run", "-d", IMAGE, &dup, "sleep", "100"]);
    one_line(
        &["containers", "run", "-d", IMAGE, &dup, "true"],
        "AlreadyExists",
    );
    d.berthctl_ok(&[
        "tasks",
        "exec",
        "-d",
        "--exec-id",
        "e1",
        &dup,
        "sleep",
        "100",
    ]);
    one_line(
        &["tasks", "exec", "--exec-id", "e1", &dup, "true"],
        "AlreadyExists",
    );
    one_line(&["tasks", "kill", "-s", "SIGNOPE", &dup], "signal");
    d.berthctl_ok(&["tasks", "rm", "--force", &dup]);
    d.berthctl_ok(&["containers", "rm", &dup]);
    // Refused runs left no containers or snapshots behind.
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
    assert_eq!(d.json(&["snapshots", "ls"]).as_array().unwrap().len(), 1);
}
