//! A container's filesystem through berthd (issue 16.2-3): `commit` makes
//! an image from its changes (the new image runs and sees them, history
//! and `--change` are in its config, ctr lists it, skopeo checks its
//! digests), `diff` lists A/C/D paths, `cp` copies out and in (files,
//! directories, tar streams; running and stopped containers) and stays
//! confined when the container plants hostile symlinks.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::images::BUSYBOX as IMAGE;
use berth_tests::{requires_root, Berthd};
use serde_json::Value;

fn daemon() -> Berthd {
    requires_root(&["runc", "ctr", "skopeo"]);
    let d = Berthd::start();
    let tar = berth_tests::images::busybox();
    d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run_fg(d: &Berthd, args: &[&str]) -> Output {
    let mut full = vec!["run", "--rm", "--network", "none"];
    full.extend_from_slice(args);
    d.berthctl_cmd(&full).stdin(Stdio::null()).output().unwrap()
}

fn diff_lines(d: &Berthd, name: &str) -> Vec<String> {
    d.berthctl_ok(&["diff", name])
        .lines()
        .map(String::from)
        .collect()
}

/// Polls `diff NAME` until it lists `line`.
fn wait_diff(d: &Berthd, name: &str, line: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = diff_lines(d, name);
        if l.iter().any(|x| x == line) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "diff never listed {line:?}: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn content(d: &Berthd, digest: &str) -> Value {
    let out = d.ctr_ok(&["content", "get", digest]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{digest}: {e}: {out}"))
}

#[test]
#[ignore = "needs root"]
fn commit_diff_and_the_new_image_runs() {
    let d = daemon();
    d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "w",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "echo hello > /hello && rm /etc/group && sleep 1000",
    ]);
    let lines = wait_diff(&d, "w", "A /hello");
    assert!(lines.contains(&"D /etc/group".to_string()), "{lines:?}");
    assert!(lines.contains(&"C /etc".to_string()), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("/bin/")), "{lines:?}");
    let json = d.json(&["diff", "w"]);
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == "A" && c["path"] == "/hello"));

    // Commit the running container (paused during the diff).
    let c = d.json(&[
        "commit",
        "-m",
        "added hello",
        "--author",
        "Tester <t@example.com>",
        "--change",
        r#"CMD ["cat", "/hello"]"#,
        "--change",
        "ENV FROM_COMMIT=yes",
        "w",
        "example.com/committed:v1",
    ]);
    assert_eq!(c["image"], "example.com/committed:v1");
    let state = &d.json(&["inspect", "w"])[0]["State"];
    assert_eq!(state["Status"], "running", "{state}");

    // ctr sees the image; its config has the history, author and changes.
    let ls = d.ctr_ok(&["images", "ls", "-q"]);
    assert!(ls.lines().any(|l| l == "example.com/committed:v1"), "{ls}");
    let manifest = content(&d, c["manifest_digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.last().unwrap()["digest"], c["layer_digest"]);
    assert_eq!(
        layers.last().unwrap()["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config = content(&d, c["config_digest"].as_str().unwrap());
    assert_eq!(config["author"], "Tester <t@example.com>");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["comment"], "added hello");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "/hello"])
    );
    assert!(config["config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&Value::from("FROM_COMMIT=yes")));
    let ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(ids.len(), layers.len());
    assert_eq!(ids.last().unwrap(), &c["diff_id"]);

    // The new image runs its new CMD and sees the container's changes.
    let out = run_fg(&d, &["example.com/committed:v1"]);
    assert_eq!(text(&out.stdout), "hello\n", "{}", text(&out.stderr));
    let out = run_fg(
        &d,
        &[
            "example.com/committed:v1",
            "sh",
            "-c",
            "test ! -e /etc/group && echo $FROM_COMMIT",
        ],
    );
    assert_eq!(text(&out.stdout), "yes\n", "{}", text(&out.stderr));

    // skopeo reads the exported image and checks every blob's digest.
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("img.tar");
    d.berthctl_ok(&[
        "images",
        "export",
        archive.to_str().unwrap(),
        "example.com/committed:v1",
    ]);
    let inspect = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", archive.display())])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let info: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert!(
        info["Layers"]
            .as_array()
            .unwrap()
            .contains(&c["layer_digest"]),
        "{info}"
    );
    let copied = tmp.path().join("copy");
    let copy = Command::new("skopeo")
        .args([
            "copy",
            &format!("oci-archive:{}", archive.display()),
            &format!("dir:{}", copied.display()),
        ])
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", text(&copy.stderr));

    // zstd, and a stopped container, named by digest.
    d.berthctl_ok(&["stop", "-t", "1", "w"]);
    let z = d.json(&["commit", "--compression", "zstd", "w"]);
    assert!(z["image"].as_str().unwrap().starts_with("sha256:"), "{z}");
    let m = content(&d, z["manifest_digest"].as_str().unwrap());
    assert_eq!(
        m["layers"].as_array().unwrap().last().unwrap()["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    d.berthctl_ok(&[
        "images",
        "tag",
        z["image"].as_str().unwrap(),
        "example.com/committed:zstd",
    ]);
    let out = run_fg(&d, &["example.com/committed:zstd", "cat", "/hello"]);
    assert_eq!(text(&out.stdout), "hello\n", "{}", text(&out.stderr));

    // Bad input: an unknown change, an unknown container.
    let err = d.berthctl_fails(&["commit", "--change", "RUN echo", "w", "x:y"]);
    assert!(err.contains("RUN"), "{err}");
    let err = d.berthctl_fails(&["commit", "nosuch"]);
    assert!(err.contains("no such container"), "{err}");
    d.berthctl_ok(&["rm", "-f", "w"]);
}

