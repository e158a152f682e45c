//! Overwrites byte ranges of TCP streams inside a capture file, in place and at the same length,
//! with the TCP checksums of the changed segments recomputed: what a caller finds in a stream
//! (secrets, for `uatap redact`) is zeroed wherever those bytes were captured, however the
//! stream was split into segments or retransmitted. Knows nothing of what the bytes mean.

use std::collections::HashMap;
use std::net::SocketAddr;

use pcap_parser::{Block, LegacyPcapSlice, PcapBlockOwned, PcapNGSlice};

use crate::{decode_tcp, LinkType, TcpFlags};

/// Why a file could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum ZeroError {
    /// Neither pcap nor pcapng.
    #[error("not pcap or pcapng: {0}")]
    NotACapture(String),
    /// A capture with no packet.
    #[error("no packets in the file")]
    NoPackets,
}

/// What was overwritten.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Zeroed {
    /// Spans the finder returned (each overwritten wherever it was captured).
    pub spans: usize,
    /// Packets changed.
    pub packets: usize,
    /// Places where bytes are missing from the capture: the finder sees the runs on each side
    /// of a gap apart.
    pub gaps: usize,
}

/// Returns a copy of the capture `data` in which every span `find` returns, for each
/// contiguous run of each direction of each TCP connection, is overwritten with zeros. `find`
/// gets a run of the stream and returns (offset, length) spans within it.
pub fn zero_stream_spans(
    data: &[u8],
    mut find: impl FnMut(&[u8]) -> Vec<(usize, usize)>,
) -> Result<(Vec<u8>, Zeroed), ZeroError> {
    let mut out = data.to_vec();
    let mut r = Zeroed::default();
    // (offset of the frame in the file, frame, link type)
    let mut frames: Vec<(usize, &[u8], LinkType)> = Vec::new();
    if data.starts_with(&[0x0A, 0x0D, 0x0D, 0x0A]) {
        let mut links: Vec<LinkType> = Vec::new();
        let slice =
            PcapNGSlice::from_slice(data).map_err(|e| ZeroError::NotACapture(format!("{e:?}")))?;
        for block in slice {
            let Ok(PcapBlockOwned::NG(b)) = block else {
                break;
            };
            match b {
                Block::SectionHeader(_) => links.clear(),
                Block::InterfaceDescription(idb) => links.push(LinkType(idb.linktype.0 as u32)),
                Block::EnhancedPacket(epb) => {
                    let link = links
                        .get(epb.if_id as usize)
                        .copied()
                        .unwrap_or(LinkType(1));
                    if let Some(at) = offset_in(data, epb.data) {
                        frames.push((at, epb.data, link));
                    }
                }
                _ => {}
            }
        }
    } else {
        let slice = LegacyPcapSlice::from_slice(data)
            .map_err(|e| ZeroError::NotACapture(format!("{e:?}")))?;
        let link = LinkType(slice.header.network.0 as u32);
        for block in slice {
            let Ok(PcapBlockOwned::Legacy(b)) = block else {
                break;
            };
            if let Some(at) = offset_in(data, b.data) {
                frames.push((at, b.data, link));
            }
        }
    }
    if frames.is_empty() && !data.is_empty() {
        return Err(ZeroError::NoPackets);
    }
    // Each direction of each TCP connection as one byte stream (by sequence number), so that a
    // message split over segments, or over chunks, is read whole.
    let mut flows: HashMap<(SocketAddr, SocketAddr), Flow> = HashMap::new();
    for (at, frame_bytes, link) in &frames {
        let Ok(seg) = decode_tcp(*link, frame_bytes) else {
            continue;
        };
        let flow = flows.entry((seg.src, seg.dst)).or_default();
        if seg.has(TcpFlags::SYN) {
            flow.base.get_or_insert(seg.seq.wrapping_add(1));
            continue;
        }
        if seg.payload.is_empty() {
            continue;
        }
        let Some(payload_at) = offset_in(frame_bytes, seg.payload) else {
            continue;
        };
        let base = *flow.base.get_or_insert(seg.seq);
        flow.pieces.push(Piece {
            rel: u64::from(seg.seq.wrapping_sub(base)),
            frame_at: *at,
            frame_len: frame_bytes.len(),
            payload_at,
            len: seg.payload.len(),
        });
    }
    let mut changed_frames: Vec<(usize, usize, usize, usize)> = Vec::new();
    for flow in flows.values_mut() {
        flow.pieces.sort_by_key(|p| p.rel);
        let runs = flow.runs(data);
        r.gaps = r.gaps.saturating_add(runs.len().saturating_sub(1));
        let mut spans = Vec::new();
        for (start, bytes) in &runs {
            for (s, l) in find(bytes) {
                spans.push((start.saturating_add(s as u64), l as u64));
            }
        }
        r.spans = r.spans.saturating_add(spans.len());
        for p in &flow.pieces {
            let mut touched = false;
            for &(s, l) in &spans {
                let lo = s.max(p.rel);
                let hi = s.saturating_add(l).min(p.rel.saturating_add(p.len as u64));
                if lo >= hi {
                    continue;
                }
                let from = p.frame_at + p.payload_at + (lo - p.rel) as usize;
                let to = from + (hi - lo) as usize;
                if let Some(dst) = out.get_mut(from..to) {
                    dst.fill(0);
                    touched = true;
                }
            }
            if touched {
                changed_frames.push((p.frame_at, p.frame_len, p.payload_at, p.len));
            }
        }
    }
    changed_frames.sort_unstable();
    changed_frames.dedup();
    r.packets = changed_frames.len();
    for (frame_at, frame_len, payload_at, len) in changed_frames {
        if let Some(frame_out) = out.get_mut(frame_at..frame_at + frame_len) {
            fix_tcp_checksum(frame_out, payload_at, len);
        }
    }
    Ok((out, r))
}

