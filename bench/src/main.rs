//! `berth-bench`: the same workloads through Debian's `ctr` against berthd
//! and against Debian's containerd 1.6, each started on private temp paths;
//! prints a table (berthd, containerd, ratio), writes it as JSON and an SVG
//! chart, and removes everything it created. See bench/README.md.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

mod cri;
mod crihost;
mod daemon;
mod fixtures;
mod interrupt;
mod procfs;
mod report;
mod side;
mod stats;
mod workloads;

use daemon::{Daemon, Kind, SideError};
use report::Row;
use workloads::{Ctx, Side};

/// Side-by-side benchmarks of berthd and containerd (run as root).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Timed runs per figure (each figure is the median).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Untimed warm-up runs before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Only these workloads (comma-separated): content,import,pull,latency,parallel,memory,recovery,pod-start,pod-memory,pod-parallel.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip these workloads (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Where results.json and ratios.svg go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Cache for images, the debootstrap rootfs and the random blob (outside the repo).
    #[arg(long, default_value = "/var/cache/berth-bench")]
    cache_dir: PathBuf,
    /// The repository (for scripts/build-test-images).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    repo: PathBuf,
    /// berthd binary (release build).
    #[arg(long, default_value = "target/release/berthd")]
    berthd: PathBuf,
    /// berthctl binary (server-side pull on berthd).
    #[arg(long, default_value = "target/release/berthctl")]
    berthctl: PathBuf,
    /// containerd binary.
    #[arg(long, default_value = "containerd")]
    containerd: PathBuf,
    /// Do not run berthd (containerd figures only).
    #[arg(long)]
    no_berthd: bool,
    /// Do not run containerd.
    #[arg(long)]
    no_containerd: bool,
    /// Size in MiB of the synthetic import image used when debootstrap is unavailable.
    #[arg(long, default_value_t = 300)]
    image_mb: u64,
    /// Use the synthetic image even if debootstrap is installed.
    #[arg(long)]
    no_debootstrap: bool,
    /// Keep the page cache (by default it is dropped before import and pull runs).
    #[arg(long)]
    no_drop_caches: bool,
    /// `ctr run --rm` runs per latency run (min/median/p95 over all).
    #[arg(long, default_value_t = 30)]
    latency_runs: usize,
    /// Containers started at once in the parallel workload.
    #[arg(long, default_value_t = 100)]
    parallel: usize,
    /// Idle containers in the memory workload.
    #[arg(long, default_value_t = 20)]
    idle: usize,
    /// Running containers in the restart-recovery workload.
    #[arg(long, default_value_t = 200)]
    recovery: usize,
    /// Content ingest size in MiB.
    #[arg(long, default_value_t = 256)]
    ingest_mib: u64,
    /// Pods timed one after another in pod-start (the median is shown).
    #[arg(long, default_value_t = 20)]
    pod_runs: usize,
    /// Idle pods per run in pod-memory.
    #[arg(long, default_value_t = 10)]
    idle_pods: usize,
    /// Pods started at once in pod-parallel.
    #[arg(long, default_value_t = 50)]
    pods_parallel: usize,
}

const ALL: [&str; 10] = [
    "content",
    "import",
    "pull",
    "latency",
    "parallel",
    "memory",
    "recovery",
    "pod-start",
    "pod-memory",
    "pod-parallel",
];

/// Removes the run's temp dir last: unmounts anything left below it first.
struct TempRoot(PathBuf);

