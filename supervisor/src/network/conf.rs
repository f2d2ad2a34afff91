//! CNI network configuration, loaded by libcni's rules.
//!
//! A conf dir holds `*.conflist`, `*.conf` and `*.json` files; they are
//! taken in file-name order and the first valid one is the default network
//! (a `.conf`/`.json` single-plugin config is wrapped as a one-plugin
//! list). An invalid file is skipped with its reason kept, so the status
//! can say why nothing was usable. Validation refuses malformed JSON, a
//! missing or bad `name`, `cniVersion` or plugin `type`, and a version
//! outside [`SUPPORTED_VERSIONS`].

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::error::Error;
use super::Result;

/// The cniVersions whose results this module reads (0.3.x and 0.4.0 share
/// one result format, 1.0.0 drops the per-IP `version`).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// File extensions a conf dir is scanned for.
const EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// One plugin of a list, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// The plugin binary's name (`type`).
    pub plugin_type: String,
    /// Capabilities the plugin declares (`portMappings`, `bandwidth`, ...);
    /// only these are passed to it in `runtimeConfig`.
    pub capabilities: BTreeMap<String, bool>,
    /// The plugin's config object as written.
    pub raw: Map<String, Value>,
}

/// A network: a named, versioned list of plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    /// The network name (injected into every plugin's config).
    pub name: String,
    /// The cniVersion (injected into every plugin's config).
    pub cni_version: String,
    /// `disableCheck`: CHECK succeeds without calling the plugins.
    pub disable_check: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConf>,
    /// Where it was read from (empty for bytes).
    pub source: PathBuf,
}

impl ConfList {
    /// Parses a `.conflist` document.
    pub fn from_list_bytes(bytes: &[u8], source: &Path) -> Result<ConfList> {
        let obj = parse_object(bytes, source)?;
        let invalid = |reason: String| invalid(source, reason);
        let name = required_name(&obj, source)?;
        let cni_version = required_version(&obj, source)?;
        let disable_check = match obj.get("disableCheck") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(invalid(format!("disableCheck: not a bool: {other}"))),
        };
        let plugins = match obj.get("plugins") {
            Some(Value::Array(list)) if !list.is_empty() => list,
            Some(Value::Array(_)) => return Err(invalid("plugins: the list is empty".into())),
            Some(_) => return Err(invalid("plugins: not a list".into())),
            None => {
                return Err(invalid(
                    "no \"plugins\" list (is this a single .conf?)".into(),
                ))
            }
        };
        let plugins = plugins
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Value::Object(map) => plugin_conf(map.clone(), source, Some(i)),
                _ => Err(invalid(format!("plugins[{i}]: not an object"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ConfList {
            name,
            cni_version,
            disable_check,
            plugins,
            source: source.to_path_buf(),
        })
    }

    /// Parses a single-plugin `.conf`/`.json` document into a one-plugin list.
    pub fn from_conf_bytes(bytes: &[u8], source: &Path) -> Result<ConfList> {
        let obj = parse_object(bytes, source)?;
        if obj.contains_key("plugins") && !obj.contains_key("type") {
            return Err(invalid(
                source,
                "has a \"plugins\" list but no \"type\": a conflist needs the .conflist extension"
                    .into(),
            ));
        }
        let name = required_name(&obj, source)?;
        let cni_version = required_version(&obj, source)?;
        let plugin = plugin_conf(obj, source, None)?;
        Ok(ConfList {
            name,
            cni_version,
            disable_check: false,
            plugins: vec![plugin],
            source: source.to_path_buf(),
        })
    }

    /// Reads a file, as a list or a single conf by its extension.
    pub fn from_file(path: &Path) -> Result<ConfList> {
        let bytes = fs::read(path).map_err(|e| Error::io("read cni config", path, e))?;
        if path.extension().is_some_and(|e| e == "conflist") {
            ConfList::from_list_bytes(&bytes, path)
        } else {
            ConfList::from_conf_bytes(&bytes, path)
        }
    }

    /// The list form of this network, as written to the result cache (so a
    /// DEL can run the plugins an ADD ran even after the file changed).
    pub fn to_value(&self) -> Value {
        let plugins = self
            .plugins
            .iter()
            .map(|p| Value::Object(p.raw.clone()))
            .collect();
        let mut obj = Map::new();
        obj.insert("cniVersion".into(), self.cni_version.clone().into());
        obj.insert("name".into(), self.name.clone().into());
        if self.disable_check {
            obj.insert("disableCheck".into(), true.into());
        }
        obj.insert("plugins".into(), Value::Array(plugins));
        Value::Object(obj)
    }

    /// The list from a cached [`ConfList::to_value`].
    pub fn from_value(value: &Value, source: &Path) -> Result<ConfList> {
        let bytes = serde_json::to_vec(value).map_err(|e| invalid(source, e.to_string()))?;
        ConfList::from_list_bytes(&bytes, source)
    }

    /// Whether CHECK exists at this list's version (0.4.0 and later).
    pub fn supports_check(&self) -> bool {
        self.cni_version != "0.3.0" && self.cni_version != "0.3.1"
    }
}

fn invalid(source: &Path, reason: String) -> Error {
    Error::InvalidConfig {
        source_name: if source.as_os_str().is_empty() {
            "<bytes>".into()
        } else {
            source.display().to_string()
        },
        reason,
    }
}

fn parse_object(bytes: &[u8], source: &Path) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid(source, "not a JSON object".into())),
        Err(e) => Err(invalid(source, format!("malformed JSON: {e}"))),
    }
}

