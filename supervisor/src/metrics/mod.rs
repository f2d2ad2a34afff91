//! berthd's metrics: one Prometheus registry, owned here, and the small
//! handles the rest of berthd reports through.
//!
//! Two kinds of figures:
//!
//! - **Events**, counted as they happen through a handle a service keeps:
//!   gRPC calls ([`Rpc`], from the router's layer), garbage collection runs
//!   ([`GcReport`], from the collector), bytes pulled ([`PullReport`], from
//!   registry pulls). A handle is a few atomics behind an `Arc`; reporting
//!   never blocks and never fails.
//! - **State**, read when a scrape asks: tasks by status, live shims,
//!   content, snapshots, CRI pods and containers, each running container's
//!   cgroup figures. Whoever serves the scrape gathers a [`Figures`] from
//!   the domain and hands it to [`Metrics::render`], which encodes it
//!   beside the counters in one text.
//!
//! This module knows nothing of HTTP, tonic or the domain's types: it takes
//! plain numbers and names, so any service can report and the domain stays
//! free of the endpoint (`ops/` serves it). Every metric is listed, with
//! its type, labels and meaning, in the README.

mod figures;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use figures::{ContainerFigures, CriFigures, Figures};

/// The `Content-Type` of [`Metrics::render`]'s text (Prometheus text
/// exposition format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets (seconds) for gRPC calls and collection pauses: 0.5 ms
/// to 60 s.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

type Labels2 = [(&'static str, String); 2];
type Labels3 = [(&'static str, String); 3];
type Seconds = Family<Labels2, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// berthd's registry and every handle into it. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    rpc: Rpc,
    gc: GcReport,
    pull: PullReport,
    cri: CriReport,
    /// What the last scrape gathered, encoded by the registry's collector.
    figures: Arc<figures::Collector>,
    /// One scrape at a time sets and encodes the figures.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register(
            "berth_build",
            "berthd's version and the git commit it was built from",
            Info::new([
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("BERTH_COMMIT")),
            ]),
        );
        let rpc = Rpc::register(&mut registry);
        let gc = GcReport::register(&mut registry);
        let pull = PullReport::register(&mut registry);
        let figures = Arc::new(figures::Collector::default());
        registry.register_collector(Box::new(Arc::clone(&figures)));
        Self {
            inner: Arc::new(Inner {
                registry,
                rpc,
                gc,
                pull,
                cri: CriReport::default(),
                figures,
                scrape: Mutex::new(()),
            }),
        }
    }

    /// The handle the gRPC layer counts calls through.
    pub fn rpc(&self) -> Rpc {
        self.inner.rpc.clone()
    }

    /// The handle the garbage collector reports its runs through.
    pub fn gc(&self) -> GcReport {
        self.inner.gc.clone()
    }

    /// The handle registry pulls report their bytes through.
    pub fn pull(&self) -> PullReport {
        self.inner.pull.clone()
    }

    /// The handle the CRI adapter reports its pods and containers through.
    pub fn cri(&self) -> CriReport {
        self.inner.cri.clone()
    }

    /// The whole text of a scrape: the counters as they are, and `figures`
    /// (gathered just before) for the state metrics.
    pub fn render(&self, figures: Figures) -> String {
        let _one = self.inner.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.figures.set(figures);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry);
        out
    }
}

/// gRPC calls: how many ended with which code, and how long they took.
#[derive(Clone)]
pub struct Rpc {
    handled: Family<Labels3, Counter>,
    seconds: Seconds,
}

impl Rpc {
    fn register(r: &mut Registry) -> Self {
        let handled = Family::<Labels3, Counter>::default();
        r.register(
            "grpc_server_handled",
            "gRPC calls completed by berthd, by service, method and status code",
            handled.clone(),
        );
        let seconds: Seconds = Family::new_with_constructor(seconds_histogram);
        r.register(
            "grpc_server_handling_seconds",
            "Time from a gRPC call's request to the end of its response, by service and method",
            seconds.clone(),
        );
        Self { handled, seconds }
    }

