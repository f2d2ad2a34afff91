//! Issue 17, metrics and health: `metrics_address` serves Prometheus text
//! at /v1/metrics that parses strictly (operator_support::prom), counts
//! gRPC calls by service, method and code, and moves when a container
//! runs; /healthz is 503 while start-up recovery runs and 200 after.

mod operator_support;

use std::time::Duration;

use berth_tests::process::settle;
use operator_support::prom::{self, Exposition};
use operator_support::{get, http, Daemon};

const IMAGE: &str = "docker.io/berthtest/busybox:oci-gzip";
const VERSION: &str = "containerd.services.version.v1.Version";
const CONTAINERS: &str = "containerd.services.containers.v1.Containers";
const TASKS: &str = "containerd.services.tasks.v1.Tasks";

fn scrape(addr: std::net::SocketAddr) -> Exposition {
    let (status, head, body) = http(addr, "GET", "/v1/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    prom::parse(&body).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"))
}

fn started() -> (Daemon, std::net::SocketAddr) {
    let mut d = Daemon::new(&["--metrics-address", "127.0.0.1:0"], &[]);
    d.spawn();
    let addr = d.metrics_address();
    d.wait_log("berthd ready", |l| l.contains("berthd ready"));
    (d, addr)
}

#[test]
fn metrics_parse_and_count_calls_by_service_method_and_code() {
    berth_tests::requires(&["ctr"]);
    let (d, addr) = started();
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_string()));

    // One call first: call families have series only once calls were made.
    assert!(d.ctr(&["version"]).status.success());
    let m = scrape(addr);
    // Every family the README lists is there, typed, before any container.
    for (family, ty) in [
        ("grpc_server_handled_total", "counter"),
        ("grpc_server_handling_seconds", "histogram"),
        ("berth_build_info", "gauge"),
        ("berth_tasks", "gauge"),
        ("berth_shims", "gauge"),
        ("berth_content_blobs", "gauge"),
        ("berth_content_bytes", "gauge"),
        ("berth_snapshots", "gauge"),
        ("berth_gc_runs_total", "counter"),
        ("berth_gc_removed_total", "counter"),
        ("berth_gc_pause_seconds", "histogram"),
        ("berth_pull_bytes_total", "counter"),
        ("berth_pulls_total", "counter"),
        ("berth_cri_pods", "gauge"),
        ("berth_cri_containers", "gauge"),
        ("berth_container_cpu_seconds_total", "counter"),
        ("berth_container_memory_bytes", "gauge"),
        ("berth_container_memory_limit_bytes", "gauge"),
        ("berth_container_pids", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(ty),
            "{family}: {:?}",
            m.types
        );
    }
    assert_eq!(m.get("berth_content_blobs", &[]), Some(0.0));
    assert_eq!(m.get("berth_pull_bytes_total", &[]), Some(0.0));
    assert!(m.has("berth_build_info"));

    let ok = [
        ("grpc_service", VERSION),
        ("grpc_method", "Version"),
        ("grpc_code", "OK"),
    ];
    let before = m.sum("grpc_server_handled_total", &ok);
    for _ in 0..3 {
        assert!(d.ctr(&["version"]).status.success());
    }
    // A call that fails: NotFound, by its own code.
    let out = d.ctr(&["containers", "info", "no-such"]);
    assert!(!out.status.success());

    let m = scrape(addr);
    assert_eq!(m.sum("grpc_server_handled_total", &ok), before + 3.0);
    let not_found = [
        ("grpc_service", CONTAINERS),
        ("grpc_method", "Get"),
        ("grpc_code", "NotFound"),
    ];
    assert_eq!(m.sum("grpc_server_handled_total", &not_found), 1.0, "{m:?}");
    let timed = m.sum(
        "grpc_server_handling_seconds_count",
        &[("grpc_service", VERSION), ("grpc_method", "Version")],
    );
    assert!(timed >= 3.0, "{timed}");

    // The endpoint's edges.
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(http(addr, "POST", "/v1/metrics").0, 405);
}

