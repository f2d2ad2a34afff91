//! Registry host configuration in containerd's `hosts.toml` directory
//! layout: `DIR/<host>/hosts.toml` (falling back to `DIR/_default/`)
//! names, for one registry host, the endpoints to try in order (mirrors
//! first, the `server` last) and how to reach each one.
//!
//! ```toml
//! server = "https://registry.example"          # default: https://<host>
//! [host."http://127.0.0.1:5000"]
//!   capabilities = ["pull", "resolve"]          # default: pull, resolve, push
//!   skip_verify = true
//!   ca = ["ca.pem"]                             # string or list; relative to the file
//!   override_path = false                       # true: the URL path is the API root
//!   [host."http://127.0.0.1:5000".header]
//!     x-token = "abc"                           # string or list
//! ```
//!
//! Pure: [`parse`] reads text; [`load`] only reads files. A registry with
//! no file is reached directly ([`default_endpoint`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name inside each host's directory.
pub const FILE_NAME: &str = "hosts.toml";

/// Why a hosts.toml could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the file exists but could not be read
    #[error("reading {path}: {source}")]
    Read {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// the file is not TOML
    #[error("parsing {path}: {source}")]
    Parse {
        /// the file
        path: PathBuf,
        /// the cause
        source: toml::de::Error,
    },
    /// a key has a value containerd would refuse too
    #[error("{path}: {reason}")]
    Invalid {
        /// the file
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
}

/// What an endpoint may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Blobs and manifests by digest.
    pub pull: bool,
    /// Tags to digests.
    pub resolve: bool,
    /// Uploads.
    pub push: bool,
}

impl Capabilities {
    /// pull, resolve and push: containerd's default for an entry that
    /// names none.
    pub const ALL: Self = Self {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// One endpoint of a registry host, in the order it is to be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// The API root path (`/v2` unless the entry overrides the path).
    pub path: String,
    /// What it may be used for.
    pub capabilities: Capabilities,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
    /// Extra CA certificates (PEM files), absolute.
    pub ca: Vec<PathBuf>,
    /// Extra request headers, in name order.
    pub headers: Vec<(String, String)>,
}

impl Endpoint {
    /// Plain HTTP (no TLS).
    pub fn is_plain_http(&self) -> bool {
        self.scheme == "http"
    }
}

/// The endpoints for `registry` (`host[:port]`, as in an image reference)
/// from `dir`: `dir/<registry>/hosts.toml`, else `dir/_default/hosts.toml`.
/// `None` when neither exists (reach the registry directly).
pub fn load(dir: &Path, registry: &str) -> Result<Option<Vec<Endpoint>>, Error> {
    for name in [registry, "_default"] {
        if name.contains('/') || name == ".." || name.is_empty() {
            continue;
        }
        let path = dir.join(name).join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => return parse(&text, registry, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Read { path, source }),
        }
    }
    Ok(None)
}

/// The endpoint used when no hosts.toml names `registry`: HTTPS to the host
/// itself (Docker Hub's API host for `docker.io`).
pub fn default_endpoint(registry: &str) -> Endpoint {
    let host = if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    };
    Endpoint {
        scheme: "https".into(),
        host: host.into(),
        path: "/v2".into(),
        capabilities: Capabilities::ALL,
        skip_verify: false,
        ca: Vec::new(),
        headers: Vec::new(),
    }
}

