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

/// `WWW-Authenticate` values as a registry (or anything on the network
/// path) sends them on a 401, read by every pull: any bytes give
/// challenges with a scheme and named parameters, never a panic.
#[test]
fn fuzz_www_authenticate() {
    use berth_supervisor::registry::challenge::parse_challenges;
    let seeds = [
        r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        r#"Basic realm="Registry Realm", Bearer realm=x, service = "s\"q""#,
        r#"Bearer realm="open"#,
        "=x, ,=,\"",
    ];
    engine::run(
        "www_authenticate",
        seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        |input| {
            let Ok(s) = std::str::from_utf8(input) else {
                return;
            };
            for c in parse_challenges(s) {
                assert!(!c.scheme.is_empty(), "{s:?}");
                assert!(!c.scheme.contains([' ', ',', '=', '"']), "{s:?}");
                assert!(c.params.iter().all(|(k, _)| !k.is_empty()), "{s:?}");
                assert!(c.params.len() <= s.len(), "{s:?}");
            }
        },
    );
}

/// SPDY frames as the CRI streaming server reads them from a client
/// (issue 14): any bytes decode to frames or a refusal, never a panic, and
/// the decoder never holds more than the frame and header-block limits.
#[test]
fn fuzz_spdy_frames() {
    use berth_supervisor::cri::streaming::spdy::{Codec, Frame, FLAG_FIN};
    let mut seeds = Vec::new();
    let mut c = Codec::new();
    for f in [
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![("streamtype".into(), "error".into())],
        },
        Frame::SynStream {
            stream_id: 3,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![
                ("streamtype".into(), "data".into()),
                ("port".into(), "80".into()),
                ("requestid".into(), "0".into()),
            ],
        },
        Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        },
        Frame::Ping { id: 1 },
        Frame::Settings {
            flags: 0,
            entries: vec![(0, 7, 1 << 20)],
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 4096,
        },
        Frame::RstStream {
            stream_id: 3,
            status: 5,
        },
        Frame::GoAway {
            last_good: 3,
            status: 0,
        },
    ] {
        let mut one = Vec::new();
        c.encode(&f, &mut one).unwrap();
        seeds.push(one);
    }
    // The whole conversation too: later header blocks need the state of
    // the earlier ones.
    seeds.push(seeds.concat());
    engine::run("spdy_frames", seeds, |input| {
        let mut codec = Codec::new();
        let mut buf = input.to_vec();
        let mut frames = 0;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => frames += 1,
                Ok(None) => break,
                Err(e) => {
                    assert!(e.to_string().len() < 256, "{e}");
                    break;
                }
            }
            assert!(frames <= input.len(), "more frames than bytes");
        }
    });
}
