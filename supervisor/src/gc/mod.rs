//! Mark-and-sweep garbage collection of content and snapshots, with
//! containerd's labels and rules.
//!
//! Roots: every image's target (and its label refs); every snapshot a
//! container record names; everything a live lease holds (a lease whose
//! `containerd.io/gc.expire` time has passed is deleted instead); content
//! and snapshots labelled `containerd.io/gc.root`. Edges: labels
//! `containerd.io/gc.ref.content*` and `containerd.io/gc.ref.snapshot.<name>`
//! on content and snapshots, and a snapshot's parent. Everything else is
//! removed: content records (the blob goes when no namespace holds it) and
//! snapshots (children before parents). Last, blob files that no namespace
//! records at all (a crash between a commit's rename and its record) are
//! removed, as containerd's collector walks its blob store.
//!
//! # Why a collection never removes something still referenced
//!
//! One collection runs at a time: it holds the write side of an
//! [`RwLock`] for its mark and for the sweep of *records*: a dead
//! snapshot's record goes and its directory is renamed aside
//! (`Snapshotter::detach`), a dead blob's record goes and its file is
//! renamed into the content store's trash (`ContentStore::detach`). Only
//! after releasing the guard does it delete those trees and files, the
//! slow part (seconds for a large image), so writers wait milliseconds
//! (the guard's hold is the `berth_gc_pause_seconds` metric). Nothing can
//! reach a detached directory or trashed file: neither has a record, and
//! a new commit of the same digest or chain lands at a new path.
//!
//! Every call that adds or moves a reference — image create/update/delete, snapshot
//! prepare/view/commit/remove/update, the import's lease bookkeeping and
//! label updates — holds the read side ([`Gc::hold`]) for the short metadata
//! step only, never across a long copy. So during a run the reference graph
//! only changes in ways the run does not need to see:
//!
//! 1. *Creations run outside the guard* (blob ingests, layer applies), but
//!    a creator first puts the new object into its lease under the guard.
//!    If that happened before the run started, the run reads the lease and
//!    keeps the object; if after, the run started first, and
//! 2. the run only ever removes *candidates*: objects listed at its very
//!    start, before any root is read. An object created while the run is
//!    going is not a candidate and survives it; the next run sees its lease.
//! 3. A reference can move from a lease to another root without our guard
//!    (the Leases service deletes leases on its own). Roots are therefore
//!    read leases first: if the lease is already gone when read, the new
//!    root was written before, hence before the later reads that find it.
//!    Edges (labels on content and snapshots, parents) are read after all
//!    roots for the same reason: a client labels a config blob with its
//!    snapshot chain, then drops the lease that held the chain.
//!
//! 4. The content store shares this guard: recording a blob and adding it
//!    to the writer's lease, and finding a blob present and adding it to the
//!    lease of a writer told AlreadyExists, each run under its read side. A
//!    client told "exists" can therefore rely on the blob until its lease
//!    goes. The sweep still re-reads leases just before removing content.
//!
//! A creator must never hold two guards at once (a waiting collection
//! blocks new readers, so a nested read would deadlock).
//!
//! # Lock order
//!
//! Collector guard (read side for creators, write side for a run), then
//! one digest lock of the content store, then sled (whose calls never
//! wait on our locks). A snapshotter's own lock is taken inside one
//! blocking call and never held across an await. Two more rules keep
//! this acyclic in practice: a guard is never held in a future that
//! nobody polls (parallel work that takes guards is spawned as tasks, see
//! `Unpacker::spawn_prepare`: a queued future holding a read guard while
//! its owner waited behind a collection stopped every writer, issue 19
//! item 2), and nothing waits on another request while holding a guard.
//! `images::stress_tests` runs unpacks, container snapshots and
//! collections at once to keep it so.

pub mod mark;
mod records;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_snapshotter::Snapshotter;
use tokio::sync::{Notify, OwnedRwLockReadGuard, RwLock};
use tokio_util::sync::CancellationToken;

use crate::content::ContentStore;
use crate::store::{self, images, leases, Store};
use mark::{label_refs, Edges, Node, ROOT_LABEL};

