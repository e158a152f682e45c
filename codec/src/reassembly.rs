//! Chunk reassembly for one direction of one connection: stream bytes in (split anywhere),
//! whole messages out, under the limits negotiated in HEL/ACK.
//!
//! The reassembler never holds more than one chunk of unframed bytes plus the partial messages
//! allowed by the limits; a chunk or message over a limit is reported and skipped without being
//! buffered. Bytes that are not UA framing are reported once and skipped until the next plausible
//! message header (a capture that starts mid-stream resyncs the same way).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::{DecodeError, DecodeErrorKind};
use crate::reader::Reader;
use crate::secure::{parse_chunk, Protection, SecurityHeader, SequenceHeader};
use crate::tcp::{
    frame, parse_error_message, ChunkType, Frame, MessageHeader, MessageType, MESSAGE_HEADER_LEN,
};
use crate::types::{ByteString, UaString};

/// Limits on what one direction may send, from the receiver's HEL or ACK (`None` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Largest chunk (the receiver's ReceiveBufferSize).
    pub max_chunk_size: Option<u32>,
    /// Largest message body (the receiver's MaxMessageSize; 0 on the wire = unlimited).
    pub max_message_size: Option<u32>,
    /// Most chunks per message (the receiver's MaxChunkCount; 0 on the wire = unlimited).
    pub max_chunk_count: Option<u32>,
}

impl Limits {
    /// Limits stated by a HEL or ACK: what its sender accepts to receive.
    pub fn from_receiver(
        receive_buffer_size: u32,
        max_message_size: u32,
        max_chunk_count: u32,
    ) -> Self {
        let nz = |v: u32| if v == 0 { None } else { Some(v) };
        Limits {
            max_chunk_size: nz(receive_buffer_size),
            max_message_size: nz(max_message_size),
            max_chunk_count: nz(max_chunk_count),
        }
    }
}

/// uatap's own ceilings, applied on top of whatever the peers negotiated, so that a peer that
/// negotiates 2 GiB buffers cannot make the observer hold 2 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceilings {
    /// Largest chunk buffered.
    pub max_chunk_size: u32,
    /// Largest reassembled message body.
    pub max_message_size: u32,
    /// Most messages being reassembled at once (interleaved RequestIds).
    pub max_partial_messages: usize,
    /// Most chunks of one message when the receiver states no MaxChunkCount (0): a peer that
    /// sends a million tiny chunks of one message is reported once, not followed for ever.
    pub max_chunk_count: u32,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            max_chunk_size: 16 << 20,
            max_message_size: 256 << 20,
            max_partial_messages: 64,
            // A message of the largest size in chunks of the smallest buffer (8192 bytes, Part 6
            // §7.1.2.3) takes 32768; twice that leaves room for peers with smaller chunks.
            max_chunk_count: 65_536,
        }
    }
}

/// The owned clear-text part of an OPN security header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSecurityHeader {
    /// SecurityPolicyUri bytes (`None` when null).
    pub security_policy_uri: Option<Vec<u8>>,
    /// Sender certificate DER (possibly with chain).
    pub sender_certificate: Option<Vec<u8>>,
    /// Receiver certificate thumbprint.
    pub receiver_certificate_thumbprint: Option<Vec<u8>>,
}

impl OpenSecurityHeader {
    /// The short policy name (after `#`).
    pub fn policy_name(&self) -> Option<String> {
        let uri = String::from_utf8_lossy(self.security_policy_uri.as_deref()?);
        Some(match uri.rsplit_once('#') {
            Some((_, n)) => n.to_string(),
            None => uri.into_owned(),
        })
    }
}

/// One whole message of this direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledMessage {
    /// HEL … CLO.
    pub message_type: MessageType,
    /// Offset of the first chunk's first byte in this direction's stream.
    pub offset: u64,
    /// Number of chunks (1 for UACP messages).
    pub chunks: u32,
    /// Bytes on the wire, all chunks, headers included.
    pub size: u64,
    /// SecureChannelId of the last chunk (UASC only).
    pub secure_channel_id: Option<u32>,
    /// TokenId (MSG/CLO).
    pub token_id: Option<u32>,
    /// OPN security header.
    pub open_security_header: Option<OpenSecurityHeader>,
    /// Sequence header of the last chunk, when readable.
    pub sequence_header: Option<SequenceHeader>,
    /// For UACP messages the whole message (header included, ready for
    /// [`crate::tcp::parse_tcp_message`]); for UASC the concatenated chunk bodies (starting with
    /// the service's encoding NodeId), or the ciphertext when `encrypted`. Shares the input's
    /// memory when it was given as [`Bytes`] and the message came in one piece.
    pub payload: Bytes,
    /// True when the body is encrypted and cannot be read.
    pub encrypted: bool,
    /// True when the body was read under [`Protection::Sign`] guessed from the policy: the
    /// caller confirms by decoding it (a body that decodes exactly means Sign-only).
    pub signature_stripped: bool,
    /// True when the chunks were secured and a [`ChunkOpener`] opened them with the keys.
    pub decrypted: bool,
}

