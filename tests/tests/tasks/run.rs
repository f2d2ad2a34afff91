//! Create, start, wait, exec, pause/resume, pids, metrics, kill and
//! delete, through our client and `ctr`; bad input leaves nothing.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn run_exit_code_and_events() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    let events = api.collect_events().await;

    api.create_container("t7", fx.spec(&["sh", "-c", "echo hello; exit 7"]), None)
        .await;
    let out = fx.out("t7.log");
    let pid = api
        .create_task(&fx, "t7", &format!("file://{}", out.display()))
        .await
        .expect("create task");
    assert!(pid > 0);
    // A container whose task exists cannot be deleted.
    let err = api.delete_container("t7").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // Nor can a second task be created for it.
    let err = api.create_task(&fx, "t7", "").await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    assert_eq!(api.start("t7", "").await, pid);
    assert_eq!(api.wait("t7", "").await, 7);
    let p = api.get("t7").await;
    assert_eq!(p.status, TaskStatus::Stopped as i32);
    assert_eq!(p.exit_status, 7);
    let del = api.delete_task("t7").await;
    assert_eq!(del.exit_status, 7);
    assert_eq!(del.pid, pid);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello\n");
    api.delete_container("t7").await.unwrap();
    assert_clean(&d, &fx, "t7");

    settle("events", || {
        exits(&events, "t7") == vec![7] && topics(&events).contains(&"/tasks/delete".to_string())
    })
    .await;
    let t = topics(&events);
    let pos = |name: &str| {
        t.iter()
            .position(|x| x == name)
            .unwrap_or_else(|| panic!("{name} missing: {t:?}"))
    };
    assert!(pos("/tasks/create") < pos("/tasks/start"));
    assert!(pos("/tasks/start") < pos("/tasks/exit"));
    assert!(pos("/tasks/exit") < pos("/tasks/delete"));
    assert_eq!(
        exits(&events, "t7"),
        vec![7],
        "exit published exactly once: {t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn exec_pause_metrics_kill_and_ctr() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    // As pid 1, sh ignores SIGTERM unless it traps it.
    let script = "trap 'exit 143' TERM; while true; do sleep 0.1; done";
    api.create_container("t3", fx.spec(&["sh", "-c", script]), None)
        .await;
    let pid = api.create_task(&fx, "t3", "").await.expect("create");
    api.start("t3", "").await;
    let p = api.get("t3").await;
    assert_eq!(p.status, TaskStatus::Running as i32);
    assert_eq!(p.pid, pid);

    // ctr sees it RUNNING with the right pid.
    let ls = d.ctr_ok(&["tasks", "ls"]);
    assert!(
        ls.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f == ["t3", &pid.to_string(), "RUNNING"]
        }),
        "{ls}"
    );

    // exec e1, and a duplicate exec id is refused.
    let out = fx.out("e1.log");
    let exec = |exec_id: &str| tpb::ExecProcessRequest {
        container_id: "t3".into(),
        stdout: format!("file://{}", out.display()),
        spec: Some(fx.process_spec(&["sh", "-c", "echo from-exec; ps"])),
        exec_id: exec_id.into(),
        ..Default::default()
    };
    api.tasks.exec(req(exec("e1"))).await.expect("exec");
    let err = api.tasks.exec(req(exec("e1"))).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    api.start("t3", "e1").await;
    assert_eq!(api.wait("t3", "e1").await, 0);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("from-exec") && text.contains("while true"),
        "{text}"
    );
    api.tasks
        .delete_process(req(tpb::DeleteProcessRequest {
            container_id: "t3".into(),
            exec_id: "e1".into(),
        }))
        .await
        .expect("delete exec");

    // pids, pause/resume, metrics.
    let pids = api
        .tasks
        .list_pids(req(tpb::ListPidsRequest {
            container_id: "t3".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(pids.processes.iter().any(|p| p.pid == pid), "{pids:?}");
    api.tasks
        .pause(req(tpb::PauseTaskRequest {
            container_id: "t3".into(),
        }))
        .await
        .expect("pause");
    assert_eq!(api.get("t3").await.status, TaskStatus::Paused as i32);
    assert!(d.ctr_ok(&["tasks", "ls"]).contains("PAUSED"));
    api.tasks
        .resume(req(tpb::ResumeTaskRequest {
            container_id: "t3".into(),
        }))
        .await
        .expect("resume");
    assert_eq!(api.get("t3").await.status, TaskStatus::Running as i32);
    let m = api
        .tasks
        .metrics(req(tpb::MetricsRequest {
            filters: vec!["id==t3".into()],
        }))
        .await
        .expect("metrics")
        .into_inner();
    assert_eq!(m.metrics.len(), 1);
    let data = m.metrics[0].data.as_ref().expect("metric data");
    assert!(data.type_url.contains("cgroups"), "{}", data.type_url);
    let metrics = d.ctr_ok(&["tasks", "metrics", "t3"]);
    assert!(metrics.contains("t3"), "{metrics}");

    let err = api
        .tasks
        .checkpoint(req(tpb::CheckpointTaskRequest {
            container_id: "t3".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    // kill through ctr, then delete through ctr.
    d.ctr_ok(&["tasks", "kill", "-s", "SIGTERM", "t3"]);
    assert_eq!(api.wait("t3", "").await, 128 + 15);
    d.ctr_ok(&["tasks", "rm", "t3"]);
    d.ctr_ok(&["containers", "rm", "t3"]);
    assert_clean(&d, &fx, "t3");
    assert!(d.ctr_ok(&["tasks", "ls", "-q"]).trim().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn bad_input_leaves_nothing() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;

    // A runtime binary that does not exist.
    let opts = berth_api::runc::v1::Options {
        binary_name: "/nonexistent/runc".into(),
        ..Default::default()
    };
    let any = prost_types::Any {
        type_url: berth_api::type_urls::RUNC_OPTIONS.into(),
        value: opts.encode_to_vec(),
    };
    api.create_container("nobin", fx.spec(&["true"]), Some(any))
        .await;
    let err = api.create_task(&fx, "nobin", "").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("/nonexistent/runc"), "{err:?}");
    assert_clean(&d, &fx, "nobin");

    // A spec that is not an OCI spec.
    api.create_container("badspec", b"not json".to_vec(), None)
        .await;
    let err = api.create_task(&fx, "badspec", "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_clean(&d, &fx, "badspec");

    // A process the runtime cannot start: the error comes back, nothing stays.
    api.create_container("noexe", fx.spec(&["/no/such/program"]), None)
        .await;
    match api.create_task(&fx, "noexe", "").await {
        Err(e) => assert_ne!(e.code(), Code::Ok),
        Ok(_) => {
            // runc create succeeds and the exec fails at start.
            let st = api
                .tasks
                .start(req(tpb::StartRequest {
                    container_id: "noexe".into(),
                    exec_id: String::new(),
                }))
                .await;
            assert!(st.is_err(), "starting a missing program must fail");
            api.delete_task("noexe").await;
        }
    }
    assert_clean(&d, &fx, "noexe");

    // Unknown container, bad ids.
    let err = api.create_task(&fx, "ghost", "").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = api.create_task(&fx, "a/b", "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = api
        .containers
        .create(req(cpb::CreateContainerRequest {
            container: Some(cpb::Container {
                id: "x..y".into(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("container.ID"), "{err:?}");
    let err = api
        .tasks
        .get(req(tpb::GetRequest {
            container_id: "ghost".into(),
            exec_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    for id in ["nobin", "badspec", "noexe"] {
        api.delete_container(id).await.unwrap();
    }
}