/// How long collection waits after a delete before running, so bursts of
/// deletes cost one run.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// metadata could not be read or written
    #[error("gc metadata: {0}")]
    Store(#[from] store::Error),
    /// a snapshotter failed
    #[error("gc snapshots: {0}")]
    Snapshots(#[from] berth_snapshotter::Error),
    /// the content store failed
    #[error("gc content: {0}")]
    Content(#[from] crate::content::Error),
    /// a blocking task died
    #[error("gc task: {0}")]
    Join(String),
}

impl Error {
    /// A collection that fails is berthd's own failure, whatever the cause.
    pub fn kind(&self) -> berth_api::ErrorKind {
        berth_api::ErrorKind::Internal
    }
}

/// What a collection reads and removes.
#[derive(Clone)]
pub struct Deps {
    /// Metadata: leases, images, containers, namespaces.
    pub store: Store,
    /// Content records and blobs (its guard is the collector's).
    pub content: ContentStore,
    /// Every snapshotter, by name.
    pub snapshotters: BTreeMap<String, Arc<Snapshotter>>,
}

/// What one run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// content records removed
    pub content: usize,
    /// snapshots removed
    pub snapshots: usize,
    /// expired leases deleted
    pub leases: usize,
    /// blob files no namespace recorded (a crash between a commit's rename
    /// and its record)
    pub orphans: usize,
}

impl Stats {
    /// True when the run removed anything.
    pub fn removed_any(&self) -> bool {
        self.content + self.snapshots + self.leases + self.orphans > 0
    }
}

/// The collector's handle: the guard creators hold, the debounce trigger
/// and the collection itself. Cheap to clone.
#[derive(Clone)]
pub struct Gc {
    lock: Arc<RwLock<()>>,
    wake: Arc<Notify>,
    deps: Arc<Deps>,
    report: Option<crate::metrics::GcReport>,
}

impl std::fmt::Debug for Gc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gc")
    }
}

impl Gc {
    /// A collector over `deps`, guarded by the lock the content store
    /// shares (see [`ContentStore::gc_guard`]).
    pub fn new(deps: Deps) -> Self {
        Self {
            lock: deps.content.gc_guard(),
            wake: Arc::default(),
            deps: Arc::new(deps),
            report: None,
        }
    }

    /// Reports every run (what it removed, how long it held the lock) to
    /// berthd's metrics.
    pub fn reporting_to(mut self, report: crate::metrics::GcReport) -> Self {
        self.report = Some(report);
        self
    }

    /// The read guard a reference-changing metadata step holds (see the
    /// module docs). Never hold two at once.
    pub async fn hold(&self) -> OwnedRwLockReadGuard<()> {
        self.lock.clone().read_owned().await
    }

    /// Asks for a run soon (debounced, in the background task).
    pub fn schedule(&self) {
        self.wake.notify_one();
    }

    /// Collects now and waits for it when `sync` (a client's `sync`
    /// flag), else soon, debounced, in the background.
    pub async fn collect(&self, sync: bool) -> Result<(), Error> {
        if sync {
            self.run().await?;
        } else {
            self.schedule();
        }
        Ok(())
    }

    /// Starts the background task that runs collections after
    /// [`Gc::schedule`], until `stop`.
    pub fn spawn(&self, stop: CancellationToken) {
        let gc = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = gc.wake.notified() => {}
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(DEBOUNCE) => {}
                }
                if let Err(e) = gc.run().await {
                    tracing::warn!(error = %e, "garbage collection failed");
                }
            }
        });
    }

    /// One full collection, now. Waits for a running one to finish.
    pub async fn run(&self) -> Result<Stats, Error> {
        let excl = self.lock.write().await;
        let started = std::time::Instant::now();
        let (stats, detached) = collect(&self.deps).await?;
        drop(excl);
        let held = started.elapsed();
        // The slow part, with writers free to go on.
        delete_detached(detached).await;
        if let Some(r) = &self.report {
            r.run(stats.content, stats.snapshots, stats.leases, held);
        }
        let pause_ms = held.as_millis() as u64;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        // Runs follow every delete: one that removed nothing is routine
        // and would flood INFO under load.
        if stats.removed_any() {
            tracing::info!(
                content = stats.content,
                snapshots = stats.snapshots,
                leases = stats.leases,
                orphans = stats.orphans,
                pause_ms,
                elapsed_ms,
                "garbage collection done"
            );
        } else {
            tracing::debug!(
                content = 0,
                snapshots = 0,
                leases = 0,
                pause_ms,
                elapsed_ms,
                "garbage collection done"
            );
        }
        Ok(stats)
    }
}

