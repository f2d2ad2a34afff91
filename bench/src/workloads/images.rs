//! Image import + unpack (`ctr images import`) and registry pull
//! (`ctr images pull --plain-http` from a local docker-registry).
//!
//! Throughput is the image's unpacked size (sum of its layer tars) over the
//! wall time of the ctr command. Before every timed run the image is removed
//! with `ctr images rm --sync` (content and snapshots collected) and the page
//! cache is dropped, so the archive is read from disk and every layer is
//! really unpacked. gzip and zstd variants share diff IDs, hence the removal
//! between them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{all_err, summarise, Ctx, Metric, Side, Workload};
use crate::daemon::{is_unimplemented, Daemon, Kind, SideError};
use crate::fixtures::{drop_caches, Archive};

fn method(ctx: &Ctx, what: &str) -> String {
    let source = ctx
        .import
        .as_ref()
        .map(|(_, _, s)| s.as_str())
        .unwrap_or("image");
    let caches = if ctx.drop_caches {
        "page cache dropped before each run"
    } else {
        "page cache NOT dropped (--no-drop-caches)"
    };
    format!("{what} of the {source}; unpacked MB/s (10^6 bytes of layer tar per second); images rm --sync between runs; {caches}; {} warm-up + {} runs, median", ctx.warmup, ctx.runs)
}

pub(crate) fn import_workload(ctx: &Ctx) -> Workload {
    let m = |id, comp: &str| Metric {
        id,
        title: format!("image import+unpack, {comp}"),
        unit: "MB/s",
        higher_is_better: true,
        target_ratio: Some(2.0),
        method: method(
            ctx,
            &format!("`ctr images import` ({comp} layers, overlayfs)"),
        ),
    };
    let server = |id, comp: &str| {
        Metric {
        id,
        title: format!("image import+unpack, {comp}, server-side"),
        unit: "MB/s",
        higher_is_better: true,
        target_ratio: Some(2.0),
        method: method(
            ctx,
            &format!("berthd: `berthctl images import` ({comp}, server-side import and unpack); containerd: the `ctr images import` figure of the row above"),
        ),
    }
    };
    Workload {
        name: "import",
        metrics: vec![
            m("import-gzip", "gzip"),
            m("import-zstd", "zstd"),
            server("import-gzip-server", "gzip"),
            server("import-zstd-server", "zstd"),
        ],
        run: run_import,
    }
}

fn run_import(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    let Some((gzip, zstd, _)) = &ctx.import else {
        return all_err(2, ctx.missing("import image"));
    };
    let with_ctr: Vec<Side> = [gzip, zstd]
        .into_iter()
        .map(|a| {
            let file = a.file.to_string_lossy();
            timed(d, ctx, a, &a.reference, || {
                d.run(&["images", "import", &file]).map(|_| ())
            })
            .and_then(|s| summarise(&s))
        })
        .collect();
    let server: Vec<Side> = match (d.kind, &ctx.berthctl) {
        (Kind::Containerd, _) => with_ctr.clone(),
        (Kind::Berthd, None) => vec![Err(ctx.missing("berthctl")); 2],
        (Kind::Berthd, Some(berthctl)) => [gzip, zstd]
            .into_iter()
            .map(|a| {
                let file = a.file.to_string_lossy();
                timed(d, ctx, a, &a.reference, || {
                    berthctl_run(d, berthctl, &["images", "import", &file])
                })
                .and_then(|s| summarise(&s))
            })
            .collect(),
    };
    with_ctr.into_iter().chain(server).collect()
}

pub(crate) fn pull_workload(ctx: &Ctx) -> Workload {
    Workload {
        name: "pull",
        metrics: vec![
            Metric {
                id: "registry-pull",
                title: "registry pull (gzip), ctr".into(),
                unit: "MB/s",
                higher_is_better: true,
                target_ratio: None,
                method: method(ctx, "`ctr images pull --plain-http` from a local docker-registry (client-side pull on both)"),
            },
            Metric {
                id: "registry-pull-server",
                title: "registry pull (gzip), server-side".into(),
                unit: "MB/s",
                higher_is_better: true,
                target_ratio: Some(1.5),
                method: method(
                    ctx,
                    "berthd: `berthctl images pull --plain-http` (server-side pull); containerd: the `ctr images pull --plain-http` figure of the row above",
                ),
            },
        ],
        run: run_pull,
    }
}

fn run_pull(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    let (Some(reference), Some((gzip, _, _))) = (&ctx.pull_ref, &ctx.import) else {
        return all_err(2, ctx.missing("registry"));
    };
    let with_ctr = timed(d, ctx, gzip, reference, || {
        d.run(&["images", "pull", "--plain-http", reference])
            .map(|_| ())
    })
    .and_then(|s| summarise(&s));
    let server = match (d.kind, &ctx.berthctl) {
        (Kind::Containerd, _) => with_ctr.clone(),
        (Kind::Berthd, None) => Err(ctx.missing("berthctl")),
        (Kind::Berthd, Some(berthctl)) => timed(d, ctx, gzip, reference, || {
            berthctl_run(d, berthctl, &["images", "pull", "--plain-http", reference])
        })
        .and_then(|s| summarise(&s)),
    };
    vec![with_ctr, server]
}

/// `berthctl --address SOCK --namespace NS ARGS...` (e.g. `images pull
/// --plain-http REF`); an unknown subcommand or an Unimplemented reply means
/// not there yet.
fn berthctl_run(d: &Daemon, berthctl: &Path, args: &[&str]) -> Result<(), SideError> {
    let what = format!("berthctl {}", args[..2.min(args.len())].join(" "));
    let out = Command::new(berthctl)
        .arg("--address")
        .arg(&d.sock)
        .arg("--namespace")
        .arg(&d.namespace)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SideError::Failed(format!("run {}: {e}", berthctl.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let lower = err.to_ascii_lowercase();
    if is_unimplemented(&err)
        || lower.contains("unrecognized subcommand")
        || lower.contains("unexpected argument")
    {
        return Err(SideError::Skipped(format!(
            "{what} not available yet ({err})"
        )));
    }
    Err(SideError::Failed(format!("{what}: {err}")))
}

/// Run `op` warm-up + runs times, removing `image` before each; MB/s samples.
fn timed(
    d: &Daemon,
    ctx: &Ctx,
    archive: &Archive,
    image: &str,
    op: impl Fn() -> Result<(), SideError>,
) -> Result<Vec<f64>, SideError> {
    let mb = archive.unpacked_bytes as f64 / 1e6;
    let mut samples = Vec::new();
    for i in 0..ctx.warmup + ctx.runs {
        remove(d, image)?;
        if ctx.drop_caches {
            drop_caches();
        }
        let t = Instant::now();
        op()?;
        let secs = t.elapsed().as_secs_f64();
        if i >= ctx.warmup {
            samples.push(mb / secs);
        }
    }
    remove(d, image)?;
    Ok(samples)
}

/// `ctr images rm --sync IMAGE`; a missing image is fine.
fn remove(d: &Daemon, image: &str) -> Result<(), SideError> {
    match d.run(&["images", "rm", "--sync", image]) {
        Ok(_) => Ok(()),
        Err(SideError::Failed(m)) if m.contains("not found") => Ok(()),
        Err(e) => Err(e),
    }
}
