//! `berthctl images pull|push` over berthd's `berth.images.v1.Registry`
//! service: the daemon talks to the registry (auth, resumable blob
//! downloads, unpack as layers land); berthctl shows its progress, one bar
//! per blob plus the total.
//!
//! Credentials are taken per call: `--user USER:PASS` or `--user-file F`
//! (one line, `USER:PASS`); they travel to berthd in the request and are
//! never stored by berthctl.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_api::berth_images::v1 as pb;
use indicatif::{MultiProgress, ProgressBar};

use super::Ctx;
use crate::error::{Error, Result, RpcContext};

/// Registry access flags shared by pull and push.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// credentials as USER:PASS
    #[arg(long, short = 'u', conflicts_with = "user_file")]
    pub user: Option<String>,
    /// file holding USER:PASS on its first line
    #[arg(long)]
    pub user_file: Option<PathBuf>,
    /// talk plain HTTP to the registry (local registries)
    #[arg(long)]
    pub plain_http: bool,
}

/// `images pull` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    /// image reference, e.g. 127.0.0.1:5000/busybox:latest
    pub reference: String,
    /// platform, os/arch[/variant] (default: the daemon's)
    #[arg(long)]
    pub platform: Option<String>,
    /// snapshotter to unpack into (default: the daemon's)
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = "")]
    pub snapshotter: String,
    /// fetch content only
    #[arg(long)]
    pub skip_unpack: bool,
    /// registry access
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `images push` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// where to push, e.g. 127.0.0.1:5000/busybox:latest
    pub reference: String,
    /// local image to push (default: the same name as the reference)
    pub image: Option<String>,
    /// platform to push, os/arch[/variant] (default: all the image has)
    #[arg(long)]
    pub platform: Option<String>,
    /// registry access
    #[command(flatten)]
    pub auth: AuthArgs,
}

fn credentials(a: &AuthArgs) -> Result<Option<pb::RegistryCredentials>> {
    let raw = match (&a.user, &a.user_file) {
        (Some(u), _) => u.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| Error::io(format!("read {}", f.display()), e))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        (None, None) => return Ok(None),
    };
    let (user, pass) = raw
        .split_once(':')
        .ok_or_else(|| Error::Input("--user: expected USER:PASS".into()))?;
    Ok(Some(pb::RegistryCredentials {
        username: user.into(),
        password: pass.into(),
        token: String::new(),
    }))
}

/// Per-blob bars under one total bar (only when stderr is a terminal).
struct Bars {
    multi: Option<MultiProgress>,
    total: Option<ProgressBar>,
    blobs: HashMap<String, ProgressBar>,
}

impl Bars {
    fn new(label: &str) -> Self {
        let multi = crate::progress::multi();
        let total = multi
            .as_ref()
            .map(|m| m.add(crate::progress::styled_bar(None, label.to_string())));
        Self {
            multi,
            total,
            blobs: HashMap::new(),
        }
    }

    fn update(&mut self, blobs: &[pb::RegistryBlob], done: i64, total: i64) {
        let Some(multi) = &self.multi else { return };
        if let Some(t) = &self.total {
            if total > 0 && t.length() != Some(total as u64) {
                t.set_length(total as u64);
                crate::progress::set_style(t, true);
            }
            t.set_position(done.max(0) as u64);
        }
        for b in blobs {
            let bar = self.blobs.entry(b.digest.clone()).or_insert_with(|| {
                let short: String = b.digest.chars().skip(7).take(12).collect();
                let known = (b.total > 0).then_some(b.total as u64);
                multi.add(crate::progress::styled_bar(
                    known,
                    format!("{} {short}", b.kind),
                ))
            });
            if b.total > 0 && bar.length() != Some(b.total as u64) {
                bar.set_length(b.total as u64);
                crate::progress::set_style(bar, true);
            }
            bar.set_position(b.offset.max(0) as u64);
            let state = pb::BlobState::try_from(b.state)
                .map(|s| s.as_str_name().to_ascii_lowercase())
                .unwrap_or_default();
            let short: String = b.digest.chars().skip(7).take(12).collect();
            bar.set_message(format!("{short} {state}"));
        }
    }

    fn finish(self) {
        for b in self.blobs.values() {
            b.finish_and_clear();
        }
        if let Some(t) = self.total {
            t.finish_and_clear();
        }
    }
}

fn print_result(ctx: &Ctx, r: Option<pb::TransferResult>, what: &str) -> Result<()> {
    let r = r.ok_or_else(|| Error::Protocol(format!("{what}: the daemon reported no result")))?;
    if ctx.out.json() {
        return ctx.out.json_value(&serde_json::json!({
            "name": r.name, "digest": r.digest, "media_type": r.media_type, "size": r.size,
            "manifest_digest": r.manifest_digest, "platform": r.platform, "chain_id": r.chain_id,
        }));
    }
    crate::output::write_stdout(&format!("{} {}\n", r.name, r.digest))
}

/// Pulls an image through the daemon, showing progress.
pub async fn pull(ctx: &Ctx, a: PullArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        crate::oci::Platform::parse(p)?;
    }
    let what = format!("pull {}", a.reference);
    let mut stream = ctx
        .client
        .registry()
        .pull(pb::PullRequest {
            reference: a.reference.clone(),
            platform: a.platform.clone().unwrap_or_default(),
            credentials: credentials(&a.auth)?,
            plain_http: a.auth.plain_http,
            snapshotter: a.snapshotter.clone(),
            skip_unpack: a.skip_unpack,
            labels: HashMap::new(),
        })
        .await
        .context(what.clone())?
        .into_inner();
    let mut bars = Bars::new("pulling");
    let mut result = None;
    let outcome = async {
        while let Some(p) = stream.message().await.context(what.clone())? {
            bars.update(&p.blobs, p.bytes_done, p.bytes_total);
            if p.result.is_some() {
                result = p.result;
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    bars.finish();
    outcome?;
    print_result(ctx, result, &what)
}

/// Pushes an image through the daemon, showing progress.
pub async fn push(ctx: &Ctx, a: PushArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        crate::oci::Platform::parse(p)?;
    }
    let what = format!("push {}", a.reference);
    let mut stream = ctx
        .client
        .registry()
        .push(pb::PushRequest {
            image: a.image.clone().unwrap_or_else(|| a.reference.clone()),
            reference: a.reference.clone(),
            platform: a.platform.clone().unwrap_or_default(),
            credentials: credentials(&a.auth)?,
            plain_http: a.auth.plain_http,
        })
        .await
        .context(what.clone())?
        .into_inner();
    let mut bars = Bars::new("pushing");
    let mut result = None;
    let outcome = async {
        while let Some(p) = stream.message().await.context(what.clone())? {
            bars.update(&p.blobs, p.bytes_done, p.bytes_total);
            if p.result.is_some() {
                result = p.result;
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    bars.finish();
    outcome?;
    print_result(ctx, result, &what)
}
