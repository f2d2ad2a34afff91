//! `berthctl images pull|push` over berthd's `berth.images.v1.Registry`
//! service: the daemon talks to the registry (auth, resumable blob
//! downloads, unpack as layers land); berthctl shows its progress, one bar
//! per blob plus the total (`registry_progress.rs`).
//!
//! Credentials are taken per call: `--user USER:PASS` or `--user-file F`
//! (one line, `USER:PASS`); they travel to berthd in the request and are
//! never stored by berthctl.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_api::berth_images::v1 as pb;
use berth_api::oci::{Descriptor, Platform};
use serde::Serialize;

use super::registry_progress::{Bars, Direction};
use super::Ctx;
use crate::error::{Error, Result, RpcContext};
use crate::workflows::create::DEFAULT_SNAPSHOTTER;

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
    /// snapshotter to unpack into
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER)]
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

/// `images pull|push -o json`: the image's fields named and typed as in
/// `images ls` (`size` is what the platform occupies: manifest, config and
/// layers), plus what the transfer resolved.
#[derive(Debug, Serialize)]
struct TransferRow {
    /// image name recorded (pull) or remote reference (push)
    name: String,
    /// the target's media type
    media_type: String,
    /// the target's digest
    digest: String,
    /// bytes of the platform transferred; null when its content is missing
    size: Option<i64>,
    /// the platform manifest used
    manifest_digest: String,
    /// os/arch[/variant]
    platform: String,
    /// the top layer's chain ID once unpacked (null when not unpacked)
    chain_id: Option<String>,
}

async fn print_result(ctx: &Ctx, r: Option<pb::TransferResult>, what: &str) -> Result<()> {
    let r = r.ok_or_else(|| Error::Protocol(format!("{what}: the daemon reported no result")))?;
    if !ctx.out.json() {
        return crate::output::write_stdout(&format!("{} {}\n", r.name, r.digest));
    }
    let platform = Platform::parse(&r.platform).unwrap_or_else(|_| Platform::host());
    let size = match r.digest.parse() {
        Ok(digest) => {
            let target = Descriptor::new(r.media_type.clone(), digest, r.size);
            crate::resolve::resolve(&ctx.client, &target, &platform)
                .await
                .ok()
                .map(|resolved| resolved.size())
        }
        Err(_) => None,
    };
    ctx.out.json_value(&TransferRow {
        name: r.name,
        media_type: r.media_type,
        digest: r.digest,
        size,
        manifest_digest: r.manifest_digest,
        platform: r.platform,
        chain_id: Some(r.chain_id).filter(|c| !c.is_empty()),
    })
}

/// Pulls an image through the daemon, showing progress.
pub async fn pull(ctx: &Ctx, a: PullArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        Platform::parse(p)?;
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
    let mut bars = Bars::new(Direction::Pull);
    let mut result = None;
    let outcome = async {
        while let Some(p) = stream.message().await.context(what.clone())? {
            bars.update(p.state, &p.blobs, p.bytes_done, p.bytes_total);
            if p.result.is_some() {
                result = p.result;
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    bars.finish();
    outcome?;
    print_result(ctx, result, &what).await
}

/// Pushes an image through the daemon, showing progress.
pub async fn push(ctx: &Ctx, a: PushArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        Platform::parse(p)?;
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
    let mut bars = Bars::new(Direction::Push);
    let mut result = None;
    let outcome = async {
        while let Some(p) = stream.message().await.context(what.clone())? {
            bars.update(p.state, &p.blobs, p.bytes_done, p.bytes_total);
            if p.result.is_some() {
                result = p.result;
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    bars.finish();
    outcome?;
    print_result(ctx, result, &what).await
}
