//! Issue 13 (registry hosts): a pull reaches a registry through its
//! hosts.toml endpoints in file order, sends each endpoint its `header`
//! table, uses an `override_path` URL as the API root, and falls back past
//! an endpoint that refuses connections, answers 5xx or 404, to the next
//! one and last to the server, unless the config forbids pulling there.

use std::path::Path;

use berth_tests::registry::{self, entry, pull_of, FakeRegistry, Mirror, Registry, Transfer};
use berth_tests::{requires_root, Berthd};

/// A 127.0.0.1 port nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

fn write_hosts(dir: &Path, registry: &str, text: &str) {
    std::fs::create_dir_all(dir.join(registry)).unwrap();
    std::fs::write(dir.join(registry).join("hosts.toml"), text).unwrap();
}

/// The schemes come from hosts.toml (not forced to plain HTTP).
fn pull(reference: &str) -> Transfer {
    Transfer {
        tls: true,
        ..pull_of(reference)
    }
}

#[test]
#[ignore = "needs root"]
fn headers_override_path_and_fallback_through_every_host() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    reg.push_test_image("busybox", "oci-gzip");
    let certs = tempfile::tempdir().unwrap();
    let d = Berthd::start_with(&["--registry-config-path", certs.path().to_str().unwrap()]);
    let refused = closed_port();
    let broken = Mirror::failing("503 Service Unavailable");
    let empty = FakeRegistry::start(Vec::new(), None);
    let empty_host = empty.reference("x").trim_end_matches("/x").to_string();
    let good = Mirror::forward(&reg.host(), "/mirror/root");
    // origin.test exists nowhere; its server refuses connections too.
    write_hosts(
        certs.path(),
        "origin.test",
        &format!(
            r#"server = "http://{refused}"
[host."http://{refused}"]
  capabilities = ["pull", "resolve"]
[host."http://{broken}"]
  capabilities = ["pull", "resolve"]
  [host."http://{broken}".header]
    x-who = "broken"
[host."http://{empty_host}"]
  capabilities = ["pull", "resolve"]
[host."http://{good}/mirror/root"]
  capabilities = ["pull", "resolve"]
  override_path = true
  [host."http://{good}/mirror/root".header]
    x-berth-token = "s3cret-header"
    x-many = ["a", "b"]
"#,
            broken = broken.host(),
            good = good.host(),
        ),
    );
    let out = registry::pull(&d.address(), &pull("origin.test/busybox:oci-gzip"))
        .unwrap_or_else(|e| panic!("pull through hosts.toml: {e:?}\n{}", d.log()));
    assert_eq!(
        out.result.digest,
        entry("busybox", "oci-gzip")["manifest_digest"]
            .as_str()
            .unwrap()
    );
    let ls = d.ctr_ok(&["images", "ls", "-q"]);
    assert!(
        ls.lines().any(|l| l == "origin.test/busybox:oci-gzip"),
        "{ls}"
    );

    // The broken mirror was asked first, with its own header only.
    let b = broken.seen();
    assert!(!b.is_empty(), "the 503 mirror was never asked");
    assert_eq!(b[0].target, "/v2/busybox/manifests/oci-gzip?ns=origin.test");
    assert_eq!(b[0].header("x-who"), ["broken"]);
    assert!(b[0].header("x-berth-token").is_empty());
    // Then the one that knows no such image (404).
    assert!(
        empty
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /v2/busybox/manifests/oci-gzip?ns=origin.test")),
        "{:?}",
        empty.requests()
    );
    // The good mirror served it all under its own root (no /v2), every
    // request with its headers.
    let g = good.seen();
    assert!(
        g.iter().any(|s| s.target.contains("/manifests/"))
            && g.iter().any(|s| s.target.contains("/blobs/")),
        "{g:?}"
    );
    for s in &g {
        assert!(
            s.target.starts_with("/mirror/root/busybox/"),
            "path not overridden: {s:?}"
        );
        assert_eq!(s.header("x-berth-token"), ["s3cret-header"], "{s:?}");
        assert_eq!(s.header("x-many"), ["a", "b"], "{s:?}");
        assert!(s.header("x-who").is_empty(), "{s:?}");
    }
}

#[test]
#[ignore = "needs root"]
fn the_server_is_the_last_resort_unless_the_config_forbids_it() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let reference = reg.push_test_image("busybox", "oci-gzip");
    let certs = tempfile::tempdir().unwrap();
    let d = Berthd::start_with(&["--registry-config-path", certs.path().to_str().unwrap()]);
    let broken = Mirror::failing("500 Internal Server Error");
    let hosts = |server_caps: &str| {
        write_hosts(
            certs.path(),
            &reg.host(),
            &format!(
                "server = \"http://{}\"\n{server_caps}\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                reg.host(),
                broken.host()
            ),
        )
    };
    hosts("");
    let out = registry::pull(&d.address(), &pull(&reference))
        .unwrap_or_else(|e| panic!("pull with the mirror down: {e:?}\n{}", d.log()));
    assert_eq!(
        out.result.digest,
        entry("busybox", "oci-gzip")["manifest_digest"]
            .as_str()
            .unwrap()
    );
    assert!(!broken.seen().is_empty(), "the mirror was never asked");
    let asked = broken.seen().len();

    // The server may only be pushed to: the mirror's failure is the answer.
    hosts("capabilities = [\"push\"]");
    let e = registry::pull(&d.address(), &pull(&reference)).unwrap_err();
    assert_eq!(e.0, tonic::Code::Unavailable, "{e:?}");
    assert!(e.1.contains(&broken.host()) && e.1.contains("500"), "{e:?}");
    assert!(broken.seen().len() > asked);
}
