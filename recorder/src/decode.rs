//! From a captured frame to a TCP segment: link layer by hand, IP and TCP with `etherparse`.

use std::fmt;
use std::net::SocketAddr;

use etherparse::{IpNumber, LaxIpSlice, TcpSlice};

use crate::read::LinkType;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// More stacked VLAN tags than this is treated as garbage.
const MAX_VLAN_TAGS: usize = 4;

/// TCP header flags; a newtype over the flag byte so unknown combinations survive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronise sequence numbers: opens a connection.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset: aborts the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment field is valid.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer valid.
    pub const URG: TcpFlags = TcpFlags(0x20);

    /// True if every flag of `other` is set.
    #[must_use]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Display for TcpFlags {
    /// Like tshark's `tcp.flags.str`, but only the set flags: `SYN,ACK`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::FIN, "FIN"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::ACK, "ACK"),
            (TcpFlags::URG, "URG"),
        ];
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// One TCP segment as the reassembler needs it, borrowing the payload from the captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Sender address and port.
    pub src: SocketAddr,
    /// Receiver address and port.
    pub dst: SocketAddr,
    /// Sequence number of the first payload byte (of the SYN if SYN is set).
    pub seq: u32,
    /// Acknowledgment number (meaningful when [`TcpFlags::ACK`] is set).
    pub ack: u32,
    /// Header flags.
    pub flags: TcpFlags,
    /// Advertised window (unscaled).
    pub window: u16,
    /// The captured payload bytes.
    pub payload: &'a [u8],
    /// The capture cut the packet (snaplen), so `payload` is only a prefix of what was sent.
    pub truncated: bool,
}

impl TcpSegment<'_> {
    /// True if every flag of `flag` is set; shorthand for `seg.flags.contains(flag)`.
    #[must_use]
    pub const fn has(&self, flag: TcpFlags) -> bool {
        self.flags.contains(flag)
    }
}

/// Why a frame yielded no TCP segment; counted, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The interface's link type is not one this crate decodes.
    UnsupportedLinkType(LinkType),
    /// The frame carries something other than IPv4/IPv6 (ARP, LLDP …).
    NotIp,
    /// IP, but not TCP (UDP, ICMP …).
    NotTcp,
    /// An IP fragment; fragments are not reassembled.
    Fragment,
    /// Headers too short or inconsistent.
    Malformed,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::UnsupportedLinkType(l) => write!(f, "unsupported link type {l}"),
            SkipReason::NotIp => f.write_str("not IP"),
            SkipReason::NotTcp => f.write_str("not TCP"),
            SkipReason::Fragment => f.write_str("IP fragment"),
            SkipReason::Malformed => f.write_str("malformed headers"),
        }
    }
}

/// Finds the TCP segment in a captured frame of the given link type; the single entry point
/// between packet reading and TCP reassembly.
pub fn decode_tcp(link_type: LinkType, frame: &[u8]) -> Result<TcpSegment<'_>, SkipReason> {
    let ip = network_layer(link_type, frame)?;
    let (ip, _ext_error) = LaxIpSlice::from_slice(ip).map_err(|_| SkipReason::Malformed)?;
    let payload = ip.payload();
    if payload.fragmented {
        return Err(SkipReason::Fragment);
    }
    if payload.ip_number != IpNumber::TCP {
        return Err(SkipReason::NotTcp);
    }
    let tcp = TcpSlice::from_slice(payload.payload).map_err(|_| SkipReason::Malformed)?;
    let flags = [
        (tcp.fin(), TcpFlags::FIN),
        (tcp.syn(), TcpFlags::SYN),
        (tcp.rst(), TcpFlags::RST),
        (tcp.psh(), TcpFlags::PSH),
        (tcp.ack(), TcpFlags::ACK),
        (tcp.urg(), TcpFlags::URG),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0u8, |acc, (_, flag)| acc | flag.0);
    Ok(TcpSegment {
        src: SocketAddr::new(ip.source_addr(), tcp.source_port()),
        dst: SocketAddr::new(ip.destination_addr(), tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(flags),
        window: tcp.window_size(),
        payload: tcp.payload(),
        truncated: payload.incomplete,
    })
}

