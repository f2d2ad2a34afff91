//! Start-up, serving and graceful stop of berthd.
//!
//! Order matters: directories → exclusive lock on the root → metadata →
//! sockets (gRPC and `.ttrpc`, 0660) and the metrics endpoint, if
//! configured (`/healthz` answers 503 from here) → recovery → serve
//! (health SERVING, `/healthz` 200, READY=1 to systemd). On stop: health
//! NOT_SERVING, STOPPING=1 and `/healthz` 503, refuse new connections, let
//! in-flight calls drain for a bounded time, then remove the sockets.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::app::{self, App};
use crate::ops::{self, Health, Phase};
use crate::systemd::Notifier;
use crate::{services, Config};

/// How long in-flight calls may run after a stop was asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the last metadata flush may take at shutdown.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Why berthd could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// another daemon owns this root
    #[error(
        "another berthd (pid {pid}) is already using root {root}; stop it or choose another --root"
    )]
    Locked {
        /// the root
        root: PathBuf,
        /// the holder's pid, as it wrote it
        pid: String,
    },
    /// another process serves on our socket path
    #[error("socket {0} is in use by another server")]
    SocketInUse(PathBuf),
    /// a filesystem step failed
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// on which path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// the domain services could not be built
    #[error(transparent)]
    App(#[from] app::Error),
    /// the metadata could not be flushed at shutdown
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// the gRPC server failed
    #[error("grpc server: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// the ttrpc endpoint failed to start
    #[error(transparent)]
    Ttrpc(#[from] crate::ttrpc::Error),
    /// the metrics endpoint could not start
    #[error(transparent)]
    Ops(#[from] ops::Error),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// A configured daemon, ready to [`run`](Daemon::run).
pub struct Daemon {
    config: Config,
    notifier: Notifier,
}

impl Daemon {
    /// A daemon for `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            notifier: Notifier::none(),
        }
    }

    /// Tells `notifier` (systemd) when berthd is ready and when it stops.
    pub fn notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    /// Serves until `shutdown` is cancelled. Logs `berthd ready` once the
    /// socket accepts calls.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let cfg = &self.config;
        let notifier = &self.notifier;
        make_dir(&cfg.root, 0o711)?;
        make_dir(&cfg.state, 0o711)?;
        let _lock = lock_root(&cfg.root)?;
        let uuid = server_uuid(&cfg.root)?;
        let app = App::open(cfg)?;
        // Bound before recovery, served after it: a client that connects
        // meanwhile (Version, to learn whether berthd is back) waits for
        // the answer instead of polling a missing socket.
        let listener = bind(&cfg.address, cfg.grpc)?;
        let ttrpc_address = crate::ttrpc::address_for(&cfg.address);
        let ttrpc_listener = bind(&ttrpc_address, cfg.grpc)?;
        // The metrics endpoint answers from now on: /healthz says 503
        // until recovery is done. It stops after the drain.
        let ops_health = Health::default();
        let ops_stop = CancellationToken::new();
        let _ops_stop = ops_stop.clone().drop_guard();
        if !cfg.metrics_address.is_empty() {
            let tcp = ops::bind(&cfg.metrics_address).await?;
            ops::spawn(tcp, app.clone(), ops_health.clone(), ops_stop.clone());
        }
        notifier.spawn_watchdog(ops_stop.clone());
        // Reattach to the shims of a previous run before serving.
        notifier.status("recovering tasks");
        app.recover().await;
        app.start(shutdown.child_token());
        let (health, health_server) = crate::health::Health::new().await;
        let router = services::router(&app, uuid, health_server);

        let ttrpc =
            crate::ttrpc::Endpoint::start(ttrpc_listener, ttrpc_address, app.events.clone())
                .await?;
        health.serving().await;
        tracing::info!(address = %cfg.address.display(), root = %cfg.root.display(), "berthd ready");
        ops_health.set(Phase::Ready);
        notifier.ready();

        // Message limits, any :authority, preface timeout: see transport.
        let incoming = crate::transport::incoming(listener);
        let stop = shutdown.clone();
        // The drain begins: health says NOT_SERVING (and ends its Watch
        // streams), /healthz 503 and STOPPING=1, then the server stops
        // taking calls.
        let drain = {
            let (ops_health, notifier) = (ops_health.clone(), notifier.clone());
            async move {
                stop.cancelled().await;
                ops_health.set(Phase::Draining);
                notifier.stopping();
                let mut health = health;
                health.draining().await;
            }
        };
        let serve = router.serve_with_incoming_shutdown(incoming, drain);
        let result = tokio::select! {
            r = serve => r.map_err(Error::from),
            _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
                tracing::warn!("in-flight calls did not finish within {DRAIN_TIMEOUT:?}; stopping anyway");
                Ok(())
            }
        };
        let _ = fs::remove_file(&cfg.address);
        ttrpc.stop().await;
        // Bounded like the drain: a flush that cannot finish (a disk that
        // fails every write) must not keep berthd from stopping.
        match tokio::time::timeout(FINAL_FLUSH_TIMEOUT, app.store.flush()).await {
            Ok(r) => r?,
            Err(_) => tracing::error!(
                "metadata flush did not finish within {FINAL_FLUSH_TIMEOUT:?}; stopping anyway"
            ),
        }
        tracing::info!("berthd stopped");
        result
    }
}

