//! Tiny capture writers and packet builders for the integration tests.
#![allow(dead_code)]

use etherparse::PacketBuilder;
use std::collections::HashMap;
use std::net::SocketAddr;
use uatap_recorder::{ConnId, Direction, StreamEvent};

pub const SYN: u8 = 0x02;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;
pub const NONE: u8 = 0;

/// An IPv4 or IPv6 + TCP packet (no link layer); `ack` sets the ACK flag.
pub fn ip_tcp(
    src: &str,
    dst: &str,
    seq: u32,
    ack: Option<u32>,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    let builder = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            PacketBuilder::ipv4(s.ip().octets(), d.ip().octets(), 64)
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            PacketBuilder::ipv6(s.ip().octets(), d.ip().octets(), 64)
        }
        _ => panic!("mixed address families"),
    };
    let mut b = builder.tcp(src.port(), dst.port(), seq, 65535);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    if let Some(ack) = ack {
        b = b.ack(ack);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// Wraps an IP packet in an Ethernet II header.
pub fn ethernet(ip: &[u8]) -> Vec<u8> {
    let ethertype: [u8; 2] = if ip[0] >> 4 == 6 {
        [0x86, 0xDD]
    } else {
        [0x08, 0x00]
    };
    let mut out = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1];
    out.extend_from_slice(&ethertype);
    out.extend_from_slice(ip);
    out
}

fn ethertype_of(ip: &[u8]) -> [u8; 2] {
    if ip[0] >> 4 == 6 {
        [0x86, 0xDD]
    } else {
        [0x08, 0x00]
    }
}

/// Linux cooked v1 header (16 bytes) + IP.
pub fn sll(ip: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&ethertype_of(ip));
    out.extend_from_slice(ip);
    out
}

/// Linux cooked v2 header (20 bytes) + IP.
pub fn sll2(ip: &[u8]) -> Vec<u8> {
    let mut out = ethertype_of(ip).to_vec();
    out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(ip);
    out
}

/// BSD loopback header with the given address family (little-endian) + IP.
pub fn null_le(family: u32, ip: &[u8]) -> Vec<u8> {
    let mut out = family.to_le_bytes().to_vec();
    out.extend_from_slice(ip);
    out
}

/// One packet for a writer: time in nanoseconds and frame bytes.
#[derive(Clone)]
pub struct Frame {
    pub nanos: u64,
    pub data: Vec<u8>,
}

pub fn frames(datas: Vec<Vec<u8>>) -> Vec<Frame> {
    datas
        .into_iter()
        .enumerate()
        .map(|(i, data)| Frame {
            nanos: 1_700_000_000_000_000_000 + (i as u64) * 1_000_123,
            data,
        })
        .collect()
}

/// Classic pcap file.
pub fn pcap(link: u32, nanosecond: bool, big_endian: bool, frames: &[Frame]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend_from_slice(&u32b(if nanosecond { 0xA1B2_3C4D } else { 0xA1B2_C3D4 }));
    out.extend_from_slice(&u16b(2));
    out.extend_from_slice(&u16b(4));
    out.extend_from_slice(&u32b(0));
    out.extend_from_slice(&u32b(0));
    out.extend_from_slice(&u32b(262_144));
    out.extend_from_slice(&u32b(link));
    for f in frames {
        let secs = (f.nanos / 1_000_000_000) as u32;
        let frac = (f.nanos % 1_000_000_000) as u32;
        let frac = if nanosecond { frac } else { frac / 1_000 };
        out.extend_from_slice(&u32b(secs));
        out.extend_from_slice(&u32b(frac));
        out.extend_from_slice(&u32b(f.data.len() as u32));
        out.extend_from_slice(&u32b(f.data.len() as u32));
        out.extend_from_slice(&f.data);
    }
    out
}

/// One pcapng interface: link type and optional if_tsresol.
pub struct Iface {
    pub link: u16,
    pub tsresol: Option<u8>,
}

/// pcapng section writer.
pub struct Section {
    pub big_endian: bool,
    bytes: Vec<u8>,
}

impl Section {
    pub fn new(big_endian: bool) -> Self {
        let mut s = Section {
            big_endian,
            bytes: Vec::new(),
        };
        let mut body = Vec::new();
        body.extend_from_slice(&s.u32b(0x1A2B_3C4D));
        body.extend_from_slice(&s.u16b(1));
        body.extend_from_slice(&s.u16b(0));
        body.extend_from_slice(&(-1i64).to_le_bytes());
        // an shb_userappl option, to exercise option parsing
        body.extend_from_slice(&s.opt(4, b"uatap tests"));
        body.extend_from_slice(&s.opt(0, b""));
        s.block(0x0A0D_0D0A, &body);
        s
    }

