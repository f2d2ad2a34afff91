//! Published ports. The portmap plugin DNATs a host port to the container
//! but binds nothing, so berthd itself binds each published host port
//! (TCP listener or UDP socket, never accepting) for as long as the
//! container runs: a port another process holds is refused at start with
//! a clear error, a port berthd holds cannot be taken by another process,
//! and host port 0 gets a free port from the kernel. After berthd
//! restarts, the ports of running containers are bound again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use super::model::PortSpec;
use super::{Error, Result};
use crate::network::{PortMapping, Protocol};

/// A host port berthd holds for a container.
#[derive(Debug)]
pub(super) enum Held {
    /// tcp
    Tcp(#[allow(dead_code)] TcpListener),
    /// udp (and sctp: held as udp)
    Udp(#[allow(dead_code)] UdpSocket),
}

fn addr(p: &PortSpec) -> SocketAddr {
    SocketAddr::new(
        p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        p.host_port,
    )
}

/// Binds one published port; port 0 becomes the port the kernel chose.
pub(super) fn bind(p: &mut PortSpec) -> Result<Held> {
    let a = addr(p);
    let taken = |e: std::io::Error| {
        Error::FailedPrecondition(format!(
            "port {}:{}/{} is not available on the host: {e}",
            a.ip(),
            a.port(),
            p.protocol
        ))
    };
    let held = match p.protocol.as_str() {
        "tcp" => {
            let l = TcpListener::bind(a).map_err(taken)?;
            p.host_port = l.local_addr().map_err(taken)?.port();
            Held::Tcp(l)
        }
        _ => {
            let s = UdpSocket::bind(a).map_err(taken)?;
            p.host_port = s.local_addr().map_err(taken)?.port();
            Held::Udp(s)
        }
    };
    Ok(held)
}

/// Binds every port of a run; on failure none is held.
pub(super) fn bind_all(ports: &mut [PortSpec]) -> Result<Vec<Held>> {
    let mut held = Vec::with_capacity(ports.len());
    for p in ports.iter_mut() {
        held.push(bind(p)?);
    }
    Ok(held)
}

/// The CNI capability form.
pub(super) fn mapping(p: &PortSpec) -> PortMapping {
    PortMapping {
        host_port: p.host_port,
        container_port: p.container_port,
        protocol: match p.protocol.as_str() {
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => Protocol::Tcp,
        },
        host_ip: p.host_ip,
    }
}

/// Checks a requested port: a protocol berthd knows, a container port.
pub(super) fn validate(p: &PortSpec) -> Result<()> {
    if !matches!(p.protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(Error::InvalidArgument(format!(
            "port {}: protocol {:?} (tcp, udp or sctp)",
            p.container_port, p.protocol
        )));
    }
    if p.container_port == 0 {
        return Err(Error::InvalidArgument(
            "published port: the container port must not be 0".into(),
        ));
    }
    Ok(())
}

/// The ports `-P` publishes: every port the image exposes (`80/tcp`,
/// `53/udp`, `8080`), on a free host port.
pub(super) fn exposed_ports(exposed: &[String]) -> Vec<PortSpec> {
    exposed
        .iter()
        .filter_map(|e| {
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            Some(PortSpec {
                host_ip: None,
                host_port: 0,
                container_port: port.parse().ok()?,
                protocol: proto.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_and_refuses_a_taken_port() {
        let mut p = PortSpec {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 0,
            container_port: 80,
            protocol: "tcp".into(),
        };
        let held = bind(&mut p).unwrap();
        assert_ne!(p.host_port, 0);
        let mut again = p.clone();
        let e = bind(&mut again).unwrap_err();
        assert!(e.to_string().contains("not available"), "{e}");
        drop(held);
        bind(&mut again).unwrap();
        assert_eq!(
            exposed_ports(&["80/tcp".into(), "53/udp".into(), "x".into()]).len(),
            2
        );
        assert!(validate(&PortSpec {
            protocol: "icmp".into(),
            ..p
        })
        .is_err());
    }
}
