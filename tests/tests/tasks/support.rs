//! What the task tests share: a busybox rootfs and OCI spec template, a
//! small tonic client for Containers, Tasks and Events, event readers,
//! the "nothing left" check, and `ctr events` in the background.

// The test files' prelude: each does `use super::support::*`.
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::time::Duration;

pub(crate) use berth_api::events::TaskExit;
pub(crate) use berth_api::services::containers::v1 as cpb;
pub(crate) use berth_api::services::events::v1 as epb;
pub(crate) use berth_api::services::tasks::v1 as tpb;
pub(crate) use berth_api::task_types::Status as TaskStatus;
pub(crate) use berth_tests::{requires_root, Berthd};
pub(crate) use cpb::containers_client::ContainersClient;
pub(crate) use epb::events_client::EventsClient;
pub(crate) use prost::Message;
pub(crate) use tonic::transport::Channel;
pub(crate) use tonic::{Code, Request};
pub(crate) use tpb::tasks_client::TasksClient;

pub(crate) const NS: &str = "default";

pub(crate) async fn channel(addr: &Path) -> Channel {
    berth_tests::grpc::channel(addr).await
}

pub(crate) fn req<T>(msg: T) -> Request<T> {
    berth_tests::grpc::request(msg, NS, None)
}

/// A busybox rootfs and an OCI spec template, in a temp dir.
pub(crate) struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Self {
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

    pub(crate) fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub(crate) fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `runc spec`, adjusted: no terminal, `args`, rootfs relative.
    pub(crate) fn spec(&self, args: &[&str]) -> Vec<u8> {
        self.spec_with(args, |_| {})
    }

    /// [`spec`](Self::spec), then `edit` on the JSON.
    pub(crate) fn spec_with(
        &self,
        args: &[&str],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Vec<u8> {
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

    pub(crate) fn process_spec(&self, args: &[&str]) -> prost_types::Any {
        let spec: serde_json::Value = serde_json::from_slice(&self.spec(args)).unwrap();
        prost_types::Any {
            type_url: berth_api::type_urls::OCI_PROCESS.into(),
            value: serde_json::to_vec(&spec["process"]).unwrap(),
        }
    }

    pub(crate) fn rootfs_mounts(&self) -> Vec<berth_api::types::Mount> {
        vec![berth_api::types::Mount {
            r#type: "bind".into(),
            source: self.rootfs().display().to_string(),
            target: String::new(),
            options: vec!["rbind".into(), "rw".into()],
        }]
    }
}

pub(crate) struct Api {
    pub(crate) containers: ContainersClient<Channel>,
    pub(crate) tasks: TasksClient<Channel>,
    pub(crate) events: EventsClient<Channel>,
}

impl Api {
    pub(crate) fn clone_clients(&self) -> Self {
        Self {
            containers: self.containers.clone(),
            tasks: self.tasks.clone(),
            events: self.events.clone(),
        }
    }

    pub(crate) async fn new(d: &Berthd) -> Self {
        let ch = channel(&d.address()).await;
        Self {
            containers: ContainersClient::new(ch.clone()),
            tasks: TasksClient::new(ch.clone()),
            events: EventsClient::new(ch),
        }
    }

    pub(crate) async fn create_container(
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
                        value: own_cgroup(spec, id),
                    }),
                    ..Default::default()
                }),
            }))
            .await
            .expect("create container");
    }

    pub(crate) async fn create_task(
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

    pub(crate) async fn start(&mut self, id: &str, exec_id: &str) -> u32 {
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

    pub(crate) async fn wait(&mut self, id: &str, exec_id: &str) -> u32 {
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

    pub(crate) async fn get(&mut self, id: &str) -> berth_api::task_types::Process {
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

    pub(crate) async fn kill(&mut self, id: &str, signal: u32) {
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

    pub(crate) async fn delete_task(&mut self, id: &str) -> tpb::DeleteResponse {
        self.tasks
            .delete(req(tpb::DeleteTaskRequest {
                container_id: id.into(),
            }))
            .await
            .expect("delete task")
            .into_inner()
    }

    pub(crate) async fn delete_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.containers
            .delete(req(cpb::DeleteContainerRequest { id: id.into() }))
            .await
            .map(|_| ())
    }

    /// Collects every /tasks/ envelope from now on.
    pub(crate) async fn collect_events(&mut self) -> Arc<Mutex<Vec<epb::Envelope>>> {
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

/// Gives a JSON spec without a `linux.cgroupsPath` the cgroup
/// `/berth-e2e-<test pid>-<id>`. runc's default, `/<id>`, is shared by every
/// daemon on the machine: another run of these tests at the same time
/// would put its container with the same id into the same cgroup.
fn own_cgroup(spec: Vec<u8>, id: &str) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&spec) else {
        return spec;
    };
    if !v["linux"]["cgroupsPath"].is_null() {
        return spec;
    }
    v["linux"]["cgroupsPath"] = format!("/berth-e2e-{}-{id}", std::process::id()).into();
    serde_json::to_vec(&v).expect("spec back to JSON")
}

pub(crate) fn exits(events: &Mutex<Vec<epb::Envelope>>, id: &str) -> Vec<u32> {
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

pub(crate) fn topics(events: &Mutex<Vec<epb::Envelope>>) -> Vec<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.topic.clone())
        .collect()
}

/// Nothing of the task is left: no bundle, no mount of the rootfs, no
/// runc state.
pub(crate) fn assert_clean(d: &Berthd, fx: &Fixture, id: &str) {
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
pub(crate) const TOOLS: &[&str] = &["runc", "ctr"];

pub(crate) async fn settle<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Runs `ctr events` in the background; its output so far on demand.
pub(crate) struct CtrEvents {
    child: std::process::Child,
    out: PathBuf,
}

impl CtrEvents {
    pub(crate) fn start(d: &Berthd, fx: &Fixture) -> Self {
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

    pub(crate) fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for CtrEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
