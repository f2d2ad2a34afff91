use std::time::Duration;

use super::*;

/// The sample lines of `text` (`name{labels} value`), comments skipped.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample is `series value`");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn value(text: &str, series: &str) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| v)
}

#[test]
fn calls_are_counted_by_service_method_and_code() {
    let m = Metrics::new();
    let rpc = m.rpc();
    rpc.observe(
        "/containerd.services.tasks.v1.Tasks/Create",
        0,
        Duration::from_millis(30),
    );
    rpc.observe(
        "/containerd.services.tasks.v1.Tasks/Create",
        5,
        Duration::from_millis(2),
    );
    rpc.observe(
        "/containerd.services.tasks.v1.Tasks/Create",
        0,
        Duration::from_millis(40),
    );
    let text = m.render(Figures::default());
    let svc = r#"grpc_service="containerd.services.tasks.v1.Tasks",grpc_method="Create""#;
    assert_eq!(
        value(
            &text,
            &format!(r#"grpc_server_handled_total{{{svc},grpc_code="OK"}}"#)
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"grpc_server_handled_total{{{svc},grpc_code="NotFound"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            &format!("grpc_server_handling_seconds_count{{{svc}}}")
        ),
        Some(3.0)
    );
    // 2 ms falls in the 2.5 ms bucket, 30 and 40 ms in the 50 ms one.
    assert_eq!(
        value(
            &text,
            &format!(r#"grpc_server_handling_seconds_bucket{{{svc},le="0.0025"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"grpc_server_handling_seconds_bucket{{{svc},le="0.05"}}"#)
        ),
        Some(3.0)
    );
    assert!(text.contains("# TYPE grpc_server_handling_seconds histogram"));
}

#[test]
fn gc_and_pulls_accumulate() {
    let m = Metrics::new();
    m.gc().run(3, 2, 1, Duration::from_millis(5));
    m.gc().run(1, 0, 0, Duration::from_millis(1));
    m.pull().bytes(1000);
    m.pull().bytes(24);
    m.pull().finished(true);
    let text = m.render(Figures::default());
    assert_eq!(value(&text, "berth_gc_runs_total"), Some(2.0), "{text}");
    assert_eq!(
        value(&text, r#"berth_gc_removed_total{kind="content"}"#),
        Some(4.0)
    );
    assert_eq!(
        value(&text, r#"berth_gc_removed_total{kind="snapshot"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&text, r#"berth_gc_removed_total{kind="lease"}"#),
        Some(1.0)
    );
    assert_eq!(value(&text, "berth_gc_pause_seconds_count"), Some(2.0));
    assert_eq!(value(&text, "berth_pull_bytes_total"), Some(1024.0));
    assert_eq!(value(&text, r#"berth_pulls_total{result="ok"}"#), Some(1.0));
    assert_eq!(
        value(&text, r#"berth_pulls_total{result="error"}"#),
        Some(0.0)
    );
}

#[test]
fn figures_are_series_while_they_exist() {
    let m = Metrics::new();
    let mut f = Figures {
        content_blobs: 3,
        content_bytes: 4096,
        ..Figures::default()
    };
    f.tasks.insert(("default".into(), "running".into()), 2);
    f.shims.insert("default".into(), 2);
    f.snapshots.insert(
        ("default".into(), "overlayfs".into(), "committed".into()),
        5,
    );
    f.cri.pods.insert("ready".into(), 1);
    f.containers.push(ContainerFigures {
        namespace: "default".into(),
        id: "web".into(),
        cpu_seconds: 1.5,
        memory_bytes: 1 << 20,
        memory_limit_bytes: None,
        pids: 4,
    });
    let text = m.render(f);
    assert_eq!(
        value(
            &text,
            r#"berth_tasks{namespace="default",status="running"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"berth_shims{namespace="default"}"#),
        Some(2.0)
    );
    assert_eq!(value(&text, "berth_content_blobs"), Some(3.0));
    assert_eq!(value(&text, "berth_content_bytes"), Some(4096.0));
    assert_eq!(
        value(
            &text,
            r#"berth_snapshots{namespace="default",snapshotter="overlayfs",kind="committed"}"#
        ),
        Some(5.0)
    );
    assert_eq!(value(&text, r#"berth_cri_pods{state="ready"}"#), Some(1.0));
    let web = r#"{namespace="default",id="web"}"#;
    assert_eq!(
        value(&text, &format!("berth_container_cpu_seconds_total{web}")),
        Some(1.5)
    );
    assert_eq!(
        value(&text, &format!("berth_container_memory_bytes{web}")),
        Some(1048576.0)
    );
    assert_eq!(
        value(&text, &format!("berth_container_pids{web}")),
        Some(4.0)
    );
    assert!(
        !text.contains("berth_container_memory_limit_bytes{"),
        "{text}"
    );
    assert!(text.contains("# TYPE berth_container_cpu_seconds_total counter"));
    assert!(text.contains(&format!(
        "berth_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("BERTH_COMMIT")
    )));

    // The container went: its series go with it.
    let text = m.render(Figures::default());
    assert!(!text.contains(r#"id="web""#), "{text}");
}

#[test]
fn the_cri_reports_through_its_handle() {
    let m = Metrics::new();
    assert_eq!(m.cri().figures(), None);
    m.cri().set_source(|| {
        let mut f = CriFigures::default();
        f.containers.insert("running".into(), 3);
        f
    });
    let f = m.cri().figures().expect("a source");
    assert_eq!(f.containers["running"], 3);
}

#[test]
fn paths_and_codes() {
    assert_eq!(
        split_path("/containerd.services.version.v1.Version/Version"),
        ("containerd.services.version.v1.Version", "Version")
    );
    assert_eq!(split_path("/odd"), ("odd", ""));
    assert_eq!(code_name(0), "OK");
    assert_eq!(code_name(8), "ResourceExhausted");
    assert_eq!(code_name(99), "Unknown");
}
