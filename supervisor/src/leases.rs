//! Leases as a service: records and the resources they hold, and the
//! collection that follows a delete.

use crate::filters::{self, label_field, Fields};
use crate::gc::Gc;
use crate::store::labels::Labels;
use crate::store::leases::{self, Lease, Resource};
use crate::store::{self, Store};

/// Why a lease call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the metadata store refused or failed
    #[error(transparent)]
    Store(#[from] store::Error),
    /// a collection asked for with `sync` failed
    #[error(transparent)]
    Gc(#[from] crate::gc::Error),
}

impl Error {
    /// The kind of failure, for the code containerd answers.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Store(e) => e.kind(),
            Error::Gc(e) => e.kind(),
        }
    }
}

/// The leases service. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    store: Store,
    gc: Gc,
}

impl Fields for Lease {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "id" if path.len() == 1 => Some(self.id.clone()),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

impl Leases {
    /// The service over lease records in `store`, collected by `gc`.
    pub fn new(store: Store, gc: Gc) -> Self {
        Self { store, gc }
    }

    /// Creates a lease; an empty `id` asks berthd to choose one (as
    /// containerd does).
    pub async fn create(&self, ns: &str, id: &str, labels: Labels) -> Result<Lease, Error> {
        let id = match id {
            "" => uuid::Uuid::new_v4().simple().to_string(),
            id => id.to_string(),
        };
        let lease = leases::create(&self.store, ns, &id, labels).await?;
        tracing::debug!(namespace = %ns, lease = %lease.id, "lease created");
        Ok(lease)
    }

    /// Deletes a lease; what it held is collected now (`sync`: before the
    /// reply) or soon.
    pub async fn delete(&self, ns: &str, id: &str, sync: bool) -> Result<(), Error> {
        leases::delete(&self.store, ns, id).await?;
        self.gc.collect(sync).await?;
        Ok(())
    }

    /// The leases of `ns` that `filters` match.
    pub fn list(&self, ns: &str, filters: &[String]) -> Result<Vec<Lease>, Error> {
        let all = leases::list(&self.store, ns)?;
        Ok(filters::select(filters, all).map_err(store::Error::from)?)
    }

    /// Adds a resource to a lease (idempotent).
    pub async fn add_resource(&self, ns: &str, id: &str, r: Resource) -> Result<(), Error> {
        Ok(leases::add_resource(&self.store, ns, id, r).await?)
    }

    /// Removes a resource from a lease.
    pub async fn delete_resource(&self, ns: &str, id: &str, r: Resource) -> Result<(), Error> {
        Ok(leases::delete_resource(&self.store, ns, id, r).await?)
    }

    /// The resources a lease holds.
    pub fn resources(&self, ns: &str, id: &str) -> Result<Vec<Resource>, Error> {
        Ok(leases::resources(&self.store, ns, id)?)
    }
}
