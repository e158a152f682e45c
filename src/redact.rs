//! `uatap redact IN OUT`: a copy of a recording that can be shared with a vendor. Recordings
//! keep the bytes as they crossed the wire, so a user name session over a None channel holds
//! the password; the copy has every user-token secret, nonce and session signature overwritten
//! with zeros at the same length, the TCP checksums of the changed segments fixed, and every
//! other byte (and the file's layout) unchanged, so it decodes the same.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use pcap_parser::{Block, LegacyPcapSlice, PcapBlockOwned, PcapNGSlice};
use uatap_codec::reader::Reader;
use uatap_codec::services::{parse_message, IdentityToken, ServiceBody};
use uatap_codec::tcp::{frame, Frame, MessageType};
use uatap_recorder::{decode_tcp, LinkType, TcpFlags};

/// Options of `uatap redact`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recording (pcapng or pcap).
    pub input: PathBuf,
    /// Where to write the redacted copy.
    pub output: PathBuf,
}

/// What was found and overwritten.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Redacted {
    /// Secrets overwritten (a password, a nonce, a signature each).
    pub secrets: usize,
    /// Packets changed.
    pub packets: usize,
    /// Places where bytes are missing from the capture (a stream read again from the next
    /// chunk header after them): a message cut by such a gap is not inspected.
    pub gaps: usize,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let data =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let (out, r) = redact(&data)?;
    std::fs::write(&args.output, &out)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "uatap: {} secret(s) overwritten in {} packet(s); {} gap(s) of bytes missing from the capture; wrote {}",
        r.secrets,
        r.packets,
        r.gaps,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Where a subslice of `whole` starts.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= whole.len()).then_some(start)
}

/// The redacted copy of a whole capture file.
pub fn redact(data: &[u8]) -> anyhow::Result<(Vec<u8>, Redacted)> {
    let mut out = data.to_vec();
    let mut r = Redacted::default();
    // (offset of the frame in the file, frame, link type)
    let mut frames: Vec<(usize, &[u8], LinkType)> = Vec::new();
    if data.starts_with(&[0x0A, 0x0D, 0x0D, 0x0A]) {
        let mut links: Vec<LinkType> = Vec::new();
        let slice =
            PcapNGSlice::from_slice(data).map_err(|e| anyhow::anyhow!("not pcapng: {e:?}"))?;
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
            .map_err(|e| anyhow::anyhow!("not pcap or pcapng: {e:?}"))?;
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
        bail!("no packets in the file");
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
            for (s, l) in stream_secrets(bytes) {
                spans.push((start.saturating_add(s as u64), l as u64));
            }
        }
        r.secrets = r.secrets.saturating_add(spans.len());
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

/// The secrets in a run of one direction's stream: (offset, length) each. Chunks are read one
/// after the other; after bytes that are no chunk, reading resumes at the next chunk header;
/// the chunks of one message (by RequestId) are joined before the message is decoded.
fn stream_secrets(stream: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut partial: HashMap<u32, Partial> = HashMap::new();
    let mut pos = 0usize;
    while pos < stream.len() {
        let Some(rest) = stream.get(pos..) else { break };
        let header = match frame(rest, Some(1 << 24)) {
            Ok(Frame::Complete { header }) => header,
            Ok(Frame::Incomplete { .. }) => break,
            Err(_) => {
                pos = next_chunk_header(stream, pos + 1);
                continue;
            }
        };
        let size = header.message_size as usize;
        let Some(chunk) = rest.get(..size) else { break };
        let body_at = pos + SYMMETRIC_BODY;
        if header.message_type == MessageType::Message {
            let request_id = chunk
                .get(20..24)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes);
            let body = chunk.get(SYMMETRIC_BODY..).unwrap_or(&[]);
            let entry = partial.entry(request_id).or_default();
            entry.0.push((body_at, body.len()));
            entry.1.extend_from_slice(body);
            match chunk.get(3) {
                Some(b'F') => {
                    if let Some((places, whole)) = partial.remove(&request_id) {
                        for (s, l) in message_secrets(&whole) {
                            spans.extend(in_stream(&places, s, l));
                        }
                    }
                }
                Some(b'A') => {
                    partial.remove(&request_id);
                }
                _ => {
                    // A message grows only up to the largest the codec reads.
                    if entry.1.len() > MAX_MESSAGE {
                        partial.remove(&request_id);
                    }
                }
            }
        }
        pos += size;
    }
    spans
}

/// A message whose chunks are still arriving (by RequestId): where each chunk body is in the
/// stream (start, length), and the bodies joined.
type Partial = (Vec<(usize, usize)>, Vec<u8>);

/// Where the body of a symmetric chunk starts: header (8), SecureChannelId, TokenId, sequence
/// header (8).
const SYMMETRIC_BODY: usize = 24;

/// The longest message joined from chunks.
const MAX_MESSAGE: usize = 16 << 20;

/// The next offset at or after `from` where a chunk header of a known type begins.
fn next_chunk_header(stream: &[u8], from: usize) -> usize {
    let known = |w: &[u8]| {
        matches!(
            w.get(..3),
            Some(b"MSG" | b"OPN" | b"CLO" | b"HEL" | b"ACK" | b"ERR" | b"RHE")
        ) && matches!(w.get(3), Some(b'F' | b'C' | b'A'))
    };
    (from..stream.len())
        .find(|&i| stream.get(i..).is_some_and(known))
        .unwrap_or(stream.len())
}

/// A span of a joined message body, as spans of the stream (it may cross chunk headers).
fn in_stream(places: &[(usize, usize)], mut s: usize, mut l: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &(at, len) in places {
        if l == 0 {
            break;
        }
        if s >= len {
            s -= len;
            continue;
        }
        let take = l.min(len - s);
        out.push((at + s, take));
        l -= take;
        s = 0;
    }
    out
}

/// The secrets in one message body (None channel): offsets relative to the body.
fn message_secrets(body: &[u8]) -> Vec<(usize, usize)> {
    let Ok(msg) = parse_message(&mut Reader::new(body)) else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    let mut add = |p: Option<&[u8]>| {
        if let Some(p) = p.filter(|p| !p.is_empty()) {
            if let Some(o) = offset_in(body, p) {
                spans.push((o, p.len()));
            }
        }
    };
    match &msg.body {
        ServiceBody::CreateSessionRequest(r) => add(r.client_nonce.0.as_bytes()),
        ServiceBody::CreateSessionResponse(r) => {
            add(r.server_nonce.0.as_bytes());
            add(r.server_signature.signature.as_bytes());
        }
        ServiceBody::ActivateSessionRequest(r) => {
            add(r.client_signature.signature.as_bytes());
            add(r.user_token_signature.signature.as_bytes());
            match r.identity_token() {
                Ok(IdentityToken::UserName(t)) => add(t.password.0.as_bytes()),
                Ok(IdentityToken::Issued(t)) => add(t.token_data.0.as_bytes()),
                _ => {}
            }
        }
        ServiceBody::ActivateSessionResponse(r) => add(r.server_nonce.0.as_bytes()),
        _ => {}
    }
    spans
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
