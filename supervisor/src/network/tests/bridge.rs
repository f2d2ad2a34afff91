//! ADD, CHECK and DEL through the real bridge, host-local, portmap,
//! loopback and firewall plugins: addresses inside the netns, traffic
//! between two namespaces and from the host, a published port on
//! 127.0.0.1, CHECK, and nothing left after DEL (also when the netns went
//! first).
//!
//! CHECK runs on a list without portmap: Debian's portmap (1.1.1) fails
//! CHECK of any IPv4-only attachment, looking for ip6tables chains it never
//! made (containernetworking/plugins issue 819, fixed upstream later).

use std::net::{IpAddr, SocketAddr};

use super::{free_port, http_get, require_root, wait_for, Lab};
use crate::network::bridge::{self, BridgeNetwork};
use crate::network::{
    AttachRequest, Attachment, DetachRequest, NetNs, NetworkOptions, Networks, PodRef, PortMapping,
    Protocol,
};

fn pod_request(id: &str, ns: &NetNs, ports: Vec<PortMapping>) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        netns: ns.path().to_path_buf(),
        ifname: "eth0".into(),
        pod: Some(PodRef {
            namespace: "berth-test".into(),
            name: id.into(),
            uid: None,
        }),
        port_mappings: ports,
        ..Default::default()
    }
}

fn detach_request(lab: &Lab, id: &str, ns: Option<&NetNs>) -> DetachRequest {
    DetachRequest {
        network: lab.network_name(),
        container_id: id.into(),
        ifname: "eth0".into(),
        netns: ns.map(|n| n.path().to_path_buf()),
        pod: None,
    }
}

fn ipv4(att: &Attachment) -> IpAddr {
    let ips = att.ips();
    assert_eq!(ips.len(), 1, "{:?}", att.result);
    ips[0]
}

