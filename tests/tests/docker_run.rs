//! The Docker-style workflow against a real berthd, runc and Debian's CNI
//! plugins (issue 15): `run -d --name web -p 127.0.0.1:PORT:80` serves
//! from the host, `ps` shows it Up with its port, `logs` has its output,
//! `stop` takes the grace period only for a process that ignores SIGTERM,
//! `start` serves again, `rm -f` leaves no bridge, veth, iptables rule or
//! netns behind; 50 MB of detached output keeps the container running and
//! the log rotated; restart policies survive a kill -9 of berthd; bad input
//! gets one clear line and leaves nothing.
//!
//! Each test has its own bridge names and a /24 of 10.91.0.0/16; the rig
//! removes its containers and networks through berthd on drop (also when a
//! test fails), then any bridge still there.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::images::BUSYBOX as IMAGE;
use berth_tests::{requires_root, Berthd};
use serde_json::Value;

const TOOLS: &[&str] = &["ctr", "runc", "iptables-save", "ip"];

/// A berthd whose default network is a bridge of this test's own.
struct Rig {
    d: Berthd,
    bridges: Vec<String>,
    _conf: tempfile::TempDir,
    /// Held while the default network's portmap and firewall plugins may
    /// make their shared chains; dropped last (see `cni_host`).
    _chains: berth_tests::cni_host::SharedChains,
}

