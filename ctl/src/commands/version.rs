//! `berthctl version`: client and server versions.

use serde::Serialize;

use super::Ctx;
use crate::error::{Result, RpcContext};

/// Both sides' versions.
#[derive(Debug, Serialize)]
pub struct Versions {
    /// this binary
    pub client: Side,
    /// berthd
    pub server: Side,
}

/// One side's version.
#[derive(Debug, Serialize)]
pub struct Side {
    /// semantic version
    pub version: String,
    /// source revision (git commit), when known
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// UTC day of the build, when known (the server does not say)
    #[serde(skip_serializing_if = "String::is_empty")]
    pub build_date: String,
}

/// Prints both versions.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let resp = ctx
        .client
        .version()
        .version(())
        .await
        .context("get server version")?
        .into_inner();
    let v = Versions {
        client: Side {
            version: env!("CARGO_PKG_VERSION").into(),
            revision: env!("BERTH_COMMIT").into(),
            build_date: env!("BERTH_BUILD_DATE").into(),
        },
        server: Side {
            version: resp.version,
            revision: resp.revision,
            build_date: String::new(),
        },
    };
    ctx.out.object(&v, |v| {
        format!(
            "Client:\n{}\nServer:\n{}",
            side_text(&v.client),
            side_text(&v.server)
        )
    })
}

fn side_text(s: &Side) -> String {
    let mut out = format!("  Version:  {}\n", s.version);
    if !s.revision.is_empty() {
        out.push_str(&format!("  Revision: {}\n", s.revision));
    }
    if !s.build_date.is_empty() {
        out.push_str(&format!("  Built:    {}\n", s.build_date));
    }
    out
}
