//! Container records as a service: the store, the `/containers/*` events,
//! and the collection that follows a delete. A container cannot be deleted
//! while its task exists.

use berth_api::events as ev;

use crate::events::Events;
use crate::filters::{self, label_field, Fields};
use crate::gc::Gc;
use crate::store::containers::{self, Container};
use crate::store::{self, Store};
use crate::tasks::Tasks;

/// Why a container call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the metadata store refused or failed
    #[error(transparent)]
    Store(#[from] store::Error),
    /// the container still has a task
    #[error(
        "container {0:?}: cannot delete a container while its task exists; delete the task first"
    )]
    TaskExists(String),
}

impl Error {
    /// The kind of failure, for the code containerd answers.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Store(e) => e.kind(),
            Error::TaskExists(_) => berth_api::ErrorKind::FailedPrecondition,
        }
    }
}

/// What the containers service needs.
#[derive(Clone)]
pub struct Deps {
    /// Container records.
    pub store: Store,
    /// Where container events go.
    pub events: Events,
    /// The collector, after a delete.
    pub gc: Gc,
    /// Whether a container has a task.
    pub tasks: Tasks,
}

/// The containers service. Cheap to clone.
#[derive(Clone)]
pub struct Containers {
    deps: Deps,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl Fields for Container {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "id" if path.len() == 1 => non_empty(&self.id),
            "image" if path.len() == 1 => non_empty(&self.image),
            "runtime" if path.len() == 2 && path[1] == "name" => non_empty(&self.runtime.name),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

impl Containers {
    /// The service over `deps`.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// One container.
    pub fn get(&self, ns: &str, id: &str) -> Result<Container, Error> {
        Ok(containers::get(&self.deps.store, ns, id)?)
    }

    /// The containers of `ns` that `filters` match, by id.
    pub fn list(&self, ns: &str, filters: &[String]) -> Result<Vec<Container>, Error> {
        let all = containers::list(&self.deps.store, ns)?;
        Ok(filters::select(filters, all).map_err(store::Error::from)?)
    }

    /// Creates a container; AlreadyExists if the id is taken.
    pub async fn create(&self, ns: &str, c: Container) -> Result<Container, Error> {
        let c = containers::create(&self.deps.store, ns, c).await?;
        tracing::debug!(namespace = %ns, id = %c.id, "container created");
        let msg = ev::ContainerCreate {
            id: c.id.clone(),
            image: c.image.clone(),
            runtime: Some(ev::container_create::Runtime {
                name: c.runtime.name.clone(),
                options: c.runtime.options.clone().map(Into::into),
            }),
        };
        self.deps.events.publish(ns, &msg);
        Ok(c)
    }

    /// Updates a container under a field mask.
    pub async fn update(
        &self,
        ns: &str,
        c: Container,
        paths: &[String],
    ) -> Result<Container, Error> {
        let c = containers::update(&self.deps.store, ns, c, paths).await?;
        let msg = ev::ContainerUpdate {
            id: c.id.clone(),
            image: c.image.clone(),
            labels: c
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            snapshot_key: c.snapshot_key.clone(),
        };
        self.deps.events.publish(ns, &msg);
        Ok(c)
    }

    /// Deletes a container that has no task; what it held is collected
    /// soon.
    pub async fn delete(&self, ns: &str, id: &str) -> Result<(), Error> {
        if self.deps.tasks.exists(ns, id) {
            return Err(Error::TaskExists(id.to_string()));
        }
        containers::delete(&self.deps.store, ns, id).await?;
        self.deps
            .events
            .publish(ns, &ev::ContainerDelete { id: id.to_string() });
        self.deps.gc.schedule();
        Ok(())
    }
}
