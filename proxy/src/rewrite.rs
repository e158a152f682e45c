//! `--rewrite-endpoint-urls`: the one place where the proxy changes bytes without a fault.
//!
//! A client dials the host:port of the EndpointDescription that GetEndpoints returns, not the
//! URL it was configured with (Eclipse Milo, so Ignition, does this): behind a proxy it would
//! go around the proxy to the address the server advertises. With the option, the server's
//! GetEndpointsResponse, FindServersResponse and CreateSessionResponse get the host:port of
//! every `opc.tcp://` EndpointUrl and DiscoveryUrl replaced by the address the client dialed
//! (the EndpointUrl of its HEL; the proxy's own address when the HEL has none), on channels
//! with security None only: on a secured channel every chunk is signed with keys only the two
//! peers know, so nothing is touched there.
//!
//! Sans-IO: [`HelloSniffer`] reads the client's HEL off the client→server stream (which is
//! forwarded unchanged), [`EndpointRewriter`] frames the server→client stream. Only whole
//! single-chunk (`F`) messages of the three services are held back until complete; every other
//! chunk is forwarded as its bytes arrive, and a stream that does not frame as UA TCP is
//! passed through unchanged from there on. A rewritten message keeps its SequenceNumber and
//! RequestId; MessageSize is recomputed.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use uatap_codec::ids::service::{
    CREATE_SESSION_RESPONSE, FIND_SERVERS_RESPONSE, GET_ENDPOINTS_RESPONSE,
};
use uatap_codec::secure::{parse_chunk, Chunk, Protection, SecurityHeader};
use uatap_codec::services::{
    parse_message, ApplicationDescription, EndpointDescription, ServiceBody,
};
use uatap_codec::tcp::{
    frame, parse_acknowledge_message, parse_hello_message, parse_message_header, ChunkType, Frame,
    MessageHeader, MessageType, MESSAGE_HEADER_LEN,
};
use uatap_codec::types::{Decode, NodeId, UaString};
use uatap_codec::{Encode, Reader};

/// The `fault` name of the events this module causes.
pub const FAULT: &str = "rewrite_endpoint_urls";

/// A chunk larger than this is never held back (forwarded unchanged with a note).
const MAX_HELD: usize = 16 << 20;

/// Largest HEL looked at (the spec caps its EndpointUrl at 4096 bytes).
const MAX_HELLO: usize = 8192;

/// What the client's HEL said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// `host:port` of the EndpointUrl the client dialed, when it is an `opc.tcp://` URL.
    pub authority: Option<String>,
    /// Largest chunk the client receives.
    pub receive_buffer_size: u32,
    /// Largest response message the client accepts (0 = no limit).
    pub max_message_size: u32,
}

/// Reads the HEL at the start of the client's stream.
#[derive(Debug, Default)]
pub struct HelloSniffer {
    buf: Vec<u8>,
    done: bool,
}

impl HelloSniffer {
    /// Feeds client bytes; returns the HEL once it is complete (at most once).
    pub fn push(&mut self, bytes: &[u8]) -> Option<ClientHello> {
        if self.done {
            return None;
        }
        let want = MAX_HELLO.saturating_sub(self.buf.len()).min(bytes.len());
        self.buf.extend_from_slice(bytes.get(..want).unwrap_or(&[]));
        match frame(&self.buf, Some(MAX_HELLO as u32)) {
            Ok(Frame::Incomplete { .. }) if self.buf.len() < MAX_HELLO => return None,
            Ok(Frame::Complete { header }) if header.message_type == MessageType::Hello => {
                self.done = true;
                let body = self
                    .buf
                    .get(MESSAGE_HEADER_LEN..header.message_size as usize)
                    .unwrap_or(&[]);
                let hello = parse_hello_message(&mut Reader::new(body))
                    .ok()
                    .map(|h| ClientHello {
                        authority: h.endpoint_url.as_str().and_then(authority_of),
                        receive_buffer_size: h.receive_buffer_size,
                        max_message_size: h.max_message_size,
                    });
                self.buf = Vec::new();
                return hello;
            }
            _ => {}
        }
        self.done = true;
        self.buf = Vec::new();
        None
    }
}

