//! The host's IPv4 routes (`/proc/net/route`), for the overlap check of a
//! new network's subnet. The default route overlaps everything and is
//! left out.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// One route of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostRoute {
    /// Its destination.
    pub(super) dest: Ipv4Net,
    /// Its device.
    pub(super) device: String,
}

/// The host's routes other than default ones; none when unreadable.
pub(super) fn host_routes() -> Vec<HostRoute> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Parses `/proc/net/route`: addresses and masks in little-endian hex.
fn parse(text: &str) -> Vec<HostRoute> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        let mask = u32::from_be(mask.to_be().swap_bytes());
        let prefix = mask.count_ones() as u8;
        if prefix == 0 {
            continue;
        }
        let dest = Ipv4Addr::from(u32::from_be(dest.to_be().swap_bytes()));
        if let Ok(net) = Ipv4Net::new(dest, prefix) {
            out.push(HostRoute {
                dest: net.trunc(),
                device: f[0].to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_table() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
cni0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r = parse(text);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].dest.to_string(), "192.168.2.0/24");
        assert_eq!(r[0].device, "eth0");
        assert_eq!(r[1].dest.to_string(), "10.88.0.0/16");
    }
}
