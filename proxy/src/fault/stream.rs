//! Frames one direction of a proxied stream into UA messages so that message faults can act on
//! whole messages: drop them (renumbering the following chunks), answer them with an ERR, or
//! end the connection after them.
//!
//! While no message fault concerns the direction, the framer only follows the chunk boundaries
//! and forwards every byte at once, so that it can start holding whole messages at the next
//! boundary when a fault is added at run time. Bytes are held back only while a message fault
//! is in force, and never more than [`MAX_HELD`].

use uatap_codec::reader::Reader;
use uatap_codec::secure::{parse_chunk, Protection, SecurityHeader};
use uatap_codec::services::{parse_message, summarize_message};
use uatap_codec::status::StatusCode;
use uatap_codec::tcp::{frame, ChunkType, Frame, MessageType, MESSAGE_HEADER_LEN};

use super::table::{MessageInfo, Verdict};

/// The most a framer holds back (one message of all its chunks); a bigger message is forwarded
/// as it comes and the faults stop looking at this direction.
pub const MAX_HELD: usize = 64 * 1024 * 1024;

/// How many bytes of an OPN chunk are kept to read its security policy.
const OPN_HEAD: usize = 1024;

/// Why a framer stopped the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Answer the client with an ERR of this status and close.
    Reply {
        /// The fault.
        fault: u64,
        /// The ERR's status.
        status: StatusCode,
    },
    /// Close after what was forwarded.
    Kill {
        /// The fault.
        fault: u64,
        /// With a RST.
        reset: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// At a chunk boundary; `head` has the first bytes of the next chunk (already forwarded).
    Boundary,
    /// Inside a chunk that is streamed; this many bytes of it are still to come.
    Body { remaining: usize },
    /// Not UA TCP, or too big to hold: everything passes unchanged.
    Lost,
}

/// One direction's framer.
#[derive(Debug)]
pub struct MessageFramer {
    follow: Follow,
    /// The first bytes of the chunk being streamed (header; OPN: up to [`OPN_HEAD`]).
    head: Vec<u8>,
    head_want: usize,
    /// Hold whole messages (a message fault is in force).
    hold: bool,
    /// Bytes held, starting at a chunk boundary.
    held: Vec<u8>,
    /// Whole chunks of the message being gathered, and their count.
    message: Vec<u8>,
    message_chunks: u32,
    /// The channel is secured: bodies cannot be read.
    secured: bool,
    /// Chunks dropped so far in this direction: later sequence numbers are lowered by this.
    dropped_chunks: u32,
    /// Something to tell the user once (framing given up).
    pub note: Option<String>,
}

impl Default for MessageFramer {
    fn default() -> Self {
        MessageFramer {
            follow: Follow::Boundary,
            head: Vec::new(),
            head_want: MESSAGE_HEADER_LEN,
            hold: false,
            held: Vec::new(),
            message: Vec::new(),
            message_chunks: 0,
            secured: false,
            dropped_chunks: 0,
            note: None,
        }
    }
}

impl MessageFramer {
    /// Turns holding on or off (it takes effect at the next chunk boundary). Once chunks were
    /// dropped on a security None channel, holding stays on: every later chunk must be
    /// renumbered for the channel to stay valid, also after the fault that dropped them ended.
    pub fn set_hold(&mut self, hold: bool) {
        self.hold = hold || (self.dropped_chunks > 0 && !self.secured);
    }

    /// True while bytes are held back.
    pub fn holding(&self) -> bool {
        !self.held.is_empty() || !self.message.is_empty()
    }

