//! Root end-to-end tests with Debian's real CNI plugins (/usr/lib/cni):
//! real network namespaces, bridges, veths, host-local leases and the
//! plugins' iptables rules. Without root they skip, loudly.
//!
//! Each test owns one [`Lab`] (and its lock file, so two runs of these
//! tests on one host take turns): bridge `berth-ntN`, subnet `10.89.N.0/24`
//! (10.89.0.0/16 is this module's; other suites use other parts of
//! 10.88.0.0/13), its container IDs, and a temp dir holding the conf dir,
//! the cache, the netns dir and host-local's leases. Dropping the lab
//! (also on a failed assertion) kills the processes it started, DELs what
//! is cached, removes its namespaces and bridge, and deletes the iptables
//! rules and per-container chains that mention its IDs or its subnet;
//! the plugins' shared chains (CNI-HOSTPORT-*, CNI-FORWARD, CNI-ADMIN) go
//! with the last test process of the host that held them, unless they
//! existed before (`berth_tests::cni_host::SharedChains`).

mod bridge;
mod errors;
mod iptables;
mod netns;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{netns as ns, NetNs, NetworkOptions, Networks};

const BUSYBOX: &str = "/bin/busybox";

/// Skips the test (loudly) unless we are root; fails it when root but the
/// plugins or busybox are missing (scripts/install-deps provides them).
macro_rules! require_root {
    ($name:expr) => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "!!! SKIP {}: needs root (netns, bridges, iptables) !!!",
                $name
            );
            return;
        }
        for needed in [
            "/usr/lib/cni/bridge",
            "/usr/lib/cni/host-local",
            "/usr/lib/cni/portmap",
            "/bin/busybox",
        ] {
            assert!(
                std::path::Path::new(needed).exists(),
                "{needed} missing: run scripts/install-deps"
            );
        }
    };
}
pub(super) use require_root;

/// One test's private network world; see the module doc.
pub(super) struct Lab {
    /// Held for the lab's life: another run of these tests (another
    /// worktree's `make test`) waits instead of sharing the bridge.
    _lock: nix::fcntl::Flock<std::fs::File>,
    pub(super) index: u8,
    pub(super) dir: tempfile::TempDir,
    pub(super) networks: Networks,
    ids: Mutex<Vec<String>>,
    namespaces: Mutex<Vec<PathBuf>>,
    children: Mutex<Vec<Child>>,
    /// Held while the lab's plugins may make their shared chains; dropped
    /// last: the last test process of the host deletes those it made.
    _chains: berth_tests::cni_host::SharedChains,
}

