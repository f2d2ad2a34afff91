//! Just enough rtnetlink to build a stand-in interface: a veth pair and
//! addresses on it, in the calling thread's network namespace. Messages
//! are built by hand (headers and attributes, 4-byte aligned) and sent on
//! a NETLINK_ROUTE socket; each request asks for an ack.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use ipnet::IpNet;
use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};

use super::sys;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

/// One netlink request under construction.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
        Msg { buf }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn align(&mut self) {
        let padded = self.buf.len().next_multiple_of(4);
        self.buf.resize(padded, 0);
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).expect("short attribute");
        self.put(&len.to_ne_bytes());
        self.put(&kind.to_ne_bytes());
        self.put(data);
        self.align();
    }

    fn attr_str(&mut self, kind: u16, s: &str) {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data);
    }

    fn nest_start(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.put(&[0, 0]);
        self.put(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn nest_end(&mut self, at: usize) {
        let len = u16::try_from(self.buf.len() - at).expect("short nest");
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// An empty `ifinfomsg` (family, type, index, flags, change all zero).
    fn ifinfo(&mut self) {
        self.put(&[0u8; 16]);
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).expect("short message");
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// Sends one request and waits for its ack.
fn request(msg: Msg) -> io::Result<()> {
    let sock: OwnedFd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let bytes = msg.finish();
    send(sock.as_raw_fd(), &bytes, MsgFlags::empty())?;
    let mut buf = vec![0u8; 8192];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    parse_ack(&buf[..n])
}

/// Reads the kernel's answer: an NLMSG_ERROR whose code is 0 is the ack.
fn parse_ack(buf: &[u8]) -> io::Result<()> {
    if buf.len() < 20 {
        return Err(io::Error::other("short netlink answer"));
    }
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    if kind != NLMSG_ERROR {
        return Err(io::Error::other(format!(
            "unexpected netlink answer type {kind}"
        )));
    }
    let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
    match code {
        0 => Ok(()),
        c => Err(io::Error::from_raw_os_error(-c)),
    }
}

/// Creates the veth pair `name` <-> `peer` (both ends here).
pub(crate) fn add_veth_pair(name: &str, peer: &str) -> io::Result<()> {
    let mut msg = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    msg.ifinfo();
    msg.attr_str(IFLA_IFNAME, name);
    let info = msg.nest_start(IFLA_LINKINFO);
    msg.attr_str(IFLA_INFO_KIND, "veth");
    let data = msg.nest_start(IFLA_INFO_DATA);
    let peer_at = msg.nest_start(VETH_INFO_PEER);
    msg.ifinfo();
    msg.attr_str(IFLA_IFNAME, peer);
    msg.nest_end(peer_at);
    msg.nest_end(data);
    msg.nest_end(info);
    request(msg)
}

/// Adds `addr` (with its prefix) to interface `ifname`.
pub(crate) fn add_address(ifname: &str, addr: IpNet) -> io::Result<()> {
    let index = sys::ifindex(ifname)?;
    let (family, bytes) = match addr.addr() {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let mut msg = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    // ifaddrmsg: family, prefix length, flags, scope (universe), index
    msg.put(&[family, addr.prefix_len(), 0, 0]);
    msg.put(&index.to_ne_bytes());
    msg.attr(IFA_LOCAL, &bytes);
    msg.attr(IFA_ADDRESS, &bytes);
    request(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_nests_sized() {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo();
        m.attr_str(IFLA_IFNAME, "eth0"); // 4 + 5 -> 12 with padding
        let at = m.nest_start(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth"); // 12
        m.nest_end(at);
        let bytes = m.finish();
        assert_eq!(bytes.len(), 16 + 16 + 12 + 4 + 12);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(
            u16::from_ne_bytes([bytes[32], bytes[33]]),
            9,
            "name attr length excludes padding"
        );
        assert_eq!(
            u16::from_ne_bytes([bytes[44], bytes[45]]),
            16,
            "nest covers its children"
        );
        assert_eq!(
            u16::from_ne_bytes([bytes[46], bytes[47]]),
            IFLA_LINKINFO | NLA_F_NESTED
        );
    }

    #[test]
    fn acks_and_errors() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        parse_ack(&ack).unwrap();
        ack[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(
            parse_ack(&ack).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert!(parse_ack(&ack[..8]).is_err());
    }
}