impl Drop for TempRoot {
    fn drop(&mut self) {
        daemon::unmount_under(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    interrupt::install();
    for w in args.only.iter().chain(&args.skip) {
        anyhow::ensure!(
            ALL.contains(&w.as_str()),
            "unknown workload {w:?}; known: {}",
            ALL.join(",")
        );
    }
    let selected: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|w| {
            (args.only.is_empty() || args.only.iter().any(|o| o == w))
                && !args.skip.iter().any(|s| s == w)
        })
        .collect();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("berth-bench: not root: containers, mounts and dropping caches need root; expect failures");
    }
    fs::create_dir_all(&args.cache_dir)
        .with_context(|| format!("create {}", args.cache_dir.display()))?;
    let load = loadavg();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    if load > cores * 0.5 {
        eprintln!("berth-bench: WARNING: load average {load:.1} on {cores} cores: the machine is busy, figures will be noisy and slow");
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-bench.")
        .tempdir()?
        .keep();
    let guard = TempRoot(tmp.clone());
    let (ctx, floors, registry) = prepare(&args, &selected, &tmp);

    let mut sides: Vec<(Kind, Vec<Vec<Side>>)> = Vec::new();
    let wls: Vec<_> = workloads::all(&ctx)
        .into_iter()
        .filter(|w| selected.contains(&w.name))
        .collect();
    for kind in [Kind::Containerd, Kind::Berthd] {
        let results = run_side(&args, kind, &tmp, &ctx, &wls);
        sides.push((kind, results));
    }
    drop(registry);

    let mut rows = Vec::new();
    for (i, w) in wls.iter().enumerate() {
        for (j, m) in w.metrics.iter().enumerate() {
            let get = |k: Kind| {
                sides
                    .iter()
                    .find(|(kk, _)| *kk == k)
                    .map(|(_, r)| r[i][j].clone())
                    .unwrap_or_else(|| Err(SideError::Skipped("not run".into())))
            };
            rows.push(Row {
                metric: m.clone(),
                berthd: get(Kind::Berthd),
                containerd: get(Kind::Containerd),
            });
        }
    }
    let machine = machine();
    let table = report::table(&rows);
    println!("\n{table}");
    for (name, f) in &floors {
        match f {
            Ok(s) => println!(
                "floor: bare `{name} run` of the busybox bundle: median {} ms (min {}, p95 {})",
                report::num(s.median),
                report::num(s.min),
                report::num(s.p95)
            ),
            Err(e) => println!("floor: bare `{name} run`: {e}"),
        }
    }
    let floors_json: serde_json::Map<String, serde_json::Value> = floors
        .iter()
        .map(|(n, f)| {
            (
                n.clone(),
                f.as_ref()
                    .map(report::stats_json)
                    .unwrap_or_else(|e| json!({"status": "failed", "reason": e})),
            )
        })
        .collect();
    let doc = json!({
        "date": machine["date"],
        "machine": machine,
        "settings": {"loadavg_at_start": load, "runs": args.runs, "warmup": args.warmup, "drop_caches": !args.no_drop_caches, "latency_runs": args.latency_runs,
                     "parallel": args.parallel, "idle": args.idle, "recovery": args.recovery, "ingest_mib": args.ingest_mib,
                     "pod_runs": args.pod_runs, "idle_pods": args.idle_pods, "pods_parallel": args.pods_parallel,
                     "import_image": ctx.import.as_ref().map(|(_, _, s)| s.clone())},
        "floor_ms": floors_json,
        "rows": report::rows_json(&rows),
    });
    fs::create_dir_all(&args.out)?;
    fs::write(
        args.out.join("results.json"),
        serde_json::to_vec_pretty(&doc)?,
    )?;
    fs::write(
        args.out.join("results.txt"),
        format!("{}\n{table}", machine_line(&machine)),
    )?;
    let subtitle = machine_line(&machine);
    fs::write(args.out.join("ratios.svg"), report::svg(&rows, &subtitle))?;
    println!(
        "results: {} (results.json, results.txt, ratios.svg)",
        args.out.display()
    );
    drop(guard);
    Ok(())
}

type Floors = Vec<(String, Result<stats::Stats, String>)>;

/// Build the fixtures the selected workloads need; a missing one is noted
/// in the context (its workloads report it as the skip reason).
fn prepare(
    args: &Args,
    selected: &[&str],
    tmp: &Path,
) -> (Ctx, Floors, Option<fixtures::Registry>) {
    let mut ctx = Ctx {
        runs: args.runs.max(1),
        warmup: args.warmup,
        drop_caches: !args.no_drop_caches,
        latency_runs: args.latency_runs.max(1),
        parallel: args.parallel,
        idle: args.idle,
        recovery: args.recovery,
        ingest_mib: args.ingest_mib,
        random_blobs: Vec::new(),
        import: None,
        busybox: None,
        pause: None,
        pod_runs: args.pod_runs.max(1),
        idle_pods: args.idle_pods.max(1),
        pods_parallel: args.pods_parallel.max(1),
        pull_ref: None,
        berthctl: None,
        crun: None,
        missing: Vec::new(),
    };
    let has = |w: &str| selected.contains(&w);
    let (cache, repo) = (&args.cache_dir, &args.repo);
    if has("content") {
        match fixtures::random_blobs(cache, args.ingest_mib, args.warmup + args.runs.max(1)) {
            Ok(b) => ctx.random_blobs = b,
            Err(e) => ctx.missing.push(("random blob", format!("{e:#}"))),
        }
    }
    if has("import") || has("pull") {
        match fixtures::import_image(repo, cache, args.image_mb, !args.no_debootstrap) {
            Ok(i) => ctx.import = Some(i),
            Err(e) => ctx.missing.push(("import image", format!("{e:#}"))),
        }
    }
    let mut registry = None;
    if has("pull") {
        let started = (|| -> Result<(fixtures::Registry, String)> {
            let (gzip, _, _) = ctx.import.as_ref().context("no import image")?;
            let reg = fixtures::Registry::start(&tmp.join("registry"))?;
            let r = reg.push(gzip, "bench/import:gzip")?;
            Ok((reg, r))
        })();
        match started {
            Ok((reg, r)) => {
                registry = Some(reg);
                ctx.pull_ref = Some(r);
            }
            Err(e) => ctx.missing.push(("registry", format!("{e:#}"))),
        }
    }
    // berthctl: server-side import and pull rows.
    if has("pull") || has("import") {
        if args.berthctl.is_file() {
            ctx.berthctl = Some(args.berthctl.clone());
        } else {
            ctx.missing.push((
                "berthctl",
                format!("{} not found (not built yet)", args.berthctl.display()),
            ));
        }
    }
    let mut floors = Vec::new();
    let pods = ["pod-start", "pod-memory", "pod-parallel"]
        .iter()
        .any(|w| has(w));
    if pods
        || ["latency", "parallel", "memory", "recovery"]
            .iter()
            .any(|w| has(w))
    {
        match fixtures::busybox(repo, cache) {
            Ok(b) => ctx.busybox = Some(b),
            Err(e) => ctx.missing.push(("busybox image", format!("{e:#}"))),
        }
    }
    if pods {
        match ctx.busybox.as_ref().map(|bb| fixtures::pause(cache, bb)) {
            Some(Ok(p)) => ctx.pause = Some(p),
            Some(Err(e)) => ctx.missing.push(("pause image", format!("{e:#}"))),
            None => ctx
                .missing
                .push(("pause image", "no busybox image to make it from".into())),
        }
    }
    if has("latency") {
        if fixtures::which("crun") {
            match fixtures::crun_wrapper(tmp) {
                Ok(w) => ctx.crun = Some(w),
                Err(e) => ctx.missing.push(("crun", format!("{e:#}"))),
            }
        } else {
            ctx.missing.push(("crun", "crun is not installed".into()));
        }
        if let Some(bb) = &ctx.busybox {
            match fixtures::bundle(tmp, bb) {
                Ok(bundle) => {
                    let n = args.latency_runs * args.runs.max(1);
                    floors.push((
                        "runc".to_string(),
                        workloads::containers::floor("runc", &bundle, n)
                            .map_err(|e| format!("{e:#}")),
                    ));
                    if let Some(w) = &ctx.crun {
                        floors.push((
                            "crun".to_string(),
                            workloads::containers::floor(&w.to_string_lossy(), &bundle, n)
                                .map_err(|e| format!("{e:#}")),
                        ));
                    }
                }
                Err(e) => floors.push(("runc".into(), Err(format!("bundle: {e:#}")))),
            }
        }
    }
    (ctx, floors, registry)
}

/// All workloads against one daemon; one Vec<Side> per workload.
fn run_side(
    args: &Args,
    kind: Kind,
    tmp: &Path,
    ctx: &Ctx,
    wls: &[workloads::Workload],
) -> Vec<Vec<Side>> {
    let skip_all = |e: SideError| {
        wls.iter()
            .map(|w| vec![Err(e.clone()); w.metrics.len()])
            .collect()
    };
    let binary = match kind {
        Kind::Berthd if args.no_berthd => {
            return skip_all(SideError::Skipped("--no-berthd".into()))
        }
        Kind::Containerd if args.no_containerd => {
            return skip_all(SideError::Skipped("--no-containerd".into()))
        }
        Kind::Berthd => args.berthd.clone(),
        Kind::Containerd => args.containerd.clone(),
    };
    if kind == Kind::Berthd && !binary.is_file() {
        return skip_all(SideError::Skipped(format!(
            "{} not found: berthd is not built yet (`cargo build --release`)",
            binary.display()
        )));
    }
    eprintln!("berth-bench: starting {}", kind.name());
    let mut d = match Daemon::start(kind, &binary, tmp) {
        Ok(d) => d,
        Err(e) => {
            let e = if kind == Kind::Berthd {
                SideError::Skipped(format!("berthd did not start: {e:#}"))
            } else {
                SideError::Failed(format!("{e:#}"))
            };
            return skip_all(e);
        }
    };
    let mut out = Vec::new();
    for w in wls {
        if interrupt::requested() {
            out.push(vec![
                Err(SideError::Skipped("interrupted".into()));
                w.metrics.len()
            ]);
            continue;
        }
        eprintln!("berth-bench: [{}] {}", kind.name(), w.name);
        if d.pid().is_none() {
            if let Err(e) = d.spawn() {
                out.push(vec![
                    Err(SideError::Failed(format!("restart: {e:#}")));
                    w.metrics.len()
                ]);
                continue;
            }
        }
        let res = (w.run)(&mut d, ctx);
        for (m, r) in w.metrics.iter().zip(&res) {
            match r {
                Ok(s) => eprintln!(
                    "berth-bench: [{}]   {}: {} {}",
                    kind.name(),
                    m.title,
                    report::num(s.median),
                    m.unit
                ),
                Err(e) => eprintln!("berth-bench: [{}]   {}: {e}", kind.name(), m.title),
            }
        }
        out.push(res);
    }
    eprintln!("berth-bench: stopping {} and cleaning up", kind.name());
    drop(d);
    out
}

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn machine() -> serde_json::Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    let mem = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse::<u64>()
        .unwrap_or(0);
    let uts = nix::sys::utsname::uname().ok();
    json!({
        "date": first_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        "loadavg_at_end": loadavg(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "mem_mib": mem / 1024,
        "kernel": uts.map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        "containerd": first_line(Command::new("containerd").arg("--version")),
        "runc": first_line(Command::new("runc").arg("--version")),
        "crun": first_line(Command::new("crun").arg("--version")),
    })
}

/// The 1-minute load average.
fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn machine_line(m: &serde_json::Value) -> String {
    format!(
        "{} | {} cores ({}) | {} MiB | kernel {} | {} | load {}",
        m["date"].as_str().unwrap_or(""),
        m["cores"],
        m["cpu"].as_str().unwrap_or(""),
        m["mem_mib"],
        m["kernel"].as_str().unwrap_or(""),
        m["containerd"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .nth(2)
            .map(|v| format!("containerd {v}"))
            .unwrap_or_default(),
        m["loadavg_at_end"]
    )
}
