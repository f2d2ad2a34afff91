//! Every file and directory the shim creates is private (issue 19 item 4):
//! files and sockets 0600, directories 0700.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_api::shim::v1::{self as pb};
use common::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Asserts the mode of everything under `dir` but the names in `skip`.
fn assert_private_tree(dir: &Path, skip: &[&str]) -> usize {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type().unwrap();
        let want = if ft.is_dir() { 0o700 } else { 0o600 };
        assert!(
            ft.is_dir() || ft.is_file() || ft.is_socket(),
            "{}: unexpected file type",
            path.display()
        );
        assert_eq!(mode(&path), want, "{}", path.display());
        seen += 1;
        if ft.is_dir() {
            seen += assert_private_tree(&path, &[]);
        }
    }
    seen
}

/// A running container with an exec and a `file://` log in directories
/// the shim creates: everything the shim (or the runtime for it) wrote in
/// the bundle and the log's directories are private.
#[tokio::test]
async fn runc_bundle_files_are_private() {
    let Some((fx, mut c)) =
        Fixture::launch("shim-private-runc", "runc", &["sleep", "1000"], |_| {}).await
    else {
        return;
    };
    let log = fx.path("logs/sub/c.log");
    let uri = format!("file://{}", log.display());
    fx.run(&mut c, fx.create_request(&uri, &uri)).await;
    c.exec(pb::ExecRequest {
        exec_id: "e1".into(),
        stdout: uri.clone(),
        spec: Some(process(&["sleep", "1000"], false)),
        ..Default::default()
    })
    .await
    .unwrap();
    c.start(proc_req("e1")).await.unwrap();
    for name in [
        "shim.log",
        "shim.pid",
        "address",
        "shim.sock",
        "log.json",
        "init.pid",
        "exec-e1.pid",
        "shim-runtime.json",
    ] {
        assert!(fx.bundle.join(name).exists(), "{name} missing");
    }
    // config.json and rootfs/ are berthd's (here: the test's).
    let n = assert_private_tree(&fx.bundle, &["config.json", "rootfs"]);
    assert!(n >= 8, "{n} entries checked");
    assert_eq!(assert_private_tree(&fx.path("logs"), &[]), 2);
    assert_eq!(mode(&fx.path("logs")), 0o700);

    c.kill(pb::KillRequest {
        signal: 9,
        all: true,
        ..Default::default()
    })
    .await
    .unwrap();
    wait_status(&mut c, "").await;
    fx.delete_and_finish(&mut c).await;
}

/// A bundle path too long for `sun_path`: the socket goes to the socket
/// dir, which the shim creates 0700, the socket itself 0600.
#[tokio::test]
async fn socket_dir_is_private() {
    if !can_run("runc") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("berth-shim-")
        .tempdir()
        .unwrap();
    let bundle = dir.path().join("b".repeat(60)).join("c".repeat(60));
    std::fs::create_dir_all(&bundle).unwrap();
    let sockets = dir.path().join("sockets/s");
    let out = std::process::Command::new(shim_binary())
        .args([
            "start",
            "--namespace",
            NS,
            "--id",
            "shim-sockdir",
            "--bundle",
        ])
        .arg(&bundle)
        .args(["--address", "/run/berth/none.sock", "--socket-dir"])
        .arg(&sockets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let socket = Path::new(address.trim_start_matches("unix://")).to_path_buf();
    assert!(socket.starts_with(&sockets), "{address}");
    assert_eq!(mode(&dir.path().join("sockets")), 0o700);
    assert_eq!(mode(&sockets), 0o700);
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&bundle.join("shim.log")), 0o600);
    let pid: i32 = std::fs::read_to_string(bundle.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // An empty shim exits on Shutdown and removes its socket.
    let mut c = connect(&address).await;
    c.shutdown(pb::ShutdownRequest { now: false })
        .await
        .unwrap();
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    };
    for _ in 0..500 {
        if gone() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if !gone() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("shim {pid} did not exit");
    }
    for _ in 0..100 {
        if !socket.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!socket.exists(), "socket left behind");
}
