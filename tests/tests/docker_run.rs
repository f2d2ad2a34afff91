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
