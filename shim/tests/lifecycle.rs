//! End to end against the real runc (and crun): the shim started with
//! `berth-shim start`, driven through its gRPC API.

mod common;

use std::time::Duration;

use berth_api::cgroups::v1::Metrics;
use berth_api::events::{TaskExit, TaskOom};
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

/// A terminal: the pty master comes through the console socket, output
/// reaches the stdout fifo, ResizePty changes what `stty size` sees.
#[tokio::test]
async fn runc_terminal_and_resize() {
    if !can_run("runc") {
        return;
    }
    let mut fx = Fixture::new(
        "shim-tty-runc",
        "runc",
        &["sh", "-c", "sleep 0.3; tty; stty size"],
        |s| {
            s["process"]["terminal"] = serde_json::json!(true);
        },
    );
    let fifo = fx.path("out");
    mkfifo(&fifo);
    let mut reader = open_fifo_reader(&fifo);
    let mut c = fx.start_shim().await;
    let mut req = fx.create_request(fifo.to_str().unwrap(), "");
    req.terminal = true;
    c.create(req).await.unwrap();
    c.resize_pty(pb::ResizePtyRequest {
        exec_id: String::new(),
        width: 91,
        height: 37,
    })
    .await
    .unwrap();
    c.start(pb::ProcessRequest::default()).await.unwrap();
    let w = c
        .wait(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit_status, 0);
    let out = read_until(&mut reader, "37 91", 5).await;
    assert!(
        out.contains("/dev/pts/") && out.contains("37 91"),
        "{out:?}"
    );
    c.delete(pb::ProcessRequest::default()).await.unwrap();
    c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
}

/// A 32 MiB memory limit and a process allocating more: TaskOOM and an
/// exit by SIGKILL (137).
#[tokio::test]
async fn runc_oom_event() {
    if !can_run("runc") {
        return;
    }
    let mut fx = Fixture::new(
        "shim-oom-runc",
        "runc",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
        |s| {
            s["linux"]["resources"]["memory"] =
                serde_json::json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
        },
    );
    let mut c = fx.start_shim().await;
    c.create(fx.create_request("", "")).await.unwrap();
    c.start(pb::ProcessRequest::default()).await.unwrap();
    let w = c
        .wait(pb::ProcessRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit_status, 137);
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
    c.delete(pb::ProcessRequest::default()).await.unwrap();
    c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
}

