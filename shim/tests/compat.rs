//! Behaviours containerd's Go client checks (issue 11), pinned at the
//! shim: exec with a terminal from the request, a container deleted behind
//! the shim's back, Update on a created task.

mod common;

use berth_api::cgroups::v1::Metrics;
use berth_api::shim::v1::{self as pb};
use berth_api::task_types::Status;
use common::*;
use prost::Message;
use tonic::Code;

fn exec_tty(exec_id: &str, args: &[&str], spec_terminal: bool, stdout: &str) -> pb::ExecRequest {
    pb::ExecRequest {
        exec_id: exec_id.into(),
        terminal: true,
        stdout: stdout.into(),
        spec: Some(process(args, spec_terminal)),
        ..Default::default()
    }
}

/// Bundle entries the shim leaves for an exec (spec, pid file, console
/// socket).
fn exec_leftovers(fx: &Fixture, exec_id: &str) -> Vec<String> {
    std::fs::read_dir(&fx.bundle)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(exec_id))
        .collect()
}

/// containerd's shim sets the exec spec's `terminal` from the request: an
/// exec asked for with a terminal gets one even when its process spec says
/// otherwise (runc refused that before: "cannot use console socket if runc
/// will not detach or allocate tty"), and one asked for without gets none.
/// A failed exec leaves no process and no files behind.
#[tokio::test]
async fn runc_exec_terminal_comes_from_the_request() {
    let Some((fx, mut c)) =
        Fixture::launch("shim-exectermreq-runc", "runc", &["sleep", "1000"], |_| {}).await
    else {
        return;
    };
    let init = fx.run(&mut c, fx.create_request("", "")).await;
    let out = fx.path("tty.out");
    mkfifo(&out);
    let mut reader = open_fifo_reader(&out);
    let out_path = out.display().to_string();
    c.exec(exec_tty(
        "t1",
        &["sh", "-c", "tty; echo done"],
        false,
        &out_path,
    ))
    .await
    .unwrap();
    c.start(proc_req("t1")).await.unwrap();
    assert_eq!(wait_status(&mut c, "t1").await, 0);
    let text = read_until(&mut reader, "done", 5).await;
    assert!(text.contains("/dev/pts/"), "{text:?}");

    // The other way round: the spec asks for a terminal, the request not.
    let log = fx.path("notty.log");
    c.exec(pb::ExecRequest {
        exec_id: "t2".into(),
        stdout: format!("file://{}", log.display()),
        spec: Some(process(&["sh", "-c", "tty || true"], true)),
        ..Default::default()
    })
    .await
    .unwrap();
    c.start(proc_req("t2")).await.unwrap();
    assert_eq!(wait_status(&mut c, "t2").await, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("not a tty"), "{text:?}");

    // A program that does not exist, with a terminal: the start fails and
    // nothing of it runs or stays.
    c.exec(exec_tty("t3", &["/no/such/program"], true, &out_path))
        .await
        .unwrap();
    let err = c.start(proc_req("t3")).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    eprintln!("failed exec: {:?} {}", err.code(), err.message());
    let pids = c.pids(()).await.unwrap().into_inner().processes;
    assert_eq!(
        pids.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [init],
        "only init runs"
    );
    assert_eq!(state(&mut c, "t3").await.status, Status::Created as i32);
    assert_eq!(exec_leftovers(&fx, "t3"), Vec::<String>::new());
    c.delete(proc_req("t3")).await.unwrap();
    for e in ["t1", "t2"] {
        c.delete(proc_req(e)).await.unwrap();
    }
    c.kill(kill_req("", 9)).await.unwrap();
    wait_status(&mut c, "").await;
    fx.delete_and_finish(&mut c).await;
}