#[test]
fn metrics_address_is_off_by_default_and_checked() {
    // Off: no listener line, nothing bound.
    let mut d = Daemon::new(&[], &[]);
    d.spawn();
    let log = d.wait_log("berthd ready", |l| l.contains("berthd ready"));
    assert!(!log.contains("metrics and health endpoint"), "{log}");
    assert!(d.stop().success());

    // Not IP:PORT: refused before start, one line, exit 2.
    let out = std::process::Command::new(berth_tests::bin("berthd"))
        .args(["--metrics-address", "localhost", "--root", "/nonexistent/x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("metrics_address"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn metrics_move_when_a_container_runs() {
    berth_tests::requires_root(&["runc", "ctr"]);
    let (d, addr) = started();
    let tar = berth_tests::images::dir().join("busybox/oci-gzip.tar");
    d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);

    let m = scrape(addr);
    let running = [("namespace", "default"), ("status", "running")];
    assert_eq!(m.sum("berth_tasks", &running), 0.0);
    assert!(m.get("berth_content_blobs", &[]).unwrap() >= 3.0, "{m:?}");
    assert!(m.get("berth_content_bytes", &[]).unwrap() > 100_000.0);
    assert!(m.sum("berth_snapshots", &[("kind", "committed")]) >= 1.0);
    let starts = [
        ("grpc_service", TASKS),
        ("grpc_method", "Start"),
        ("grpc_code", "OK"),
    ];
    assert_eq!(m.sum("grpc_server_handled_total", &starts), 0.0);

    d.berthctl_ok(&[
        "containers",
        "run",
        "-d",
        "--null-io",
        IMAGE,
        "m1",
        "sleep",
        "60",
    ]);
    let m = scrape(addr);
    assert_eq!(m.sum("berth_tasks", &running), 1.0, "{m:?}");
    assert_eq!(m.get("berth_shims", &[("namespace", "default")]), Some(1.0));
    assert_eq!(m.sum("grpc_server_handled_total", &starts), 1.0);
    assert!(m.sum("berth_snapshots", &[("kind", "active")]) >= 1.0);
    // Its cgroup figures, read from its shim at the scrape.
    let m1 = [("namespace", "default"), ("id", "m1")];
    assert!(m.get("berth_container_pids", &m1).unwrap() >= 1.0, "{m:?}");
    assert!(m.get("berth_container_memory_bytes", &m1).unwrap() > 0.0);
    assert!(m.get("berth_container_cpu_seconds_total", &m1).is_some());

    // Gone: the task's and the container's series go with it.
    d.berthctl_ok(&["tasks", "kill", "-s", "KILL", "m1"]);
    settle("m1 stopped", Duration::from_secs(20), || {
        scrape(addr).sum("berth_tasks", &[("status", "stopped")]) == 1.0
    });
    d.berthctl_ok(&["tasks", "rm", "m1"]);
    let m = scrape(addr);
    assert_eq!(m.sum("berth_tasks", &[]), 0.0, "{m:?}");
    assert!(m.get("berth_container_pids", &m1).is_none());
    assert!(m.get("berth_shims", &[("namespace", "default")]).is_none());
}

#[test]
#[ignore = "needs root"]
fn healthz_is_503_during_recovery_and_200_after() {
    berth_tests::requires_root(&["runc", "ctr"]);
    let (mut d, _) = started();
    let tar = berth_tests::images::dir().join("busybox/oci-gzip.tar");
    d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
    d.berthctl_ok(&[
        "containers",
        "run",
        "-d",
        "--null-io",
        IMAGE,
        "h1",
        "sleep",
        "120",
    ]);
    let shim: i32 = std::fs::read_to_string(d.state().join("default/h1/shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // A shim that does not answer holds recovery (berthd reattaches to
    // every shim before it serves); meanwhile /healthz says so.
    let shim_pid = nix::unistd::Pid::from_raw(shim);
    nix::sys::signal::kill(shim_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    struct Cont(nix::unistd::Pid);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
        }
    }
    let cont = Cont(shim_pid);
    d.kill9();
    d.spawn();
    let addr = d.metrics_address();
    let (status, body) = get(addr, "/healthz");
    assert_eq!(
        (status, body.as_str()),
        (503, "starting\n"),
        "{}",
        d.run_log()
    );
    assert!(!d.run_log().contains("berthd ready"));
    // The metrics answer during recovery too.
    scrape(addr);

    drop(cont);
    settle("healthz 200", Duration::from_secs(30), || {
        get(addr, "/healthz").0 == 200
    });
    assert!(d.run_log().contains("berthd ready"));
    let m = scrape(addr);
    assert_eq!(
        m.sum(
            "berth_tasks",
            &[("namespace", "default"), ("status", "running")]
        ),
        1.0,
        "{m:?}"
    );

    // A stop: draining, then berthd is gone.
    let s = d.stop();
    assert!(s.success(), "{s}");
}
