//! The files the shim keeps in a container's bundle directory, and how it
//! writes them.

use std::path::{Path, PathBuf};

/// A container's bundle directory and the names of the shim's files in it.
#[derive(Debug, Clone)]
pub struct Bundle {
    path: PathBuf,
}

impl Bundle {
    /// The bundle at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.json`, the OCI runtime spec (written by berthd).
    pub fn config(&self) -> PathBuf {
        self.path.join("config.json")
    }

    /// `rootfs`, where the shim mounts the container's root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// The runtime's pid file for a process: `init.pid` or `exec-ID.pid`.
    pub fn pid_file(&self, exec_id: &str) -> PathBuf {
        if exec_id.is_empty() {
            self.path.join("init.pid")
        } else {
            self.path.join(format!("exec-{exec_id}.pid"))
        }
    }

    /// The process spec handed to `runtime exec`: `exec-ID.json`.
    pub fn process_file(&self, exec_id: &str) -> PathBuf {
        self.path.join(format!("exec-{exec_id}.json"))
    }

    /// `log.json`, the runtime's own log (`--log`).
    pub fn runtime_log(&self) -> PathBuf {
        self.path.join("log.json")
    }

    /// `shim.log`, the shim's stdout and stderr.
    pub fn shim_log(&self) -> PathBuf {
        self.path.join("shim.log")
    }
}

/// Writes `data` atomically (a temp file, then rename) without fsync.
/// Every file the shim writes lives in the bundle under berthd's state dir,
/// which does not survive a reboot (the containers do not either), so a
/// crash can only lose a process, never leave a torn file; an fsync would
/// buy nothing and costs milliseconds on every container start.
pub fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_atomic_writes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.json");
        write_file(&f, b"{}").unwrap();
        write_file(&f, b"{\"x\":1}").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"{\"x\":1}");
        assert!(!dir.path().join("a.json.tmp").exists());
        let b = Bundle::new(dir.path());
        assert_eq!(b.pid_file(""), dir.path().join("init.pid"));
        assert_eq!(b.pid_file("e1"), dir.path().join("exec-e1.pid"));
        assert_eq!(b.process_file("e1"), dir.path().join("exec-e1.json"));
    }
}
