//! The log writer against real files: formats, partial lines across
//! writes, rotation boundaries, appending after a restart, reopening.

use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn opts(path: &Path, format: Format, max_size: u64, max_files: u32) -> LogOptions {
    LogOptions {
        path: path.to_path_buf(),
        format,
        max_size,
        max_files,
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn cri_lines_from_both_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pods/c/0.log");
    let mut w = LogWriter::open(opts(&path, Format::Cri, 0, 0)).unwrap();
    w.write(Stream::Stdout, b"hello\nwor", t(1));
    w.write(Stream::Stderr, b"oops\r\n", t(2));
    w.write(Stream::Stdout, b"ld\n", t(3));
    w.write(Stream::Stdout, b"no newline", t(4));
    w.finish(Stream::Stdout, t(5));
    w.finish(Stream::Stderr, t(5));
    assert_eq!(
        read(&path),
        "2023-11-14T22:13:21.000000000Z stdout F hello\n\
         2023-11-14T22:13:22.000000000Z stderr F oops\n\
         2023-11-14T22:13:23.000000000Z stdout F world\n\
         2023-11-14T22:13:25.000000000Z stdout P no newline\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn reopen_follows_the_kubelets_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let mut w = LogWriter::open(opts(&path, Format::Cri, 0, 0)).unwrap();
    w.write(Stream::Stdout, b"before\n", t(1));
    std::fs::rename(&path, dir.path().join("0.log.20231114")).unwrap();
    w.write(Stream::Stdout, b"moved\n", t(2));
    w.reopen().unwrap();
    w.write(Stream::Stdout, b"after\n", t(3));
    let old = read(&dir.path().join("0.log.20231114"));
    assert!(
        old.contains("F before\n") && old.contains("F moved\n"),
        "{old}"
    );
    assert_eq!(
        read(&path),
        "2023-11-14T22:13:23.000000000Z stdout F after\n"
    );
}

/// Lines of 20 bytes of text; each json entry is 90 bytes.
fn json_line(i: usize) -> String {
    format!("line {i:014}\n")
}

#[test]
fn json_file_rotates_at_entry_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let entry_len = {
        let mut out = Vec::new();
        format::encode(
            Format::JsonFile,
            &mut out,
            &format::timestamp(t(0)),
            Stream::Stdout,
            json_line(0).trim_end().as_bytes(),
            format::End::Lf,
        );
        out.len() as u64
    };
    // Room for exactly three entries per file; four files kept.
    let max = 3 * entry_len;
    let mut w = LogWriter::open(opts(&path, Format::JsonFile, max, 4)).unwrap();
    // 14 lines in one write and then one by one: 14 entries = 5 files' worth.
    let all: String = (0..7).map(json_line).collect();
    w.write(Stream::Stdout, all.as_bytes(), t(0));
    for i in 7..14 {
        w.write(Stream::Stdout, json_line(i).as_bytes(), t(0));
    }
    let file = |n: u32| {
        if n == 0 {
            path.clone()
        } else {
            dir.path().join(format!("c-json.log.{n}"))
        }
    };
    let logs = |n: u32| -> Vec<String> {
        read(&file(n))
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(v["stream"] == "stdout" || v["stream"] == "stderr", "{v}");
                assert_eq!(v["time"], "2023-11-14T22:13:20.000000000Z");
                v["log"].as_str().unwrap().trim_end().to_string()
            })
            .collect()
    };
    // Newest last: PATH holds 12 and 13, PATH.1 9..11, PATH.2 6..8,
    // PATH.3 3..5; 0..2 were rotated out.
    assert_eq!(
        logs(0),
        [json_line(12), json_line(13)].map(|l| l.trim_end().to_string())
    );
    assert_eq!(logs(1).len(), 3);
    assert_eq!(logs(1)[0], json_line(9).trim_end());
    assert_eq!(logs(3)[0], json_line(3).trim_end());
    assert!(!file(4).exists(), "max_files 4 keeps PATH..PATH.3");
    for n in 0..4 {
        let size = std::fs::metadata(file(n)).unwrap().len();
        assert!(size <= max, "{}: {size} > {max}", file(n).display());
        assert_eq!(size % entry_len, 0, "whole entries only");
    }

    // A restarted container appends to what is there and keeps rotating.
    drop(w);
    let mut w = LogWriter::open(opts(&path, Format::JsonFile, max, 4)).unwrap();
    w.write(Stream::Stderr, json_line(14).as_bytes(), t(0));
    assert_eq!(logs(0).len(), 3);
    w.write(Stream::Stderr, json_line(15).as_bytes(), t(0));
    assert_eq!(logs(0), [json_line(15).trim_end().to_string()]);
    assert_eq!(logs(1)[2], json_line(14).trim_end());
}

#[test]
fn json_file_with_one_file_truncates_and_big_entries_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.log");
    let mut w = LogWriter::open(opts(&path, Format::JsonFile, 200, 1)).unwrap();
    for i in 0..5 {
        w.write(Stream::Stdout, json_line(i).as_bytes(), t(0));
    }
    let text = read(&path);
    assert!(text.len() <= 200, "{text}");
    assert!(text.contains("line 00000000000004"), "{text}");
    assert!(!dir.path().join("one.log.1").exists());
    // An entry larger than max_size gets a file of its own.
    let big = format!("{}\n", "b".repeat(500));
    w.write(Stream::Stdout, big.as_bytes(), t(0));
    let text = read(&path);
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains(&"b".repeat(500)));
    w.write(Stream::Stdout, b"small\n", t(0));
    assert_eq!(read(&path).lines().count(), 1, "rotated after the big one");
}

#[test]
fn long_lines_become_partial_json_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.log");
    let mut w = LogWriter::open(opts(&path, Format::JsonFile, 0, 0)).unwrap();
    let line = format!("{}tail\n", "z".repeat(MAX_LINE));
    for chunk in line.as_bytes().chunks(5000) {
        w.write(Stream::Stdout, chunk, t(0));
    }
    let logs: Vec<String> = read(&path)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["log"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(logs, ["z".repeat(MAX_LINE), "tail\n".to_string()]);
}
