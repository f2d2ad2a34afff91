//! Image records: a name pointing at a target descriptor (manifest or
//! index), with labels. Garbage collection treats every image's target (and
//! its `containerd.io/gc.ref.*` labels) as a root.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::codec::{self, decode, encode, ns_key, ns_prefix};
use super::labels::{self, Labels};
use super::{Error, Result, Store};

const TREE: &str = "images";

/// A content descriptor, as images store it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Target {
    /// Media type of the blob.
    pub media_type: String,
    /// Its digest (`algorithm:hex`).
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// Descriptor annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// One image record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    /// Its name (a reference such as `docker.io/library/busybox:latest`).
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// What it points at.
    pub target: Target,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it last changed.
    pub updated_at: SystemTime,
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(
            "image name: must not be empty".into(),
        ));
    }
    if name.contains('\0') || name.len() > 4096 {
        return Err(Error::InvalidArgument(format!(
            "image name {name:?}: must hold no NUL and be at most 4096 bytes"
        )));
    }
    Ok(())
}

/// Validates an image as containerd does: a name, valid labels, and a
/// target with a valid digest, a positive size and a media type.
pub fn validate(img: &Image) -> Result<()> {
    check_name(&img.name)?;
    labels::validate(&img.labels)?;
    let t = &img.target;
    t.digest
        .parse::<berth_api::Digest>()
        .map_err(|e| Error::InvalidArgument(format!("target.digest {:?}: {e}", t.digest)))?;
    if t.size <= 0 {
        return Err(Error::InvalidArgument(
            "target.size: must be greater than zero".into(),
        ));
    }
    if t.media_type.is_empty() {
        return Err(Error::InvalidArgument(
            "target.media_type: must be set".into(),
        ));
    }
    Ok(())
}

/// Creates an image; AlreadyExists if the name is taken. Timestamps are set
/// here. Durable once it returns.
pub async fn create(store: &Store, ns: &str, mut img: Image) -> Result<Image> {
    validate(&img)?;
    super::namespaces::ensure(store, ns).await?;
    let now = SystemTime::now();
    img.created_at = now;
    img.updated_at = now;
    let prev = store.tree(TREE)?.compare_and_swap(
        ns_key(ns, &img.name),
        None::<&[u8]>,
        Some(encode(store, &img)?),
    )?;
    if prev.is_err() {
        return Err(Error::AlreadyExists {
            kind: "image",
            id: img.name,
        });
    }
    store.flush().await?;
    Ok(img)
}

/// Reads one image.
pub fn get(store: &Store, ns: &str, name: &str) -> Result<Image> {
    check_name(name)?;
    codec::get(store, TREE, &ns_key(ns, name), "image", name)
}

/// Every image of a namespace.
pub fn list(store: &Store, ns: &str) -> Result<Vec<Image>> {
    Ok(codec::scan(store, TREE, &ns_prefix(ns))?
        .into_iter()
        .map(|(_, img)| img)
        .collect())
}

/// Every image of every namespace, with its namespace (for GC).
pub fn list_all(store: &Store) -> Result<Vec<(String, Image)>> {
    Ok(codec::scan_all(store, TREE)?
        .into_iter()
        .map(|(ns, _, img)| (ns, img))
        .collect())
}

