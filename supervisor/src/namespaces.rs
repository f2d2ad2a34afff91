//! Namespaces as a service: records and labels; a namespace that still
//! holds anything (snapshots included) cannot be deleted.

use crate::filters::{self, label_field, Fields};
use crate::snapshots::Snapshots;
use crate::store::namespaces::{self, Namespace};
use crate::store::{self, Store};

/// Why a namespace call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the metadata store refused or failed
    #[error(transparent)]
    Store(#[from] store::Error),
    /// the snapshotters could not be asked
    #[error(transparent)]
    Snapshots(#[from] crate::snapshots::Error),
}

impl Error {
    /// The kind of failure, for the code containerd answers.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Store(e) => e.kind(),
            Error::Snapshots(e) => e.kind(),
        }
    }
}

/// The namespaces service. Cheap to clone.
#[derive(Clone)]
pub struct Namespaces {
    store: Store,
    snapshots: Snapshots,
}

impl Fields for Namespace {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "name" if path.len() == 1 => Some(self.name.clone()),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

impl Namespaces {
    /// The service over namespace records in `store`; `snapshots` says
    /// whether a namespace still holds snapshots.
    pub fn new(store: Store, snapshots: Snapshots) -> Self {
        Self { store, snapshots }
    }

    /// One namespace.
    pub fn get(&self, name: &str) -> Result<Namespace, Error> {
        Ok(namespaces::get(&self.store, name)?)
    }

    /// The namespaces `filter` matches.
    pub fn list(&self, filter: &str) -> Result<Vec<Namespace>, Error> {
        let all = namespaces::list(&self.store)?;
        Ok(filters::select(&[filter], all).map_err(store::Error::from)?)
    }

    /// Creates a namespace; AlreadyExists if it is there.
    pub async fn create(&self, ns: Namespace) -> Result<Namespace, Error> {
        let ns = namespaces::create(&self.store, ns).await?;
        tracing::info!(namespace = %ns.name, "namespace created");
        Ok(ns)
    }

    /// Updates a namespace's labels under a field mask.
    pub async fn update(&self, ns: Namespace, paths: &[String]) -> Result<Namespace, Error> {
        Ok(namespaces::update(&self.store, ns, paths).await?)
    }

    /// Deletes an empty namespace.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let snapshots = self.snapshots.namespace_has_snapshots(name).await?;
        namespaces::delete(&self.store, name, snapshots).await?;
        tracing::info!(namespace = %name, "namespace deleted");
        Ok(())
    }
}
