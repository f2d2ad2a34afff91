//! One module per command group; each exposes a clap `Cmd` enum and
//! `run(ctx, cmd)`.

pub mod containers;
pub mod content;
pub mod docs;
pub mod engine;
pub mod engine_run;
pub mod events;
pub mod files;
pub mod images;
pub mod images_registry;
pub mod images_transfer;
pub mod leases;
pub mod metrics;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod registry_progress;
pub mod run;
pub mod snapshots;
pub mod system;
pub mod tasks;
pub mod version;
pub mod volume;

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

/// What one item of [`for_each`] did: the line a table prints for it and
/// the object JSON output holds for it.
pub struct Done {
    /// a table's line (without the newline)
    pub line: String,
    /// JSON's object
    pub json: serde_json::Value,
}

impl Done {
    /// An item known by one name: `name` as the line, `{key: name}` as JSON.
    pub fn named(key: &str, name: &str) -> Self {
        Self {
            line: name.to_string(),
            json: serde_json::json!({ key: name }),
        }
    }
}

/// Runs `f` on every item (`rm A B C`, `tag SRC A B`): a table gets one
/// line per item done, as it is done; JSON gets one array of the objects
/// of the items done, at the end (also when some failed). Each failure is
/// reported on its own stderr line; fails with [`Error::Partial`] when any
/// did (a single item's failure is returned as is).
pub async fn for_each<T, F, Fut>(ctx: &Ctx, items: &[T], mut f: F) -> Result<()>
where
    F: FnMut(&T) -> Fut,
    Fut: std::future::Future<Output = Result<Done>>,
{
    let mut failed = 0;
    let mut done = Vec::new();
    for item in items {
        match f(item).await {
            Ok(d) => {
                if ctx.out.json() {
                    done.push(d.json);
                } else {
                    crate::output::write_stdout(&format!("{}\n", d.line))?;
                }
            }
            Err(e) if items.len() == 1 => return Err(e),
            Err(e) => {
                eprintln!("berthctl: {e}");
                failed += 1;
            }
        }
    }
    if ctx.out.json() {
        ctx.out.json_value(&done)?;
    }
    if failed > 0 {
        return Err(Error::Partial {
            failed,
            total: items.len(),
        });
    }
    Ok(())
}