/// binary:// logging: the logger gets stdout on fd 3, stderr on fd 4 and
/// the container id in its environment.
#[tokio::test]
async fn runc_binary_logger() {
    if !can_run("runc") {
        return;
    }
    let mut fx = Fixture::new(
        "shim-logbin-runc",
        "runc",
        &["sh", "-c", "echo to-out; echo to-err >&2"],
        |_| {},
    );
    let out = fx.path("logger.out");
    let script = fx.path("logger.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nexec 5>&-\ncat <&3 > \"$2.out\" &\ncat <&4 > \"$2.err\"\nwait\necho \"$CONTAINER_ID $CONTAINER_NAMESPACE\" > \"$2.env\"\n",
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let base = out.with_extension("");
    let uri = format!("binary://{}?dest={}", script.display(), base.display());
    let mut c = fx.start_shim().await;
    c.create(fx.create_request(&uri, &uri)).await.unwrap();
    c.start(pb::ProcessRequest::default()).await.unwrap();
    assert_eq!(
        c.wait(pb::ProcessRequest::default())
            .await
            .unwrap()
            .into_inner()
            .exit_status,
        0
    );
    c.delete(pb::ProcessRequest::default()).await.unwrap();
    let read = |ext: &str| std::fs::read_to_string(base.with_extension(ext)).unwrap_or_default();
    assert_eq!(read("out"), "to-out\n");
    assert_eq!(read("err"), "to-err\n");
    assert_eq!(read("env"), format!("shim-logbin-runc {NS}\n"));
    c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
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

/// stdin through a fifo; CloseIO closes the container's stdin even though
/// the client keeps its writer open.
#[tokio::test]
async fn runc_stdin_and_close_io() {
    if !can_run("runc") {
        return;
    }
    let mut fx = Fixture::new("shim-stdin-runc", "runc", &["cat"], |_| {});
    let (inp, out) = (fx.path("in"), fx.path("out"));
    mkfifo(&inp);
    mkfifo(&out);
    let mut reader = open_fifo_reader(&out);
    let mut c = fx.start_shim().await;
    let mut req = fx.create_request(out.to_str().unwrap(), "");
    req.stdin = inp.display().to_string();
    c.create(req).await.unwrap();
    c.start(pb::ProcessRequest::default()).await.unwrap();
    // The shim holds the read side: this open does not block.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&inp).unwrap();
    std::io::Write::write_all(&mut writer, b"ping\n").unwrap();
    assert_eq!(read_until(&mut reader, "ping\n", 5).await, "ping\n");
    std::io::Write::write_all(&mut writer, b"pong\n").unwrap();
    c.close_io(pb::CloseIoRequest {
        exec_id: String::new(),
        stdin: true,
    })
    .await
    .unwrap();
    let w = tokio::time::timeout(
        Duration::from_secs(5),
        c.wait(pb::ProcessRequest::default()),
    )
    .await
    .expect("cat sees EOF after CloseIO")
    .unwrap()
    .into_inner();
    assert_eq!(w.exit_status, 0);
    assert_eq!(read_until(&mut reader, "pong\n", 5).await, "pong\n");
    drop(writer);
    c.delete(pb::ProcessRequest::default()).await.unwrap();
    c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
}

/// A shim killed with SIGKILL: `berth-shim delete` removes the container,
/// its rootfs mount and its cgroup.
async fn recovery_delete(runtime: &str, id: &str) {
    if !can_run(runtime) {
        return;
    }
    let mut fx = Fixture::new(id, runtime, &["sleep", "1000"], |_| {});
    let mut c = fx.start_shim().await;
    c.create(fx.create_request("", "")).await.unwrap();
    c.start(pb::ProcessRequest::default()).await.unwrap();
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

/// An exec'd process with its own terminal.
#[tokio::test]
async fn runc_exec_with_terminal() {
    if !can_run("runc") {
        return;
    }
    let mut fx = Fixture::new("shim-exectty-runc", "runc", &["sleep", "1000"], |_| {});
    let out = fx.path("exec.out");
    mkfifo(&out);
    let mut reader = open_fifo_reader(&out);
    let mut c = fx.start_shim().await;
    c.create(fx.create_request("", "")).await.unwrap();
    c.start(pb::ProcessRequest::default()).await.unwrap();
    c.exec(pb::ExecRequest {
        exec_id: "t1".into(),
        terminal: true,
        stdout: out.display().to_string(),
        spec: Some(process(&["sh", "-c", "tty; echo done"], true)),
        ..Default::default()
    })
    .await
    .unwrap();
    c.start(pb::ProcessRequest {
        exec_id: "t1".into(),
    })
    .await
    .unwrap();
    let w = c
        .wait(pb::ProcessRequest {
            exec_id: "t1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.exit_status, 0);
    let text = read_until(&mut reader, "done", 5).await;
    assert!(
        text.contains("/dev/pts/") && text.contains("done"),
        "{text:?}"
    );
    c.kill(pb::KillRequest {
        signal: 9,
        all: true,
        ..Default::default()
    })
    .await
    .unwrap();
    c.wait(pb::ProcessRequest::default()).await.unwrap();
    c.delete(pb::ProcessRequest::default()).await.unwrap();
    c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
    assert!(fx.wait_shim_gone(5).await);
    fx.assert_clean();
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
            c.create(fx.create_request("", "")).await.unwrap();
            c.start(pb::ProcessRequest::default()).await.unwrap();
            assert_eq!(
                c.wait(pb::ProcessRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
                    .exit_status,
                0
            );
            c.delete(pb::ProcessRequest::default()).await.unwrap();
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
        c.start(pb::ProcessRequest::default()).await.unwrap();
        c.wait(pb::ProcessRequest::default()).await.unwrap();
        let t_run = t.elapsed();
        c.delete(pb::ProcessRequest::default()).await.unwrap();
        let t_delete = t.elapsed();
        rows.push((t_delete, t_start, t_create, t_run));
        c.shutdown(pb::ShutdownRequest { now: true }).await.unwrap();
        assert!(fx.wait_shim_gone(5).await);
        fx.assert_clean();
    }
    rows.sort();
    let (total, start, create, run) = rows[rows.len() / 2];
    eprintln!(
        "median: shim start {start:?}, +create {create:?}, +start/wait {run:?}, +delete {total:?}"
    );
    assert!(total < Duration::from_secs(2), "{total:?}");
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
