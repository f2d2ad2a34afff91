//! One module per command group; each exposes a clap `Cmd` enum and
//! `run(ctx, cmd)`.

pub mod containers;
pub mod content;
pub mod events;
pub mod exec;
pub mod images;
pub mod images_registry;
pub mod images_transfer;
pub mod leases;
pub mod metrics;
pub mod namespaces;
pub mod run;
pub mod snapshots;
pub mod task_io;
pub mod tasks;
pub mod version;

use std::collections::{BTreeMap, HashMap};

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

/// Parses `key=value` arguments into labels. `key=` (empty value) is kept:
/// in an update it removes the label, as with ctr.
pub fn parse_labels(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for arg in args {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| Error::Input(format!("label {arg:?}: expected key=value")))?;
        if k.is_empty() {
            return Err(Error::Input(format!(
                "label {arg:?}: key must not be empty"
            )));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

/// Labels for the wire.
pub fn wire_labels(labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The field mask paths that set exactly these labels (`labels.KEY`).
pub fn label_paths(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels.keys().map(|k| format!("labels.{k}")).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        let l = parse_labels(&["a=1".into(), "b=".into(), "c=x=y".into()]).unwrap();
        assert_eq!(l["a"], "1");
        assert_eq!(l["b"], "");
        assert_eq!(l["c"], "x=y");
        assert!(parse_labels(&["noeq".into()]).is_err());
        assert!(parse_labels(&["=v".into()]).is_err());
        assert_eq!(label_paths(&l), vec!["labels.a", "labels.b", "labels.c"]);
    }
}