/// The `host:port` of an `opc.tcp://` URL (`None` for other schemes or an empty host).
pub fn authority_of(url: &str) -> Option<String> {
    let (_, rest) = split_scheme(url)?;
    let end = rest.find('/').unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    (!authority.is_empty() && !authority.starts_with(':')).then(|| authority.to_string())
}

fn split_scheme(url: &str) -> Option<(&str, &str)> {
    const SCHEME: &str = "opc.tcp://";
    let scheme = url.get(..SCHEME.len())?;
    scheme
        .eq_ignore_ascii_case(SCHEME)
        .then(|| (scheme, url.get(SCHEME.len()..).unwrap_or("")))
}

/// `url` with its host:port replaced by `authority`, path kept; `None` when it is not an
/// `opc.tcp://` URL or already has that authority.
pub fn rewrite_url(url: &str, authority: &str) -> Option<String> {
    let (_, rest) = split_scheme(url)?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (old, path) = rest.split_at(end);
    if old.eq_ignore_ascii_case(authority) {
        return None;
    }
    Some(format!("opc.tcp://{authority}{path}"))
}

/// What was replaced in one message.
#[derive(Debug, Default)]
struct Changes {
    from: BTreeSet<String>,
    endpoints: usize,
    discovery_urls: usize,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.endpoints == 0 && self.discovery_urls == 0
    }

    fn url(&mut self, s: &mut UaString<'_>, authority: &str) -> bool {
        let Some(old) = s.as_str() else {
            return false;
        };
        let Some(new) = rewrite_url(old, authority) else {
            return false;
        };
        if let Some(a) = authority_of(old) {
            self.from.insert(format!("opc.tcp://{a}"));
        }
        *s = UaString::from(new);
        true
    }

    fn application(&mut self, app: &mut ApplicationDescription<'_>, authority: &str) {
        for u in app.discovery_urls.iter_mut().flatten() {
            if self.url(u, authority) {
                self.discovery_urls += 1;
            }
        }
    }

    fn endpoints(&mut self, list: &mut Option<Vec<EndpointDescription<'_>>>, authority: &str) {
        for e in list.iter_mut().flatten() {
            if self.url(&mut e.endpoint_url, authority) {
                self.endpoints += 1;
            }
            self.application(&mut e.server, authority);
        }
    }

    fn describe(&self, authority: &str, service: &str) -> String {
        let from: Vec<&str> = self.from.iter().map(String::as_str).collect();
        let mut counts = Vec::new();
        if self.endpoints > 0 {
            counts.push(plural(self.endpoints, "endpoint"));
        }
        if self.discovery_urls > 0 {
            counts.push(plural(self.discovery_urls, "discovery URL"));
        }
        format!(
            "{} -> opc.tcp://{authority} ({}) in {service}",
            from.join(", "),
            counts.join(", ")
        )
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Security of the channel as the server's OPN response tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Unknown,
    None,
    Secured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At a chunk boundary (the held bytes start a chunk).
    Frame,
    /// Forwarding the rest of a chunk that is not changed.
    Stream { remaining: usize },
    /// Forwarding everything unchanged (not UA TCP, or a secured channel).
    Passthrough,
}

/// What to do with the chunk at the start of the held bytes.
enum Decision {
    /// Not enough bytes to decide.
    NeedMore,
    /// Forward it unchanged as its bytes arrive; `track` keeps multi-chunk messages apart.
    Stream { note: Option<String>, track: Track },
    /// Hold it until it is complete, then look at it.
    Hold,
    /// Stop framing: forward everything unchanged from here on.
    Passthrough { note: Option<String> },
}

enum Track {
    None,
    Start(u32),
    End(u32),
}

