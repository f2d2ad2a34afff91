//! The container's cgroup: metrics (encoded as containerd's
//! `io.containerd.cgroups.v1.Metrics` or `.v2.Metrics`) and OOM
//! notifications, read straight from cgroupfs.
//!
//! The paths are resolved once, right after `create`, from
//! `/proc/<init pid>/cgroup` and the cgroup mounts in `/proc/self/mountinfo`,
//! so they are right whether `linux.cgroupsPath` was absolute, relative or
//! empty, and they stay known after the init process is gone.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use berth_api::cgroups::{v1, v2};
use berth_api::type_urls;
use prost::Message;

/// Where the container's cgroup lives.
#[derive(Debug, Clone)]
pub enum Cgroup {
    /// cgroup v1: one directory per controller (`memory`, `cpuacct`, ...)
    V1(HashMap<String, PathBuf>),
    /// unified hierarchy: one directory
    V2(PathBuf),
}

impl Cgroup {
    /// Resolves the cgroup of `pid`. None if it cannot be determined.
    pub fn of_pid(pid: u32) -> Option<Self> {
        let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mut v1_mounts: HashMap<String, PathBuf> = HashMap::new();
        let mut v2_mount: Option<PathBuf> = None;
        for line in mountinfo.lines() {
            // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 {
                continue;
            }
            let mountpoint = PathBuf::from(l[4]);
            match r[0] {
                "cgroup" => {
                    for opt in r[2].split(',') {
                        v1_mounts
                            .entry(opt.to_string())
                            .or_insert_with(|| mountpoint.clone());
                    }
                }
                "cgroup2" if l[4] == "/sys/fs/cgroup" => v2_mount = Some(mountpoint),
                _ => {}
            }
        }
        if let Some(root) = v2_mount {
            let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
            return Some(Cgroup::V2(root.join(path.trim_start_matches('/'))));
        }
        let mut dirs = HashMap::new();
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next()?, parts.next()?);
            for c in controllers.split(',').filter(|c| !c.is_empty()) {
                if let Some(mp) = v1_mounts.get(c) {
                    dirs.insert(c.to_string(), mp.join(path.trim_start_matches('/')));
                }
            }
        }
        Some(Cgroup::V1(dirs))
    }

    /// Whether the cgroup is still there (the runtime removes it when it
    /// deletes the container).
    pub fn exists(&self) -> bool {
        match self {
            Cgroup::V1(d) => d.values().any(|p| p.is_dir()),
            Cgroup::V2(p) => p.is_dir(),
        }
    }

    /// The memory controller's directory.
    pub fn memory_dir(&self) -> Option<&Path> {
        match self {
            Cgroup::V1(d) => d.get("memory").map(PathBuf::as_path),
            Cgroup::V2(p) => Some(p),
        }
    }

    /// Current metrics as an `Any` containerd's clients decode.
    pub fn metrics(&self) -> prost_types::Any {
        match self {
            Cgroup::V1(dirs) => prost_types::Any {
                type_url: type_urls::CGROUPS_V1_METRICS.to_string(),
                value: v1_metrics(dirs).encode_to_vec(),
            },
            Cgroup::V2(dir) => prost_types::Any {
                type_url: type_urls::CGROUPS_V2_METRICS.to_string(),
                value: v2_metrics(dir).encode_to_vec(),
            },
        }
    }
}

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A "key value" per line file.
fn read_kv(path: &Path) -> HashMap<String, u64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn v1_metrics(dirs: &HashMap<String, PathBuf>) -> v1::Metrics {
    let mut m = v1::Metrics::default();
    if let Some(d) = dirs.get("pids") {
        let limit = fs::read_to_string(d.join("pids.max")).unwrap_or_default();
        m.pids = Some(v1::PidsStat {
            current: read_u64(&d.join("pids.current")),
            limit: limit.trim().parse().unwrap_or(0),
        });
    }
    if let Some(d) = dirs.get("cpuacct") {
        let ticks = crate::sys::clock_ticks();
        let stat = read_kv(&d.join("cpuacct.stat"));
        let per_cpu = fs::read_to_string(d.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let usage = v1::CpuUsage {
            total: read_u64(&d.join("cpuacct.usage")),
            kernel: stat.get("system").copied().unwrap_or(0) * 1_000_000_000 / ticks,
            user: stat.get("user").copied().unwrap_or(0) * 1_000_000_000 / ticks,
            per_cpu,
        };
        let throttling = dirs.get("cpu").map(|c| {
            let s = read_kv(&c.join("cpu.stat"));
            v1::Throttle {
                periods: s.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: s.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: s.get("throttled_time").copied().unwrap_or(0),
            }
        });
        m.cpu = Some(v1::CpuStat {
            usage: Some(usage),
            throttling,
        });
    }
    if let Some(d) = dirs.get("memory") {
        m.memory = Some(v1_memory(d));
        let oc = read_kv(&d.join("memory.oom_control"));
        m.memory_oom_control = Some(v1::MemoryOomControl {
            oom_kill_disable: oc.get("oom_kill_disable").copied().unwrap_or(0),
            under_oom: oc.get("under_oom").copied().unwrap_or(0),
            oom_kill: oc.get("oom_kill").copied().unwrap_or(0),
        });
    }
    if let Some(d) = dirs.get("blkio") {
        m.blkio = Some(v1_blkio(d));
    }
    if let Some(d) = dirs.get("hugetlb") {
        let mut sizes: Vec<String> = fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                Some(
                    n.strip_prefix("hugetlb.")?
                        .strip_suffix(".usage_in_bytes")?
                        .to_string(),
                )
            })
            .collect();
        sizes.sort();
        for size in sizes {
            let f = |s: &str| read_u64(&d.join(format!("hugetlb.{size}.{s}")));
            m.hugetlb.push(v1::HugetlbStat {
                usage: f("usage_in_bytes"),
                max: f("max_usage_in_bytes"),
                failcnt: f("failcnt"),
                pagesize: size,
            });
        }
    }
    m
}

