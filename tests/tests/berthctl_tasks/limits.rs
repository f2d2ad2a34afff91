//! A memory limit on the host cgroup, the OOM kill and its event, crun.

use super::support::*;

#[test]
#[ignore = "needs root"]
fn berthctl_memory_limit_oom_and_crun() {
    requires_root(&[TOOLS, &["crun"]].concat());
    let d = Berthd::start();
    import_busybox(&d);
    let m1 = unique("m1");
    let o1 = unique("o1");
    let c1 = unique("c1");
    let events_out = d.dir().join("oom-events.json");
    let mut events = d
        .berthctl_cmd(&["-o", "json", "events", "topic~=\"/tasks/(oom|exit)\""])
        .stdout(std::fs::File::create(&events_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Live before o1 runs (a probe on /tasks/oom-probe, which the filter
    // lets through and the checks do not look for, shows it).
    berth_tests::events::sync_subscriber(&d.address(), "/tasks/oom-probe", || {
        std::fs::read_to_string(&events_out).unwrap_or_default()
    });

    // The limit reaches the container's cgroup (cgroupfs: /<ns>/<id>).
    d.berthctl_ok(&[
        "containers",
        "run",
        "-d",
        "--memory-limit",
        "33554432",
        IMAGE,
        &m1,
        "sleep",
        "100",
    ]);
    let limit = format!("/sys/fs/cgroup/memory/default/{m1}/memory.limit_in_bytes");
    let limit = Path::new(&limit);
    if limit.exists() {
        assert_eq!(std::fs::read_to_string(limit).unwrap().trim(), "33554432");
    } else {
        eprintln!(
            "!!! no cgroup v1 memory controller at {}: limit not checked on the host",
            limit.display()
        );
    }
    d.berthctl_ok(&["tasks", "rm", "--force", &m1]);
    d.berthctl_ok(&["containers", "rm", &m1]);

    // Allocating past it: killed, a TaskOOM event, exit status 137.
    let out = d.berthctl(&[
        "containers",
        "run",
        "--rm",
        "--memory-limit",
        "33554432",
        IMAGE,
        &o1,
        "sh",
        "-c",
        "head -c 200000000 /dev/zero | tail > /dev/null",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&events_out).unwrap_or_default();
        let evs: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let oom = evs
            .iter()
            .any(|e| e["topic"] == "/tasks/oom" && e["event"]["container_id"] == o1.as_str());
        let exit = evs.iter().any(|e| {
            e["topic"] == "/tasks/exit"
                && e["event"]["container_id"] == o1.as_str()
                && e["event"]["exit_status"] == 137
        });
        if oom && exit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no oom/exit events for o1: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = events.kill();
    let _ = events.wait();

    // crun as the runtime binary for one container.
    let out = d.berthctl_ok(&[
        "containers",
        "run",
        "--rm",
        "--runtime-binary",
        "crun",
        IMAGE,
        &c1,
        "echo",
        "hi-crun",
    ]);
    assert_eq!(out, "hi-crun\n");
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
}
