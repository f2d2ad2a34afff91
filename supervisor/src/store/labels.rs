//! Labels: validation and field-mask updates, with containerd's rules.

use std::collections::BTreeMap;

use super::{Error, Result};

/// A record's labels, ordered for stable output.
pub type Labels = BTreeMap<String, String>;

/// Refuses empty keys, NUL bytes and labels over 4096 bytes.
pub fn validate(labels: &Labels) -> Result<()> {
    for (k, v) in labels {
        berth_api::identifiers::validate_label(k, v)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    }
    Ok(())
}

/// Applies `incoming` to `current` under a field mask, as containerd does:
/// no paths replaces all labels; `labels` replaces the whole map;
/// `labels.KEY` sets one key (an empty value removes it). Any other path
/// is refused unless `allowed` lists it (the caller handles those fields).
/// Returns the non-label paths the caller must apply.
pub fn apply_mask(
    current: &mut Labels,
    incoming: &Labels,
    paths: &[String],
    allowed: &[&str],
) -> Result<Vec<String>> {
    validate(incoming)?;
    if paths.is_empty() {
        *current = incoming.clone();
        return Ok(allowed.iter().map(|s| s.to_string()).collect());
    }
    let mut others = Vec::new();
    for path in paths {
        if path == "labels" {
            *current = incoming.clone();
        } else if let Some(key) = path.strip_prefix("labels.") {
            match incoming.get(key) {
                Some(v) if !v.is_empty() => {
                    current.insert(key.to_string(), v.clone());
                }
                _ => {
                    current.remove(key);
                }
            }
        } else if allowed.contains(&path.as_str()) {
            others.push(path.clone());
        } else {
            return Err(Error::InvalidArgument(format!(
                "update_mask: cannot update field {path:?}"
            )));
        }
    }
    Ok(others)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn masks() {
        let mut cur = l(&[("a", "1"), ("b", "2")]);
        apply_mask(
            &mut cur,
            &l(&[("a", "9"), ("c", "3")]),
            &["labels.a".into()],
            &[],
        )
        .unwrap();
        assert_eq!(cur, l(&[("a", "9"), ("b", "2")]));
        apply_mask(&mut cur, &l(&[]), &["labels.b".into()], &[]).unwrap();
        assert_eq!(cur, l(&[("a", "9")]));
        apply_mask(&mut cur, &l(&[("z", "1")]), &[], &[]).unwrap();
        assert_eq!(cur, l(&[("z", "1")]));
        let err = apply_mask(&mut cur, &l(&[]), &["name".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("name"));
        let others = apply_mask(&mut cur, &l(&[]), &["target".into()], &["target"]).unwrap();
        assert_eq!(others, vec!["target".to_string()]);
        assert!(apply_mask(&mut cur, &l(&[("", "x")]), &[], &[]).is_err());
    }
}
