//! The files the shim keeps in a container's bundle directory, and how it
//! writes them.
//!
//! Every file and directory the shim creates is private to root: files
//! 0600, directories 0700, sockets 0600 (a process spec or a log can carry
//! secrets; containerd's bundle directory is 0700 too). Files the runtime
//! writes with its own mode (the pid files) are narrowed to 0600 once it
//! is done with them, and its log is created by the shim beforehand.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file (and socket) the shim creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the shim creates.
pub const DIR_MODE: u32 = 0o700;

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

/// Writes `data` atomically (a temp file, then rename) with mode 0600,
/// without fsync. Every file the shim writes lives in the bundle under
/// berthd's state dir, which does not survive a reboot (the containers do
/// not either), so a crash can only lose a process, never leave a torn
/// file; an fsync would buy nothing and costs milliseconds on every
/// container start.
pub fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Opens `path` for appending, creating it with mode 0600 (and its missing
/// parent directories with mode 0700).
pub fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        create_dirs(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

/// `mkdir -p` with mode 0700 for the directories it creates (existing ones
/// are left as they are).
pub fn create_dirs(path: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Narrows a file someone else created (a runtime's pid file, a socket) to
/// 0600.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn files_and_dirs_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.json");
        write_file(&f, b"{}").unwrap();
        write_file(&f, b"{\"x\":1}").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"{\"x\":1}");
        assert_eq!(mode(&f), 0o600);
        assert!(!dir.path().join("a.json.tmp").exists());

        let log = dir.path().join("x/y/c.log");
        open_append(&log).unwrap();
        assert_eq!(mode(&log), 0o600);
        assert_eq!(mode(&dir.path().join("x")), 0o700);
        assert_eq!(mode(&dir.path().join("x/y")), 0o700);

        let b = Bundle::new(dir.path());
        assert_eq!(b.pid_file(""), dir.path().join("init.pid"));
        assert_eq!(b.pid_file("e1"), dir.path().join("exec-e1.pid"));
        assert_eq!(b.process_file("e1"), dir.path().join("exec-e1.json"));
        std::fs::write(b.pid_file(""), "1").unwrap();
        make_private(&b.pid_file("")).unwrap();
        assert_eq!(mode(&b.pid_file("")), 0o600);
    }
}