/// `runc delete --force` (or crun's) removes the container behind the
/// shim's back: Kill answers NotFound, at once and after the exit is
/// reaped, with and without `all`, as containerd's shim does; every other
/// verb on the gone process answers NotFound too; Delete still cleans up.
async fn deleted_behind_our_back(runtime: &str, id: &str) {
    let Some((fx, mut c)) = Fixture::launch(id, runtime, &["sleep", "1000"], |_| {}).await else {
        return;
    };
    fx.run(&mut c, fx.create_request("", "")).await;
    c.exec(pb::ExecRequest {
        exec_id: "e1".into(),
        spec: Some(process(&["sleep", "1000"], false)),
        ..Default::default()
    })
    .await
    .unwrap();
    c.exec(pb::ExecRequest {
        exec_id: "e2".into(),
        spec: Some(process(&["true"], false)),
        ..Default::default()
    })
    .await
    .unwrap();
    c.start(proc_req("e1")).await.unwrap();
    let out = std::process::Command::new(runtime)
        .args(["delete", "--force", id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Whether or not the shim has reaped the exit yet.
    let err = c.kill(kill_req("", 15)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(wait_status_within(&mut c, "", 5).await, 137);
    assert_eq!(wait_status_within(&mut c, "e1", 5).await, 137);
    for all in [false, true] {
        let err = c
            .kill(pb::KillRequest {
                signal: 9,
                all,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "all={all}: {err:?}");
    }
    let err = c.kill(kill_req("e1", 9)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let codes = [
        ("pause", c.pause(()).await.map(drop)),
        ("resume", c.resume(()).await.map(drop)),
        (
            "update",
            c.update(pb::UpdateRequest {
                resources: Some(prost_types::Any {
                    type_url: berth_api::type_urls::OCI_LINUX_RESOURCES.into(),
                    value: b"{}".to_vec(),
                }),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        ("pids", c.pids(()).await.map(drop)),
        ("stats", c.stats(()).await.map(drop)),
        ("start", c.start(proc_req("")).await.map(drop)),
        ("start exec", c.start(proc_req("e2")).await.map(drop)),
        (
            "exec",
            c.exec(pb::ExecRequest {
                exec_id: "e3".into(),
                spec: Some(process(&["true"], false)),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
    ];
    for (verb, res) in codes {
        let err = res.expect_err(verb);
        assert_eq!(err.code(), Code::NotFound, "{verb}: {err:?}");
    }
    assert_eq!(state(&mut c, "").await.status, Status::Stopped as i32);
    let d = c.delete(proc_req("")).await.unwrap().into_inner();
    assert_eq!(d.exit_status, 137);
    fx.shutdown_clean(&mut c).await;
}

#[tokio::test]
async fn runc_deleted_behind_our_back() {
    deleted_behind_our_back("runc", "shim-gone-runc").await;
}

#[tokio::test]
async fn crun_deleted_behind_our_back() {
    deleted_behind_our_back("crun", "shim-gone-crun").await;
}

/// Update on a created task is allowed (containerd and runc allow it) and
/// the new limit is in force once it starts.
#[tokio::test]
async fn runc_update_created_task() {
    let Some((fx, mut c)) =
        Fixture::launch("shim-updcreated-runc", "runc", &["sleep", "1000"], |_| {}).await
    else {
        return;
    };
    c.create(fx.create_request("", "")).await.unwrap();
    c.update(pb::UpdateRequest {
        resources: Some(prost_types::Any {
            type_url: berth_api::type_urls::OCI_LINUX_RESOURCES.into(),
            value: br#"{"pids":{"limit":55}}"#.to_vec(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    c.start(proc_req("")).await.unwrap();
    let any = c.stats(()).await.unwrap().into_inner().stats.unwrap();
    let limit = Metrics::decode(any.value.as_slice())
        .unwrap()
        .pids
        .unwrap()
        .limit;
    assert_eq!(limit, 55);
    c.kill(kill_req("", 9)).await.unwrap();
    wait_status(&mut c, "").await;
    fx.delete_and_finish(&mut c).await;
}
