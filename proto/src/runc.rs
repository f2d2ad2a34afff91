//! runc's options (`containerd.runc.v1.Options`, generated in [`v1`]), read
//! one way by berthd and the shim, and where runtime binaries are found.
//!
//! containerd 1.6 still takes the v1 Linux runtime
//! ([`LINUX_V1_RUNTIME`]), whose options are other messages ([`linux`]):
//! `RuncOptions` on the container (the runtime binary, its root, CRIU,
//! systemd cgroups) and `CreateOptions` on a task's Create (the create
//! flags). [`decode_options`] reads every one of them into runc's options,
//! so the rest of Berth knows one options type.

use std::path::PathBuf;

use prost::Message as _;
use prost_types::Any;

pub use crate::generated::containerd::linux::runc as linux;
pub use crate::generated::containerd::runc::v1;

use crate::type_urls::{LINUX_CREATE_OPTIONS, LINUX_RUNC_OPTIONS, RUNC_OPTIONS};

/// containerd's v1 Linux runtime name; Berth runs it under berth-shim like
/// `io.containerd.runc.v1`.
pub const LINUX_V1_RUNTIME: &str = "io.containerd.runtime.v1.linux";

/// Why runtime options were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    /// the `Any` holds another message type
    #[error(
        "options: unsupported type {0:?} (want {RUNC_OPTIONS}, {LINUX_RUNC_OPTIONS} or {LINUX_CREATE_OPTIONS})"
    )]
    UnsupportedType(String),
    /// the bytes do not decode
    #[error("options: {0}")]
    Malformed(String),
}

/// Decodes runtime options from an `Any` as runc's options: a
/// `containerd.runc.v1.Options` as it is; the v1 Linux runtime's
/// `RuncOptions` (`runtime` is the binary, `runtime_root` its `--root`,
/// `criu_path`, `systemd_cgroup`) and `CreateOptions` (the create flags)
/// onto the same fields. An empty `Any` (no type, no bytes) is the
/// default options.
pub fn decode_options(any: &Any) -> Result<v1::Options, OptionsError> {
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(v1::Options::default());
    }
    let malformed = |e: prost::DecodeError| OptionsError::Malformed(e.to_string());
    let bytes = any.value.as_slice();
    // A type URL may carry a host prefix (`types.googleapis.com/NAME`).
    match any.type_url.rsplit('/').next().unwrap_or_default() {
        RUNC_OPTIONS => v1::Options::decode(bytes).map_err(malformed),
        LINUX_RUNC_OPTIONS => {
            let o = linux::RuncOptions::decode(bytes).map_err(malformed)?;
            Ok(v1::Options {
                binary_name: o.runtime,
                root: o.runtime_root,
                criu_path: o.criu_path,
                systemd_cgroup: o.systemd_cgroup,
                ..Default::default()
            })
        }
        LINUX_CREATE_OPTIONS => {
            let o = linux::CreateOptions::decode(bytes).map_err(malformed)?;
            Ok(v1::Options {
                no_pivot_root: o.no_pivot_root,
                no_new_keyring: o.no_new_keyring,
                shim_cgroup: o.shim_cgroup,
                io_uid: o.io_uid,
                io_gid: o.io_gid,
                criu_image_path: o.criu_image_path,
                criu_work_path: o.criu_work_path,
                ..Default::default()
            })
        }
        _ => Err(OptionsError::UnsupportedType(any.type_url.clone())),
    }
}

