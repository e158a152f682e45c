//! TCP reassembly: segments in capture order in, ordered byte-stream events out.
//!
//! Each connection (4-tuple, both directions) gets a [`ConnId`] and two endpoints: A, the side
//! guessed to be the client, and B. Bytes are handed over as soon as they are in order, so
//! both directions interleave as on the wire and a request comes out before its response.
//! Out-of-order data waits in a bounded buffer; bytes the capture never saw become
//! [`StreamEvent::Gap`]s once the peer acknowledges past them, the buffer overflows, or the
//! stream ends.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;

use crate::decode::{TcpFlags, TcpSegment};
use crate::time::Timestamp;

/// Default bound on out-of-order bytes buffered per direction before a gap is declared.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 16 << 20;

/// Segments starting further ahead than this (in sequence space) are treated as garbage, not
/// as data after a huge hole; likewise acknowledgments jumping further.
const MAX_AHEAD: i64 = 1 << 30;

/// Identifies one TCP connection in a capture: numbered from 0 in order of appearance, and a
/// reused 4-tuple gets a new id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp#{}", self.0)
    }
}

/// Which way bytes flow. A is the endpoint guessed to be the client (see [`ClientGuess`]);
/// callers that learn otherwise (e.g. the server sent the first protocol message) simply
/// [`reverse`](Direction::reverse) their interpretation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From A (the guessed client) to B (the guessed server).
    AToB,
    /// From B (the guessed server) to A (the guessed client).
    BToA,
}

impl Direction {
    /// The opposite direction.
    #[must_use]
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::AToB => Direction::BToA,
            Direction::BToA => Direction::AToB,
        }
    }

    const fn index(self) -> usize {
        match self {
            Direction::AToB => 0,
            Direction::BToA => 1,
        }
    }
}

/// How the client of a connection was chosen, so callers know how far to trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientGuess {
    /// The client sent the SYN (without ACK) seen in the capture: certain.
    Syn,
    /// The capture starts with the server's SYN+ACK: certain.
    SynAck,
    /// No handshake seen; the caller's hint function decided.
    Hint,
    /// No handshake seen; the endpoint with the higher (ephemeral) port was taken as client.
    HigherPort,
    /// No handshake, equal ports: the sender of the first segment seen was taken as client.
    FirstSender,
}

/// Why a connection's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides sent FIN and all data before them was handed over (or declared missing).
    Fin,
    /// A side sent RST.
    Rst,
    /// A new SYN reused the 4-tuple before this connection was seen to close.
    Reused,
    /// The capture ended while the connection was open.
    EndOfCapture,
}

/// One thing that happened on a TCP connection, in capture order; bytes borrow from the
/// packet or the reassembly buffer when possible (`Cow::Borrowed`), see
/// [`StreamEvent::into_owned`] to keep them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// A connection appeared; always the first event of its id.
    Open {
        /// The connection.
        conn: ConnId,
        /// Endpoint A, guessed to be the client.
        client: SocketAddr,
        /// Endpoint B, guessed to be the server.
        server: SocketAddr,
        /// Time of the first segment.
        ts: Timestamp,
        /// The capture holds the handshake (SYN or SYN+ACK), so streams start at their
        /// first byte.
        syn_seen: bool,
        /// How `client` was chosen.
        guess: ClientGuess,
    },
    /// In-order bytes of one direction.
    Data {
        /// The connection.
        conn: ConnId,
        /// Which way the bytes flowed.
        dir: Direction,
        /// When the bytes were complete: the later of the time of the segment that carried
        /// them and of the one that brought them in order (filled the hole before them), and
        /// never earlier than a previous `Data` event of the connection, so a connection's
        /// `Data` times never decrease even when the capture's timestamps do.
        ts: Timestamp,
        /// Position of the first byte in this direction's stream (bytes and gaps before it).
        offset_in_stream: u64,
        /// The bytes.
        bytes: Cow<'a, [u8]>,
    },
    /// Bytes that were sent but are not in the capture; the stream continues after them.
    Gap {
        /// The connection.
        conn: ConnId,
        /// Which way the missing bytes flowed.
        dir: Direction,
        /// Time of the segment that revealed the gap.
        ts: Timestamp,
        /// Position of the first missing byte in this direction's stream.
        offset_in_stream: u64,
        /// How many bytes are missing.
        missing_bytes: u64,
    },
    /// One side sent FIN (half close); the other side may still send data.
    Fin {
        /// The connection.
        conn: ConnId,
        /// Which side finished: the sender of the FIN.
        dir: Direction,
        /// Time of the FIN (or of what revealed it).
        ts: Timestamp,
    },
    /// The connection is over; no more events with this id.
    Close {
        /// The connection.
        conn: ConnId,
        /// Time of the closing segment (last packet of the capture for `EndOfCapture`).
        ts: Timestamp,
        /// The side that sent the RST or the first FIN, if any.
        by: Option<Direction>,
        /// Why it ended.
        reason: CloseReason,
    },
}

