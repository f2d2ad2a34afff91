//! A private tmux server (its socket under the test's dir, killed by that
//! socket on drop) giving a command a real terminal of a known size.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::cli::text;

/// One tmux server with one session, `tty`.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts a server (socket `DIR/tmux-NAME.sock`) running `cmd` in a
    /// `cols` x `rows` window.
    pub fn start(dir: &Path, name: &str, cols: u16, rows: u16, cmd: &str) -> Self {
        let tmux = Tmux {
            socket: dir.join(format!("tmux-{name}.sock")),
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let out = tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            "tty",
            "-x",
            &cols,
            "-y",
            &rows,
            cmd,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        tmux
    }

    /// Runs `tmux -S SOCKET ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux")
    }

    /// What the window shows now.
    pub fn screen(&self) -> String {
        text(&self.cmd(&["capture-pane", "-p", "-t", "tty"]).stdout)
    }

    /// Waits up to 15 s for `want` on the screen; the screen then.
    pub fn wait_screen(&self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.screen();
            if s.contains(want) {
                return s;
            }
            assert!(Instant::now() < deadline, "{want:?} never appeared:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `line` and Enter.
    pub fn keys(&self, line: &str) {
        assert!(self
            .cmd(&["send-keys", "-t", "tty", line, "Enter"])
            .status
            .success());
    }

    /// Resizes the window to `cols` x `rows`.
    pub fn resize(&self, cols: u16, rows: u16) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let out = self.cmd(&["resize-window", "-t", "tty", "-x", &cols, "-y", &rows]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    /// Types `line` plus a marker (`mark-N`, typed as 40+N so the echoed
    /// command line does not match) and waits for the marker's output.
    pub fn run_marked(&self, line: &str, n: &mut u32) -> String {
        *n += 1;
        self.keys(&format!("{line}; echo mark-$((40+{n}))"));
        self.wait_screen(&format!("mark-{}", 40 + *n))
    }

    /// Runs `stty size` until it prints `want` ("ROWS COLS"): a client
    /// sets the size (ResizePty) just after the process starts, and again
    /// on SIGWINCH, so it shows after a short while.
    pub fn wait_size(&self, want: &str, n: &mut u32) {
        crate::process::settle(&format!("pty size {want}"), Duration::from_secs(15), || {
            let s = self.run_marked("stty size", n);
            s.lines().any(|l| l.trim() == want)
        });
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}
