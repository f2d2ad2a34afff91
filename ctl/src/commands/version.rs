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
    /// source revision, when known
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revision: String,
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
            revision: String::new(),
        },
        server: Side {
            version: resp.version,
            revision: resp.revision,
        },
    };
    ctx.out.object(&v, |v| {
        let mut s = format!(
            "Client:\n  Version:  {}\n\nServer:\n  Version:  {}\n",
            v.client.version, v.server.version
        );
        if !v.server.revision.is_empty() {
            s.push_str(&format!("  Revision: {}\n", v.server.revision));
        }
        s
    })
}
