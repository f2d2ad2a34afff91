//! Who a container runs as: the CRI security context over the image's
//! `USER`, names resolved from the image's own `/etc/passwd` and
//! `/etc/group` (never the host's), supplementary groups from the group
//! file's member lists plus the CRI's `supplemental_groups`.

use k8s_cri::v1 as cri;

use super::Error;

/// One passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The image's user database (empty files are fine: numeric ids work).
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    passwd: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

impl UserDb {
    /// Parses the text of `/etc/passwd` and `/etc/group`; malformed lines
    /// are skipped, as libc does.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let passwd = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some(PasswdEntry {
                    name: f.first()?.to_string(),
                    uid: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some(GroupEntry {
                    name: f.first()?.to_string(),
                    gid: f.get(2)?.parse().ok()?,
                    members: f
                        .get(3)
                        .unwrap_or(&"")
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .collect();
        Self { passwd, groups }
    }

    fn by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.name == name)
    }

    fn by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.uid == uid)
    }

    fn group_gid(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.name == name).map(|g| g.gid)
    }

    /// The gids of the groups listing `user` as a member.
    fn memberships(&self, user: &str) -> Vec<u32> {
        self.groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == user))
            .map(|g| g.gid)
            .collect()
    }
}

/// The resolved process user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    /// uid
    pub uid: u32,
    /// primary gid
    pub gid: u32,
    /// supplementary gids: the primary gid, the image's memberships, then
    /// the CRI's supplemental groups; no duplicates.
    pub additional_gids: Vec<u32>,
    /// the user's name where known (for the image's group memberships)
    pub name: Option<String>,
}

fn id(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::invalid(format!("{what} {v} is out of range")))
}

/// Resolves the container's user from the CRI security context and the
/// image's `USER` (`name`, `uid`, `name:group`, `uid:gid`).
pub fn resolve(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    image_user: &str,
    db: &UserDb,
) -> Result<ProcessUser, Error> {
    let run_as_user = sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value);
    let run_as_username = sc.map(|s| s.run_as_username.as_str()).unwrap_or("");
    let run_as_group = sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value);
    if run_as_group.is_some() && run_as_user.is_none() && run_as_username.is_empty() {
        return Err(Error::invalid(
            "run_as_group is set without run_as_user or run_as_username".into(),
        ));
    }
    let (uid, mut gid, name) = if let Some(uid) = run_as_user {
        let uid = id(uid, "run_as_user")?;
        let entry = db.by_uid(uid);
        (
            uid,
            entry.map(|e| e.gid).unwrap_or(0),
            entry.map(|e| e.name.clone()),
        )
    } else if !run_as_username.is_empty() {
        let e = db.by_name(run_as_username).ok_or_else(|| {
            Error::invalid(format!(
                "run_as_username {run_as_username:?}: no such user in the image's /etc/passwd"
            ))
        })?;
        (e.uid, e.gid, Some(e.name.clone()))
    } else {
        image_user_ids(image_user, db)?
    };
    if let Some(g) = run_as_group {
        gid = id(g, "run_as_group")?;
    }
    let mut additional_gids = vec![gid];
    if let Some(n) = &name {
        additional_gids.extend(db.memberships(n));
    }
    for g in sc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]) {
        additional_gids.push(id(*g, "supplemental group")?);
    }
    let mut seen = std::collections::HashSet::new();
    additional_gids.retain(|g| seen.insert(*g));
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids,
        name,
    })
}

/// The image's `USER` string as (uid, gid, name).
fn image_user_ids(user: &str, db: &UserDb) -> Result<(u32, u32, Option<String>), Error> {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let (uid, mut gid, name) = if u.is_empty() {
        let root = db.by_uid(0);
        (
            0,
            0,
            Some(root.map(|e| e.name.clone()).unwrap_or("root".into())),
        )
    } else if let Ok(uid) = u.parse::<u32>() {
        let e = db.by_uid(uid);
        (
            uid,
            e.map(|e| e.gid).unwrap_or(0),
            e.map(|e| e.name.clone()),
        )
    } else {
        let e = db.by_name(u).ok_or_else(|| {
            Error::invalid(format!(
                "image user {u:?}: no such user in the image's /etc/passwd"
            ))
        })?;
        (e.uid, e.gid, Some(e.name.clone()))
    };
    if !g.is_empty() {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => db.group_gid(g).ok_or_else(|| {
                Error::invalid(format!(
                    "image group {g:?}: no such group in the image's /etc/group"
                ))
            })?,
        };
    }
    Ok((uid, gid, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        nobody:x:65534:65534:nobody:/:/bin/false\n\
        www:x:33:33::/var/www:/bin/sh\n\
        broken line\n";
    const GROUP: &str =
        "root:x:0:\nwww:x:33:\nadm:x:4:www,other\naudio:x:29:www\nnogroup:x:65534:\n";

    fn db() -> UserDb {
        UserDb::parse(PASSWD, GROUP)
    }

    fn sc(
        user: Option<i64>,
        name: &str,
        group: Option<i64>,
        supp: &[i64],
    ) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            run_as_user: user.map(|value| cri::Int64Value { value }),
            run_as_username: name.into(),
            run_as_group: group.map(|value| cri::Int64Value { value }),
            supplemental_groups: supp.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn image_user_forms() {
        let u = resolve(None, "", &db()).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        let u = resolve(None, "www", &db()).unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        assert_eq!(u.additional_gids, [33, 4, 29], "primary, then memberships");
        let u = resolve(None, "33:adm", &db()).unwrap();
        assert_eq!((u.uid, u.gid), (33, 4));
        let u = resolve(None, "1234:5678", &db()).unwrap();
        assert_eq!((u.uid, u.gid, u.name), (1234, 5678, None));
        let e = resolve(None, "ghost", &db()).unwrap_err();
        assert!(e.to_string().contains("ghost"), "{e}");
        assert!(resolve(None, "www:nogrp", &db()).is_err());
    }

    #[test]
    fn security_context_wins_over_the_image() {
        let s = sc(Some(65534), "", None, &[]);
        let u = resolve(Some(&s), "www", &db()).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 65534));
        let s = sc(None, "www", Some(1000), &[1234, 5678, 33]);
        let u = resolve(Some(&s), "", &db()).unwrap();
        assert_eq!((u.uid, u.gid), (33, 1000));
        assert_eq!(u.additional_gids, [1000, 4, 29, 1234, 5678, 33]);
        let s = sc(Some(4242), "", Some(4343), &[]);
        let u = resolve(Some(&s), "www", &db()).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (4242, 4343, vec![4343]));
    }

    #[test]
    fn group_without_user_and_unknown_names_are_refused() {
        let s = sc(None, "", Some(1000), &[]);
        let e = resolve(Some(&s), "www", &db()).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("run_as_group"), "{e}");
        let s = sc(None, "nosuch", None, &[]);
        assert!(resolve(Some(&s), "", &db()).is_err());
        let s = sc(Some(-1), "", None, &[]);
        assert!(resolve(Some(&s), "", &db()).is_err());
    }
}