impl Rig {
    /// `n` picks the bridge name and the subnet 10.91.n.0/24.
    fn new(n: u8) -> Self {
        requires_root(TOOLS);
        let chains = berth_tests::cni_host::SharedChains::guard();
        let conf = tempfile::tempdir().unwrap();
        let bridge = format!("bdk{n}-{}", std::process::id() % 100_000);
        let path = conf.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[cri]\ncni_bin_dirs = [\"/usr/lib/cni\"]\n[network]\ndefault_bridge = \"{bridge}\"\n\
                 default_subnet = \"10.91.{n}.0/24\"\nsubnet_pool = \"10.91.{}.0/24\"\n",
                n + 100
            ),
        )
        .unwrap();
        let d = Berthd::start_with(&["--config", path.to_str().unwrap()]);
        let tar = berth_tests::images::busybox();
        d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
        Self {
            d,
            bridges: vec![bridge],
            _conf: conf,
            _chains: chains,
        }
    }

    fn bridge(&self) -> &str {
        &self.bridges[0]
    }

    fn inspect(&self, name: &str) -> Value {
        let v = self.d.json(&["inspect", name]);
        v[0].clone()
    }

    /// `ps -a` rows (JSON).
    fn ps(&self) -> Vec<Value> {
        self.d
            .json(&["ps", "-a"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn row(&self, name: &str) -> Value {
        self.ps()
            .into_iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no container {name} in ps -a"))
    }

    /// Nothing of the containers' networks is left on the host.
    fn assert_clean(&self, ids: &[String]) {
        for b in &self.bridges {
            assert!(!link_exists(b), "bridge {b} left behind");
        }
        let rules =
            String::from_utf8_lossy(&Command::new("iptables-save").output().unwrap().stdout)
                .into_owned();
        for id in ids {
            assert!(
                !rules.contains(id.as_str()),
                "iptables rules of {id} left:\n{rules}"
            );
        }
        let netns = self.d.state().join("netns");
        let left: Vec<_> = std::fs::read_dir(&netns)
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "netns left in {netns:?}: {left:?}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Containers through berthd (CNI DEL: veths, portmap and masquerade
        // rules, leases), then user networks, then any bridge left.
        if let Ok(out) = self.d.berthctl_cmd(&["ps", "-aq", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.d.berthctl(&["rm", "-f", id]);
            }
        }
        let _ = self.d.berthctl(&["network", "prune"]);
        for b in &self.bridges {
            if link_exists(b) {
                let _ = Command::new("ip").args(["link", "del", b]).status();
            }
        }
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GETs `/` from `addr` until the page answers (20 s).
fn http_get(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match got {
            Ok(body) if body.contains("hello-berth") => return body,
            other => assert!(
                Instant::now() < deadline,
                "no answer from {addr}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` until true (`secs` seconds).
fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const HTTPD: &str = "mkdir -p /www && echo hello-berth > /www/index.html && echo httpd-starting \
                     && exec httpd -f -vv -p 80 -h /www";

#[test]
#[ignore = "needs root"]
fn web_on_a_published_port_ps_logs_stop_start_rm() {
    let rig = Rig::new(1);
    let d = &rig.d;
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = d
        .berthctl_ok(&[
            "run", "-d", "--name", "web", "-p", &publish, IMAGE, "sh", "-c", HTTPD,
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    http_get(&format!("127.0.0.1:{port}"));

    // ps: Up, with the port; by name and by ID prefix alike.
    let row = rig.row("web");
    assert_eq!(row["state"], "running", "{row}");
    assert!(row["status"].as_str().unwrap().starts_with("Up "), "{row}");
    assert_eq!(
        row["ports"][0],
        format!("127.0.0.1:{port}->80/tcp"),
        "{row}"
    );
    let table = d.berthctl_ok(&["ps"]);
    assert!(
        table.contains("web") && table.contains(&id[..12]),
        "{table}"
    );
    let q = d.berthctl_ok(&["ps", "-q"]);
    assert_eq!(q.trim(), &id[..12]);
    let info = rig.inspect(&id[..10]);
    let ip = info["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ip.starts_with("10.91.1."), "{info}");
    // The bridge network is reachable from the host directly too.
    http_get(&format!("{ip}:80"));

    // logs: the container's output and the request httpd logged.
    eventually("the request in the log", 20, || {
        let logs = d.berthctl(&["logs", "web"]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
        all.contains("httpd-starting") && all.contains("url:/")
    });
    let tail = d.berthctl_ok(&["logs", "--tail", "1", "web"]);
    assert!(!tail.contains("httpd-starting"), "{tail}");

    // stop: httpd as PID 1 has no SIGTERM handler, so the kernel drops
    // the signal: exactly the grace period, then SIGKILL.
    let t0 = Instant::now();
    d.berthctl_ok(&["stop", "-t", "2", "web"]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "stop -t 2 took {took:?}"
    );
    let row = rig.row("web");
    assert_eq!(row["state"], "exited", "{row}");
    assert!(
        row["status"].as_str().unwrap().starts_with("Exited (137) "),
        "{row}"
    );
    assert!(row["ports"].as_array().unwrap().is_empty(), "{row}");
    assert!(!link_exists(rig.bridge()), "bridge kept while nothing runs");

    // start again: the same container, serving on the same port.
    d.berthctl_ok(&["start", "web"]);
    http_get(&format!("127.0.0.1:{port}"));
    assert_eq!(rig.row("web")["id"], id.as_str());

    // A process that handles SIGTERM stops at once.
    d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    eventually("polite running", 10, || {
        rig.row("polite")["state"] == "running"
    });
    let t0 = Instant::now();
    d.berthctl_ok(&["stop", "-t", "10", "polite"]);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert!(
        rig.row("polite")["status"]
            .as_str()
            .unwrap()
            .starts_with("Exited (0) "),
        "{:?}",
        rig.ps()
    );

    // rm -f of a running container: one step, nothing left.
    let polite = rig.row("polite")["id"].as_str().unwrap().to_string();
    d.berthctl_ok(&["rm", "-f", "web"]);
    d.berthctl_ok(&["rm", "polite"]);
    assert!(rig.ps().is_empty(), "{:?}", rig.ps());
    assert!(
        TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(1)
        )
        .is_err(),
        "port {port} still answers"
    );
    rig.assert_clean(&[id.clone(), polite]);
    assert!(!rig.d.root().join("containers").join(&id).exists());
    let records = d.ctr_ok(&["containers", "ls", "-q"]);
    assert!(records.trim().is_empty(), "{records}");
}

/// Log files of container `id`: PATH, PATH.1, ...
fn log_files(root: &Path, id: &str) -> Vec<PathBuf> {
    let dir = root.join("containers").join(id);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&format!("{id}-json.log"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
#[ignore = "needs root"]
fn fifty_megabytes_detached_keeps_running_and_rotates() {
    let rig = Rig::new(2);
    let d = &rig.d;
    // 50 MiB of 64-byte lines, then a marker, then it stays up.
    let script = "yes 012345678901234567890123456789012345678901234567890123456789012 \
                  | head -n 819200; echo LAST-LINE; exec sleep 1000";
    let id = d
        .berthctl_ok(&[
            "run",
            "-d",
            "--name",
            "loud",
            "--network",
            "none",
            "--log-opt",
            "max-size=4m,max-file=3",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
        .trim()
        .to_string();
    let t0 = Instant::now();
    eventually("the last line in the log", 120, || {
        d.berthctl_ok(&["logs", "--tail", "5", "loud"])
            .contains("LAST-LINE")
    });
    let took = t0.elapsed();
    eprintln!("50 MiB logged in {took:?}");
    let tail = d.berthctl_ok(&["logs", "--tail", "5", "loud"]);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 5, "{tail}");
    assert_eq!(lines[4], "LAST-LINE");
    assert!(lines[0].starts_with("0123456789"), "{tail}");
    assert_eq!(rig.row("loud")["state"], "running");
    let files = log_files(&d.root(), &id);
    assert!(
        (2..=3).contains(&files.len()),
        "rotation keeps at most 3 files: {files:?}"
    );
    for f in &files {
        let size = std::fs::metadata(f).unwrap().len();
        assert!(size <= 4 << 20, "{f:?}: {size} bytes");
    }
    // json-file lines: {"log":...,"stream":...,"time":...}.
    let newest = std::fs::read_to_string(&files[0]).unwrap();
    let last: Value = serde_json::from_str(newest.lines().last().unwrap()).unwrap();
    assert_eq!(last["log"], "LAST-LINE\n");
    assert_eq!(last["stream"], "stdout");
    assert!(last["time"].as_str().unwrap().ends_with('Z'), "{last}");

    d.berthctl_ok(&["rm", "-f", "loud"]);
    assert!(log_files(&d.root(), &id).is_empty());
}

/// The host pid of container `name`'s main process.
fn pid_of(rig: &Rig, name: &str) -> i32 {
    rig.row(name)["pid"].as_i64().unwrap_or(0) as i32
}

#[test]
#[ignore = "needs root"]
fn restart_policies_survive_berthd_kill9() {
    let mut rig = Rig::new(3);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    rig.d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "-p",
        &publish,
        IMAGE,
        "sh",
        "-c",
        HTTPD,
    ]);
    http_get(&format!("127.0.0.1:{port}"));
    let pid = pid_of(&rig, "always");
    assert!(pid > 0);

    // Killing the process brings it back.
    berth_tests::process::sigkill(pid);
    eventually("always restarted", 30, || {
        let r = rig.row("always");
        r["state"] == "running" && r["pid"].as_i64().unwrap_or(0) as i32 != pid
    });
    assert_eq!(rig.row("always")["restart_count"], 1);
    http_get(&format!("127.0.0.1:{port}"));

    // on-failure:2 gives up after two restarts.
    rig.d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--network",
        "none",
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "sleep 0.2; exit 3",
    ]);
    eventually("flaky given up", 60, || {
        let r = rig.row("flaky");
        r["state"] == "exited" && r["restart_count"] == 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let r = rig.row("flaky");
    assert_eq!(
        (r["state"].as_str(), r["restart_count"].as_u64()),
        (Some("exited"), Some(2)),
        "{r}"
    );
    assert!(
        r["status"].as_str().unwrap().starts_with("Exited (3) "),
        "{r}"
    );

    // kill -9 of berthd: the container runs on with its address and port;
    // after the restart berthd knows it and still enforces its policy.
    let pid = pid_of(&rig, "always");
    let ip = rig.inspect("always")["NetworkSettings"]["IPAddress"].clone();
    assert!(ip.as_str().unwrap().starts_with("10.91.3."), "{ip}");
    rig.d.kill9();
    http_get(&format!("127.0.0.1:{port}"));
    rig.d.restart();
    let r = rig.row("always");
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(r["pid"].as_i64().unwrap() as i32, pid);
    assert_eq!(rig.inspect("always")["NetworkSettings"]["IPAddress"], ip);
    http_get(&format!("127.0.0.1:{port}"));
    berth_tests::process::sigkill(pid);
    eventually("always restarted after berthd's restart", 30, || {
        let r = rig.row("always");
        r["state"] == "running" && r["pid"].as_i64().unwrap_or(0) as i32 != pid
    });
    http_get(&format!("127.0.0.1:{port}"));

    // A stopped always-container stays stopped.
    rig.d.berthctl_ok(&["stop", "-t", "1", "always"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rig.row("always")["state"], "exited");
    let ids: Vec<String> = rig
        .ps()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    rig.d.berthctl_ok(&["rm", "-f", "always", "flaky"]);
    rig.assert_clean(&ids);
}

#[test]
#[ignore = "needs root"]
fn networks_and_bad_input() {
    let mut rig = Rig::new(4);
    let user_bridge = format!("bdu4-{}", std::process::id() % 100_000);
    rig.bridges.push(user_bridge.clone());
    let d = &rig.d;
    d.berthctl_ok(&[
        "network",
        "create",
        "--subnet",
        "10.91.40.0/24",
        "--bridge",
        &user_bridge,
        "appnet",
    ]);
    let ls = d.berthctl_ok(&["network", "ls"]);
    assert!(
        ls.contains("appnet") && ls.contains("10.91.40.0/24"),
        "{ls}"
    );
    // A subnet that overlaps: refused.
    let e = d.berthctl_fails(&["network", "create", "--subnet", "10.91.40.128/25", "other"]);
    assert!(e.contains("overlap") || e.contains("10.91.40"), "{e}");

    // Two containers on it reach each other by name.
    d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "appnet",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let out = d.berthctl(&[
        "run",
        "--rm",
        "--name",
        "cli",
        "--network",
        "appnet",
        IMAGE,
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "srv",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("10.91.40."), "{text}");
    assert!(rig.ps().iter().all(|r| r["name"] != "cli"), "--rm left it");

    // network connect: a running container on the default network gets
    // a second interface on appnet, and its peers there find it by name.
    d.berthctl_ok(&["run", "-d", "--name", "late", IMAGE, "sleep", "1000"]);
    let ip = d.berthctl_ok(&["network", "connect", "appnet", "late"]);
    assert!(ip.trim().starts_with("10.91.40."), "{ip}");
    let nets = &rig.inspect("late")["NetworkSettings"]["Networks"];
    assert!(
        nets.get("appnet").is_some() && nets.get("bridge").is_some(),
        "{nets}"
    );
    let ping = |target: &str| {
        d.berthctl(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            IMAGE,
            "ping",
            "-c",
            "1",
            "-W",
            "3",
            target,
        ])
        .status
        .code()
    };
    assert_eq!(ping("late"), Some(0));
    let e = d.berthctl_fails(&["network", "connect", "appnet", "late"]);
    assert!(e.contains("AlreadyExists"), "{e}");
    d.berthctl_ok(&["network", "disconnect", "appnet", "late"]);
    assert_ne!(ping("late"), Some(0), "late still on appnet");
    let late = rig.row("late")["id"].as_str().unwrap().to_string();
    d.berthctl_ok(&["rm", "-f", "late"]);

    // In use: refused; after rm, removed with its bridge.
    let e = d.berthctl_fails(&["network", "rm", "appnet"]);
    assert!(e.contains("in use"), "{e}");
    let srv = rig.row("srv")["id"].as_str().unwrap().to_string();
    d.berthctl_ok(&["rm", "-f", "srv"]);
    d.berthctl_ok(&["network", "rm", "appnet"]);
    assert!(!link_exists(&user_bridge));

    // Bad input: one line each, nothing left.
    let e = d.berthctl_fails(&["run", "--pull", "never", "docker.io/library/nope:1", "true"]);
    assert!(e.contains("nope") && e.contains("NotFound"), "{e}");
    let e = d.berthctl_fails(&["run", "-d", "-m", "12q", IMAGE, "true"]);
    assert!(e.contains("12q"), "{e}");
    d.berthctl_ok(&[
        "create",
        "--name",
        "taken",
        "--network",
        "none",
        IMAGE,
        "true",
    ]);
    let e = d.berthctl_fails(&["create", "--name", "taken", IMAGE, "true"]);
    assert!(e.contains("taken") && e.contains("AlreadyExists"), "{e}");
    d.berthctl_ok(&["rm", "taken"]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let e = d.berthctl_fails(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        IMAGE,
        "sleep",
        "100",
    ]);
    assert!(e.contains(&port.to_string()), "{e}");
    let left = rig.ps();
    assert!(left.iter().all(|r| r["state"] != "running"), "{left:?}");
    let ids: Vec<String> = left
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .chain([srv, late])
        .collect();
    for id in &ids {
        let _ = d.berthctl(&["rm", "-f", id]);
    }
    assert!(rig.ps().is_empty(), "{:?}", rig.ps());
    rig.assert_clean(&ids);
    drop(busy);
}

#[test]
#[ignore = "needs root"]
fn run_flags_short_names_and_removal_on_exit() {
    let rig = Rig::new(5);
    let d = &rig.d;
    // Short names are Docker Hub's: busybox is docker.io/library/busybox:latest.
    d.berthctl_ok(&["images", "tag", IMAGE, "docker.io/library/busybox:latest"]);

    // The foreground run: output, exit code, --rm; flags reach the process.
    let out = d
        .berthctl_cmd(&[
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            "-e",
            "A=1",
            "-e",
            "FROM_CLIENT",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "-m",
            "64m",
            "--hostname",
            "box",
            "busybox",
            "sh",
            "-c",
            "echo $A $FROM_CLIENT $(pwd) $(id -un) $(hostname); \
             cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null \
             || cat /sys/fs/cgroup/memory.max; echo oops >&2; exit 7",
        ])
        .env("FROM_CLIENT", "fc")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stdout}{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("1 fc /tmp nobody box"), "{stdout}");
    assert_eq!(lines.next(), Some("67108864"), "{stdout}");
    assert_eq!(stderr, "oops\n");
    assert!(rig.ps().is_empty(), "--rm left {:?}", rig.ps());

    // --entrypoint replaces the image's; a generated name; create + start.
    let id = d
        .berthctl_ok(&[
            "create",
            "--network",
            "none",
            "--entrypoint",
            "/bin/echo",
            "busybox",
            "from-entrypoint",
        ])
        .trim()
        .to_string();
    let row = rig.row(rig.ps()[0]["name"].as_str().unwrap());
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["state"], "created");
    assert_eq!(row["status"], "Created");
    let name = row["name"].as_str().unwrap().to_string();
    assert!(
        name.contains('_') && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "{name}"
    );
    d.berthctl_ok(&["start", &name]);
    assert_eq!(d.berthctl_ok(&["wait", &name]).trim(), "0");
    assert_eq!(d.berthctl_ok(&["logs", &name]), "from-entrypoint\n");
    d.berthctl_ok(&["rm", &id[..8]]);

    // Detached --rm: berthd removes it when it exits.
    d.berthctl_ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    eventually("brief removed on exit", 20, || rig.ps().is_empty());
    let records = d.ctr_ok(&["containers", "ls", "-q"]);
    assert!(records.trim().is_empty(), "{records}");
}

#[test]
#[ignore = "needs root"]
fn run_it_detach_keys_and_attach_in_tmux() {
    use berth_tests::tmux::Tmux;
    requires_root(&["tmux"]);
    let rig = Rig::new(6);
    let d = &rig.d;
    let run = |args: &str| {
        format!(
            "BERTH_ADDRESS={} {} {args}; echo EXIT=$?; sleep 30",
            d.address().display(),
            berth_tests::bin("berthctl").display()
        )
    };
    // run -it: a terminal of this size, TERM set; Ctrl-P Ctrl-Q detaches.
    let tmux = Tmux::start(
        d.dir(),
        "it",
        100,
        20,
        &run(&format!("run -it --name tt --network none {IMAGE} sh")),
    );
    tmux.wait_screen("/ #");
    tmux.keys("stty size; echo $TERM; echo mark-$((40+2))");
    let s = tmux.wait_screen("mark-42");
    assert!(s.contains("20 100") && s.contains("xterm"), "{s}");
    assert!(tmux
        .cmd(&["send-keys", "-t", "tty", "C-p", "C-q"])
        .status
        .success());
    tmux.wait_screen("EXIT=0");
    assert_eq!(rig.row("tt")["state"], "running", "detach stopped it");
    drop(tmux);

    // attach: the same shell; its exit code becomes attach's.
    let tmux = Tmux::start(d.dir(), "at", 120, 30, &run("attach tt"));
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys("echo back-$((40+3))");
    tmux.wait_screen("back-43");
    tmux.keys("exit 3");
    tmux.wait_screen("EXIT=3");
    let row = rig.row("tt");
    assert!(
        row["status"].as_str().unwrap().starts_with("Exited (3) "),
        "{row}"
    );

    // -i without a terminal: stdin through, its end closes the container's.
    let mut c = d
        .berthctl_cmd(&[
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "tr a-z A-Z",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"piped in\n").unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED IN\n");
    d.berthctl_ok(&["rm", "tt"]);
}

#[test]
#[ignore = "needs root"]
fn pause_top_stats_kill_and_prune() {
    let rig = Rig::new(7);
    let d = &rig.d;
    d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--network",
        "none",
        "-m",
        "32m",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let top = d.berthctl_ok(&["top", "busy"]);
    assert!(top.contains("PID") && top.contains("sleep 1000"), "{top}");
    let stats = d.json(&["stats", "--no-stream", "busy"]);
    assert_eq!(stats[0]["name"], "busy", "{stats}");
    assert_eq!(stats[0]["memory_limit"], 32 << 20, "{stats}");
    assert!(stats[0]["pids"].as_u64().unwrap() >= 1, "{stats}");
    d.berthctl_ok(&["pause", "busy"]);
    let row = rig.row("busy");
    assert_eq!(row["state"], "paused");
    assert!(
        row["status"].as_str().unwrap().ends_with("(Paused)"),
        "{row}"
    );
    d.berthctl_ok(&["unpause", "busy"]);
    assert_eq!(rig.row("busy")["state"], "running");
    d.berthctl_ok(&["kill", "-s", "TERM", "busy"]);
    // sleep as PID 1 ignores SIGTERM; SIGKILL ends it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rig.row("busy")["state"], "running");
    d.berthctl_ok(&["kill", "busy"]);
    assert_eq!(d.berthctl_ok(&["wait", "busy"]).trim(), "137");
    d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "stays",
        "--network",
        "none",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let pruned = d.berthctl_ok(&["prune"]);
    assert_eq!(pruned.lines().count(), 1, "{pruned}");
    let left: Vec<Value> = rig.ps();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["name"], "stays");
    d.berthctl_ok(&["rm", "-f", "stays"]);
}

/// The exec directories berthd still holds (none once execs ended).
fn exec_dirs(rig: &Rig) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(rig.d.state().join("engine").join("exec"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root"]
fn exec_through_berthd_codes_env_user_stdin_tty_and_all_output() {
    let rig = Rig::new(8);
    let d = &rig.d;
    d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "ex",
        "--network",
        "none",
        "-e",
        "KEEP=k",
        IMAGE,
        "sleep",
        "1000",
    ]);

    // Both streams apart and the exit code.
    let out = d.berthctl(&["exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // -e (KEY=VAL and KEY from berthctl's environment, over the
    // container's), -w, -u.
    let out = d
        .berthctl_cmd(&[
            "exec",
            "-e",
            "A=1",
            "-e",
            "FROM_CLIENT",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "ex",
            "sh",
            "-c",
            "echo $A $FROM_CLIENT $KEEP $(pwd) $(id -un)",
        ])
        .env("FROM_CLIENT", "fc")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 fc k /tmp nobody\n");

    // -i: stdin through; its end closes the process's.
    let mut c = d
        .berthctl_cmd(&["exec", "-i", "ex", "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"piped in\n").unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED IN\n");

    // Every byte of a large output, the last ones written just before the
    // exit included.
    let out = d.berthctl(&[
        "exec",
        "ex",
        "sh",
        "-c",
        "head -c 8000000 /dev/zero | tr '\\0' a; echo END",
    ]);
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 8_000_004);
    assert!(out.stdout.ends_with(b"aEND\n"));

    // -t: a terminal (TERM set), the output through it.
    let out = d.berthctl(&["exec", "-t", "ex", "sh", "-c", "tty; echo $TERM; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("xterm"),
        "{text:?}"
    );

    // Errors: an unknown command, a relative -w, a stopped container.
    let err = d.berthctl_fails(&["exec", "ex", "/no/such/binary"]);
    assert!(err.contains("exec in container"), "{err}");
    let err = d.berthctl_fails(&["exec", "-w", "tmp", "ex", "true"]);
    assert!(err.contains("absolute"), "{err}");
    eventually("exec dirs removed", 10, || exec_dirs(&rig).is_empty());
    d.berthctl_ok(&["stop", "-t", "0", "ex"]);
    let err = d.berthctl_fails(&["exec", "ex", "true"]);
    assert!(err.contains("not running"), "{err}");
    let err = d.berthctl_fails(&["exec", "nosuch", "true"]);
    assert!(err.contains("no such container"), "{err}");
    d.berthctl_ok(&["rm", "ex"]);
}

/// The busybox archive made over with `ExposedPorts` (80/tcp, 53/udp) in
/// its config, as `docker.io/berthtest/busybox:exposed`, in `dir`.
fn exposing_image(dir: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let tree = dir.join("layout");
    std::fs::create_dir_all(&tree).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(berth_tests::images::busybox())
        .arg("-C")
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success());
    let blob = |d: &str| {
        tree.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = hex::encode(Sha256::digest(bytes));
        std::fs::write(tree.join("blobs/sha256").join(&d), bytes).unwrap();
        (format!("sha256:{d}"), bytes.len())
    };
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(tree.join("index.json")).unwrap()).unwrap();
    let mdesc = index["manifests"][0].clone();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(mdesc["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    config["config"]["ExposedPorts"] = serde_json::json!({"80/tcp": {}, "53/udp": {}});
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let desc = &mut index["manifests"][0];
    desc["digest"] = md.into();
    desc["size"] = ms.into();
    desc["annotations"] = serde_json::json!({
        "io.containerd.image.name": "docker.io/berthtest/busybox:exposed",
        "org.opencontainers.image.ref.name": "exposed",
    });
    std::fs::write(tree.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let out = dir.join("exposed.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    out
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
#[ignore = "needs root"]
fn logs_since_t_unless_stopped_publish_all_port_format_and_system_prune() {
    let mut rig = Rig::new(9);

    // logs --since/--until (RFC 3339 and relative) and -t.
    rig.d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "lg",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; sleep 1000",
    ]);
    eventually("first line", 20, || {
        rig.d.berthctl_ok(&["logs", "lg"]) == "first\n"
    });
    let between = std::time::SystemTime::now();
    let mark = humantime::format_rfc3339_nanos(between).to_string();
    rig.d.berthctl_ok(&["exec", "lg", "touch", "/tmp/go"]);
    eventually("second line", 20, || {
        rig.d.berthctl_ok(&["logs", "lg"]) == "first\nsecond\n"
    });
    assert_eq!(
        rig.d.berthctl_ok(&["logs", "--since", &mark, "lg"]),
        "second\n"
    );
    assert_eq!(
        rig.d.berthctl_ok(&["logs", "--until", &mark, "lg"]),
        "first\n"
    );
    assert_eq!(
        rig.d.berthctl_ok(&["logs", "--since", "10m", "lg"]),
        "first\nsecond\n"
    );
    let stamped = rig.d.berthctl_ok(&["logs", "-t", "lg"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    let mut last = 0u128;
    for (l, text) in lines.iter().zip(["first", "second"]) {
        let (t, rest) = l.split_once(' ').unwrap();
        assert_eq!(rest, text, "{stamped}");
        let ns = humantime::parse_rfc3339(t)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert!(ns >= last && ns <= now_ns(), "{stamped}");
        last = ns;
    }
    let between_ns = between
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(last > between_ns, "second's time after the mark: {stamped}");
    rig.d.berthctl_ok(&["rm", "-f", "lg"]);

    // unless-stopped: a user's stop is remembered across a kill -9 of
    // berthd (always comes back, unless-stopped does not); one not stopped
    // runs on.
    for (name, policy) in [
        ("us", "unless-stopped"),
        ("al", "always"),
        ("up", "unless-stopped"),
    ] {
        rig.d.berthctl_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "--network",
            "none",
            IMAGE,
            "sleep",
            "1000",
        ]);
    }
    rig.d.berthctl_ok(&["stop", "-t", "0", "us", "al"]);
    let up_pid = pid_of(&rig, "up");
    rig.d.kill9();
    rig.d.restart();
    eventually("always started again", 30, || {
        rig.row("al")["state"] == "running"
    });
    assert_eq!(rig.row("us")["state"], "exited");
    assert_eq!(rig.row("up")["state"], "running");
    assert_eq!(pid_of(&rig, "up"), up_pid);
    let fmt = rig
        .d
        .berthctl_ok(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "us"]);
    assert_eq!(fmt, "unless-stopped\n");
    // a user's start forgets the stop
    rig.d.berthctl_ok(&["start", "us"]);
    let us_pid = pid_of(&rig, "us");
    berth_tests::process::sigkill(us_pid);
    eventually("unless-stopped restarted", 30, || {
        let r = rig.row("us");
        r["state"] == "running" && r["pid"].as_i64().unwrap_or(0) as i32 != us_pid
    });
    rig.d.berthctl_ok(&["rm", "-f", "us", "al", "up"]);

    // -P: every exposed port on a free host port; ps, inspect and port
    // show them; the page answers on the TCP one.
    let tmp = tempfile::tempdir().unwrap();
    let tar = exposing_image(tmp.path());
    rig.d
        .berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
    let exposed = "docker.io/berthtest/busybox:exposed";
    rig.d.berthctl_ok(&[
        "run", "-d", "--name", "pa", "-P", exposed, "sh", "-c", HTTPD,
    ]);
    let ports = rig.d.berthctl_ok(&["port", "pa"]);
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 2, "{ports}");
    assert!(lines[0].starts_with("53/udp -> 0.0.0.0:"), "{ports}");
    assert!(lines[1].starts_with("80/tcp -> 0.0.0.0:"), "{ports}");
    let host = rig.d.berthctl_ok(&["port", "pa", "80"]);
    let hport: u16 = host.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        hport > 0 && lines[1].ends_with(&format!(":{hport}")),
        "{ports}"
    );
    let gw = rig.inspect("pa")["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(gw.starts_with("10.91.9."), "{gw}");
    http_get(&format!("{gw}:{hport}"));
    let row = rig.row("pa");
    assert!(
        row["ports"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!("0.0.0.0:{hport}->80/tcp"))),
        "{row}"
    );
    let err = rig.d.berthctl_fails(&["port", "pa", "8080"]);
    assert!(err.contains("no public port 8080/tcp"), "{err}");

    // inspect --format: field paths, json, index.
    let f = rig.d.berthctl_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.Name}} {{json .State.Running}} {{json .HostConfig.PublishAllPorts}}",
        "pa",
    ]);
    assert_eq!(f, "running /pa true true\n");
    let f = rig.d.berthctl_ok(&[
        "inspect",
        "-f",
        "{{index .NetworkSettings.Ports \"80/tcp\" | json}}",
        "pa",
    ]);
    assert!(f.contains(&format!("\"HostPort\":\"{hport}\"")), "{f}");
    let err = rig.d.berthctl_fails(&["inspect", "-f", "{{.State", "pa"]);
    assert!(err.contains("unclosed"), "{err}");

    // system prune: stopped containers, unused networks, unreferenced blobs.
    rig.d.berthctl_ok(&["stop", "-t", "1", "pa"]);
    let pa_id = rig.row("pa")["id"].as_str().unwrap().to_string();
    rig.d
        .berthctl_ok(&["network", "create", "--subnet", "10.91.209.0/24", "spnet"]);
    let mut put = rig
        .d
        .berthctl_cmd(&["content", "put", "dangling-blob"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let blob = format!("unreferenced {}", now_ns());
    put.stdin
        .take()
        .unwrap()
        .write_all(blob.as_bytes())
        .unwrap();
    assert!(put.wait_with_output().unwrap().status.success());
    let digest = {
        use sha2::{Digest, Sha256};
        format!("sha256:{}", hex::encode(Sha256::digest(blob.as_bytes())))
    };
    rig.d.berthctl_ok(&[
        "run",
        "-d",
        "--name",
        "keeps",
        "--network",
        "none",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let p = rig.d.json(&["system", "prune", "-f"]);
    assert_eq!(p["containers"], serde_json::json!([pa_id]), "{p}");
    assert_eq!(p["networks"], serde_json::json!(["spnet"]), "{p}");
    // The blob is gone: by this collection, or by one berthd ran on its
    // own since (a removal schedules one), which the counts then miss.
    let blobs = rig.d.berthctl_ok(&["content", "ls", "-q"]);
    assert!(!blobs.contains(&digest), "{blobs}");
    let (n, bytes) = (
        p["blobs"].as_u64().unwrap(),
        p["reclaimed"].as_u64().unwrap(),
    );
    assert!((n == 0) == (bytes == 0), "{p}");
    let left: Vec<Value> = rig.ps();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["name"], "keeps");
    let nets = rig.d.berthctl_ok(&["network", "ls"]);
    assert!(!nets.contains("spnet"), "{nets}");
    let again = rig.d.berthctl_ok(&["system", "prune", "-f"]);
    assert!(again.contains("Total reclaimed space: 0 B"), "{again}");
    rig.d.berthctl_ok(&["rm", "-f", "keeps"]);
}

#[test]
#[ignore = "needs root"]
fn ulimit_device_read_only_and_pids_limit_reach_the_process() {
    let rig = Rig::new(10);
    let out = rig.d.berthctl(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:2048",
        "--device",
        "/dev/null:/dev/xnull",
        "--read-only",
        "--pids-limit",
        "20",
        IMAGE,
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; test -c /dev/xnull && echo dev-ok; \
         echo x > /dev/xnull && echo dev-rw; touch /rofile 2>/dev/null || echo ro-ok; \
         cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
    ]);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{o}{e}");
    assert_eq!(o, "1024\n2048\ndev-ok\ndev-rw\nro-ok\n20\n", "{e}");
    // Without the flags: the defaults (no device, a writable rootfs).
    let out = rig.d.berthctl(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "test -e /dev/xnull || echo no-dev; touch /rwfile && echo rw-ok",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no-dev\nrw-ok\n");
    // A bad --ulimit is refused before anything is made.
    let err = rig
        .d
        .berthctl_fails(&["run", "--rm", "--ulimit", "nofile=x", IMAGE, "true"]);
    assert!(err.contains("ulimit"), "{err}");
    assert!(rig.ps().is_empty(), "{:?}", rig.ps());
}
