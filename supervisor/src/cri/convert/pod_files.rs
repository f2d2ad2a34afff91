//! The text of a pod's `/etc/resolv.conf`, `/etc/hosts` and
//! `/etc/hostname`, which its containers bind-mount.

use k8s_cri::v1 as cri;

/// The hosts file of a pod on its own network (the kubelet mounts its own
/// over it for most pods; this one serves the rest).
pub const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// resolv.conf from the pod's DNS config; with none (or an empty one) the
/// host's file is used as is.
pub fn resolv_conf(dns: Option<&cri::DnsConfig>, host_resolv_conf: &str) -> String {
    let Some(d) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return host_resolv_conf.to_string();
    };
    let mut out = String::new();
    if !d.searches.is_empty() {
        out.push_str(&format!("search {}\n", d.searches.join(" ")));
    }
    for s in &d.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !d.options.is_empty() {
        out.push_str(&format!("options {}\n", d.options.join(" ")));
    }
    out
}

/// The pod's hosts file: the host's for host-network pods, otherwise
/// localhost entries plus the pod's hostname on the loopback address.
pub fn hosts(host_network: bool, host_hosts: &str, hostname: &str) -> String {
    if host_network {
        return host_hosts.to_string();
    }
    let mut out = DEFAULT_HOSTS.to_string();
    if !hostname.is_empty() {
        out.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    out
}

/// The pod's hostname file.
pub fn hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config_or_host() {
        let d = cri::DnsConfig {
            servers: vec!["10.90.0.10".into(), "10.90.0.11".into()],
            searches: vec!["svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into(), "timeout:1".into()],
        };
        assert_eq!(
            resolv_conf(Some(&d), "nameserver 1.1.1.1\n"),
            "search svc.cluster.local cluster.local\nnameserver 10.90.0.10\nnameserver 10.90.0.11\noptions ndots:5 timeout:1\n"
        );
        assert_eq!(
            resolv_conf(None, "nameserver 1.1.1.1\n"),
            "nameserver 1.1.1.1\n"
        );
        assert_eq!(resolv_conf(Some(&Default::default()), "host\n"), "host\n");
        let only_opts = cri::DnsConfig {
            options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(resolv_conf(Some(&only_opts), "host\n"), "options ndots:2\n");
    }

    #[test]
    fn hosts_and_hostname() {
        let h = hosts(false, "ignored", "web-1");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("127.0.1.1\tweb-1\n"));
        assert_eq!(hosts(true, "127.0.0.1 host\n", "x"), "127.0.0.1 host\n");
        assert_eq!(hostname("web-1"), "web-1\n");
    }
}
