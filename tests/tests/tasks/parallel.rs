//! Fifty containers at once leave nothing behind.

use super::support::*;

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
