//! Kubernetes pod workloads through the CRI (issue 13's performance
//! targets): pod start latency, private memory per idle pod, and 50 pods
//! started at once. Both daemons run with their CRI on, a CNI bridge
//! network of their own, the same busybox and pause images imported into
//! `k8s.io`, and are driven by the same client ([`crate::cri`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{summarise, Ctx, Metric, Side, Workload};
use crate::cri::{pod_config, Cri, PidMode};
use crate::crihost::{processes, shims_of, CriHost};
use crate::daemon::{Daemon, SideError};
use crate::interrupt;

/// A distinct pod name for every pod of the run.
fn next_name(d: &Daemon) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "bench-{}-{}",
        &d.kind.name()[..1],
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Everything a pod run needs: the daemon's CRI on, images in `k8s.io`,
/// a client on a runtime of its own.
struct PodRig {
    rt: tokio::runtime::Runtime,
    cri: Cri,
    image: String,
    logs: PathBuf,
    cgroup_parent: String,
}

impl PodRig {
    fn config(&self, name: &str, pid: PidMode) -> k8s_cri::v1::PodSandboxConfig {
        let logs = self.logs.join(name);
        let _ = std::fs::create_dir_all(&logs);
        pod_config(name, &logs, &self.cgroup_parent, pid)
    }

    fn remove_all(&mut self) -> Result<usize, SideError> {
        let mut c = self.cri.clone();
        self.rt.block_on(async move { c.remove_all_pods().await })
    }
}