/// The v1 Linux runtime's way of combining options: the container's
/// (which runtime, where, CRIU, systemd) with a task's create flags over
/// them. A task option that names a runtime or root (a runc `Options`
/// sent with the v1 name) wins for those too.
pub fn with_create_flags(container: v1::Options, task: v1::Options) -> v1::Options {
    let pick = |t: String, c: String| if t.is_empty() { c } else { t };
    v1::Options {
        no_pivot_root: task.no_pivot_root || container.no_pivot_root,
        no_new_keyring: task.no_new_keyring || container.no_new_keyring,
        shim_cgroup: pick(task.shim_cgroup, container.shim_cgroup),
        io_uid: if task.io_uid != 0 {
            task.io_uid
        } else {
            container.io_uid
        },
        io_gid: if task.io_gid != 0 {
            task.io_gid
        } else {
            container.io_gid
        },
        binary_name: pick(task.binary_name, container.binary_name),
        root: pick(task.root, container.root),
        criu_path: pick(task.criu_path, container.criu_path),
        systemd_cgroup: task.systemd_cgroup || container.systemd_cgroup,
        criu_image_path: pick(task.criu_image_path, container.criu_image_path),
        criu_work_path: pick(task.criu_work_path, container.criu_work_path),
    }
}

/// `options` as an `Any` of type `containerd.runc.v1.Options`.
pub fn encode_options(options: &v1::Options) -> Any {
    Any {
        type_url: crate::type_urls::RUNC_OPTIONS.to_string(),
        value: options.encode_to_vec(),
    }
}

/// Resolves a runtime binary name (looked up on `PATH`) or path; None
/// when it is nowhere.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_and_refusals() {
        let o = v1::Options {
            binary_name: "crun".into(),
            root: "/r".into(),
            ..Default::default()
        };
        assert_eq!(decode_options(&encode_options(&o)).unwrap(), o);
        assert_eq!(
            decode_options(&Any::default()).unwrap(),
            v1::Options::default()
        );
        let other = Any {
            type_url: "x.Other".into(),
            value: vec![1],
        };
        assert!(matches!(
            decode_options(&other),
            Err(OptionsError::UnsupportedType(_))
        ));
        let junk = Any {
            type_url: crate::type_urls::RUNC_OPTIONS.into(),
            value: vec![0xff, 0xff],
        };
        assert!(matches!(
            decode_options(&junk),
            Err(OptionsError::Malformed(_))
        ));
    }

    #[test]
    fn v1_linux_options_read_as_runc_options() {
        let runc = linux::RuncOptions {
            runtime: "crun".into(),
            runtime_root: "/run/r".into(),
            criu_path: "/usr/sbin/criu".into(),
            systemd_cgroup: true,
        };
        let any = Any {
            type_url: LINUX_RUNC_OPTIONS.into(),
            value: runc.encode_to_vec(),
        };
        let got = decode_options(&any).unwrap();
        assert_eq!(
            got,
            v1::Options {
                binary_name: "crun".into(),
                root: "/run/r".into(),
                criu_path: "/usr/sbin/criu".into(),
                systemd_cgroup: true,
                ..Default::default()
            }
        );
        // With a host prefix, as some clients write type URLs.
        let prefixed = Any {
            type_url: format!("types.googleapis.com/{LINUX_RUNC_OPTIONS}"),
            ..any
        };
        assert_eq!(decode_options(&prefixed).unwrap(), got);

        let create = linux::CreateOptions {
            no_new_keyring: true,
            io_uid: 1000,
            shim_cgroup: "/shim".into(),
            ..Default::default()
        };
        let flags = decode_options(&Any {
            type_url: LINUX_CREATE_OPTIONS.into(),
            value: create.encode_to_vec(),
        })
        .unwrap();
        assert!(flags.no_new_keyring && flags.binary_name.is_empty());
        let both = with_create_flags(got, flags);
        assert_eq!(
            (both.binary_name.as_str(), both.root.as_str(), both.io_uid),
            ("crun", "/run/r", 1000)
        );
        assert!(both.no_new_keyring && both.systemd_cgroup);
        assert_eq!(both.shim_cgroup, "/shim");

        // A name that merely ends like a known one is not it.
        let other = Any {
            type_url: "x.containerd.runc.v1.Options".into(),
            value: vec![],
        };
        assert!(matches!(
            decode_options(&other),
            Err(OptionsError::UnsupportedType(_))
        ));
    }

    #[test]
    fn binaries_are_found_on_path_or_by_path() {
        assert!(find_binary("sh").is_some());
        assert!(find_binary("no-such-binary-berth").is_none());
        assert!(find_binary("/nonexistent/runc").is_none());
    }
}
