//! Issue 4 (berthd side): Containers, Tasks and Events against a real
//! berthd, real berth-shim and real runc, driven by a small tonic client
//! (no images or snapshots needed: the rootfs is a busybox directory passed
//! as a bind mount) and by Debian's `ctr` where it needs no image.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::events::TaskExit;
use berth_api::services::containers::v1 as cpb;
use berth_api::services::events::v1 as epb;
use berth_api::services::tasks::v1 as tpb;
use berth_api::task_types::Status as TaskStatus;
use berth_tests::{requires_root, Berthd};
use cpb::containers_client::ContainersClient;
use epb::events_client::EventsClient;
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tpb::tasks_client::TasksClient;

const NS: &str = "default";

async fn channel(addr: &Path) -> Channel {
    berth_tests::grpc::channel(addr).await
}

fn req<T>(msg: T) -> Request<T> {
    berth_tests::grpc::request(msg, NS, None)
}

/// A busybox rootfs and an OCI spec template, in a temp dir.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-tasks-")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for tool in [
            "sh", "echo", "sleep", "ps", "cat", "true", "false", "id", "head", "tr",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
        }
        for d in ["proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(dir.path().join("rootfs").join(d)).unwrap();
        }
        Self { dir }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `runc spec`, adjusted: no terminal, `args`, rootfs relative.
    fn spec(&self, args: &[&str]) -> Vec<u8> {
        self.spec_with(args, |_| {})
    }

    /// [`spec`](Self::spec), then `edit` on the JSON.
    fn spec_with(&self, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let d = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("runc")
            .arg("spec")
            .current_dir(d.path())
            .status()
            .unwrap();
        assert!(st.success());
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        v["process"]["terminal"] = false.into();
        v["process"]["args"] = args.iter().map(|s| serde_json::Value::from(*s)).collect();
        v["root"] = serde_json::json!({"path": "rootfs", "readonly": false});
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    fn process_spec(&self, args: &[&str]) -> prost_types::Any {
        let spec: serde_json::Value = serde_json::from_slice(&self.spec(args)).unwrap();
        prost_types::Any {
            type_url: berth_api::type_urls::OCI_PROCESS.into(),
            value: serde_json::to_vec(&spec["process"]).unwrap(),
        }
    }

    fn rootfs_mounts(&self) -> Vec<berth_api::types::Mount> {
        vec![berth_api::types::Mount {
            r#type: "bind".into(),
            source: self.rootfs().display().to_string(),
            target: String::new(),
            options: vec!["rbind".into(), "rw".into()],
        }]
    }
}

struct Api {
    containers: ContainersClient<Channel>,
    tasks: TasksClient<Channel>,
    events: EventsClient<Channel>,
}

impl Api {
    fn clone_clients(&self) -> Self {
        Self {
            containers: self.containers.clone(),
            tasks: self.tasks.clone(),
            events: self.events.clone(),
        }
    }

    async fn new(d: &Berthd) -> Self {
        let ch = channel(&d.address()).await;
        Self {
            containers: ContainersClient::new(ch.clone()),
            tasks: TasksClient::new(ch.clone()),
            events: EventsClient::new(ch),
        }
    }

    async fn create_container(
        &mut self,
        id: &str,
        spec: Vec<u8>,
        options: Option<prost_types::Any>,
    ) {
        self.containers
            .create(req(cpb::CreateContainerRequest {
                container: Some(cpb::Container {
                    id: id.into(),
                    runtime: Some(cpb::container::Runtime {
                        name: "io.containerd.runc.v2".into(),
                        options,
                    }),
                    spec: Some(prost_types::Any {
                        type_url: berth_api::type_urls::OCI_SPEC.into(),
                        value: spec,
                    }),
                    ..Default::default()
                }),
            }))
            .await
            .expect("create container");
    }

