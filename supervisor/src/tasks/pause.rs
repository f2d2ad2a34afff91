//! Pause and Resume: freeze and thaw every process of a task.

use super::error::{not_running, Error};
use super::process::{Change, Status};
use super::table::Tasks;

impl Tasks {
    /// Freezes task `id`.
    pub async fn pause(&self, ns: &str, id: &str) -> Result<(), Error> {
        let t = self.get(ns, id)?;
        t.allow(Status::can_freeze, || not_running(id))?;
        t.call(|mut c| async move { c.pause(()).await }).await?;
        t.note(Change::Paused);
        Ok(())
    }

    /// Thaws task `id`.
    pub async fn resume(&self, ns: &str, id: &str) -> Result<(), Error> {
        let t = self.get(ns, id)?;
        t.allow(Status::can_freeze, || not_running(id))?;
        t.call(|mut c| async move { c.resume(()).await }).await?;
        t.note(Change::Resumed);
        Ok(())
    }
}
