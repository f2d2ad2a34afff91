//! `berthctl run -t` on a pty in tmux: size, resize, exit status.

use super::support::*;

#[test]
#[ignore = "needs root"]
fn berthctl_run_tty_in_tmux() {
    requires_root(&[TOOLS, &["tmux"]].concat());
    let d = Berthd::start();
    import_busybox(&d);
    let session = format!("berthctl-tty-{}", std::process::id());
    let cmd = format!(
        "BERTH_ADDRESS={} BERTH_FIFO_DIR={} {} run --rm -t {IMAGE} tty1 sh; echo EXIT=$?; sleep 30",
        d.address().display(),
        d.berthctl_fifo_dir().display(),
        berth_tests::bin("berthctl").display()
    );
    let st = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "100",
            "-y",
            "20",
            &cmd,
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let _guard = Tmux(session.clone());
    wait_screen(&session, "/ #");
    let keys = |k: &str| {
        Command::new("tmux")
            .args(["send-keys", "-t", &session, k, "Enter"])
            .status()
            .unwrap();
    };
    keys("stty size; tty; echo mark-$((40+2))");
    let s = wait_screen(&session, "mark-42");
    assert!(s.contains("20 100") && s.contains("/dev/pts/"), "{s}");
    Command::new("tmux")
        .args(["resize-window", "-t", &session, "-x", "120", "-y", "30"])
        .status()
        .unwrap();
    // The new size reaches the pty through berthctl's SIGWINCH handler
    // and a ResizePty call: wait for it rather than for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in 43.. {
        keys(&format!("stty size; echo mark-$((40+{}))", n - 40));
        let s = wait_screen(&session, &format!("mark-{n}"));
        if s.contains("30 120") || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    keys("stty size; exit 3");
    let s = wait_screen(&session, "EXIT=3");
    assert!(s.contains("30 120"), "resize reached the pty: {s}");
    assert_eq!(d.berthctl_ok(&["containers", "ls", "-q"]), "");
}
