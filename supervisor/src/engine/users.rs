//! A container's user: `user[:group]` as names or numbers, names looked up
//! in the image's `/etc/passwd` and `/etc/group`, read straight from the
//! layer directories of its rootfs (top first, without mounting), never
//! following a symlink out of a layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_snapshotter::Mount;

use super::{Error, Result};

/// The image's users and groups.
#[derive(Debug, Default, Clone)]
pub(super) struct Users {
    /// name → (uid, gid)
    passwd: BTreeMap<String, (u32, u32)>,
    /// name → gid
    groups: BTreeMap<String, u32>,
    /// user name → supplementary gids (the group file's member lists)
    members: BTreeMap<String, Vec<u32>>,
}

/// A resolved user: what the OCI spec's `process.user` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SpecUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) additional_gids: Vec<u32>,
}

impl Users {
    /// Parses passwd and group files.
    pub(super) fn parse(passwd: &str, group: &str) -> Self {
        let mut u = Users::default();
        for l in passwd.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    u.passwd.entry(f[0].to_string()).or_insert((uid, gid));
                }
            }
        }
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 3 {
                if let Ok(gid) = f[2].parse::<u32>() {
                    u.groups.entry(f[0].to_string()).or_insert(gid);
                    for m in f.get(3).unwrap_or(&"").split(',').filter(|m| !m.is_empty()) {
                        u.members.entry(m.to_string()).or_default().push(gid);
                    }
                }
            }
        }
        u
    }

    /// Reads the files from the layers of `mounts` (blocking).
    pub(super) fn read(mounts: &[Mount]) -> Self {
        let dirs = match berth_snapshotter::mount::layer_dirs(mounts) {
            Some((upper, lowers)) => upper.into_iter().chain(lowers).collect(),
            None => Vec::new(),
        };
        let passwd = read_file(&dirs, "passwd").unwrap_or_default();
        let group = read_file(&dirs, "group").unwrap_or_default();
        Users::parse(&passwd, &group)
    }

    /// Resolves `user[:group]`; an empty string is root.
    pub(super) fn resolve(&self, user: &str) -> Result<SpecUser> {
        let (u, g) = user.split_once(':').unwrap_or((user, ""));
        let (uid, mut gid, name) = match u.parse::<u32>() {
            Ok(uid) => {
                let found = self.passwd.iter().find(|(_, (x, _))| *x == uid);
                (
                    uid,
                    found.map(|(_, (_, g))| *g).unwrap_or(0),
                    found.map(|(n, _)| n.clone()),
                )
            }
            Err(_) if u.is_empty() => (0, 0, Some("root".to_string())),
            Err(_) => {
                let (uid, gid) = self
                    .passwd
                    .get(u)
                    .copied()
                    .or((u == "root").then_some((0, 0)))
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "user {u:?}: not found in the image's /etc/passwd"
                        ))
                    })?;
                (uid, gid, Some(u.to_string()))
            }
        };
        if !g.is_empty() {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => *self.groups.get(g).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "group {g:?}: not found in the image's /etc/group"
                    ))
                })?,
            };
        }
        let mut additional: Vec<u32> = name
            .and_then(|n| self.members.get(&n).cloned())
            .unwrap_or_default();
        additional.retain(|x| *x != gid);
        additional.sort_unstable();
        additional.dedup();
        Ok(SpecUser {
            uid,
            gid,
            additional_gids: additional,
        })
    }
}

/// `etc/NAME` of the topmost layer holding it, as a regular file reached
/// through real directories only. A whiteout (or anything else) there
/// hides the lower layers' file.
fn read_file(dirs: &[PathBuf], name: &str) -> Option<String> {
    for d in dirs {
        let etc = d.join("etc");
        match std::fs::symlink_metadata(&etc) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return None,
            Err(_) => continue,
        }
        let f = etc.join(name);
        match std::fs::symlink_metadata(&f) {
            Ok(m) if m.is_file() && m.len() < (4 << 20) => {
                return open_nofollow(&f);
            }
            Ok(_) => return None,
            Err(_) => continue,
        }
    }
    None
}

fn open_nofollow(p: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .ok()?;
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        Users::parse(
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
            "root:x:0:\napp:x:1001:\nextra:x:2000:app,other\n",
        )
    }

    #[test]
    fn names_and_numbers() {
        let u = users();
        assert_eq!(
            u.resolve("app").unwrap(),
            SpecUser {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![2000]
            }
        );
        assert_eq!(u.resolve("1000:2000").unwrap().gid, 2000);
        assert_eq!(u.resolve("").unwrap().uid, 0);
        assert_eq!(u.resolve("7:8").unwrap().uid, 7);
        assert!(u
            .resolve("ghost")
            .unwrap_err()
            .to_string()
            .contains("ghost"));
        assert!(u.resolve("app:nogroup").is_err());
    }

    #[test]
    fn reads_the_top_layer_and_refuses_links() {
        let d = tempfile::tempdir().unwrap();
        let (top, low) = (d.path().join("top"), d.path().join("low"));
        std::fs::create_dir_all(low.join("etc")).unwrap();
        std::fs::write(low.join("etc/passwd"), "a:x:1:1::/:/bin/sh\n").unwrap();
        std::fs::create_dir_all(top.join("etc")).unwrap();
        assert_eq!(
            read_file(&[top.clone(), low.clone()], "passwd").as_deref(),
            Some("a:x:1:1::/:/bin/sh\n")
        );
        std::os::unix::fs::symlink("/etc/shadow", top.join("etc/passwd")).unwrap();
        assert_eq!(read_file(&[top, low], "passwd"), None);
    }
}