/// Parses the text of `path` (the hosts.toml of `registry`): the `[host]`
/// entries in file order, then the server.
pub fn parse(text: &str, registry: &str, path: &Path) -> Result<Vec<Endpoint>, Error> {
    let invalid = |reason: String| Error::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let doc: toml::Table = toml::from_str(text).map_err(|source| Error::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut endpoints = Vec::new();
    if let Some(hosts) = doc.get("host") {
        let hosts = hosts
            .as_table()
            .ok_or_else(|| invalid("`host` must be a table of URLs".into()))?;
        for url in file_order(text, hosts) {
            let entry = hosts[&url]
                .as_table()
                .ok_or_else(|| invalid(format!("host {url:?}: must be a table")))?;
            endpoints.push(endpoint(&url, entry, base).map_err(invalid)?);
        }
    }
    let server = match doc.get("server") {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("`server` must be a string".into())),
    };
    let server_entry = endpoint(
        &server.unwrap_or_else(|| {
            let d = default_endpoint(registry);
            format!("https://{}", d.host)
        }),
        &doc,
        base,
    )
    .map_err(invalid)?;
    endpoints.push(server_entry);
    Ok(endpoints)
}

/// The `[host."URL"]` keys in the order their tables appear in the text
/// (TOML tables are unordered maps; containerd tries hosts in file order).
/// Keys the scan cannot place (inline forms) follow in name order.
fn file_order(text: &str, hosts: &toml::Table) -> Vec<String> {
    let header = regex::Regex::new(r#"^\s*\[\s*host\s*\.\s*"([^"]+)"\s*\]"#).expect("valid regex");
    let mut order: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(m) = header.captures(line) {
            let url = m[1].to_string();
            if hosts.contains_key(&url) && !order.contains(&url) {
                order.push(url);
            }
        }
    }
    for k in hosts.keys() {
        if !order.contains(k) {
            order.push(k.clone());
        }
    }
    order
}

/// One entry: `url` with the keys of `t` (the file's top level for the
/// server, which ignores the `host` and `server` keys there).
fn endpoint(url: &str, t: &toml::Table, base: &Path) -> Result<Endpoint, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("host {url:?}: needs a scheme (http:// or https://)"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("host {url:?}: scheme must be http or https"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err(format!("host {url:?}: not a valid host"));
    }
    let override_path = get_bool(t, "override_path", url)?;
    let path = if override_path || path.ends_with("/v2") {
        path.to_string()
    } else {
        format!("{path}/v2")
    };
    let capabilities = match t.get("capabilities") {
        None => Capabilities::ALL,
        Some(v) => {
            let mut c = Capabilities {
                pull: false,
                resolve: false,
                push: false,
            };
            for name in strings(v, "capabilities", url)? {
                match name.as_str() {
                    "pull" => c.pull = true,
                    "resolve" => c.resolve = true,
                    "push" => c.push = true,
                    other => return Err(format!("host {url:?}: unknown capability {other:?}")),
                }
            }
            c
        }
    };
    let ca = match t.get("ca") {
        None => Vec::new(),
        Some(v) => strings(v, "ca", url)?
            .into_iter()
            .map(|p| base.join(p))
            .collect(),
    };
    let mut headers = BTreeMap::new();
    if let Some(h) = t.get("header") {
        let h = h
            .as_table()
            .ok_or_else(|| format!("host {url:?}: `header` must be a table"))?;
        for (name, v) in h {
            for value in strings(v, "header", url)? {
                headers
                    .entry(name.clone())
                    .or_insert_with(Vec::new)
                    .push(value);
            }
        }
    }
    Ok(Endpoint {
        scheme: scheme.into(),
        host: host.into(),
        path,
        capabilities,
        skip_verify: get_bool(t, "skip_verify", url)?,
        ca,
        headers: headers
            .into_iter()
            .flat_map(|(k, vs)| vs.into_iter().map(move |v| (k.clone(), v)))
            .collect(),
    })
}

fn get_bool(t: &toml::Table, key: &str, url: &str) -> Result<bool, String> {
    match t.get(key) {
        None => Ok(false),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(format!("host {url:?}: `{key}` must be true or false")),
    }
}