fn v1_memory(d: &Path) -> v1::MemoryStat {
    let s = read_kv(&d.join("memory.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let entry = |prefix: &str| {
        let f = |name: &str| read_u64(&d.join(format!("{prefix}{name}")));
        Some(v1::MemoryEntry {
            limit: f("limit_in_bytes"),
            usage: f("usage_in_bytes"),
            max: f("max_usage_in_bytes"),
            failcnt: f("failcnt"),
        })
    };
    v1::MemoryStat {
        cache: g("cache"),
        rss: g("rss"),
        rss_huge: g("rss_huge"),
        mapped_file: g("mapped_file"),
        dirty: g("dirty"),
        writeback: g("writeback"),
        pg_pg_in: g("pgpgin"),
        pg_pg_out: g("pgpgout"),
        pg_fault: g("pgfault"),
        pg_maj_fault: g("pgmajfault"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        hierarchical_memory_limit: g("hierarchical_memory_limit"),
        hierarchical_swap_limit: g("hierarchical_memsw_limit"),
        total_cache: g("total_cache"),
        total_rss: g("total_rss"),
        total_rss_huge: g("total_rss_huge"),
        total_mapped_file: g("total_mapped_file"),
        total_dirty: g("total_dirty"),
        total_writeback: g("total_writeback"),
        total_pg_pg_in: g("total_pgpgin"),
        total_pg_pg_out: g("total_pgpgout"),
        total_pg_fault: g("total_pgfault"),
        total_pg_maj_fault: g("total_pgmajfault"),
        total_inactive_anon: g("total_inactive_anon"),
        total_active_anon: g("total_active_anon"),
        total_inactive_file: g("total_inactive_file"),
        total_active_file: g("total_active_file"),
        total_unevictable: g("total_unevictable"),
        usage: entry("memory."),
        swap: entry("memory.memsw."),
        kernel: entry("memory.kmem."),
        kernel_tcp: entry("memory.kmem.tcp."),
    }
}

fn v1_blkio(d: &Path) -> v1::BlkIoStat {
    let read = |name: &str| -> Vec<v1::BlkIoEntry> {
        let mut entries = parse_blkio(&d.join(format!("blkio.{name}")));
        if entries.is_empty() {
            entries = parse_blkio(&d.join(format!(
                "blkio.throttle.{}",
                name.trim_end_matches("_recursive")
            )));
        }
        entries
    };
    v1::BlkIoStat {
        io_service_bytes_recursive: read("io_service_bytes_recursive"),
        io_serviced_recursive: read("io_serviced_recursive"),
        io_queued_recursive: parse_blkio(&d.join("blkio.io_queued_recursive")),
        io_service_time_recursive: parse_blkio(&d.join("blkio.io_service_time_recursive")),
        io_wait_time_recursive: parse_blkio(&d.join("blkio.io_wait_time_recursive")),
        io_merged_recursive: parse_blkio(&d.join("blkio.io_merged_recursive")),
        io_time_recursive: parse_blkio(&d.join("blkio.time_recursive")),
        sectors_recursive: parse_blkio(&d.join("blkio.sectors_recursive")),
    }
}

/// Lines "MAJ:MIN [Op] VALUE"; "Total" lines are skipped.
fn parse_blkio(path: &Path) -> Vec<v1::BlkIoEntry> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dev, op, value) = match f.as_slice() {
                [dev, op, v] => (*dev, *op, *v),
                [dev, v] => (*dev, "", *v),
                _ => return None,
            };
            let (maj, min) = dev.split_once(':')?;
            let (major, minor) = (maj.parse().ok()?, min.parse().ok()?);
            Some(v1::BlkIoEntry {
                op: op.to_string(),
                device: device_name(major, minor),
                major,
                minor,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

fn device_name(major: u64, minor: u64) -> String {
    fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(|n| format!("/dev/{n}")))
        })
        .unwrap_or_default()
}

