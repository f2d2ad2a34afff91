//! End to end against the real runc (and crun): the shim started with
//! `berth-shim start`, driven through its gRPC API.

mod common;

use std::time::Duration;

use berth_api::cgroups::v1::Metrics;
use berth_api::events::TaskExit;
use berth_api::shim::v1::{self as pb};
use berth_api::task_types::Status;
use common::*;
use prost::Message;
use tonic::Code;

/// echo hello through a stdout fifo; exit status 0; delete → the shim
/// exits and leaves nothing behind.
async fn echo_hello(runtime: &str, id: &str) {
    if !can_run(runtime) {
        return;
    }
    let mut fx = Fixture::new(id, runtime, &["echo", "hello"], |_| {});
    let fifo = fx.path("stdout");
    mkfifo(&fifo);
    let mut reader = open_fifo_reader(&fifo);
    let mut c = fx.start_shim().await;
    let hs = c.handshake(()).await.unwrap().into_inner();
    assert_eq!(hs.shim_pid as i32, fx.shim_pid.unwrap());
    assert_eq!(hs.task_pid, 0);
    // A second start finds the running shim and starts nothing.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_berth-shim"))
        .args(["start", "--namespace", NS, "--id", id, "--bundle"])
        .arg(&fx.bundle)
        .args(["--address", "/x"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), fx.address);
    let hs2 = c.handshake(()).await.unwrap().into_inner();
    assert_eq!(hs2.shim_pid, hs.shim_pid);

    let pid = c
        .create(fx.create_request(fifo.to_str().unwrap(), ""))
        .await
        .unwrap()
        .into_inner()
        .pid;
    assert!(pid > 0);
    let st = c
        .state(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status, Status::Created as i32);
    assert_eq!(st.pid, pid);
    let started = c
        .start(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.pid, pid);
    let w = c
        .wait(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit_status, 0);
    assert!(w.exited_at.is_some());
    let out = read_until(&mut reader, "hello\n", 5).await;
    assert_eq!(out, "hello\n");
    let st = c
        .state(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status, Status::Stopped as i32);

    let d = c
        .delete(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((d.pid, d.exit_status), (pid, 0));
    let events = collect_events(&mut c, 0, 4, 5).await;
    assert_eq!(
        topics(&events),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    let exit = TaskExit::decode(events[2].event.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(
        (exit.container_id.as_str(), exit.pid, exit.exit_status),
        (id, pid, 0)
    );
    let t = std::time::Instant::now();
    c.ack_events(pb::AckEventsRequest {
        upto: events[3].seq,
    })
    .await
    .unwrap();
    assert!(fx.wait_shim_gone(5).await, "shim did not exit after delete");
    eprintln!("{runtime}: shim gone {:?} after the last ack", t.elapsed());
    fx.assert_clean();
}

#[tokio::test]
async fn runc_echo_hello() {
    echo_hello("runc", "shim-echo-runc").await;
}

#[tokio::test]
async fn crun_echo_hello() {
    echo_hello("crun", "shim-echo-crun").await;
}

/// `sh -c 'exit 7'` with stdout/stderr appended to a file:// log.
async fn exit_seven(runtime: &str, id: &str) {
    if !can_run(runtime) {
        return;
    }
    let mut fx = Fixture::new(
        id,
        runtime,
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
        |_| {},
    );
    let log = fx.path("logs/c.log");
    let uri = format!("file://{}", log.display());
    let mut c = fx.start_shim().await;
    c.create(fx.create_request(&uri, &uri)).await.unwrap();
    c.start(pb::ProcessRequest::default()).await.unwrap();
    let w = c
        .wait(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit_status, 7);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("out\n") && text.contains("err\n"), "{text:?}");
    // Kill of an exited init: NotFound, as containerd answers.
    let err = c
        .kill(pb::KillRequest {
            signal: 15,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let d = c
        .delete(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.exit_status, 7);
    // Shutdown(now) makes the shim exit without waiting for acks.
    c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
}

#[tokio::test]
async fn runc_exit_seven_file_log() {
    exit_seven("runc", "shim-exit7-runc").await;
}

#[tokio::test]
async fn crun_exit_seven_file_log() {
    exit_seven("crun", "shim-exit7-crun").await;
}

/// A long-running container: exec, pids, pause/resume, stats, update,
/// kill SIGTERM, and the event order.
async fn running_container(runtime: &str, id: &str) {
    if !can_run(runtime) {
        return;
    }
    let script = "trap 'exit 143' TERM; while :; do sleep 0.1; done";
    let mut fx = Fixture::new(id, runtime, &["sh", "-c", script], |_| {});
    let mut c = fx.start_shim().await;
    let pid = c
        .create(fx.create_request("", ""))
        .await
        .unwrap()
        .into_inner()
        .pid;
    c.start(pb::ProcessRequest::default()).await.unwrap();
    assert_eq!(c.handshake(()).await.unwrap().into_inner().task_pid, pid);

    // exec ps, output to a file
    let log = fx.path("ps.log");
    let exec = |exec_id: &str, args: &[&str], stdout: String| pb::ExecRequest {
        exec_id: exec_id.into(),
        stdout,
        spec: Some(process(args, false)),
        ..Default::default()
    };
    c.exec(exec("e1", &["ps"], format!("file://{}", log.display())))
        .await
        .unwrap();
    let dup = c
        .exec(exec("e1", &["ps"], String::new()))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let bad = c
        .exec(exec("bad/id", &["ps"], String::new()))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let e1 = c
        .start(pb::ProcessRequest {
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    let w = c
        .wait(pb::ProcessRequest {
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit_status, 0);
    let ps = std::fs::read_to_string(&log).unwrap();
    assert!(ps.contains("PID") && ps.contains("sleep"), "{ps}");
    let d = c
        .delete(pb::ProcessRequest {
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.pid, e1);
    let gone = c
        .state(pb::ProcessRequest {
            exec_id: "e1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // a long exec shows up in pids with its exec id
    c.exec(exec("e2", &["sleep", "30"], String::new()))
        .await
        .unwrap();
    let e2 = c
        .start(pb::ProcessRequest {
            exec_id: "e2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    let pids = c.pids(()).await.unwrap().into_inner().processes;
    assert!(pids.iter().any(|p| p.pid == pid), "{pids:?}");
    let p2 = pids.iter().find(|p| p.pid == e2).expect("exec pid listed");
    assert!(p2.info.is_some());
    let running = c
        .delete(pb::ProcessRequest {
            exec_id: "e2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(running.code(), Code::FailedPrecondition);
    c.kill(pb::KillRequest {
        exec_id: "e2".into(),
        signal: 9,
        all: false,
    })
    .await
    .unwrap();
    let w = c
        .wait(pb::ProcessRequest {
            exec_id: "e2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit_status, 137);
    let list = c.list_processes(()).await.unwrap().into_inner().processes;
    assert_eq!(list.len(), 2);

    // pause / resume
    c.pause(()).await.unwrap();
    let st = c
        .state(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status, Status::Paused as i32);
    c.resume(()).await.unwrap();
    let st = c
        .state(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status, Status::Running as i32);

    // stats decode as containerd's v1 metrics
    let any = c.stats(()).await.unwrap().into_inner().stats.unwrap();
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = Metrics::decode(any.value.as_slice()).unwrap();
    assert!(m.memory.unwrap().usage.unwrap().usage > 0);
    assert!(m.pids.unwrap().current >= 1);
    assert!(m.cpu.unwrap().usage.unwrap().total > 0);

    // update: a pids limit lands in the cgroup
    let res = prost_types::Any {
        type_url: berth_api::type_urls::OCI_LINUX_RESOURCES.into(),
        value: br#"{"pids":{"limit":77}}"#.to_vec(),
    };
    c.update(pb::UpdateRequest {
        resources: Some(res),
        ..Default::default()
    })
    .await
    .unwrap();
    let any = c.stats(()).await.unwrap().into_inner().stats.unwrap();
    assert_eq!(
        Metrics::decode(any.value.as_slice())
            .unwrap()
            .pids
            .unwrap()
            .limit,
        77
    );

    // SIGTERM
    c.kill(pb::KillRequest {
        signal: 15,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = tokio::time::timeout(
        Duration::from_secs(10),
        c.wait(pb::ProcessRequest::default()),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    assert_eq!(w.exit_status, 143);
    c.delete(pb::ProcessRequest::default()).await.unwrap();

    let events = collect_events(&mut c, 0, 12, 5).await;
    assert_eq!(
        topics(&events),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/paused",
            "/tasks/resumed",
            "/tasks/exit",
            "/tasks/delete",
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // ack half; a new stream resends only the rest, in order
    c.ack_events(pb::AckEventsRequest { upto: seqs[5] })
        .await
        .unwrap();
    let again = collect_events(&mut c, 0, 6, 2).await;
    assert_eq!(
        again.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seqs[6..].to_vec()
    );
    c.ack_events(pb::AckEventsRequest {
        upto: *seqs.last().unwrap(),
    })
    .await
    .unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
}

#[tokio::test]
async fn runc_running_container() {
    running_container("runc", "shim-run-runc").await;
}

#[tokio::test]
async fn crun_running_container() {
    running_container("crun", "shim-run-crun").await;
}

/// Bad input: a runtime binary that does not exist, an invalid spec.
#[tokio::test]
async fn bad_input_leaves_nothing() {
    if !can_run("runc") {
        return;
    }
    let mut fx = Fixture::new("shim-bad-runc", "runc", &["true"], |_| {});
    let mut c = fx.start_shim().await;
    let mut req = fx.create_request("", "");
    req.runtime_binary = "/nonexistent/runc".into();
    let err = c.create(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("/nonexistent/runc"),
        "{}",
        err.message()
    );
    fx.assert_clean();

    // Invalid spec: runc refuses it; nothing mounted, no state.
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.bundle.join("config.json")).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!([]);
    std::fs::write(
        fx.bundle.join("config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let err = c.create(fx.create_request("", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(
        err.message().contains("runc create failed"),
        "{}",
        err.message()
    );
    eprintln!("invalid spec: {}", err.message());
    fx.assert_clean();

    // Starting or killing nothing.
    assert_eq!(
        c.start(pb::ProcessRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    c.shutdown(pb::ShutdownRequest { now: false })
        .await
        .unwrap();
    assert!(
        fx.wait_shim_gone(5).await,
        "an empty shim exits on Shutdown"
    );
}

/// When init dies with an exec still running, the exec's TaskExit comes
/// first and init's last (containerd's order).
#[tokio::test]
async fn runc_init_exit_follows_exec_exits() {
    if !can_run("runc") {
        return;
    }
    let mut fx = Fixture::new("shim-order-runc", "runc", &["sleep", "1000"], |_| {});
    let mut c = fx.start_shim().await;
    let pid = c
        .create(fx.create_request("", ""))
        .await
        .unwrap()
        .into_inner()
        .pid;
    c.start(pb::ProcessRequest::default()).await.unwrap();
    c.exec(pb::ExecRequest {
        exec_id: "e1".into(),
        spec: Some(process(&["sleep", "1000"], false)),
        ..Default::default()
    })
    .await
    .unwrap();
    let e1 = c
        .start(pb::ProcessRequest {
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    c.kill(pb::KillRequest {
        signal: 9,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = c
        .wait(pb::ProcessRequest {
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit_status, 137);
    c.wait(pb::ProcessRequest::default()).await.unwrap();
    let events = collect_events(&mut c, 0, 6, 5).await;
    let exits: Vec<u32> = events
        .iter()
        .filter(|e| e.topic == "/tasks/exit")
        .map(|e| {
            TaskExit::decode(e.event.as_ref().unwrap().value.as_slice())
                .unwrap()
                .pid
        })
        .collect();
    assert_eq!(exits, [e1, pid]);
    c.delete(pb::ProcessRequest::default()).await.unwrap();
    c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
}

/// A created task killed before start: its exit is reported at once.
#[tokio::test]
async fn runc_kill_created_task() {
    if !can_run("runc") {
        return;
    }
    let mut fx = Fixture::new("shim-killcreated-runc", "runc", &["sleep", "1000"], |_| {});
    let mut c = fx.start_shim().await;
    c.create(fx.create_request("", "")).await.unwrap();
    c.kill(pb::KillRequest {
        signal: 9,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = tokio::time::timeout(
        Duration::from_secs(5),
        c.wait(pb::ProcessRequest::default()),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    assert_eq!(w.exit_status, 137);
    let events = collect_events(&mut c, 0, 2, 5).await;
    assert_eq!(topics(&events), ["/tasks/create", "/tasks/exit"]);
    c.delete(pb::ProcessRequest::default()).await.unwrap();
    let events = collect_events(&mut c, 0, 3, 5).await;
    assert_eq!(
        topics(&events),
        ["/tasks/create", "/tasks/exit", "/tasks/delete"]
    );
    c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
}
