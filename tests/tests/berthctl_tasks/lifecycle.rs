//! A detached task through every task verb, with its events; containers
//! started and removed in parallel.

use super::support::*;

#[test]
#[ignore = "needs root"]
fn berthctl_detached_task_lifecycle_and_events() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let d1 = unique("d1");
    let events_out = d.dir().join("events.json");
    let mut events = d
        .berthctl_cmd(&["-o", "json", "events", "topic~=\"/tasks/\""])
        .stdout(std::fs::File::create(&events_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Live before anything happens (a probe on /tasks/probe shows it).
    let printed = || std::fs::read_to_string(&events_out).unwrap_or_default();
    berth_tests::events::sync_subscriber(&d.address(), "/tasks/probe", printed);

    d.berthctl_ok(&["containers", "run", "-d", IMAGE, &d1, "sleep", "1000"]);
    let t = task(&d, &d1);
    assert_eq!(t["status"], "RUNNING", "{t}");
    let pid = t["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let ctr_ls = d.ctr_ok(&["tasks", "ls"]);
    assert!(
        ctr_ls
            .lines()
            .any(|l| l.starts_with(&d1) && l.contains(&pid.to_string()) && l.contains("RUNNING")),
        "{ctr_ls}"
    );

    let ps = d.berthctl_ok(&["tasks", "exec", "--exec-id", "e1", &d1, "ps"]);
    assert!(ps.contains("sleep 1000"), "{ps}");
    let out = d.berthctl(&[
        "tasks",
        "exec",
        "--exec-id",
        "e2",
        &d1,
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    let pids = d.json(&["tasks", "ps", &d1]);
    assert!(
        pids.as_array().unwrap().iter().any(|p| p["pid"] == pid),
        "{pids}"
    );

    d.berthctl_ok(&["tasks", "pause", &d1]);
    assert_eq!(task(&d, &d1)["status"], "PAUSED");
    d.berthctl_ok(&["tasks", "resume", &d1]);
    assert_eq!(task(&d, &d1)["status"], "RUNNING");

    let metrics = d.json(&["tasks", "metrics", &d1]);
    let usage = metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "memory.usage_in_bytes" || m["metric"] == "memory.usage")
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(usage["value"].as_u64().unwrap() > 0, "{metrics}");

    // A running task cannot be removed; its container neither.
    let out = d.berthctl(&["tasks", "rm", &d1]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FailedPrecondition"));
    let out = d.berthctl(&["containers", "rm", &d1]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("FailedPrecondition"));

    d.berthctl_ok(&["tasks", "kill", "-s", "SIGKILL", &d1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while task(&d, &d1)["status"] != "STOPPED" {
        assert!(Instant::now() < deadline, "not stopped: {}", task(&d, &d1));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(task(&d, &d1)["exit_status"], 137);
    d.berthctl_ok(&["tasks", "rm", &d1]);
    d.berthctl_ok(&["containers", "rm", &d1]);
    assert_eq!(d.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
    assert_eq!(d.ctr_ok(&["tasks", "ls", "-q"]).trim(), "");

    // Events: start and exit (137) of d1, exec-added for e1.
    // Everything published so far is printed.
    berth_tests::events::sync_subscriber(&d.address(), "/tasks/probe", printed);
    let _ = events.kill();
    let _ = events.wait();
    let text = std::fs::read_to_string(&events_out).unwrap();
    let evs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        evs.iter()
            .all(|e| e["topic"].as_str().unwrap().starts_with("/tasks/")),
        "{text}"
    );
    assert!(
        evs.iter()
            .any(|e| e["topic"] == "/tasks/start" && e["event"]["container_id"] == d1.as_str()),
        "{text}"
    );
    assert!(
        evs.iter()
            .any(|e| e["topic"] == "/tasks/exec-added" && e["event"]["exec_id"] == "e1"),
        "{text}"
    );
    assert!(
        evs.iter().any(|e| e["topic"] == "/tasks/exit"
            && e["event"]["id"] == d1.as_str()
            && e["event"]["exit_status"] == 137),
        "{text}"
    );
}

#[test]
#[ignore = "needs root"]
fn berthctl_parallel_containers_leave_nothing_behind() {
    requires_root(TOOLS);
    let d = Berthd::start();
    import_busybox(&d);
    let fromctr = unique("fromctr");
    // Ids (hence cgroups, /default/<id>) no other run on the machine uses.
    let ids: Vec<String> = (0..10).map(|i| unique(&format!("p{i}"))).collect();
    std::thread::scope(|s| {
        for id in &ids {
            let d = &d;
            s.spawn(move || {
                d.berthctl_ok(&["containers", "run", "-d", IMAGE, id, "sleep", "1000"]);
            });
        }
    });
    // One more started by ctr: berthctl sees and stops it too.
    // Its fifos go under the test dir: ctr never removes a detached task's.
    let fifo_dir = d.dir().join("ctr-fifo");
    let fifo_dir = fifo_dir.to_str().unwrap();
    d.ctr_ok(&[
        "run",
        "-d",
        "--fifo-dir",
        fifo_dir,
        IMAGE,
        &fromctr,
        "sleep",
        "1000",
    ]);
    let tasks = d.json(&["tasks", "ls"]);
    assert_eq!(tasks.as_array().unwrap().len(), 11, "{tasks}");
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "RUNNING"),
        "{tasks}"
    );

    std::thread::scope(|s| {
        for id in ids.iter().map(String::as_str).chain([fromctr.as_str()]) {
            let d = &d;
            s.spawn(move || {
                d.berthctl_ok(&["tasks", "rm", "--force", id]);
                d.berthctl_ok(&["containers", "rm", id]);
            });
        }
    });
    assert_eq!(d.berthctl_ok(&["tasks", "ls", "-q"]), "");
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
    assert_eq!(d.berthctl_ok(&["snapshots", "ls", "-q"]).lines().count(), 1);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = d.dir().to_string_lossy().into_owned();
    assert!(!mounts.contains(&dir), "mounts left under {dir}");
    for id in &ids {
        let fifo = d.berthctl_fifo_dir().join("default").join(id);
        assert!(!fifo.exists(), "fifo dir left for {id}");
        assert!(
            !Path::new(&format!("/sys/fs/cgroup/memory/default/{id}")).exists(),
            "cgroup left for {id}"
        );
    }
    // berthctl's container leases went with the containers.
    let leases = d.json(&["leases", "ls"]);
    assert!(
        !leases
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"].as_str().unwrap().starts_with("berthctl.container.")),
        "{leases}"
    );
}