    /// Counts one call to `path` (`/package.Service/Method`) that ended
    /// with gRPC status `code` after `elapsed`.
    pub fn observe(&self, path: &str, code: i32, elapsed: Duration) {
        let (service, method) = split_path(path);
        self.handled
            .get_or_create(&[
                ("grpc_service", service.to_string()),
                ("grpc_method", method.to_string()),
                ("grpc_code", code_name(code).to_string()),
            ])
            .inc();
        self.seconds
            .get_or_create(&[
                ("grpc_service", service.to_string()),
                ("grpc_method", method.to_string()),
            ])
            .observe(elapsed.as_secs_f64());
    }
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
fn split_path(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    p.split_once('/').unwrap_or((p, ""))
}

/// The name of a gRPC status code, as grpc-go spells it (and containerd's
/// metrics label it).
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// What garbage collection did.
#[derive(Clone)]
pub struct GcReport {
    runs: Counter,
    removed: Family<[(&'static str, String); 1], Counter>,
    pause: Histogram,
}

impl GcReport {
    fn register(r: &mut Registry) -> Self {
        let runs = Counter::default();
        r.register(
            "berth_gc_runs",
            "Garbage collections completed",
            runs.clone(),
        );
        let removed = Family::<[(&'static str, String); 1], Counter>::default();
        r.register(
            "berth_gc_removed",
            "Objects garbage collection removed, by kind (content, snapshot, lease)",
            removed.clone(),
        );
        let pause = seconds_histogram();
        r.register(
            "berth_gc_pause_seconds",
            "How long each collection held the collector's lock, during which writes that change references wait",
            pause.clone(),
        );
        for kind in ["content", "snapshot", "lease"] {
            let _ = removed.get_or_create(&[("kind", kind.to_string())]);
        }
        Self {
            runs,
            removed,
            pause,
        }
    }

    /// One finished collection: how many content records, snapshots and
    /// expired leases it removed, and how long it held the lock.
    pub fn run(&self, content: usize, snapshots: usize, leases: usize, pause: Duration) {
        self.runs.inc();
        for (kind, n) in [
            ("content", content),
            ("snapshot", snapshots),
            ("lease", leases),
        ] {
            self.removed
                .get_or_create(&[("kind", kind.to_string())])
                .inc_by(n as u64);
        }
        self.pause.observe(pause.as_secs_f64());
    }
}

/// What registry pulls moved.
#[derive(Clone)]
pub struct PullReport {
    bytes: Counter,
    pulls: Family<[(&'static str, String); 1], Counter>,
}

impl PullReport {
    fn register(r: &mut Registry) -> Self {
        let bytes = Counter::default();
        r.register(
            "berth_pull_bytes",
            "Bytes downloaded from registries by pulls (manifests, configs, layers; a resumed blob counts only what was fetched)",
            bytes.clone(),
        );
        let pulls = Family::<[(&'static str, String); 1], Counter>::default();
        r.register(
            "berth_pulls",
            "Registry pulls finished, by result (ok, error)",
            pulls.clone(),
        );
        for result in ["ok", "error"] {
            let _ = pulls.get_or_create(&[("result", result.to_string())]);
        }
        Self { bytes, pulls }
    }

    /// `n` more bytes came from a registry.
    pub fn bytes(&self, n: u64) {
        self.bytes.inc_by(n);
    }

    /// A pull finished, well or not.
    pub fn finished(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.pulls
            .get_or_create(&[("result", result.to_string())])
            .inc();
    }
}

/// Where the CRI adapter's pods and containers come from at a scrape.
type CriSource = Arc<dyn Fn() -> CriFigures + Send + Sync>;

/// The CRI adapter's report: it registers a function that counts its
/// pods and containers by state from its own stores; until one is
/// registered, the scrape counts the CRI's records (see `ops`).
#[derive(Clone, Default)]
pub struct CriReport {
    source: Arc<Mutex<Option<CriSource>>>,
}

impl CriReport {
    /// Makes `source` answer for the CRI's pods and containers at every
    /// scrape (the CRI adapter calls this once when it starts).
    pub fn set_source(&self, source: impl Fn() -> CriFigures + Send + Sync + 'static) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(source));
    }

    /// The registered source's figures now, if one is registered.
    pub fn figures(&self) -> Option<CriFigures> {
        let source = self
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        source.map(|f| f())
    }
}

#[cfg(test)]
mod tests;