    /// Feeds bytes read; appends what to forward now to `out` and what a fault withheld to
    /// `withheld`. `decide` is asked about every whole message while holding. A `Stop` ends
    /// the connection: the rest of `input` is withheld.
    pub fn push(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        withheld: &mut Vec<u8>,
        decide: &mut dyn FnMut(&MessageInfo) -> Verdict,
    ) -> Option<Stop> {
        while !input.is_empty() {
            match self.follow {
                Follow::Lost => {
                    out.extend_from_slice(input);
                    return None;
                }
                Follow::Body { remaining } => {
                    let n = remaining.min(input.len());
                    let (now, rest) = input.split_at(n);
                    self.capture(now);
                    self.forward(now, out);
                    input = rest;
                    let left = remaining.saturating_sub(n);
                    if left == 0 {
                        self.chunk_streamed();
                        self.follow = Follow::Boundary;
                    } else {
                        self.follow = Follow::Body { remaining: left };
                    }
                }
                Follow::Boundary if self.hold && self.head.is_empty() => {
                    self.held.extend_from_slice(input);
                    input = &[];
                    if let Some(stop) = self.drain_held(out, withheld, decide) {
                        withheld.append(&mut self.held);
                        return Some(stop);
                    }
                }
                Follow::Boundary => {
                    // Stream the header through, keeping a copy to read it.
                    let n = MESSAGE_HEADER_LEN
                        .saturating_sub(self.head.len())
                        .min(input.len());
                    let (now, rest) = input.split_at(n);
                    self.head.extend_from_slice(now);
                    self.forward(now, out);
                    input = rest;
                    if self.head.len() >= MESSAGE_HEADER_LEN {
                        self.start_streamed_chunk();
                    }
                }
            }
        }
        None
    }

