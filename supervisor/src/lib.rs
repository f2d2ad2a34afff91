//! berthd as a library: [`Daemon`] starts every service on a unix socket, so
//! tests can run it in-process and `main.rs` stays a thin binary.

pub mod config;
pub mod content;
pub mod cri;
pub mod daemon;
pub mod events;
pub mod filters;
pub mod gc;
pub mod images;
pub mod network;
pub mod observability;
pub mod registry;
pub mod runtime;
pub mod services;
pub mod snapshots;
pub mod store;

pub use config::Config;
pub use daemon::Daemon;