/// Asserts that nothing of the lab's attachments is left on the host.
async fn assert_nothing_left(lab: &Lab) {
    assert_eq!(
        lab.leftover_rules(),
        Vec::<String>::new(),
        "iptables rules left"
    );
    assert_eq!(lab.leases(), Vec::<String>::new(), "host-local leases left");
    assert_eq!(
        lab.bridge_ports(),
        Vec::<String>::new(),
        "veths left on the bridge"
    );
    assert!(
        lab.networks.attachments().await.unwrap().is_empty(),
        "cache entries left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_on_a_bridge_talk_and_publish_a_port() {
    require_root!("two_namespaces_on_a_bridge_talk_and_publish_a_port");
    let lab = Lab::new(0);
    lab.standard_conflist();
    assert!(lab.networks.status().await.is_ready());
    let net = lab.networks.default_network().await.unwrap();
    assert_eq!(net.name(), lab.network_name());

    let (a_ns, b_ns) = (lab.netns("a"), lab.netns("b"));
    let (a_id, b_id) = (lab.id("a"), lab.id("b"));
    let port = free_port();
    let published = PortMapping {
        host_port: port,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    };
    let a = net
        .attach(&pod_request(&a_id, &a_ns, vec![]))
        .await
        .unwrap();
    let b = net
        .attach(&pod_request(&b_id, &b_ns, vec![published]))
        .await
        .unwrap();
    let (a_ip, b_ip) = (ipv4(&a), ipv4(&b));
    assert_ne!(a_ip, b_ip);
    assert!(
        a_ip.to_string()
            .starts_with(&format!("10.89.{}.", lab.index)),
        "{a_ip}"
    );

    // the result: the bridge on the host, eth0 in the sandbox with its
    // address (loopback, last in the list, passed the result through)
    let eth0 = a
        .result
        .interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .unwrap();
    assert_eq!(eth0.sandbox.as_deref(), Some(a_ns.path().to_str().unwrap()));
    assert!(a
        .result
        .interfaces
        .iter()
        .any(|i| i.name == lab.bridge() && i.sandbox.is_none()));
    assert_eq!(a.result.ips_of("eth0")[0].to_string(), format!("{a_ip}/24"));
    assert_eq!(
        a.result.ips[0].gateway,
        Some(lab.gateway().parse().unwrap())
    );

    // what the kernel says inside the namespace
    let (ok, addrs) = lab.busybox_in(&a_ns, &["ip", "-o", "addr", "show", "eth0"]);
    assert!(ok && addrs.contains(&format!("inet {a_ip}/24")), "{addrs}");
    assert_eq!(lab.leases().len(), 2);
    assert_eq!(lab.bridge_ports().len(), 2);

    // a -> b
    let (ok, out) = lab.busybox_in(&a_ns, &["ping", "-c", "1", "-W", "3", &b_ip.to_string()]);
    assert!(ok, "ping a -> b: {out}");

    // a web server in b, reached from the host, from a, and on the
    // published port from the host's 127.0.0.1
    lab.serve_in(&b_ns, "hello from b");
    let b_web = SocketAddr::new(b_ip, 80);
    let page = wait_for(10, || http_get(b_web).ok()).expect("httpd in b answers the host");
    assert!(page.contains("hello from b"), "{page}");
    let (ok, out) = lab.busybox_in(
        &a_ns,
        &["wget", "-q", "-O", "-", &format!("http://{b_ip}/")],
    );
    assert!(ok && out.contains("hello from b"), "wget a -> b: {out}");
    // a connection made inside a (the enter helper) is usable from here
    let from_a = a_ns.run(move || http_get(b_web)).unwrap().unwrap();
    assert!(from_a.contains("hello from b"));
    // 127.0.0.1:PORT works the way it does for containerd's users: the
    // portmap plugin (snat on, its default) DNATs locally generated
    // traffic in the nat OUTPUT chain, marks connections from 127.0.0.1
    // for masquerading, and sets route_localnet on the bridge so the
    // kernel routes a 127/8 source out of it
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    let mapped =
        wait_for(10, || http_get(local).ok()).expect("published port answers on 127.0.0.1");
    assert!(mapped.contains("hello from b"), "{mapped}");
    let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", lab.bridge());
    assert_eq!(std::fs::read_to_string(localnet).unwrap().trim(), "1");

    // a restarted berthd (a new Networks on the same dirs) still knows the IPs
    let again = Networks::new(NetworkOptions::new(
        lab.conf_dir(),
        lab.dir.path().join("cache"),
    ));
    let cached = again
        .attachment(&lab.network_name(), &b_id, "eth0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cached.result.as_ref(), Some(&b.result));

    // DEL: everything goes; the published port no longer reaches b
    assert!(
        !lab.leftover_rules().is_empty(),
        "ADD made rules to check against"
    );
    lab.networks
        .detach(&detach_request(&lab, &a_id, Some(&a_ns)))
        .await
        .unwrap();
    lab.networks
        .detach(&detach_request(&lab, &b_id, Some(&b_ns)))
        .await
        .unwrap();
    assert_nothing_left(&lab).await;
    assert!(http_get(local).is_err(), "the published port is gone");
    let (ok, links) = lab.busybox_in(&a_ns, &["ip", "-o", "link"]);
    assert!(ok && !links.contains("eth0"), "eth0 left in a: {links}");
    // twice is fine
    lab.networks
        .detach(&detach_request(&lab, &a_id, Some(&a_ns)))
        .await
        .unwrap();
    assert_nothing_left(&lab).await;
}

#[tokio::test]
async fn del_after_the_netns_is_gone_cleans_the_host() {
    require_root!("del_after_the_netns_is_gone_cleans_the_host");
    let lab = Lab::new(1);
    // at 0.4.0 this time: results carry per-IP versions, DEL gets the
    // cached result back at that version
    lab.conflist_at(
        "0.4.0",
        vec![
            lab.bridge_plugin(),
            serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            serde_json::json!({"type": "loopback"}),
        ],
    );
    let net = lab.networks.default_network().await.unwrap();
    let ns = lab.netns("gone");
    let id = lab.id("gone");
    let port = free_port();
    let mapping = PortMapping {
        host_port: port,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: Some("127.0.0.1".parse().unwrap()),
    };
    let att = net
        .attach(&pod_request(&id, &ns, vec![mapping]))
        .await
        .unwrap();
    assert_eq!(att.result.cni_version, "0.4.0");
    assert!(ipv4(&att).to_string().starts_with("10.89.1."));
    assert_eq!(lab.leases().len(), 1);
    assert!(!lab.leftover_rules().is_empty());

    // the namespace goes first (its veth with it), then DEL
    crate::network::netns::remove(ns.path()).unwrap();
    lab.networks
        .detach(&detach_request(&lab, &id, Some(&ns)))
        .await
        .unwrap();
    assert_nothing_left(&lab).await;
    lab.networks
        .detach(&detach_request(&lab, &id, Some(&ns)))
        .await
        .unwrap();
    lab.networks
        .detach(&detach_request(&lab, &id, None))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_berth_bridge_network_with_firewall() {
    require_root!("a_berth_bridge_network_with_firewall");
    let lab = Lab::new(2);
    let mut spec = BridgeNetwork::new(
        &lab.network_name(),
        &lab.bridge(),
        lab.subnet().parse().unwrap(),
    );
    spec.gateway = Some(lab.gateway().parse().unwrap());
    spec.ipam_data_dir = Some(lab.ipam_dir());
    bridge::write_conflist(&lab.conf_dir(), &spec).unwrap();

    let net = lab.networks.network(&lab.network_name()).await.unwrap();
    let types: Vec<&str> = net
        .conf()
        .plugins
        .iter()
        .map(|p| p.plugin_type.as_str())
        .collect();
    assert_eq!(types, ["bridge", "portmap", "firewall"]);
    let ns = lab.netns("web");
    let id = lab.id("web");
    let port = free_port();
    let mut req = pod_request(
        &id,
        &ns,
        vec![PortMapping {
            host_port: port,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
        }],
    );
    req.pod = None; // a Docker-style container: no K8S_* args
    let att = net.attach(&req).await.unwrap();
    let ip = ipv4(&att);
    // the firewall plugin let the container's traffic through
    let rules = lab.leftover_rules();
    assert!(
        rules
            .iter()
            .any(|r| r.starts_with("filter: -A CNI-FORWARD") && r.contains(&ip.to_string())),
        "{rules:#?}"
    );
    lab.serve_in(&ns, "berth network");
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    let page = wait_for(10, || http_get(local).ok()).expect("published port answers");
    assert!(page.contains("berth network"));
    assert_eq!(
        lab.networks
            .detach_container(&id, Some(ns.path()))
            .await
            .unwrap(),
        1
    );
    assert_nothing_left(&lab).await;

    // removing the network: its file, its leases, its bridge
    assert!(bridge::remove_conflist(&lab.conf_dir(), &lab.network_name()).unwrap());
    bridge::remove_leases(&lab.ipam_dir(), &lab.network_name()).unwrap();
    assert!(bridge::delete_bridge(&lab.bridge()).unwrap());
    assert!(!std::path::Path::new("/sys/class/net")
        .join(lab.bridge())
        .exists());
    assert!(!bridge::delete_bridge(&lab.bridge()).unwrap());
}

#[tokio::test]
async fn check_finds_a_broken_attachment() {
    require_root!("check_finds_a_broken_attachment");
    let lab = Lab::new(5);
    lab.conflist(vec![
        lab.bridge_plugin(),
        serde_json::json!({"type": "loopback"}),
    ]);
    let net = lab.networks.default_network().await.unwrap();
    let ns = lab.netns("chk");
    let id = lab.id("chk");
    net.attach(&pod_request(&id, &ns, vec![])).await.unwrap();
    lab.networks
        .check(&detach_request(&lab, &id, Some(&ns)))
        .await
        .unwrap();

    // someone removes the container's address: CHECK says so
    let att = lab
        .networks
        .attachment(&lab.network_name(), &id, "eth0")
        .await
        .unwrap()
        .unwrap();
    let addr = att.result.unwrap().ips_of("eth0")[0].to_string();
    let (ok, out) = lab.busybox_in(&ns, &["ip", "addr", "del", &addr, "dev", "eth0"]);
    assert!(ok, "{out}");
    let e = lab
        .networks
        .check(&detach_request(&lab, &id, Some(&ns)))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("cni plugin bridge failed (CHECK)"),
        "{e}"
    );
    // put back, CHECK is happy again (and the bridge plugin's DEL, which
    // finds the masquerading rules to remove through the address, works)
    let (ok, out) = lab.busybox_in(&ns, &["ip", "addr", "add", &addr, "dev", "eth0"]);
    assert!(ok, "{out}");
    let gw = lab.gateway();
    let (ok, out) = lab.busybox_in(
        &ns,
        &["ip", "route", "add", "default", "via", &gw, "dev", "eth0"],
    );
    assert!(ok, "{out}");
    lab.networks
        .check(&detach_request(&lab, &id, Some(&ns)))
        .await
        .unwrap();

    lab.networks
        .detach(&detach_request(&lab, &id, Some(&ns)))
        .await
        .unwrap();
    assert_nothing_left(&lab).await;
}