/// A snapshot candidate.
struct Snap {
    node: Node,
    edges: Edges,
}

/// Every content record and snapshot now, with their edges and the
/// `containerd.io/gc.root` ones.
async fn graph(deps: &Deps) -> Result<(Vec<Snap>, HashMap<Node, Edges>, Vec<Node>), Error> {
    let mut edges: HashMap<Node, Edges> = HashMap::new();
    let mut roots = Vec::new();
    for (ns, digest, labels) in records::content(deps).await? {
        let node = Node::content(&ns, &digest);
        if labels.contains_key(ROOT_LABEL) {
            roots.push(node.clone());
        }
        edges.insert(
            node,
            Edges {
                labels,
                parent: None,
            },
        );
    }
    let mut snaps = Vec::new();
    let namespaces: Vec<String> = crate::store::namespaces::list(&deps.store)?
        .into_iter()
        .map(|n| n.name)
        .collect();
    for (sn, snapshotter) in &deps.snapshotters {
        let nss = namespaces.clone();
        let all = blocking(snapshotter, move |s| {
            let mut all = Vec::new();
            for ns in nss {
                all.extend(s.list(&ns)?.into_iter().map(|i| (ns.clone(), i)));
            }
            Ok(all)
        })
        .await?;
        for (ns, info) in all {
            let node = Node::snapshot(&ns, sn, &info.name);
            let labels = info.labels.into_iter().collect::<store::labels::Labels>();
            if labels.contains_key(ROOT_LABEL) {
                roots.push(node.clone());
            }
            let parent = info.parent.map(|p| Node::snapshot(&ns, sn, &p));
            snaps.push(Snap {
                node: node.clone(),
                edges: Edges { labels, parent },
            });
        }
    }
    for s in &snaps {
        edges.insert(s.node.clone(), s.edges.clone());
    }
    Ok((snaps, edges, roots))
}

/// Runs `f` on a snapshotter on the blocking pool.
async fn blocking<T: Send + 'static>(
    snapshotter: &Arc<Snapshotter>,
    f: impl FnOnce(&Snapshotter) -> berth_snapshotter::Result<T> + Send + 'static,
) -> Result<T, Error> {
    let sn = Arc::clone(snapshotter);
    Ok(tokio::task::spawn_blocking(move || f(&sn))
        .await
        .map_err(|e| Error::Join(e.to_string()))??)
}

/// Deletes what a collection detached (snapshot directories, trashed
/// blob files), on the blocking pool; a failure is logged, and what is
/// left goes at the next start-up (snapshotter cleanup, content trash).
async fn delete_detached(paths: Vec<std::path::PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let r = tokio::task::spawn_blocking(move || {
        for p in paths {
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %p.display(), error = %e, "gc: not deleted"),
            }
        }
    })
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "gc: deleting detached paths failed");
    }
}

