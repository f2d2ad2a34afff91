//! Issue 2 through berthctl: the content store (put/get/ls/label/rm/active/
//! abort), in tables and JSON, cross-checked with Debian's ctr.

use std::process::Command;

use berth_tests::{check, requires, Berthd};
use serde_json::Value;

/// Digest of a file through coreutils' sha256sum.
fn sha256_file(path: &std::path::Path) -> String {
    let out = check(
        Command::new("sha256sum")
            .arg(path)
            .output()
            .expect("sha256sum"),
        "sha256sum",
    );
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

#[test]
fn berthctl_content_put_get_label_rm() {
    requires(&["sha256sum", "ctr"]);
    let d = Berthd::start();
    let blob = d.dir().join("blob");
    {
        use std::io::{Read, Write};
        let mut src = std::fs::File::open("/dev/urandom").unwrap();
        let mut buf = vec![0u8; 64 << 20];
        src.read_exact(&mut buf).unwrap();
        std::fs::File::create(&blob)
            .unwrap()
            .write_all(&buf)
            .unwrap();
    }
    let digest = sha256_file(&blob);

    // With the expected digest given.
    let out = d
        .berthctl_cmd(&["content", "put", "ref-1", "--expected-digest", &digest])
        .stdin(std::fs::File::open(&blob).unwrap())
        .output()
        .unwrap();
    assert_eq!(check(out, "content put").trim(), digest);

    let ls = d.berthctl_ok(&["content", "ls"]);
    assert!(ls.starts_with("DIGEST"), "{ls}");
    let row = ls.lines().find(|l| l.starts_with(&digest)).expect("listed");
    assert!(row.contains("64.0 MiB"), "{ls}");
    let v = d.json(&["content", "ls"]);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["digest"], digest.as_str());
    assert_eq!(v[0]["size"], 64 << 20);

    // Identical bytes back.
    let got = d.dir().join("got");
    let status = d
        .berthctl_cmd(&["content", "get", &digest])
        .stdout(std::fs::File::create(&got).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::metadata(&got).unwrap().len(), 64 << 20);
    assert_eq!(sha256_file(&got), digest);

    // ctr sees it and reads the same bytes.
    let ctr_ls = d.ctr_ok(&["content", "ls"]);
    assert!(ctr_ls.contains(&digest), "{ctr_ls}");

    d.berthctl_ok(&["content", "label", &digest, "a=1", "b=2"]);
    d.berthctl_ok(&["content", "label", &digest, "b="]);
    let v = d.json(&["content", "ls"]);
    assert_eq!(v[0]["labels"], serde_json::json!({"a": "1"}), "{v}");
    let ctr_ls = d.ctr_ok(&["content", "ls"]);
    assert!(
        ctr_ls.contains("a=1") && !ctr_ls.contains("b=2"),
        "{ctr_ls}"
    );

    // Without a digest: computed from stdin; the same blob again.
    let small = d.dir().join("small");
    std::fs::write(&small, b"hello berth\n").unwrap();
    let small_digest = sha256_file(&small);
    let out = d
        .berthctl_cmd(&["-o", "json", "content", "put", "ref-2"])
        .stdin(std::fs::File::open(&small).unwrap())
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&check(out, "content put ref-2")).unwrap();
    assert_eq!(v["digest"], small_digest.as_str());
    assert_eq!(v["size"], 12);
    assert_eq!(v["ref"], "ref-2");

    // A wrong expected digest is refused and nothing is stored.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = d
        .berthctl_cmd(&["content", "put", "ref-3", "--expected-digest", &wrong])
        .stdin(std::fs::File::open(&small).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    let v = d.json(&["content", "ls"]);
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    // The refused ingest can be listed and aborted.
    let active = d.json(&["content", "active"]);
    if active
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["ref"] == "ref-3")
    {
        d.berthctl_ok(&["content", "abort", "ref-3"]);
    }
    let active = d.json(&["content", "active"]);
    assert!(
        !active
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["ref"] == "ref-3"),
        "{active}"
    );

    d.berthctl_ok(&["content", "rm", &digest, &small_digest]);
    assert_eq!(d.berthctl_ok(&["content", "ls", "-q"]), "");
    let err = d.berthctl_fails(&["content", "get", &digest]);
    assert!(err.contains("NotFound"), "{err}");
    let err = d.berthctl_fails(&["content", "rm", &digest]);
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn berthctl_content_put_by_ctr_get_by_berthctl() {
    requires(&["ctr"]);
    let d = Berthd::start();
    let data = b"written by ctr, read by berthctl";
    let path = d.dir().join("data");
    std::fs::write(&path, data).unwrap();
    let out = Command::new("ctr")
        .arg("--address")
        .arg(d.address())
        .args(["content", "ingest", "from-ctr"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .expect("ctr");
    check(out, "ctr content ingest");
    let v = d.json(&["content", "ls"]);
    let digest = v[0]["digest"].as_str().expect("digest").to_string();
    let out = d.berthctl(&["content", "get", &digest]);
    assert!(out.status.success());
    assert_eq!(out.stdout, data);
}

#[test]
fn berthctl_interrupted_put_resumes() {
    requires(&["sha256sum"]);
    use std::io::Write;
    let d = Berthd::start();
    let data: Vec<u8> = (0..(24u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let file = d.dir().join("data");
    std::fs::write(&file, &data).unwrap();
    let digest = sha256_file(&file);

    // Send the first 8 MiB, wait until the daemon holds them, then kill the
    // client mid-write.
    let mut child = d
        .berthctl_cmd(&["content", "put", "resume-me"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(&data[..8 << 20])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let held = loop {
        let active = d.json(&["content", "active"]);
        let off = active
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["ref"] == "resume-me")
            .and_then(|s| s["offset"].as_i64())
            .unwrap_or(0);
        if off >= 4 << 20 {
            break off;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no progress: {active}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(held > 0);

    // The same command again completes the blob from where it stopped.
    let out = d
        .berthctl_cmd(&[
            "-o",
            "json",
            "content",
            "put",
            "resume-me",
            "--expected-digest",
            &digest,
        ])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&check(out, "resumed put")).unwrap();
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["size"], 24 << 20);
    let active = d.json(&["content", "active"]);
    assert_eq!(active, serde_json::json!([]));
    let out = d.berthctl(&["content", "get", &digest]);
    assert!(out.status.success());
    assert!(out.stdout == data, "bytes read back differ");
}
