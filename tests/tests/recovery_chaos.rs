//! Issue 5, bounded chaos: create/start/kill/delete cycles through `ctr`
//! across worker threads while berthd is killed -9 at random moments and
//! restarted right away. At the end every container is complete (record +
//! snapshot, task consistent with its shim and bundle) or absent; after
//! cleaning up nothing is left (shims, mounts, bundles, runtime state,
//! cgroups); every exit status reported was the right one.
//!
//! Scale with `BERTH_CHAOS_CYCLES` (default 200), `BERTH_CHAOS_WORKERS`
//! (8), `BERTH_CHAOS_KILLS` (10); `BERTH_CHAOS_SEED` replays a run.

mod recovery_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_api::task_types::Status as TaskStatus;
use berth_tests::requires_root;
use recovery_support::{alive, Rig, IMAGE, TOOLS};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*, enough for random delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `ctr` for one namespace, usable from any thread.
#[derive(Clone)]
struct Ctr {
    address: PathBuf,
    ns: String,
    fifo: PathBuf,
}

impl Ctr {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.address)
            .args(["--timeout", "30s", "-n", &self.ns])
            .args(recovery_support::with_fifo_dir(args, &self.fifo))
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// Waits (up to 30 s) until berthd answers.
    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.run(&["version"]).status.success() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Retries `args` until it succeeds or its error says `gone` (the
    /// thing is already absent); panics after 60 s.
    fn until(&self, args: &[&str], gone: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.run(args);
            let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
            if out.status.success() || gone.iter().any(|g| err.contains(g)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ctr {} kept failing: {err}",
                args.join(" ")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `id -> (pid, status)` from `ctr tasks ls`, None while berthd is away.
    fn tasks(&self) -> Option<std::collections::BTreeMap<String, (u32, String)>> {
        let out = self.run(&["tasks", "ls"]);
        if !out.status.success() {
            return None;
        }
        Some(berth_tests::cli::ctr_tasks(&String::from_utf8_lossy(
            &out.stdout,
        )))
    }

    fn list(&self, args: &[&str]) -> Option<BTreeSet<String>> {
        let out = self.run(args);
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
    }

    /// The exit status of a stopped task, through Tasks.Get (`ctr` does
    /// not print it); None if berthd cannot say right now.
    fn exit_status(&self, id: &str) -> Option<u32> {
        let mut api = recovery_support::Api::connect(&self.address, &self.ns).ok()?;
        match api.try_get(id).ok()? {
            (s, st) if s == TaskStatus::Stopped as i32 => Some(st),
            _ => None,
        }
    }
}

/// What one cycle saw.
#[derive(Default)]
struct Tally {
    completed: AtomicUsize,
    interrupted: AtomicUsize,
    statuses_checked: AtomicUsize,
    wrong: Mutex<Vec<String>>,
    leftovers: Mutex<Vec<String>>,
}

/// One cycle: run, kill (or let it exit), read the status, delete. An
/// interrupted `run` leaves its id for the end-of-run consistency check.
fn cycle(ctr: &Ctr, id: &str, n: u64, t: &Tally) {
    let code = n % 3;
    let (cmd, expect): (Vec<&str>, u32) = if code == 0 {
        (vec!["sleep", "100000"], 137)
    } else {
        (
            vec![
                "sh",
                "-c",
                if code == 1 {
                    "exit 3"
                } else {
                    "sleep 0.3; exit 5"
                },
            ],
            if code == 1 { 3 } else { 5 },
        )
    };
    let mut args = vec!["run", "-d", IMAGE, id];
    args.extend(cmd);
    ctr.wait_up();
    let out = ctr.run(&args);
    if !out.status.success() {
        let n = t.interrupted.fetch_add(1, Ordering::Relaxed);
        if n < 5 {
            eprintln!(
                "chaos: {id}: run cut: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        t.leftovers.lock().unwrap().push(id.to_string());
        return;
    }
    if expect == 137 {
        ctr.until(
            &["tasks", "kill", "-s", "SIGKILL", id],
            &["not found", "process already finished"],
        );
    }
    // Wait until STOPPED, then read the status through `tasks delete`.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(ts) = ctr.tasks() {
            match ts.get(id) {
                Some((_, s)) if s == "STOPPED" => break,
                None => break,
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "{id} never stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(st) = ctr.exit_status(id) {
        t.statuses_checked.fetch_add(1, Ordering::Relaxed);
        if st != expect {
            t.wrong
                .lock()
                .unwrap()
                .push(format!("{id}: {st}, want {expect}"));
        }
    }
    ctr.until(&["tasks", "delete", id], &["not found"]);
    ctr.until(&["containers", "delete", id], &["not found"]);
    t.completed.fetch_add(1, Ordering::Relaxed);
}

/// Shim pids seen in bundles, collected while the run goes on.
fn scan_shims(state: &Path, ns: &str, seen: &Mutex<BTreeSet<i32>>) {
    for e in std::fs::read_dir(state.join(ns))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some(pid) = std::fs::read_to_string(e.path().join("shim.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            seen.lock().unwrap().insert(pid);
        }
    }
}

/// Sets its flag when dropped, also while unwinding.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn is_our_shim(pid: i32) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("berth-shim"))
}

#[test]
#[ignore = "needs root"]
fn chaos_kill9_during_lifecycles() {
    requires_root(TOOLS);
    let cycles = env("BERTH_CHAOS_CYCLES", 200);
    let workers = env("BERTH_CHAOS_WORKERS", 8).max(1);
    let kills = env("BERTH_CHAOS_KILLS", 10);
    let seed = env(
        "BERTH_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    eprintln!("chaos: {cycles} cycles, {workers} workers, {kills} kills, BERTH_CHAOS_SEED={seed}");
    let started = Instant::now();
    let mut rig = Rig::new("recchaos");
    let ctr = Ctr {
        address: rig.d.address(),
        ns: rig.ns.clone(),
        fifo: rig.d.dir().join("fifo"),
    };
    let state = rig.d.state();
    let tally = Tally::default();
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let shims = Mutex::new(BTreeSet::new());
    let mut rng = Rng(seed);

    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for w in 0..workers {
            let (ctr, tally, next) = (ctr.clone(), &tally, &next);
            let done = &done;
            handles.push(s.spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as u64;
                if n >= cycles || done.load(Ordering::Relaxed) {
                    return;
                }
                cycle(&ctr, &format!("w{w}-{n}"), n, tally);
            }));
        }
        let (state, ns, shims, done) = (&state, &ctr.ns, &shims, &done);
        s.spawn(move || {
            while !done.load(Ordering::Relaxed) {
                scan_shims(state, ns, shims);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        // Whatever happens below (a restart that fails panics), the other
        // threads stop: the scope can only end once they did.
        let _stop = Stop(done);
        // The killer: spread the kills over the expected run time.
        let mut killed = 0;
        while killed < kills && next.load(Ordering::Relaxed) < cycles as usize {
            std::thread::sleep(Duration::from_millis(300 + rng.below(2500)));
            rig.d.kill9();
            killed += 1;
            rig.d.restart();
        }
        for h in handles {
            if let Err(p) = h.join() {
                done.store(true, Ordering::Relaxed);
                std::panic::resume_unwind(p);
            }
        }
        done.store(true, Ordering::Relaxed);
        eprintln!("chaos: {killed} kills done");
    });
    scan_shims(&state, &ctr.ns, &shims);

    let wrong = tally.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "wrong exit statuses: {wrong:?}");

    // Consistency of what interrupted runs left, twice: now, and after
    // one more kill -9 and restart (recovery must agree with itself).
    let check = |when: &str| {
        let containers = ctr
            .list(&["containers", "ls", "-q"])
            .expect("containers ls");
        let snapshots = ctr.list(&["snapshots", "ls"]).expect("snapshots ls");
        let tasks = ctr.tasks().expect("tasks ls");
        for c in &containers {
            assert!(
                snapshots.contains(c),
                "{when}: container {c} without its snapshot"
            );
        }
        for (id, (_, status)) in &tasks {
            assert!(
                containers.contains(id),
                "{when}: task {id} without a container"
            );
            let b = state.join(&ctr.ns).join(id);
            if status != "STOPPED" {
                let pid: i32 = std::fs::read_to_string(b.join("shim.pid"))
                    .unwrap_or_else(|_| panic!("{when}: task {id} without shim.pid"))
                    .trim()
                    .parse()
                    .unwrap();
                assert!(
                    is_our_shim(pid),
                    "{when}: task {id} ({status}) without a live shim"
                );
            }
        }
        for e in std::fs::read_dir(state.join(&ctr.ns))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().into_owned();
            assert!(
                tasks.contains_key(&id),
                "{when}: bundle {id} without a task"
            );
        }
        (containers, tasks)
    };
    let before = check("after the run");
    rig.d.kill9();
    rig.d.restart();
    let after = check("after a final restart");
    assert_eq!(before.0, after.0, "containers changed across a restart");
    assert_eq!(
        before.1.keys().collect::<Vec<_>>(),
        after.1.keys().collect::<Vec<_>>(),
        "tasks changed across a restart"
    );

    // Clean up what interrupted runs left, through ctr.
    for id in after.0 {
        ctr.until(
            &["tasks", "kill", "-s", "SIGKILL", &id],
            &["not found", "finished", "not running"],
        );
        ctr.until(&["tasks", "delete", "-f", &id], &["not found"]);
        ctr.until(&["containers", "delete", &id], &["not found"]);
    }
    assert!(ctr.tasks().expect("tasks ls").is_empty());
    // A shim exits on its own after its task's Delete returned (as
    // containerd's): give the last ones a moment before calling one leaked.
    let leaked = || -> Vec<i32> {
        shims
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|p| is_our_shim(*p))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !leaked().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let leaked = leaked();
    assert!(leaked.is_empty(), "leaked shims: {leaked:?}");
    let bundles: Vec<_> = std::fs::read_dir(state.join(&ctr.ns))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(bundles.is_empty(), "bundles left: {bundles:?}");
    let runc: Vec<_> = std::fs::read_dir(rig.runc_root())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(runc.is_empty(), "runc state left: {runc:?}");
    assert!(
        rig.task_mounts().is_empty(),
        "mounts left: {:?}",
        rig.task_mounts()
    );
    assert!(
        rig.leftover_cgroups().is_empty(),
        "cgroups left: {:?}",
        rig.leftover_cgroups()
    );
    // A `ctr run` cut before its container record leaves its snapshot
    // under the client's lease (as with containerd, until the lease
    // expires): drop the leases, then GC must take those snapshots.
    for lease in ctr.list(&["leases", "ls", "-q"]).unwrap_or_default() {
        ctr.until(&["leases", "rm", &lease], &["not found"]);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active: Vec<String> = ctr
            .list(&["snapshots", "ls"])
            .unwrap()
            .into_iter()
            .filter(|k| k.starts_with('w'))
            .collect();
        if active.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "container snapshots left: {active:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "chaos: {} completed, {} interrupted, {} statuses checked, {} shims seen, {:?}",
        tally.completed.load(Ordering::Relaxed),
        tally.interrupted.load(Ordering::Relaxed),
        tally.statuses_checked.load(Ordering::Relaxed),
        shims.lock().unwrap().len(),
        started.elapsed()
    );
}
