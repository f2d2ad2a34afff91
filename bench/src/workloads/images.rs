//! Image import + unpack (`ctr images import`) and registry pull
//! (`ctr images pull --plain-http` from a local docker-registry).
//!
//! Throughput is the image's unpacked size (sum of its layer tars) over the
//! wall time of the ctr command. Before every timed run the image is removed
//! with `ctr images rm --sync` (content and snapshots collected) and the page
//! cache is dropped, so the archive is read from disk and every layer is
//! really unpacked. gzip and zstd variants share diff IDs, hence the removal
//! between them.

use std::time::Instant;

use super::{all_err, summarise, Ctx, Metric, Side, Workload};
use crate::daemon::{Daemon, SideError};
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
    Workload {
        name: "import",
        metrics: vec![m("import-gzip", "gzip"), m("import-zstd", "zstd")],
        run: run_import,
    }
}

fn run_import(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    let Some((gzip, zstd, _)) = &ctx.import else {
        return all_err(2, ctx.missing("import image"));
    };
    [gzip, zstd]
        .into_iter()
        .map(|a| {
            timed(
                d,
                ctx,
                a,
                &a.reference,
                &["images", "import", &a.file.to_string_lossy()],
            )
            .and_then(|s| summarise(&s))
        })
        .collect()
}

pub(crate) fn pull_workload(ctx: &Ctx) -> Workload {
    Workload {
        name: "pull",
        metrics: vec![Metric {
            id: "registry-pull",
            title: "registry pull (gzip)".into(),
            unit: "MB/s",
            higher_is_better: true,
            target_ratio: Some(1.5),
            method: method(ctx, "`ctr images pull --plain-http` from a local docker-registry (client-side pull on both)"),
        }],
        run: run_pull,
    }
}

fn run_pull(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    let (Some(reference), Some((gzip, _, _))) = (&ctx.pull_ref, &ctx.import) else {
        return all_err(1, ctx.missing("registry"));
    };
    vec![timed(
        d,
        ctx,
        gzip,
        reference,
        &["images", "pull", "--plain-http", reference],
    )
    .and_then(|s| summarise(&s))]
}

/// Run `args` warm-up + runs times, removing `image` before each; MB/s samples.
fn timed(
    d: &Daemon,
    ctx: &Ctx,
    archive: &Archive,
    image: &str,
    args: &[&str],
) -> Result<Vec<f64>, SideError> {
    let mb = archive.unpacked_bytes as f64 / 1e6;
    let mut samples = Vec::new();
    for i in 0..ctx.warmup + ctx.runs {
        remove(d, image)?;
        if ctx.drop_caches {
            drop_caches();
        }
        let t = Instant::now();
        d.run(args)?;
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