/// Opens the secured chunks of one direction for an observer that holds the keys. The codec
/// does not decrypt; the analysis plugs in the passive decryption of `uatap-crypto` here.
pub trait ChunkOpener: Send + std::fmt::Debug {
    /// The chunk in clear (its headers kept, MessageSize set to the clear length, then the
    /// sequence header and the body without padding or signature); `None` when this opener has
    /// no key for it; or the offset in the chunk and the field where opening failed.
    fn open(&mut self, chunk: &[u8]) -> Option<Result<Vec<u8>, (usize, &'static str)>>;
}

/// What the reassembler has to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassemblyEvent {
    /// A whole message.
    Message(AssembledMessage),
    /// An abort (`A`) chunk dropped the chunks received so far for a RequestId.
    Aborted {
        /// Offset of the abort chunk.
        offset: u64,
        /// SecureChannelId.
        secure_channel_id: u32,
        /// RequestId of the aborted message, when readable.
        request_id: Option<u32>,
        /// Chunks of that message received and dropped before the abort.
        chunks_dropped: u32,
        /// Error status from the abort body (`None` if encrypted or malformed).
        error: Option<u32>,
        /// Reason from the abort body.
        reason: Option<String>,
    },
    /// The chunk SequenceNumber did not follow the previous one (lost, replayed or reordered
    /// chunk; clients close the channel on this).
    SequenceNumberJump {
        /// Offset of the chunk.
        offset: u64,
        /// The number expected.
        expected: u32,
        /// The number found.
        got: u32,
    },
    /// Bytes that could not be framed or decoded; `error.offset` is absolute in the stream.
    Error {
        /// What was wrong, and where.
        error: DecodeError,
        /// The first bytes at that place (at most 32), for a hex dump.
        prefix: Vec<u8>,
        /// The message type the bytes were framed as, when the header was valid.
        framed_as: Option<MessageHeader>,
    },
    /// After an error, bytes were skipped until the next plausible header.
    Resynced {
        /// Offset where framing resumed.
        offset: u64,
        /// Bytes skipped.
        skipped: u64,
    },
}

#[derive(Debug)]
struct Partial {
    request_id: Option<u32>,
    offset: u64,
    chunks: u32,
    size: u64,
    body: Vec<u8>,
    secure_channel_id: u32,
}

/// Reassembles the messages of one direction of one connection.
#[derive(Debug)]
pub struct Reassembler {
    limits: Limits,
    ceilings: Ceilings,
    protection: Protection,
    guessed_sign: bool,
    buf: Vec<u8>,
    buf_offset: u64,
    skip: u64,
    resync_from: Option<u64>,
    /// A framing error reported when its resync point (or the end) is known.
    pending_error: Option<(DecodeError, Vec<u8>)>,
    partials: Vec<Partial>,
    discarding: Vec<Option<u32>>,
    last_sequence_number: Option<u32>,
    events: VecDeque<ReassemblyEvent>,
    opener: Option<Box<dyn ChunkOpener>>,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(Ceilings::default())
    }
}

/// Legacy sequence numbers may wrap only after this value, to a value below 1024 (§6.7.2.4).
const SEQUENCE_WRAP_FLOOR: u32 = 4_294_966_271;

impl Reassembler {
    /// A reassembler with no negotiated limits yet (only uatap's ceilings apply).
    pub fn new(ceilings: Ceilings) -> Self {
        Reassembler {
            limits: Limits::default(),
            ceilings,
            protection: Protection::None,
            guessed_sign: false,
            buf: Vec::new(),
            buf_offset: 0,
            skip: 0,
            resync_from: None,
            pending_error: None,
            partials: Vec::new(),
            discarding: Vec::new(),
            last_sequence_number: None,
            events: VecDeque::new(),
            opener: None,
        }
    }

    /// Applies the limits the receiver of this direction stated in its HEL or ACK.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sets how MSG/CLO chunks are protected. `guessed` marks a Sign protection inferred from the
    /// policy rather than read from the (encrypted) OPN; messages then carry
    /// `signature_stripped = true` so the caller can confirm by decoding.
    pub fn set_protection(&mut self, protection: Protection, guessed: bool) {
        if protection != self.protection {
            // Chunks framed under the old assumption were read wrongly: start over.
            self.partials.clear();
            self.discarding.clear();
            self.last_sequence_number = None;
        }
        self.protection = protection;
        self.guessed_sign = guessed && matches!(protection, Protection::Sign { .. });
    }

    /// The protection in force.
    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// Bytes held between inputs (an incomplete chunk, and the bodies of messages still waiting
    /// for their final chunk): what a long-running observer must see return to zero.
    pub fn buffered_bytes(&self) -> usize {
        self.partials
            .iter()
            .fold(self.buf.len(), |n, p| n.saturating_add(p.body.len()))
    }

    /// Messages begun and not finished: reassembled or, over a limit, skipped until their final
    /// chunk. Capped by [`Ceilings::max_partial_messages`] for the first kind.
    pub fn partial_messages(&self) -> usize {
        self.partials.len().saturating_add(self.discarding.len())
    }

    /// Total bytes of this direction seen so far.
    pub fn stream_offset(&self) -> u64 {
        self.buf_offset.saturating_add(self.buf.len() as u64)
    }

    /// The chunk begun and not yet whole, as (stream offset of its first byte, bytes of it
    /// held): a sender that stops, or trickles, inside a chunk shows here. `None` between chunks
    /// and while resyncing after garbage.
    #[must_use]
    pub fn incomplete_chunk(&self) -> Option<(u64, usize)> {
        (self.resync_from.is_none() && !self.buf.is_empty())
            .then_some((self.buf_offset, self.buf.len()))
    }

