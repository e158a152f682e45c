//! `uatap redact IN OUT`: a copy of a recording that can be shared with a vendor. Recordings
//! keep the bytes as they crossed the wire, so a user name session over a None channel holds
//! the password; the copy has every user-token secret, nonce and session signature overwritten
//! with zeros at the same length, the TCP checksums of the changed segments fixed, and every
//! other byte (and the file's layout) unchanged, so it decodes the same.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use pcap_parser::{Block, LegacyPcapSlice, PcapBlockOwned, PcapNGSlice};
use uatap_codec::reader::Reader;
use uatap_codec::services::{parse_message, IdentityToken, ServiceBody};
use uatap_codec::tcp::{frame, Frame, MessageType};
use uatap_recorder::{decode_tcp, LinkType};

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
    /// Packets with OPC UA bytes that do not start at a chunk boundary (a message split over
    /// segments): not inspected.
    pub not_inspected: usize,
}

/// Runs the command.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let data =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let (out, r) = redact(&data)?;
    std::fs::write(&args.output, &out)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "uatap: {} secret(s) overwritten in {} packet(s); {} packet(s) with a message split over segments not inspected; wrote {}",
        r.secrets,
        r.packets,
        r.not_inspected,
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
    for (at, frame_bytes, link) in frames {
        let Ok(seg) = decode_tcp(link, frame_bytes) else {
            continue;
        };
        if seg.payload.is_empty() {
            continue;
        }
        let Some(payload_at) = offset_in(frame_bytes, seg.payload) else {
            continue;
        };
        let spans = match secrets_in(seg.payload) {
            Some(s) => s,
            None => {
                r.not_inspected = r.not_inspected.saturating_add(1);
                continue;
            }
        };
        if spans.is_empty() {
            continue;
        }
        let frame_at = at;
        for (s, len) in &spans {
            let start = frame_at + payload_at + s;
            if let Some(dst) = out.get_mut(start..start + len) {
                dst.fill(0);
            }
        }
        r.secrets = r.secrets.saturating_add(spans.len());
        r.packets = r.packets.saturating_add(1);
        if let Some(frame_out) = out.get_mut(frame_at..frame_at + frame_bytes.len()) {
            fix_tcp_checksum(frame_out, payload_at, seg.payload.len());
        }
    }
    Ok((out, r))
}

/// The secrets in the whole chunks at the start of a TCP payload: (offset, length) each.
/// `None` when the payload does not start with a chunk header.
fn secrets_in(payload: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut spans = Vec::new();
    let mut pos = 0usize;
    let mut first = true;
    while pos < payload.len() {
        let rest = payload.get(pos..)?;
        let header = match frame(rest, Some(1 << 24)) {
            Ok(Frame::Complete { header }) => header,
            Ok(Frame::Incomplete { .. }) => break,
            Err(_) if first => return None,
            Err(_) => break,
        };
        first = false;
        let size = header.message_size as usize;
        let chunk = rest.get(..size)?;
        if header.message_type == MessageType::Message && chunk.get(3) == Some(&b'F') {
            if let Some(body) = chunk.get(24..) {
                for (s, l) in message_secrets(body) {
                    spans.push((pos + 24 + s, l));
                }
            }
        }
        pos += size;
    }
    Some(spans)
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
