//! Bad configs and failing plugins with the real plugins: clear errors,
//! and nothing left on the host.

use std::path::Path;

use serde_json::json;

use super::{require_root, Lab};
use crate::network::{AttachRequest, Error, ErrorKind, NetworkStatus};

fn request(id: &str, netns: &Path) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        netns: netns.to_path_buf(),
        ifname: "eth0".into(),
        ..Default::default()
    }
}

fn bridge_exists(lab: &Lab) -> bool {
    Path::new("/sys/class/net").join(lab.bridge()).exists()
}

#[tokio::test]
async fn malformed_conflist_and_missing_plugin() {
    require_root!("malformed_conflist_and_missing_plugin");
    let lab = Lab::new(3);
    std::fs::write(lab.conf_dir().join("10-lab.conflist"), "{\"name\": \"x\", ").unwrap();
    match lab.networks.status().await {
        NetworkStatus::NotReady { reason, message } => {
            assert_eq!(reason, "NetworkPluginNotReady");
            assert!(message.contains("cni config not initialized"), "{message}");
            assert!(
                message.contains("10-lab.conflist") && message.contains("malformed JSON"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let e = lab.networks.default_network().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition);

    // a list naming a plugin that is not installed: refused before the
    // bridge plugin runs, so no bridge, lease, rule or cache entry appears
    lab.conflist(vec![
        lab.bridge_plugin(),
        json!({"type": "berth-no-such-plugin"}),
    ]);
    match lab.networks.status().await {
        NetworkStatus::NotReady { message, .. } => {
            assert!(
                message.contains("berth-no-such-plugin") && message.contains("/usr/lib/cni"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let net = lab.networks.default_network().await.unwrap();
    let ns = lab.netns("x");
    let id = lab.id("x");
    match net.attach(&request(&id, ns.path())).await.unwrap_err() {
        Error::PluginNotFound { plugin, dirs } => {
            assert_eq!(plugin, "berth-no-such-plugin");
            assert!(dirs.iter().any(|d| d == Path::new("/usr/lib/cni")));
        }
        other => panic!("{other:?}"),
    }
    assert!(!bridge_exists(&lab), "no plugin ran");
    assert!(lab.leases().is_empty());
    assert!(lab.leftover_rules().is_empty());
    assert!(lab.networks.attachments().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_plugin_failing_mid_list_leaves_nothing() {
    require_root!("a_plugin_failing_mid_list_leaves_nothing");
    let lab = Lab::new(4);
    // tuning fails on a sysctl that does not exist, after bridge made the
    // veth, took a lease and set up masquerading
    lab.conflist(vec![
        lab.bridge_plugin(),
        json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.berth_no_such_knob": "1"}}),
    ]);
    let net = lab.networks.default_network().await.unwrap();
    let ns = lab.netns("fail");
    let id = lab.id("fail");
    let e = net.attach(&request(&id, ns.path())).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("cni plugin tuning failed (ADD)"), "{text}");
    assert!(matches!(e, Error::Plugin { .. }), "{e:?}");

    assert!(lab.leases().is_empty(), "lease released");
    assert!(lab.bridge_ports().is_empty(), "veth removed");
    assert_eq!(lab.leftover_rules(), Vec::<String>::new());
    assert!(lab.networks.attachments().await.unwrap().is_empty());
    let (ok, links) = lab.busybox_in(&ns, &["ip", "-o", "link"]);
    assert!(ok && !links.contains("eth0"), "{links}");
}
