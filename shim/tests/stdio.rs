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
    let Some((fx, mut c)) = Fixture::launch(
        "shim-tty-runc",
        "runc",
        &["sh", "-c", "sleep 0.3; tty; stty size"],
        |s| {
            s["process"]["terminal"] = serde_json::json!(true);
        },
    )
    .await
    else {
        return;
    };
    let fifo = fx.path("out");
    mkfifo(&fifo);
    let mut reader = open_fifo_reader(&fifo);
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
    c.start(proc_req("")).await.unwrap();
    assert_eq!(wait_status(&mut c, "").await, 0);
    let out = read_until(&mut reader, "37 91", 5).await;
    assert!(
        out.contains("/dev/pts/") && out.contains("37 91"),
        "{out:?}"
    );
    fx.delete_and_finish(&mut c).await;
}

/// binary:// logging: the logger gets stdout on fd 3, stderr on fd 4 and
/// the container id in its environment.
#[tokio::test]
async fn runc_binary_logger() {
    let Some((fx, mut c)) = Fixture::launch(
        "shim-logbin-runc",
        "runc",
        &["sh", "-c", "echo to-out; echo to-err >&2"],
        |_| {},
    )
    .await
    else {
        return;
    };
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
    fx.run(&mut c, fx.create_request(&uri, &uri)).await;
    assert_eq!(wait_status(&mut c, "").await, 0);
    c.delete(proc_req("")).await.unwrap();
    let read = |ext: &str| std::fs::read_to_string(base.with_extension(ext)).unwrap_or_default();
    assert_eq!(read("out"), "to-out\n");
    assert_eq!(read("err"), "to-err\n");
    assert_eq!(read("env"), format!("shim-logbin-runc {NS}\n"));
    fx.shutdown_clean(&mut c).await;
}

/// stdin through a fifo; CloseIO closes the container's stdin even though
/// the client keeps its writer open.
#[tokio::test]
async fn runc_stdin_and_close_io() {
    let Some((fx, mut c)) = Fixture::launch("shim-stdin-runc", "runc", &["cat"], |_| {}).await
    else {
        return;
    };
    let (inp, out) = (fx.path("in"), fx.path("out"));
    mkfifo(&inp);
    mkfifo(&out);
    let mut reader = open_fifo_reader(&out);
    let mut req = fx.create_request(out.to_str().unwrap(), "");
    req.stdin = inp.display().to_string();
    fx.run(&mut c, req).await;
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
    let w = tokio::time::timeout(Duration::from_secs(5), wait_status(&mut c, ""))
        .await
        .expect("cat sees EOF after CloseIO");
    assert_eq!(w, 0);
    assert_eq!(read_until(&mut reader, "pong\n", 5).await, "pong\n");
    drop(writer);
    fx.delete_and_finish(&mut c).await;
}

/// An exec'd process with its own terminal.
#[tokio::test]
async fn runc_exec_with_terminal() {
    let Some((fx, mut c)) =
        Fixture::launch("shim-exectty-runc", "runc", &["sleep", "1000"], |_| {}).await
    else {
        return;
    };
    let out = fx.path("exec.out");
    mkfifo(&out);
    let mut reader = open_fifo_reader(&out);
    fx.run(&mut c, fx.create_request("", "")).await;
    c.exec(pb::ExecRequest {
        exec_id: "t1".into(),
        terminal: true,
        stdout: out.display().to_string(),
        spec: Some(process(&["sh", "-c", "tty; echo done"], true)),
        ..Default::default()
    })
    .await
    .unwrap();
    c.start(proc_req("t1")).await.unwrap();
    assert_eq!(wait_status(&mut c, "t1").await, 0);
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
    c.wait(proc_req("")).await.unwrap();
    fx.delete_and_finish(&mut c).await;
}
