//! Issue 2, Content: the content service of a real berthd, through Debian's
//! `ctr` and through a small gRPC client of our own (for what ctr cannot
//! do: interrupt a write, resume it, abort, kill the daemon mid-write).
//!
//! One binary, one file per topic: `ctr` (ingest, list, get, label,
//! remove, a refused digest through ctr), `write` (interrupted and resumed
//! writes, kill -9 during a hundred), `bad_input`, `leases`.

mod bad_input;
mod ctr;
mod leases;
mod support;
mod write;
