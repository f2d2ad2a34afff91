//! Issue 11, items 8 to 11: task verbs as containerd 1.6's Go client
//! drives them (its Tasks calls, sent here by a small tonic client, since
//! `ctr` cannot express them), against a real berthd, berth-shim and runc
//! (behind a wrapper for the v1 runtime).
//!
//! Pinned containerd 1.6 behaviours (its runc shim, pkg/process):
//! - Tasks.Update on a created, running or paused task succeeds; on a
//!   created one the limit is in the container's cgroup before it starts,
//!   so it applies to the started process (runc update works on a created
//!   container);
//! - Tasks.Exec with `terminal=true` runs the process on a pty whatever
//!   the spec's `terminal` says (the shim sets it from the request); an
//!   exec whose Start fails leaves no process running, and can be deleted;
//! - after `runc delete --force` removed the container behind the daemon's
//!   back, Tasks.Kill answers NotFound ("process already finished"), and
//!   so does every verb that needs the process alive (Start, Exec, Pause,
//!   Resume, Update); Wait, Get and Delete still report its exit (137);
//! - the v1 Linux runtime `io.containerd.runtime.v1.linux` is accepted
//!   with its `containerd.linux.runc.RuncOptions`: `runtime` is the
//!   runtime binary, `runtime_root` its `--root` (plus the namespace).

use std::os::unix::fs::PermissionsExt as _;

use super::support::*;

/// OCI `LinuxResources` JSON with a memory limit, as the Go client sends
/// it in UpdateTaskRequest.
fn memory_limit(bytes: u64) -> prost_types::Any {
    prost_types::Any {
        type_url: berth_api::type_urls::OCI_LINUX_RESOURCES.into(),
        value: serde_json::to_vec(&serde_json::json!({"memory": {"limit": bytes}})).unwrap(),
    }
}

async fn update(api: &mut Api, id: &str, resources: prost_types::Any) -> Result<(), tonic::Status> {
    api.tasks
        .update(req(tpb::UpdateTaskRequest {
            container_id: id.into(),
            resources: Some(resources),
            annotations: Default::default(),
        }))
        .await
        .map(|_| ())
}

/// The cgroup v1 memory limit of cgroup `path` on the host, if the
/// memory controller is mounted there (cgroup v2: `memory.max`).
fn host_memory_limit(path: &str) -> Option<u64> {
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(path.trim_start_matches('/'))
        .join("memory.limit_in_bytes");
    let v2 = Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("memory.max");
    [v1, v2]
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
}

