//! OOM events, recovery after a dead shim, many shims in parallel and
//! sequential latency, against the real runc (and crun).

mod common;

use std::time::Duration;

use berth_api::events::TaskOom;
use berth_api::shim::v1::{self as pb};
use common::*;
use prost::Message;

/// A 32 MiB memory limit and a process allocating more: TaskOOM and an
/// exit by SIGKILL (137).
#[tokio::test]
async fn runc_oom_event() {
    let Some((fx, mut c)) = Fixture::launch(
        "shim-oom-runc",
        "runc",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
        |s| {
            s["linux"]["resources"]["memory"] =
                serde_json::json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
        },
    )
    .await
    else {
        return;
    };
    fx.run(&mut c, fx.create_request("", "")).await;
    assert_eq!(wait_status(&mut c, "").await, 137);
    let events = collect_events(&mut c, 0, 4, 5).await;
    let oom = events
        .iter()
        .find(|e| e.topic == "/tasks/oom")
        .expect("TaskOOM event");
    assert_eq!(
        TaskOom::decode(oom.event.as_ref().unwrap().value.as_slice())
            .unwrap()
            .container_id,
        "shim-oom-runc"
    );
    fx.delete_and_finish(&mut c).await;
}

/// A shim killed with SIGKILL: `berth-shim delete` removes the container,
/// its rootfs mount and its cgroup.
async fn recovery_delete(runtime: &str, id: &str) {
    let Some((fx, mut c)) = Fixture::launch(id, runtime, &["sleep", "1000"], |_| {}).await else {
        return;
    };
    fx.run(&mut c, fx.create_request("", "")).await;
    let shim = nix::unistd::Pid::from_raw(fx.shim_pid.unwrap());
    nix::sys::signal::kill(shim, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(fx.wait_shim_gone(5).await);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth-shim"))
        .args(["delete", "--namespace", NS, "--id", id, "--bundle"])
        .arg(&fx.bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fx.assert_clean();
    // Idempotent.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_berth-shim"))
        .args(["delete", "--namespace", NS, "--id", id, "--bundle"])
        .arg(&fx.bundle)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test]
async fn runc_recovery_delete() {
    recovery_delete("runc", "shim-recover-runc").await;
}

#[tokio::test]
async fn crun_recovery_delete() {
    recovery_delete("crun", "shim-recover-crun").await;
}

/// Many shims at once, each create/start/wait/delete; then nothing is
/// left. Also prints the median start→deleted time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runc_many_in_parallel() {
    if !can_run("runc") {
        return;
    }
    let mut handles = Vec::new();
    for i in 0..20 {
        handles.push(tokio::spawn(async move {
            let id = format!("shim-par-{i}");
            let mut fx = Fixture::new(&id, "runc", &["true"], |_| {});
            let t0 = std::time::Instant::now();
            let mut c = fx.start_shim().await;
            fx.run(&mut c, fx.create_request("", "")).await;
            assert_eq!(wait_status(&mut c, "").await, 0);
            c.delete(proc_req("")).await.unwrap();
            let took = t0.elapsed();
            let events = collect_events(&mut c, 0, 4, 5).await;
            c.ack_events(pb::AckEventsRequest {
                upto: events.last().unwrap().seq,
            })
            .await
            .unwrap();
            assert!(fx.wait_shim_gone(5).await, "{id}: shim still alive");
            fx.assert_clean();
            took
        }));
    }
    let mut times = Vec::new();
    for h in handles {
        times.push(h.await.unwrap());
    }
    times.sort();
    eprintln!(
        "20 parallel shims: median start..delete {:?}, max {:?}",
        times[10], times[19]
    );
}

/// Sequential runs of `true`, phase by phase (printed; a loose bound only:
/// the real comparison with containerd lives in the benchmarks).
#[tokio::test]
async fn runc_sequential_latency() {
    if !can_run("runc") {
        return;
    }
    let mut rows = Vec::new();
    for i in 0..7 {
        let id = format!("shim-lat-{i}");
        let mut fx = Fixture::new(&id, "runc", &["true"], |_| {});
        let t = std::time::Instant::now();
        let mut c = fx.start_shim().await;
        let t_start = t.elapsed();
        c.create(fx.create_request("", "")).await.unwrap();
        let t_create = t.elapsed();
        c.start(proc_req("")).await.unwrap();
        c.wait(proc_req("")).await.unwrap();
        let t_run = t.elapsed();
        c.delete(proc_req("")).await.unwrap();
        let t_delete = t.elapsed();
        rows.push((t_delete, t_start, t_create, t_run));
        fx.shutdown_clean(&mut c).await;
    }
    rows.sort();
    let (total, start, create, run) = rows[rows.len() / 2];
    eprintln!(
        "median: shim start {start:?}, +create {create:?}, +start/wait {run:?}, +delete {total:?}"
    );
    assert!(total < Duration::from_secs(2), "{total:?}");
}

/// Idle shims' memory (printed): 10 containers running `sleep`, each
/// shim's private memory (Private_Clean + Private_Dirty) and RSS. Run with
/// `BERTH_SHIM_BIN=target/release/berth-shim` for release figures.
#[tokio::test]
async fn runc_idle_shim_memory() {
    if !can_run("runc") {
        return;
    }
    let mut fixtures = Vec::new();
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut fx = Fixture::new(&format!("shim-mem-{i}"), "runc", &["sleep", "1000"], |_| {});
        let mut c = fx.start_shim().await;
        fx.run(&mut c, fx.create_request("", "")).await;
        fixtures.push(fx);
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut figures: Vec<(u64, u64)> = fixtures
        .iter()
        .map(|fx| private_and_rss_kb(fx.shim_pid.unwrap()))
        .collect();
    figures.sort();
    let (private, rss) = figures[figures.len() / 2];
    eprintln!(
        "{}: median idle shim private {private} kB, rss {rss} kB",
        shim_binary().display()
    );
    for (fx, c) in fixtures.iter().zip(clients.iter_mut()) {
        c.kill(kill_req("", 9)).await.unwrap();
        c.wait(proc_req("")).await.unwrap();
        fx.delete_and_finish(c).await;
    }
    assert!(private < 4 * 1024, "{private} kB private");
}