    async fn create_task(
        &mut self,
        fx: &Fixture,
        id: &str,
        stdout: &str,
    ) -> Result<u32, tonic::Status> {
        self.tasks
            .create(req(tpb::CreateTaskRequest {
                container_id: id.into(),
                rootfs: fx.rootfs_mounts(),
                stdout: stdout.into(),
                stderr: stdout.into(),
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner().pid)
    }

    async fn start(&mut self, id: &str, exec_id: &str) -> u32 {
        self.tasks
            .start(req(tpb::StartRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
            }))
            .await
            .expect("start")
            .into_inner()
            .pid
    }

    async fn wait(&mut self, id: &str, exec_id: &str) -> u32 {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.tasks.wait(req(tpb::WaitRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
            })),
        )
        .await
        .expect("wait timed out")
        .expect("wait")
        .into_inner()
        .exit_status
    }

    async fn get(&mut self, id: &str) -> berth_api::task_types::Process {
        self.tasks
            .get(req(tpb::GetRequest {
                container_id: id.into(),
                exec_id: String::new(),
            }))
            .await
            .expect("get")
            .into_inner()
            .process
            .unwrap()
    }

    async fn kill(&mut self, id: &str, signal: u32) {
        self.tasks
            .kill(req(tpb::KillRequest {
                container_id: id.into(),
                exec_id: String::new(),
                signal,
                all: false,
            }))
            .await
            .expect("kill");
    }

    async fn delete_task(&mut self, id: &str) -> tpb::DeleteResponse {
        self.tasks
            .delete(req(tpb::DeleteTaskRequest {
                container_id: id.into(),
            }))
            .await
            .expect("delete task")
            .into_inner()
    }

    async fn delete_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.containers
            .delete(req(cpb::DeleteContainerRequest { id: id.into() }))
            .await
            .map(|_| ())
    }

    /// Collects every /tasks/ envelope from now on.
    async fn collect_events(&mut self) -> Arc<Mutex<Vec<epb::Envelope>>> {
        let mut stream = self
            .events
            .subscribe(epb::SubscribeRequest {
                filters: vec!["topic~=^/tasks/".into()],
            })
            .await
            .expect("subscribe")
            .into_inner();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                out.lock().unwrap().push(e);
            }
        });
        seen
    }
}

fn exits(events: &Mutex<Vec<epb::Envelope>>, id: &str) -> Vec<u32> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.topic == "/tasks/exit")
        .filter_map(|e| TaskExit::decode(e.event.as_ref()?.value.as_slice()).ok())
        .filter(|x| x.container_id == id && x.id == id)
        .map(|x| x.exit_status)
        .collect()
}

fn topics(events: &Mutex<Vec<epb::Envelope>>) -> Vec<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.topic.clone())
        .collect()
}

/// Nothing of the task is left: no bundle, no mount of the rootfs, no
/// runc state.
fn assert_clean(d: &Berthd, fx: &Fixture, id: &str) {
    let bundle = d.state().join(NS).join(id);
    assert!(!bundle.exists(), "bundle {} left behind", bundle.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let state = d.state().display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&state)),
        "mounts left under state:\n{mounts}"
    );
    let _ = fx;
    let runc_state = d.state().join(".runc").join(NS).join(id);
    assert!(
        !runc_state.exists(),
        "runc state {} left behind",
        runc_state.display()
    );
}

/// What every test here runs besides berthd (with `requires_root`).
const TOOLS: &[&str] = &["runc", "ctr"];

