//! Content store throughput: `ctr content ingest` of a random blob from a
//! file, then `ctr content get` of it to /dev/null.

use std::fs::File;
use std::process::Stdio;
use std::time::Instant;

use super::{all_err, summarise, Ctx, Metric, Side, Workload};
use crate::daemon::{Daemon, SideError};

pub(crate) fn workload(ctx: &Ctx) -> Workload {
    let method = format!(
        "{} MiB of random bytes, {} warm-up + {} runs, median; MB = 10^6 bytes; source file and written blob in the page cache (no drop)",
        ctx.ingest_mib, ctx.warmup, ctx.runs
    );
    Workload {
        name: "content",
        metrics: vec![
            Metric {
                id: "content-ingest",
                title: format!("content ingest {} MiB", ctx.ingest_mib),
                unit: "MB/s",
                higher_is_better: true,
                target_ratio: Some(1.0),
                method: format!("`ctr content ingest --expected-digest` from a file; {method}"),
            },
            Metric {
                id: "content-read",
                title: format!("content read {} MiB", ctx.ingest_mib),
                unit: "MB/s",
                higher_is_better: true,
                target_ratio: Some(1.0),
                method: format!("`ctr content get` to /dev/null; {method}"),
            },
        ],
        run,
    }
}

fn run(d: &mut Daemon, ctx: &Ctx) -> Vec<Side> {
    if ctx.random_blobs.len() < ctx.warmup + ctx.runs {
        return all_err(2, ctx.missing("random blob"));
    }
    let res = measure(d, ctx);
    for (_, digest) in &ctx.random_blobs {
        let _ = d.run(&["content", "rm", digest]);
    }
    match res {
        Ok((w, r)) => vec![summarise(&w), summarise(&r)],
        Err(e) => all_err(2, e),
    }
}

/// Run i ingests blob i (no deletes in between, see fixtures::random_blobs)
/// and reads it straight back.
fn measure(d: &Daemon, ctx: &Ctx) -> Result<(Vec<f64>, Vec<f64>), SideError> {
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for (i, (path, digest)) in ctx
        .random_blobs
        .iter()
        .enumerate()
        .take(ctx.warmup + ctx.runs)
    {
        let size = std::fs::metadata(path)
            .map_err(|e| SideError::Failed(format!("{}: {e}", path.display())))?
            .len();
        let mb = size as f64 / 1e6;
        let input =
            File::open(path).map_err(|e| SideError::Failed(format!("{}: {e}", path.display())))?;
        let reference = format!("berth-bench-ingest-{i}");
        let size_s = size.to_string();
        let t = Instant::now();
        d.run_io(
            &[
                "content",
                "ingest",
                "--expected-size",
                &size_s,
                "--expected-digest",
                digest,
                &reference,
            ],
            Stdio::from(input),
            Stdio::null(),
        )?;
        let wt = t.elapsed().as_secs_f64();
        let t = Instant::now();
        d.run_io(&["content", "get", digest], Stdio::null(), Stdio::null())?;
        let rt = t.elapsed().as_secs_f64();
        if i >= ctx.warmup {
            writes.push(mb / wt);
            reads.push(mb / rt);
        }
    }
    Ok((writes, reads))
}
