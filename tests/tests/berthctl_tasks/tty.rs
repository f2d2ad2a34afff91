//! `berthctl containers run -t` on a pty in tmux: size, resize, exit status.

use berth_tests::tmux::Tmux;

use super::support::*;

#[test]
#[ignore = "needs root"]
fn berthctl_run_tty_in_tmux() {
    requires_root(&[TOOLS, &["tmux"]].concat());
    let d = Berthd::start();
    import_busybox(&d);
    let tty1 = unique("tty1");
    let cmd = format!(
        "BERTH_ADDRESS={} BERTH_FIFO_DIR={} {} containers run --rm -t {IMAGE} {tty1} sh; echo EXIT=$?; sleep 30",
        d.address().display(),
        d.berthctl_fifo_dir().display(),
        berth_tests::bin("berthctl").display()
    );
    let tmux = Tmux::start(d.dir(), "run", 100, 20, &cmd);
    tmux.wait_screen("/ #");
    tmux.keys("stty size; tty; echo mark-$((40+2))");
    let s = tmux.wait_screen("mark-42");
    assert!(s.contains("20 100") && s.contains("/dev/pts/"), "{s}");
    tmux.resize(120, 30);
    // The new size reaches the pty through berthctl's SIGWINCH handler
    // and a ResizePty call: wait for it rather than for a fixed time.
    tmux.wait_size("30 120", &mut 2);
    tmux.keys("stty size; exit 3");
    let s = tmux.wait_screen("EXIT=3");
    assert!(s.contains("30 120"), "resize reached the pty: {s}");
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
}
