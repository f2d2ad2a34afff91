//! Berth's wire API and the handful of types every side shares.
//!
//! The generated modules mirror protobuf packages: `services::content::v1`,
//! `types`, `events`, `shim::v1`. They are containerd's v1 API on the wire
//! (same names, same field numbers) plus our private `berth.shim.v1`.
//!
//! Beside them, what every side shares: [`Digest`], the error kinds and
//! their one map to gRPC ([`errdefs`]), the OCI image model ([`oci`]),
//! event topics and type URLs ([`events::Event`]), the namespace and lease
//! headers, and runc's options ([`runc`]).

pub mod caps;
pub mod digest;
pub mod echo;
pub mod errdefs;
pub mod events;
pub mod identifiers;
pub mod lease;
pub mod namespace;
pub mod oci;
pub mod runc;
pub mod type_urls;

pub use digest::{Digest, DigestError};
pub use errdefs::{to_status, ErrorKind};

macro_rules! generated {
    ($pkg:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $pkg, ".rs"));
    };
}

/// Generated code: lints relaxed here only.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms
)]
mod generated {
    pub mod google {
        pub mod rpc {
            generated!("google.rpc");
        }
    }
    pub mod containerd {
        pub mod types {
            generated!("containerd.types");
        }
        pub mod v1 {
            pub mod types {
                generated!("containerd.v1.types");
            }
        }
        pub mod events {
            generated!("containerd.events");
        }
        pub mod runc {
            pub mod v1 {
                generated!("containerd.runc.v1");
            }
        }
        pub mod linux {
            pub mod runc {
                generated!("containerd.linux.runc");
            }
        }
        pub mod services {
            pub mod containers {
                pub mod v1 {
                    generated!("containerd.services.containers.v1");
                }
            }
            pub mod content {
                pub mod v1 {
                    generated!("containerd.services.content.v1");
                }
            }
            pub mod diff {
                pub mod v1 {
                    generated!("containerd.services.diff.v1");
                }
            }
            pub mod events {
                pub mod v1 {
                    generated!("containerd.services.events.v1");
                }
            }
            pub mod images {
                pub mod v1 {
                    generated!("containerd.services.images.v1");
                }
            }
            pub mod introspection {
                pub mod v1 {
                    generated!("containerd.services.introspection.v1");
                }
            }
            pub mod leases {
                pub mod v1 {
                    generated!("containerd.services.leases.v1");
                }
            }
            pub mod namespaces {
                pub mod v1 {
                    generated!("containerd.services.namespaces.v1");
                }
            }
            pub mod snapshots {
                pub mod v1 {
                    generated!("containerd.services.snapshots.v1");
                }
            }
            pub mod tasks {
                pub mod v1 {
                    generated!("containerd.services.tasks.v1");
                }
            }
            pub mod version {
                pub mod v1 {
                    generated!("containerd.services.version.v1");
                }
            }
        }
    }
    pub mod io {
        pub mod containerd {
            pub mod cgroups {
                pub mod v1 {
                    generated!("io.containerd.cgroups.v1");
                }
                pub mod v2 {
                    generated!("io.containerd.cgroups.v2");
                }
            }
        }
    }
    pub mod berth {
        pub mod containers {
            pub mod v1 {
                generated!("berth.containers.v1");
            }
        }
        pub mod networks {
            pub mod v1 {
                generated!("berth.networks.v1");
            }
        }
        pub mod volumes {
            pub mod v1 {
                generated!("berth.volumes.v1");
            }
        }
        pub mod images {
            pub mod v1 {
                generated!("berth.images.v1");
            }
        }
        pub mod shim {
            pub mod v1 {
                generated!("berth.shim.v1");
            }
        }
    }
}

/// Berth's Docker-style container workflow (`berth.containers.v1`).
pub use generated::berth::containers as berth_containers;
/// Berth's own image services (`berth.images.v1`): registry pull/push.
pub use generated::berth::images;
/// Berth's image transfer service (`berth.images.v1`): server-side import/export.
pub use generated::berth::images as berth_images;
/// Berth's networks (`berth.networks.v1`).
pub use generated::berth::networks as berth_networks;
pub use generated::berth::shim;
/// Berth's volumes (`berth.volumes.v1`).
pub use generated::berth::volumes as berth_volumes;
pub use generated::containerd::services;
pub use generated::containerd::types;
/// Task status and process types (`containerd.v1.types`).
pub use generated::containerd::v1::types as task_types;
pub use generated::google::rpc;
/// containerd's cgroup metrics (`io.containerd.cgroups.v1` / `.v2`), sent in `Any`.
pub use generated::io::containerd::cgroups;