/// Frames the server→client stream and rewrites endpoint URLs in it.
#[derive(Debug)]
pub struct EndpointRewriter {
    hello: Arc<OnceLock<ClientHello>>,
    fallback: String,
    held: Vec<u8>,
    mode: Mode,
    channel: Channel,
    /// ACK SendBufferSize: the largest chunk the client was told to expect.
    ack_send_buffer: Option<u32>,
    /// RequestIds of messages whose first chunks went by and whose last has not.
    continuing: HashSet<u32>,
}

impl EndpointRewriter {
    /// `hello` is filled by the client→server side; `fallback` is the `host:port` to use when
    /// the HEL names none (the address the client connected to).
    pub fn new(hello: Arc<OnceLock<ClientHello>>, fallback: String) -> Self {
        EndpointRewriter {
            hello,
            fallback,
            held: Vec::new(),
            mode: Mode::Frame,
            channel: Channel::Unknown,
            ack_send_buffer: None,
            continuing: HashSet::new(),
        }
    }

    /// Feeds server bytes; appends what to forward now to `out` and what to report to `notes`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>, notes: &mut Vec<String>) {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    out.extend_from_slice(input);
                    return;
                }
                Mode::Stream { remaining } => {
                    let n = remaining.min(input.len());
                    let (now, rest) = input.split_at(n);
                    out.extend_from_slice(now);
                    input = rest;
                    self.mode = match remaining - n {
                        0 => Mode::Frame,
                        r => Mode::Stream { remaining: r },
                    };
                    if input.is_empty() {
                        return;
                    }
                }
                Mode::Frame => {
                    if !input.is_empty() {
                        self.held.extend_from_slice(input);
                        input = &[];
                    }
                    if !self.step(out, notes) {
                        return;
                    }
                }
            }
        }
    }

    /// The stream ended: the bytes still held (an incomplete chunk) go out unchanged.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
        self.mode = Mode::Passthrough;
    }

    /// Handles the chunk at the start of `held`; false when more bytes are needed.
    fn step(&mut self, out: &mut Vec<u8>, notes: &mut Vec<String>) -> bool {
        if self.held.is_empty() {
            return false;
        }
        let decision = match frame(&self.held, None) {
            Err(_) => Decision::Passthrough { note: None },
            Ok(_) if self.held.len() < MESSAGE_HEADER_LEN => Decision::NeedMore,
            Ok(_) => match parse_message_header(&mut Reader::new(&self.held)) {
                Err(_) => Decision::Passthrough { note: None },
                Ok(h) => self.decide(h),
            },
        };
        let size = header_size(&self.held);
        match decision {
            Decision::NeedMore => false,
            Decision::Passthrough { note } => {
                notes.extend(note);
                out.append(&mut self.held);
                self.mode = Mode::Passthrough;
                true
            }
            Decision::Stream { note, track } => {
                notes.extend(note);
                match track {
                    Track::None => {}
                    Track::Start(r) => {
                        self.continuing.insert(r);
                    }
                    Track::End(r) => {
                        self.continuing.remove(&r);
                    }
                }
                if self.held.len() >= size {
                    out.extend(self.held.drain(..size));
                } else {
                    self.mode = Mode::Stream {
                        remaining: size - self.held.len(),
                    };
                    out.append(&mut self.held);
                }
                true
            }
            Decision::Hold => {
                if self.held.len() < size {
                    return false;
                }
                let chunk: Vec<u8> = self.held.drain(..size).collect();
                self.look_at(chunk, out, notes);
                true
            }
        }
    }

    fn decide(&self, h: MessageHeader) -> Decision {
        let size = h.message_size as usize;
        let stream = Decision::Stream {
            note: None,
            track: Track::None,
        };
        match h.message_type {
            // Small, and they tell the security (OPN) or the chunk limit (ACK).
            MessageType::OpenSecureChannel | MessageType::Acknowledge => {
                if size > MAX_HELD {
                    stream
                } else {
                    Decision::Hold
                }
            }
            MessageType::Message if self.channel == Channel::None => self.decide_msg(h),
            _ => stream,
        }
    }

    fn decide_msg(&self, h: MessageHeader) -> Decision {
        let size = h.message_size as usize;
        // SecureChannelId, TokenId, SequenceNumber, RequestId, then the body's type id.
        const REQUEST_ID_AT: usize = MESSAGE_HEADER_LEN + 12;
        const BODY_AT: usize = REQUEST_ID_AT + 4;
        let stream = |track| Decision::Stream { note: None, track };
        if size < BODY_AT {
            return stream(Track::None);
        }
        let Some(id) = self.held.get(REQUEST_ID_AT..BODY_AT) else {
            return Decision::NeedMore;
        };
        let request_id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        if self.continuing.contains(&request_id) {
            return match h.chunk_type {
                ChunkType::Intermediate => stream(Track::None),
                _ => stream(Track::End(request_id)),
            };
        }
        if h.chunk_type == ChunkType::Abort {
            return stream(Track::None);
        }
        // A NodeId takes at most 7 bytes when numeric.
        let type_end = size.min(BODY_AT + 7);
        let Some(type_bytes) = self.held.get(BODY_AT..type_end) else {
            return Decision::NeedMore;
        };
        let service = NodeId::decode(&mut Reader::new(type_bytes))
            .ok()
            .and_then(|n| n.as_ns0_numeric())
            .and_then(service_name);
        match (h.chunk_type, service) {
            (ChunkType::Intermediate, Some(s)) => Decision::Stream {
                note: Some(format!(
                    "not applied to a {s} sent in several chunks (request {request_id}): forwarded unchanged, the client may dial the address the server advertises"
                )),
                track: Track::Start(request_id),
            },
            (ChunkType::Intermediate, None) => stream(Track::Start(request_id)),
            (_, Some(s)) if size > MAX_HELD => Decision::Stream {
                note: Some(format!(
                    "not applied to a {s} of {size} bytes (more than uatap holds back): forwarded unchanged"
                )),
                track: Track::None,
            },
            (_, Some(_)) => Decision::Hold,
            (_, None) => stream(Track::None),
        }
    }

    /// A whole chunk that was held: ACK, OPN or a candidate message.
    fn look_at(&mut self, chunk: Vec<u8>, out: &mut Vec<u8>, notes: &mut Vec<String>) {
        let header = parse_message_header(&mut Reader::new(&chunk)).ok();
        match header.map(|h| h.message_type) {
            Some(MessageType::Acknowledge) => {
                let body = chunk.get(MESSAGE_HEADER_LEN..).unwrap_or(&[]);
                if let Ok(a) = parse_acknowledge_message(&mut Reader::new(body)) {
                    self.ack_send_buffer = Some(a.send_buffer_size);
                }
                out.extend_from_slice(&chunk);
            }
            Some(MessageType::OpenSecureChannel) => {
                out.extend_from_slice(&chunk);
                let Ok(c) = parse_chunk(&mut Reader::new(&chunk), Protection::None) else {
                    return;
                };
                let SecurityHeader::Asymmetric(a) = &c.security_header else {
                    return;
                };
                if a.is_policy_none() {
                    self.channel = Channel::None;
                } else if self.channel != Channel::Secured {
                    self.channel = Channel::Secured;
                    notes.push(format!(
                        "not applied on this connection: its secure channel uses {} and every chunk is signed with keys only the client and the server know, so a changed URL would break the signature (and the client compares CreateSession's endpoints with GetEndpoints'); forwarded unchanged. Let the client see the proxy's address another way: a hosts-file or DNS entry for the server's host name, or the client's host override",
                        a.policy_name().unwrap_or_else(|| "a security policy".into())
                    ));
                    // Nothing on this channel can be changed: stop framing.
                    self.mode = Mode::Passthrough;
                    out.append(&mut self.held);
                }
            }
            _ => {
                let (bytes, note) = self.rewrite(&chunk);
                notes.extend(note);
                out.extend_from_slice(bytes.as_deref().unwrap_or(&chunk));
            }
        }
    }

    /// The chunk with its URLs rewritten (`None`: unchanged), and what to report.
    fn rewrite(&self, chunk: &[u8]) -> (Option<Vec<u8>>, Option<String>) {
        let Ok(c) = parse_chunk(&mut Reader::new(chunk), Protection::None) else {
            return (None, None);
        };
        let Ok(mut msg) = parse_message(&mut Reader::new(c.body)) else {
            return (None, None);
        };
        let service = msg.service_name().unwrap_or("response");
        if msg.to_vec() != c.body {
            return (
                None,
                Some(format!(
                    "not applied to a {service}: it does not encode back to the same bytes, forwarded unchanged"
                )),
            );
        }
        let hello = self.hello.get();
        let authority = hello
            .and_then(|h| h.authority.clone())
            .unwrap_or_else(|| self.fallback.clone());
        let mut changes = Changes::default();
        match &mut msg.body {
            ServiceBody::GetEndpointsResponse(r) => changes.endpoints(&mut r.endpoints, &authority),
            ServiceBody::CreateSessionResponse(r) => {
                changes.endpoints(&mut r.server_endpoints, &authority)
            }
            ServiceBody::FindServersResponse(r) => {
                for s in r.servers.iter_mut().flatten() {
                    changes.application(s, &authority);
                }
            }
            _ => {}
        }
        if changes.is_empty() {
            return (None, None);
        }
        let body = msg.to_vec();
        let rewritten = Chunk { body: &body, ..c }.to_vec();
        // The client may refuse a chunk over the size it announced or was told to expect.
        let limit = [hello.map(|h| h.receive_buffer_size), self.ack_send_buffer]
            .into_iter()
            .flatten()
            .filter(|l| *l > 0)
            .min();
        if let Some(limit) = limit {
            if rewritten.len() > limit as usize {
                return (
                    None,
                    Some(format!(
                        "not applied to a {service}: with the new URLs its chunk would be {} bytes, over the {limit} bytes the client accepts; forwarded unchanged",
                        rewritten.len()
                    )),
                );
            }
        }
        if let Some(max) = hello.map(|h| h.max_message_size).filter(|m| *m > 0) {
            if body.len() > max as usize {
                return (
                    None,
                    Some(format!(
                        "not applied to a {service}: with the new URLs it would be {} bytes, over the client's MaxMessageSize {max}; forwarded unchanged",
                        body.len()
                    )),
                );
            }
        }
        (Some(rewritten), Some(changes.describe(&authority, service)))
    }
}