/// Mark and sweep under the caller's write guard; returns what it did and
/// the paths it detached, to delete after the guard is released.
async fn collect(deps: &Deps) -> Result<(Stats, Vec<std::path::PathBuf>), Error> {
    let mut stats = Stats::default();
    // 1. Candidates, before any root is read.
    let (_, first, _) = graph(deps).await?;
    let candidates: Vec<Node> = first.into_keys().collect();
    let mut roots: Vec<Node> = Vec::new();

    // 2. Roots: leases first (see the module docs), then the rest.
    let now = SystemTime::now();
    for (ns, lease) in leases::list_all(&deps.store)? {
        if expired(&lease, now) {
            match leases::delete(&deps.store, &ns, &lease.id).await {
                Ok(()) => stats.leases += 1,
                Err(store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let held = match leases::resources(&deps.store, &ns, &lease.id) {
            Ok(r) => r,
            Err(store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        for r in held {
            if r.kind == "content" {
                roots.push(Node::content(&ns, &r.id));
            } else if let Some(sn) = r.kind.strip_prefix("snapshots/") {
                roots.push(Node::snapshot(&ns, sn, &r.id));
            }
        }
    }
    roots.extend(records::container_roots(deps)?);
    for (ns, img) in images::list_all(&deps.store)? {
        roots.push(Node::content(&ns, &img.target.digest));
        roots.extend(label_refs(&ns, &img.labels));
    }
    // 3. Edges (labels, parents) as they are now, after the roots: a label
    // set before a lease went is seen here (module docs, point 3).
    let (snaps, edges, labelled_roots) = graph(deps).await?;
    roots.extend(labelled_roots);

    // 4. Mark, then sweep what is not live.
    let live = mark::mark(roots, &edges);
    let dead: HashSet<Node> = candidates
        .into_iter()
        .filter(|n| !live.contains(n))
        .collect();
    let mut detached = Vec::new();
    stats.snapshots = sweep_snapshots(deps, &snaps, &dead, &mut detached).await?;
    // Clients' content writes (the Content service) record a blob and then
    // add it to their lease without our guard; a record listed as a
    // candidate may have joined its lease since. Read leases again.
    let leased_now: HashSet<Node> = lease_roots(deps)?.into_iter().collect();
    for n in &dead {
        if leased_now.contains(n) {
            continue;
        }
        if let Node::Content { ns, digest } = n {
            if let Some(trashed) = records::delete_content(deps, ns, digest).await? {
                stats.content += 1;
                detached.extend(trashed);
            }
        }
    }
    // 5. Blob files without any record (see `content::orphans`); safe
    // only under the write side of the guard, which the caller holds.
    let content = deps.content.clone();
    stats.orphans = tokio::task::spawn_blocking(move || content.remove_orphan_blobs())
        .await
        .map_err(|e| Error::Join(e.to_string()))??;
    Ok((stats, detached))
}

/// What live leases hold right now (expired ones are skipped, not deleted).
fn lease_roots(deps: &Deps) -> Result<Vec<Node>, Error> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for (ns, lease) in leases::list_all(&deps.store)? {
        if expired(&lease, now) {
            continue;
        }
        match leases::resources(&deps.store, &ns, &lease.id) {
            Ok(held) => {
                for r in held {
                    if r.kind == "content" {
                        out.push(Node::content(&ns, &r.id));
                    }
                }
            }
            Err(store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn expired(lease: &leases::Lease, now: SystemTime) -> bool {
    match lease.expiry() {
        None => false,
        Some(Ok(t)) => t < now,
        Some(Err(v)) => {
            tracing::info!(lease = %lease.id, value = %v, "ignoring invalid lease expiry");
            false
        }
    }
}

/// Removes dead snapshots' records, children before parents, their
/// directories moved aside into `detached`. Returns how many.
async fn sweep_snapshots(
    deps: &Deps,
    snaps: &[Snap],
    dead: &HashSet<Node>,
    detached: &mut Vec<std::path::PathBuf>,
) -> Result<usize, Error> {
    let mut pending: Vec<&Snap> = snaps.iter().filter(|s| dead.contains(&s.node)).collect();
    let mut removed = 0;
    if !pending.is_empty() {
        // The snapshotters' databases must not meet a full disk either.
        deps.store.room_for(0)?;
    }
    while !pending.is_empty() {
        let parents: HashSet<&Node> = pending
            .iter()
            .filter_map(|s| s.edges.parent.as_ref())
            .collect();
        let (leaves, rest): (Vec<&Snap>, Vec<&Snap>) = pending
            .into_iter()
            .partition(|s| !parents.contains(&s.node));
        if leaves.is_empty() {
            break;
        }
        for s in leaves {
            let Node::Snapshot {
                ns,
                snapshotter,
                key,
            } = s.node.clone()
            else {
                continue;
            };
            let Some(sn) = deps.snapshotters.get(&snapshotter) else {
                continue;
            };
            let r = blocking(sn, move |sn| sn.detach(&ns, &key)).await;
            match r {
                Ok(dir) => {
                    removed += 1;
                    detached.push(dir);
                }
                Err(e) => tracing::warn!(node = ?s.node, error = %e, "gc: snapshot not removed"),
            }
        }
        pending = rest;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
