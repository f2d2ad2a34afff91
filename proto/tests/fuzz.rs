//! Fuzzing (issue 19, item 14) of the parsers every side shares: digests,
//! identifiers and labels, and the `containerd-namespace` header as berthd
//! reads it. See fuzz/engine.rs for how the runs work.

#[path = "../../fuzz/engine.rs"]
mod engine;

use berth_api::echo::ECHO_MAX;
use berth_api::identifiers::{validate, validate_label, MAX_LEN};
use berth_api::Digest;

fn seeds(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Messages echo at most ECHO_MAX bytes of the value (each escaped in at
/// most 10 characters, `\u{10ffff}`) plus fixed text.
fn short(msg: &str) {
    assert!(
        msg.len() <= ECHO_MAX * 10 + 200,
        "message of {} bytes",
        msg.len()
    );
}

#[test]
fn fuzz_digest() {
    let good = Digest::of(b"x").to_string();
    engine::run(
        "digest",
        seeds(&[
            &good,
            "sha256:",
            "sha512:abc",
            "nocolon",
            &good.to_uppercase(),
        ]),
        |input| {
            let Ok(s) = std::str::from_utf8(input) else {
                return;
            };
            match s.parse::<Digest>() {
                Ok(d) => {
                    // Only the canonical form parses, and it round-trips.
                    assert_eq!(d.to_string(), s);
                    assert_eq!(d.hex().len(), 64);
                    assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
                }
                Err(e) => short(&e.to_string()),
            }
        },
    );
}

#[test]
fn fuzz_identifier() {
    engine::run(
        "identifier",
        seeds(&["default", "k8s.io", "a-b_c.d", "a..b", "-a", "a/b", "x"]),
        |input| {
            let Ok(s) = std::str::from_utf8(input) else {
                return;
            };
            match validate("id", s) {
                Ok(()) => {
                    assert!(!s.is_empty() && s.len() <= MAX_LEN);
                    assert!(s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
                    assert!(!s.contains("..") && !s.contains('/'));
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with("id:"), "{msg}");
                    short(&msg);
                }
            }
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            if let Err(msg) = validate_label(k, v) {
                short(&msg);
            }
        },
    );
}

/// The namespace header as berthd reads it: gRPC metadata (ASCII), then
/// the identifier rules.
#[test]
fn fuzz_namespace_header() {
    engine::run(
        "namespace_header",
        seeds(&["default", "k8s.io", "moby", "a b", "\u{7f}"]),
        |input| {
            let Ok(v) = tonic::metadata::MetadataValue::<tonic::metadata::Ascii>::try_from(input)
            else {
                return;
            };
            let Ok(s) = v.to_str() else {
                return;
            };
            if validate("namespace", s).is_ok() {
                // A namespace is usable as one path component.
                assert!(!s.contains('/') && s != "." && s != "..");
                let mut md = tonic::metadata::MetadataMap::new();
                md.insert(berth_api::namespace::GRPC_HEADER, v.clone());
                assert_eq!(
                    md.get(berth_api::namespace::GRPC_HEADER)
                        .unwrap()
                        .to_str()
                        .unwrap(),
                    s
                );
            }
        },
    );
}