impl StreamEvent<'_> {
    /// The connection the event belongs to; for demultiplexing.
    #[must_use]
    pub fn conn(&self) -> ConnId {
        match self {
            StreamEvent::Open { conn, .. }
            | StreamEvent::Data { conn, .. }
            | StreamEvent::Gap { conn, .. }
            | StreamEvent::Fin { conn, .. }
            | StreamEvent::Close { conn, .. } => *conn,
        }
    }

    /// The event's time.
    #[must_use]
    pub fn ts(&self) -> Timestamp {
        match self {
            StreamEvent::Open { ts, .. }
            | StreamEvent::Data { ts, .. }
            | StreamEvent::Gap { ts, .. }
            | StreamEvent::Fin { ts, .. }
            | StreamEvent::Close { ts, .. } => *ts,
        }
    }

    /// Copies borrowed bytes so the event can outlive the callback.
    #[must_use]
    pub fn into_owned(self) -> StreamEvent<'static> {
        match self {
            StreamEvent::Open {
                conn,
                client,
                server,
                ts,
                syn_seen,
                guess,
            } => StreamEvent::Open {
                conn,
                client,
                server,
                ts,
                syn_seen,
                guess,
            },
            StreamEvent::Data {
                conn,
                dir,
                ts,
                offset_in_stream,
                bytes,
            } => StreamEvent::Data {
                conn,
                dir,
                ts,
                offset_in_stream,
                bytes: Cow::Owned(bytes.into_owned()),
            },
            StreamEvent::Gap {
                conn,
                dir,
                ts,
                offset_in_stream,
                missing_bytes,
            } => StreamEvent::Gap {
                conn,
                dir,
                ts,
                offset_in_stream,
                missing_bytes,
            },
            StreamEvent::Fin { conn, dir, ts } => StreamEvent::Fin { conn, dir, ts },
            StreamEvent::Close {
                conn,
                ts,
                by,
                reason,
            } => StreamEvent::Close {
                conn,
                ts,
                by,
                reason,
            },
        }
    }
}

/// Tunables of the reassembler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Out-of-order bytes buffered per direction before the first hole is declared a gap;
    /// bounds memory on lossy captures.
    pub max_pending_bytes: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
        }
    }
}

/// Counters for a capture-quality summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Segments handled.
    pub segments: u64,
    /// Connections opened (ids handed out).
    pub connections: u64,
    /// Payload bytes handed over in `Data` events.
    pub bytes: u64,
    /// Payload bytes seen again (retransmissions, overlaps, keep-alive probes).
    pub retransmitted_bytes: u64,
    /// Segments that arrived ahead of a hole and were buffered.
    pub out_of_order_segments: u64,
    /// `Gap` events emitted.
    pub gaps: u64,
    /// Bytes reported missing in `Gap` events.
    pub gap_bytes: u64,
    /// Segments with payload on an already closed connection, or lone RSTs, or garbage
    /// sequence numbers; dropped.
    pub ignored_segments: u64,
    /// Segments whose payload the capture cut short (snaplen).
    pub truncated_segments: u64,
}

/// Caller-supplied guess of the client when no handshake was captured: gets the sender and the
/// receiver of the first segment seen, returns `Some(true)` if the sender is the client,
/// `Some(false)` if the receiver is, `None` to fall back to the port heuristic.
pub type ClientHint = Box<dyn FnMut(SocketAddr, SocketAddr) -> Option<bool> + Send>;

/// Turns TCP segments (in capture order) into per-connection byte streams, see the module docs.
/// Feed with [`TcpReassembler::handle_segment`], end with [`TcpReassembler::finish`].
pub struct TcpReassembler {
    config: ReassemblyConfig,
    conns: HashMap<FlowKey, Conn>,
    next_id: u32,
    stats: TcpStats,
    hint: Option<ClientHint>,
    last_ts: Timestamp,
}

