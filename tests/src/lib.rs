//! Harness for end-to-end tests: starts a real `berthd` on private temp
//! dirs, runs Debian's `ctr` and `berthctl` against it, and cleans up
//! everything (processes it started, mounts under its dir) on drop, also
//! when a test fails.
//!
//! Binaries come from `$BERTH_BIN_DIR` or the workspace's `target/debug`;
//! build them first (`cargo build --workspace --bins`), as the README's test
//! command does.
//!
//! Modules, lower ones used by higher ones only: [`paths`] (binaries,
//! target dir); [`process`] (liveness, waiting for a condition); [`cli`]
//! (running `ctr` and `berthctl`, parsing what they print, preconditions);
//! [`cleanup`]; [`cni_host`] (what CNI plugins leave in the nat table);
//! [`daemon`] ([`Berthd`]); [`images`] (the test images, built once per
//! run); [`grpc`] (direct calls, leases); [`events`] (syncing with a
//! background event subscriber); [`tmux`] (a terminal of a known size);
//! [`registry`]; [`cri`] (a CRI client and a berthd with a pod network).

pub mod cleanup;
pub mod cli;
pub mod cni_host;
pub mod cri;
pub mod daemon;
pub mod events;
pub mod grpc;
pub mod images;
pub mod paths;
pub mod process;
pub mod registry;
pub mod spdy;
pub mod tmux;

pub use cleanup::{kill_containers_under, kill_shims_under, unmount_under};
pub use cli::{check, requires, requires_root, text};
pub use daemon::Berthd;
pub use paths::{bin, bin_dir};
