//! Issue 11, items 4 and 5: containerd's filter language as its Go client
//! and `ctr` use it, against a real berthd.
//!
//! Pinned containerd 1.6 behaviours (filters/scanner.go, filters/filter.go,
//! metadata/adaptors.go):
//! - a `~=` value may be quoted with `|` (or `/`): `topic~=|^/tasks/exit|`
//!   is the regex `^/tasks/exit`, in Subscribe and in every List;
//! - `==` needs the field present and equal; `!=` and `~=` compare an
//!   absent field as the empty string;
//! - a snapshot's `parent` is always present (empty without a parent), so
//!   `parent==""` selects the snapshots without one and `parent!=""` those
//!   with one; a container's `image` is present only when set; a label is
//!   present when its key is set, whatever its value.

mod goclient_support;

use std::collections::BTreeSet;

use berth_api::events::{TaskExit, TaskStart};
use berth_api::services::containers::v1 as cpb;
use berth_api::services::images::v1 as ipb;
use berth_api::services::snapshots::v1 as spb;
use berth_tests::Berthd;
use goclient_support::{
    channel, containerd_publish, event_any, ns_req, ready, rt, wait_until, CtrEvents,
};

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// First column of each output line (ctr's `-q` lists print one per line).
fn names(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn subscribe_with_pipe_quoted_regex_delivers_only_matching_topics() {
    if !ready("subscribe_with_pipe_quoted_regex_delivers_only_matching_topics") {
        return;
    }
    let d = Berthd::start();
    // Unquoted, `|^/tasks/exit|` is a regex alternation with empty
    // branches that lets every topic through.
    let ev = CtrEvents::start(&d, "pipe", &["topic~=|^/tasks/exit|"]);
    let exit = |id: &str| {
        event_any(
            "TaskExit",
            &TaskExit {
                container_id: id.into(),
                id: id.into(),
                pid: 1,
                exit_status: 3,
                exited_at: None,
            },
        )
    };
    // ctr subscribes asynchronously: publish matching probes until one
    // arrives, so nothing published later can be missed.
    for i in 0.. {
        containerd_publish(&d, "default", "/tasks/exit", &exit(&format!("probe{i}")));
        if ev.text().contains(&format!("probe{i}")) {
            break;
        }
        assert!(i < 100, "ctr events never showed a probe:\n{}", ev.text());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let start = event_any(
        "TaskStart",
        &TaskStart {
            container_id: "notwanted".into(),
            pid: 1,
        },
    );
    containerd_publish(&d, "default", "/tasks/start", &start);
    containerd_publish(&d, "default", "/tasks/oom", &start);
    containerd_publish(&d, "default", "/tasks/exit", &exit("last"));
    // The bus delivers in order: once `last` is there, anything before it
    // that matched is there too.
    wait_until("the last exit event", || ev.text().contains("last"));
    let text = ev.text();
    assert!(
        !text.contains("notwanted"),
        "a non-matching topic was delivered:\n{text}"
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.contains(" /tasks/exit "), "unexpected event: {line}");
    }
}

/// Snapshots through ctr (prepare, commit, label), listed through the
/// Snapshots service as the Go client's Walk does.
async fn snapshot_names(d: &Berthd, filters: &[&str]) -> BTreeSet<String> {
    let mut c = spb::snapshots_client::SnapshotsClient::new(channel(&d.address()).await);
    let mut stream = c
        .list(ns_req(
            "default",
            spb::ListSnapshotsRequest {
                snapshotter: "overlayfs".into(),
                filters: filters.iter().map(|s| s.to_string()).collect(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("list {filters:?}: {e}"))
        .into_inner();
    let mut out = BTreeSet::new();
    while let Some(r) = stream.message().await.unwrap() {
        out.extend(r.info.into_iter().map(|i| i.name));
    }
    out
}

#[test]
fn empty_string_filters_select_like_containerd_in_every_list() {
    if !ready("empty_string_filters_select_like_containerd_in_every_list") {
        return;
    }
    let d = Berthd::start();
    let rt = rt();

    // Snapshots: base (committed, no parent), top (no parent), two
    // children of base, one of them a gc root.
    d.ctr_ok(&["snapshots", "prepare", "base-key"]);
    d.ctr_ok(&["snapshots", "commit", "base", "base-key"]);
    d.ctr_ok(&["snapshots", "prepare", "top"]);
    d.ctr_ok(&["snapshots", "prepare", "child-rooted", "base"]);
    d.ctr_ok(&["snapshots", "prepare", "child-plain", "base"]);
    d.ctr_ok(&[
        "snapshots",
        "label",
        "child-rooted",
        "containerd.io/gc.root=x",
    ]);
    rt.block_on(async {
        assert_eq!(
            snapshot_names(&d, &[r#"parent=="""#]).await,
            set(&["base", "top"])
        );
        assert_eq!(
            snapshot_names(&d, &[r#"parent!="""#]).await,
            set(&["child-rooted", "child-plain"])
        );
        assert_eq!(
            snapshot_names(&d, &[r#"parent!="",labels."containerd.io/gc.root"==x"#]).await,
            set(&["child-rooted"])
        );
        assert_eq!(
            snapshot_names(&d, &[r#"parent=="",labels."containerd.io/gc.root"==x"#]).await,
            set(&[])
        );
        assert_eq!(
            snapshot_names(&d, &["parent==base"]).await,
            set(&["child-rooted", "child-plain"])
        );
    });

    // Containers: one with an image and a non-empty label, one without an
    // image and with the label set to "".
    rt.block_on(async {
        let mut c = cpb::containers_client::ContainersClient::new(channel(&d.address()).await);
        for (id, image, label) in [("web-1", "docker.io/x/web:1", "1"), ("db-web-2", "", "")] {
            let container = cpb::Container {
                id: id.into(),
                image: image.into(),
                labels: [("a".to_string(), label.to_string())].into(),
                runtime: Some(cpb::container::Runtime {
                    name: "io.containerd.runc.v2".into(),
                    options: None,
                }),
                spec: Some(prost_types::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                    value: b"{}".to_vec(),
                }),
                ..Default::default()
            };
            c.create(ns_req(
                "default",
                cpb::CreateContainerRequest {
                    container: Some(container),
                },
            ))
            .await
            .unwrap();
        }
    });
    let containers = |f: &str| names(&d.ctr_ok(&["containers", "ls", "-q", f]));
    assert_eq!(containers(r#"image!="""#), set(&["web-1"]));
    // containerd's container adaptor reports an empty image as absent, and
    // `==` needs the field present.
    assert_eq!(containers(r#"image=="""#), set(&[]));
    assert_eq!(containers(r#"labels.a!="""#), set(&["web-1"]));
    assert_eq!(containers(r#"labels.a=="""#), set(&["db-web-2"]));
    assert_eq!(containers(r#"labels.missing!="""#), set(&[]));
    assert_eq!(containers("labels.missing!=x"), set(&["web-1", "db-web-2"]));
    // The `|` quoting in a List: unquoted it would match both.
    assert_eq!(containers("id~=|^web-|"), set(&["web-1"]));

    // Leases with and without a label value.
    d.ctr_ok(&["leases", "create", "--id", "l-set", "k=v"]);
    d.ctr_ok(&["leases", "create", "--id", "l-none"]);
    let leases = |f: &str| names(&d.ctr_ok(&["leases", "ls", "-q", f]));
    assert_eq!(leases(r#"labels.k!="""#), set(&["l-set"]));
    assert_eq!(leases(r#"labels.k=="""#), set(&[]));
    assert_eq!(leases("id~=|^l-n|"), set(&["l-none"]));

    // Content: one blob labelled, one not.
    let ingest = |reference: &str, data: &str| {
        let mut child = std::process::Command::new("ctr")
            .arg("--address")
            .arg(d.address())
            .args(["content", "ingest", reference])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(data.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "ctr content ingest");
    };
    ingest("blob-a", "labelled blob");
    ingest("blob-b", "plain blob");
    let all = names(&d.ctr_ok(&["content", "ls", "-q"]));
    assert_eq!(all.len(), 2, "{all:?}");
    let labelled = all.iter().next().unwrap().clone();
    d.ctr_ok(&["content", "label", &labelled, "k=v"]);
    let content = |f: &str| names(&d.ctr_ok(&["content", "ls", "-q", f]));
    assert_eq!(content(r#"labels.k!="""#), set(&[&labelled]));
    assert_eq!(content(r#"labels.k=="""#), set(&[]));

    // Images: the target's media type is always set here; a label decides.
    rt.block_on(async {
        let mut c = ipb::images_client::ImagesClient::new(channel(&d.address()).await);
        for (name, label) in [("docker.io/x/a:1", Some("v")), ("docker.io/x/b:1", None)] {
            let image = ipb::Image {
                name: name.into(),
                labels: label
                    .map(|v| [("k".to_string(), v.to_string())].into())
                    .unwrap_or_default(),
                target: Some(berth_api::types::Descriptor {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    digest: format!("sha256:{}", "ab".repeat(32)),
                    size: 2,
                    annotations: Default::default(),
                }),
                ..Default::default()
            };
            c.create(ns_req(
                "default",
                ipb::CreateImageRequest { image: Some(image) },
            ))
            .await
            .unwrap();
        }
    });
    let images = |f: &str| names(&d.ctr_ok(&["images", "ls", "-q", f]));
    assert_eq!(images(r#"labels.k!="""#), set(&["docker.io/x/a:1"]));
    assert_eq!(
        images(r#"target.mediatype!="""#),
        set(&["docker.io/x/a:1", "docker.io/x/b:1"])
    );
    assert_eq!(images("name~=|/b:|"), set(&["docker.io/x/b:1"]));
}
