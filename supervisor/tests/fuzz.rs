//! Fuzzing (issue 19, item 14) of image reference parsing, as berthd reads
//! the references of pulls and pushes. See fuzz/engine.rs.

#[path = "../../fuzz/engine.rs"]
mod engine;

use berth_supervisor::registry::remote::parse_reference;

#[test]
fn fuzz_reference() {
    let seeds = [
        "busybox",
        "docker.io/library/busybox:latest",
        "localhost:5000/a/b:tag",
        "127.0.0.1:5000/x@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "[::1]:5000/img:1",
        "UPPER/case",
        "a:b:c",
    ];
    engine::run(
        "reference",
        seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        |input| {
            let Ok(s) = std::str::from_utf8(input) else {
                return;
            };
            match parse_reference(s) {
                Ok(r) => {
                    // What parsed names a registry and a repository, and
                    // its canonical form parses to the same reference.
                    assert!(!r.registry().is_empty(), "{s:?}");
                    assert!(!r.repository().is_empty(), "{s:?}");
                    let again = parse_reference(&r.whole())
                        .unwrap_or_else(|e| panic!("{s:?} -> {:?}: {e}", r.whole()));
                    assert_eq!(again.whole(), r.whole(), "{s:?}");
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.len() < 2048, "{} bytes echoed", msg.len());
                }
            }
        },
    );
}
