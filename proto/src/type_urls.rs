//! Type URLs for values carried in `google.protobuf.Any`. containerd's
//! clients look these up in their type registry, so they must match exactly.

/// OCI runtime spec (JSON) in a container record.
pub const OCI_SPEC: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// OCI process spec (JSON) in Tasks.Exec.
pub const OCI_PROCESS: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// OCI LinuxResources (JSON) in Tasks.Update.
pub const OCI_LINUX_RESOURCES: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
/// runc shim options.
pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// The v1 Linux runtime's container options.
pub const LINUX_RUNC_OPTIONS: &str = "containerd.linux.runc.RuncOptions";
/// The v1 Linux runtime's task create options.
pub const LINUX_CREATE_OPTIONS: &str = "containerd.linux.runc.CreateOptions";
/// cgroups v1 metrics.
pub const CGROUPS_V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
/// cgroups v2 metrics.
pub const CGROUPS_V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

/// Type URL of an event payload, e.g. `containerd.events.TaskExit`.
pub fn event(name: &str) -> String {
    format!("containerd.events.{name}")
}
