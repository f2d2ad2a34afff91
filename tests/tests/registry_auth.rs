//! Issue 6, registry auth and transport: htpasswd (basic), bearer-token
//! challenges, HTTPS with a per-registry CA file, insecure hosts from
//! berthd's config. Credentials go with each call and never reach the log.

use berth_tests::registry::{self, assert_nothing_stored, entry, pull_of, Registry, Transfer};
use berth_tests::{requires_root, Berthd};

#[test]
#[ignore = "needs root"]
fn htpasswd_auth_refuses_wrong_credentials_and_stores_nothing() {
    requires_root(registry::TOOLS);
    let reg = Registry::start_with_auth("berth", "s3cret-pass");
    let d = Berthd::start();
    let reference = reg.push_test_image("busybox", "oci-gzip");

    let anon = registry::pull(&d.address(), &pull_of(&reference)).unwrap_err();
    assert_eq!(anon.0, tonic::Code::Unauthenticated, "{anon:?}");
    let wrong = registry::pull(
        &d.address(),
        &Transfer {
            username: "berth".into(),
            password: "wr0ng-Pa55".into(),
            ..pull_of(&reference)
        },
    )
    .unwrap_err();
    assert_eq!(wrong.0, tonic::Code::Unauthenticated, "{wrong:?}");
    assert!(wrong.1.contains("authentication"), "{}", wrong.1);
    assert_nothing_stored(&d);
    assert!(
        !d.log().contains("s3cret-pass") && !d.log().contains("wr0ng-Pa55"),
        "secret in the log"
    );

    let ok = registry::pull(
        &d.address(),
        &Transfer {
            username: "berth".into(),
            password: "s3cret-pass".into(),
            ..pull_of(&reference)
        },
    )
    .unwrap_or_else(|e| panic!("pull with credentials: {e:?}\n{}", d.log()));
    assert_eq!(
        ok.result.digest,
        entry("busybox", "oci-gzip")["manifest_digest"]
            .as_str()
            .unwrap()
    );
    assert!(!d.log().contains("s3cret-pass"), "secret in the log");
}

#[test]
#[ignore = "needs root"]
fn bearer_token_challenge_is_answered_with_the_credentials() {
    requires_root(registry::TOOLS);
    let d = Berthd::start();
    let auth = registry::BearerAuth {
        user: "tok-user".into(),
        password: "t0ken-Pa55".into(),
        token: "opaque-token-42".into(),
    };
    let layer = b"not a tar: this image is only fetched".to_vec();
    let (fake, manifest) = registry::FakeRegistry::serve_image("app:v1", &layer, Some(auth));
    let reference = fake.reference("app:v1");
    let fetch_only = |user: &str, password: &str| Transfer {
        username: user.into(),
        password: password.into(),
        skip_unpack: true,
        ..pull_of(&reference)
    };
    let err = registry::pull(&d.address(), &fetch_only("tok-user", "wr0ng-Pa55")).unwrap_err();
    assert_eq!(err.0, tonic::Code::Unauthenticated, "{err:?}");
    assert_nothing_stored(&d);
    let anon = registry::pull(&d.address(), &pull_of(&reference)).unwrap_err();
    assert_eq!(anon.0, tonic::Code::Unauthenticated, "{anon:?}");

    let ok = registry::pull(&d.address(), &fetch_only("tok-user", "t0ken-Pa55"))
        .unwrap_or_else(|e| panic!("pull: {e:?}\n{:?}", fake.requests()));
    assert_eq!(ok.result.digest, manifest);
    assert!(
        fake.requests().iter().any(|r| r.starts_with("GET /token?")),
        "{:?}",
        fake.requests()
    );
    let log = d.log();
    assert!(
        !log.contains("t0ken-Pa55") && !log.contains("opaque-token-42"),
        "secret in the log"
    );
}

#[test]
#[ignore = "needs root"]
fn tls_with_a_ca_file_and_insecure_hosts_from_the_config() {
    requires_root(registry::TOOLS);
    let tls = Registry::start_tls();
    let plain = Registry::start();
    let over_tls = tls.push_test_image("busybox", "oci-gzip");
    let over_plain = plain.push_test_image("busybox", "oci-zstd");
    let https = |reference: &str| Transfer {
        tls: true,
        skip_unpack: true,
        ..pull_of(reference)
    };

    // System roots only: the test CA is unknown, nothing is stored.
    let d0 = Berthd::start();
    let err = registry::pull(&d0.address(), &https(&over_tls)).unwrap_err();
    assert_eq!(err.0, tonic::Code::Unavailable, "{err:?}");
    assert!(err.1.to_lowercase().contains("certificate"), "{}", err.1);
    assert_nothing_stored(&d0);
    // A plain-HTTP registry is not reached over plain HTTP unasked.
    assert!(registry::pull(&d0.address(), &https(&over_plain)).is_err());

    // The config trusts the CA for the TLS registry and lists the other as
    // insecure.
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "insecure_registries = [\"{}\"]\n\n[registry_ca_files]\n\"{}\" = \"{}\"\n",
            plain.host(),
            tls.host(),
            tls.ca_file().display()
        ),
    )
    .unwrap();
    let d = Berthd::start_with(&["--config", cfg.to_str().unwrap()]);
    let a = registry::pull(&d.address(), &https(&over_tls))
        .unwrap_or_else(|e| panic!("pull over TLS: {e:?}\n{}", d.log()));
    assert_eq!(
        a.result.digest,
        entry("busybox", "oci-gzip")["manifest_digest"]
            .as_str()
            .unwrap()
    );
    let b = registry::pull(&d.address(), &https(&over_plain))
        .unwrap_or_else(|e| panic!("pull from an insecure host: {e:?}\n{}", d.log()));
    assert_eq!(
        b.result.digest,
        entry("busybox", "oci-zstd")["manifest_digest"]
            .as_str()
            .unwrap()
    );
}

#[test]
#[ignore = "needs root"]
fn push_with_htpasswd_needs_the_right_credentials() {
    requires_root(registry::TOOLS);
    let reg = Registry::start_with_auth("pusher", "pu5h-Secret");
    let d = Berthd::start();
    let archive = berth_tests::images::busybox();
    d.ctr_ok(&["images", "import", "--no-unpack", archive.to_str().unwrap()]);
    let push = |user: &str, password: &str| Transfer {
        image: "docker.io/berthtest/busybox:oci-gzip".into(),
        reference: reg.reference("mine/busybox:v1"),
        username: user.into(),
        password: password.into(),
        ..Transfer::default()
    };
    let err = registry::push(&d.address(), &push("pusher", "wr0ng-Pa55")).unwrap_err();
    assert_eq!(err.0, tonic::Code::Unauthenticated, "{err:?}");
    let anon = registry::push(&d.address(), &push("", "")).unwrap_err();
    assert_eq!(anon.0, tonic::Code::Unauthenticated, "{anon:?}");
    let ok = registry::push(&d.address(), &push("pusher", "pu5h-Secret"))
        .unwrap_or_else(|e| panic!("push: {e:?}\n{}", d.log()));
    assert_eq!(
        ok.result.digest,
        entry("busybox", "oci-gzip")["manifest_digest"]
            .as_str()
            .unwrap()
    );
    assert!(!d.log().contains("pu5h-Secret"), "secret in the log");
}
