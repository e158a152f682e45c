//! Where the secrets are in one direction's byte stream: the user-token passwords and issued
//! tokens, the session nonces and the session signatures of messages sent in clear (security
//! None, or Sign where the body is readable). `uatap redact` overwrites them to make a
//! recording shareable; the bytes of encrypted bodies are left alone (they are not secrets in
//! clear).

use std::collections::HashMap;

use crate::reader::Reader;
use crate::services::{parse_message, IdentityToken, ServiceBody};
use crate::tcp::{frame, Frame, MessageType};

/// A run of secret bytes: offset and length.
pub type Span = (usize, usize);

/// Where the body of a symmetric chunk starts: the header (8 bytes), SecureChannelId, TokenId
/// and the sequence header (8 bytes).
const SYMMETRIC_BODY: usize = 24;

/// The longest message joined from chunks (larger ones are dropped unread).
const MAX_MESSAGE: usize = 16 << 20;

/// The longest chunk read.
const MAX_CHUNK: u32 = 1 << 24;

/// The most messages whose chunks are arriving at once (more are dropped unread).
const MAX_PARTIAL: usize = 64;

/// A message whose chunks are still arriving: where each chunk body is in the stream, and the
/// bodies joined.
#[derive(Default)]
struct Partial {
    places: Vec<Span>,
    body: Vec<u8>,
}

/// The secrets in a contiguous run of one direction's stream. Chunks are read one after the
/// other; after bytes that are not a chunk, reading resumes at the next chunk header; the
/// chunks of one message (by RequestId) are joined before it is decoded, and a secret that
/// crosses a chunk header comes back as one span per chunk.
pub fn stream_secrets(stream: &[u8]) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut partial: HashMap<u32, Partial> = HashMap::new();
    let mut pos = 0usize;
    while let Some(rest) = stream.get(pos..).filter(|r| !r.is_empty()) {
        let header = match frame(rest, Some(MAX_CHUNK)) {
            Ok(Frame::Complete { header }) => header,
            Ok(Frame::Incomplete { .. }) => break,
            Err(_) => {
                pos = next_chunk_header(stream, pos.saturating_add(1));
                continue;
            }
        };
        let size = header.message_size as usize;
        let Some(chunk) = rest.get(..size) else { break };
        if header.message_type == MessageType::Message {
            let request_id = chunk
                .get(20..SYMMETRIC_BODY)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes);
            let body = chunk.get(SYMMETRIC_BODY..).unwrap_or(&[]);
            let body_at = pos.saturating_add(SYMMETRIC_BODY);
            if partial.len() >= MAX_PARTIAL && !partial.contains_key(&request_id) {
                partial.clear();
            }
            let entry = partial.entry(request_id).or_default();
            entry.places.push((body_at, body.len()));
            entry.body.extend_from_slice(body);
            match chunk.get(3) {
                Some(b'F') => {
                    if let Some(whole) = partial.remove(&request_id) {
                        for (s, l) in message_secrets(&whole.body) {
                            spans.extend(in_stream(&whole.places, s, l));
                        }
                    }
                }
                Some(b'A') => {
                    partial.remove(&request_id);
                }
                _ if entry.body.len() > MAX_MESSAGE => {
                    partial.remove(&request_id);
                }
                _ => {}
            }
        }
        pos = pos.saturating_add(size.max(1));
    }
    spans
}

/// The secrets in one message body: offsets relative to the body.
pub fn message_secrets(body: &[u8]) -> Vec<Span> {
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

/// Where a subslice of `whole` starts.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= whole.len()).then_some(start)
}

/// The next offset at or after `from` where a chunk header of a known type begins (or the
/// end).
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

/// A span of a joined message body as spans of the stream (one per chunk it touches).
fn in_stream(places: &[Span], mut s: usize, mut l: usize) -> Vec<Span> {
    let mut out = Vec::new();
    for &(at, len) in places {
        if l == 0 {
            break;
        }
        let Some(room) = len.checked_sub(s).filter(|r| *r > 0) else {
            s = s.saturating_sub(len);
            continue;
        };
        let take = l.min(room);
        out.push((at.saturating_add(s), take));
        l = l.saturating_sub(take);
        s = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_across_chunks_maps_to_each_chunk() {
        // Bodies of 10 bytes at 24, 10 bytes at 58 (after a 24-byte header), 5 bytes at 92.
        let places = [(24, 10), (58, 10), (92, 5)];
        assert_eq!(in_stream(&places, 8, 15), vec![(32, 2), (58, 10), (92, 3)]);
        assert_eq!(in_stream(&places, 10, 3), vec![(58, 3)]);
        assert_eq!(in_stream(&places, 0, 0), vec![]);
        assert_eq!(in_stream(&places, 30, 5), vec![]);
    }

    #[test]
    fn garbage_is_skipped_to_the_next_chunk_header() {
        let s = b"xxMSGF....";
        assert_eq!(next_chunk_header(s, 0), 2);
        assert_eq!(next_chunk_header(s, 3), s.len());
        assert!(stream_secrets(b"\x00\x01garbage MSGC").is_empty());
    }
}