impl fmt::Debug for TcpReassembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpReassembler")
            .field("config", &self.config)
            .field("connections", &self.conns.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for TcpReassembler {
    fn default() -> Self {
        TcpReassembler::new(ReassemblyConfig::default())
    }
}

/// Both endpoints, lower first, so both directions find the same connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey(SocketAddr, SocketAddr);

impl FlowKey {
    fn new(x: SocketAddr, y: SocketAddr) -> Self {
        if x <= y {
            FlowKey(x, y)
        } else {
            FlowKey(y, x)
        }
    }
}

struct Conn {
    id: ConnId,
    /// Endpoint A (guessed client).
    a: SocketAddr,
    halves: [Half; 2],
    closed: bool,
    first_fin: Option<Direction>,
    /// Time of the latest `Data` event so far, the floor for the next ones.
    data_ts: Cell<Option<Timestamp>>,
}

impl Conn {
    fn dir_of(&self, src: SocketAddr) -> Direction {
        if src == self.a {
            Direction::AToB
        } else {
            Direction::BToA
        }
    }

    /// Whether `seg` starts a new connection on this 4-tuple.
    fn replaced_by(&self, seg: &TcpSegment<'_>) -> bool {
        let syn = seg.has(TcpFlags::SYN);
        if self.closed {
            return syn;
        }
        if !syn || seg.has(TcpFlags::ACK) {
            return false;
        }
        let Some(half) = self.halves.get(self.dir_of(seg.src).index()) else {
            return false;
        };
        match half.syn_seq {
            // Same ISN: a retransmitted SYN.
            Some(isn) => isn != seg.seq,
            None => half.init,
        }
    }
}

/// (sending half, receiving half) for bytes flowing in `dir`; a free function so the rest of
/// the connection stays borrowable.
fn halves_mut(halves: &mut [Half; 2], dir: Direction) -> (&mut Half, &mut Half) {
    let [ab, ba] = halves;
    match dir {
        Direction::AToB => (ab, ba),
        Direction::BToA => (ba, ab),
    }
}

/// Where events go, plus the counters they update.
struct Out<'s> {
    sink: &'s mut dyn FnMut(StreamEvent<'_>),
    stats: &'s mut TcpStats,
}

/// What every event of one call shares.
#[derive(Clone, Copy)]
struct At<'c> {
    conn: ConnId,
    dir: Direction,
    /// Time of the segment being handled.
    ts: Timestamp,
    /// The connection's latest `Data` time ([`Conn::data_ts`]).
    data_ts: &'c Cell<Option<Timestamp>>,
}

impl At<'_> {
    /// The time of the segment being handled, raised to `carried` (when the bytes came
    /// earlier in the file but later on the clock) and to the connection's previous `Data`.
    fn data_time(self, carried: Timestamp) -> Timestamp {
        let ts = self.ts.max(carried);
        let ts = self.data_ts.get().map_or(ts, |prev| ts.max(prev));
        self.data_ts.set(Some(ts));
        ts
    }
}

/// Out-of-order bytes waiting for the hole before them.
struct Pending {
    /// Time of the segment that carried them.
    ts: Timestamp,
    bytes: Vec<u8>,
}

/// One direction of a connection.
#[derive(Default)]
struct Half {
    /// The stream's start is known (SYN or first data seen).
    init: bool,
    /// Sequence number of the next byte expected.
    next_seq: u32,
    /// Stream offset of `next_seq`: bytes handed over or declared missing so far.
    offset: u64,
    /// Out-of-order data by stream offset.
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    /// Stream offset where this side's FIN sits, once seen.
    fin_at: Option<u64>,
    fin_done: bool,
    syn_seq: Option<u32>,
}

impl Half {
    fn start(&mut self, seq: u32) {
        self.init = true;
        self.next_seq = seq;
        self.offset = 0;
    }

    /// Stream offset of sequence number `seq`, relative to what was handed over so far
    /// (negative: before the stream start); wrap-around safe within ±2 GiB.
    fn rel(&self, seq: u32) -> i64 {
        let offset = i64::try_from(self.offset).unwrap_or(i64::MAX);
        offset.saturating_add(i64::from(seq.wrapping_sub(self.next_seq) as i32))
    }

    fn advance(&mut self, n: u64) {
        self.offset = self.offset.saturating_add(n);
        // Sequence numbers are modulo 2^32; truncation is the point.
        self.next_seq = self.next_seq.wrapping_add(n as u32);
    }

