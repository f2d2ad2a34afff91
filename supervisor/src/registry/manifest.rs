//! Manifests and indexes as registries serve them (OCI and Docker schema 2
//! media types), the size limit we accept, and platform matching.

use serde::{Deserialize, Serialize};

use super::Error;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest media type a pull accepts, for the `Accept` header.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Largest manifest or index we read (containerd uses the same bound):
/// anything larger is refused before it is stored.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// A content descriptor as it appears in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// Its digest (`sha256:<hex>`).
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// Platform, in index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// Platforms and their matching rules are the images module's (the same
/// choice for imports and pulls).
pub use crate::images::oci::Platform;

/// Parses `os/arch[/variant]`; an empty string means the daemon's own
/// platform ([`Platform::host`]).
pub fn parse_platform(s: &str) -> Result<Platform, Error> {
    if s.is_empty() {
        return Ok(Platform::host());
    }
    let bad = || Error::InvalidArgument(format!("platform {s:?}: expected os/arch[/variant]"));
    if s.split('/').any(str::is_empty) {
        return Err(bad());
    }
    Platform::parse(s).ok_or_else(bad)
}

/// `os/arch[/variant]`.
pub fn platform_string(p: &Platform) -> String {
    if p.variant.is_empty() {
        format!("{}/{}", p.os, p.architecture)
    } else {
        format!("{}/{}/{}", p.os, p.architecture, p.variant)
    }
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// An image manifest: config and layers, in order.
    Manifest {
        /// The config blob.
        config: Descriptor,
        /// The layers, base first.
        layers: Vec<Descriptor>,
    },
    /// An index (manifest list): one entry per platform.
    Index {
        /// The entries.
        manifests: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// Parses `bytes` as a manifest or index. `content_type` (the registry's
/// answer, or a descriptor's media type) decides when the body carries no
/// `mediaType`. Refuses schema 1, unknown media types and bad digests.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<(String, Parsed), Error> {
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(Error::ManifestTooLarge {
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_SIZE,
        });
    }
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| Error::BadManifest(format!("not a manifest: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(Error::BadManifest(format!(
            "schemaVersion {:?}: only schema 2 is supported",
            raw.schema_version
        )));
    }
    let media_type = match (raw.media_type.as_deref(), content_type) {
        (Some(m), _) if !m.is_empty() => m.to_string(),
        (_, Some(c)) if ACCEPTED.contains(&c) => c.to_string(),
        _ if raw.manifests.is_some() => OCI_INDEX.to_string(),
        _ => OCI_MANIFEST.to_string(),
    };
    let check = |d: &Descriptor| -> Result<(), Error> {
        d.digest
            .parse::<berth_api::Digest>()
            .map_err(|e| Error::BadManifest(format!("descriptor digest {:?}: {e}", d.digest)))?;
        if d.size < 0 {
            return Err(Error::BadManifest(format!(
                "descriptor {}: negative size",
                d.digest
            )));
        }
        Ok(())
    };
    let parsed = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            let manifests = raw
                .manifests
                .ok_or_else(|| Error::BadManifest("index without manifests".into()))?;
            manifests.iter().try_for_each(check)?;
            Parsed::Index { manifests }
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = raw
                .config
                .ok_or_else(|| Error::BadManifest("manifest without config".into()))?;
            let layers = raw.layers.unwrap_or_default();
            check(&config)?;
            layers.iter().try_for_each(check)?;
            Parsed::Manifest { config, layers }
        }
        other => {
            return Err(Error::BadManifest(format!(
                "media type {other:?} is not a schema 2 manifest or index"
            )))
        }
    };
    Ok((media_type, parsed))
}

/// The index entry serving `want` (first match, as containerd), if any.
pub fn select<'a>(manifests: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    manifests.iter().find(|d| {
        ACCEPTED.contains(&d.media_type.as_str())
            && d.platform.as_ref().is_some_and(|p| want.matches(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn platforms_parse_and_match() {
        let p = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(platform_string(&p), "linux/arm64/v8");
        assert!(p.matches(&parse_platform("linux/arm64").unwrap()));
        assert!(!p.matches(&parse_platform("linux/arm64/v7").unwrap()));
        assert!(!p.matches(&parse_platform("linux/amd64").unwrap()));
        assert!(parse_platform("linux/amd64")
            .unwrap()
            .matches(&parse_platform("linux/amd64/v3").unwrap()));
        assert_eq!(
            parse_platform("linux/x86_64").unwrap().architecture,
            "amd64"
        );
        for bad in ["linux/", "/amd64", "a/b/c/d"] {
            assert!(parse_platform(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_platform("").unwrap(), Platform::host());
    }

    #[test]
    fn index_selects_by_platform() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":10,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let (mt, parsed) = parse(body.as_bytes(), None).unwrap();
        assert_eq!(mt, OCI_INDEX);
        let Parsed::Index { manifests } = parsed else {
            panic!("not an index")
        };
        let amd = parse_platform("linux/amd64").unwrap();
        let arm = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(select(&manifests, &amd).unwrap().digest, D1);
        assert_eq!(select(&manifests, &arm).unwrap().digest, D2);
        assert!(select(&manifests, &parse_platform("linux/s390x").unwrap()).is_none());
    }

    #[test]
    fn manifests_docker_and_oci_and_refusals() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{D1}","size":3}},"layers":[{{"mediaType":"y","digest":"{D2}","size":4}}]}}"#
        );
        let (mt, parsed) = parse(body.as_bytes(), None).unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        assert!(matches!(parsed, Parsed::Manifest { ref layers, .. } if layers.len() == 1));
        // No mediaType in the body: the content type decides.
        let body =
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":3}},"layers":[]}}"#);
        assert_eq!(
            parse(body.as_bytes(), Some(OCI_MANIFEST)).unwrap().0,
            OCI_MANIFEST
        );
        assert!(parse(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(parse(b"not json", None).is_err());
        let bad = r#"{"schemaVersion":2,"config":{"digest":"sha256:zz","size":3},"layers":[]}"#;
        assert!(parse(bad.as_bytes(), Some(OCI_MANIFEST)).is_err());
        let huge = vec![b' '; (MAX_MANIFEST_SIZE + 1) as usize];
        assert!(matches!(
            parse(&huge, None),
            Err(Error::ManifestTooLarge { .. })
        ));
    }
}
