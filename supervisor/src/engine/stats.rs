//! `top` and `stats`: a running container's processes (from /proc) and
//! its resource use, read from its cgroup (`/<namespace>/<id>` on
//! cgroupfs, v1 controllers or the unified hierarchy) and, for network
//! bytes, from its network namespace (`/proc/PID/net/dev`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::error::blocking;
use super::{Engine, Error, Result};

/// `top`'s table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    /// Column names.
    pub titles: Vec<String>,
    /// One row per process.
    pub rows: Vec<Vec<String>>,
}

/// One container's resource use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Its ID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// CPU use since the previous sample, in percent of one CPU.
    pub cpu_percent: f64,
    /// Memory used (without inactive page cache).
    pub memory_usage: u64,
    /// Its limit, or the host's memory.
    pub memory_limit: u64,
    /// Bytes received.
    pub net_rx: u64,
    /// Bytes sent.
    pub net_tx: u64,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written to block devices.
    pub block_write: u64,
    /// Processes.
    pub pids: u64,
}

struct Raw {
    sample: Sample,
    cpu_ns: u64,
    at: Instant,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Reads one container's counters (blocking).
fn read_raw(cgroup: &str, pid: u32, id: &str, name: &str) -> Raw {
    let root = Path::new("/sys/fs/cgroup");
    let rel = cgroup.trim_start_matches('/');
    let v1 = |ctrl: &str| -> Option<PathBuf> {
        let p = root.join(ctrl).join(rel);
        p.is_dir().then_some(p)
    };
    let mut s = Sample {
        id: id.to_string(),
        name: name.to_string(),
        ..Default::default()
    };
    let cpu_ns;
    if let Some(cpu) = v1("cpuacct").or_else(|| v1("cpu,cpuacct")) {
        cpu_ns = read_u64(&cpu.join("cpuacct.usage")).unwrap_or(0);
        let mem = v1("memory");
        if let Some(m) = mem {
            let usage = read_u64(&m.join("memory.usage_in_bytes")).unwrap_or(0);
            let stat = std::fs::read_to_string(m.join("memory.stat")).unwrap_or_default();
            let inactive = stat_field(&stat, "total_inactive_file").unwrap_or(0);
            s.memory_usage = usage.saturating_sub(inactive);
            s.memory_limit = read_u64(&m.join("memory.limit_in_bytes")).unwrap_or(0);
        }
        if let Some(b) = v1("blkio") {
            let t = std::fs::read_to_string(b.join("blkio.throttle.io_service_bytes"))
                .unwrap_or_default();
            for l in t.lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() == 3 {
                    let n: u64 = f[2].parse().unwrap_or(0);
                    match f[1] {
                        "Read" => s.block_read += n,
                        "Write" => s.block_write += n,
                        _ => {}
                    }
                }
            }
        }
        if let Some(p) = v1("pids") {
            s.pids = read_u64(&p.join("pids.current")).unwrap_or(0);
        }
    } else {
        let g = root.join(rel);
        let cpu = std::fs::read_to_string(g.join("cpu.stat")).unwrap_or_default();
        cpu_ns = stat_field(&cpu, "usage_usec").unwrap_or(0) * 1000;
        let stat = std::fs::read_to_string(g.join("memory.stat")).unwrap_or_default();
        let usage = read_u64(&g.join("memory.current")).unwrap_or(0);
        s.memory_usage = usage.saturating_sub(stat_field(&stat, "inactive_file").unwrap_or(0));
        s.memory_limit = read_u64(&g.join("memory.max")).unwrap_or(0);
        for l in std::fs::read_to_string(g.join("io.stat"))
            .unwrap_or_default()
            .lines()
        {
            for kv in l.split_whitespace() {
                if let Some(v) = kv.strip_prefix("rbytes=") {
                    s.block_read += v.parse::<u64>().unwrap_or(0);
                } else if let Some(v) = kv.strip_prefix("wbytes=") {
                    s.block_write += v.parse::<u64>().unwrap_or(0);
                }
            }
        }
        s.pids = read_u64(&g.join("pids.current")).unwrap_or(0);
    }
    let host = host_memory();
    if s.memory_limit == 0 || s.memory_limit > host {
        s.memory_limit = host;
    }
    if pid > 0 {
        let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
        for l in dev.lines().skip(2) {
            let Some((ifname, rest)) = l.split_once(':') else {
                continue;
            };
            if ifname.trim() == "lo" {
                continue;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if f.len() >= 9 {
                s.net_rx += f[0];
                s.net_tx += f[8];
            }
        }
    }
    Raw {
        sample: s,
        cpu_ns,
        at: Instant::now(),
    }
}

/// `ps -ef`'s columns for one process (blocking).
fn process_row(pid: u32, boot: Option<u64>) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (left, right) = stat.rsplit_once(')')?;
    let comm = left.split_once('(')?.1;
    let f: Vec<&str> = right.split_whitespace().collect();
    let ppid = f.get(1)?.to_string();
    let ticks = 100u64;
    let cpu = (f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) / ticks;
    let start_ticks: u64 = f.get(19)?.parse().ok()?;
    let stime = boot
        .map(|b| {
            let t = std::time::UNIX_EPOCH + Duration::from_secs(b + start_ticks / ticks);
            humantime::format_rfc3339_seconds(t).to_string()[11..16].to_string()
        })
        .unwrap_or_else(|| "?".into());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(vec![
        uid,
        pid.to_string(),
        ppid,
        "0".into(),
        stime,
        "?".into(),
        format!("{:02}:{:02}:{:02}", cpu / 3600, cpu / 60 % 60, cpu % 60),
        cmd,
    ])
}

fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

impl Engine {
    /// The processes of running container `what`.
    pub async fn top(&self, ns: &str, what: &str) -> Result<Top> {
        let slot = self.find(ns, what)?;
        let rec = slot.record();
        if !rec.state.status.is_running() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.name
            )));
        }
        let pids: Vec<u32> = self
            .deps()
            .tasks
            .pids(ns, &slot.id)
            .await?
            .into_iter()
            .map(|p| p.pid)
            .collect();
        let rows = blocking(move || {
            let boot = boot_time();
            Ok(pids
                .into_iter()
                .filter_map(|p| process_row(p, boot))
                .collect())
        })
        .await?;
        Ok(Top {
            titles: ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
                .map(String::from)
                .to_vec(),
            rows,
        })
    }

    /// Samples the containers `whats` (empty: every running one of `ns`):
    /// one batch after half a second, then (with `stream`) one a second.
    pub fn stats(
        &self,
        ns: &str,
        whats: &[String],
        stream: bool,
    ) -> Result<mpsc::Receiver<Vec<Sample>>> {
        let slots = if whats.is_empty() {
            self.all(ns)
                .into_iter()
                .filter(|s| s.record().state.status.is_running())
                .collect()
        } else {
            whats
                .iter()
                .map(|w| self.find(ns, w))
                .collect::<Result<Vec<_>>>()?
        };
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let read_all = |slots: Vec<std::sync::Arc<super::Slot>>| async move {
                let targets: Vec<(String, u32, String, String)> = slots
                    .iter()
                    .map(|s| {
                        let r = s.record();
                        (
                            format!("/{}/{}", s.ns, s.id),
                            r.state.pid,
                            s.id.clone(),
                            r.name,
                        )
                    })
                    .collect();
                tokio::task::spawn_blocking(move || {
                    targets
                        .iter()
                        .map(|(cg, pid, id, name)| read_raw(cg, *pid, id, name))
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default()
            };
            let mut prev = read_all(slots.clone()).await;
            let mut wait = Duration::from_millis(500);
            loop {
                tokio::time::sleep(wait).await;
                let now = read_all(slots.clone()).await;
                let out: Vec<Sample> = now
                    .iter()
                    .zip(prev.iter())
                    .map(|(n, p)| {
                        let mut s = n.sample.clone();
                        let wall = n.at.duration_since(p.at).as_nanos() as f64;
                        if wall > 0.0 {
                            s.cpu_percent = n.cpu_ns.saturating_sub(p.cpu_ns) as f64 / wall * 100.0;
                        }
                        s
                    })
                    .collect();
                if tx.send(out).await.is_err() || !stream {
                    return;
                }
                prev = now;
                wait = Duration::from_secs(1);
            }
        });
        Ok(rx)
    }
}
