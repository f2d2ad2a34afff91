//! Issue 4 (berthd side): Containers, Tasks and Events against a real
//! berthd, real berth-shim and real runc, driven by a small tonic client
//! (no images or snapshots needed: the rootfs is a busybox directory passed
//! as a bind mount) and by Debian's `ctr` where it needs no image.
//!
//! One binary, one file per topic: `run` (create, start, exec, pause,
//! metrics, kill, delete, bad input), `dead` (a dead shim, a killed
//! berthd), `events` (`ctr events`, OOM), `parallel` (fifty at once).

mod dead;
mod events;
mod parallel;
mod run;
mod support;
