//! A shim killed under its task, and tasks across kill -9 of berthd.

use super::support::*;

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
