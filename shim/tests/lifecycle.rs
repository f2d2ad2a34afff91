//! End to end against the real runc (and crun): the shim started with
//! `berth-shim start`, driven through its gRPC API.

mod common;

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
    let st = state(&mut c, "").await;
    assert_eq!(st.status, Status::Created as i32);
    assert_eq!(st.pid, pid);
    let started = c.start(proc_req("")).await.unwrap().into_inner();
    assert_eq!(started.pid, pid);
    let w = c.wait(proc_req("")).await.unwrap().into_inner();
    assert_eq!(w.exit_status, 0);
    assert!(w.exited_at.is_some());
    let out = read_until(&mut reader, "hello\n", 5).await;
    assert_eq!(out, "hello\n");
    assert_eq!(state(&mut c, "").await.status, Status::Stopped as i32);

    let d = c.delete(proc_req("")).await.unwrap().into_inner();
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
    let script = &["sh", "-c", "echo out; echo err >&2; exit 7"];
    let Some((fx, mut c)) = Fixture::launch(id, runtime, script, |_| {}).await else {
        return;
    };
    let log = fx.path("logs/c.log");
    let uri = format!("file://{}", log.display());
    fx.run(&mut c, fx.create_request(&uri, &uri)).await;
    assert_eq!(wait_status(&mut c, "").await, 7);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("out\n") && text.contains("err\n"), "{text:?}");
    // Kill of an exited init: NotFound, as containerd answers.
    let err = c.kill(kill_req("", 15)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let d = c.delete(proc_req("")).await.unwrap().into_inner();
    assert_eq!(d.exit_status, 7);
    // Shutdown(now) makes the shim exit without waiting for acks.
    fx.shutdown_clean(&mut c).await;
}

#[tokio::test]
async fn runc_exit_seven_file_log() {
    exit_seven("runc", "shim-exit7-runc").await;
}

#[tokio::test]
async fn crun_exit_seven_file_log() {
    exit_seven("crun", "shim-exit7-crun").await;
}

fn exec_req(exec_id: &str, args: &[&str], stdout: String) -> pb::ExecRequest {
    pb::ExecRequest {
        exec_id: exec_id.into(),
        stdout,
        spec: Some(process(args, false)),
        ..Default::default()
    }
}

/// A long-running container: exec, pids, pause/resume, stats, update,
/// kill SIGTERM, and the event order.
async fn running_container(runtime: &str, id: &str) {
    let script = "trap 'exit 143' TERM; while :; do sleep 0.1; done";
    let Some((fx, mut c)) = Fixture::launch(id, runtime, &["sh", "-c", script], |_| {}).await
    else {
        return;
    };
    let pid = fx.run(&mut c, fx.create_request("", "")).await;
    assert_eq!(c.handshake(()).await.unwrap().into_inner().task_pid, pid);

    // exec ps, output to a file
    let log = fx.path("ps.log");
    c.exec(exec_req("e1", &["ps"], format!("file://{}", log.display())))
        .await
        .unwrap();
    let dup = c
        .exec(exec_req("e1", &["ps"], String::new()))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let bad = c
        .exec(exec_req("bad/id", &["ps"], String::new()))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let e1 = c.start(proc_req("e1")).await.unwrap().into_inner().pid;
    assert_eq!(wait_status(&mut c, "e1").await, 0);
    let ps = std::fs::read_to_string(&log).unwrap();
    assert!(ps.contains("PID") && ps.contains("sleep"), "{ps}");
    let d = c.delete(proc_req("e1")).await.unwrap().into_inner();
    assert_eq!(d.pid, e1);
    let gone = c.state(proc_req("e1")).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // a long exec shows up in pids with its exec id
    c.exec(exec_req("e2", &["sleep", "30"], String::new()))
        .await
        .unwrap();
    let e2 = c.start(proc_req("e2")).await.unwrap().into_inner().pid;
    let pids = c.pids(()).await.unwrap().into_inner().processes;
    assert!(pids.iter().any(|p| p.pid == pid), "{pids:?}");
    let p2 = pids.iter().find(|p| p.pid == e2).expect("exec pid listed");
    assert!(p2.info.is_some());
    let running = c.delete(proc_req("e2")).await.unwrap_err();
    assert_eq!(running.code(), Code::FailedPrecondition);
    c.kill(kill_req("e2", 9)).await.unwrap();
    assert_eq!(wait_status(&mut c, "e2").await, 137);
    let list = c.list_processes(()).await.unwrap().into_inner().processes;
    assert_eq!(list.len(), 2);

    // pause / resume
    c.pause(()).await.unwrap();
    assert_eq!(state(&mut c, "").await.status, Status::Paused as i32);
    c.resume(()).await.unwrap();
    assert_eq!(state(&mut c, "").await.status, Status::Running as i32);

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
    c.kill(kill_req("", 15)).await.unwrap();
    assert_eq!(wait_status_within(&mut c, "", 10).await, 143);
    c.delete(proc_req("")).await.unwrap();

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
    let Some((fx, mut c)) = Fixture::launch("shim-bad-runc", "runc", &["true"], |_| {}).await
    else {
        return;
    };
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
        c.start(proc_req("")).await.unwrap_err().code(),
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
    let Some((fx, mut c)) =
        Fixture::launch("shim-order-runc", "runc", &["sleep", "1000"], |_| {}).await
    else {
        return;
    };
    let pid = fx.run(&mut c, fx.create_request("", "")).await;
    c.exec(pb::ExecRequest {
        exec_id: "e1".into(),
        spec: Some(process(&["sleep", "1000"], false)),
        ..Default::default()
    })
    .await
    .unwrap();
    let e1 = c.start(proc_req("e1")).await.unwrap().into_inner().pid;
    c.kill(kill_req("", 9)).await.unwrap();
    assert_eq!(wait_status(&mut c, "e1").await, 137);
    c.wait(proc_req("")).await.unwrap();
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
    fx.delete_and_finish(&mut c).await;
}

/// A created task killed before start: its exit is reported at once.
#[tokio::test]
async fn runc_kill_created_task() {
    let Some((fx, mut c)) =
        Fixture::launch("shim-killcreated-runc", "runc", &["sleep", "1000"], |_| {}).await
    else {
        return;
    };
    c.create(fx.create_request("", "")).await.unwrap();
    c.kill(kill_req("", 9)).await.unwrap();
    assert_eq!(wait_status_within(&mut c, "", 5).await, 137);
    let events = collect_events(&mut c, 0, 2, 5).await;
    assert_eq!(topics(&events), ["/tasks/create", "/tasks/exit"]);
    c.delete(proc_req("")).await.unwrap();
    let events = collect_events(&mut c, 0, 3, 5).await;
    assert_eq!(
        topics(&events),
        ["/tasks/create", "/tasks/exit", "/tasks/delete"]
    );
    fx.shutdown_clean(&mut c).await;
}