impl Lab {
    pub(super) fn new(index: u8) -> Lab {
        let lock_path = format!("/run/lock/berth-network-lab-{index}.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap();
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .unwrap();
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-nt{index}-"))
            .tempdir()
            .unwrap();
        for sub in ["conf", "cache", "netns", "ipam", "www"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let lab = Lab {
            _lock: lock,
            index,
            networks: Networks::new(NetworkOptions::new(
                dir.path().join("conf"),
                dir.path().join("cache"),
            )),
            dir,
            ids: Mutex::new(Vec::new()),
            namespaces: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
            _chains: berth_tests::cni_host::SharedChains::guard(),
        };
        // a crashed earlier run may have left our bridge or rules behind
        lab.sweep();
        lab
    }

    pub(super) fn bridge(&self) -> String {
        format!("berth-nt{}", self.index)
    }

    pub(super) fn network_name(&self) -> String {
        format!("berth-nt{}", self.index)
    }

    pub(super) fn subnet(&self) -> String {
        format!("10.89.{}.0/24", self.index)
    }

    pub(super) fn gateway(&self) -> String {
        format!("10.89.{}.1", self.index)
    }

    pub(super) fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    pub(super) fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// The bridge plugin's config: host-local leases in the lab's dir.
    pub(super) fn bridge_plugin(&self) -> Value {
        json!({
            "type": "bridge",
            "bridge": self.bridge(),
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet(), "gateway": self.gateway()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir().display().to_string(),
            },
        })
    }

    /// Writes `10-lab.conflist` with these plugins, at cniVersion 1.0.0.
    pub(super) fn conflist(&self, plugins: Vec<Value>) {
        self.conflist_at("1.0.0", plugins);
    }

    /// Writes `10-lab.conflist` with these plugins at `version`.
    pub(super) fn conflist_at(&self, version: &str, plugins: Vec<Value>) {
        let doc = json!({"cniVersion": version, "name": self.network_name(), "plugins": plugins});
        std::fs::write(self.conf_dir().join("10-lab.conflist"), doc.to_string()).unwrap();
    }

    /// bridge + host-local + portmap + loopback.
    pub(super) fn standard_conflist(&self) {
        self.conflist(vec![
            self.bridge_plugin(),
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            json!({"type": "loopback"}),
        ]);
    }

    /// A container ID unique to this lab and process, remembered for cleanup.
    pub(super) fn id(&self, short: &str) -> String {
        let id = format!("bnt{}-{short}-{}", self.index, std::process::id());
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// A new netns under the lab's netns dir, remembered for cleanup.
    pub(super) fn netns(&self, name: &str) -> NetNs {
        let dir = self.dir.path().join("netns");
        self.namespaces.lock().unwrap().push(dir.join(name));
        ns::create(&dir, name).unwrap()
    }

    /// Starts `busybox ARGS` inside `ns`; killed when the lab is dropped.
    pub(super) fn spawn_in(&self, ns: &NetNs, args: &[&str]) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let child = ns
            .run(move || {
                Command::new(BUSYBOX)
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .unwrap()
            .unwrap();
        self.children.lock().unwrap().push(child);
    }

    /// Runs `busybox ARGS` inside `ns` to completion: (success, output).
    pub(super) fn busybox_in(&self, ns: &NetNs, args: &[&str]) -> (bool, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = ns
            .run(move || Command::new(BUSYBOX).args(&args).output())
            .unwrap()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Serves `www/index.html` (holding `body`) with busybox httpd on port
    /// 80 inside `ns`.
    pub(super) fn serve_in(&self, ns: &NetNs, body: &str) {
        let www = self.dir.path().join("www");
        std::fs::write(www.join("index.html"), body).unwrap();
        let www = www.display().to_string();
        self.spawn_in(ns, &["httpd", "-f", "-p", "80", "-h", &www]);
    }

    /// iptables rules (nat and filter) that mention this lab's IDs or subnet.
    pub(super) fn leftover_rules(&self) -> Vec<String> {
        iptables::mentioning(&self.needles())
    }

    /// Interfaces enslaved to the lab's bridge (host ends of veths).
    pub(super) fn bridge_ports(&self) -> Vec<String> {
        let dir = Path::new("/sys/class/net").join(self.bridge()).join("brif");
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Lease files host-local holds for the lab's network.
    pub(super) fn leases(&self) -> Vec<String> {
        let dir = self.ipam_dir().join(self.network_name());
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("10.89."))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn needles(&self) -> Vec<String> {
        let mut needles = self.ids.lock().unwrap().clone();
        needles.push(format!("10.89.{}.", self.index));
        needles.push(format!("\"{}\"", self.network_name()));
        needles
    }

    /// Removes the bridge and the rules of this lab (also those of an
    /// earlier, crashed run: they mention the same subnet and name).
    fn sweep(&self) {
        iptables::remove_mentioning(&self.needles());
        if let Err(e) = super::bridge::delete_bridge(&self.bridge()) {
            eprintln!("lab {}: delete bridge: {e}", self.index);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut child in self.children.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // DEL whatever is still cached, through the module itself, on a
        // thread of its own (Drop may run inside the test's runtime)
        let networks = self.networks.clone();
        let ids = self.ids.lock().unwrap().clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for id in ids {
                if let Err(e) = rt.block_on(networks.detach_container(&id, None)) {
                    eprintln!("lab cleanup: detach {id}: {e}");
                }
            }
        })
        .join();
        for path in self.namespaces.lock().unwrap().drain(..) {
            if let Err(e) = ns::remove(&path) {
                eprintln!("lab cleanup: {e}");
            }
        }
        if let Err(e) = ns::release_dir(&self.dir.path().join("netns")) {
            eprintln!("lab cleanup: {e}");
        }
        self.sweep();
    }
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub(super) fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP/1.0 GET of `/` from the calling thread's network namespace;
/// the whole response, or the error.
pub(super) fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A port nothing on the host's loopback listens on right now.
pub(super) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