    fn u32b(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u16b(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn opt(&self, code: u16, value: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(&self.u16b(code));
        o.extend_from_slice(&self.u16b(value.len() as u16));
        o.extend_from_slice(value);
        while o.len() % 4 != 0 {
            o.push(0);
        }
        o
    }

    fn block(&mut self, block_type: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let total = (body.len() + 12) as u32;
        let t = self.u32b(block_type);
        let l = self.u32b(total);
        self.bytes.extend_from_slice(&t);
        self.bytes.extend_from_slice(&l);
        self.bytes.extend_from_slice(&body);
        self.bytes.extend_from_slice(&l);
    }

    pub fn interface(&mut self, iface: Iface) -> &mut Self {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16b(iface.link));
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&self.u32b(0));
        body.extend_from_slice(&self.opt(2, b"lo"));
        if let Some(r) = iface.tsresol {
            body.extend_from_slice(&self.opt(9, &[r]));
        }
        body.extend_from_slice(&self.opt(0, b""));
        self.block(1, &body);
        self
    }

    /// An EPB with a raw timestamp in the interface's units.
    pub fn packet(&mut self, if_id: u32, ts_units: u64, data: &[u8]) -> &mut Self {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32b(if_id));
        body.extend_from_slice(&self.u32b((ts_units >> 32) as u32));
        body.extend_from_slice(&self.u32b(ts_units as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        body.extend_from_slice(&self.opt(1, b"a comment"));
        body.extend_from_slice(&self.opt(0, b""));
        self.block(6, &body);
        self
    }

    /// An interface statistics block or other block the reader must skip.
    pub fn other_block(&mut self) -> &mut Self {
        self.block(0x0000_0BAD, &[1, 2, 3, 4, 5]);
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// pcapng with one section and one interface.
pub fn pcapng(link: u16, tsresol: Option<u8>, frames: &[Frame]) -> Vec<u8> {
    let per_sec: u64 = match tsresol {
        None => 1_000_000,
        Some(r) if r & 0x80 == 0 => 10u64.pow(r as u32),
        Some(r) => 1 << (r & 0x7F),
    };
    let mut s = Section::new(false);
    s.interface(Iface { link, tsresol });
    for f in frames {
        let units = (f.nanos as u128 * per_sec as u128 / 1_000_000_000) as u64;
        s.packet(0, units, &f.data);
    }
    s.bytes().to_vec()
}

/// Writes bytes to a fresh file under the target dir and returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("uatap-recorder-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Per connection and direction: concatenated data, gaps as '#'.
pub fn streams(events: &[StreamEvent<'_>]) -> HashMap<(ConnId, Direction), Vec<u8>> {
    let mut out: HashMap<(ConnId, Direction), Vec<u8>> = HashMap::new();
    for e in events {
        match e {
            StreamEvent::Data {
                conn,
                dir,
                offset_in_stream,
                bytes,
                ..
            } => {
                let s = out.entry((*conn, *dir)).or_default();
                assert_eq!(*offset_in_stream, s.len() as u64);
                s.extend_from_slice(bytes);
            }
            StreamEvent::Gap {
                conn,
                dir,
                offset_in_stream,
                missing_bytes,
                ..
            } => {
                let s = out.entry((*conn, *dir)).or_default();
                assert_eq!(*offset_in_stream, s.len() as u64);
                s.extend(std::iter::repeat_n(b'#', *missing_bytes as usize));
            }
            _ => {}
        }
    }
    out
}

pub const CLI: &str = "127.0.0.1:50123";
pub const SRV: &str = "127.0.0.1:4840";
pub const CLI6: &str = "[::1]:50123";
pub const SRV6: &str = "[::1]:4840";

/// A small complete conversation: handshake, HEL/ACK-like exchange, FINs.
pub fn conversation(cli: &str, srv: &str) -> Vec<Vec<u8>> {
    vec![
        ip_tcp(cli, srv, 100, None, SYN, b""),
        ip_tcp(srv, cli, 900, Some(101), SYN, b""),
        ip_tcp(cli, srv, 101, Some(901), NONE, b""),
        ip_tcp(cli, srv, 101, Some(901), NONE, b"HELF hello"),
        ip_tcp(srv, cli, 901, Some(111), NONE, b"ACKF ack"),
        ip_tcp(cli, srv, 111, Some(909), NONE, b"MSGF request"),
        ip_tcp(srv, cli, 909, Some(123), NONE, b"MSGF response"),
        ip_tcp(cli, srv, 123, Some(922), FIN, b""),
        ip_tcp(srv, cli, 922, Some(124), FIN, b""),
        ip_tcp(cli, srv, 124, Some(923), NONE, b""),
    ]
}

pub const CONV_CLIENT: &[u8] = b"HELF helloMSGF request";
pub const CONV_SERVER: &[u8] = b"ACKF ackMSGF response";