/// Strips the link-layer header, returning the bytes starting at the IP header.
fn network_layer(link_type: LinkType, frame: &[u8]) -> Result<&[u8], SkipReason> {
    match link_type {
        LinkType::ETHERNET => {
            let ethertype = be16(frame, 12)?;
            by_ethertype(ethertype, frame.get(14..).ok_or(SkipReason::Malformed)?)
        }
        LinkType::RAW
        | LinkType::RAW_BSD
        | LinkType::RAW_OPENBSD
        | LinkType::IPV4
        | LinkType::IPV6 => Ok(frame),
        LinkType::NULL | LinkType::LOOP => {
            let family = match frame.get(..4) {
                Some(&[a, b, c, d]) => [a, b, c, d],
                _ => return Err(SkipReason::Malformed),
            };
            let (le, be) = (u32::from_le_bytes(family), u32::from_be_bytes(family));
            // The writer's byte order is not recorded for NULL; the family is small either way.
            let family = if le <= 0xFFFF { le } else { be };
            match family {
                // AF_INET everywhere; AF_INET6 on NetBSD/OpenBSD (24), FreeBSD (28), macOS (30).
                2 | 24 | 28 | 30 => frame.get(4..).ok_or(SkipReason::Malformed),
                _ => Err(SkipReason::NotIp),
            }
        }
        LinkType::LINUX_SLL => {
            let protocol = be16(frame, 14)?;
            by_ethertype(protocol, frame.get(16..).ok_or(SkipReason::Malformed)?)
        }
        LinkType::LINUX_SLL2 => {
            let protocol = be16(frame, 0)?;
            by_ethertype(protocol, frame.get(20..).ok_or(SkipReason::Malformed)?)
        }
        other => Err(SkipReason::UnsupportedLinkType(other)),
    }
}

/// Follows VLAN tags to the IP header.
fn by_ethertype(mut ethertype: u16, mut rest: &[u8]) -> Result<&[u8], SkipReason> {
    for _ in 0..=MAX_VLAN_TAGS {
        match ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return Ok(rest),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                // Tag control (2 bytes), then the inner EtherType.
                ethertype = be16(rest, 2)?;
                rest = rest.get(4..).ok_or(SkipReason::Malformed)?;
            }
            _ => return Err(SkipReason::NotIp),
        }
    }
    Err(SkipReason::Malformed)
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, SkipReason> {
    match bytes.get(at..at.saturating_add(2)) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(SkipReason::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 2], 64)
            .tcp(40000, 4840, 1000, 65535)
            .ack(77)
            .psh()
            .write(&mut out, payload)
            .unwrap();
        out
    }

    #[test]
    fn raw_ipv4() {
        let frame = ipv4_tcp(b"HELF");
        let seg = decode_tcp(LinkType::RAW, &frame).unwrap();
        assert_eq!(seg.src, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(seg.dst, "127.0.0.2:4840".parse().unwrap());
        assert_eq!(seg.seq, 1000);
        assert_eq!(seg.ack, 77);
        assert_eq!(seg.flags, TcpFlags(TcpFlags::ACK.0 | TcpFlags::PSH.0));
        assert_eq!(seg.flags.to_string(), "PSH,ACK");
        assert_eq!(seg.payload, b"HELF");
        assert!(!seg.truncated);
    }

    #[test]
    fn ethernet_with_two_vlan_tags_and_padding() {
        let ip = ipv4_tcp(b"x");
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x88, 0xA8, 0x00, 0x05, 0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&[0; 6]); // Ethernet padding must not become payload.
        let seg = decode_tcp(LinkType::ETHERNET, &frame).unwrap();
        assert_eq!(seg.payload, b"x");
    }

    #[test]
    fn null_loopback_both_byte_orders() {
        for family in [[2, 0, 0, 0], [0, 0, 0, 2]] {
            let mut frame = family.to_vec();
            frame.extend_from_slice(&ipv4_tcp(b"ab"));
            assert_eq!(decode_tcp(LinkType::NULL, &frame).unwrap().payload, b"ab");
        }
        let mut frame = vec![0, 0, 0, 7];
        frame.extend_from_slice(&ipv4_tcp(b"ab"));
        assert_eq!(decode_tcp(LinkType::LOOP, &frame), Err(SkipReason::NotIp));
    }

    #[test]
    fn skips() {
        let mut udp = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(1, 2)
            .write(&mut udp, b"u")
            .unwrap();
        assert_eq!(decode_tcp(LinkType::RAW, &udp), Err(SkipReason::NotTcp));
        assert_eq!(
            decode_tcp(LinkType(147), &udp),
            Err(SkipReason::UnsupportedLinkType(LinkType(147)))
        );
        assert_eq!(decode_tcp(LinkType::RAW, &[]), Err(SkipReason::Malformed));
        assert_eq!(
            decode_tcp(LinkType::ETHERNET, &[0; 13]),
            Err(SkipReason::Malformed)
        );
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 0]);
        assert_eq!(decode_tcp(LinkType::ETHERNET, &arp), Err(SkipReason::NotIp));
        // IPv4 fragment: set MF.
        let mut frag = ipv4_tcp(b"abc");
        frag[6] = 0x20;
        assert_eq!(decode_tcp(LinkType::RAW, &frag), Err(SkipReason::Fragment));
    }

    #[test]
    fn snaplen_cut_payload_is_flagged() {
        let frame = ipv4_tcp(b"0123456789");
        let seg = decode_tcp(LinkType::IPV4, &frame[..frame.len() - 4]).unwrap();
        assert_eq!(seg.payload, b"012345");
        assert!(seg.truncated);
    }
}