/// A string or a list of strings.
fn strings(v: &toml::Value, key: &str, url: &str) -> Result<Vec<String>, String> {
    match v {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("host {url:?}: `{key}` must hold strings"))
            })
            .collect(),
        _ => Err(format!(
            "host {url:?}: `{key}` must be a string or a list of strings"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<Endpoint>, Error> {
        parse(
            text,
            "registry.k8s.io",
            Path::new("/etc/berth/certs.d/r/hosts.toml"),
        )
    }

    #[test]
    fn the_conformance_kit_mapping() {
        let e = p(r#"
# served locally
server = "http://127.0.0.1:5000"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
"#)
        .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].scheme, "http");
        assert!(e[0].is_plain_http());
        assert_eq!(e[0].host, "127.0.0.1:5000");
        assert_eq!(e[0].path, "/v2");
        assert!(e[0].capabilities.pull && e[0].capabilities.resolve);
        assert!(!e[0].capabilities.push);
        assert!(e[0].skip_verify);
        // The server comes last, with the top-level keys (none here).
        assert_eq!(e[1].host, "127.0.0.1:5000");
        assert_eq!(e[1].capabilities, Capabilities::ALL);
        assert!(!e[1].skip_verify);
    }

    #[test]
    fn hosts_keep_file_order_and_every_key() {
        let e = p(r#"
server = "https://registry.k8s.io"
ca = "top.pem"
[host."https://zz.mirror:8443/base"]
  ca = ["a.pem", "/abs/b.pem"]
  [host."https://zz.mirror:8443/base".header]
    x-one = "1"
    x-many = ["a", "b"]
[host."https://aa.mirror"]
  override_path = true
"#)
        .unwrap();
        let hosts: Vec<_> = e.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["zz.mirror:8443", "aa.mirror", "registry.k8s.io"]);
        assert_eq!(e[0].path, "/base/v2");
        assert_eq!(
            e[0].ca,
            [
                PathBuf::from("/etc/berth/certs.d/r/a.pem"),
                PathBuf::from("/abs/b.pem")
            ]
        );
        assert_eq!(
            e[0].headers,
            [
                ("x-many".to_string(), "a".to_string()),
                ("x-many".to_string(), "b".to_string()),
                ("x-one".to_string(), "1".to_string())
            ]
        );
        assert_eq!(e[1].path, "", "override_path keeps the URL's path");
        assert_eq!(e[2].ca, [PathBuf::from("/etc/berth/certs.d/r/top.pem")]);
    }

    #[test]
    fn no_server_means_https_to_the_host() {
        let e = p("").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].scheme.as_str(), e[0].host.as_str()),
            ("https", "registry.k8s.io")
        );
        let d = parse("", "docker.io", Path::new("/x/hosts.toml")).unwrap();
        assert_eq!(d[0].host, "registry-1.docker.io");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for (text, want) in [
            ("server = 5", "`server` must be a string"),
            ("server = \"ftp://x\"", "scheme must be http or https"),
            ("server = \"x.io\"", "needs a scheme"),
            (
                "[host.\"https://m\"]\ncapabilities = [\"fly\"]",
                "unknown capability",
            ),
            (
                "[host.\"https://m\"]\nskip_verify = \"yes\"",
                "must be true or false",
            ),
            ("[host.\"https://m\"]\nca = 3", "string or a list"),
            ("host = 1", "table of URLs"),
        ] {
            let e = p(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(matches!(p("server = "), Err(Error::Parse { .. })));
    }

    #[test]
    fn load_uses_the_host_dir_then_default_then_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "127.0.0.1:5000").unwrap(), None);
        std::fs::create_dir_all(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "server = \"https://fallback.example\"",
        )
        .unwrap();
        let e = load(dir.path(), "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(e[0].host, "fallback.example");
        std::fs::create_dir_all(dir.path().join("127.0.0.1:5000")).unwrap();
        std::fs::write(
            dir.path().join("127.0.0.1:5000/hosts.toml"),
            "server = \"http://127.0.0.1:5000\"",
        )
        .unwrap();
        let e = load(dir.path(), "127.0.0.1:5000").unwrap().unwrap();
        assert!(e[0].is_plain_http());
        assert!(load(dir.path(), "../etc").is_ok());
    }
}