/// Updates `incoming.name` under a field mask, as containerd does: no
/// paths replaces labels and target; `labels`, `labels.K`, `target`,
/// `annotations`, `annotations.K` update those parts; anything else is
/// InvalidArgument. NotFound if the image does not exist.
pub async fn update(store: &Store, ns: &str, incoming: Image, paths: &[String]) -> Result<Image> {
    check_name(&incoming.name)?;
    let tree = store.tree(TREE)?;
    let key = ns_key(ns, &incoming.name);
    loop {
        let raw = tree.get(&key)?.ok_or_else(|| Error::NotFound {
            kind: "image",
            id: incoming.name.clone(),
        })?;
        let mut img: Image = decode(&raw)?;
        let mut label_paths = Vec::new();
        let mut others = Vec::new();
        for p in paths {
            if p == "labels" || p.starts_with("labels.") {
                label_paths.push(p.clone());
            } else {
                others.push(p.clone());
            }
        }
        if paths.is_empty() {
            img.labels = incoming.labels.clone();
            img.target = incoming.target.clone();
        } else if !label_paths.is_empty() {
            labels::apply_mask(&mut img.labels, &incoming.labels, &label_paths, &[])?;
        }
        for p in &others {
            if p == "target" {
                img.target = incoming.target.clone();
            } else if p == "annotations" {
                img.target.annotations = incoming.target.annotations.clone();
            } else if let Some(k) = p.strip_prefix("annotations.") {
                match incoming.target.annotations.get(k) {
                    Some(v) if !v.is_empty() => {
                        img.target.annotations.insert(k.to_string(), v.clone());
                    }
                    _ => {
                        img.target.annotations.remove(k);
                    }
                }
            } else {
                return Err(Error::InvalidArgument(format!(
                    "update_mask: cannot update field {p:?} of image {:?}",
                    incoming.name
                )));
            }
        }
        img.updated_at = SystemTime::now();
        validate(&img)?;
        let swapped = tree.compare_and_swap(&key, Some(raw), Some(encode(store, &img)?))?;
        if swapped.is_ok() {
            store.flush().await?;
            return Ok(img);
        }
        // Someone changed it meanwhile: apply the mask again on the new value.
    }
}

/// Deletes an image; NotFound if it does not exist.
pub async fn delete(store: &Store, ns: &str, name: &str) -> Result<Image> {
    check_name(name)?;
    store.room_for(0)?;
    let raw = store
        .tree(TREE)?
        .remove(ns_key(ns, name))?
        .ok_or_else(|| Error::NotFound {
            kind: "image",
            id: name.into(),
        })?;
    store.flush().await?;
    decode(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str) -> Image {
        Image {
            name: name.into(),
            labels: Labels::new(),
            target: Target {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                size: 10,
                annotations: BTreeMap::new(),
            },
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn image_lifecycle_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = create(&store, "n", img("docker.io/library/a:1"))
            .await
            .unwrap();
        assert!(a.created_at > SystemTime::UNIX_EPOCH);
        assert!(matches!(
            create(&store, "n", img("docker.io/library/a:1")).await,
            Err(Error::AlreadyExists { .. })
        ));
        let mut bad = img("x");
        bad.target.size = 0;
        assert!(matches!(
            create(&store, "n", bad).await,
            Err(Error::InvalidArgument(_))
        ));
        let mut bad = img("x");
        bad.target.digest = "nope".into();
        assert!(matches!(
            create(&store, "n", bad).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            create(&store, "n", img("")).await,
            Err(Error::InvalidArgument(_))
        ));

        let mut inc = img("docker.io/library/a:1");
        inc.labels.insert("k".into(), "v".into());
        inc.target.digest = format!("sha256:{}", "b".repeat(64));
        let u = update(&store, "n", inc.clone(), &["labels.k".into()])
            .await
            .unwrap();
        assert_eq!(u.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(u.target.digest, a.target.digest, "target untouched");
        let u = update(&store, "n", inc.clone(), &["target".into()])
            .await
            .unwrap();
        assert_eq!(u.target.digest, inc.target.digest);
        assert_eq!(u.created_at, a.created_at);
        assert!(update(&store, "n", inc.clone(), &["name".into()])
            .await
            .is_err());
        assert!(matches!(
            update(&store, "n", img("nope"), &[]).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(list(&store, "n").unwrap().len(), 1);
        assert_eq!(list(&store, "m").unwrap().len(), 0);
        assert_eq!(list_all(&store).unwrap()[0].0, "n");
        delete(&store, "n", "docker.io/library/a:1").await.unwrap();
        assert!(matches!(
            get(&store, "n", "docker.io/library/a:1"),
            Err(Error::NotFound { .. })
        ));
    }
}
