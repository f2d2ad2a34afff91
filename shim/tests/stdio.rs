//! The shim's stdio against the real runc: terminals (init and exec),
//! resize, stdin and CloseIO, binary:// loggers.

mod common;

use std::time::Duration;

use berth_api::shim::v1::{self as pb};
use common::*;

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