fn make_dir(path: &Path, mode: u32) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io("creating directory", path))
}

/// Takes an exclusive, non-blocking lock on `<root>/berthd.lock`, held for
/// the life of the returned value, and writes our pid into it.
fn lock_root(root: &Path) -> Result<Flock<File>, Error> {
    let path = root.join("berthd.lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("opening lock file", &path))?;
    // A daemon killed with -9 can leave the lock held for a moment by a child
    // it forked but that has not exec'd yet (the fd closes on exec). When the
    // recorded holder is dead, wait briefly for that instead of refusing.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut file = file;
    let mut lock = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => break l,
            Err((f, errno)) => {
                let pid = fs::read_to_string(&path)
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                let holder_alive = pid.parse::<i32>().is_ok_and(|p| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
                });
                if errno != nix::errno::Errno::EWOULDBLOCK
                    || holder_alive
                    || std::time::Instant::now() >= deadline
                {
                    return Err(Error::Locked {
                        root: root.to_path_buf(),
                        pid,
                    });
                }
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    lock.set_len(0).map_err(io("writing lock file", &path))?;
    writeln!(lock, "{}", std::process::id()).map_err(io("writing lock file", &path))?;
    Ok(lock)
}

/// The server UUID, created once and kept in `<root>/uuid`.
fn server_uuid(root: &Path) -> Result<String, Error> {
    let path = root.join("uuid");
    match fs::read_to_string(&path) {
        Ok(s) if uuid::Uuid::parse_str(s.trim()).is_ok() => return Ok(s.trim().to_string()),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "server uuid file is corrupt; making a new one")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading", &path)(e)),
    }
    let id = uuid::Uuid::new_v4().to_string();
    write_durably(&path, id.as_bytes())?;
    Ok(id)
}

/// Writes `data` to a temp file, fsyncs it, renames it over `path` and
/// fsyncs the directory.
pub fn write_durably(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
    f.write_all(data).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", dir))?;
    }
    Ok(())
}

/// Binds the socket with mode 0660 and the owner `[grpc]` names (so its
/// group may call berthd), removing a stale file left by a daemon that
/// died, but never stealing a live server's socket.
fn bind(address: &Path, owner: crate::config::Grpc) -> Result<UnixListener, Error> {
    if let Some(dir) = address.parent() {
        make_dir(dir, 0o711)?;
    }
    if address.exists() {
        if std::os::unix::net::UnixStream::connect(address).is_ok() {
            return Err(Error::SocketInUse(address.to_path_buf()));
        }
        fs::remove_file(address).map_err(io("removing stale socket", address))?;
    }
    let listener = UnixListener::bind(address).map_err(io("binding", address))?;
    fs::set_permissions(address, fs::Permissions::from_mode(0o660))
        .map_err(io("setting mode 0660 on", address))?;
    let meta = fs::metadata(address).map_err(io("reading", address))?;
    if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
        std::os::unix::fs::chown(address, Some(owner.uid), Some(owner.gid))
            .map_err(io("changing the owner ([grpc] uid, gid) of", address))?;
    }
    Ok(listener)
}
