//! A CNI ADD result, read from cniVersion 0.3.x/0.4.0 or 1.0.0 into one
//! domain type: interfaces, IPs (each pointing at its interface by index),
//! routes and DNS. 0.3.x/0.4.0 results carry a per-IP `version` that 1.0.0
//! dropped; both are read, and [`CniResult::to_value`] writes either, so a
//! cached result can be handed back as `prevResult` at the list's version.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Map, Value};

/// One interface a plugin created or configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The interface name (in the sandbox when `sandbox` is set).
    pub name: String,
    /// Its hardware address, if reported.
    pub mac: Option<String>,
    /// The netns path when the interface lives in the container; `None`
    /// for host-side interfaces (the bridge, the host end of a veth).
    pub sandbox: Option<String>,
}

/// One address assigned by the plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address with its prefix length (host bits kept: 10.89.0.2/24).
    pub address: IpNet,
    /// The gateway, if any.
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`] of the interface holding it.
    pub interface: Option<usize>,
}

/// One route set up in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub dst: IpNet,
    /// Next hop; `None` means the default gateway of the interface.
    pub gw: Option<IpAddr>,
}

/// DNS settings the plugins suggest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// Name servers.
    pub nameservers: Vec<String>,
    /// Local domain.
    pub domain: Option<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// resolv.conf options.
    pub options: Vec<String>,
}

/// The result of a network ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// The cniVersion the result was written in.
    pub cni_version: String,
    /// Interfaces, referred to by index from `ips`.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS.
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result document; the message says what is wrong with it.
    pub fn from_value(value: &Value) -> Result<CniResult, String> {
        let obj = value.as_object().ok_or("result is not a JSON object")?;
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(v)) => v.clone(),
            _ => return Err("result has no cniVersion".into()),
        };
        if obj.contains_key("ip4") || obj.contains_key("ip6") {
            return Err(format!(
                "result in the pre-0.3.0 format (cniVersion {cni_version:?}) is not supported"
            ));
        }
        let interfaces = array(obj, "interfaces")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let o = v
                    .as_object()
                    .ok_or(format!("interfaces[{i}]: not an object"))?;
                Ok(Interface {
                    name: string(o, "name")?.ok_or(format!("interfaces[{i}]: no name"))?,
                    mac: string(o, "mac")?.filter(|s| !s.is_empty()),
                    sandbox: string(o, "sandbox")?.filter(|s| !s.is_empty()),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let ips = array(obj, "ips")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let o = v.as_object().ok_or(format!("ips[{i}]: not an object"))?;
                let address = string(o, "address")?.ok_or(format!("ips[{i}]: no address"))?;
                let address: IpNet = address
                    .parse()
                    .map_err(|e| format!("ips[{i}].address {address:?}: {e}"))?;
                let gateway = ip(o, "gateway").map_err(|e| format!("ips[{i}].{e}"))?;
                let interface = match o.get("interface") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .filter(|&n| (n as usize) < interfaces.len())
                            .ok_or(format!("ips[{i}].interface {v}: no such interface"))?
                            as usize,
                    ),
                };
                Ok(IpConfig {
                    address,
                    gateway,
                    interface,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let routes = array(obj, "routes")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let o = v.as_object().ok_or(format!("routes[{i}]: not an object"))?;
                let dst = string(o, "dst")?.ok_or(format!("routes[{i}]: no dst"))?;
                let dst: IpNet = dst
                    .parse()
                    .map_err(|e| format!("routes[{i}].dst {dst:?}: {e}"))?;
                let gw = ip(o, "gw").map_err(|e| format!("routes[{i}].{e}"))?;
                Ok(Route { dst, gw })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => Dns::default(),
            Some(Value::Object(o)) => Dns {
                nameservers: strings(o, "nameservers")?,
                domain: string(o, "domain")?.filter(|s| !s.is_empty()),
                search: strings(o, "search")?,
                options: strings(o, "options")?,
            },
            Some(_) => return Err("dns: not an object".into()),
        };
        Ok(CniResult {
            cni_version,
            interfaces,
            ips,
            routes,
            dns,
        })
    }

    /// Writes the result at `version`: 1.0.0 without per-IP `version`,
    /// 0.3.x/0.4.0 with it.
    pub fn to_value(&self, version: &str) -> Value {
        let with_ip_version = version != "1.0.0";
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), i.name.clone().into());
                if let Some(mac) = &i.mac {
                    o.insert("mac".into(), mac.clone().into());
                }
                if let Some(sandbox) = &i.sandbox {
                    o.insert("sandbox".into(), sandbox.clone().into());
                }
                Value::Object(o)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = Map::new();
                if with_ip_version {
                    let v = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    o.insert("version".into(), v.into());
                }
                o.insert("address".into(), ip.address.to_string().into());
                if let Some(gw) = ip.gateway {
                    o.insert("gateway".into(), gw.to_string().into());
                }
                if let Some(idx) = ip.interface {
                    o.insert("interface".into(), idx.into());
                }
                Value::Object(o)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| match r.gw {
                Some(gw) => json!({"dst": r.dst.to_string(), "gw": gw.to_string()}),
                None => json!({"dst": r.dst.to_string()}),
            })
            .collect();
        let mut dns = Map::new();
        if !self.dns.nameservers.is_empty() {
            dns.insert("nameservers".into(), self.dns.nameservers.clone().into());
        }
        if let Some(d) = &self.dns.domain {
            dns.insert("domain".into(), d.clone().into());
        }
        if !self.dns.search.is_empty() {
            dns.insert("search".into(), self.dns.search.clone().into());
        }
        if !self.dns.options.is_empty() {
            dns.insert("options".into(), self.dns.options.clone().into());
        }
        let mut o = Map::new();
        o.insert("cniVersion".into(), version.into());
        if !interfaces.is_empty() {
            o.insert("interfaces".into(), interfaces.into());
        }
        if !ips.is_empty() {
            o.insert("ips".into(), ips.into());
        }
        if !routes.is_empty() {
            o.insert("routes".into(), routes.into());
        }
        o.insert("dns".into(), Value::Object(dns));
        Value::Object(o)
    }

    /// The addresses on interfaces inside the container (those with a
    /// sandbox), or on no named interface; what a pod status reports.
    pub fn container_ips(&self) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(i) => self.interfaces[i].sandbox.is_some(),
                None => true,
            })
            .map(|ip| ip.address)
            .collect()
    }

    /// The addresses on the container interface named `ifname`.
    pub fn ips_of(&self, ifname: &str) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(|ip| {
                ip.interface.is_some_and(|i| {
                    let iface = &self.interfaces[i];
                    iface.name == ifname && iface.sandbox.is_some()
                })
            })
            .map(|ip| ip.address)
            .collect()
    }
}

fn array<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{key}: not a list")),
    }
}

fn string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key}: not a string: {other}")),
    }
}

fn strings(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    array(obj, key)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or(format!("{key}: not a list of strings"))
        })
        .collect()
}

fn ip(obj: &Map<String, Value>, key: &str) -> Result<Option<IpAddr>, String> {
    match string(obj, key)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| format!("{key} {s:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V040: &str = r#"{
      "cniVersion": "0.4.0",
      "interfaces": [
        {"name": "berth-nt0", "mac": "aa:bb:cc:dd:ee:01"},
        {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/berth/netns/p1"}
      ],
      "ips": [
        {"version": "4", "address": "10.89.0.2/24", "gateway": "10.89.0.1", "interface": 2},
        {"version": "6", "address": "fd00:89::2/64", "interface": 2}
      ],
      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "10.89.0.254"}],
      "dns": {"nameservers": ["10.89.0.1"], "search": ["svc.local"]}
    }"#;

    const V100: &str = r#"{
      "cniVersion": "1.0.0",
      "interfaces": [{"name": "eth0", "sandbox": "/x"}, {"name": "eth1", "sandbox": "/x"}],
      "ips": [{"address": "10.89.0.3/24", "interface": 0}, {"address": "10.89.9.3/24", "interface": 1}],
      "dns": {}
    }"#;

    fn parse(s: &str) -> CniResult {
        CniResult::from_value(&serde_json::from_str(s).unwrap()).unwrap()
    }

    #[test]
    fn reads_040() {
        let r = parse(V040);
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[0].sandbox, None);
        assert_eq!(r.ips[0].address.to_string(), "10.89.0.2/24");
        assert_eq!(r.ips[0].address.addr().to_string(), "10.89.0.2");
        assert_eq!(r.ips[0].gateway, Some("10.89.0.1".parse().unwrap()));
        assert_eq!(r.routes[1].gw, Some("10.89.0.254".parse().unwrap()));
        assert_eq!(r.dns.nameservers, ["10.89.0.1"]);
        let ips: Vec<String> = r.container_ips().iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.89.0.2/24", "fd00:89::2/64"]);
    }

    #[test]
    fn reads_100_and_picks_per_interface() {
        let r = parse(V100);
        assert_eq!(r.ips_of("eth1")[0].to_string(), "10.89.9.3/24");
        assert!(r.ips_of("eth7").is_empty());
        assert_eq!(r.container_ips().len(), 2);
    }

    #[test]
    fn converts_between_versions() {
        let r = parse(V040);
        let v1 = r.to_value("1.0.0");
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert!(v1["ips"][0].get("version").is_none());
        let back = CniResult::from_value(&v1).unwrap();
        assert_eq!(back.ips, r.ips);
        assert_eq!(back.interfaces, r.interfaces);
        assert_eq!(back.routes, r.routes);
        let v04 = parse(V100).to_value("0.4.0");
        assert_eq!(v04["ips"][1]["version"], "4");
        assert_eq!(v04["ips"][1]["interface"], 1);
    }

    #[test]
    fn refuses_broken_results() {
        for (doc, want) in [
            (r#"[]"#, "not a JSON object"),
            (r#"{}"#, "no cniVersion"),
            (r#"{"cniVersion":"0.2.0","ip4":{}}"#, "pre-0.3.0"),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.1.1"}]}"#,
                "ips[0].address",
            ),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.1.1/24","interface":3}]}"#,
                "no such interface",
            ),
            (
                r#"{"cniVersion":"1.0.0","routes":[{"gw":"1.1.1.1"}]}"#,
                "no dst",
            ),
        ] {
            let e = CniResult::from_value(&serde_json::from_str(doc).unwrap()).unwrap_err();
            assert!(e.contains(want), "{doc}: {e}");
        }
    }
}
