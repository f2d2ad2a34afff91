//! Labels as the command line writes them (`key=value`) and as the wire
//! carries them, plus the field-mask paths that update exactly them.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};

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