    fn offset_i64(&self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }

    fn accept(&mut self, seq: u32, payload: &[u8], max_pending: usize, at: At<'_>, out: &mut Out) {
        let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
        let start = self.rel(seq);
        let cur = self.offset_i64();
        if self.fin_done || start.saturating_add(len) <= cur {
            out.stats.retransmitted_bytes += payload.len() as u64;
            return;
        }
        if start <= cur {
            let skip = usize::try_from(cur - start).unwrap_or(usize::MAX);
            out.stats.retransmitted_bytes += skip as u64;
            self.deliver(payload.get(skip..).unwrap_or_default(), at.ts, at, out);
            self.flush(at, out);
        } else if start - cur > MAX_AHEAD {
            out.stats.ignored_segments += 1;
        } else {
            out.stats.out_of_order_segments += 1;
            let key = start.unsigned_abs();
            match self.pending.get_mut(&key) {
                Some(existing) if existing.bytes.len() >= payload.len() => {
                    out.stats.retransmitted_bytes += payload.len() as u64;
                }
                Some(existing) => {
                    let old_len = existing.bytes.len();
                    out.stats.retransmitted_bytes += old_len as u64;
                    self.pending_bytes = self.pending_bytes - old_len + payload.len();
                    existing.bytes.clear();
                    existing.bytes.extend_from_slice(payload);
                    existing.ts = at.ts;
                }
                None => {
                    self.pending_bytes += payload.len();
                    let bytes = payload.to_vec();
                    self.pending.insert(key, Pending { ts: at.ts, bytes });
                }
            }
            while self.pending_bytes > max_pending {
                let Some(&first) = self.pending.keys().next() else {
                    break;
                };
                self.skip_to(first, at, out);
            }
        }
        self.try_fin(at, out);
    }

    /// Hands over in-order bytes carried by a segment of time `carried`.
    fn deliver(&mut self, bytes: &[u8], carried: Timestamp, at: At<'_>, out: &mut Out) {
        if bytes.is_empty() {
            return;
        }
        (out.sink)(StreamEvent::Data {
            conn: at.conn,
            dir: at.dir,
            ts: at.data_time(carried),
            offset_in_stream: self.offset,
            bytes: Cow::Borrowed(bytes),
        });
        out.stats.bytes += bytes.len() as u64;
        self.advance(bytes.len() as u64);
    }

    /// Hands over buffered segments that are now in order.
    fn flush(&mut self, at: At<'_>, out: &mut Out) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.offset {
                break;
            }
            let Pending { ts, bytes } = entry.remove();
            self.pending_bytes = self.pending_bytes.saturating_sub(bytes.len());
            let skip = usize::try_from(self.offset - start).unwrap_or(usize::MAX);
            match bytes.get(skip..) {
                Some(rest) if !rest.is_empty() => {
                    out.stats.retransmitted_bytes += skip as u64;
                    self.deliver(rest, ts, at, out);
                }
                _ => out.stats.retransmitted_bytes += bytes.len() as u64,
            }
        }
    }

    /// Declares every hole before stream offset `target` missing, handing over buffered data
    /// in between.
    fn skip_to(&mut self, target: u64, at: At<'_>, out: &mut Out) {
        while self.offset < target {
            let hole_end = match self.pending.keys().next() {
                Some(&first) if first <= self.offset => {
                    self.flush(at, out);
                    continue;
                }
                Some(&first) => first.min(target),
                None => target,
            };
            let missing = hole_end - self.offset;
            (out.sink)(StreamEvent::Gap {
                conn: at.conn,
                dir: at.dir,
                ts: at.ts,
                offset_in_stream: self.offset,
                missing_bytes: missing,
            });
            out.stats.gaps += 1;
            out.stats.gap_bytes += missing;
            self.advance(missing);
        }
        self.flush(at, out);
    }

    fn note_fin(&mut self, fin_seq: u32, at: At<'_>, out: &mut Out) {
        if self.fin_done || self.fin_at.is_some() {
            return;
        }
        let rel = self.rel(fin_seq);
        let cur = self.offset_i64();
        if rel < cur || rel - cur > MAX_AHEAD {
            out.stats.ignored_segments += 1;
            return;
        }
        self.fin_at = Some(rel.unsigned_abs());
        self.try_fin(at, out);
    }

    /// Emits `Fin` once every byte before the FIN was handed over or declared missing.
    fn try_fin(&mut self, at: At<'_>, out: &mut Out) {
        if let Some(fin_at) = self.fin_at {
            if !self.fin_done && self.offset >= fin_at {
                self.fin_done = true;
                (out.sink)(StreamEvent::Fin {
                    conn: at.conn,
                    dir: at.dir,
                    ts: at.ts,
                });
            }
        }
    }

    /// The peer acknowledged up to `ack`: bytes before it that we never saw are missing.
    fn acked(&mut self, ack: u32, at: At<'_>, out: &mut Out) {
        if !self.init || self.fin_done {
            return;
        }
        let diff = i64::from(ack.wrapping_sub(self.next_seq) as i32);
        if diff <= 0 || diff > MAX_AHEAD {
            return;
        }
        let mut target = self.offset.saturating_add(diff.unsigned_abs());
        if let Some(fin_at) = self.fin_at {
            // The FIN takes one sequence number but no stream byte.
            target = target.min(fin_at);
        }
        self.skip_to(target, at, out);
        self.try_fin(at, out);
    }

    /// Nothing more will come: declare the remaining holes missing and hand everything over.
    fn drain(&mut self, at: At<'_>, out: &mut Out) {
        let pending_end = self
            .pending
            .iter()
            .map(|(start, data)| start.saturating_add(data.bytes.len() as u64))
            .max();
        let target = match (self.fin_at, pending_end) {
            (Some(fin_at), _) => fin_at,
            (None, Some(end)) => end,
            (None, None) => self.offset,
        };
        self.skip_to(target, at, out);
        // Data beyond a FIN cannot be placed in the stream.
        self.pending.clear();
        self.pending_bytes = 0;
        self.try_fin(at, out);
    }
}

