//! Container start cost: `ctr run --rm IMAGE ID true` latency with runc and
//! crun, bare `runc run` of the same bundle as the floor, and many
//! containers started at once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

use super::{all_err, summarise, Ctx, Metric, Side, Workload};
use crate::daemon::{Daemon, Kind, SideError};
use crate::fixtures::Archive;
use crate::stats::Stats;

/// Import the image unless the daemon already has it.
pub(crate) fn ensure_image(d: &Daemon, image: &Archive) -> Result<(), SideError> {
    let have = d.run(&["images", "ls", "-q"])?;
    if have.lines().any(|l| l.trim() == image.reference) {
        return Ok(());
    }
    d.run(&["images", "import", &image.file.to_string_lossy()])
        .map(|_| ())
}

/// Start `n` detached `sleep` containers named `prefix-i`, `workers` ctr
/// processes at a time (all at once when workers >= n).
pub(crate) fn start_many(
    d: &Daemon,
    image: &str,
    prefix: &str,
    n: usize,
    workers: usize,
) -> Result<(), SideError> {
    let next = Mutex::new(0usize);
    let first_err: Mutex<Option<SideError>> = Mutex::new(None);
    thread::scope(|s| {
        for _ in 0..workers.min(n).max(1) {
            s.spawn(|| loop {
                let i = {
                    let mut g = next.lock().unwrap_or_else(|e| e.into_inner());
                    let i = *g;
                    *g += 1;
                    i
                };
                if i >= n {
                    return;
                }
                let id = format!("{prefix}-{i}");
                if let Err(e) = d.run(&["run", "-d", "--null-io", image, &id, "sleep", "1000000"]) {
                    first_err
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                    return;
                }
            });
        }
    });
    match first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub(crate) fn latency_workload(ctx: &Ctx) -> Workload {
    let m = |id, rt: &str, target: Option<f64>, how: &str| {
        Metric {
        id,
        title: format!("run --rm true latency, {rt}"),
        unit: "ms",
        higher_is_better: false,
        target_ratio: target,
        method: format!(
            "`ctr run --rm IMAGE ID true` ({how}), busybox image already imported; 3 warm-up + {} x {} runs pooled; median shown, min/p95 in the spread",
            ctx.runs, ctx.latency_runs
        ),
    }
    };
    Workload {
        name: "latency",
        metrics: vec![
            m("run-latency-runc", "runc", Some(0.5), "runc"),
            m(
                "run-latency-crun",
                "crun",
                Some(0.5),
                "crun as each daemon can run it on this host: berthd `--runc-binary crun` (its shim hides the cgroup2 mount itself), containerd through the crun-hybrid wrapper",
            ),
            m(
                "run-latency-crun-wrapper",
                "crun, both wrapped",
                None,
                "crun through the crun-hybrid wrapper on both daemons",
            ),
        ],
        run: run_latency,
    }
}

fn run_latency(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    let Some(bb) = &ctx.busybox else {
        return all_err(3, ctx.missing("busybox image"));
    };
    if let Err(e) = ensure_image(d, bb) {
        return all_err(3, e);
    }
    let runc = latency(d, ctx, &bb.reference, None, "lat-runc");
    let (crun, wrapped) = match &ctx.crun {
        Some(w) => {
            // berthd handles crun's "hybrid" refusal in its shim; containerd
            // can only run crun here through the wrapper.
            let native = match d.kind {
                Kind::Berthd => latency(d, ctx, &bb.reference, Some(Path::new("crun")), "lat-crun"),
                Kind::Containerd => latency(d, ctx, &bb.reference, Some(w), "lat-crun"),
            };
            (native, latency(d, ctx, &bb.reference, Some(w), "lat-crunw"))
        }
        None => (Err(ctx.missing("crun")), Err(ctx.missing("crun"))),
    };
    vec![
        runc.and_then(|s| summarise(&s)),
        crun.and_then(|s| summarise(&s)),
        wrapped.and_then(|s| summarise(&s)),
    ]
}

fn latency(
    d: &Daemon,
    ctx: &Ctx,
    image: &str,
    binary: Option<&Path>,
    prefix: &str,
) -> Result<Vec<f64>, SideError> {
    let mut samples = Vec::new();
    let total = 3 + ctx.runs * ctx.latency_runs;
    for i in 0..total {
        let id = format!("{prefix}-{i}");
        let mut args: Vec<String> = vec!["run".into(), "--rm".into()];
        if let Some(b) = binary {
            args.push("--runc-binary".into());
            args.push(b.display().to_string());
        }
        args.extend([image.to_owned(), id, "true".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t = Instant::now();
        d.run(&args)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= 3 {
            samples.push(ms);
        }
    }
    Ok(samples)
}

/// Bare `runc run` of the busybox bundle running `true`: the floor no
/// daemon can beat. 3 warm-up runs, then `n` timed ones, in ms.
pub(crate) fn floor(runtime: &str, bundle: &Path, n: usize) -> anyhow::Result<Stats> {
    let mut samples = Vec::new();
    for i in 0..n + 3 {
        let id = format!("berth-bench-floor-{}-{i}", std::process::id());
        let t = Instant::now();
        let st = Command::new(runtime)
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !st.status.success() {
            let _ = Command::new(runtime)
                .args(["delete", "--force", &id])
                .output();
            anyhow::bail!(
                "{runtime} run failed: {}",
                String::from_utf8_lossy(&st.stderr).trim()
            );
        }
        if i >= 3 {
            samples.push(ms);
        }
    }
    Stats::of(&samples).ok_or_else(|| anyhow::anyhow!("no samples"))
}

pub(crate) fn parallel_workload(ctx: &Ctx) -> Workload {
    Workload {
        name: "parallel",
        metrics: vec![Metric {
            id: "parallel-start",
            title: format!("{} containers started in parallel", ctx.parallel),
            unit: "s",
            higher_is_better: false,
            target_ratio: None,
            method: format!(
                "{} concurrent `ctr run -d --null-io IMAGE ID sleep 1000000`, wall time until all returned; removed between runs; {} warm-up + {} runs, median",
                ctx.parallel, ctx.warmup, ctx.runs
            ),
        }],
        run: run_parallel,
    }
}

fn run_parallel(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    let Some(bb) = &ctx.busybox else {
        return all_err(1, ctx.missing("busybox image"));
    };
    if let Err(e) = ensure_image(d, bb) {
        return all_err(1, e);
    }
    let mut samples = Vec::new();
    for r in 0..ctx.warmup + ctx.runs {
        let t = Instant::now();
        let res = start_many(
            d,
            &bb.reference,
            &format!("par{r}"),
            ctx.parallel,
            ctx.parallel,
        );
        let secs = t.elapsed().as_secs_f64();
        d.remove_all_containers();
        if let Err(e) = res {
            return vec![Err(e)];
        }
        if r >= ctx.warmup {
            samples.push(secs);
        }
    }
    vec![summarise(&samples)]
}
