//! Log files the shim writes itself (CreateRequest.log), against the real
//! runc: the CRI format and ReopenLog, Docker's json-file format with
//! rotation and appending across runs, a terminal's output, and a container
//! that writes a lot without anybody reading.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_api::shim::v1::{self as pb};
use common::*;
use serde_json::Value;
use tonic::Code;

fn log_req(
    fx: &Fixture,
    path: &Path,
    format: pb::LogFormat,
    max_size: u64,
    max_files: u32,
) -> pb::CreateRequest {
    let mut req = fx.create_request("", "");
    req.log = Some(pb::LogFile {
        path: path.display().to_string(),
        format: format as i32,
        max_size,
        max_files,
    });
    req
}

/// One CRI log line: (time, stream, tag, text).
fn cri_line(line: &str) -> (String, String, String, String) {
    let mut parts = line.splitn(4, ' ');
    let mut next = || {
        parts
            .next()
            .unwrap_or_else(|| panic!("{line:?}"))
            .to_string()
    };
    let (time, stream, tag, text) = (next(), next(), next(), next());
    assert!(
        time.len() == 30 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{line:?}"
    );
    (time, stream, tag, text)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

async fn wait_for_text(p: &Path, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = read(p);
        if text.contains(want) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// stdout and stderr in the kubelet's format, written before Wait
/// returns; a last line without a newline is partial.
#[tokio::test]
async fn runc_cri_log() {
    let script = "echo out; echo err >&2; printf 'a\\r\\nb'";
    let Some((fx, mut c)) =
        Fixture::launch("shim-crilog-runc", "runc", &["sh", "-c", script], |_| {}).await
    else {
        return;
    };
    let log = fx.path("pods/uid/c/0.log");
    // Fifos and a log at once are refused.
    let mut bad = log_req(&fx, &log, pb::LogFormat::Cri, 0, 0);
    bad.stdout = fx.path("fifo").display().to_string();
    let err = c.create(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let bad = log_req(&fx, Path::new("relative.log"), pb::LogFormat::Cri, 0, 0);
    assert_eq!(
        c.create(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let bad = log_req(&fx, &log, pb::LogFormat::Unspecified, 0, 0);
    assert_eq!(
        c.create(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    fx.run(&mut c, log_req(&fx, &log, pb::LogFormat::Cri, 0, 0))
        .await;
    assert_eq!(wait_status(&mut c, "").await, 0);
    let text = read(&log);
    let mut lines: Vec<_> = text.lines().map(cri_line).collect();
    // stdout and stderr are read apart: order them by stream.
    lines.sort_by(|a, b| a.1.cmp(&b.1));
    let got: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|(_, s, t, x)| (s.as_str(), t.as_str(), x.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("stderr", "F", "err"),
            ("stdout", "F", "out"),
            ("stdout", "F", "a"),
            ("stdout", "P", "b")
        ],
        "{text}"
    );
    fx.delete_and_finish(&mut c).await;
}

/// ReopenLog after the kubelet renamed the file: new lines go to a new
/// file at the path. A container without a log file refuses it.
#[tokio::test]
async fn runc_cri_log_reopen() {
    let script = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.02; done";
    let Some((fx, mut c)) =
        Fixture::launch("shim-crireopen-runc", "runc", &["sh", "-c", script], |_| {}).await
    else {
        return;
    };
    let err = c.reopen_log(()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "nothing created yet: {err:?}");
    let log = fx.path("0.log");
    fx.run(&mut c, log_req(&fx, &log, pb::LogFormat::Cri, 0, 0))
        .await;
    wait_for_text(&log, "tick 3\n", 5).await;
    let rotated = fx.path("0.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    c.reopen_log(()).await.unwrap();
    let fresh = wait_for_text(&log, "tick", 5).await;
    let first = cri_line(fresh.lines().next().expect("lines after reopen"));
    let old = read(&rotated);
    let last_old = cri_line(old.lines().last().unwrap());
    let n = |t: &str| t.trim_start_matches("tick ").parse::<u32>().unwrap();
    assert!(n(&first.3) > n(&last_old.3), "{first:?} after {last_old:?}");
    assert_eq!(first.1, "stdout");
    c.kill(kill_req("", 9)).await.unwrap();
    wait_status(&mut c, "").await;
    fx.delete_and_finish(&mut c).await;

    // A container writing to fifos has no log to reopen.
    let Some((fx, mut c)) =
        Fixture::launch("shim-nolog-runc", "runc", &["sleep", "1000"], |_| {}).await
    else {
        return;
    };
    fx.run(&mut c, fx.create_request("", "")).await;
    let err = c.reopen_log(()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    c.kill(kill_req("", 9)).await.unwrap();
    wait_status(&mut c, "").await;
    fx.delete_and_finish(&mut c).await;
}

fn json_logs(p: &Path) -> Vec<Value> {
    read(p)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn numbered(p: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", p.display()))
}

/// Docker's json-file format, rotated by size, kept across two runs of a
/// container (two shims, one log).
#[tokio::test]
async fn runc_json_file_log_rotates_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("c/c-json.log");
    let (max_size, max_files) = (8192, 3);
    let script = "i=0; while [ $i -lt 500 ]; do i=$((i+1)); echo \"line $i\"; done";
    let Some((fx, mut c)) =
        Fixture::launch("shim-jsonlog-runc", "runc", &["sh", "-c", script], |_| {}).await
    else {
        return;
    };
    fx.run(
        &mut c,
        log_req(&fx, &log, pb::LogFormat::JsonFile, max_size, max_files),
    )
    .await;
    assert_eq!(wait_status(&mut c, "").await, 0);
    fx.delete_and_finish(&mut c).await;
    assert!(numbered(&log, 2).exists(), "rotated twice at least");
    assert!(
        !numbered(&log, 3).exists(),
        "max_files 3 keeps PATH, PATH.1, PATH.2"
    );
    let mut all = Vec::new();
    for n in (1..3).rev() {
        all.extend(json_logs(&numbered(&log, n)));
    }
    all.extend(json_logs(&log));
    for p in [log.clone(), numbered(&log, 1), numbered(&log, 2)] {
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= max_size, "{}: {size}", p.display());
    }
    for v in &all {
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
    }
    let stdout: Vec<&str> = all
        .iter()
        .filter(|v| v["stream"] == "stdout")
        .map(|v| v["log"].as_str().unwrap())
        .collect();
    // The newest files hold the last lines, in order, each with its newline.
    assert_eq!(*stdout.last().unwrap(), "line 500\n");
    let first: u32 = stdout[0]
        .trim_start_matches("line ")
        .trim_end()
        .parse()
        .unwrap();
    let want: Vec<String> = (first..=500).map(|i| format!("line {i}\n")).collect();
    assert_eq!(stdout, want.iter().map(String::as_str).collect::<Vec<_>>());

    // The container runs again (a new task): its log goes on in the file.
    let before = json_logs(&log).len();
    assert!(before > 0);
    let Some((fx, mut c)) = Fixture::launch(
        "shim-jsonlog2-runc",
        "runc",
        &["sh", "-c", "echo again; sleep 0.1; echo oops >&2"],
        |_| {},
    )
    .await
    else {
        return;
    };
    fx.run(
        &mut c,
        log_req(&fx, &log, pb::LogFormat::JsonFile, max_size, max_files),
    )
    .await;
    assert_eq!(wait_status(&mut c, "").await, 0);
    fx.delete_and_finish(&mut c).await;
    // The first run's lines are still there (in PATH, or in PATH.1 if the
    // new entries rotated it), the new ones follow.
    let mut after = json_logs(&numbered(&log, 1));
    after.extend(json_logs(&log));
    let at = after
        .iter()
        .position(|v| v["log"] == "line 500\n")
        .expect("first run kept");
    let new: Vec<(&str, &str)> = after[at + 1..]
        .iter()
        .map(|v| (v["stream"].as_str().unwrap(), v["log"].as_str().unwrap()))
        .collect();
    assert_eq!(new, [("stdout", "again\n"), ("stderr", "oops\n")]);
}

/// A terminal's output goes to the log as stdout.
#[tokio::test]
async fn runc_terminal_to_cri_log() {
    let Some((fx, mut c)) = Fixture::launch(
        "shim-ttylog-runc",
        "runc",
        &["sh", "-c", "tty; echo bye >&2"],
        |s| s["process"]["terminal"] = serde_json::json!(true),
    )
    .await
    else {
        return;
    };
    let log = fx.path("tty.log");
    let mut req = log_req(&fx, &log, pb::LogFormat::Cri, 0, 0);
    req.terminal = true;
    fx.run(&mut c, req).await;
    assert_eq!(wait_status(&mut c, "").await, 0);
    let lines: Vec<_> = read(&log).lines().map(cri_line).collect();
    assert!(
        lines.iter().all(|l| l.1 == "stdout" && l.2 == "F"),
        "{lines:?}"
    );
    let texts: Vec<&str> = lines.iter().map(|l| l.3.as_str()).collect();
    assert!(texts[0].starts_with("/dev/pts/"), "{texts:?}");
    assert_eq!(
        texts[1], "bye",
        "the pty turns \\n into \\r\\n; the \\r is not text"
    );
    fx.delete_and_finish(&mut c).await;
}

/// A detached container writes 50 MB nobody reads: it runs to its end at
/// once, and every byte is in the log.
#[tokio::test]
async fn runc_fifty_megabytes_do_not_block() {
    const LINE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde";
    const LINES: usize = 50 * 1024 * 1024 / 64;
    let script = format!("yes {LINE} | head -n {LINES}; echo end");
    let Some((fx, mut c)) =
        Fixture::launch("shim-50mb-runc", "runc", &["sh", "-c", &script], |_| {}).await
    else {
        return;
    };
    let log = fx.path("big.log");
    let t = Instant::now();
    fx.run(&mut c, log_req(&fx, &log, pb::LogFormat::Cri, 0, 0))
        .await;
    assert_eq!(wait_status_within(&mut c, "", 60).await, 0);
    let took = t.elapsed();
    let text = read(&log);
    let mut count = 0;
    for line in text.lines() {
        let (_, stream, tag, body) = cri_line(line);
        assert_eq!((stream.as_str(), tag.as_str()), ("stdout", "F"));
        if body == LINE {
            count += 1;
        } else {
            assert_eq!(body, "end");
        }
    }
    assert_eq!(count, LINES);
    eprintln!(
        "50 MiB through the CRI log in {took:?} ({:.0} MB/s, container start included)",
        50.0 * 1.048_576 / took.as_secs_f64()
    );
    fx.delete_and_finish(&mut c).await;
}

/// Runs `script` in a fresh container whose rootfs has `/data` (a hard
/// link to `data`), with stdout to /dev/null (`log` None) or a log file;
/// returns the time from Start to the end of Wait (the log fully written
/// by then) and the log's size.
async fn timed_run(
    id: &str,
    script: &str,
    data: &Path,
    log: Option<(PathBuf, pb::LogFormat)>,
) -> (Duration, u64) {
    let (fx, mut c) = Fixture::launch(id, "runc", &["sh", "-c", script], |_| {})
        .await
        .expect("prerequisites checked");
    std::fs::hard_link(data, fx.path("lower/data")).unwrap();
    let req = match &log {
        Some((p, f)) => log_req(&fx, p, *f, 0, 0),
        None => fx.create_request("", ""),
    };
    c.create(req).await.unwrap();
    let t = Instant::now();
    c.start(proc_req("")).await.unwrap();
    assert_eq!(wait_status(&mut c, "").await, 0);
    let took = t.elapsed();
    let size = log.map_or(0, |(p, _)| std::fs::metadata(&p).unwrap().len());
    fx.delete_and_finish(&mut c).await;
    (took, size)
}

/// Throughput of the log copy and the writer's slowdown (printed; figures
/// with `BERTH_SHIM_BIN=target/release/berth-shim`, on an idle machine).
/// 256 MiB of 64-byte lines: `dd bs=64k` to /dev/null, to a CRI log and
/// to a json-file log; and a CPU-bound writer (`yes | head -c`) to
/// /dev/null and to a CRI log.
#[tokio::test]
#[ignore = "benchmark (256 MiB per run, ~1.5 GB of logs): cargo test -p berth-shim --test logs -- --ignored --nocapture"]
async fn runc_log_throughput() {
    if !can_run("runc") {
        return;
    }
    const MIB: usize = 256;
    const LINE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    let lines = MIB * 1024 * 1024 / LINE.len();
    let dir = tempfile::Builder::new()
        .prefix("berth-shim-bench-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    std::fs::write(&data, LINE.repeat(lines)).unwrap();
    let runs = 3;
    let mb = (MIB * 1024 * 1024) as f64 / 1e6;
    let mut rows = Vec::new();
    // (name, script, log format and bytes per logged line)
    type Case<'a> = (&'a str, &'a str, Option<(pb::LogFormat, u64)>);
    let cases: [Case<'_>; 5] = [
        ("dd bs=64k -> /dev/null", "dd if=/data bs=64k 2>/dev/null", None),
        ("dd bs=64k -> CRI log", "dd if=/data bs=64k 2>/dev/null", Some((pb::LogFormat::Cri, 104))),
        ("dd bs=64k -> json-file log", "dd if=/data bs=64k 2>/dev/null", Some((pb::LogFormat::JsonFile, 134))),
        ("yes | head -c -> /dev/null", "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 268435456", None),
        ("yes | head -c -> CRI log", "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 268435456", Some((pb::LogFormat::Cri, 104))),
    ];
    for (i, (name, script, log)) in cases.iter().enumerate() {
        let mut times = Vec::new();
        for r in 0..runs {
            let path = dir.path().join(format!("log-{i}-{r}"));
            let (took, size) = timed_run(
                &format!("shim-bench-{i}-{r}"),
                script,
                &data,
                log.map(|(f, _)| (path.clone(), f)),
            )
            .await;
            if let Some((_, per_line)) = log {
                assert_eq!(
                    size,
                    lines as u64 * per_line,
                    "{name}: every line logged once"
                );
            }
            let _ = std::fs::remove_file(&path);
            times.push(took);
        }
        times.sort();
        let best = times[0];
        let median = times[runs / 2];
        rows.push((name, best, median));
        eprintln!(
            "{name:<28} best {:>6.0} MB/s, median {:>6.0} MB/s ({median:?})",
            mb / best.as_secs_f64(),
            mb / median.as_secs_f64()
        );
    }
    let slowdown = rows[4].2.as_secs_f64() / rows[3].2.as_secs_f64();
    eprintln!("CPU-bound writer into a CRI log: {slowdown:.2}x its time into /dev/null (median)");
}