fn service_name(type_id: u32) -> Option<&'static str> {
    match type_id {
        GET_ENDPOINTS_RESPONSE => Some("GetEndpointsResponse"),
        FIND_SERVERS_RESPONSE => Some("FindServersResponse"),
        CREATE_SESSION_RESPONSE => Some("CreateSessionResponse"),
        _ => None,
    }
}

/// MessageSize of the header at the start of `buf` (0 when there is none).
fn header_size(buf: &[u8]) -> usize {
    match buf.get(4..8) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a stream into its chunks.
    fn chunks(mut s: &[u8]) -> Vec<&[u8]> {
        let mut v = Vec::new();
        while s.len() >= 8 {
            let n = header_size(s).min(s.len());
            let (c, rest) = s.split_at(n);
            v.push(c);
            s = rest;
        }
        v
    }

    /// Runs the whole stream through a rewriter in pieces of `step` bytes.
    fn run(c2s: &[u8], s2c: &[u8], step: usize) -> (Vec<u8>, Vec<String>) {
        let hello = Arc::new(OnceLock::new());
        let mut sniffer = HelloSniffer::default();
        for piece in c2s.chunks(3) {
            if let Some(h) = sniffer.push(piece) {
                let _ = hello.set(h);
            }
        }
        // What the client dialed: the proxy.
        let mut h = hello.get().cloned().expect("HEL read");
        h.authority = Some("proxy.example:4841".into());
        let hello = Arc::new(OnceLock::from(h));
        let mut r = EndpointRewriter::new(hello, "10.0.0.1:4841".into());
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        for piece in s2c.chunks(step) {
            r.push(piece, &mut out, &mut notes);
        }
        r.finish(&mut out);
        (out, notes)
    }

    #[test]
    fn urls() {
        assert_eq!(
            rewrite_url("opc.tcp://kepware:49320/Kep", "proxy:4841").as_deref(),
            Some("opc.tcp://proxy:4841/Kep")
        );
        assert_eq!(
            rewrite_url("OPC.TCP://[::1]:4840", "proxy:4841").as_deref(),
            Some("opc.tcp://proxy:4841")
        );
        assert_eq!(rewrite_url("opc.tcp://proxy:4841/x", "proxy:4841"), None);
        assert_eq!(rewrite_url("https://kepware/x", "proxy:4841"), None);
        assert_eq!(
            authority_of("opc.tcp://[::1]:4840/UA").as_deref(),
            Some("[::1]:4840")
        );
        assert_eq!(authority_of("opc.tcp:///x"), None);
    }

    /// Only the URLs differ: every other chunk is the same bytes, and a rewritten chunk is the
    /// original with its URLs replaced, sequence header kept, MessageSize recomputed.
    #[test]
    fn rewrites_only_the_urls_whatever_the_segmentation() {
        let (c2s, s2c) = crate::test_support::fixture_streams("basic-none.pcapng");
        let (reference, notes) = run(&c2s, &s2c, 1 << 20);
        assert!(
            notes.iter().any(|n| n.contains("GetEndpointsResponse")
                && n.contains("-> opc.tcp://proxy.example:4841")),
            "{notes:?}"
        );
        for step in [1, 7, 100, 1500] {
            assert!(run(&c2s, &s2c, step).0 == reference, "step {step}");
        }
        let (before, after) = (chunks(&s2c), chunks(&reference));
        assert_eq!(before.len(), after.len());
        let mut changed = 0;
        for (b, a) in before.iter().zip(&after) {
            if b == a {
                continue;
            }
            changed += 1;
            let cb = parse_chunk(&mut Reader::new(b), Protection::None).expect("chunk");
            let ca = parse_chunk(&mut Reader::new(a), Protection::None).expect("chunk");
            assert_eq!(cb.sequence_header, ca.sequence_header);
            assert_eq!(ca.header.message_size as usize, a.len());
            let mut mb = parse_message(&mut Reader::new(cb.body)).expect("message");
            let ma = parse_message(&mut Reader::new(ca.body)).expect("message");
            let mut fix = Changes::default();
            if let ServiceBody::GetEndpointsResponse(r) = &mut mb.body {
                fix.endpoints(&mut r.endpoints, "proxy.example:4841");
            } else if let ServiceBody::CreateSessionResponse(r) = &mut mb.body {
                fix.endpoints(&mut r.server_endpoints, "proxy.example:4841");
            }
            assert!(!fix.is_empty());
            assert_eq!(mb, ma, "the same message once the URLs are replaced");
        }
        assert!(changed >= 1);
    }

    #[test]
    fn secured_channels_are_left_alone_with_one_note() {
        let (c2s, s2c) = crate::test_support::fixture_streams("sign-b256sha256.pcapng");
        let (out, notes) = run(&c2s, &s2c, 333);
        assert!(out == s2c);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("Basic256Sha256"), "{notes:?}");
    }

    #[test]
    fn other_streams_pass_unchanged() {
        let (c2s, s2c) = crate::test_support::fixture_streams("big-publish.pcapng");
        let (out, _) = run(&c2s, &s2c, 4096);
        assert_eq!(chunks(&out).len(), chunks(&s2c).len());
        let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut r = EndpointRewriter::new(Arc::new(OnceLock::new()), "p:1".into());
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        for piece in garbage.chunks(13) {
            r.push(piece, &mut out, &mut notes);
        }
        r.finish(&mut out);
        assert!(out == garbage && notes.is_empty());
    }
}
