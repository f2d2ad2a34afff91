//! The init process's last known state, so that Tasks.List answers from
//! berthd's table instead of waking every shim (with hundreds of tasks on
//! a few cores that is most of a List's time, and of a restart's).
//!
//! It is kept current from three sources: the shim's answers (Create,
//! State, ListProcesses at recovery), the results of calls that change the
//! state (Start, Pause, Resume, Wait), and the shim's own events, which the
//! pump applies in order before publishing them. So a client that learned
//! of a change through berthd (a reply, an event) never lists the state
//! before it. A stopped process stays stopped.

use std::sync::Mutex;

use berth_api::shim::v1 as sp;
use berth_api::task_types::Status;

use super::Exit;

/// A change in the init process's state.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    /// started
    Started,
    /// frozen
    Paused,
    /// thawed
    Resumed,
    /// exited
    Exited(Exit),
}

/// See the module docs.
pub(super) struct Known(Mutex<sp::StateResponse>);

impl Known {
    /// Starts from what the shim reported.
    pub(super) fn new(state: sp::StateResponse) -> Self {
        Self(Mutex::new(state))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, sp::StateResponse> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state as last known.
    pub(super) fn get(&self) -> sp::StateResponse {
        self.lock().clone()
    }

    /// A fresh answer from the shim replaces what was known.
    pub(super) fn remember(&self, state: sp::StateResponse) {
        *self.lock() = state;
    }

    /// Applies a change; nothing changes a stopped process.
    pub(super) fn note(&self, change: Change) {
        let mut s = self.lock();
        if s.status == Status::Stopped as i32 {
            return;
        }
        s.status = match change {
            Change::Started | Change::Resumed => Status::Running,
            Change::Paused => Status::Paused,
            Change::Exited(exit) => {
                s.exit_status = exit.status;
                s.exited_at = Some(crate::services::convert::timestamp(exit.at));
                Status::Stopped
            }
        } as i32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_in_order_and_stopped_is_final() {
        let k = Known::new(sp::StateResponse {
            pid: 7,
            status: Status::Created as i32,
            ..Default::default()
        });
        k.note(Change::Started);
        assert_eq!(k.get().status, Status::Running as i32);
        k.note(Change::Paused);
        assert_eq!(k.get().status, Status::Paused as i32);
        k.note(Change::Resumed);
        let at = std::time::SystemTime::now();
        k.note(Change::Exited(Exit { status: 3, at }));
        let s = k.get();
        assert_eq!(
            (s.status, s.exit_status, s.pid),
            (Status::Stopped as i32, 3, 7)
        );
        // A late start event (published before the exit) changes nothing.
        k.note(Change::Started);
        assert_eq!(k.get().status, Status::Stopped as i32);
    }
}
