//! Task events as `ctr events` prints them, and the OOM event.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn ctr_events_show_start_and_exit_status() {
    requires_root(TOOLS);
    let d = Berthd::start();
    let fx = Fixture::new();
    let mut api = Api::new(&d).await;
    let ev = CtrEvents::start(&d, &fx);
    // ctr events subscribes asynchronously: wait until it is connected.
    let addr = d.address();
    tokio::task::block_in_place(|| {
        berth_tests::events::sync_subscriber(&addr, "/berth-test/probe", || ev.text())
    });
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