/// The cgroups path the support module gives container `id`.
fn cgroup_of(id: &str) -> String {
    format!("/berth-e2e-{}-{id}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn update_on_created_running_and_paused_tasks() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    api.create_container("u1", fx.spec(&["sleep", "1000"]), None)
        .await;
    let pid = api.create_task(&fx, "u1", "").await.expect("create");
    let cg = cgroup_of("u1");
    let check = |want: u64| {
        match host_memory_limit(&cg) {
            Some(got) => assert_eq!(got, want, "memory limit of {cg}"),
            None => eprintln!("!!! no memory controller for {cg}: limit not checked on the host"),
        };
    };

    // Created, not started: accepted, and the limit is in place before
    // the process runs.
    update(&mut api, "u1", memory_limit(64 << 20))
        .await
        .expect("Update on a created task");
    check(64 << 20);
    assert_eq!(api.get("u1").await.status, TaskStatus::Created as i32);
    assert_eq!(api.start("u1", "").await, pid);
    check(64 << 20);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        own.lines().any(|l| l.ends_with(&cg)),
        "init {pid} is not in {cg}:\n{own}"
    );

    // Running, then paused.
    update(&mut api, "u1", memory_limit(96 << 20))
        .await
        .expect("Update on a running task");
    check(96 << 20);
    api.tasks
        .pause(req(tpb::PauseTaskRequest {
            container_id: "u1".into(),
        }))
        .await
        .expect("pause");
    update(&mut api, "u1", memory_limit(128 << 20))
        .await
        .expect("Update on a paused task");
    check(128 << 20);
    api.tasks
        .resume(req(tpb::ResumeTaskRequest {
            container_id: "u1".into(),
        }))
        .await
        .expect("resume");

    // Not resources: refused, nothing changed.
    let err = update(
        &mut api,
        "u1",
        prost_types::Any {
            type_url: berth_api::type_urls::OCI_LINUX_RESOURCES.into(),
            value: b"not json".to_vec(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    check(128 << 20);

    // Stopped: the process is gone.
    api.kill("u1", 9).await;
    assert_eq!(api.wait("u1", "").await, 137);
    let err = update(&mut api, "u1", memory_limit(64 << 20))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    api.delete_task("u1").await;
    api.delete_container("u1").await.unwrap();
    assert_clean(&d, &fx, "u1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn exec_with_terminal_and_a_failed_exec_leaves_nothing() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    api.create_container("x1", fx.spec(&["sleep", "1000"]), None)
        .await;
    let pid = api.create_task(&fx, "x1", "").await.expect("create");
    api.start("x1", "").await;

    // terminal=true with a spec that says false (the process spec the
    // client built before choosing its IO): the process gets a pty.
    let out = fx.out("tty.log");
    let script = "if [ -t 0 ] && [ -t 1 ]; then echo on-a-tty; else echo no-tty; fi";
    api.tasks
        .exec(req(tpb::ExecProcessRequest {
            container_id: "x1".into(),
            exec_id: "tty".into(),
            terminal: true,
            stdout: format!("file://{}", out.display()),
            spec: Some(fx.process_spec(&["sh", "-c", script])),
            ..Default::default()
        }))
        .await
        .expect("exec with a terminal");
    api.start("x1", "tty").await;
    assert_eq!(api.wait("x1", "tty").await, 0);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(text.contains("on-a-tty"), "{text:?}");
    api.tasks
        .delete_process(req(tpb::DeleteProcessRequest {
            container_id: "x1".into(),
            exec_id: "tty".into(),
        }))
        .await
        .expect("delete the tty exec");

    // An exec whose program does not exist: Start fails, and nothing of
    // it runs in the container afterwards; it can still be deleted.
    for terminal in [false, true] {
        let exec_id = format!("bad-{terminal}");
        api.tasks
            .exec(req(tpb::ExecProcessRequest {
                container_id: "x1".into(),
                exec_id: exec_id.clone(),
                terminal,
                spec: Some(fx.process_spec(&["/no/such/program"])),
                ..Default::default()
            }))
            .await
            .expect("exec is recorded");
        let started = api
            .tasks
            .start(req(tpb::StartRequest {
                container_id: "x1".into(),
                exec_id: exec_id.clone(),
            }))
            .await;
        assert!(started.is_err(), "starting a missing program: {started:?}");
        let pids = api
            .tasks
            .list_pids(req(tpb::ListPidsRequest {
                container_id: "x1".into(),
            }))
            .await
            .expect("pids")
            .into_inner();
        let pids: Vec<u32> = pids.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![pid], "only init runs after a failed exec");
        api.tasks
            .delete_process(req(tpb::DeleteProcessRequest {
                container_id: "x1".into(),
                exec_id: exec_id.clone(),
            }))
            .await
            .expect("a failed exec is deleted");
    }
    assert_eq!(api.get("x1").await.status, TaskStatus::Running as i32);

    api.kill("x1", 9).await;
    assert_eq!(api.wait("x1", "").await, 137);
    api.delete_task("x1").await;
    api.delete_container("x1").await.unwrap();
    assert_clean(&d, &fx, "x1");
}

/// Every verb that needs task `id`'s init process alive answers NotFound.
async fn assert_gone(api: &mut Api, fx: &Fixture, id: &str) {
    let c = || id.to_string();
    let codes = [
        (
            "kill",
            api.tasks
                .kill(req(tpb::KillRequest {
                    container_id: c(),
                    signal: 15,
                    ..Default::default()
                }))
                .await
                .map(|_| ()),
        ),
        (
            "start",
            api.tasks
                .start(req(tpb::StartRequest {
                    container_id: c(),
                    exec_id: String::new(),
                }))
                .await
                .map(|_| ()),
        ),
        (
            "exec",
            api.tasks
                .exec(req(tpb::ExecProcessRequest {
                    container_id: c(),
                    exec_id: "late".into(),
                    spec: Some(fx.process_spec(&["true"])),
                    ..Default::default()
                }))
                .await
                .map(|_| ()),
        ),
        (
            "pause",
            api.tasks
                .pause(req(tpb::PauseTaskRequest { container_id: c() }))
                .await
                .map(|_| ()),
        ),
        (
            "resume",
            api.tasks
                .resume(req(tpb::ResumeTaskRequest { container_id: c() }))
                .await
                .map(|_| ()),
        ),
        ("update", update(api, id, memory_limit(64 << 20)).await),
    ];
    for (verb, r) in codes {
        let err = r.expect_err(verb);
        assert_eq!(err.code(), Code::NotFound, "{verb}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn kill_after_runc_delete_behind_our_back_is_not_found() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    api.create_container("g1", fx.spec(&["sleep", "1000"]), None)
        .await;
    api.create_task(&fx, "g1", "").await.expect("create");
    api.start("g1", "").await;

    // Behind berthd's back, in its runtime root for the namespace.
    let root = d.state().join(".runc").join(NS);
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force", "g1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runc delete --force: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // At once (the shim may not have reaped it yet: the runtime says the
    // container does not exist), and after the exit is known.
    let err = api
        .tasks
        .kill(req(tpb::KillRequest {
            container_id: "g1".into(),
            signal: 15,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(api.wait("g1", "").await, 137);
    assert_gone(&mut api, &fx, "g1").await;
    let p = api.get("g1").await;
    assert_eq!((p.status, p.exit_status), (TaskStatus::Stopped as i32, 137));
    assert_eq!(api.delete_task("g1").await.exit_status, 137);
    api.delete_container("g1").await.unwrap();
    assert_clean(&d, &fx, "g1");

    // The same for a task that exited on its own.
    api.create_container("g2", fx.spec(&["true"]), None).await;
    api.create_task(&fx, "g2", "").await.expect("create");
    api.start("g2", "").await;
    assert_eq!(api.wait("g2", "").await, 0);
    assert_gone(&mut api, &fx, "g2").await;
    api.delete_task("g2").await;
    api.delete_container("g2").await.unwrap();
    assert_clean(&d, &fx, "g2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn v1_linux_runtime_runs_its_runtime_binary() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;

    // The runtime binary: a wrapper that logs its arguments and runs runc
    // (crun refuses this host's hybrid cgroups; the wrapper is what shows
    // that `runtime` names the binary).
    let calls = fx.out("runtime-calls.log");
    let wrapper = fx.out("my-crun");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec runc \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime_root = fx.out("v1-root");
    let opts = berth_api::runc::linux::RuncOptions {
        runtime: wrapper.display().to_string(),
        runtime_root: runtime_root.display().to_string(),
        ..Default::default()
    };
    let spec = fx.spec_with(&["sh", "-c", "echo v1-linux"], |v| {
        v["linux"]["cgroupsPath"] = cgroup_of("v1").into();
    });
    api.containers
        .create(req(cpb::CreateContainerRequest {
            container: Some(cpb::Container {
                id: "v1".into(),
                runtime: Some(cpb::container::Runtime {
                    name: "io.containerd.runtime.v1.linux".into(),
                    options: Some(prost_types::Any {
                        type_url: berth_api::type_urls::LINUX_RUNC_OPTIONS.into(),
                        value: opts.encode_to_vec(),
                    }),
                }),
                spec: Some(prost_types::Any {
                    type_url: berth_api::type_urls::OCI_SPEC.into(),
                    value: spec,
                }),
                ..Default::default()
            }),
        }))
        .await
        .expect("create a v1 linux container");
    // The task's options are the v1 runtime's CreateOptions (accepted;
    // berth-shim passes no create flags to the runtime yet).
    let create = berth_api::runc::linux::CreateOptions {
        no_new_keyring: true,
        ..Default::default()
    };
    let out = fx.out("v1.log");
    let pid = api
        .tasks
        .create(req(tpb::CreateTaskRequest {
            container_id: "v1".into(),
            rootfs: fx.rootfs_mounts(),
            stdout: format!("file://{}", out.display()),
            options: Some(prost_types::Any {
                type_url: berth_api::type_urls::LINUX_CREATE_OPTIONS.into(),
                value: create.encode_to_vec(),
            }),
            ..Default::default()
        }))
        .await
        .expect("create a v1 linux task")
        .into_inner()
        .pid;
    assert!(
        runtime_root.join(NS).join("v1").exists(),
        "no state under ROOT/NS/ID"
    );
    assert_eq!(api.start("v1", "").await, pid);
    assert_eq!(api.wait("v1", "").await, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "v1-linux\n");
    api.delete_task("v1").await;
    api.delete_container("v1").await.unwrap();
    assert_clean(&d, &fx, "v1");
    assert!(
        !runtime_root.join(NS).join("v1").exists(),
        "runtime state left"
    );

    let calls = std::fs::read_to_string(&calls).unwrap();
    let root_arg = format!("--root {}", runtime_root.join(NS).display());
    for verb in ["create", "start", "delete"] {
        assert!(
            calls
                .lines()
                .any(|l| l.contains(&root_arg) && l.split_whitespace().any(|w| w == verb)),
            "no `{verb}` through the wrapper with {root_arg}:\n{calls}"
        );
    }

    // Options of a type the v1 runtime does not know: refused.
    api.containers
        .create(req(cpb::CreateContainerRequest {
            container: Some(cpb::Container {
                id: "v1bad".into(),
                runtime: Some(cpb::container::Runtime {
                    name: "io.containerd.runtime.v1.linux".into(),
                    options: Some(prost_types::Any {
                        type_url: "containerd.linux.runc.Nope".into(),
                        value: vec![1, 2, 3],
                    }),
                }),
                spec: Some(prost_types::Any {
                    type_url: berth_api::type_urls::OCI_SPEC.into(),
                    value: fx.spec(&["true"]),
                }),
                ..Default::default()
            }),
        }))
        .await
        .expect("create");
    let err = api.create_task(&fx, "v1bad", "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    api.delete_container("v1bad").await.unwrap();
    assert_clean(&d, &fx, "v1bad");
}
