//! Issue 17, berthd under a service manager: with `NOTIFY_SOCKET` set (a
//! unix datagram socket this test binds, as systemd would for
//! `Type=notify`), berthd sends READY=1 only once it serves, pings the
//! watchdog when `WATCHDOG_USEC` asks for it, and sends STOPPING=1 when
//! SIGTERM starts the drain.

mod operator_support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use operator_support::Daemon;

/// The next datagram, or a panic after 30 s.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Datagrams until one has `line` (as one of its lines); returns them all.
fn until(sock: &UnixDatagram, line: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let m = next(sock);
        let done = m.lines().any(|l| l == line);
        seen.push(m);
        if done {
            return seen;
        }
    }
}

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    berth_tests::requires(&["ctr"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut d = Daemon::new(
        &[],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            // 200 ms: berthd pings every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    d.spawn();

    // Status lines may come first (recovery); READY=1 only once berthd
    // serves: the socket answers at once.
    let before = until(&sock, "READY=1");
    assert!(
        !before[..before.len() - 1]
            .iter()
            .any(|m| m.contains("WATCHDOG=1") && m.contains("READY")),
        "{before:?}"
    );
    let out = d.ctr(&["version"]);
    assert!(
        out.status.success(),
        "not serving after READY=1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.log().contains("berthd ready"), "{}", d.log());

    // The watchdog: several pings within a second.
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if next(&sock).lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "3 pings took {:?}",
        started.elapsed()
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let pid = d.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    until(&sock, "STOPPING=1");
    let status = d.wait_exit();
    assert!(status.success(), "{status}");
}

#[test]
fn a_notify_socket_nobody_listens_on_does_not_stop_berthd() {
    berth_tests::requires(&["ctr"]);
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("nobody-listens");
    let mut d = Daemon::new(&[], &[("NOTIFY_SOCKET", gone.to_str().unwrap())]);
    d.spawn();
    d.wait_log("berthd ready", |l| l.contains("berthd ready"));
    assert!(d.ctr(&["version"]).status.success());
    assert!(
        d.log().contains("cannot notify the service manager"),
        "a failed notification is logged: {}",
        d.log()
    );
    assert!(d.stop().success());
}

#[test]
#[ignore = "needs root"]
fn shims_and_containers_do_not_inherit_notify_socket() {
    // A runc or shim that saw NOTIFY_SOCKET would wait for a READY=1 of
    // its own (and a container could talk to systemd): berthd takes the
    // variable out of its environment before anything starts.
    berth_tests::requires_root(&["runc", "ctr"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut d = Daemon::new(&[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    d.spawn();
    until(&sock, "READY=1");
    let tar = berth_tests::images::dir().join("busybox/oci-gzip.tar");
    d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
    d.berthctl_ok(&[
        "containers",
        "run",
        "-d",
        "--null-io",
        "docker.io/berthtest/busybox:oci-gzip",
        "env-check",
        "sleep",
        "60",
    ]);
    let bundle = d.state().join("default/env-check");
    let shim: i32 = std::fs::read_to_string(bundle.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let init: i32 = std::fs::read_to_string(bundle.join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for (who, pid) in [("shim", shim), ("container", init)] {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let env = String::from_utf8_lossy(&env);
        assert!(
            !env.split('\0').any(|v| v.starts_with("NOTIFY_SOCKET=")),
            "{who} {pid} inherited NOTIFY_SOCKET: {env}"
        );
    }
    // Dropping `d` kills berthd, the container and its shim.
}
