//! The namespace travels in gRPC metadata, as containerd's clients send it.

/// gRPC metadata key carrying the namespace of a call.
pub const GRPC_HEADER: &str = "containerd-namespace";

/// The namespace `ctr` and berthctl use when none is given.
pub const DEFAULT: &str = "default";
