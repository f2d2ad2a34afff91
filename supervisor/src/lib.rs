//! berthd as a library: [`Daemon`] starts every service on a unix socket, so
//! tests can run it in-process and `main.rs` stays a thin binary.
//!
//! Top-down: [`daemon`] serves the adapters of [`services`] over the
//! domain services [`app::App`] builds: [`namespaces`], [`leases`],
//! [`content`], [`snapshots`], [`images`], [`registry`], [`containers`],
//! [`tasks`], over [`gc`], [`events`] and the metadata [`store`].

pub mod app;
pub mod build_info;
pub mod config;
pub mod containers;
pub mod content;
pub mod cri;
pub mod daemon;
pub mod engine;
pub mod events;
pub mod filters;
pub mod gc;
pub mod health;
pub mod images;
pub mod leases;
pub mod metrics;
pub mod namespaces;
pub mod netman;
pub mod network;
pub mod observability;
pub mod ops;
pub mod podns;
pub mod records;
pub mod registry;
pub mod services;
pub mod snapshots;
pub mod store;
pub mod systemd;
pub mod tasks;
pub mod transport;
pub mod ttrpc;
pub mod volumes;

pub use config::Config;
