//! Memory with idle containers, and restart recovery.

use std::collections::BTreeSet;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::containers::{ensure_image, start_many};
use super::{all_err, summarise, Ctx, Metric, Side, Workload};
use crate::daemon::{parent_pid, Daemon, SideError};

pub(crate) fn memory_workload(ctx: &Ctx) -> Workload {
    let n = ctx.idle;
    let m = |id, title: String, target, method: String| Metric {
        id,
        title,
        unit: "KiB",
        higher_is_better: false,
        target_ratio: target,
        method,
    };
    let per_shim = format!(
        "{n} idle `sleep` containers (runc), 2 s settle; shim = parent of each task's init; value per shim, pooled over {} runs; median shown",
        ctx.runs
    );
    Workload {
        name: "memory",
        metrics: vec![
            m("shim-private", "shim private memory".into(), Some(0.15), format!("Private_Clean+Private_Dirty from /proc/SHIM/smaps_rollup; {per_shim}")),
            m("shim-rss", "shim RSS".into(), None, format!("VmRSS from /proc/SHIM/status; {per_shim}")),
            m("daemon-rss-idle", "daemon RSS idle".into(), None, format!("VmRSS of the daemon 2 s after a fresh start, busybox image present; median of {} runs", ctx.runs)),
            m("daemon-rss-tasks", format!("daemon RSS with {n} tasks"), Some(0.3), format!("VmRSS of the daemon with {n} idle tasks; median of {} runs", ctx.runs)),
        ],
        run: run_memory,
    }
}

/// A `kB` field of a /proc file (`VmRSS:`, `Private_Dirty:`...).
fn kb_field(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn rss_kib(pid: i32) -> Option<f64> {
    kb_field(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS:",
    )
}

fn private_kib(pid: i32) -> Option<f64> {
    let t = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(kb_field(&t, "Private_Clean:")? + kb_field(&t, "Private_Dirty:")?)
}

fn run_memory(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    match memory(d, ctx) {
        Ok(v) => v.iter().map(|s| summarise(s)).collect(),
        Err(e) => all_err(4, e),
    }
}

fn memory(d: &mut Daemon, ctx: &Ctx) -> Result<[Vec<f64>; 4], SideError> {
    let bb = ctx
        .busybox
        .as_ref()
        .ok_or_else(|| ctx.missing("busybox image"))?;
    ensure_image(d, bb)?;
    let mut out: [Vec<f64>; 4] = Default::default();
    for r in 0..ctx.runs {
        d.remove_all_containers();
        d.stop(Signal::SIGTERM);
        d.spawn()?;
        thread::sleep(Duration::from_secs(2));
        let pid = d
            .pid()
            .ok_or_else(|| SideError::Failed("daemon not running".into()))?;
        out[2]
            .push(rss_kib(pid).ok_or_else(|| SideError::Failed("daemon VmRSS unreadable".into()))?);
        start_many(d, &bb.reference, &format!("mem{r}"), ctx.idle, 4)?;
        thread::sleep(Duration::from_secs(2));
        let shims: BTreeSet<i32> = d.task_pids().into_iter().filter_map(parent_pid).collect();
        if shims.len() != ctx.idle {
            eprintln!(
                "berth-bench: {}: {} tasks have {} distinct shim parents",
                d.kind.name(),
                ctx.idle,
                shims.len()
            );
        }
        for &s in &shims {
            d.note_shim(s);
            if let (Some(p), Some(rss)) = (private_kib(s), rss_kib(s)) {
                out[0].push(p);
                out[1].push(rss);
            }
        }
        out[3].push(rss_kib(pid).unwrap_or(0.0));
        d.remove_all_containers();
    }
    Ok(out)
}

pub(crate) fn recovery_workload(ctx: &Ctx) -> Workload {
    Workload {
        name: "recovery",
        metrics: vec![Metric {
            id: "restart-recovery",
            title: format!("restart recovery, {} containers", ctx.recovery),
            unit: "s",
            higher_is_better: false,
            // issue 18: at most a quarter of containerd's
            target_ratio: Some(0.25),
            method: format!(
                "{} running containers; daemon killed with SIGKILL, restarted; time from exec until `ctr tasks ls` lists all of them RUNNING; {} runs, median",
                ctx.recovery, ctx.runs
            ),
        }],
        run: run_recovery,
    }
}

fn run_recovery(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    let res = recovery(d, ctx);
    d.remove_all_containers();
    vec![res.and_then(|s| summarise(&s))]
}

fn running(d: &Daemon) -> usize {
    d.run(&["tasks", "ls"])
        .map(|o| o.lines().skip(1).filter(|l| l.contains("RUNNING")).count())
        .unwrap_or(0)
}

fn recovery(d: &mut Daemon, ctx: &Ctx) -> Result<Vec<f64>, SideError> {
    let bb = ctx
        .busybox
        .as_ref()
        .ok_or_else(|| ctx.missing("busybox image"))?;
    ensure_image(d, bb)?;
    d.remove_all_containers();
    start_many(d, &bb.reference, "rec", ctx.recovery, 8)?;
    for pid in d.task_pids() {
        if let Some(s) = parent_pid(pid) {
            d.note_shim(s);
        }
    }
    let n = running(d);
    if n != ctx.recovery {
        return Err(SideError::Failed(format!(
            "{n} of {} containers running before the restart",
            ctx.recovery
        )));
    }
    let mut samples = Vec::new();
    for _ in 0..ctx.runs {
        d.stop(Signal::SIGKILL);
        let t = Instant::now();
        d.spawn()?;
        let deadline = t + Duration::from_secs(300);
        while running(d) < ctx.recovery {
            if Instant::now() > deadline {
                return Err(SideError::Failed(format!(
                    "only {} of {} tasks listed 300 s after restart",
                    running(d),
                    ctx.recovery
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
        samples.push(t.elapsed().as_secs_f64());
    }
    Ok(samples)
}
