//! The pure part of collection: nodes, label edges, and the mark walk.

use std::collections::{BTreeMap, HashSet};

/// Label that makes a content blob or snapshot a root by itself.
pub const ROOT_LABEL: &str = "containerd.io/gc.root";
/// Prefix of labels whose value is a content digest that must be kept.
pub const CONTENT_REF_PREFIX: &str = "containerd.io/gc.ref.content";
/// Prefix of labels `...snapshot.<snapshotter>[/x]` whose value is a
/// snapshot key of that snapshotter that must be kept.
pub const SNAPSHOT_REF_PREFIX: &str = "containerd.io/gc.ref.snapshot.";

/// Something collection can keep or remove.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A content blob record of a namespace.
    Content {
        /// namespace
        ns: String,
        /// digest string
        digest: String,
    },
    /// A snapshot of a namespace.
    Snapshot {
        /// namespace
        ns: String,
        /// snapshotter name
        snapshotter: String,
        /// key or name
        key: String,
    },
}

impl Node {
    /// A content node.
    pub fn content(ns: &str, digest: &str) -> Self {
        Node::Content {
            ns: ns.to_string(),
            digest: digest.to_string(),
        }
    }

    /// A snapshot node.
    pub fn snapshot(ns: &str, snapshotter: &str, key: &str) -> Self {
        Node::Snapshot {
            ns: ns.to_string(),
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        }
    }
}

/// The references that `labels` (of an object in `ns`) hold, containerd's
/// way: `containerd.io/gc.ref.content*` → content, and
/// `containerd.io/gc.ref.snapshot.<snapshotter>[/anything]` → snapshot.
pub fn label_refs<'a>(
    ns: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = Node> + 'a {
    labels.iter().filter_map(move |(k, v)| {
        if v.is_empty() {
            return None;
        }
        if let Some(rest) = k.strip_prefix(SNAPSHOT_REF_PREFIX) {
            let sn = rest.split('/').next().unwrap_or_default();
            return (!sn.is_empty()).then(|| Node::snapshot(ns, sn, v));
        }
        k.starts_with(CONTENT_REF_PREFIX)
            .then(|| Node::content(ns, v))
    })
}

/// What a node points at, as read from the candidate records.
#[derive(Debug, Default, Clone)]
pub struct Edges {
    /// Labels of the object.
    pub labels: BTreeMap<String, String>,
    /// The parent snapshot (snapshots only).
    pub parent: Option<Node>,
}

/// Everything reachable from `roots` through `edges`. Nodes absent from
/// `edges` (no record) are marked but lead nowhere.
pub fn mark(
    roots: impl IntoIterator<Item = Node>,
    edges: &std::collections::HashMap<Node, Edges>,
) -> HashSet<Node> {
    let mut seen = HashSet::new();
    let mut stack: Vec<Node> = roots.into_iter().collect();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        let Some(e) = edges.get(&n) else { continue };
        let ns = match &n {
            Node::Content { ns, .. } | Node::Snapshot { ns, .. } => ns.as_str(),
        };
        stack.extend(label_refs(ns, &e.labels).filter(|r| !seen.contains(r)));
        if let Some(p) = &e.parent {
            if !seen.contains(p) {
                stack.push(p.clone());
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_refs_follow_containerd_rules() {
        let l = labels(&[
            ("containerd.io/gc.ref.content.m.0", "sha256:a"),
            ("containerd.io/gc.ref.content", "sha256:b"),
            ("containerd.io/gc.ref.snapshot.overlayfs", "chain"),
            ("containerd.io/gc.ref.snapshot.native/1", "chain2"),
            ("containerd.io/gc.ref.snapshot.", "nothing"),
            ("containerd.io/gc.ref.content.x", ""),
            ("other", "sha256:c"),
        ]);
        let mut got: Vec<Node> = label_refs("n", &l).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                Node::content("n", "sha256:a"),
                Node::content("n", "sha256:b"),
                Node::snapshot("n", "native", "chain2"),
                Node::snapshot("n", "overlayfs", "chain"),
            ]
        );
    }

    #[test]
    fn marks_through_labels_and_parents_only() {
        let mut e = HashMap::new();
        e.insert(
            Node::content("n", "idx"),
            Edges {
                labels: labels(&[("containerd.io/gc.ref.content.m.0", "man")]),
                parent: None,
            },
        );
        e.insert(
            Node::content("n", "man"),
            Edges {
                labels: labels(&[("containerd.io/gc.ref.content.config", "cfg")]),
                parent: None,
            },
        );
        e.insert(
            Node::content("n", "cfg"),
            Edges {
                labels: labels(&[("containerd.io/gc.ref.snapshot.overlayfs", "c2")]),
                parent: None,
            },
        );
        e.insert(
            Node::snapshot("n", "overlayfs", "c2"),
            Edges {
                labels: BTreeMap::new(),
                parent: Some(Node::snapshot("n", "overlayfs", "c1")),
            },
        );
        e.insert(Node::snapshot("n", "overlayfs", "c1"), Edges::default());
        e.insert(Node::content("n", "orphan"), Edges::default());
        e.insert(Node::content("m", "man"), Edges::default());
        let live = mark([Node::content("n", "idx")], &e);
        assert!(live.contains(&Node::snapshot("n", "overlayfs", "c1")));
        assert!(live.contains(&Node::content("n", "cfg")));
        assert!(!live.contains(&Node::content("n", "orphan")));
        assert!(
            !live.contains(&Node::content("m", "man")),
            "namespaces are separate"
        );
        assert_eq!(live.len(), 5);
    }
}