    /// Declares `n` bytes of this direction lost (a capture gap): any partial chunk and message
    /// are dropped and framing resyncs after the gap.
    pub fn handle_gap(&mut self, n: u64) {
        self.note_buffered();
        self.flush_pending_error();
        let lost_at = self.stream_offset();
        self.buf.clear();
        self.buf_offset = lost_at.saturating_add(n);
        self.skip = 0;
        self.partials.clear();
        self.discarding.clear();
        self.last_sequence_number = None;
        self.resync_from = Some(lost_at);
    }

    /// Feeds stream bytes in order. Call [`Reassembler::poll_event`] afterwards.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        self.input(bytes, None);
    }

    /// [`handle_input`](Self::handle_input) without copying: the payloads of the messages
    /// framed in place are slices of `bytes` (sharing its memory) instead of copies.
    pub fn handle_input_shared(&mut self, bytes: &Bytes) {
        self.input(bytes, Some(bytes));
    }

    /// `bytes`, which are `src` when it is given.
    fn input(&mut self, mut bytes: &[u8], src: Option<&Bytes>) {
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            self.skip = self.skip.saturating_sub(n as u64);
            self.buf_offset = self.buf_offset.saturating_add(n as u64);
            bytes = bytes.get(n..).unwrap_or(&[]);
        }
        if bytes.is_empty() {
            return;
        }
        // A chunk begun in an earlier input is completed from the head of this one first, so
        // that the rest is framed in place instead of being copied behind it: the same as if
        // the input had been split there, which the reassembler must (and does) not notice.
        while !self.buf.is_empty() && !bytes.is_empty() {
            let want = self.to_complete_buffered();
            let (head, rest) = bytes.split_at(want.min(bytes.len()));
            self.append_and_process(head);
            bytes = rest;
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.skip = self.skip.saturating_sub(n as u64);
                self.buf_offset = self.buf_offset.saturating_add(n as u64);
                bytes = bytes.get(n..).unwrap_or(&[]);
            }
        }
        if bytes.is_empty() {
            return;
        }
        // Fast path: frame straight from the input, copy only an incomplete tail.
        let used = self.process(bytes, src);
        let tail = bytes.get(used..).unwrap_or(&[]);
        self.keep_tail(tail, used);
    }

    /// How many more bytes the buffered start of a chunk needs to be whole (the rest of its
    /// header first); all of the input (`usize::MAX`) while resyncing, or when the header
    /// announces a size that will not be buffered anyway.
    fn to_complete_buffered(&self) -> usize {
        if self.resync_from.is_some() {
            return usize::MAX;
        }
        let have = self.buf.len();
        if have < MESSAGE_HEADER_LEN {
            return MESSAGE_HEADER_LEN.saturating_sub(have);
        }
        let size = self
            .buf
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        if size > self.max_chunk_size() {
            return usize::MAX;
        }
        // At least one byte, so that the loop always moves on.
        (size as usize).saturating_sub(have).max(1)
    }

    /// Appends `bytes` to the buffered ones and frames what is whole.
    fn append_and_process(&mut self, bytes: &[u8]) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(bytes);
        let used = self.process(&buf, None);
        buf.drain(..used.min(buf.len()));
        self.buf_offset = self.buf_offset.saturating_add(used as u64);
        self.buf = buf;
        self.apply_skip_to_buffer();
    }

    fn keep_tail(&mut self, tail: &[u8], used: usize) {
        self.buf_offset = self.buf_offset.saturating_add(used as u64);
        self.buf.extend_from_slice(tail);
        self.apply_skip_to_buffer();
    }

    fn apply_skip_to_buffer(&mut self) {
        if self.skip > 0 && !self.buf.is_empty() {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            self.buf.drain(..n);
            self.skip = self.skip.saturating_sub(n as u64);
            self.buf_offset = self.buf_offset.saturating_add(n as u64);
        }
    }

    /// The next event, if any. Call after every [`Reassembler::handle_input`] until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ReassemblyEvent> {
        self.events.pop_front()
    }

    fn max_chunk_size(&self) -> u32 {
        match self.limits.max_chunk_size {
            Some(l) => l.min(self.ceilings.max_chunk_size),
            None => self.ceilings.max_chunk_size,
        }
    }

    /// Frames and handles every whole chunk at the start of `data`; returns the bytes used.
    /// Bytes to skip past the end of `data` are left in `self.skip`.
    fn process(&mut self, data: &[u8], src: Option<&Bytes>) -> usize {
        let mut pos = 0usize;
        let max = self.max_chunk_size();
        loop {
            let rest = data.get(pos..).unwrap_or(&[]);
            if rest.is_empty() {
                return pos;
            }
            let at = self.buf_offset.saturating_add(pos as u64);
            match frame(rest, Some(max)) {
                Ok(Frame::Incomplete { .. }) => return pos,
                Ok(Frame::Complete { header }) => {
                    if let Some(from) = self.resync_from.take() {
                        self.flush_pending_error();
                        self.events.push_back(ReassemblyEvent::Resynced {
                            offset: at,
                            skipped: at.saturating_sub(from),
                        });
                    }
                    let size = header.message_size as usize;
                    let chunk = rest.get(..size).unwrap_or(rest);
                    self.handle_chunk(header, chunk, at, src);
                    pos = pos.saturating_add(size);
                }
                Err(e) => {
                    if let DecodeErrorKind::LimitExceeded { actual, .. } = e.kind {
                        // A well-formed header with an oversized MessageSize: report it with the
                        // header's bytes, and skip the whole chunk without buffering it, unless
                        // the size is absurd (then the header is more likely garbage: resync).
                        let header = rest.get(..MESSAGE_HEADER_LEN).unwrap_or(rest);
                        let plausible =
                            actual <= u64::from(self.ceilings.max_chunk_size).saturating_mul(16);
                        if self.resync_from.is_none() {
                            self.push_error(e, header, at, parse_header_only(rest));
                            if plausible {
                                let avail = rest.len() as u64;
                                if actual <= avail {
                                    pos = pos.saturating_add(actual as usize);
                                } else {
                                    self.skip = actual.saturating_sub(avail);
                                    return data.len();
                                }
                                continue;
                            }
                            self.resync_from = Some(at);
                        }
                    } else if self.resync_from.is_none() {
                        // Reported once the resync point is known, with the skipped bytes as its
                        // hex prefix: the same event however the stream was split.
                        let mut error = e;
                        error.offset = error
                            .offset
                            .saturating_add(usize::try_from(at).unwrap_or(usize::MAX));
                        self.pending_error = Some((error, Vec::new()));
                        self.resync_from = Some(at);
                    }
                    // Scan for the next plausible header.
                    match find_plausible_header(rest.get(1..).unwrap_or(&[]), max) {
                        Some(i) => {
                            let skipped = i.saturating_add(1);
                            self.note_skipped(rest.get(..skipped).unwrap_or(&[]));
                            pos = pos.saturating_add(skipped);
                        }
                        None => {
                            // Keep up to 7 bytes that may start a header.
                            let keep = rest.len().saturating_sub(1).min(MESSAGE_HEADER_LEN - 1);
                            let dropped = rest.len().saturating_sub(keep);
                            self.note_skipped(rest.get(..dropped).unwrap_or(&[]));
                            return data.len().saturating_sub(keep);
                        }
                    }
                }
            }
        }
    }

    /// Adds skipped bytes to the prefix of the error waiting to be reported.
    fn note_skipped(&mut self, bytes: &[u8]) {
        if let Some((_, prefix)) = self.pending_error.as_mut() {
            let room = 32usize.saturating_sub(prefix.len());
            prefix.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or(&[]));
        }
    }

    fn flush_pending_error(&mut self) {
        if let Some((error, prefix)) = self.pending_error.take() {
            self.events.push_back(ReassemblyEvent::Error {
                error,
                prefix,
                framed_as: None,
            });
        }
    }

    /// The stream ended: reports an error still waiting for its resync point. Call once, at
    /// the end of the connection (or capture), then drain [`Reassembler::poll_event`].
    pub fn finish(&mut self) {
        self.note_buffered();
        self.flush_pending_error();
    }

    /// While resyncing, the bytes still buffered are skipped ones too.
    fn note_buffered(&mut self) {
        if self.resync_from.is_some() {
            let buffered = std::mem::take(&mut self.buf);
            self.note_skipped(&buffered);
            self.buf = buffered;
        }
    }

    fn push_error(
        &mut self,
        mut error: DecodeError,
        bytes: &[u8],
        at: u64,
        framed_as: Option<MessageHeader>,
    ) {
        error.offset = error
            .offset
            .saturating_add(usize::try_from(at).unwrap_or(usize::MAX));
        self.events.push_back(ReassemblyEvent::Error {
            error,
            prefix: bytes.get(..bytes.len().min(32)).unwrap_or(&[]).to_vec(),
            framed_as,
        });
    }

    fn handle_chunk(&mut self, header: MessageHeader, chunk: &[u8], at: u64, src: Option<&Bytes>) {
        if !header.message_type.is_secure_conversation() {
            self.events
                .push_back(ReassemblyEvent::Message(AssembledMessage {
                    message_type: header.message_type,
                    offset: at,
                    chunks: 1,
                    size: chunk.len() as u64,
                    secure_channel_id: None,
                    token_id: None,
                    open_security_header: None,
                    sequence_header: None,
                    payload: share(src, chunk),
                    encrypted: false,
                    signature_stripped: false,
                    decrypted: false,
                }));
            return;
        }
        let wire_len = chunk.len() as u64;
        let opened = self.open_chunk(header, chunk, at);
        let (chunk, protection) = match &opened {
            Some(clear) => (clear.as_slice(), Protection::Decrypted),
            None => (chunk, self.protection),
        };
        let mut r = Reader::with_base(chunk, usize::try_from(at).unwrap_or(usize::MAX));
        let parsed = match parse_chunk(&mut r, protection) {
            Ok(c) => c,
            Err(error) => {
                self.events.push_back(ReassemblyEvent::Error {
                    error,
                    prefix: chunk.get(..chunk.len().min(32)).unwrap_or(&[]).to_vec(),
                    framed_as: Some(header),
                });
                return;
            }
        };
        if let Some(seq) = parsed.sequence_header {
            // Under a guessed Sign mode the "sequence header" may be ciphertext.
            if !self.guessed_sign || opened.is_some() {
                self.check_sequence_number(seq.sequence_number, at);
            }
        }
        let request_id = parsed.sequence_header.map(|s| s.request_id);
        let open_security_header = match &parsed.security_header {
            SecurityHeader::Asymmetric(a) => Some(OpenSecurityHeader {
                security_policy_uri: owned_string(&a.security_policy_uri),
                sender_certificate: owned_bytes(&a.sender_certificate),
                receiver_certificate_thumbprint: owned_bytes(&a.receiver_certificate_thumbprint),
            }),
            SecurityHeader::Symmetric { .. } => None,
        };
        let idx = self
            .partials
            .iter()
            .position(|p| p.request_id == request_id);
        match header.chunk_type {
            ChunkType::Abort => {
                let dropped = idx.map(|i| self.partials.remove(i));
                self.discarding.retain(|d| *d != request_id);
                let (error, reason) = if parsed.encrypted {
                    (None, None)
                } else {
                    match parse_error_message(&mut Reader::new(parsed.body)) {
                        Ok(m) => (Some(m.error), Some(m.reason.to_string_lossy().into_owned())),
                        Err(_) => (None, None),
                    }
                };
                self.events.push_back(ReassemblyEvent::Aborted {
                    offset: at,
                    secure_channel_id: parsed.secure_channel_id,
                    request_id,
                    chunks_dropped: dropped.map_or(0, |p| p.chunks),
                    error,
                    reason,
                });
            }
            ChunkType::Intermediate | ChunkType::Final => {
                if self.discarding.contains(&request_id) {
                    if header.chunk_type == ChunkType::Final {
                        self.discarding.retain(|d| *d != request_id);
                    }
                    return;
                }
                let mut partial = match idx {
                    Some(i) => self.partials.remove(i),
                    None => Partial {
                        request_id,
                        offset: at,
                        chunks: 0,
                        size: 0,
                        body: Vec::new(),
                        secure_channel_id: parsed.secure_channel_id,
                    },
                };
                partial.chunks = partial.chunks.saturating_add(1);
                partial.size = partial.size.saturating_add(wire_len);
                partial.secure_channel_id = parsed.secure_channel_id;
                let body_len = partial.body.len().saturating_add(parsed.body.len());
                if let Some(err) = self.check_message_limits(&partial, body_len, at) {
                    self.events.push_back(err);
                    if header.chunk_type == ChunkType::Intermediate {
                        self.discarding.push(request_id);
                    }
                    return;
                }
                let payload = if header.chunk_type == ChunkType::Final && partial.body.is_empty() {
                    // Single-chunk message: the input's own bytes when they are shared, else
                    // one copy straight from the input.
                    share(src, parsed.body)
                } else {
                    partial.body.extend_from_slice(parsed.body);
                    Bytes::new()
                };
                if header.chunk_type == ChunkType::Intermediate {
                    if self.partials.len() >= self.ceilings.max_partial_messages {
                        let old = self.partials.remove(0);
                        self.events.push_back(ReassemblyEvent::Error {
                            error: DecodeError {
                                offset: usize::try_from(old.offset).unwrap_or(usize::MAX),
                                structure: "Chunk",
                                kind: DecodeErrorKind::LimitExceeded {
                                    field: "messages in reassembly",
                                    limit: self.ceilings.max_partial_messages as u64,
                                    actual: (self.ceilings.max_partial_messages as u64)
                                        .saturating_add(1),
                                },
                            },
                            prefix: Vec::new(),
                            framed_as: None,
                        });
                    }
                    self.partials.push(partial);
                    return;
                }
                self.events
                    .push_back(ReassemblyEvent::Message(AssembledMessage {
                        message_type: header.message_type,
                        offset: partial.offset,
                        chunks: partial.chunks,
                        size: partial.size,
                        secure_channel_id: Some(partial.secure_channel_id),
                        token_id: parsed.token_id(),
                        open_security_header,
                        sequence_header: parsed.sequence_header,
                        payload: if partial.body.is_empty() {
                            payload
                        } else {
                            Bytes::from(partial.body)
                        },
                        encrypted: parsed.encrypted,
                        signature_stripped: self.guessed_sign && !parsed.signature.is_empty(),
                        decrypted: opened.is_some(),
                    }));
            }
        }
    }

    /// Lets the opener, if any, open a secured chunk; a failure is reported and the chunk is
    /// then read as the observer sees it.
    fn open_chunk(&mut self, header: MessageHeader, chunk: &[u8], at: u64) -> Option<Vec<u8>> {
        let opener = self.opener.as_mut()?;
        match opener.open(chunk)? {
            Ok(clear) => Some(clear),
            Err((offset, field)) => {
                self.events.push_back(ReassemblyEvent::Error {
                    error: DecodeError {
                        offset: usize::try_from(at)
                            .unwrap_or(usize::MAX)
                            .saturating_add(offset),
                        structure: "Chunk",
                        kind: DecodeErrorKind::InvalidValue { field },
                    },
                    prefix: chunk.get(..chunk.len().min(32)).unwrap_or(&[]).to_vec(),
                    framed_as: Some(header),
                });
                None
            }
        }
    }

    /// Plugs in the keys of a passive observer: secured chunks it can open are read in clear.
    pub fn set_opener(&mut self, opener: Box<dyn ChunkOpener>) {
        self.opener = Some(opener);
    }

    fn check_message_limits(
        &self,
        partial: &Partial,
        body_len: usize,
        at: u64,
    ) -> Option<ReassemblyEvent> {
        let max_msg = match self.limits.max_message_size {
            Some(l) => l.min(self.ceilings.max_message_size),
            None => self.ceilings.max_message_size,
        };
        let (field, limit, actual) = if body_len as u64 > u64::from(max_msg) {
            ("MaxMessageSize", u64::from(max_msg), body_len as u64)
        } else {
            let max_chunks = match self.limits.max_chunk_count {
                Some(l) => l.min(self.ceilings.max_chunk_count),
                None => self.ceilings.max_chunk_count,
            };
            if partial.chunks > max_chunks {
                (
                    "MaxChunkCount",
                    u64::from(max_chunks),
                    u64::from(partial.chunks),
                )
            } else {
                return None;
            }
        };
        Some(ReassemblyEvent::Error {
            error: DecodeError {
                offset: usize::try_from(at).unwrap_or(usize::MAX),
                structure: "Message",
                kind: DecodeErrorKind::LimitExceeded {
                    field,
                    limit,
                    actual,
                },
            },
            prefix: Vec::new(),
            framed_as: None,
        })
    }

    fn check_sequence_number(&mut self, got: u32, at: u64) {
        if let Some(last) = self.last_sequence_number {
            let expected = last.wrapping_add(1);
            let wrapped_ok = last >= SEQUENCE_WRAP_FLOOR && got < 1024;
            if got != expected && !wrapped_ok {
                self.events.push_back(ReassemblyEvent::SequenceNumberJump {
                    offset: at,
                    expected,
                    got,
                });
            }
        }
        self.last_sequence_number = Some(got);
    }
}

