//! One module per command group; each exposes a clap `Cmd` enum and
//! `run(ctx, cmd)`.

pub mod containers;
pub mod content;
pub mod events;
pub mod images;
pub mod images_registry;
pub mod images_transfer;
pub mod leases;
pub mod metrics;
pub mod namespaces;
pub mod process;
pub mod run;
pub mod snapshots;
pub mod tasks;
pub mod version;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::output::Printer;

/// What every command gets: a connected client and the printer.
pub struct Ctx {
    /// connected to berthd, in the chosen namespace
    pub client: Client,
    /// stdout in the chosen format
    pub out: Printer,
}

/// Runs `f` on every item, reporting each failure on its own stderr line;
/// fails with [`Error::Partial`] when any did. Used by `rm A B C`.
pub async fn for_each<T, F, Fut>(items: &[T], mut f: F) -> Result<()>
where
    F: FnMut(&T) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = 0;
    for item in items {
        if let Err(e) = f(item).await {
            if items.len() == 1 {
                return Err(e);
            }
            eprintln!("berthctl: {e}");
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(Error::Partial {
            failed,
            total: items.len(),
        });
    }
    Ok(())
}
