//! `run`: create a container, start its task, and with `rm` remove the
//! container (snapshot, lease, fifos) once the task is gone.

use super::attach::{IoOptions, Outcome};
use super::create::CreateOptions;
use crate::client::Client;
use crate::error::Result;

/// Creates and starts a container; with `rm` (attached only) removes it
/// after it exits, also when attaching failed.
pub async fn run(client: &Client, o: &CreateOptions, io: &IoOptions, rm: bool) -> Result<Outcome> {
    let id = o.spec.id.as_str();
    super::create::create(client, o).await?;
    let outcome = super::tasks::start(client, id, io).await;
    if rm {
        let cleanup = super::containers::remove(client, id, false).await;
        let outcome = outcome?;
        cleanup?;
        return Ok(outcome);
    }
    outcome
}
