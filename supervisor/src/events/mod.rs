//! The in-process event bus.
//!
//! Domain modules publish `(namespace, topic, payload)`; every subscriber
//! whose containerd filter matches gets the envelope in order. Each
//! subscriber has a bounded buffer: publishing never waits, and a
//! subscriber whose buffer is full is dropped (its stream ends) with a log
//! line, so a slow client can never stall the daemon.
//!
//! Events that happened while berthd was down (queued in shims, or exits
//! of shims that died meanwhile) are published during start-up recovery,
//! before any client can subscribe. They are published with
//! [`Events::forward_backlog`], which also keeps them for
//! [`BACKLOG_RETENTION`] after start-up: every subscription made in that
//! time first receives the kept envelopes its filter matches, once each
//! and in order, then the live ones (no gap, no duplicate: both happen
//! under the subscriber lock).
//!
//! Filters see the fields `topic` and `namespace` (as containerd's
//! envelope adaptor does; `event.*` fields are not decoded and never
//! match).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use berth_api::events::Event;
use prost_types::Any;
use tokio::sync::mpsc;

use crate::filters::{Fields, Filter};

/// How many envelopes a subscriber may have unread before it is dropped.
pub const SUBSCRIBER_BUFFER: usize = 4096;

/// How long events from berthd's downtime are replayed to new subscribers.
pub const BACKLOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(60);

/// Why an event was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// the topic is not `/component/component...` with identifier components
    #[error("topic: {0:?} must be a path of identifiers starting with '/'")]
    Topic(String),
    /// the namespace is not an identifier
    #[error("{0}")]
    Namespace(String),
    /// no payload was given
    #[error("event: required")]
    MissingEvent,
}

impl Error {
    /// Every refusal is the caller's malformed event.
    pub fn kind(&self) -> berth_api::ErrorKind {
        berth_api::ErrorKind::InvalidArgument
    }
}

/// One published event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// When it was published.
    pub timestamp: SystemTime,
    /// The namespace it belongs to.
    pub namespace: String,
    /// Its topic, e.g. `/tasks/exit`.
    pub topic: String,
    /// The payload ([`Event::TYPE_URL`] for berthd's own events).
    pub event: Any,
}

impl Envelope {
    /// The envelope of `msg` in `namespace`, stamped now.
    pub fn now<E: Event>(namespace: &str, msg: &E) -> Self {
        Self::at(SystemTime::now(), namespace, msg)
    }

    /// The envelope of `msg` in `namespace`, stamped `timestamp`.
    pub fn at<E: Event>(timestamp: SystemTime, namespace: &str, msg: &E) -> Self {
        Self {
            timestamp,
            namespace: namespace.to_string(),
            topic: E::TOPIC.to_string(),
            event: msg.to_any(),
        }
    }
}

impl Fields for Envelope {
    fn field(&self, path: &[String]) -> Option<String> {
        match (path.first()?.as_str(), path.len()) {
            ("topic", 1) => Some(self.topic.clone()),
            ("namespace", 1) => Some(self.namespace.clone()),
            _ => None,
        }
    }
}

/// Checks a topic as containerd does: `/` followed by `/`-separated
/// identifiers.
pub fn validate_topic(topic: &str) -> Result<(), Error> {
    let bad = || Error::Topic(topic.to_string());
    let rest = topic.strip_prefix('/').ok_or_else(bad)?;
    if rest.is_empty() {
        return Err(bad());
    }
    for part in rest.split('/') {
        berth_api::identifiers::validate("topic", part).map_err(|_| bad())?;
    }
    Ok(())
}

struct Subscriber {
    id: u64,
    filter: Filter,
    tx: mpsc::Sender<Arc<Envelope>>,
}

struct Inner {
    subs: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
    /// Downtime events and when the bus was made (locked after `subs`).
    backlog: Mutex<Vec<Arc<Envelope>>>,
    born: std::time::Instant,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            subs: Mutex::default(),
            next_id: AtomicU64::default(),
            backlog: Mutex::default(),
            born: std::time::Instant::now(),
        }
    }
}

/// The bus. Cheap to clone; every clone publishes to the same subscribers.
#[derive(Clone, Default)]
pub struct Events {
    inner: Arc<Inner>,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    bus: Events,
    rx: mpsc::Receiver<Arc<Envelope>>,
}

impl Subscription {
    /// The next envelope; None once the subscriber was dropped for being
    /// too slow (or the bus is gone).
    pub async fn recv(&mut self) -> Option<Arc<Envelope>> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.bus.lock().retain(|s| s.id != self.id);
    }
}

impl Events {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.inner.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes an event berthd itself raises, under its topic, now.
    /// Never blocks; invalid namespaces are logged and dropped (they are
    /// our own bugs).
    pub fn publish<E: Event>(&self, namespace: &str, msg: &E) {
        if let Err(e) = self.forward(Envelope::now(namespace, msg)) {
            tracing::error!(error = %e, topic = E::TOPIC, "dropping an event berthd published");
        }
    }

