//! Ctrl-C handling: the first SIGINT/SIGTERM only sets a flag, so the run
//! stops after the current step and still cleans up (daemons stopped,
//! mounts removed, temp dirs deleted).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{signal, SigHandler, Signal};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Install the handlers for SIGINT and SIGTERM.
pub(crate) fn install() {
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; no other code in this process installs handlers.
        if let Err(e) = unsafe { signal(sig, SigHandler::Handler(on_signal)) } {
            eprintln!("berth-bench: cannot handle {sig}: {e}");
        }
    }
}

/// True once a stop was requested.
pub(crate) fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