fn v2_metrics(d: &Path) -> v2::Metrics {
    let max = |name: &str| {
        let s = fs::read_to_string(d.join(name)).unwrap_or_default();
        s.trim().parse().unwrap_or(0)
    };
    let cpu = read_kv(&d.join("cpu.stat"));
    let c = |k: &str| cpu.get(k).copied().unwrap_or(0);
    let mem = read_kv(&d.join("memory.stat"));
    let g = |k: &str| mem.get(k).copied().unwrap_or(0);
    let ev = read_kv(&d.join("memory.events"));
    let e = |k: &str| ev.get(k).copied().unwrap_or(0);
    let io = fs::read_to_string(d.join("io.stat")).unwrap_or_default();
    v2::Metrics {
        pids: Some(v2::PidsStat {
            current: read_u64(&d.join("pids.current")),
            limit: max("pids.max"),
        }),
        cpu: Some(v2::CpuStat {
            usage_usec: c("usage_usec"),
            user_usec: c("user_usec"),
            system_usec: c("system_usec"),
            nr_periods: c("nr_periods"),
            nr_throttled: c("nr_throttled"),
            throttled_usec: c("throttled_usec"),
        }),
        memory: Some(v2::MemoryStat {
            anon: g("anon"),
            file: g("file"),
            kernel_stack: g("kernel_stack"),
            slab: g("slab"),
            sock: g("sock"),
            shmem: g("shmem"),
            file_mapped: g("file_mapped"),
            file_dirty: g("file_dirty"),
            file_writeback: g("file_writeback"),
            anon_thp: g("anon_thp"),
            inactive_anon: g("inactive_anon"),
            active_anon: g("active_anon"),
            inactive_file: g("inactive_file"),
            active_file: g("active_file"),
            unevictable: g("unevictable"),
            slab_reclaimable: g("slab_reclaimable"),
            slab_unreclaimable: g("slab_unreclaimable"),
            pgfault: g("pgfault"),
            pgmajfault: g("pgmajfault"),
            workingset_refault: g("workingset_refault"),
            workingset_activate: g("workingset_activate"),
            workingset_nodereclaim: g("workingset_nodereclaim"),
            pgrefill: g("pgrefill"),
            pgscan: g("pgscan"),
            pgsteal: g("pgsteal"),
            pgactivate: g("pgactivate"),
            pgdeactivate: g("pgdeactivate"),
            pglazyfree: g("pglazyfree"),
            pglazyfreed: g("pglazyfreed"),
            thp_fault_alloc: g("thp_fault_alloc"),
            thp_collapse_alloc: g("thp_collapse_alloc"),
            usage: read_u64(&d.join("memory.current")),
            usage_limit: max("memory.max"),
            swap_usage: read_u64(&d.join("memory.swap.current")),
            swap_limit: max("memory.swap.max"),
        }),
        memory_events: Some(v2::MemoryEvents {
            low: e("low"),
            high: e("high"),
            max: e("max"),
            oom: e("oom"),
            oom_kill: e("oom_kill"),
        }),
        io: Some(v2::IoStat {
            usage: io
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (maj, min) = f.next()?.split_once(':')?;
                    let kv: HashMap<&str, u64> = f
                        .filter_map(|p| p.split_once('='))
                        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                        .collect();
                    let k = |n: &str| kv.get(n).copied().unwrap_or(0);
                    Some(v2::IoEntry {
                        major: maj.parse().ok()?,
                        minor: min.parse().ok()?,
                        rbytes: k("rbytes"),
                        wbytes: k("wbytes"),
                        rios: k("rios"),
                        wios: k("wios"),
                    })
                })
                .collect(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_resolves_and_encodes() {
        let cg = Cgroup::of_pid(std::process::id()).expect("own cgroup");
        let any = cg.metrics();
        match cg {
            Cgroup::V1(d) => {
                assert!(d.contains_key("memory"), "{d:?}");
                assert_eq!(any.type_url, type_urls::CGROUPS_V1_METRICS);
                let m = v1::Metrics::decode(any.value.as_slice()).unwrap();
                assert!(m.memory.unwrap().usage.unwrap().usage > 0);
            }
            Cgroup::V2(_) => assert_eq!(any.type_url, type_urls::CGROUPS_V2_METRICS),
        }
    }
}