#[test]
#[ignore = "needs root"]
fn cp_out_and_in_running_and_stopped_and_confined() {
    let d = daemon();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    // A canary outside the container that hostile symlinks point at.
    let canary = h.join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), "untouched").unwrap();
    let script = format!(
        "ln -s {0} /evil && ln -s {0} /evil2 && ln -s / /root2 && ln -s ../../../../.. /etc/up && echo ready > /ready && sleep 1000",
        canary.display()
    );
    d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        &script,
    ]);
    wait_diff(&d, "c", "A /ready");
    let pid = d.json(&["inspect", "c"])[0]["State"]["Pid"]
        .as_u64()
        .unwrap();
    let croot = format!("/proc/{pid}/root");

    // Out: a file, a directory to a new name, a tar stream.
    d.berthctl_ok(&["cp", "c:/etc/passwd", h.join("passwd").to_str().unwrap()]);
    assert!(std::fs::read_to_string(h.join("passwd"))
        .unwrap()
        .contains("root:"));
    d.berthctl_ok(&["cp", "c:/etc", h.join("etc-copy").to_str().unwrap()]);
    assert!(h.join("etc-copy/passwd").is_file());
    std::fs::create_dir(h.join("into")).unwrap();
    d.berthctl_ok(&["cp", "c:/etc", h.join("into").to_str().unwrap()]);
    assert!(h.join("into/etc/passwd").is_file());
    let out = d.berthctl(&["cp", "c:/etc/passwd", "-"]);
    assert!(out.status.success());
    let names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["passwd"]);

    // In: a file into a directory, a directory under a new name, a tar on stdin.
    std::fs::write(h.join("f.txt"), "from host").unwrap();
    d.berthctl_ok(&["cp", h.join("f.txt").to_str().unwrap(), "c:/tmp"]);
    assert_eq!(
        std::fs::read_to_string(format!("{croot}/tmp/f.txt")).unwrap(),
        "from host"
    );
    std::fs::create_dir_all(h.join("tree/sub")).unwrap();
    std::fs::write(h.join("tree/sub/x"), "x").unwrap();
    d.berthctl_ok(&["cp", h.join("tree").to_str().unwrap(), "c:/newtree"]);
    assert_eq!(
        std::fs::read_to_string(format!("{croot}/newtree/sub/x")).unwrap(),
        "x"
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_gnu();
    hd.set_size(6);
    hd.set_mode(0o640);
    hd.set_cksum();
    b.append_data(&mut hd, "streamed/y", &b"stream"[..])
        .unwrap();
    let bytes = b.into_inner().unwrap();
    let mut child = d
        .berthctl_cmd(&["cp", "-", "c:/"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(format!("{croot}/streamed/y")).unwrap(),
        "stream"
    );

    // Hostile: symlinks planted in the container never lead out of it.
    let f = h.join("f.txt");
    let f = f.to_str().unwrap();
    for dest in ["c:/evil", "c:/evil/", "c:/root2/", "c:/etc/up/"] {
        let _ = d.berthctl(&["cp", f, dest]);
    }
    let out = d.berthctl(&["cp", f, "c:/evil/x"]);
    assert!(!out.status.success());
    let err = d.berthctl_fails(&["cp", "c:/../../etc/shadow", "-"]);
    assert!(err.contains(".."), "{err}");
    // A tar whose entry goes through the planted link: refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_gnu();
    hd.set_size(1);
    hd.set_mode(0o644);
    hd.set_cksum();
    b.append_data(&mut hd, "evil2/pwned", &b"x"[..]).unwrap();
    let bytes = b.into_inner().unwrap();
    let mut child = d
        .berthctl_cmd(&["cp", "-", "c:/"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    // Reading through a link gets the container's own files.
    d.berthctl_ok(&["cp", "c:/root2/etc/passwd", h.join("p2").to_str().unwrap()]);
    assert!(std::fs::read_to_string(h.join("p2"))
        .unwrap()
        .contains("root:"));
    let names: Vec<_> = std::fs::read_dir(&canary)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"], "canary dir changed");
    assert_eq!(
        std::fs::read_to_string(canary.join("keep")).unwrap(),
        "untouched"
    );
    assert!(!Path::new("/pwned").exists() && !Path::new("/f.txt").exists());

    // A stopped (never started) container: in and out through its snapshot.
    d.berthctl_ok(&["create", "--name", "s", "--network", "none", IMAGE, "true"]);
    d.berthctl_ok(&["cp", f, "s:/etc/added"]);
    let out = d.berthctl(&["cp", "s:/etc/added", "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path().unwrap().display().to_string(), "added");
    let mut s = String::new();
    std::io::Read::read_to_string(&mut e, &mut s).unwrap();
    assert_eq!(s, "from host");
    assert!(diff_lines(&d, "s").contains(&"A /etc/added".to_string()));
    // Its rootfs is not left mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(d.state().join("engine/mnt").to_str().unwrap()),
        "{mounts}"
    );
    d.berthctl_ok(&["rm", "-f", "c", "s"]);
}