    /// The stream ended: what is still held goes out as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        // Whole chunks of an unfinished message keep the renumbering of what went before.
        self.flush_message(out);
        out.append(&mut self.held);
    }

    fn forward(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
    }

    fn capture(&mut self, bytes: &[u8]) {
        let room = self.head_want.saturating_sub(self.head.len());
        if let Some(b) = bytes.get(..room.min(bytes.len())) {
            self.head.extend_from_slice(b);
        }
    }

    /// A chunk header was streamed: follow its body.
    fn start_streamed_chunk(&mut self) {
        match frame(&self.head, None) {
            Ok(Frame::Incomplete { needed }) => {
                let is_opn = self.head.starts_with(b"OPN");
                self.head_want = if is_opn {
                    OPN_HEAD.min(self.head.len().saturating_add(needed))
                } else {
                    MESSAGE_HEADER_LEN
                };
                self.follow = Follow::Body { remaining: needed };
            }
            Ok(Frame::Complete { .. }) => {
                // An 8-byte message (an empty body): done.
                self.chunk_streamed();
            }
            Err(_) => self.lose("the stream is not UA TCP"),
        }
    }

    /// A streamed chunk ended: read what matters from its head.
    fn chunk_streamed(&mut self) {
        if self.head.starts_with(b"OPN") {
            self.read_opn_policy_from_head();
        }
        self.head.clear();
        self.head_want = MESSAGE_HEADER_LEN;
    }

    fn read_opn_policy_from_head(&mut self) {
        let mut r = Reader::new(&self.head);
        let _ = r.skip(MESSAGE_HEADER_LEN.saturating_add(4), "OPN");
        if let Ok(h) = uatap_codec::secure::parse_asymmetric_security_header(&mut r) {
            self.secured = !h.is_policy_none();
        }
    }

    fn lose(&mut self, why: &str) {
        self.follow = Follow::Lost;
        self.note = Some(format!(
            "message faults no longer apply to this direction: {why}"
        ));
    }

    /// Takes the whole chunks out of `held` and decides on each whole message.
    fn drain_held(
        &mut self,
        out: &mut Vec<u8>,
        withheld: &mut Vec<u8>,
        decide: &mut dyn FnMut(&MessageInfo) -> Verdict,
    ) -> Option<Stop> {
        let held = std::mem::take(&mut self.held);
        let mut at = 0usize;
        let mut stop = None;
        loop {
            let rest = held.get(at..).unwrap_or(&[]);
            if rest.is_empty() {
                break;
            }
            let header = match frame(rest, None) {
                Ok(Frame::Complete { header }) => header,
                Ok(Frame::Incomplete { .. }) => {
                    if self.held.len().saturating_add(self.message.len()) > MAX_HELD {
                        // Too big to hold: let everything go, unchanged from here on.
                        self.flush_message(out);
                        out.extend_from_slice(rest);
                        at = held.len();
                        self.lose("a message is larger than the 64 MiB a fault may hold");
                    }
                    break;
                }
                Err(_) => {
                    self.flush_message(out);
                    out.extend_from_slice(rest);
                    at = held.len();
                    self.lose("the stream is not UA TCP");
                    break;
                }
            };
            let size = header.message_size as usize;
            let end = at.saturating_add(size);
            let Some(chunk) = held.get(at..end) else {
                break;
            };
            let chunk = chunk.to_vec();
            at = end;
            if let Some(s) = self.on_chunk(&chunk, header.chunk_type, out, withheld, decide) {
                stop = Some(s);
                break;
            }
            if !self.hold && self.message.is_empty() {
                // No fault needs whole messages any more: stream from this boundary on.
                let rest = held.get(at..).unwrap_or(&[]);
                at = held.len();
                if !rest.is_empty() {
                    if let Some(s) = self.push(rest, out, withheld, decide) {
                        stop = Some(s);
                    }
                }
                break;
            }
        }
        if let Some(rest) = held.get(at..) {
            // Bytes that came while a recursive push ran are after these.
            let mut kept = rest.to_vec();
            kept.append(&mut self.held);
            self.held = kept;
        }
        stop
    }

    /// One whole chunk while holding.
    fn on_chunk(
        &mut self,
        chunk: &[u8],
        chunk_type: ChunkType,
        out: &mut Vec<u8>,
        withheld: &mut Vec<u8>,
        decide: &mut dyn FnMut(&MessageInfo) -> Verdict,
    ) -> Option<Stop> {
        let message_type = chunk
            .get(..3)
            .and_then(|t| <[u8; 3]>::try_from(t).ok())
            .and_then(MessageType::from_bytes);
        if message_type == Some(MessageType::OpenSecureChannel) {
            if let Ok(c) = parse_chunk(&mut Reader::new(chunk), Protection::None) {
                if let SecurityHeader::Asymmetric(a) = &c.security_header {
                    self.secured = !a.is_policy_none();
                }
            }
        }
        self.message.extend_from_slice(chunk);
        self.message_chunks = self.message_chunks.saturating_add(1);
        let secure = message_type.is_some_and(|t| t.is_secure_conversation());
        if secure && chunk_type == ChunkType::Intermediate {
            return None;
        }
        let info = self.info(message_type);
        let message = std::mem::take(&mut self.message);
        let chunks = std::mem::replace(&mut self.message_chunks, 0);
        match decide(&info) {
            Verdict::Forward => {
                self.emit(message, out);
                None
            }
            Verdict::Drop { .. } => {
                withheld.extend_from_slice(&message);
                self.dropped_chunks = self.dropped_chunks.wrapping_add(chunks);
                None
            }
            Verdict::Reply { fault, status } => {
                withheld.extend_from_slice(&message);
                Some(Stop::Reply { fault, status })
            }
            Verdict::ForwardThenKill { fault, reset } => {
                self.emit(message, out);
                Some(Stop::Kill { fault, reset })
            }
        }
    }

    /// Forwards a held message, its chunks renumbered after drops.
    fn emit(&mut self, mut message: Vec<u8>, out: &mut Vec<u8>) {
        if self.dropped_chunks > 0 && !self.secured {
            renumber(&mut message, self.dropped_chunks);
        }
        out.append(&mut message);
    }

    /// Forwards what is gathered of a message as it is (giving up holding).
    fn flush_message(&mut self, out: &mut Vec<u8>) {
        let m = std::mem::take(&mut self.message);
        self.message_chunks = 0;
        self.emit(m, out);
    }

    /// What the faults need to know about the gathered message.
    fn info(&self, message_type: Option<MessageType>) -> MessageInfo {
        let mut info = MessageInfo {
            message_type,
            secured: self.secured,
            ..MessageInfo::default()
        };
        if message_type != Some(MessageType::Message) || self.secured {
            return info;
        }
        // The body of every chunk, in order (security None: no signature, no padding).
        let mut body = Vec::new();
        let mut rest = &self.message[..];
        while let Ok(Frame::Complete { header }) = frame(rest, None) {
            let size = header.message_size as usize;
            let (one, after) = rest.split_at(size.min(rest.len()));
            if let Ok(c) = parse_chunk(&mut Reader::new(one), Protection::None) {
                body.extend_from_slice(c.body);
            }
            rest = after;
        }
        info.type_id = summarize_message(&body).ok().and_then(|s| s.type_id);
        if matches!(info.type_id, Some(829 | 835)) {
            info.notification_seq = parse_message(&mut Reader::new(&body))
                .ok()
                .and_then(|m| m.notification_sequence_number());
        }
        info
    }
}

