//! Image records as a service: the store, the `/images/*` events and the
//! collections that follow a change. Every reference-changing step holds
//! the GC guard (see [`crate::gc`]). The Images gRPC service, import and
//! pull all record images here.

use berth_api::services::images::v1 as ev;

use crate::events::Events;
use crate::filters::{self, label_field, non_empty, Fields};
use crate::gc::Gc;
use crate::store::images::{self, Image, Target};
use crate::store::labels::Labels;
use crate::store::{self, Store};

/// Why an image call failed.
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

/// What the images service needs.
#[derive(Clone)]
pub struct Deps {
    /// Image records.
    pub store: Store,
    /// The collector.
    pub gc: Gc,
    /// Where image events go.
    pub events: Events,
}

/// The images service. Cheap to clone.
#[derive(Clone)]
pub struct Images {
    deps: Deps,
}

/// As containerd's image adaptor: name and target fields are present only
/// when set; `annotations` are the target's.
impl Fields for Image {
    fn field(&self, path: &[String]) -> Option<String> {
        let one = path.len() == 1;
        match path.first()?.as_str() {
            "name" if one => non_empty(&self.name),
            "labels" => label_field(&self.labels, &path[1..]),
            "annotations" => label_field(&self.target.annotations, &path[1..]),
            "target" => match (path.get(1).map(String::as_str), path.len()) {
                (Some("digest"), 2) => non_empty(&self.target.digest),
                (Some("mediatype" | "media_type"), 2) => non_empty(&self.target.media_type),
                (Some("annotations"), _) => label_field(&self.target.annotations, &path[2..]),
                _ => None,
            },
            _ => None,
        }
    }
}

fn wire_labels(l: &Labels) -> std::collections::HashMap<String, String> {
    l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Images {
    /// The service over `deps`.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// One image.
    pub fn get(&self, ns: &str, name: &str) -> Result<Image, Error> {
        Ok(images::get(&self.deps.store, ns, name)?)
    }

    /// The images of `ns` that `filters` match.
    pub fn list(&self, ns: &str, filters: &[String]) -> Result<Vec<Image>, Error> {
        let all = images::list(&self.deps.store, ns)?;
        Ok(filters::select(filters, all).map_err(store::Error::from)?)
    }

    /// Creates an image; AlreadyExists if the name is taken.
    pub async fn create(&self, ns: &str, img: Image) -> Result<Image, Error> {
        let img = {
            let _hold = self.deps.gc.hold().await;
            images::create(&self.deps.store, ns, img).await?
        };
        tracing::debug!(namespace = %ns, image = %img.name, "image created");
        self.created(ns, &img);
        Ok(img)
    }

    /// Updates an image under a field mask; what it stopped referencing is
    /// collected soon.
    pub async fn update(&self, ns: &str, img: Image, paths: &[String]) -> Result<Image, Error> {
        let img = {
            let _hold = self.deps.gc.hold().await;
            images::update(&self.deps.store, ns, img, paths).await?
        };
        self.updated(ns, &img);
        self.deps.gc.schedule();
        Ok(img)
    }

    /// Deletes an image; what it referenced is collected now (`sync`, the
    /// reply waits for it) or soon.
    pub async fn delete(&self, ns: &str, name: &str, sync: bool) -> Result<(), Error> {
        {
            let _hold = self.deps.gc.hold().await;
            images::delete(&self.deps.store, ns, name).await?;
        }
        self.deps.events.publish(
            ns,
            &ev::ImageDelete {
                name: name.to_string(),
            },
        );
        self.deps.gc.collect(sync).await?;
        Ok(())
    }

    /// Points image `name` at `target`: creates it (with `labels`) or, when
    /// it exists, replaces only its target. For import and pull, once
    /// everything the target needs is in place.
    pub async fn save(
        &self,
        ns: &str,
        name: &str,
        target: Target,
        labels: Labels,
    ) -> Result<Image, Error> {
        let now = std::time::SystemTime::now();
        let img = Image {
            name: name.to_string(),
            labels,
            target,
            created_at: now,
            updated_at: now,
        };
        let _hold = self.deps.gc.hold().await;
        match images::create(&self.deps.store, ns, img.clone()).await {
            Ok(img) => {
                self.created(ns, &img);
                Ok(img)
            }
            Err(store::Error::AlreadyExists { .. }) => {
                let img = images::update(&self.deps.store, ns, img, &["target".into()]).await?;
                self.updated(ns, &img);
                Ok(img)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn created(&self, ns: &str, img: &Image) {
        let msg = ev::ImageCreate {
            name: img.name.clone(),
            labels: wire_labels(&img.labels),
        };
        self.deps.events.publish(ns, &msg);
    }

    fn updated(&self, ns: &str, img: &Image) {
        let msg = ev::ImageUpdate {
            name: img.name.clone(),
            labels: wire_labels(&img.labels),
        };
        self.deps.events.publish(ns, &msg);
    }
}