async fn settle<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn dead_shim_is_cleaned_up_and_reported_137() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    let events = api.collect_events().await;
    api.create_container("doomed", fx.spec(&["sleep", "1000"]), None)
        .await;
    api.create_task(&fx, "doomed", "").await.expect("create");
    api.start("doomed", "").await;
    let bundle = d.state().join(NS).join("doomed");
    let shim_pid: i32 = std::fs::read_to_string(bundle.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(api.wait("doomed", "").await, 137);
    let p = api.get("doomed").await;
    assert_eq!(p.status, TaskStatus::Stopped as i32);
    assert_eq!(p.exit_status, 137);
    settle("exit event", || exits(&events, "doomed") == vec![137]).await;
    assert_eq!(api.delete_task("doomed").await.exit_status, 137);
    api.delete_container("doomed").await.unwrap();
    assert_clean(&d, &fx, "doomed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn tasks_survive_berthd_kill9() {
    requires_root(TOOLS);
    let mut d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    api.create_container("keep", fx.spec(&["sleep", "1000"]), None)
        .await;
    api.create_container("quits", fx.spec(&["sh", "-c", "sleep 1; exit 3"]), None)
        .await;
    let pid = api.create_task(&fx, "keep", "").await.expect("create");
    api.start("keep", "").await;
    api.create_task(&fx, "quits", "").await.expect("create");
    api.start("quits", "").await;
    d.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.restart();
    let mut api = Api::new(&d).await;
    let events = api.collect_events().await;
    let p = api.get("keep").await;
    assert_eq!((p.pid, p.status), (pid, TaskStatus::Running as i32));
    // The exit that happened while berthd was down is kept.
    assert_eq!(api.wait("quits", "").await, 3);
    assert_eq!(api.delete_task("quits").await.exit_status, 3);
    api.kill("keep", 9).await;
    assert_eq!(api.wait("keep", "").await, 137);
    api.delete_task("keep").await;
    for id in ["keep", "quits"] {
        api.delete_container(id).await.unwrap();
        assert_clean(&d, &fx, id);
    }
    settle("keep's exit", || exits(&events, "keep") == vec![137]).await;
}

/// Runs `ctr events` in the background; its output so far on demand.
struct CtrEvents {
    child: std::process::Child,
    out: PathBuf,
}

impl CtrEvents {
    fn start(d: &Berthd, fx: &Fixture) -> Self {
        let out = fx.out("ctr-events.txt");
        let file = std::fs::File::create(&out).unwrap();
        let child = std::process::Command::new("ctr")
            .arg("--address")
            .arg(d.address())
            .arg("events")
            .stdin(std::process::Stdio::null())
            .stdout(file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ctr events");
        Self { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for CtrEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn ctr_events_show_start_and_exit_status() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    let ev = CtrEvents::start(&d, &fx);
    // ctr events subscribes asynchronously: wait until it is connected.
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.create_container("ev1", fx.spec(&["sh", "-c", "exit 5"]), None)
        .await;
    api.create_task(&fx, "ev1", "").await.expect("create");
    api.start("ev1", "").await;
    assert_eq!(api.wait("ev1", "").await, 5);
    api.delete_task("ev1").await;
    api.delete_container("ev1").await.unwrap();
    settle("ctr events output", || {
        ev.text().contains("/containers/delete")
    })
    .await;
    let text = ev.text();
    let line = |topic: &str| {
        text.lines()
            .find(|l| l.contains(topic))
            .unwrap_or_else(|| panic!("{topic} missing:\n{text}"))
            .to_string()
    };
    assert!(line("/tasks/start").contains("ev1"), "{text}");
    let exit = line("/tasks/exit");
    assert!(
        exit.contains("ev1") && exit.contains("\"exit_status\":5"),
        "{exit}"
    );
    line("/tasks/create");
    line("/tasks/delete");
    line("/containers/create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn memory_limit_gives_oom_event() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    let events = api.collect_events().await;
    let spec = fx.spec_with(
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
        ],
        |v| {
            v["linux"]["resources"]["memory"] =
                serde_json::json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
        },
    );
    api.create_container("oom", spec, None).await;
    api.create_task(&fx, "oom", "").await.expect("create");
    api.start("oom", "").await;
    let status = api.wait("oom", "").await;
    assert_eq!(status, 137, "killed by the OOM killer");
    settle("oom event", || {
        topics(&events).contains(&"/tasks/oom".to_string())
    })
    .await;
    api.delete_task("oom").await;
    api.delete_container("oom").await.unwrap();
    assert_clean(&d, &fx, "oom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn fifty_in_parallel_leave_nothing_behind() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let api = Api::new(&d).await;
    let spec = fx.spec(&["sleep", "1000"]);
    let ids: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
    let runs = ids.iter().map(|id| {
        let mut api = api.clone_clients();
        let spec = spec.clone();
        let fx = &fx;
        async move {
            api.create_container(id, spec, None).await;
            let pid = api.create_task(fx, id, "").await.expect("create");
            api.start(id, "").await;
            pid
        }
    });
    let pids = futures::future::join_all(runs).await;
    let shim_pids: Vec<i32> = ids
        .iter()
        .map(|id| {
            let p = d.state().join(NS).join(id).join("shim.pid");
            std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
        })
        .collect();
    let ls = d.ctr_ok(&["tasks", "ls"]);
    for (id, pid) in ids.iter().zip(&pids) {
        assert!(
            ls.contains(&format!("{id}    "))
                || ls.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == [id.as_str(), &pid.to_string(), "RUNNING"]),
            "{id} {pid}:\n{ls}"
        );
    }
    let stops = ids.iter().map(|id| {
        let mut api = api.clone_clients();
        async move {
            api.kill(id, 9).await;
            assert_eq!(api.wait(id, "").await, 137);
            api.delete_task(id).await;
            api.delete_container(id).await.unwrap();
        }
    });
    futures::future::join_all(stops).await;
    for id in &ids {
        assert_clean(&d, &fx, id);
    }
    for pid in shim_pids {
        let gone = (0..200).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    !s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false);
            if alive {
                std::thread::sleep(Duration::from_millis(10));
            }
            !alive
        });
        assert!(gone, "shim {pid} still running");
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.state().join(NS))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left in state: {leftovers:?}");
    assert!(d.ctr_ok(&["tasks", "ls", "-q"]).trim().is_empty());
    assert!(d.ctr_ok(&["containers", "ls", "-q"]).trim().is_empty());
}
