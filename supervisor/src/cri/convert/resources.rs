//! CRI `LinuxContainerResources` as OCI `linux.resources`, and the
//! process's `oom_score_adj`.

use k8s_cri::v1 as cri;
use serde_json::{json, Map, Value};

use super::Error;

/// `linux.resources` without the devices list (added by the caller).
/// Zero values mean "not set", as the kubelet sends them.
pub fn linux_resources(r: &cri::LinuxContainerResources) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    let mut cpu = Map::new();
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if r.cpu_quota > 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    let mut memory = Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), json!(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes > 0 {
        if r.memory_limit_in_bytes > 0 && r.memory_swap_limit_in_bytes < r.memory_limit_in_bytes {
            return Err(Error::invalid(format!(
                "memory_swap_limit_in_bytes {} is below memory_limit_in_bytes {}",
                r.memory_swap_limit_in_bytes, r.memory_limit_in_bytes
            )));
        }
        memory.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    let mut pages = Vec::new();
    for h in &r.hugepage_limits {
        if h.page_size.is_empty()
            || !h
                .page_size
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        {
            return Err(Error::invalid(format!(
                "hugepage page_size {:?}: expected e.g. 2MB",
                h.page_size
            )));
        }
        pages.push(json!({"pageSize": h.page_size, "limit": h.limit}));
    }
    if !pages.is_empty() {
        out.insert("hugepageLimits".into(), Value::Array(pages));
    }
    if !r.unified.is_empty() {
        out.insert("unified".into(), json!(r.unified));
    }
    Ok(out)
}

/// The `oom_score_adj` for the process: the request's, raised to `floor`
/// when the config restricts it (`restrict_oom_score_adj`: hosts where
/// lowering it below berthd's own is refused).
pub fn oom_score_adj(requested: i64, floor: Option<i64>) -> Result<i64, Error> {
    if !(-1000..=1000).contains(&requested) {
        return Err(Error::invalid(format!(
            "oom_score_adj {requested}: must lie in -1000..=1000"
        )));
    }
    Ok(match floor {
        Some(f) if requested < f => f,
        _ => requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_unset_and_values_carry_over() {
        assert!(linux_resources(&Default::default()).unwrap().is_empty());
        let r = cri::LinuxContainerResources {
            cpu_period: 100000,
            cpu_quota: 50000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0".into(),
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            ..Default::default()
        };
        let v = Value::Object(linux_resources(&r).unwrap());
        assert_eq!(
            v["cpu"],
            json!({"period": 100000, "quota": 50000, "shares": 512, "cpus": "0"})
        );
        assert_eq!(v["memory"], json!({"limit": 64 << 20}));
        assert_eq!(v["hugepageLimits"][0]["pageSize"], "2MB");
        serde_json::from_value::<oci_spec::runtime::LinuxResources>(v)
            .expect("valid OCI resources");
    }

    #[test]
    fn bad_values_are_refused() {
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 100,
            memory_swap_limit_in_bytes: 50,
            ..Default::default()
        };
        assert!(linux_resources(&r).is_err());
        let r = cri::LinuxContainerResources {
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "huge".into(),
                limit: 1,
            }],
            ..Default::default()
        };
        assert!(linux_resources(&r).is_err());
    }

    #[test]
    fn oom_score_adj_is_clamped_when_restricted() {
        assert_eq!(oom_score_adj(-998, None).unwrap(), -998);
        assert_eq!(oom_score_adj(-998, Some(0)).unwrap(), 0);
        assert_eq!(oom_score_adj(1000, Some(0)).unwrap(), 1000);
        assert!(oom_score_adj(2000, None).is_err());
    }
}