/// Lowers the chunk sequence number of every chunk in `message` by `by` (security None).
fn renumber(message: &mut [u8], by: u32) {
    let mut at = 0usize;
    while let Some(rest) = message.get(at..) {
        let Ok(Frame::Complete { header }) = frame(rest, None) else {
            return;
        };
        let size = header.message_size as usize;
        let offset = match header.message_type {
            MessageType::Message | MessageType::CloseSecureChannel => Some(16),
            MessageType::OpenSecureChannel => rest.get(..size).and_then(|c| {
                let parsed = parse_chunk(&mut Reader::new(c), Protection::None).ok()?;
                // The sequence header sits right before the body.
                size.checked_sub(parsed.body.len())?.checked_sub(8)
            }),
            _ => None,
        };
        if let Some(o) = offset.and_then(|o| at.checked_add(o)) {
            if let Some(field) = message.get_mut(o..o.saturating_add(4)) {
                if let Ok(b) = <[u8; 4]>::try_from(&*field) {
                    let seq = u32::from_le_bytes(b).wrapping_sub(by);
                    field.copy_from_slice(&seq.to_le_bytes());
                }
            }
        }
        at = at.saturating_add(size.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_s2c(name: &str) -> Vec<u8> {
        crate::test_support::fixture_streams(&format!("{name}.pcapng")).1
    }

    fn chunks(mut s: &[u8]) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Ok(Frame::Complete { header }) = frame(s, None) {
            let (c, rest) = s.split_at(header.message_size as usize);
            v.push(c.to_vec());
            s = rest;
        }
        v
    }

    fn seq_of(chunk: &[u8]) -> Option<u32> {
        parse_chunk(&mut Reader::new(chunk), Protection::None)
            .ok()?
            .sequence_header
            .map(|s| s.sequence_number)
    }

    #[test]
    fn streaming_without_faults_forwards_every_byte_at_once() {
        let s2c = fixture_s2c("basic-none");
        for step in [1, 3, 7, 64, 1500, 65536] {
            let mut f = MessageFramer::default();
            let (mut out, mut withheld) = (Vec::new(), Vec::new());
            for piece in s2c.chunks(step) {
                let before = out.len();
                let stop = f.push(piece, &mut out, &mut withheld, &mut |_| {
                    panic!("no message is decided on while not holding")
                });
                assert_eq!(stop, None);
                assert_eq!(out.len() - before, piece.len(), "held back at step {step}");
            }
            assert_eq!(out, s2c);
            assert!(withheld.is_empty());
        }
    }

    #[test]
    fn dropping_a_publish_response_renumbers_what_follows() {
        let s2c = fixture_s2c("basic-none");
        let mut seen = Vec::new();
        let mut dropped_seq = None;
        for step in [1, 5, 100, 65536] {
            let mut f = MessageFramer::default();
            f.set_hold(true);
            let (mut out, mut withheld) = (Vec::new(), Vec::new());
            let mut dropped = false;
            seen.clear();
            for piece in s2c.chunks(step) {
                let stop = f.push(piece, &mut out, &mut withheld, &mut |m| {
                    seen.push(m.type_id);
                    if m.type_id == Some(829) && m.notification_seq.is_some() && !dropped {
                        dropped = true;
                        dropped_seq = m.notification_seq;
                        Verdict::Drop { fault: 1 }
                    } else {
                        Verdict::Forward
                    }
                });
                assert_eq!(stop, None);
            }
            f.finish(&mut out);
            assert!(dropped, "the fixture has a PublishResponse");
            assert_eq!(out.len() + withheld.len(), s2c.len());
            // Chunk sequence numbers of what was forwarded still rise by one.
            let seqs: Vec<u32> = chunks(&out).iter().filter_map(|c| seq_of(c)).collect();
            assert!(seqs.len() > 3);
            for w in seqs.windows(2) {
                assert_eq!(w[1], w[0] + 1, "step {step}: {seqs:?}");
            }
            // The dropped message is the one missing.
            assert_eq!(chunks(&withheld).len(), 1);
            let gone = chunks(&withheld).pop().unwrap();
            let body = parse_chunk(&mut Reader::new(&gone), Protection::None)
                .unwrap()
                .body;
            let m = parse_message(&mut Reader::new(body)).unwrap();
            assert_eq!(m.type_id_numeric(), Some(829));
            assert_eq!(m.notification_sequence_number(), dropped_seq);
        }
        assert!(dropped_seq.is_some());
        assert!(seen.contains(&Some(829)));
    }

    /// A fault that drops one message and is then done (`x1`): the relay stops asking for whole
    /// messages, yet every later chunk is still renumbered.
    #[test]
    fn chunks_after_a_drop_stay_renumbered_when_the_fault_is_done() {
        let s2c = fixture_s2c("basic-none");
        let mut f = MessageFramer::default();
        f.set_hold(true);
        let (mut out, mut withheld) = (Vec::new(), Vec::new());
        let mut dropped = false;
        for piece in s2c.chunks(7) {
            let stop = f.push(piece, &mut out, &mut withheld, &mut |m| {
                if m.type_id == Some(829) && !dropped {
                    dropped = true;
                    Verdict::Drop { fault: 1 }
                } else {
                    Verdict::Forward
                }
            });
            assert_eq!(stop, None);
            // The relay's view once the fault has dropped its one message.
            f.set_hold(!dropped);
        }
        f.finish(&mut out);
        assert!(dropped);
        let seqs: Vec<u32> = chunks(&out).iter().filter_map(|c| seq_of(c)).collect();
        assert!(seqs.len() > 3);
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{seqs:?}");
        }
    }

    #[test]
    fn a_kill_forwards_the_message_first_and_a_reply_withholds_it() {
        let s2c = fixture_s2c("basic-none");
        let mut f = MessageFramer::default();
        f.set_hold(true);
        let (mut out, mut withheld) = (Vec::new(), Vec::new());
        let stop = f.push(&s2c, &mut out, &mut withheld, &mut |m| match m.type_id {
            Some(470) => Verdict::ForwardThenKill {
                fault: 2,
                reset: true,
            },
            _ => Verdict::Forward,
        });
        assert_eq!(
            stop,
            Some(Stop::Kill {
                fault: 2,
                reset: true
            })
        );
        let last = chunks(&out).pop().unwrap();
        let mut r = Reader::new(&last);
        let c = parse_chunk(&mut r, Protection::None).unwrap();
        assert_eq!(summarize_message(c.body).unwrap().type_id, Some(470));
        assert_eq!(out.len() + withheld.len(), s2c.len());

        let mut f = MessageFramer::default();
        f.set_hold(true);
        let (mut out, mut withheld) = (Vec::new(), Vec::new());
        let stop = f.push(&s2c, &mut out, &mut withheld, &mut |m| {
            if m.message_type == Some(MessageType::Acknowledge) {
                Verdict::Reply {
                    fault: 3,
                    status: StatusCode(0x807D_0000),
                }
            } else {
                Verdict::Forward
            }
        });
        assert!(matches!(stop, Some(Stop::Reply { fault: 3, .. })));
        assert!(out.is_empty(), "the ACK is the first message");
        assert_eq!(withheld, s2c);
    }

    #[test]
    fn holding_starts_at_the_next_boundary() {
        let s2c = fixture_s2c("basic-none");
        let first = chunks(&s2c)[0].len();
        let mut f = MessageFramer::default();
        let (mut out, mut withheld) = (Vec::new(), Vec::new());
        // Half of the first message streams; then a fault asks to hold.
        f.push(&s2c[..first / 2], &mut out, &mut withheld, &mut |_| {
            Verdict::Forward
        });
        f.set_hold(true);
        let mut decided = 0;
        f.push(&s2c[first / 2..], &mut out, &mut withheld, &mut |_| {
            decided += 1;
            Verdict::Forward
        });
        assert_eq!(out, s2c);
        assert_eq!(decided, chunks(&s2c).len() - 1);
    }

    #[test]
    fn garbage_passes_unchanged() {
        let junk: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = MessageFramer::default();
        f.set_hold(true);
        let (mut out, mut withheld) = (Vec::new(), Vec::new());
        for piece in junk.chunks(333) {
            f.push(piece, &mut out, &mut withheld, &mut |_| Verdict::Forward);
        }
        assert_eq!(out, junk);
        assert!(f.note.is_some());
    }
}
