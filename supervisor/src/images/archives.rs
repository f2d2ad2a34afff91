//! Image archives as a service: server-side import of OCI layout and
//! `docker save` tars, and export as an OCI layout, for the Transfer
//! adapter (and, later, Docker-style `load`/`save`).

use std::io::{Read, Write};

use berth_api::oci::Platform;
use tokio::sync::mpsc;

use super::export;
use super::import::{self, Options, Progress};

/// Imports and exports archives. Cheap to clone.
#[derive(Clone)]
pub struct Archives {
    import: import::Deps,
    export: export::Deps,
}

impl Archives {
    /// Archives over what an import and an export need.
    pub fn new(import: import::Deps, export: export::Deps) -> Self {
        Self { import, export }
    }

    /// Imports the archive `reader` yields into `ns`; see
    /// [`import::import`]. Returns the image names created or updated.
    pub async fn import(
        &self,
        ns: &str,
        reader: impl Read + Send + 'static,
        opts: Options,
        progress: mpsc::Sender<Progress>,
    ) -> Result<Vec<String>, import::Error> {
        import::import(&self.import, ns, reader, opts, progress).await
    }

    /// Writes images `names` of `ns` (one platform, or all) as an OCI
    /// layout tar into `w`; see [`export::export`].
    pub async fn export<W: Write + Send + 'static>(
        &self,
        ns: &str,
        names: &[String],
        want: Option<Platform>,
        w: W,
    ) -> Result<(), export::Error> {
        export::export(&self.export, ns, names, want, w).await
    }

    /// Checks that every image of `names` exists (before a stream starts).
    pub fn check(&self, ns: &str, names: &[String]) -> Result<(), export::Error> {
        for n in names {
            self.export.images.get(ns, n)?;
        }
        Ok(())
    }

    /// Checks a snapshotter name an import will unpack into.
    pub fn check_snapshotter(&self, name: &str) -> Result<(), import::Error> {
        self.import
            .unpacker
            .resolve(name)
            .map(|_| ())
            .map_err(import::Error::from)
    }
}