impl TcpReassembler {
    /// A reassembler with the given limits.
    #[must_use]
    pub fn new(config: ReassemblyConfig) -> Self {
        TcpReassembler {
            config,
            conns: HashMap::new(),
            next_id: 0,
            stats: TcpStats::default(),
            hint: None,
            last_ts: Timestamp::default(),
        }
    }

    /// Installs the function consulted for connections whose handshake is not in the capture
    /// (see [`ClientHint`]); e.g. "the side on port 4840 is the server".
    pub fn set_client_hint(
        &mut self,
        hint: impl FnMut(SocketAddr, SocketAddr) -> Option<bool> + Send + 'static,
    ) {
        self.hint = Some(Box::new(hint));
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> TcpStats {
        self.stats
    }

    /// Feeds one segment, in capture order; `sink` receives the events it causes (possibly
    /// none, possibly several). `Data` bytes borrow from `seg` or the internal buffer.
    pub fn handle_segment(
        &mut self,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
        mut sink: impl FnMut(StreamEvent<'_>),
    ) {
        self.handle(ts, seg, &mut sink);
    }

    /// Ends the capture: declares remaining holes missing and closes every open connection
    /// with [`CloseReason::EndOfCapture`], in id order. The reassembler is empty afterwards.
    pub fn finish(&mut self, mut sink: impl FnMut(StreamEvent<'_>)) {
        let ts = self.last_ts;
        let mut open: Vec<Conn> = self
            .conns
            .drain()
            .map(|(_, conn)| conn)
            .filter(|conn| !conn.closed)
            .collect();
        open.sort_by_key(|conn| conn.id);
        let mut out = Out {
            sink: &mut sink,
            stats: &mut self.stats,
        };
        for mut conn in open {
            close(&mut conn, ts, None, CloseReason::EndOfCapture, &mut out);
        }
    }

    fn handle(
        &mut self,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        self.last_ts = self.last_ts.max(ts);
        self.stats.segments += 1;
        if seg.truncated {
            self.stats.truncated_segments += 1;
        }
        let key = FlowKey::new(seg.src, seg.dst);
        let mut out = Out {
            sink,
            stats: &mut self.stats,
        };
        let syn = seg.has(TcpFlags::SYN);
        let rst = seg.has(TcpFlags::RST);
        let fresh = match self.conns.get_mut(&key) {
            Some(conn) if conn.replaced_by(seg) => {
                if !conn.closed {
                    close(conn, ts, None, CloseReason::Reused, &mut out);
                }
                true
            }
            Some(_) => false,
            None if rst && !syn => {
                out.stats.ignored_segments += 1;
                return;
            }
            None => true,
        };
        if fresh {
            let (client, server, guess) = guess_client(seg, self.hint.as_mut());
            let id = ConnId(self.next_id);
            self.next_id = self.next_id.wrapping_add(1);
            out.stats.connections += 1;
            (out.sink)(StreamEvent::Open {
                conn: id,
                client,
                server,
                ts,
                syn_seen: matches!(guess, ClientGuess::Syn | ClientGuess::SynAck),
                guess,
            });
            self.conns.insert(
                key,
                Conn {
                    id,
                    a: client,
                    halves: Default::default(),
                    closed: false,
                    first_fin: None,
                    data_ts: Cell::new(None),
                },
            );
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.closed {
            if !seg.payload.is_empty() {
                out.stats.ignored_segments += 1;
            }
            return;
        }
        let dir = conn.dir_of(seg.src);
        let at = At {
            conn: conn.id,
            dir,
            ts,
            data_ts: &conn.data_ts,
        };
        let back = At {
            dir: dir.reverse(),
            ..at
        };
        let max_pending = self.config.max_pending_bytes;
        let (this, other) = halves_mut(&mut conn.halves, dir);

        // The acknowledgment is about bytes sent before this segment: settle them first so a
        // request (or its gap) comes out before the response that acknowledges it.
        if seg.has(TcpFlags::ACK) && !rst {
            other.acked(seg.ack, back, &mut out);
        }
        let data_seq = if syn {
            let data_seq = seg.seq.wrapping_add(1);
            if !this.init {
                this.start(data_seq);
                this.syn_seq = Some(seg.seq);
            }
            data_seq
        } else {
            seg.seq
        };
        if !seg.payload.is_empty() {
            if !this.init {
                this.start(data_seq);
            }
            this.accept(data_seq, seg.payload, max_pending, at, &mut out);
        }
        if seg.has(TcpFlags::FIN) && !seg.truncated {
            // Payload lengths fit in u32: IP limits them to 64 KiB (or a jumbogram's u32).
            let fin_seq = data_seq.wrapping_add(seg.payload.len() as u32);
            if !this.init {
                this.start(fin_seq);
            }
            this.note_fin(fin_seq, at, &mut out);
        }
        let (this_fin, other_fin) = (this.fin_done, other.fin_done);
        if conn.first_fin.is_none() {
            if this_fin {
                conn.first_fin = Some(dir);
            } else if other_fin {
                conn.first_fin = Some(dir.reverse());
            }
        }
        if rst {
            close(conn, ts, Some(dir), CloseReason::Rst, &mut out);
        } else if this_fin && other_fin {
            let by = conn.first_fin;
            close(conn, ts, by, CloseReason::Fin, &mut out);
        }
    }
}

/// Flushes both directions (holes become gaps) and emits `Close`.
fn close(
    conn: &mut Conn,
    ts: Timestamp,
    by: Option<Direction>,
    reason: CloseReason,
    out: &mut Out,
) {
    for dir in [Direction::AToB, Direction::BToA] {
        let at = At {
            conn: conn.id,
            dir,
            ts,
            data_ts: &conn.data_ts,
        };
        if let Some(half) = conn.halves.get_mut(dir.index()) {
            half.drain(at, out);
            if half.fin_done && conn.first_fin.is_none() {
                conn.first_fin = Some(dir);
            }
        }
    }
    conn.closed = true;
    let by = by.or(conn.first_fin);
    (out.sink)(StreamEvent::Close {
        conn: conn.id,
        ts,
        by,
        reason,
    });
}

/// Picks (client, server) for a new connection from its first segment.
fn guess_client(
    seg: &TcpSegment<'_>,
    hint: Option<&mut ClientHint>,
) -> (SocketAddr, SocketAddr, ClientGuess) {
    let (src, dst) = (seg.src, seg.dst);
    if seg.has(TcpFlags::SYN) {
        return if seg.has(TcpFlags::ACK) {
            (dst, src, ClientGuess::SynAck)
        } else {
            (src, dst, ClientGuess::Syn)
        };
    }
    if let Some(src_is_client) = hint.and_then(|hint| hint(src, dst)) {
        return if src_is_client {
            (src, dst, ClientGuess::Hint)
        } else {
            (dst, src, ClientGuess::Hint)
        };
    }
    match src.port().cmp(&dst.port()) {
        std::cmp::Ordering::Greater => (src, dst, ClientGuess::HigherPort),
        std::cmp::Ordering::Less => (dst, src, ClientGuess::HigherPort),
        std::cmp::Ordering::Equal => (src, dst, ClientGuess::FirstSender),
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
