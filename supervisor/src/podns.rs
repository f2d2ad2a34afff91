//! A pod's UTS and IPC namespaces held without a process: like a network
//! namespace ([`crate::network::netns`]), each is made by a short-lived std
//! thread that unshares it (setting the pod's hostname in the UTS one) and
//! bind-mounts `/proc/thread-self/ns/KIND` onto a file under a private dir
//! berthd gives (`STATE/podns`). Containers join them by path; the files
//! outlive every process and berthd itself until [`remove`].
//!
//! Crash safety as for network namespaces: [`create`] leaves nothing on
//! failure, and [`remove`] is idempotent (a plain or missing file is fine).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Why a pod namespace could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// a system call failed
    #[error("{what}: {source}")]
    Sys {
        /// what was being done
        what: String,
        /// the errno
        source: nix::errno::Errno,
    },
    /// a file operation failed
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// the path
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// the hostname cannot be set
    #[error("hostname {0:?}: must be 1 to 64 bytes without NUL")]
    Hostname(String),
}

impl Error {
    /// The error's kind, for the adapters' one status map.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Hostname(_) => berth_api::ErrorKind::InvalidArgument,
            _ => berth_api::ErrorKind::Internal,
        }
    }
}

/// The namespaces a pod holds beside its network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    /// a UTS namespace with the pod's hostname
    pub uts: bool,
    /// an IPC namespace
    pub ipc: bool,
}

/// The bind-mounted namespace files of one pod (a `None` was not asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    /// `DIR/ID.uts`
    pub uts: Option<PathBuf>,
    /// `DIR/ID.ipc`
    pub ipc: Option<PathBuf>,
}

fn file_for(dir: &Path, id: &str, kind: &str) -> PathBuf {
    dir.join(format!("{id}.{kind}"))
}

fn touch(path: &Path) -> Result<(), Error> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map(|_| ())
        .map_err(|source| Error::Io {
            what: "create namespace file",
            path: path.to_path_buf(),
            source,
        })
}

fn bind(kind: &str, target: &Path) -> Result<(), Error> {
    mount(
        Some(format!("/proc/thread-self/ns/{kind}").as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| Error::Sys {
        what: format!("bind-mount {kind} namespace onto {}", target.display()),
        source,
    })
}

/// Makes the pod `id`'s namespaces under `dir` (a private mount, made so
/// the first time), the UTS one with `hostname`. Blocking.
pub fn create(dir: &Path, id: &str, kinds: Kinds, hostname: &str) -> Result<PodNamespaces, Error> {
    if kinds.uts && (hostname.is_empty() || hostname.len() > 64 || hostname.contains('\0')) {
        return Err(Error::Hostname(hostname.into()));
    }
    let mut out = PodNamespaces::default();
    if !kinds.uts && !kinds.ipc {
        return Ok(out);
    }
    // The same private-dir treatment as network namespaces.
    crate::network::netns::create_private_dir(dir).map_err(|e| Error::Sys {
        what: e.to_string(),
        source: nix::errno::Errno::EIO,
    })?;
    if kinds.uts {
        out.uts = Some(file_for(dir, id, "uts"));
    }
    if kinds.ipc {
        out.ipc = Some(file_for(dir, id, "ipc"));
    }
    let made = (|| {
        for p in out.uts.iter().chain(out.ipc.iter()) {
            touch(p)?;
        }
        let (uts, ipc, host) = (out.uts.clone(), out.ipc.clone(), hostname.to_string());
        std::thread::spawn(move || -> Result<(), Error> {
            let mut flags = CloneFlags::empty();
            if uts.is_some() {
                flags |= CloneFlags::CLONE_NEWUTS;
            }
            if ipc.is_some() {
                flags |= CloneFlags::CLONE_NEWIPC;
            }
            unshare(flags).map_err(|source| Error::Sys {
                what: "unshare(UTS|IPC)".into(),
                source,
            })?;
            if let Some(p) = &uts {
                nix::unistd::sethostname(&host).map_err(|source| Error::Sys {
                    what: "sethostname".into(),
                    source,
                })?;
                bind("uts", p)?;
            }
            if let Some(p) = &ipc {
                bind("ipc", p)?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Sys {
                what: "pod namespace thread panicked".into(),
                source: nix::errno::Errno::EIO,
            })
        })
    })();
    if let Err(e) = made {
        remove(&out);
        return Err(e);
    }
    Ok(out)
}

/// Unmounts and deletes the pod's namespace files. Idempotent. Blocking.
pub fn remove(ns: &PodNamespaces) {
    for p in ns.uts.iter().chain(ns.ipc.iter()) {
        if let Err(e) = crate::network::netns::remove(p) {
            tracing::warn!(path = %p.display(), error = %e, "removing a pod namespace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_is_checked_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let kinds = Kinds {
            uts: true,
            ipc: true,
        };
        for bad in ["", &"h".repeat(65), "a\0b"] {
            assert!(matches!(
                create(dir.path(), "p", kinds, bad),
                Err(Error::Hostname(_))
            ));
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let none = Kinds {
            uts: false,
            ipc: false,
        };
        assert_eq!(
            create(dir.path(), "p", none, "").unwrap(),
            PodNamespaces::default()
        );
    }
}
