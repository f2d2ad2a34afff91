//! Network namespace lifecycle, as root: created with loopback up,
//! outliving the process that made it, entered, removed idempotently, and
//! half-made states (a plain leftover file, stacked mounts) handled.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use super::{ns, require_root, NetNs};
use crate::network::Error;

/// The inode of the calling thread's network namespace.
fn current_netns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

fn loopback_works() -> bool {
    let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
        return false;
    };
    TcpStream::connect(l.local_addr().unwrap()).is_ok()
}

fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_string_lossy().into_owned();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_str()))
}

#[test]
fn create_enter_remove() {
    require_root!("create_enter_remove");
    let dir = tempfile::tempdir().unwrap();
    let nsdir = dir.path().join("netns");
    let _cleanup = DirGuard(nsdir.clone());

    let ns = ns::create(&nsdir, "one").unwrap();
    assert_eq!(ns.path(), nsdir.join("one"));
    assert!(is_mounted(ns.path()));
    // the dir is a mount of its own, not shared with the host's tree
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(nsdir.to_str().unwrap()))
        .expect("netns dir is a mount point");
    assert!(!line.contains("shared:"), "{line}");

    // a name in use is refused, the first stays
    assert!(matches!(
        ns::create(&nsdir, "one"),
        Err(Error::NetnsExists(_))
    ));

    // inside: another namespace than ours, with loopback up
    let host = current_netns_inode();
    let (inside, lo_up) = ns
        .run(|| (current_netns_inode(), loopback_works()))
        .unwrap();
    assert_ne!(inside, host);
    assert!(lo_up, "loopback is up in a new netns");
    // the calling thread never left its own namespace
    assert_eq!(current_netns_inode(), host);
    // a socket made inside stays inside: a listener bound there (and
    // returned to this thread) is what a connect from inside reaches
    let listener = ns
        .run(|| TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let connected = ns
        .run(move || TcpStream::connect(("127.0.0.1", port)).is_ok())
        .unwrap();
    assert!(connected);
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_ok(),
        "the listener made inside got the connection"
    );

    // a process spawned inside lives in it
    let out = ns
        .run(|| {
            Command::new("/bin/busybox")
                .args(["ip", "-o", "link", "show", "lo"])
                .output()
                .unwrap()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("UP"), "{text}");
    let link_count = ns
        .run(|| {
            Command::new("/bin/busybox")
                .args(["ip", "-o", "link"])
                .output()
                .unwrap()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&link_count.stdout).lines().count(),
        1,
        "only lo inside"
    );

    ns::remove(ns.path()).unwrap();
    assert!(!ns.path().exists());
    assert!(!is_mounted(ns.path()));
    assert!(matches!(
        NetNs::open(ns.path()),
        Err(Error::NetnsNotFound(_))
    ));
    assert!(matches!(ns.run(|| ()), Err(Error::NetnsNotFound(_))));
    // twice is fine
    ns::remove(ns.path()).unwrap();
}

#[tokio::test]
async fn run_async_from_the_runtime() {
    require_root!("run_async_from_the_runtime");
    let dir = tempfile::tempdir().unwrap();
    let nsdir = dir.path().join("netns");
    let _cleanup = DirGuard(nsdir.clone());
    let ns = ns::create(&nsdir, "async").unwrap();
    assert!(ns.run_async(loopback_works).await.unwrap());
    ns::remove(ns.path()).unwrap();
}

/// The helper half of `outlives_the_process_that_made_it`: creates a
/// netns where the env var says and exits. Does nothing when run alone.
#[test]
#[ignore = "helper run as a child process by outlives_the_process_that_made_it"]
fn helper_create_and_exit() {
    if let Ok(dir) = std::env::var("BERTH_NETNS_HELPER_DIR") {
        ns::create(Path::new(&dir), "orphan").unwrap();
    }
}

#[test]
fn outlives_the_process_that_made_it() {
    require_root!("outlives_the_process_that_made_it");
    let dir = tempfile::tempdir().unwrap();
    let nsdir = dir.path().join("netns");
    let _cleanup = DirGuard(nsdir.clone());
    // make the dir private here first, so the child's mount is ours too
    let keep = ns::create(&nsdir, "keep").unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "network::tests::netns::helper_create_and_exit",
            "--ignored",
            "--quiet",
        ])
        .env("BERTH_NETNS_HELPER_DIR", &nsdir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // the creating process is gone; the namespace is still there and usable
    let orphan = NetNs::open(nsdir.join("orphan")).unwrap();
    assert!(orphan.run(loopback_works).unwrap());
    ns::remove(orphan.path()).unwrap();
    ns::remove(keep.path()).unwrap();
}

#[test]
fn half_made_states_are_cleaned_up() {
    require_root!("half_made_states_are_cleaned_up");
    let dir = tempfile::tempdir().unwrap();
    let nsdir = dir.path().join("netns");
    let _cleanup = DirGuard(nsdir.clone());
    std::fs::create_dir_all(&nsdir).unwrap();

    // a crash after the file was made but before the mount: create reuses it
    std::fs::write(nsdir.join("leftover"), b"").unwrap();
    let ns = ns::create(&nsdir, "leftover").unwrap();
    assert!(ns.run(loopback_works).unwrap());

    // the same file mounted twice (two creates racing a crash): one
    // remove unmounts both and deletes the file
    let other = ns::create(&nsdir, "other").unwrap();
    nix::mount::mount(
        Some(other.path()),
        ns.path(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    ns::remove(ns.path()).unwrap();
    assert!(!ns.path().exists());
    assert!(!is_mounted(ns.path()));
    ns::remove(other.path()).unwrap();
}

/// Removes every netns under the dir and releases it, also on failure.
struct DirGuard(std::path::PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let _ = ns::remove(&e.path());
            }
        }
        let _ = ns::release_dir(&self.0);
    }
}
