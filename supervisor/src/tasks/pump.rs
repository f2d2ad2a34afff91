//! One event pump per shim: stream the shim's queued events from the last
//! one published, publish each on the bus, acknowledge it. Ends when the
//! shim goes away: normally after Delete, else it is dead and cleaned up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use berth_api::events::{self as ev, Event as _};
use berth_api::shim::v1 as sp;
use prost::Message;

use super::process::Change;
use super::shim;
use super::table::Inner;
use super::task::Task;
use crate::events::Envelope;

/// Starts the pump of `task`, resuming after sequence number `after`.
pub(super) fn spawn(inner: Arc<Inner>, task: Arc<Task>, after: u64) {
    tokio::spawn(async move {
        run(&inner, &task, after).await;
        task.pump_done.send_replace(true);
    });
}

/// The change an event of the init process makes to its known state.
fn init_change(task: &Task, topic: &str, event: &prost_types::Any) -> Option<Change> {
    let bytes = event.value.as_slice();
    match topic {
        ev::TaskStart::TOPIC => {
            let e = ev::TaskStart::decode(bytes).ok()?;
            (e.pid == task.pid).then_some(Change::Started)
        }
        ev::TaskExit::TOPIC => {
            let e = ev::TaskExit::decode(bytes).ok()?;
            (e.pid == task.pid && e.id == task.id)
                .then(|| Change::Exited(shim::exit(e.exit_status, e.exited_at)))
        }
        ev::TaskPaused::TOPIC => Some(Change::Paused),
        ev::TaskResumed::TOPIC => Some(Change::Resumed),
        _ => None,
    }
}

fn publish(inner: &Inner, task: &Task, ev: sp::ShimEvent) {
    let Some(event) = ev.event else {
        tracing::warn!(id = %task.id, seq = ev.seq, "shim event without payload");
        return;
    };
    // Before subscribers see it: whoever learns of a change from berthd
    // lists the new state.
    if let Some(change) = init_change(task, &ev.topic, &event) {
        task.note(change);
    }
    let namespace = if ev.namespace.is_empty() {
        task.namespace.clone()
    } else {
        ev.namespace
    };
    let env = Envelope {
        timestamp: shim::time(ev.timestamp).unwrap_or_else(std::time::SystemTime::now),
        namespace,
        topic: ev.topic,
        event,
    };
    // Queued while berthd was down: kept for subscribers that come late.
    let res = if env.timestamp < inner.started {
        inner.deps.events.forward_backlog(env)
    } else {
        inner.deps.events.forward(env)
    };
    if let Err(e) = res {
        tracing::warn!(id = %task.id, seq = ev.seq, error = %e, "dropping a malformed shim event");
    }
}

async fn run(inner: &Inner, task: &Task, mut last: u64) {
    let mut failures: u32 = 0;
    loop {
        let mut client = task.client();
        if let Ok(resp) = client.events(sp::EventsRequest { after: last }).await {
            let mut stream = resp.into_inner();
            while let Ok(Some(ev)) = stream.message().await {
                failures = 0;
                if ev.seq <= last {
                    continue;
                }
                let seq = ev.seq;
                publish(inner, task, ev);
                last = seq;
                if let Err(e) = client.ack_events(sp::AckEventsRequest { upto: seq }).await {
                    tracing::debug!(id = %task.id, seq, error = %e, "ack failed; the shim will resend");
                }
            }
        }
        if task.deleting.load(Ordering::SeqCst) {
            return;
        }
        if !shim::pid_alive(task.shim_pid) {
            task.handle_dead().await;
            return;
        }
        failures = failures.saturating_add(1);
        tracing::debug!(id = %task.id, failures, "shim event stream broke; reconnecting");
        tokio::time::sleep(Duration::from_millis(20 * u64::from(failures.min(50)))).await;
    }
}
