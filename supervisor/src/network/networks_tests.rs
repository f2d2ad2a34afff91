//! The list logic against fake plugins (shell scripts that log their calls):
//! ordering, prevResult, runtimeConfig, CNI_ARGS, the cache, failures and
//! cleanup, status and reload. No root needed: the "netns" is the test's
//! own /proc/self/ns/net, which is an nsfs file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::network::{ErrorKind, PortMapping, Protocol};

const OWN_NETNS: &str = "/proc/self/ns/net";

struct Fixture {
    dir: tempfile::TempDir,
    networks: Networks,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["conf", "bin", "cache"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let mut opts = NetworkOptions::new(dir.path().join("conf"), dir.path().join("cache"));
        opts.bin_dirs = vec![dir.path().join("nobin"), dir.path().join("bin")];
        opts.plugin_timeout = Duration::from_secs(20);
        Fixture {
            networks: Networks::new(opts),
            dir,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// A plugin that logs "COMMAND NAME netns=... args=..." and its stdin,
    /// prints a result on ADD, and fails (printing `fail_doc`, exit 1) for
    /// the commands in `fail_on`.
    fn plugin(&self, name: &str, fail_on: &[&str], fail_doc: &str) {
        let log = self.log();
        let result = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.89.250.2/24","gateway":"10.89.250.1","interface":0}]}"#;
        let fail_case = if fail_on.is_empty() {
            String::new()
        } else {
            format!(
                "  {})\n    printf '%s' '{fail_doc}'; exit 1;;\n",
                fail_on.join("|")
            )
        };
        let script = format!(
            "#!/bin/sh\ninput=$(cat)\nprintf '%s %s netns=%s args=%s\\n' \"$CNI_COMMAND\" {name} \"$CNI_NETNS\" \"$CNI_ARGS\" >> '{log}'\nprintf '%s\\n' \"$input\" >> '{log}.stdin'\ncase \"$CNI_COMMAND\" in\n{fail_case}  ADD) printf '%s' '{result}';;\nesac\nexit 0\n",
            log = log.display(),
        );
        let path = self.dir.path().join("bin").join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn conflist(&self, file: &str, body: Value) {
        fs::write(self.dir.path().join("conf").join(file), body.to_string()).unwrap();
    }

    fn standard(&self) {
        self.plugin("fake-bridge", &[], "");
        self.plugin("fake-portmap", &[], "");
        self.conflist(
            "10-test.conflist",
            json!({"cniVersion": "1.0.0", "name": "testnet", "plugins": [
                {"type": "fake-bridge", "bridge": "br-x"},
                {"type": "fake-portmap", "capabilities": {"portMappings": true}}
            ]}),
        );
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn stdins(&self) -> Vec<Value> {
        fs::read_to_string(format!("{}.stdin", self.log().display()))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn clear_log(&self) {
        let _ = fs::remove_file(self.log());
        let _ = fs::remove_file(format!("{}.stdin", self.log().display()));
    }
}

fn request(id: &str) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        netns: OWN_NETNS.into(),
        ifname: "eth0".into(),
        pod: Some(PodRef {
            namespace: "default".into(),
            name: "web".into(),
            uid: None,
        }),
        port_mappings: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
        }],
        ..Default::default()
    }
}

fn detach_req(id: &str) -> DetachRequest {
    DetachRequest {
        network: "testnet".into(),
        container_id: id.into(),
        ifname: "eth0".into(),
        netns: Some(OWN_NETNS.into()),
        pod: None,
    }
}

#[tokio::test]
async fn attach_runs_the_list_in_order_and_caches_the_result() {
    let fx = Fixture::new();
    fx.standard();
    let net = fx.networks.default_network().await.unwrap();
    assert_eq!(net.name(), "testnet");
    let att = net.attach(&request("pod1")).await.unwrap();
    assert_eq!(
        att.ips(),
        ["10.89.250.2".parse::<std::net::IpAddr>().unwrap()]
    );

    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=pod1";
    assert_eq!(
        fx.calls(),
        [
            format!("ADD fake-bridge netns={OWN_NETNS} args={args}"),
            format!("ADD fake-portmap netns={OWN_NETNS} args={args}"),
        ]
    );
    let stdins = fx.stdins();
    assert_eq!(stdins[0]["name"], "testnet");
    assert_eq!(stdins[0]["bridge"], "br-x");
    assert!(stdins[0].get("prevResult").is_none());
    assert!(stdins[0].get("runtimeConfig").is_none());
    assert_eq!(
        stdins[1]["prevResult"]["ips"][0]["address"],
        "10.89.250.2/24"
    );
    assert_eq!(
        stdins[1]["runtimeConfig"]["portMappings"],
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
    );

    // what a restarted berthd would read back
    let cached = fx
        .networks
        .attachment("testnet", "pod1", "eth0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cached.state, AttachState::Added);
    assert_eq!(cached.result.as_ref(), Some(&att.result));
    assert_eq!(fx.networks.attachments().await.unwrap(), [cached]);

    // a second ADD without a DEL is refused, and runs nothing
    fx.clear_log();
    let e = net.attach(&request("pod1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
    assert!(fx.calls().is_empty());
}

#[tokio::test]
async fn detach_runs_in_reverse_with_the_cached_result_and_is_idempotent() {
    let fx = Fixture::new();
    fx.standard();
    let net = fx.networks.default_network().await.unwrap();
    net.attach(&request("pod2")).await.unwrap();
    fx.clear_log();

    fx.networks.detach(&detach_req("pod2")).await.unwrap();
    let calls = fx.calls();
    assert!(calls[0].starts_with("DEL fake-portmap netns=/proc/self/ns/net args=IgnoreUnknown=1;K8S_POD_NAMESPACE=default"), "{calls:?}");
    assert!(calls[1].starts_with("DEL fake-bridge"), "{calls:?}");
    let stdins = fx.stdins();
    assert_eq!(
        stdins[0]["prevResult"]["ips"][0]["address"],
        "10.89.250.2/24"
    );
    // the ADD's capability args come back from the cache
    assert_eq!(
        stdins[0]["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert_eq!(
        fx.networks
            .attachment("testnet", "pod2", "eth0")
            .await
            .unwrap(),
        None
    );

    // again: nothing cached, the conf dir's list runs without prevResult
    fx.clear_log();
    fx.networks.detach(&detach_req("pod2")).await.unwrap();
    assert_eq!(fx.calls().len(), 2);
    assert!(fx.stdins()[0].get("prevResult").is_none());
}

#[tokio::test]
async fn detach_after_the_netns_is_gone_passes_an_empty_netns() {
    let fx = Fixture::new();
    fx.standard();
    fx.networks
        .default_network()
        .await
        .unwrap()
        .attach(&request("pod3"))
        .await
        .unwrap();
    fx.clear_log();
    // no dir to make a stand-in in: the plugins get an empty CNI_NETNS
    let mut req = detach_req("pod3");
    req.netns = Some(fx.dir.path().join("no-dir/netns-gone"));
    fx.networks.detach(&req).await.unwrap();
    let calls = fx.calls();
    assert!(calls.iter().all(|c| c.contains("netns= ")), "{calls:?}");
}

#[tokio::test]
async fn detach_after_the_netns_is_gone_uses_a_stand_in() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("!!! SKIP detach_after_the_netns_is_gone_uses_a_stand_in: needs root");
        return;
    }
    let fx = Fixture::new();
    fx.standard();
    fx.networks
        .default_network()
        .await
        .unwrap()
        .attach(&request("pod3s"))
        .await
        .unwrap();
    fx.clear_log();
    let nsdir = fx.dir.path().join("netns");
    fs::create_dir(&nsdir).unwrap();
    let gone = nsdir.join("gone");
    let mut req = detach_req("pod3s");
    req.netns = Some(gone.clone());
    fx.networks.detach(&req).await.unwrap();
    let calls = fx.calls();
    let want = format!("netns={} ", gone.display());
    assert!(
        calls.len() == 2 && calls.iter().all(|c| c.contains(&want)),
        "{calls:?}"
    );
    assert!(!gone.exists(), "the stand-in is removed after the DEL");
    crate::network::netns::release_dir(&nsdir).unwrap();
}

#[tokio::test]
async fn detach_uses_the_cached_list_after_the_config_is_gone() {
    let fx = Fixture::new();
    fx.standard();
    fx.networks
        .default_network()
        .await
        .unwrap()
        .attach(&request("pod4"))
        .await
        .unwrap();
    fs::remove_file(fx.dir.path().join("conf/10-test.conflist")).unwrap();
    fx.clear_log();
    fx.networks.detach(&detach_req("pod4")).await.unwrap();
    assert_eq!(fx.calls().len(), 2);
    // nothing cached, no config: nothing to undo, and that is fine
    fx.clear_log();
    fx.networks.detach(&detach_req("pod4")).await.unwrap();
    assert!(fx.calls().is_empty());
}

#[tokio::test]
async fn a_failed_add_is_undone_and_leaves_nothing() {
    let fx = Fixture::new();
    fx.standard();
    fx.plugin(
        "fake-portmap",
        &["ADD"],
        r#"{"cniVersion":"1.0.0","code":11,"msg":"iptables busy","details":"try later"}"#,
    );
    let net = fx.networks.default_network().await.unwrap();
    let e = net.attach(&request("pod5")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("iptables busy"), "{e}");
    let calls: Vec<String> = fx
        .calls()
        .iter()
        .map(|c| c.split(" netns").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        calls,
        [
            "ADD fake-bridge",
            "ADD fake-portmap",
            "DEL fake-portmap",
            "DEL fake-bridge"
        ]
    );
    assert!(fx.networks.attachments().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_cleanup_keeps_the_attachment_for_a_later_detach() {
    let fx = Fixture::new();
    fx.standard();
    let boom = r#"{"cniVersion":"1.0.0","code":5,"msg":"disk on fire"}"#;
    fx.plugin("fake-portmap", &["ADD", "DEL"], boom);
    let net = fx.networks.default_network().await.unwrap();
    net.attach(&request("pod6")).await.unwrap_err();
    let left = fx.networks.attachments().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, AttachState::Adding);
    assert_eq!(left[0].result, None);

    let e = fx.networks.detach(&detach_req("pod6")).await.unwrap_err();
    assert!(e.to_string().contains("disk on fire"), "{e}");
    assert_eq!(
        fx.networks.attachments().await.unwrap().len(),
        1,
        "kept for a retry"
    );

    // fixed: the retry cleans up; a "not found" answer counts as done
    fx.plugin(
        "fake-portmap",
        &["DEL"],
        r#"{"cniVersion":"1.0.0","code":999,"msg":"chain CNI-DN-x not found"}"#,
    );
    fx.networks.detach(&detach_req("pod6")).await.unwrap();
    assert!(fx.networks.attachments().await.unwrap().is_empty());

    // an attach after a crash left an "adding" entry undoes it first
    fx.plugin("fake-portmap", &["ADD"], boom);
    fx.plugin("fake-bridge", &["DEL"], boom);
    net.attach(&request("pod7")).await.unwrap_err();
    fx.standard();
    fx.clear_log();
    net.attach(&request("pod7")).await.unwrap();
    let calls: Vec<String> = fx
        .calls()
        .iter()
        .map(|c| c.split(" netns").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        calls,
        [
            "DEL fake-portmap",
            "DEL fake-bridge",
            "ADD fake-bridge",
            "ADD fake-portmap"
        ]
    );
}

#[tokio::test]
async fn missing_plugin_or_netns_fails_before_anything_runs() {
    let fx = Fixture::new();
    fx.plugin("fake-bridge", &[], "");
    fx.conflist(
        "10-test.conflist",
        json!({"cniVersion": "1.0.0", "name": "testnet", "plugins": [
            {"type": "fake-bridge"}, {"type": "no-such-plugin"}]}),
    );
    let net = fx.networks.default_network().await.unwrap();
    match net.attach(&request("pod8")).await.unwrap_err() {
        Error::PluginNotFound { plugin, dirs } => {
            assert_eq!(plugin, "no-such-plugin");
            assert_eq!(dirs.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(fx.calls().is_empty());
    assert!(fx.networks.attachments().await.unwrap().is_empty());
    let status = fx.networks.status().await;
    match &status {
        NetworkStatus::NotReady { message, .. } => {
            assert!(message.contains("no-such-plugin"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    fx.standard();
    let mut req = request("pod8");
    req.netns = fx.dir.path().join("nope");
    let e = fx
        .networks
        .default_network()
        .await
        .unwrap()
        .attach(&req)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(fx.calls().is_empty());
}

#[tokio::test]
async fn status_follows_the_conf_dir() {
    let fx = Fixture::new();
    let status = fx.networks.status().await;
    match &status {
        NetworkStatus::NotReady { reason, message } => {
            assert_eq!(reason, "NetworkPluginNotReady");
            assert!(
                message.starts_with("cni config not initialized"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    fx.conflist("05-bad.conflist", json!({"name": "x", "plugins": []}));
    match fx.networks.status().await {
        NetworkStatus::NotReady { message, .. } => {
            assert!(message.contains("cniVersion"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let e = fx.networks.default_network().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
    fx.standard();
    assert_eq!(
        fx.networks.status().await,
        NetworkStatus::Ready {
            network: "testnet".into()
        }
    );
    fs::remove_file(fx.dir.path().join("conf/10-test.conflist")).unwrap();
    assert!(!fx.networks.status().await.is_ready());
}

#[tokio::test]
async fn check_passes_the_cached_result() {
    let fx = Fixture::new();
    fx.standard();
    let e = fx.networks.check(&detach_req("pod9")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    fx.networks
        .default_network()
        .await
        .unwrap()
        .attach(&request("pod9"))
        .await
        .unwrap();
    fx.clear_log();
    fx.networks.check(&detach_req("pod9")).await.unwrap();
    let calls: Vec<String> = fx
        .calls()
        .iter()
        .map(|c| c.split(" netns").next().unwrap().to_owned())
        .collect();
    assert_eq!(calls, ["CHECK fake-bridge", "CHECK fake-portmap"]);
    assert!(fx
        .stdins()
        .iter()
        .all(|s| s["prevResult"]["ips"][0]["address"] == "10.89.250.2/24"));

    fx.plugin(
        "fake-bridge",
        &["CHECK"],
        r#"{"cniVersion":"1.0.0","code":999,"msg":"bridge has no address"}"#,
    );
    let e = fx.networks.check(&detach_req("pod9")).await.unwrap_err();
    assert!(e.to_string().contains("bridge has no address"), "{e}");
}

#[tokio::test]
async fn check_needs_0_4_0_and_honours_disable_check() {
    let fx = Fixture::new();
    fx.plugin(
        "fake-bridge",
        &["CHECK"],
        r#"{"cniVersion":"0.3.1","code":999,"msg":"should not run"}"#,
    );
    fx.conflist(
        "10-test.conflist",
        json!({"cniVersion": "0.3.1", "name": "testnet", "plugins": [{"type": "fake-bridge"}]}),
    );
    let net = fx.networks.default_network().await.unwrap();
    net.attach(&request("old")).await.unwrap();
    let e = fx.networks.check(&detach_req("old")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("0.4.0"), "{e}");
    fx.clear_log();
    fx.networks.detach(&detach_req("old")).await.unwrap();
    assert!(
        fx.stdins()[0].get("prevResult").is_none(),
        "no prevResult on DEL before 0.4.0"
    );

    fx.conflist(
        "10-test.conflist",
        json!({"cniVersion": "1.0.0", "name": "testnet", "disableCheck": true,
               "plugins": [{"type": "fake-bridge"}]}),
    );
    let net = fx.networks.default_network().await.unwrap();
    net.attach(&request("skip")).await.unwrap();
    fx.clear_log();
    fx.networks.check(&detach_req("skip")).await.unwrap();
    assert!(fx.calls().is_empty(), "disableCheck runs no plugin");
}

#[tokio::test]
async fn detach_container_removes_every_interface() {
    let fx = Fixture::new();
    fx.standard();
    let net = fx.networks.default_network().await.unwrap();
    let mut second = request("multi");
    second.ifname = "eth1".into();
    net.attach(&request("multi")).await.unwrap();
    net.attach(&second).await.unwrap();
    net.attach(&request("other")).await.unwrap();
    assert_eq!(
        fx.networks.detach_container("multi", None).await.unwrap(),
        2
    );
    let left: Vec<String> = fx
        .networks
        .attachments()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.container_id)
        .collect();
    assert_eq!(left, ["other"]);
}

#[tokio::test]
async fn bad_identifiers_and_args_are_refused() {
    let fx = Fixture::new();
    fx.standard();
    let net = fx.networks.default_network().await.unwrap();
    let mut req = request("../evil");
    assert_eq!(
        net.attach(&req).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    req.container_id = "ok".into();
    req.ifname = "eth0/x".into();
    assert_eq!(
        net.attach(&req).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    req.ifname = "eth0".into();
    req.args = vec![("A".into(), "x;B=y".into())];
    assert_eq!(
        net.attach(&req).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    req.args.clear();
    req.port_mappings[0].host_port = 0;
    assert_eq!(
        net.attach(&req).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert!(fx.calls().is_empty());
}

#[test]
fn own_netns_is_an_nsfs_file() {
    // the fixture relies on this
    NetNs::open(Path::new(OWN_NETNS)).unwrap();
}
