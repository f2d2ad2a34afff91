//! What a container's spec (or a pod's PID namespace holder's) is made
//! from besides the CRI configs: facts about the host and the image's
//! config as `convert` takes them.

use super::convert::{HostFacts, ImageConfig};

/// Facts about the host the spec needs (capability bounding set, the
/// oom_score_adj floor).
pub(super) fn host_facts(restrict_oom: bool) -> HostFacts {
    let floor = restrict_oom
        .then(|| {
            std::fs::read_to_string("/proc/self/oom_score_adj")
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .flatten();
    HostFacts {
        bounding_caps: berth_api::caps::host_bounding_set(),
        oom_score_adj_floor: floor,
        host_devices: Vec::new(),
    }
}

/// The parts of an image config a container spec takes.
pub(super) fn image_config(c: &berth_api::oci::ImageConfig) -> ImageConfig {
    let e = c.config.clone().unwrap_or_default();
    ImageConfig {
        entrypoint: e.entrypoint.unwrap_or_default(),
        cmd: e.cmd.unwrap_or_default(),
        env: e.env.unwrap_or_default(),
        working_dir: e.working_dir.unwrap_or_default(),
        user: e.user.unwrap_or_default(),
    }
}
