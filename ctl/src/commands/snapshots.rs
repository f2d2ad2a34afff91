//! `berthctl snapshots ls|tree|usage|rm|mounts|prepare|view|commit|info|label`.

use std::collections::BTreeMap;

use berth_api::services::snapshots::v1 as pb;
use berth_api::types::Mount;
use serde::Serialize;

use super::{for_each, Ctx, Done};
use crate::error::{Result, RpcContext};
use crate::labels::{label_paths, parse_labels, wire_labels};
use crate::output::{age, human_size, labels_cell, rfc3339, sorted_labels, Row};
use crate::workflows::create::DEFAULT_SNAPSHOTTER;

/// Snapshot commands; `--snapshotter` picks the snapshotter
/// ([`DEFAULT_SNAPSHOTTER`] when absent, as berthd needs one named).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// snapshotter: overlayfs or native
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = DEFAULT_SNAPSHOTTER, global = true)]
    pub snapshotter: String,
    /// what to do
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Snapshot subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// List snapshots
    #[command(visible_alias = "list")]
    Ls {
        /// print keys only
        #[arg(short, long)]
        quiet: bool,
        /// containerd filters, e.g. `kind==committed` (several: any matches)
        filters: Vec<String>,
    },
    /// Show snapshots as a tree of parents and children
    Tree,
    /// Disk usage of snapshots (all when no key is given)
    #[command(visible_alias = "du")]
    Usage {
        /// snapshot keys
        keys: Vec<String>,
    },
    /// Remove snapshots
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// snapshot keys
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print the mount commands for a snapshot at TARGET
    Mounts {
        /// where the snapshot would be mounted
        target: String,
        /// snapshot key
        key: String,
    },
    /// Prepare an active (writable) snapshot; prints its mounts at TARGET
    Prepare {
        /// new snapshot key
        key: String,
        /// parent (a committed snapshot)
        parent: Option<String>,
        /// where to print the mount for
        #[arg(long, default_value = "/tmp/mnt")]
        target: String,
        /// labels, key=value (repeatable)
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Create a read-only view of a committed snapshot
    View {
        /// new snapshot key
        key: String,
        /// parent (a committed snapshot)
        parent: Option<String>,
        /// where to print the mount for
        #[arg(long, default_value = "/tmp/mnt")]
        target: String,
        /// labels, key=value (repeatable)
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Commit an active snapshot under a name
    Commit {
        /// committed snapshot name
        name: String,
        /// active snapshot key
        key: String,
        /// labels, key=value (repeatable)
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Show one snapshot
    Info {
        /// snapshot key
        key: String,
    },
    /// Set labels on a snapshot (`key=` removes one)
    Label {
        /// snapshot key
        key: String,
        /// labels as key=value
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

/// One snapshot, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    /// key (or name, for committed ones)
    pub key: String,
    /// parent name, empty for a base
    pub parent: String,
    /// view, active or committed
    pub kind: String,
    /// RFC 3339
    pub created_at: Option<String>,
    /// RFC 3339
    pub updated_at: Option<String>,
    /// labels
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    age: String,
}

impl Row for SnapshotRow {
    fn headers() -> &'static [&'static str] {
        &["KEY", "PARENT", "KIND", "AGE", "LABELS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.key.clone(),
            dash(&self.parent),
            self.kind.clone(),
            self.age.clone(),
            labels_cell(&self.labels),
        ]
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// A wire kind as a word.
pub fn kind_name(k: i32) -> &'static str {
    match pb::Kind::try_from(k) {
        Ok(pb::Kind::View) => "view",
        Ok(pb::Kind::Active) => "active",
        Ok(pb::Kind::Committed) => "committed",
        _ => "unknown",
    }
}

fn row(i: pb::Info) -> SnapshotRow {
    SnapshotRow {
        age: age(i.created_at.as_ref()),
        kind: kind_name(i.kind).into(),
        key: i.name,
        parent: i.parent,
        created_at: rfc3339(i.created_at.as_ref()),
        updated_at: rfc3339(i.updated_at.as_ref()),
        labels: sorted_labels(i.labels),
    }
}

/// Disk usage of one snapshot.
#[derive(Debug, Serialize)]
pub struct UsageRow {
    /// snapshot key
    pub key: String,
    /// bytes
    pub size: i64,
    /// inodes
    pub inodes: i64,
}

impl Row for UsageRow {
    fn headers() -> &'static [&'static str] {
        &["KEY", "SIZE", "INODES"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.key.clone(),
            human_size(self.size),
            self.inodes.to_string(),
        ]
    }
}

/// One mount, as JSON.
#[derive(Debug, Serialize)]
pub struct MountJson {
    /// filesystem type
    #[serde(rename = "type")]
    pub kind: String,
    /// source
    pub source: String,
    /// target (where it would be mounted)
    pub target: String,
    /// mount options
    pub options: Vec<String>,
}

/// Mounts as `mount` commands for `target`, one per line.
pub fn mount_commands(mounts: &[Mount], target: &str) -> String {
    let mut s = String::new();
    for m in mounts {
        s.push_str(&format!("mount -t {} {} {}", m.r#type, m.source, target));
        if !m.options.is_empty() {
            s.push_str(&format!(" -o {}", m.options.join(",")));
        }
        s.push('\n');
    }
    s
}

/// Lists every snapshot of a snapshotter.
pub async fn list_all(
    ctx: &Ctx,
    snapshotter: &str,
    filters: Vec<String>,
) -> Result<Vec<SnapshotRow>> {
    let mut stream = ctx
        .client
        .snapshots()
        .list(pb::ListSnapshotsRequest {
            snapshotter: snapshotter.into(),
            filters,
        })
        .await
        .context("list snapshots")?
        .into_inner();
    let mut rows = Vec::new();
    while let Some(batch) = stream.message().await.context("list snapshots")? {
        rows.extend(batch.info.into_iter().map(row));
    }
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(rows)
}

/// Runs a snapshot command.
pub async fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let sn = args.snapshotter;
    let mut c = ctx.client.snapshots();
    match args.cmd {
        Cmd::Ls { quiet, filters } => {
            let rows = list_all(ctx, &sn, filters).await?;
            if quiet && !ctx.out.json() {
                return ctx.out.lines(rows.iter().map(|r| &r.key));
            }
            ctx.out.list(&rows)
        }
        Cmd::Tree => {
            let rows = list_all(ctx, &sn, Vec::new()).await?;
            if ctx.out.json() {
                return ctx.out.json_value(&tree_json(&rows));
            }
            crate::output::write_stdout(&tree_text(&rows))
        }
        Cmd::Usage { keys } => {
            let keys = if keys.is_empty() {
                list_all(ctx, &sn, Vec::new())
                    .await?
                    .into_iter()
                    .map(|r| r.key)
                    .collect()
            } else {
                keys
            };
            let mut rows = Vec::new();
            for key in keys {
                let u = c
                    .usage(pb::UsageRequest {
                        snapshotter: sn.clone(),
                        key: key.clone(),
                    })
                    .await
                    .with_context(|| format!("usage of snapshot {key:?}"))?
                    .into_inner();
                rows.push(UsageRow {
                    key,
                    size: u.size,
                    inodes: u.inodes,
                });
            }
            ctx.out.list(&rows)
        }
        Cmd::Rm { keys } => {
            for_each(ctx, &keys, |key| {
                let mut c = c.clone();
                let (key, sn) = (key.clone(), sn.clone());
                async move {
                    c.remove(pb::RemoveSnapshotRequest {
                        snapshotter: sn,
                        key: key.clone(),
                    })
                    .await
                    .with_context(|| format!("remove snapshot {key:?}"))?;
                    Ok(Done::named("key", &key))
                }
            })
            .await
        }
        Cmd::Mounts { target, key } => {
            let m = c
                .mounts(pb::MountsRequest {
                    snapshotter: sn,
                    key: key.clone(),
                })
                .await
                .with_context(|| format!("mounts of snapshot {key:?}"))?
                .into_inner();
            print_mounts(ctx, &m.mounts, &target)
        }
        Cmd::Prepare {
            key,
            parent,
            target,
            labels,
        } => {
            let m = c
                .prepare(pb::PrepareSnapshotRequest {
                    snapshotter: sn,
                    key: key.clone(),
                    parent: parent.unwrap_or_default(),
                    labels: wire_labels(&parse_labels(&labels)?),
                })
                .await
                .with_context(|| format!("prepare snapshot {key:?}"))?
                .into_inner();
            print_mounts(ctx, &m.mounts, &target)
        }
        Cmd::View {
            key,
            parent,
            target,
            labels,
        } => {
            let m = c
                .view(pb::ViewSnapshotRequest {
                    snapshotter: sn,
                    key: key.clone(),
                    parent: parent.unwrap_or_default(),
                    labels: wire_labels(&parse_labels(&labels)?),
                })
                .await
                .with_context(|| format!("view snapshot {key:?}"))?
                .into_inner();
            print_mounts(ctx, &m.mounts, &target)
        }
        Cmd::Commit { name, key, labels } => {
            c.commit(pb::CommitSnapshotRequest {
                snapshotter: sn,
                name: name.clone(),
                key: key.clone(),
                labels: wire_labels(&parse_labels(&labels)?),
            })
            .await
            .with_context(|| format!("commit snapshot {key:?} as {name:?}"))?;
            if ctx.out.json() {
                return ctx
                    .out
                    .json_value(&serde_json::json!({"name": name, "key": key}));
            }
            crate::output::write_stdout(&format!("{name}\n"))
        }
        Cmd::Info { key } => {
            let info = c
                .stat(pb::StatSnapshotRequest {
                    snapshotter: sn,
                    key: key.clone(),
                })
                .await
                .with_context(|| format!("stat snapshot {key:?}"))?
                .into_inner()
                .info
                .unwrap_or_default();
            let r = row(info);
            ctx.out.object(&r, |r| {
                format!(
                    "Key:      {}\nParent:   {}\nKind:     {}\nCreated:  {}\nUpdated:  {}\nLabels:   {}\n",
                    r.key,
                    dash(&r.parent),
                    r.kind,
                    r.created_at.as_deref().unwrap_or("-"),
                    r.updated_at.as_deref().unwrap_or("-"),
                    labels_cell(&r.labels)
                )
            })
        }
        Cmd::Label { key, labels } => {
            let labels = parse_labels(&labels)?;
            let info = c
                .update(pb::UpdateSnapshotRequest {
                    snapshotter: sn,
                    info: Some(pb::Info {
                        name: key.clone(),
                        labels: wire_labels(&labels),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: label_paths(&labels),
                    }),
                })
                .await
                .with_context(|| format!("label snapshot {key:?}"))?
                .into_inner()
                .info
                .unwrap_or_default();
            let r = row(info);
            ctx.out.object(&r, |r| format!("{}\n", r.key))
        }
    }
}

fn print_mounts(ctx: &Ctx, mounts: &[Mount], target: &str) -> Result<()> {
    if ctx.out.json() {
        let v: Vec<MountJson> = mounts
            .iter()
            .map(|m| MountJson {
                kind: m.r#type.clone(),
                source: m.source.clone(),
                target: target.to_string(),
                options: m.options.clone(),
            })
            .collect();
        return ctx.out.json_value(&v);
    }
    crate::output::write_stdout(&mount_commands(mounts, target))
}

/// Children of each parent ("" for bases), in key order.
fn children(rows: &[SnapshotRow]) -> BTreeMap<&str, Vec<&SnapshotRow>> {
    let keys: std::collections::HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let mut map: BTreeMap<&str, Vec<&SnapshotRow>> = BTreeMap::new();
    for r in rows {
        // A parent we cannot see (other snapshotter, filtered) makes a root.
        let p = if keys.contains(r.parent.as_str()) {
            r.parent.as_str()
        } else {
            ""
        };
        map.entry(p).or_default().push(r);
    }
    map
}

/// The tree as indented text: each child two spaces under its parent.
pub fn tree_text(rows: &[SnapshotRow]) -> String {
    let kids = children(rows);
    let mut out = String::new();
    let mut stack: Vec<(&SnapshotRow, usize)> = kids
        .get("")
        .map(|v| v.iter().rev().map(|r| (*r, 0)).collect())
        .unwrap_or_default();
    while let Some((r, depth)) = stack.pop() {
        out.push_str(&"  ".repeat(depth));
        out.push_str(&format!("{} ({})\n", r.key, r.kind));
        if let Some(v) = kids.get(r.key.as_str()) {
            stack.extend(v.iter().rev().map(|c| (*c, depth + 1)));
        }
    }
    out
}

/// The tree as JSON: `[{key, kind, children: [...]}]`.
fn tree_json(rows: &[SnapshotRow]) -> serde_json::Value {
    fn node(
        r: &SnapshotRow,
        kids: &BTreeMap<&str, Vec<&SnapshotRow>>,
        depth: usize,
    ) -> serde_json::Value {
        let children: Vec<serde_json::Value> = if depth > 4096 {
            Vec::new()
        } else {
            kids.get(r.key.as_str())
                .map(|v| v.iter().map(|c| node(c, kids, depth + 1)).collect())
                .unwrap_or_default()
        };
        serde_json::json!({"key": r.key, "kind": r.kind, "children": children})
    }
    let kids = children(rows);
    let roots: Vec<serde_json::Value> = kids
        .get("")
        .map(|v| v.iter().map(|r| node(r, &kids, 0)).collect())
        .unwrap_or_default();
    serde_json::Value::Array(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, parent: &str) -> SnapshotRow {
        SnapshotRow {
            key: key.into(),
            parent: parent.into(),
            kind: "committed".into(),
            created_at: None,
            updated_at: None,
            labels: BTreeMap::new(),
            age: "-".into(),
        }
    }

    #[test]
    fn tree_indents_children() {
        let rows = vec![
            r("a", ""),
            r("b", "a"),
            r("c", "b"),
            r("d", "a"),
            r("e", ""),
        ];
        assert_eq!(
            tree_text(&rows),
            "a (committed)\n  b (committed)\n    c (committed)\n  d (committed)\ne (committed)\n"
        );
        let j = tree_json(&rows);
        assert_eq!(j[0]["children"][0]["children"][0]["key"], "c");
    }

    #[test]
    fn mount_lines() {
        let m = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec!["lowerdir=/a".into(), "upperdir=/b".into()],
        };
        assert_eq!(
            mount_commands(&[m], "/mnt"),
            "mount -t overlay overlay /mnt -o lowerdir=/a,upperdir=/b\n"
        );
    }
}