    /// Publishes a finished envelope (Forward, Publish, shim events).
    pub fn forward(&self, env: Envelope) -> Result<(), Error> {
        self.forward_inner(env, false)
    }

    /// Publishes an envelope of something that happened while berthd was
    /// down, and keeps it for subscribers that come within
    /// [`BACKLOG_RETENTION`] of start-up.
    pub fn forward_backlog(&self, env: Envelope) -> Result<(), Error> {
        self.forward_inner(env, true)
    }

    fn backlog_lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Envelope>>> {
        let mut b = self.inner.backlog.lock().unwrap_or_else(|p| p.into_inner());
        if !b.is_empty() && self.inner.born.elapsed() > BACKLOG_RETENTION {
            b.clear();
            b.shrink_to_fit();
        }
        b
    }

    fn forward_inner(&self, env: Envelope, keep: bool) -> Result<(), Error> {
        validate_topic(&env.topic)?;
        berth_api::identifiers::validate("namespace", &env.namespace)
            .map_err(|e| Error::Namespace(e.to_string()))?;
        let env = Arc::new(env);
        let mut subs = self.lock();
        if keep && self.inner.born.elapsed() <= BACKLOG_RETENTION {
            self.backlog_lock().push(Arc::clone(&env));
        }
        subs.retain(|s| {
            if !s.filter.matches(&*env) {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(Arc::clone(&env)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        subscriber = s.id,
                        buffer = SUBSCRIBER_BUFFER,
                        "dropping an event subscriber that stopped reading"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        tracing::debug!(namespace = %env.namespace, topic = %env.topic, "event published");
        Ok(())
    }

    /// Subscribes to every future envelope that `filter` matches.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subs = self.lock();
        for env in self.backlog_lock().iter() {
            if filter.matches(&**env) && tx.try_send(Arc::clone(env)).is_err() {
                break;
            }
        }
        subs.push(Subscriber { id, filter, tx });
        drop(subs);
        Subscription {
            id,
            bus: self.clone(),
            rx,
        }
    }

    /// Number of live subscribers (for tests and introspection).
    pub fn subscribers(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::events::TaskStart;

    fn start(pid: u32) -> TaskStart {
        TaskStart {
            container_id: "c".into(),
            pid,
        }
    }

    #[tokio::test]
    async fn filters_order_and_type_urls() {
        let bus = Events::new();
        let mut all = bus.subscribe(Filter::default());
        let mut tasks =
            bus.subscribe(Filter::parse(&["topic~=\"^/tasks/\",namespace==a"]).unwrap());
        bus.publish("a", &start(1));
        bus.publish("b", &start(2));
        bus.publish("a", &berth_api::events::ContainerCreate::default());
        bus.publish("a", &berth_api::events::TaskOom::default());
        let got: Vec<String> = [(); 4]
            .iter()
            .map(|_| all.rx.try_recv().unwrap().topic.clone())
            .collect();
        assert_eq!(
            got,
            [
                "/tasks/start",
                "/tasks/start",
                "/containers/create",
                "/tasks/oom"
            ]
        );
        let e = tasks.recv().await.unwrap();
        assert_eq!(e.event.type_url, "containerd.events.TaskStart");
        let e = tasks.recv().await.unwrap();
        assert_eq!(e.event.type_url, "containerd.events.TaskOOM");
        assert!(tasks.rx.try_recv().is_err());
    }

    #[test]
    fn slow_subscriber_is_dropped_without_blocking() {
        let bus = Events::new();
        let mut slow = bus.subscribe(Filter::default());
        for i in 0..(SUBSCRIBER_BUFFER as u32 + 10) {
            bus.publish("a", &start(i));
        }
        assert_eq!(bus.subscribers(), 0);
        // What was buffered is still readable, then the stream ends.
        let mut n = 0;
        while slow.rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, SUBSCRIBER_BUFFER);
        drop(slow);
        let sub = bus.subscribe(Filter::default());
        assert_eq!(bus.subscribers(), 1);
        drop(sub);
        assert_eq!(bus.subscribers(), 0);
    }

    #[test]
    fn bad_topics_and_namespaces_are_refused() {
        let bus = Events::new();
        for t in ["", "/", "tasks", "/tasks//x", "/tasks/"] {
            assert!(validate_topic(t).is_err(), "{t}");
        }
        assert!(validate_topic("/tasks/exec-started").is_ok());
        let env = Envelope {
            timestamp: SystemTime::now(),
            namespace: "a/b".into(),
            topic: "/x".into(),
            event: Any::default(),
        };
        assert!(matches!(bus.forward(env), Err(Error::Namespace(_))));
    }
}