/// `part` of the input as a payload: a slice of `src` when it lies in it, else a copy.
fn share(src: Option<&Bytes>, part: &[u8]) -> Bytes {
    if let Some(src) = src {
        let start = (part.as_ptr() as usize).checked_sub(src.as_ptr() as usize);
        if let Some(start) = start {
            if start
                .checked_add(part.len())
                .is_some_and(|end| end <= src.len())
            {
                return src.slice_ref(part);
            }
        }
    }
    Bytes::copy_from_slice(part)
}

fn owned_string(s: &UaString<'_>) -> Option<Vec<u8>> {
    s.as_bytes().map(<[u8]>::to_vec)
}

fn owned_bytes(s: &ByteString<'_>) -> Option<Vec<u8>> {
    s.as_bytes().map(<[u8]>::to_vec)
}

fn parse_header_only(bytes: &[u8]) -> Option<MessageHeader> {
    crate::tcp::parse_message_header(&mut Reader::new(bytes)).ok()
}

/// Index of the first position in `data` where a plausible message header starts (or where too
/// few bytes remain to tell).
fn find_plausible_header(data: &[u8], max: u32) -> Option<usize> {
    (0..data.len()).find(|&i| {
        let rest = data.get(i..).unwrap_or(&[]);
        match frame(rest, Some(max)) {
            Ok(_) => true,
            Err(e) => matches!(e.kind, DecodeErrorKind::UnexpectedEnd { .. }),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )]
    use super::*;

    fn chunk(kind: &[u8; 3], chunk: u8, seq: u32, req: u32, body: &[u8]) -> Vec<u8> {
        let mut v = kind.to_vec();
        v.push(chunk);
        v.extend_from_slice(&(24 + body.len() as u32).to_le_bytes());
        for x in [5u32, 1, seq, req] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    fn drain(r: &mut Reassembler) -> Vec<ReassemblyEvent> {
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    fn messages(events: &[ReassemblyEvent]) -> Vec<&AssembledMessage> {
        events
            .iter()
            .filter_map(|e| match e {
                ReassemblyEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn three_chunk_stream() -> Vec<u8> {
        let mut s = chunk(b"MSG", b'C', 10, 7, &[1, 2, 3]);
        s.extend(chunk(b"MSG", b'F', 11, 8, &[0xaa])); // another request in between
        s.extend(chunk(b"MSG", b'C', 12, 7, &[4, 5]));
        s.extend(chunk(b"MSG", b'F', 13, 7, &[6]));
        s
    }

    #[test]
    fn reassembles_interleaved_requests_at_every_split() {
        let stream = three_chunk_stream();
        for cut in 0..=stream.len() {
            let mut r = Reassembler::default();
            r.handle_input(&stream[..cut]);
            r.handle_input(&stream[cut..]);
            let ev = drain(&mut r);
            let ms = messages(&ev);
            assert_eq!(ms.len(), 2, "cut {cut}: {ev:?}");
            assert_eq!(ms[0].payload, vec![0xaa]);
            assert_eq!(ms[1].payload, vec![1, 2, 3, 4, 5, 6]);
            assert_eq!(ms[1].chunks, 3);
            assert_eq!(ms[1].offset, 0);
            assert_eq!(ms[1].size, stream.len() as u64 - 25);
            assert_eq!(ms[1].sequence_header.unwrap().sequence_number, 13);
            assert_eq!(ev.len(), 2, "no other event at cut {cut}");
        }
        // One byte at a time.
        let mut r = Reassembler::default();
        for b in &stream {
            r.handle_input(std::slice::from_ref(b));
        }
        assert_eq!(messages(&drain(&mut r)).len(), 2);
    }

    #[test]
    fn shared_input_gives_the_same_events_and_reads_in_place() {
        let mut stream = chunk(b"MSG", b'F', 1, 1, &[9; 40]);
        stream.extend(three_chunk_stream());
        stream.extend(b"garbage".iter());
        stream.extend(chunk(b"MSG", b'F', 14, 9, &[5; 30]));
        let run = |shared: bool, cuts: &[usize]| {
            let mut r = Reassembler::default();
            let mut from = 0;
            for &cut in cuts.iter().chain([stream.len()].iter()) {
                let piece = &stream[from..cut];
                if shared {
                    r.handle_input_shared(&Bytes::copy_from_slice(piece));
                } else {
                    r.handle_input(piece);
                }
                from = cut;
            }
            r.finish();
            drain(&mut r)
        };
        let whole = run(false, &[]);
        assert_eq!(messages(&whole).len(), 4, "{whole:?}");
        for a in 0..=stream.len() {
            for b in (a..=stream.len()).step_by(7) {
                assert_eq!(run(true, &[a, b]), whole, "cuts {a} {b}");
            }
        }
        // A message framed in the input is a slice of it.
        let input = Bytes::from(stream.clone());
        let mut r = Reassembler::default();
        r.handle_input_shared(&input);
        let ev = drain(&mut r);
        let first = messages(&ev)[0];
        let inside = input.as_ptr_range();
        assert!(inside.contains(&first.payload.as_ptr()));
    }

    #[test]
    fn enforces_max_chunk_count_and_message_size() {
        let mut r = Reassembler::default();
        r.set_limits(Limits {
            max_chunk_size: None,
            max_message_size: None,
            max_chunk_count: Some(2),
        });
        r.handle_input(&three_chunk_stream());
        let ev = drain(&mut r);
        assert!(ev.iter().any(|e| matches!(e, ReassemblyEvent::Error { error, .. }
            if matches!(error.kind, DecodeErrorKind::LimitExceeded { field: "MaxChunkCount", limit: 2, actual: 3 }))));
        assert_eq!(
            messages(&ev).len(),
            1,
            "only the small message survives: {ev:?}"
        );
        // The next message is reassembled normally.
        r.handle_input(&chunk(b"MSG", b'F', 14, 9, &[1]));
        assert_eq!(messages(&drain(&mut r)).len(), 1);

        let mut r = Reassembler::default();
        r.set_limits(Limits {
            max_chunk_size: None,
            max_message_size: Some(4),
            max_chunk_count: None,
        });
        r.handle_input(&three_chunk_stream());
        let ev = drain(&mut r);
        assert!(ev.iter().any(|e| matches!(e, ReassemblyEvent::Error { error, .. }
            if matches!(error.kind, DecodeErrorKind::LimitExceeded { field: "MaxMessageSize", .. }))));
        assert_eq!(messages(&ev).len(), 1);
    }

    #[test]
    fn chunk_count_ceiling_applies_when_no_max_chunk_count_was_stated() {
        let mut r = Reassembler::new(Ceilings {
            max_chunk_count: 3,
            ..Ceilings::default()
        });
        r.set_limits(Limits::from_receiver(8192, 0, 0));
        let mut s = Vec::new();
        for seq in 1..=10 {
            s.extend(chunk(b"MSG", b'C', seq, 7, &[]));
        }
        s.extend(chunk(b"MSG", b'F', 11, 7, &[]));
        s.extend(chunk(b"MSG", b'F', 12, 8, &[1]));
        r.handle_input(&s);
        let ev = drain(&mut r);
        let errors: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, ReassemblyEvent::Error { .. }))
            .collect();
        assert!(
            matches!(&errors[..], [ReassemblyEvent::Error { error, .. }]
            if matches!(error.kind, DecodeErrorKind::LimitExceeded { field: "MaxChunkCount", limit: 3, actual: 4 })),
            "one error for the whole message: {ev:?}"
        );
        // The oversized message is dropped, the next one reassembled.
        assert_eq!(messages(&ev).len(), 1, "{ev:?}");
    }

    #[test]
    fn incomplete_chunk_tells_where_the_held_chunk_begins() {
        let mut r = Reassembler::default();
        let c = chunk(b"MSG", b'F', 1, 1, &[1, 2, 3]);
        r.handle_input(&c);
        assert_eq!(r.incomplete_chunk(), None);
        r.handle_input(&c[..1]);
        assert_eq!(r.incomplete_chunk(), Some((c.len() as u64, 1)));
        r.handle_input(&c[1..5]);
        assert_eq!(r.incomplete_chunk(), Some((c.len() as u64, 5)));
        r.handle_input(&c[5..]);
        assert_eq!(r.incomplete_chunk(), None);
    }

    #[test]
    fn oversized_chunk_is_skipped_without_buffering() {
        let mut r = Reassembler::default();
        r.set_limits(Limits::from_receiver(8192, 0, 0));
        let big = chunk(b"MSG", b'F', 1, 1, &vec![0u8; 9000]);
        r.handle_input(&big[..100]);
        let ev = drain(&mut r);
        assert!(
            matches!(&ev[..], [ReassemblyEvent::Error { error, framed_as: Some(_), .. }]
            if matches!(error.kind, DecodeErrorKind::LimitExceeded { field: "MessageSize", limit: 8192, .. }))
        );
        assert!(r.buf.is_empty(), "nothing of the oversized chunk is kept");
        r.handle_input(&big[100..]);
        r.handle_input(&chunk(b"MSG", b'F', 2, 2, &[7]));
        let ev = drain(&mut r);
        assert_eq!(messages(&ev).len(), 1, "{ev:?}");
        assert_eq!(messages(&ev)[0].offset, big.len() as u64);
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut s = chunk(b"MSG", b'C', 1, 3, &[1, 2]);
        let mut abort_body = 0x8080_0000u32.to_le_bytes().to_vec();
        abort_body.extend_from_slice(&4i32.to_le_bytes());
        abort_body.extend_from_slice(b"full");
        s.extend(chunk(b"MSG", b'A', 2, 3, &abort_body));
        s.extend(chunk(b"MSG", b'F', 3, 3, &[9]));
        let mut r = Reassembler::default();
        r.handle_input(&s);
        let ev = drain(&mut r);
        assert!(matches!(&ev[0], ReassemblyEvent::Aborted {
            request_id: Some(3), chunks_dropped: 1, error: Some(0x8080_0000), reason: Some(reason), ..
        } if reason == "full"));
        let ms = messages(&ev);
        assert_eq!(ms.len(), 1);
        assert_eq!(
            ms[0].payload,
            vec![9],
            "the aborted chunks are not part of it"
        );
    }

    #[test]
    fn garbage_is_reported_once_and_skipped() {
        let mut s = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        s.extend(chunk(b"MSG", b'F', 1, 1, &[1]));
        let mut r = Reassembler::default();
        r.handle_input(&s);
        let ev = drain(&mut r);
        assert!(
            matches!(&ev[0], ReassemblyEvent::Error { error, prefix, framed_as: None }
            if error.offset == 0 && prefix.starts_with(b"GET"))
        );
        assert!(matches!(
            &ev[1],
            ReassemblyEvent::Resynced {
                offset: 18,
                skipped: 18
            }
        ));
        assert_eq!(messages(&ev).len(), 1);
        assert_eq!(ev.len(), 3);
    }

    #[test]
    fn sequence_number_jumps_and_gaps() {
        let mut r = Reassembler::default();
        r.handle_input(&chunk(b"MSG", b'F', 1, 1, &[1]));
        r.handle_input(&chunk(b"MSG", b'F', 3, 2, &[1]));
        let ev = drain(&mut r);
        assert!(ev.iter().any(|e| matches!(
            e,
            ReassemblyEvent::SequenceNumberJump {
                expected: 2,
                got: 3,
                ..
            }
        )));
        // Legacy wrap near the top is in order.
        r.handle_input(&chunk(b"MSG", b'F', u32::MAX - 5, 3, &[1]));
        drain(&mut r);
        r.handle_input(&chunk(b"MSG", b'F', 2, 4, &[1]));
        assert!(!drain(&mut r)
            .iter()
            .any(|e| matches!(e, ReassemblyEvent::SequenceNumberJump { .. })));
        // A capture gap: the half chunk before it is dropped, framing resumes after it.
        let c = chunk(b"MSG", b'F', 3, 5, &[1, 2, 3]);
        r.handle_input(&c[..10]);
        r.handle_gap(17);
        r.handle_input(&chunk(b"MSG", b'F', 5, 6, &[4]));
        let ev = drain(&mut r);
        let ms = messages(&ev);
        assert_eq!(ms.len(), 1, "{ev:?}");
        assert_eq!(ms[0].payload, vec![4]);
    }

    /// Found by fuzzing: an error's hex prefix used to depend on how many bytes had arrived
    /// when the error was seen, so the same stream split differently gave different events.
    #[test]
    fn error_events_do_not_depend_on_splits() {
        let run = |data: &[u8], step: usize, limit: Option<u32>| {
            let mut r = Reassembler::default();
            r.set_limits(Limits {
                max_chunk_size: limit,
                ..Limits::default()
            });
            for piece in data.chunks(step) {
                r.handle_input(piece);
            }
            r.finish();
            drain(&mut r)
        };
        let mut oversized = chunk(b"MSG", b'F', 1, 1, &[7u8; 1500]);
        oversized.extend(b"garbage after it, then nothing".iter());
        for (data, limit) in [
            (b"L\0".to_vec(), Some(256)),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), None),
            (oversized, Some(1024)),
        ] {
            let whole = run(&data, data.len(), limit);
            assert!(!whole.is_empty());
            for step in 1..9 {
                assert_eq!(run(&data, step, limit), whole, "split every {step} bytes");
            }
        }
    }

    #[test]
    fn absurd_sizes_resync_rather_than_jump_gigabytes() {
        let mut s = b"MSGF\xf0\xff\xff\xff".to_vec();
        s.extend(chunk(b"MSG", b'F', 1, 1, &[1]));
        let mut r = Reassembler::default();
        r.set_limits(Limits::from_receiver(65536, 0, 0));
        r.handle_input(&s);
        let ev = drain(&mut r);
        assert!(matches!(&ev[0], ReassemblyEvent::Error { error, .. }
            if matches!(error.kind, DecodeErrorKind::LimitExceeded { .. })));
        assert_eq!(messages(&ev).len(), 1, "the next message is found: {ev:?}");
    }
}