fn required_name(obj: &Map<String, Value>, source: &Path) -> Result<String> {
    match obj.get("name") {
        Some(Value::String(name)) => {
            validate_network_name(name).map_err(|e| invalid(source, e.to_string()))?;
            Ok(name.clone())
        }
        Some(other) => Err(invalid(source, format!("name: not a string: {other}"))),
        None => Err(invalid(source, "missing \"name\"".into())),
    }
}

fn required_version(obj: &Map<String, Value>, source: &Path) -> Result<String> {
    match obj.get("cniVersion") {
        Some(Value::String(v)) if SUPPORTED_VERSIONS.contains(&v.as_str()) => Ok(v.clone()),
        Some(Value::String(v)) => Err(invalid(
            source,
            format!("cniVersion {v:?} is not supported (supported: {SUPPORTED_VERSIONS:?})"),
        )),
        Some(other) => Err(invalid(
            source,
            format!("cniVersion: not a string: {other}"),
        )),
        None => Err(invalid(source, "missing \"cniVersion\"".into())),
    }
}

fn plugin_conf(raw: Map<String, Value>, source: &Path, index: Option<usize>) -> Result<PluginConf> {
    let at = index.map(|i| format!("plugins[{i}]: ")).unwrap_or_default();
    let plugin_type = match raw.get("type") {
        Some(Value::String(t)) if valid_plugin_type(t) => t.clone(),
        Some(Value::String(t)) => {
            return Err(invalid(
                source,
                format!("{at}type {t:?} is not a plugin name"),
            ))
        }
        Some(other) => return Err(invalid(source, format!("{at}type: not a string: {other}"))),
        None => return Err(invalid(source, format!("{at}missing \"type\""))),
    };
    let mut capabilities = BTreeMap::new();
    match raw.get("capabilities") {
        None => {}
        Some(Value::Object(caps)) => {
            for (k, v) in caps {
                match v {
                    Value::Bool(b) => {
                        capabilities.insert(k.clone(), *b);
                    }
                    other => {
                        return Err(invalid(
                            source,
                            format!("{at}capabilities.{k}: not a bool: {other}"),
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(invalid(source, format!("{at}capabilities: not an object"))),
    }
    Ok(PluginConf {
        plugin_type,
        capabilities,
        raw,
    })
}

fn valid_plugin_type(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains(['/', '\0'])
}

/// Whether `c` may appear in a network name or container ID (after the
/// first character, which must be alphanumeric): libcni's rule.
fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn validate_id(what: &str, value: &str) -> Result<()> {
    let mut chars = value.chars();
    let ok = match chars.next() {
        Some(first) => first.is_ascii_alphanumeric() && chars.all(id_char),
        None => false,
    };
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "{what} {value:?}: must start with a letter or digit and hold only letters, digits, '_', '.', '-'"
        )));
    }
    if value.len() > 253 {
        return Err(Error::InvalidArgument(format!(
            "{what} {value:?}: too long"
        )));
    }
    Ok(())
}

/// A network name by libcni's rule (it also names cache and lease dirs).
pub fn validate_network_name(name: &str) -> Result<()> {
    validate_id("network name", name)
}

/// A container ID by libcni's rule.
pub fn validate_container_id(id: &str) -> Result<()> {
    validate_id("container id", id)
}

/// An interface name the kernel accepts, by libcni's rule.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > super::sys::MAX_IFNAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if bad {
        return Err(Error::InvalidArgument(format!(
            "interface name {name:?}: 1-15 characters, no '/', ':' or whitespace"
        )));
    }
    Ok(())
}

/// What a scan of the conf dir found: the first valid network, and every
/// file refused before it (or at all, when none is valid).
#[derive(Debug, Default)]
pub struct Loaded {
    /// The default network, if any file is valid.
    pub list: Option<ConfList>,
    /// Files refused, with why, in scan order.
    pub rejected: Vec<(PathBuf, String)>,
}

impl Loaded {
    /// Why nothing is usable, for the status and for errors.
    pub fn detail(&self) -> String {
        if self.rejected.is_empty() {
            return String::new();
        }
        let reasons: Vec<String> = self.rejected.iter().map(|(_, r)| r.clone()).collect();
        format!(" ({})", reasons.join("; "))
    }
}

/// The candidate config files of `dir` in name order: regular files with
/// one of the CNI extensions. A missing dir holds none.
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read cni conf dir", dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read cni conf dir", dir, e))?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        // follows symlinks, as libcni does (configs are often linked in)
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Scans `dir` for the default network. Blocking.
pub fn load_first(dir: &Path) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    for path in conf_files(dir)? {
        match ConfList::from_file(&path) {
            Ok(list) => {
                loaded.list = Some(list);
                break;
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cni config skipped");
                loaded.rejected.push((path, e.to_string()));
            }
        }
    }
    Ok(loaded)
}

/// The first valid config in `dir` whose network name is `name`. Blocking.
pub fn load_by_name(dir: &Path, name: &str) -> Result<ConfList> {
    validate_network_name(name)?;
    for path in conf_files(dir)? {
        if let Ok(list) = ConfList::from_file(&path) {
            if list.name == name {
                return Ok(list);
            }
        }
    }
    Err(Error::NetworkNotFound {
        name: name.into(),
        dir: dir.to_path_buf(),
    })
}

/// A cheap summary of a conf dir (names, sizes, modification times) to
/// tell whether it changed since it was last loaded.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The current [`Fingerprint`] of `dir`. Blocking (one readdir and a stat
/// per candidate file).
pub fn fingerprint(dir: &Path) -> Result<Fingerprint> {
    Ok(conf_files(dir)?
        .into_iter()
        .map(|p| {
            let meta = fs::metadata(&p).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect())
}

#[cfg(test)]
#[path = "conf_tests.rs"]
mod tests;