/// One TCP payload of a flow: where it is in the file and in the flow's byte stream.
struct Piece {
    /// Sequence number relative to the flow's first byte.
    rel: u64,
    /// Where the frame starts in the file.
    frame_at: usize,
    /// The frame's captured length.
    frame_len: usize,
    /// Where the payload starts in the frame.
    payload_at: usize,
    /// The payload's length.
    len: usize,
}

/// One direction of a TCP connection.
#[derive(Default)]
struct Flow {
    /// The sequence number of the first payload byte (after the SYN, or the first seen).
    base: Option<u32>,
    /// Its payloads, sorted by `rel` before use.
    pieces: Vec<Piece>,
}

impl Flow {
    /// The stream's contiguous runs (start, bytes): retransmitted bytes are taken once, and a
    /// run ends where bytes are missing from the capture.
    fn runs(&self, data: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        for p in &self.pieces {
            let at = p.frame_at + p.payload_at;
            let Some(bytes) = data.get(at..at + p.len) else {
                continue;
            };
            let end = p.rel.saturating_add(p.len as u64);
            match runs.last_mut() {
                Some((start, run)) if p.rel <= *start + run.len() as u64 => {
                    let have = *start + run.len() as u64;
                    if end > have {
                        let skip = (have - p.rel) as usize;
                        run.extend_from_slice(bytes.get(skip..).unwrap_or(&[]));
                    }
                }
                _ => runs.push((p.rel, bytes.to_vec())),
            }
        }
        runs
    }
}

/// Where a subslice of `whole` starts.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= whole.len()).then_some(start)
}

/// Recomputes the TCP checksum of a frame whose payload changed (IPv4 or IPv6).
fn fix_tcp_checksum(frame: &mut [u8], payload_at: usize, payload_len: usize) {
    let Some((tcp_at, sum)) = tcp_checksum(frame, payload_at, payload_len) else {
        return;
    };
    if let Some(dst) = frame.get_mut(tcp_at + 16..tcp_at + 18) {
        dst.copy_from_slice(&sum.to_be_bytes());
    }
}

/// Where the TCP header is and its right checksum: the IP header is looked for where the
/// link layers uatap reads put it (raw IP, BSD loopback, Ethernet, Linux cooked v1 and v2).
fn tcp_checksum(frame: &[u8], payload_at: usize, payload_len: usize) -> Option<(usize, u16)> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    for skip in [0usize, 4, 14, 16, 20] {
        let Some(f) = frame.get(skip..) else { continue };
        let Ok(p) = SlicedPacket::from_ip(f) else {
            continue;
        };
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            continue;
        };
        let payload = tcp.payload();
        if payload.len() != payload_len || offset_in(frame, payload) != Some(payload_at) {
            continue;
        }
        let header = tcp.to_header();
        let sum = match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                header.calc_checksum_ipv4(&ip.header().to_header(), payload)
            }
            Some(NetSlice::Ipv6(ip)) => {
                header.calc_checksum_ipv6(&ip.header().to_header(), payload)
            }
            _ => continue,
        }
        .ok()?;
        let tcp_at = payload_at.checked_sub(tcp.header_len())?;
        return Some((tcp_at, sum));
    }
    None
}