fn rig(d: &mut Daemon, ctx: &Ctx) -> Result<PodRig, SideError> {
    let bb = ctx
        .busybox
        .as_ref()
        .ok_or_else(|| ctx.missing("busybox image"))?;
    let pause = ctx
        .pause
        .as_ref()
        .ok_or_else(|| ctx.missing("pause image"))?;
    if d.cri.is_none() {
        let host = CriHost::new(d.kind, &d.dir, &pause.reference);
        d.enable_cri(host)?;
    }
    let have = d
        .ctr_ns("k8s.io")
        .args(["images", "ls", "-q"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for img in [bb, pause] {
        if !have.lines().any(|l| l == img.reference) {
            let out = d
                .ctr_ns("k8s.io")
                .arg("images")
                .arg("import")
                .arg(&img.file)
                .output()
                .map_err(|e| SideError::Failed(format!("ctr import: {e}")))?;
            if !out.status.success() {
                return Err(SideError::Failed(format!(
                    "ctr -n k8s.io images import {}: {}",
                    img.file.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| SideError::Failed(format!("tokio runtime: {e}")))?;
    let sock = d.sock.clone();
    let cri = rt.block_on(async move {
        let mut c = Cri::connect(&sock).await?;
        c.wait_ready().await?;
        Ok::<_, SideError>(c)
    })?;
    let host = d.cri.as_ref().expect("CRI enabled above");
    Ok(PodRig {
        rt,
        cri,
        image: bb.reference.clone(),
        logs: d.dir.join("pod-logs"),
        cgroup_parent: host.cgroup_parent.clone(),
    })
}

fn interrupted() -> Result<(), SideError> {
    if interrupt::requested() {
        Err(SideError::Skipped("interrupted".into()))
    } else {
        Ok(())
    }
}

pub(crate) fn start_workload(ctx: &Ctx) -> Workload {
    Workload {
        name: "pod-start",
        metrics: vec![Metric {
            id: "pod-start",
            title: "pod start (runp+create+start)".into(),
            unit: "ms",
            higher_is_better: false,
            target_ratio: Some(0.5),
            method: format!(
                "RunPodSandbox + CreateContainer + StartContainer of busybox `sleep` (image present in k8s.io, PID per container, CNI bridge + portmap) through the k8s-cri client; pod stopped and removed untimed after each; {} warm-up, median of {}",
                ctx.warmup, ctx.pod_runs
            ),
        }],
        run: run_start,
    }
}

fn run_start(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    vec![pod_start(d, ctx).and_then(|s| summarise(&s))]
}

fn pod_start(d: &mut Daemon, ctx: &Ctx) -> Result<Vec<f64>, SideError> {
    let mut r = rig(d, ctx)?;
    r.remove_all()?;
    let mut samples = Vec::new();
    for i in 0..ctx.warmup + ctx.pod_runs {
        interrupted()?;
        let cfg = r.config(&next_name(d), PidMode::Container);
        let (mut c, image) = (r.cri.clone(), r.image.clone());
        let ms = r.rt.block_on(async move {
            let t = Instant::now();
            let (pod, _) = c.start_pod(&cfg, &image).await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            c.remove_pod(&pod).await?;
            Ok::<_, SideError>(ms)
        })?;
        if i >= ctx.warmup {
            samples.push(ms);
        }
    }
    Ok(samples)
}

pub(crate) fn parallel_workload(ctx: &Ctx) -> Workload {
    let n = ctx.pods_parallel;
    Workload {
        name: "pod-parallel",
        metrics: vec![Metric {
            id: "pods-parallel",
            title: format!("{n} pods started in parallel"),
            unit: "s",
            higher_is_better: false,
            target_ratio: Some(0.5),
            method: format!(
                "{n} concurrent RunPodSandbox + CreateContainer + StartContainer (busybox `sleep`) on one CRI connection, wall time until all returned; pods removed between runs; {} warm-up, median of {}",
                ctx.warmup, ctx.runs
            ),
        }],
        run: run_parallel,
    }
}

fn run_parallel(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    vec![pods_parallel(d, ctx).and_then(|s| summarise(&s))]
}

fn pods_parallel(d: &mut Daemon, ctx: &Ctx) -> Result<Vec<f64>, SideError> {
    let mut r = rig(d, ctx)?;
    r.remove_all()?;
    let mut samples = Vec::new();
    for i in 0..ctx.warmup + ctx.runs {
        interrupted()?;
        let cfgs: Vec<_> = (0..ctx.pods_parallel)
            .map(|_| r.config(&next_name(d), PidMode::Container))
            .collect();
        let (c, image) = (r.cri.clone(), r.image.clone());
        let secs = r.rt.block_on(async move {
            let t = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for cfg in cfgs {
                let (mut c, image) = (c.clone(), image.clone());
                set.spawn(async move { c.start_pod(&cfg, &image).await });
            }
            let mut first_err = None;
            while let Some(res) = set.join_next().await {
                match res {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(e) => {
                        first_err.get_or_insert(SideError::Failed(format!("task: {e}")));
                    }
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(t.elapsed().as_secs_f64()),
            }
        });
        r.remove_all()?;
        let secs = secs?;
        if i >= ctx.warmup {
            samples.push(secs);
        }
    }
    Ok(samples)
}

pub(crate) fn memory_workload(ctx: &Ctx) -> Workload {
    let n = ctx.idle_pods;
    let method = |mode: &str| {
        format!(
            "{n} idle pods (RunPodSandbox only, {mode}), 2 s settle; per pod: Private_Clean+Private_Dirty (/proc/PID/smaps_rollup) of every process it added: the shim(s) serving it (command line naming the daemon's socket and the pod's id) and their descendants (pause / holder); 0 when a pod adds none; pooled over {} runs, median",
            ctx.runs
        )
    };
    let m = |id, title: &str, mode: &str| Metric {
        id,
        title: title.into(),
        unit: "KiB",
        higher_is_better: false,
        target_ratio: Some(0.25),
        method: method(mode),
    };
    Workload {
        name: "pod-memory",
        metrics: vec![
            m(
                "pod-private",
                "idle pod private memory",
                "PID namespace per container, the kubelet's default",
            ),
            m(
                "pod-private-shared-pid",
                "idle pod private memory, shared PID ns",
                "one PID namespace per pod (shareProcessNamespace)",
            ),
        ],
        run: run_memory,
    }
}

fn run_memory(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    let mut r = match rig(d, ctx) {
        Ok(r) => r,
        Err(e) => return vec![Err(e.clone()), Err(e)],
    };
    let out = [PidMode::Container, PidMode::Pod]
        .iter()
        .map(|&mode| idle_pods(d, ctx, &mut r, mode).and_then(|s| summarise(&s)))
        .collect();
    let _ = r.remove_all();
    out
}

fn idle_pods(d: &Daemon, ctx: &Ctx, r: &mut PodRig, mode: PidMode) -> Result<Vec<f64>, SideError> {
    r.remove_all()?;
    let mut samples = Vec::new();
    for _ in 0..ctx.runs {
        let mut pods = Vec::new();
        for _ in 0..ctx.idle_pods {
            interrupted()?;
            let cfg = r.config(&next_name(d), mode);
            let mut c = r.cri.clone();
            pods.push(r.rt.block_on(async move { c.run_pod(&cfg).await })?);
        }
        thread::sleep(Duration::from_secs(2));
        let per_pod = private_per_pod(d, &pods);
        samples.extend(pods.iter().map(|p| per_pod.get(p).copied().unwrap_or(0.0)));
        r.remove_all()?;
    }
    Ok(samples)
}

/// KiB of private memory each pod added: its shims (found by the daemon's
/// socket and the pod id on their command line) and their descendants.
fn private_per_pod(d: &Daemon, pods: &[String]) -> BTreeMap<String, f64> {
    let procs = processes();
    let mut out = BTreeMap::new();
    for shim in shims_of(&procs, &d.sock) {
        let Some(pod) = pods.iter().find(|p| shim.cmdline.contains(p.as_str())) else {
            eprintln!(
                "berth-bench: {}: shim {} serves no pod of this run: {}",
                d.kind.name(),
                shim.pid,
                shim.cmdline
            );
            continue;
        };
        let mut tree = vec![shim.pid];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(procs.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
            i += 1;
        }
        let kib: f64 = tree.iter().filter_map(|&p| private_kib(p)).sum();
        *out.entry(pod.clone()).or_insert(0.0) += kib;
    }
    out
}

fn private_kib(pid: i32) -> Option<f64> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |key: &str| -> Option<f64> {
        t.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some(field("Private_Clean:")? + field("Private_Dirty:")?)
}
