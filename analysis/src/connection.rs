//! The state machine of one TCP connection: both directions' bytes in, events out.

use std::collections::VecDeque;

use bytes::Bytes;

use uatap_codec::reader::Reader;
use uatap_codec::reassembly::{AssembledMessage, Limits, Reassembler, ReassemblyEvent};
use uatap_codec::secure::Protection;
use uatap_codec::services::{parse_message, summarize_message, ServiceBody};
use uatap_codec::tcp::{parse_tcp_message, MessageType, TcpMessage};
use uatap_codec::DecodeError;
use uatap_crypto::passive::KeyStore;

use crate::event::{
    hex_prefix, CloseReason, ClosedBy, Direction, Event, EventKind, HelloInfo, MessageInfo,
};
use crate::time::Timestamp;
use crate::tracker::{Shared, Tracker};

/// Bytes of one input: borrowed, or shared (read in place, see
/// [`Reassembler::handle_input_shared`]).
#[derive(Clone, Copy)]
enum Input<'a> {
    Slice(&'a [u8]),
    Shared(&'a Bytes),
}

/// What the analysis should emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Emit a `message` event for every whole UA message.
    pub messages: bool,
    /// Report a chunk still incomplete this long after its first byte (`message_stalled`);
    /// `None`: never.
    pub stall_after: Option<std::time::Duration>,
}

/// The stall threshold `uatap proxy` and `uatap analyze` use unless told otherwise.
pub const DEFAULT_STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The incomplete chunk of one direction being watched for a stall.
#[derive(Debug, Clone, Copy)]
struct StallWatch {
    /// Where the chunk begins in the stream.
    offset: u64,
    /// When its first byte was seen.
    since: Timestamp,
    /// Its `message_stalled` was emitted.
    reported: bool,
}

/// How much state an analysis holds between inputs, so that tests, and a proxy that runs for
/// months, can check it does not grow with the length of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retained {
    /// Stream bytes buffered in both directions: an incomplete chunk, and the bodies of messages
    /// whose final chunk has not come.
    pub buffered_bytes: usize,
    /// Messages begun and not finished, both directions.
    pub partial_messages: usize,
    /// Requests waiting for their response.
    pub pending_requests: usize,
    /// Events not yet drained.
    pub queued_events: usize,
    /// Sessions remembered.
    pub sessions: usize,
    /// Subscriptions remembered.
    pub subscriptions: usize,
    /// Monitored items remembered.
    pub monitored_items: usize,
    /// NotificationMessage numbers remembered (available ones, and acknowledgements noted).
    pub sequence_numbers: usize,
    /// Other capped lists: failed attempts, recreations, server certificate thumbprints.
    pub notes: usize,
}

/// Analysis of many connections that share sessions and subscriptions: a client that loses its
/// connection and activates its session again on a new one is followed across both.
///
/// The caller owns the [`Connection`]s (one per TCP connection) and passes each input through
/// the analyzer, which holds what outlives a connection.
#[derive(Debug, Default)]
pub struct Analyzer {
    shared: Shared,
    options: Options,
    next_seq: u64,
    events: VecDeque<Event>,
    keys: KeyStore,
}

impl Analyzer {
    /// A new analyzer.
    pub fn new(options: Options) -> Self {
        Analyzer {
            shared: Shared::default(),
            options,
            next_seq: 0,
            events: VecDeque::new(),
            keys: KeyStore::default(),
        }
    }

    /// Private keys of the client or server applications (`--private-key`): the secured
    /// channels of the connections opened from now on are read with them.
    pub fn set_keys(&mut self, keys: KeyStore) {
        self.keys = keys;
    }

    /// Starts a connection (emits its `conn_open`).
    pub fn open(&mut self, client: String, server: String, now: Timestamp) -> Connection {
        self.next_seq = self.next_seq.saturating_add(1);
        let mut c = Connection::with_seq(client, server, self.options, now, self.next_seq);
        c.set_keys(&self.keys);
        c
    }

    /// Bytes of one direction of `conn`, in order.
    pub fn handle_input(
        &mut self,
        conn: &mut Connection,
        dir: Direction,
        bytes: &[u8],
        now: Timestamp,
    ) {
        conn.input(&mut self.shared, dir, bytes, now);
        self.after_input(conn, now);
    }

    fn after_input(&mut self, conn: &mut Connection, now: Timestamp) {
        // A session lost elsewhere whose timeout ran out: its verdict rides on this
        // connection's events (named by the lost connection), so a proxy gets it without
        // calling `finish`.
        for (lost_conn, info) in self.shared.expired(now) {
            conn.events.push_back(Event {
                ts: now,
                conn: lost_conn.into(),
                dir: None,
                kind: EventKind::Reconnect(Box::new(info)),
            });
        }
    }

    /// [`handle_input`](Self::handle_input) for bytes the caller already holds as [`Bytes`]:
    /// the messages are read where they are, without a copy.
    pub fn handle_input_shared(
        &mut self,
        conn: &mut Connection,
        dir: Direction,
        bytes: &Bytes,
        now: Timestamp,
    ) {
        conn.input_from(&mut self.shared, dir, Input::Shared(bytes), now);
        self.after_input(conn, now);
    }

    /// A capture gap on `conn`.
    pub fn handle_gap(
        &mut self,
        conn: &mut Connection,
        dir: Direction,
        missing: u64,
        now: Timestamp,
    ) {
        conn.handle_gap(dir, missing, now);
    }

    /// `conn` ended.
    pub fn handle_close(
        &mut self,
        conn: &mut Connection,
        by: ClosedBy,
        reason: CloseReason,
        now: Timestamp,
    ) {
        conn.close(&mut self.shared, by, reason, now);
    }

    /// The analysis ends (end of a capture, proxy shutdown): emits the verdicts that only the
    /// end can give, e.g. a `reconnect` event for each session lost and never recovered.
    /// Call once, after closing the connections, then drain [`Analyzer::poll_event`].
    pub fn finish(&mut self, now: Timestamp) {
        for (conn, info) in self.shared.finish(now) {
            self.events.push_back(Event {
                ts: now,
                conn: conn.into(),
                dir: None,
                kind: EventKind::Reconnect(Box::new(info)),
            });
        }
    }

    /// Sessions and subscriptions held across connections (tests check it stays bounded).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> (usize, usize) {
        self.shared.tracked()
    }

    /// The state held across connections (sessions, subscriptions; see [`Retained`]).
    pub fn retained(&self) -> Retained {
        let mut r = Retained {
            queued_events: self.events.len(),
            ..Retained::default()
        };
        self.shared.retained(&mut r);
        r
    }

    /// Acknowledgements noted as wrong, across connections (tests compare with the traffic).
    #[cfg(test)]
    pub(crate) fn bad_acks_noted(&self) -> usize {
        self.shared.bad_acks_noted()
    }

    /// The next event that belongs to no open connection (see [`Analyzer::finish`]).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// Analysis of one TCP connection between an OPC UA client and server.
///
/// Feed it with [`Connection::handle_input`] for each direction's bytes in the order they were
/// seen, then drain [`Connection::poll_event`]. It owns no socket and no clock. Used alone it
/// keeps its own session table; through an [`Analyzer`] it shares one with other connections.
#[derive(Debug)]
pub struct Connection {
    id: std::sync::Arc<str>,
    options: Options,
    c2s: Reassembler,
    s2c: Reassembler,
    bytes_c2s: u64,
    bytes_s2c: u64,
    closed: bool,
    /// Protection of MSG/CLO chunks once known (`None` until a secured OPN and a body tell).
    protection: Option<Protection>,
    tracker: Tracker,
    own_shared: Shared,
    events: VecDeque<Event>,
    rejects: crate::reject::Explainer,
    /// The incomplete chunk of each direction (c2s, s2c), watched for a stall.
    stalls: [Option<StallWatch>; 2],
}

impl Connection {
    /// Starts the analysis of a connection on its own and emits its `conn_open` event.
    pub fn new(client: String, server: String, options: Options, now: Timestamp) -> Self {
        Self::with_seq(client, server, options, now, 0)
    }

    fn with_seq(
        client: String,
        server: String,
        options: Options,
        now: Timestamp,
        seq: u64,
    ) -> Self {
        let id: std::sync::Arc<str> = format!("{client}->{server}").into();
        let mut c = Connection {
            id: id.clone(),
            options,
            c2s: Reassembler::default(),
            s2c: Reassembler::default(),
            bytes_c2s: 0,
            bytes_s2c: 0,
            closed: false,
            protection: None,
            tracker: Tracker::new(seq, id.to_string(), &client, server.clone()),
            own_shared: Shared::default(),
            events: VecDeque::new(),
            rejects: crate::reject::Explainer::default(),
            stalls: [None, None],
        };
        c.push(now, None, EventKind::ConnOpen { client, server });
        c
    }

    /// Reads this connection's secured channel with the given private keys.
    pub fn set_keys(&mut self, keys: &KeyStore) {
        if !keys.is_empty() {
            let (c2s, s2c) = keys.openers();
            self.c2s.set_opener(Box::new(c2s));
            self.s2c.set_opener(Box::new(s2c));
        }
    }

    /// Reads this connection's secured channel with openers the caller built (the probe, which
    /// is the client and knows its own OPN request: `KeyStore::client_openers`).
    pub fn set_openers(
        &mut self,
        c2s: Box<dyn uatap_codec::reassembly::ChunkOpener>,
        s2c: Box<dyn uatap_codec::reassembly::ChunkOpener>,
    ) {
        self.c2s.set_opener(c2s);
        self.s2c.set_opener(s2c);
    }

    /// The state this connection holds (with its own session table when used alone; through an
    /// [`Analyzer`] add [`Analyzer::retained`]).
    pub fn retained(&self) -> Retained {
        let mut r = Retained {
            buffered_bytes: self
                .c2s
                .buffered_bytes()
                .saturating_add(self.s2c.buffered_bytes()),
            partial_messages: self
                .c2s
                .partial_messages()
                .saturating_add(self.s2c.partial_messages()),
            pending_requests: self.tracker.pending_requests(),
            queued_events: self.events.len(),
            ..Retained::default()
        };
        self.own_shared.retained(&mut r);
        r
    }

    /// Acknowledgements noted as wrong, used alone (tests compare with the traffic).
    #[cfg(test)]
    pub(crate) fn bad_acks_noted(&self) -> usize {
        self.own_shared.bad_acks_noted()
    }

    /// The connection id used in every event.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Bytes seen in one direction (standalone use; see [`Analyzer::handle_input`]).
    pub fn handle_input(&mut self, dir: Direction, bytes: &[u8], now: Timestamp) {
        let mut shared = std::mem::take(&mut self.own_shared);
        self.input(&mut shared, dir, bytes, now);
        self.own_shared = shared;
    }

    fn input(&mut self, shared: &mut Shared, dir: Direction, bytes: &[u8], now: Timestamp) {
        self.input_from(shared, dir, Input::Slice(bytes), now);
    }

    fn input_from(
        &mut self,
        shared: &mut Shared,
        dir: Direction,
        input: Input<'_>,
        now: Timestamp,
    ) {
        let len = match input {
            Input::Slice(b) => b.len(),
            Input::Shared(b) => b.len(),
        };
        let r = match dir {
            Direction::ClientToServer => {
                self.bytes_c2s = self.bytes_c2s.saturating_add(len as u64);
                &mut self.c2s
            }
            Direction::ServerToClient => {
                self.bytes_s2c = self.bytes_s2c.saturating_add(len as u64);
                &mut self.s2c
            }
        };
        match input {
            Input::Slice(b) => r.handle_input(b),
            Input::Shared(b) => r.handle_input_shared(b),
        }
        self.drain(shared, dir, now);
        self.check_stall(dir, now);
    }

    /// Time passes with no input: call now and then (the proxy does every second) so that a
    /// sender that stopped inside a chunk is reported while nothing more comes.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if !self.closed {
            self.check_stall(Direction::ClientToServer, now);
            self.check_stall(Direction::ServerToClient, now);
        }
    }

    /// The proxy's write toward the receiver of `dir` has waited `blocked_ms` with
    /// `pending_bytes` held: reported as `write_blocked`.
    pub fn handle_write_blocked(
        &mut self,
        dir: Direction,
        blocked_ms: u64,
        pending_bytes: u64,
        now: Timestamp,
    ) {
        self.push(
            now,
            Some(dir),
            EventKind::WriteBlocked {
                blocked_ms,
                pending_bytes,
            },
        );
    }

    /// Follows the incomplete chunk of `dir`; emits `message_stalled` once when it has been
    /// incomplete for the stall threshold.
    fn check_stall(&mut self, dir: Direction, now: Timestamp) {
        let Some(after) = self.options.stall_after else {
            return;
        };
        let (held, slot) = match dir {
            Direction::ClientToServer => (self.c2s.incomplete_chunk(), &mut self.stalls[0]),
            Direction::ServerToClient => (self.s2c.incomplete_chunk(), &mut self.stalls[1]),
        };
        let Some((offset, buffered)) = held else {
            *slot = None;
            return;
        };
        let watch = match slot {
            Some(w) if w.offset == offset => w,
            _ => {
                *slot = Some(StallWatch {
                    offset,
                    since: now,
                    reported: false,
                });
                return;
            }
        };
        let ms = now.millis_since(watch.since).max(0.0);
        if watch.reported || ms < after.as_secs_f64() * 1000.0 {
            return;
        }
        watch.reported = true;
        self.push(
            now,
            Some(dir),
            EventKind::MessageStalled {
                offset,
                buffered_bytes: buffered as u64,
                stalled_ms: ms as u64,
            },
        );
    }

    /// Bytes of one direction were lost (a capture gap): framing resyncs after them.
    pub fn handle_gap(&mut self, dir: Direction, missing: u64, now: Timestamp) {
        let r = match dir {
            Direction::ClientToServer => &mut self.c2s,
            Direction::ServerToClient => &mut self.s2c,
        };
        let at = r.stream_offset();
        r.handle_gap(missing);
        self.decode_error_event(
            now,
            dir,
            at,
            format!("{missing} bytes missing from the capture"),
            String::new(),
        );
    }

    /// The connection ended; emits what was left open, the `summary` and `conn_close`, once.
    pub fn handle_close(&mut self, by: ClosedBy, reason: CloseReason, now: Timestamp) {
        let mut shared = std::mem::take(&mut self.own_shared);
        self.close(&mut shared, by, reason, now);
        self.own_shared = shared;
    }

    fn close(&mut self, shared: &mut Shared, by: ClosedBy, reason: CloseReason, now: Timestamp) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Garbage up to the end of a stream is reported now that the end is known.
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let r = match dir {
                Direction::ClientToServer => &mut self.c2s,
                Direction::ServerToClient => &mut self.s2c,
            };
            r.finish();
            let mut errors = Vec::new();
            while let Some(ev) = r.poll_event() {
                if let ReassemblyEvent::Error { error, prefix, .. } = ev {
                    errors.push((error, prefix));
                }
            }
            for (error, prefix) in errors {
                self.push_decode_error(dir, now, &error, &prefix);
            }
        }
        let mut out = Vec::new();
        // The end of a capture is no loss: the client may well be connected still.
        let lost = reason != CloseReason::CaptureEnd && by != ClosedBy::Unknown;
        self.tracker.on_close(shared, lost, now, &mut out);
        self.push_all(now, out);
        let summary = self.tracker.summary.clone();
        self.push(now, None, EventKind::Summary(summary));
        self.push(
            now,
            None,
            EventKind::ConnClose {
                by,
                reason,
                bytes_c2s: self.bytes_c2s,
                bytes_s2c: self.bytes_s2c,
            },
        );
    }

    /// The proxy could not reach or lost the server: reported as `upstream_error`.
    pub fn handle_upstream_error(&mut self, error: &'static str, detail: String, now: Timestamp) {
        self.tracker.summary.rejects = self.tracker.summary.rejects.saturating_add(1);
        self.push(now, None, EventKind::UpstreamError { error, detail });
    }

    /// The next event, if any; call after each input until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push(&mut self, ts: Timestamp, dir: Option<Direction>, kind: EventKind) {
        let reject = self.rejects.observe(ts, dir, &kind);
        self.events.push_back(Event {
            ts,
            conn: self.id.clone(),
            dir,
            kind,
        });
        if let Some(r) = reject {
            self.events.push_back(Event {
                ts,
                conn: self.id.clone(),
                dir: None,
                kind: EventKind::Reject(Box::new(r)),
            });
        }
    }

    fn push_all(&mut self, ts: Timestamp, out: Vec<(Option<Direction>, EventKind)>) {
        for (dir, kind) in out {
            self.push(ts, dir, kind);
        }
    }

    fn decode_error_event(
        &mut self,
        now: Timestamp,
        dir: Direction,
        offset: u64,
        what: String,
        hex: String,
    ) {
        self.tracker.summary.decode_errors = self.tracker.summary.decode_errors.saturating_add(1);
        self.push(
            now,
            Some(dir),
            EventKind::DecodeError {
                offset,
                what,
                hex_prefix: hex,
            },
        );
    }

    fn drain(&mut self, shared: &mut Shared, dir: Direction, now: Timestamp) {
        loop {
            let ev = match dir {
                Direction::ClientToServer => self.c2s.poll_event(),
                Direction::ServerToClient => self.s2c.poll_event(),
            };
            let Some(ev) = ev else { break };
            match ev {
                ReassemblyEvent::Message(m) => self.on_message(shared, dir, m, now),
                ReassemblyEvent::Aborted {
                    request_id,
                    error,
                    reason,
                    ..
                } => self.push(
                    now,
                    Some(dir),
                    EventKind::Abort {
                        request_id,
                        status: error,
                        reason,
                    },
                ),
                ReassemblyEvent::SequenceNumberJump {
                    offset,
                    expected,
                    got,
                } => self.decode_error_event(
                    now,
                    dir,
                    offset,
                    format!("chunk SequenceNumber {got} where {expected} was expected"),
                    String::new(),
                ),
                ReassemblyEvent::Error {
                    error,
                    prefix,
                    framed_as,
                } => {
                    if let Some(h) = framed_as {
                        if self.options.messages {
                            self.push(
                                now,
                                Some(dir),
                                EventKind::Message(empty_message(
                                    h.message_type,
                                    u64::from(h.message_size),
                                )),
                            );
                        }
                    }
                    self.push_decode_error(dir, now, &error, &prefix);
                }
                ReassemblyEvent::Resynced { .. } => {}
            }
        }
    }

    fn push_decode_error(
        &mut self,
        dir: Direction,
        now: Timestamp,
        error: &DecodeError,
        bytes: &[u8],
    ) {
        self.decode_error_event(
            now,
            dir,
            error.offset as u64,
            error.to_string(),
            hex_prefix(bytes),
        );
    }

    fn on_message(
        &mut self,
        shared: &mut Shared,
        dir: Direction,
        m: AssembledMessage,
        now: Timestamp,
    ) {
        let mut info = empty_message(m.message_type, m.size);
        info.chunks = m.chunks;
        let mut out = Vec::new();
        if m.message_type.is_secure_conversation() {
            self.on_secure_message(shared, dir, &m, &mut info, now, &mut out);
        } else {
            self.on_tcp_message(dir, &m, now, &mut out);
        }
        if self.options.messages {
            self.push(now, Some(dir), EventKind::Message(info));
        }
        self.push_all(now, out);
    }

    fn on_tcp_message(
        &mut self,
        dir: Direction,
        m: &AssembledMessage,
        now: Timestamp,
        out: &mut Vec<(Option<Direction>, EventKind)>,
    ) {
        let base = usize::try_from(m.offset).unwrap_or(usize::MAX);
        match parse_tcp_message(&mut Reader::with_base(&m.payload, base)) {
            Ok(TcpMessage::Hello(h)) => {
                // The HEL states what the client accepts: it bounds the server's sending.
                self.s2c.set_limits(Limits::from_receiver(
                    h.receive_buffer_size,
                    h.max_message_size,
                    h.max_chunk_count,
                ));
                let info = HelloInfo {
                    // A null EndpointUrl stays `null`, apart from an empty one.
                    endpoint_url: h
                        .endpoint_url
                        .as_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    protocol_version: h.protocol_version,
                    receive_buffer_size: h.receive_buffer_size,
                    send_buffer_size: h.send_buffer_size,
                    max_message_size: h.max_message_size,
                    max_chunk_count: h.max_chunk_count,
                };
                out.push((Some(dir), EventKind::Hello(info)));
            }
            Ok(TcpMessage::Acknowledge(a)) => {
                self.c2s.set_limits(Limits::from_receiver(
                    a.receive_buffer_size,
                    a.max_message_size,
                    a.max_chunk_count,
                ));
                let info = HelloInfo {
                    endpoint_url: None,
                    protocol_version: a.protocol_version,
                    receive_buffer_size: a.receive_buffer_size,
                    send_buffer_size: a.send_buffer_size,
                    max_message_size: a.max_message_size,
                    max_chunk_count: a.max_chunk_count,
                };
                out.push((Some(dir), EventKind::Hello(info)));
            }
            Ok(TcpMessage::Error(e)) => {
                out.push((
                    Some(dir),
                    EventKind::TcpError {
                        status: Some(e.error),
                        reason: Some(e.reason.to_string_lossy().into_owned()),
                    },
                ));
                self.tracker.on_tcp_error(Some(e.error), out);
            }
            Ok(TcpMessage::ReverseHello(_)) => {}
            Err(err) => {
                if let Some(e) = (m.message_type == MessageType::Error)
                    .then(|| err_like_opn(&m.payload))
                    .flatten()
                {
                    // node-opcua answers some refused OpenSecureChannel requests with an ERR laid
                    // out like an OPN chunk (SecureChannelId, security header, sequence header, a
                    // ServiceFault): its "Error" field is the channel id. Read the ServiceFault.
                    let what = format!(
                        "{} (SecureChannelId {}, SecurityPolicyUri {}, then a ServiceFault {}): not a well-formed ERR; its Error field reads 0x{:08X}, the status reported is the ServiceFault's",
                        crate::reject::ERR_LIKE_OPN,
                        e.channel_id,
                        e.policy_uri.as_deref().unwrap_or("null"),
                        crate::payload::Status::opt(Some(e.status)).describe(),
                        e.channel_id
                    );
                    let prefix = m.payload.get(..m.payload.len().min(32)).unwrap_or(&[]);
                    self.decode_error_event(now, dir, m.offset, what, hex_prefix(prefix));
                    out.push((
                        Some(dir),
                        EventKind::TcpError {
                            status: Some(e.status),
                            reason: e.reason,
                        },
                    ));
                    self.tracker.on_tcp_error(Some(e.status), out);
                    return;
                }
                if m.message_type == MessageType::Error {
                    // A malformed ERR is still the ERR it is framed as; what can be read of it
                    // (the status right after the header) is reported, the rest is a decode error.
                    let status = m
                        .payload
                        .get(8..12)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_le_bytes);
                    out.push((
                        Some(dir),
                        EventKind::TcpError {
                            status,
                            reason: None,
                        },
                    ));
                    self.tracker.on_tcp_error(status, out);
                }
                let prefix = m
                    .payload
                    .get(..m.payload.len().min(32))
                    .unwrap_or(&[])
                    .to_vec();
                self.push_decode_error(dir, now, &err, &prefix);
            }
        }
    }

    fn set_protection(&mut self, p: Protection, guessed: bool) {
        self.c2s.set_protection(p, guessed);
        self.s2c.set_protection(p, guessed);
    }

    fn on_secure_message(
        &mut self,
        shared: &mut Shared,
        dir: Direction,
        m: &AssembledMessage,
        info: &mut MessageInfo,
        now: Timestamp,
        out: &mut Vec<(Option<Direction>, EventKind)>,
    ) {
        info.channel_id = m.secure_channel_id;
        info.token_id = m.token_id;
        info.sequence_number = m.sequence_header.map(|s| s.sequence_number);
        info.request_id = m.sequence_header.map(|s| s.request_id);
        if m.message_type == MessageType::OpenSecureChannel {
            let policy = m
                .open_security_header
                .as_ref()
                .and_then(|h| h.policy_name())
                .unwrap_or_default();
            if policy != "None" && !policy.is_empty() && self.protection.is_none() {
                // The mode sits inside the encrypted OPN. Guess Sign (readable body, then a
                // signature of the policy's length, no padding); the first body confirms it by
                // decoding exactly, or shows it is SignAndEncrypt.
                let guess = Protection::Sign {
                    signature_len: symmetric_signature_len(&policy),
                };
                self.set_protection(guess, true);
            }
            if m.encrypted {
                self.tracker.on_encrypted_open(
                    shared,
                    dir,
                    m.open_security_header.as_ref(),
                    m.secure_channel_id,
                    now,
                    out,
                );
            }
        }
        if m.message_type == MessageType::Message && !m.signature_stripped {
            self.tracker.on_channel_used(out);
        }
        if m.encrypted {
            info.encrypted = true;
            return;
        }
        // Body offsets are relative to the reassembled body, not the stream.
        let parsed = parse_message(&mut Reader::new(&m.payload));
        if m.signature_stripped {
            // Only a known service decoded to its last byte counts: ciphertext can pass for a
            // NodeId of an unknown type followed by raw bytes.
            let readable = matches!(&parsed, Ok(msg) if msg.service_name().is_some());
            let (confirmed, mode) = if readable {
                (self.c2s.protection(), "Sign")
            } else {
                (Protection::Encrypted, "SignAndEncrypt")
            };
            self.protection = Some(confirmed);
            self.set_protection(confirmed, false);
            self.tracker.on_mode_known(mode, out);
            if !readable {
                // What looked like a sequence header was ciphertext.
                info.sequence_number = None;
                info.request_id = None;
                info.encrypted = true;
                return;
            }
        }
        match parsed {
            Ok(msg) => {
                if m.decrypted {
                    if let ServiceBody::OpenSecureChannelRequest(r) = &msg.body {
                        // The mode, read: no guessing for the chunks the keys cannot open.
                        let policy = m
                            .open_security_header
                            .as_ref()
                            .and_then(|h| h.policy_name())
                            .unwrap_or_default();
                        let p = match r.security_mode {
                            2 => Protection::Sign {
                                signature_len: symmetric_signature_len(&policy),
                            },
                            3 => Protection::Encrypted,
                            _ => Protection::None,
                        };
                        self.protection = Some(p);
                        self.set_protection(p, false);
                    }
                }
                let first_new = out.len();
                info.type_id = msg.type_id_numeric();
                info.service = msg.service_name();
                info.request_handle = msg.request_handle();
                info.service_result = msg.service_result().map(|s| s.0);
                info.notification_sequence_number = msg.notification_sequence_number();
                info.latency_ms = self.tracker.on_message(
                    shared,
                    dir,
                    info.request_id,
                    &msg,
                    now,
                    m.open_security_header.as_ref(),
                    m.secure_channel_id,
                    out,
                );
                if m.decrypted {
                    for (_, e) in out.iter_mut().skip(first_new) {
                        if let EventKind::SecureChannel(sc) = e {
                            sc.decrypted = true;
                        }
                    }
                }
            }
            Err(mut err) => {
                if let Ok(s) = summarize_message(&m.payload) {
                    info.type_id = s.type_id;
                    info.service = s.type_id.and_then(uatap_codec::ids::service_name);
                    info.request_handle = s.request_handle;
                    info.service_result = s.service_result.map(|s| s.0);
                }
                let at = err.offset;
                err.offset = usize::try_from(m.offset)
                    .unwrap_or(usize::MAX)
                    .saturating_add(at);
                let prefix = m.payload.get(at..).unwrap_or(&[]);
                let prefix = prefix.get(..prefix.len().min(32)).unwrap_or(&[]).to_vec();
                self.push_decode_error(dir, now, &err, &prefix);
            }
        }
    }
}

/// Length of the symmetric signature (HMAC) of a policy: SHA-1 for the two deprecated ones,
/// SHA-256 for the others.
pub fn symmetric_signature_len(policy: &str) -> usize {
    match policy {
        "Basic128Rsa15" | "Basic256" => 20,
        _ => 32,
    }
}

fn empty_message(t: MessageType, size: u64) -> MessageInfo {
    MessageInfo {
        msg_type: t.as_str(),
        chunks: 1,
        size,
        channel_id: None,
        token_id: None,
        sequence_number: None,
        request_id: None,
        service: None,
        type_id: None,
        request_handle: None,
        service_result: None,
        notification_sequence_number: None,
        encrypted: false,
        latency_ms: None,
    }
}

/// What an ERR laid out like an OPN chunk carries (see [`err_like_opn`]).
struct ErrLikeOpn {
    channel_id: u32,
    policy_uri: Option<String>,
    status: u32,
    reason: Option<String>,
}

/// Reads a whole ERR message (header included) as node-opcua lays out the ERR it sends for some
/// refused OpenSecureChannel requests: the header, a SecureChannelId, an asymmetric security
/// header with policy None or a readable body, a sequence header, then a ServiceFault that
/// decodes to its last byte. `None` when the bytes are not that.
fn err_like_opn(payload: &[u8]) -> Option<ErrLikeOpn> {
    let mut r = Reader::new(payload.get(8..)?);
    let channel_id = r.read_u32("ERR").ok()?;
    let header = uatap_codec::secure::parse_asymmetric_security_header(&mut r).ok()?;
    uatap_codec::secure::parse_sequence_header(&mut r).ok()?;
    let msg = parse_message(&mut r).ok()?;
    if msg.service_name() != Some("ServiceFault") {
        return None;
    }
    let status = msg.service_result()?.0;
    let reason = msg.body.response_header().and_then(|h| {
        h.string_table
            .iter()
            .flatten()
            .map(|s| s.to_string_lossy().trim().to_string())
            .find(|s| !s.is_empty())
    });
    Some(ErrLikeOpn {
        channel_id,
        policy_uri: header
            .security_policy_uri
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        status,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uatap_codec::services::{ReadRequest, ReadValueId, RequestHeader};
    use uatap_codec::types::{DateTime, ExtensionObject, NodeId, QualifiedName, UaString};
    use uatap_codec::Encode;

    fn conn() -> Connection {
        Connection::new(
            "10.0.0.1:50000".into(),
            "10.0.0.2:49320".into(),
            Options {
                messages: true,
                stall_after: None,
            },
            Timestamp::from_unix_micros(1),
        )
    }

    fn stalls(c: &mut Connection) -> Vec<(Option<Direction>, u64, u64, u64)> {
        std::iter::from_fn(|| c.poll_event())
            .filter_map(|e| match e.kind {
                EventKind::MessageStalled {
                    offset,
                    buffered_bytes,
                    stalled_ms,
                } => Some((e.dir, offset, buffered_bytes, stalled_ms)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_chunk_incomplete_for_the_stall_threshold_is_reported_once() {
        let at = |s: i64| Timestamp::from_unix_micros(s * 1_000_000);
        let mut c = Connection::new(
            "10.0.0.1:50000".into(),
            "10.0.0.2:4840".into(),
            Options {
                messages: false,
                stall_after: Some(std::time::Duration::from_secs(2)),
            },
            at(0),
        );
        let chunk = msg(1, &[]);
        // One byte a second (a slowloris): reported at 2 s, once.
        for (i, b) in chunk.iter().take(5).enumerate() {
            c.handle_input(Direction::ClientToServer, &[*b], at(i as i64));
            let s = stalls(&mut c);
            if i == 2 {
                assert_eq!(s, vec![(Some(Direction::ClientToServer), 0, 3, 2000)]);
            } else {
                assert!(s.is_empty(), "{i}: {s:?}");
            }
        }
        // The chunk completes; a new one starts and stops: only time tells, through
        // handle_timeout.
        c.handle_input(Direction::ClientToServer, &chunk[5..], at(5));
        c.handle_input(Direction::ClientToServer, &chunk[..3], at(6));
        c.handle_timeout(at(7));
        assert!(stalls(&mut c).is_empty());
        c.handle_timeout(at(9));
        let off = chunk.len() as u64;
        assert_eq!(
            stalls(&mut c),
            vec![(Some(Direction::ClientToServer), off, 3, 3000)]
        );
        c.handle_timeout(at(20));
        assert!(stalls(&mut c).is_empty(), "once per chunk");
        // Whole chunks, however slow between them, are no stall.
        let mut c = conn();
        c.options.stall_after = Some(std::time::Duration::from_secs(2));
        for i in 0..5 {
            c.handle_input(Direction::ServerToClient, &chunk, at(i * 10));
            c.handle_timeout(at(i * 10 + 9));
        }
        assert!(stalls(&mut c).is_empty());
    }

    fn feed(c: &mut Connection, dir: Direction, bytes: &[u8]) -> Vec<EventKind> {
        c.handle_input(dir, bytes, Timestamp::from_unix_micros(2));
        std::iter::from_fn(|| c.poll_event())
            .map(|e| e.kind)
            .collect()
    }

    fn secured_opn(request: bool) -> Vec<u8> {
        let uri = b"http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256";
        let mut body = Vec::new();
        body.extend_from_slice(&(if request { 0u32 } else { 7 }).to_le_bytes());
        body.extend_from_slice(&(uri.len() as i32).to_le_bytes());
        body.extend_from_slice(uri);
        body.extend_from_slice(&3i32.to_le_bytes());
        body.extend_from_slice(&[0x30, 0x82, 0x01]);
        body.extend_from_slice(&20i32.to_le_bytes());
        body.extend_from_slice(&[0x11; 20]);
        body.extend((0..256u32).map(|i| (i * 37 % 251) as u8)); // RSA ciphertext
        let mut v = b"OPNF".to_vec();
        v.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
        v.extend(body);
        v
    }

    fn msg(seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = b"MSGF".to_vec();
        v.extend_from_slice(&(24 + body.len() as u32).to_le_bytes());
        for x in [7u32, 1, seq, seq] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    fn read_request() -> Vec<u8> {
        let req = ReadRequest {
            request_header: RequestHeader {
                authentication_token: NodeId::numeric(1, 5),
                timestamp: DateTime(0),
                request_handle: 77,
                return_diagnostics: 0,
                audit_entry_id: UaString::null(),
                timeout_hint: 0,
                additional_header: ExtensionObject::default(),
            },
            max_age: 0.0,
            timestamps_to_return: 2,
            nodes_to_read: Some(vec![ReadValueId {
                node_id: NodeId::numeric(0, 2259),
                attribute_id: 13,
                index_range: UaString::null(),
                data_encoding: QualifiedName::default(),
            }]),
        };
        let mut v = NodeId::numeric(0, 631).to_vec();
        req.encode(&mut v);
        v
    }

    fn message_infos(events: &[EventKind]) -> Vec<&MessageInfo> {
        events
            .iter()
            .filter_map(|e| match e {
                EventKind::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sign_only_bodies_are_decoded() {
        let mut c = conn();
        feed(&mut c, Direction::ClientToServer, &secured_opn(true));
        let ev = feed(&mut c, Direction::ServerToClient, &secured_opn(false));
        assert!(
            message_infos(&ev)[0].encrypted,
            "the OPN itself is encrypted"
        );
        let mut body = read_request();
        body.extend_from_slice(&[0xee; 32]); // HMAC-SHA256
        let ev = feed(&mut c, Direction::ClientToServer, &msg(2, &body));
        let m = message_infos(&ev)[0];
        assert_eq!(m.service, Some("ReadRequest"));
        assert_eq!(m.request_handle, Some(77));
        assert_eq!(m.sequence_number, Some(2));
        assert!(!m.encrypted);
        assert!(
            !ev.iter()
                .any(|e| matches!(e, EventKind::DecodeError { .. })),
            "{ev:?}"
        );
        // Confirmed: later chunks are read as Sign without guessing.
        let ev = feed(&mut c, Direction::ClientToServer, &msg(3, &body));
        assert_eq!(message_infos(&ev)[0].service, Some("ReadRequest"));
    }

    #[test]
    fn sign_and_encrypt_bodies_are_reported_as_protected() {
        let mut c = conn();
        feed(&mut c, Direction::ClientToServer, &secured_opn(true));
        feed(&mut c, Direction::ServerToClient, &secured_opn(false));
        let cipher: Vec<u8> = (0..160u32).map(|i| (i * 91 % 256) as u8).collect();
        let ev = feed(&mut c, Direction::ClientToServer, &msg(2, &cipher));
        let m = message_infos(&ev)[0];
        assert!(m.encrypted, "{ev:?}");
        assert_eq!(m.service, None);
        assert_eq!(
            m.sequence_number, None,
            "the sequence header is encrypted too"
        );
        assert_eq!(m.token_id, Some(1));
        assert_eq!(m.channel_id, Some(7));
        assert!(
            !ev.iter()
                .any(|e| matches!(e, EventKind::DecodeError { .. })),
            "no error: {ev:?}"
        );
        let ev = feed(&mut c, Direction::ServerToClient, &msg(2, &cipher));
        assert!(message_infos(&ev)[0].encrypted);
    }

    fn rejects(events: &[EventKind]) -> Vec<&crate::reject::RejectInfo> {
        events
            .iter()
            .filter_map(|e| match e {
                EventKind::Reject(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect()
    }

    fn channel_outcomes(events: &[EventKind]) -> Vec<&'static str> {
        events
            .iter()
            .filter_map(|e| match e {
                EventKind::SecureChannel(s) => Some(s.outcome),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_encrypted_opn_answer_then_the_close_is_a_refusal() {
        // asyncua and node-opcua answer a refused secured OPN with a ServiceFault encrypted
        // to the client, then the connection closes with no message on the channel.
        let mut c = conn();
        let mut ev = feed(&mut c, Direction::ClientToServer, &secured_opn(true));
        ev.extend(feed(&mut c, Direction::ServerToClient, &secured_opn(false)));
        c.handle_close(
            ClosedBy::Client,
            CloseReason::Fin,
            Timestamp::from_unix_micros(3),
        );
        ev.extend(std::iter::from_fn(|| c.poll_event()).map(|e| e.kind));
        assert_eq!(channel_outcomes(&ev), ["rejected"]);
        let r = rejects(&ev);
        assert_eq!(r.len(), 1, "{ev:?}");
        assert_eq!(
            (r[0].stage, r[0].cause, r[0].inferred),
            ("secure_channel", "client_cert_untrusted", true)
        );
        let summary = ev.iter().find_map(|e| match e {
            EventKind::Summary(s) => Some(s),
            _ => None,
        });
        assert!(
            summary.is_some_and(|s| s.channels == 0 && s.rejects == 1),
            "{summary:?}"
        );
    }

    #[test]
    fn an_encrypted_opn_answer_then_a_message_is_a_channel() {
        let mut c = conn();
        let mut ev = feed(&mut c, Direction::ClientToServer, &secured_opn(true));
        ev.extend(feed(&mut c, Direction::ServerToClient, &secured_opn(false)));
        ev.extend(feed(
            &mut c,
            Direction::ClientToServer,
            &msg(2, &[0x5a; 80]),
        ));
        c.handle_close(
            ClosedBy::Client,
            CloseReason::Fin,
            Timestamp::from_unix_micros(3),
        );
        ev.extend(std::iter::from_fn(|| c.poll_event()).map(|e| e.kind));
        assert_eq!(channel_outcomes(&ev), ["ok"]);
        assert!(rejects(&ev).is_empty(), "{ev:?}");
        // A capture that ends right after the answer tells nothing either way.
        let mut c = conn();
        let mut ev = feed(&mut c, Direction::ClientToServer, &secured_opn(true));
        ev.extend(feed(&mut c, Direction::ServerToClient, &secured_opn(false)));
        c.handle_close(
            ClosedBy::Unknown,
            CloseReason::CaptureEnd,
            Timestamp::from_unix_micros(3),
        );
        ev.extend(std::iter::from_fn(|| c.poll_event()).map(|e| e.kind));
        assert_eq!(channel_outcomes(&ev), ["ok"]);
        assert!(rejects(&ev).is_empty(), "{ev:?}");
    }

    /// node-opcua's answer to a secured OPN for a policy it does not offer: an ERR laid out
    /// like an OPN chunk whose body is a ServiceFault.
    fn err_like_opn_bytes(status: u32, text: &str) -> Vec<u8> {
        let uri = b"http://opcfoundation.org/UA/SecurityPolicy#None";
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_le_bytes()); // SecureChannelId, where Error should be
        body.extend_from_slice(&(uri.len() as i32).to_le_bytes());
        body.extend_from_slice(uri);
        body.extend_from_slice(&(-1i32).to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        body.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0]); // sequence header
        body.extend_from_slice(&[0x01, 0x00, 0x8D, 0x01]); // ServiceFault (397)
        body.extend_from_slice(&[0; 8]); // Timestamp
        body.extend_from_slice(&0u32.to_le_bytes()); // RequestHandle
        body.extend_from_slice(&status.to_le_bytes());
        body.push(0); // ServiceDiagnostics
        body.extend_from_slice(&1i32.to_le_bytes());
        body.extend_from_slice(&(text.len() as i32).to_le_bytes());
        body.extend_from_slice(text.as_bytes());
        body.extend_from_slice(&[0, 0, 0]); // AdditionalHeader
        let mut v = b"ERRF".to_vec();
        v.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
        v.extend(body);
        v
    }

    #[test]
    fn an_err_laid_out_like_an_opn_is_read_for_its_service_fault() {
        let mut c = conn();
        let ev = feed(
            &mut c,
            Direction::ServerToClient,
            &err_like_opn_bytes(0x8055_0000, " not supported "),
        );
        assert!(
            ev.iter().any(|e| matches!(
                e,
                EventKind::TcpError { status: Some(0x8055_0000), reason: Some(r) } if r == "not supported"
            )),
            "{ev:?}"
        );
        assert!(
            ev.iter().any(|e| matches!(
                e,
                EventKind::DecodeError { what, .. }
                    if what.starts_with(crate::reject::ERR_LIKE_OPN) && what.contains("0x00000001")
            )),
            "{ev:?}"
        );
        let r = rejects(&ev);
        assert_eq!(r.len(), 1, "{ev:?}");
        assert_eq!(r[0].cause, "policy_rejected");
        assert!(r[0].evidence.contains("malformed ERR"), "{}", r[0].evidence);
    }

    #[test]
    fn malformed_err_is_still_an_err() {
        let mut c = conn();
        // An ERR whose reason length runs past the end (node-opcua wraps a ServiceFault in
        // an ERR laid out like a chunk).
        let mut err = b"ERRF".to_vec();
        err.extend_from_slice(&24u32.to_le_bytes());
        err.extend_from_slice(&0x8013_0000u32.to_le_bytes());
        err.extend_from_slice(&1000i32.to_le_bytes());
        err.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let ev = feed(&mut c, Direction::ServerToClient, &err);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                EventKind::TcpError {
                    status: Some(0x8013_0000),
                    reason: None
                }
            )),
            "{ev:?}"
        );
        assert!(
            ev.iter().any(
                |e| matches!(e, EventKind::DecodeError { what, .. } if what.contains("offset 16"))
            ),
            "{ev:?}"
        );
        let m = message_infos(&ev);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].msg_type, "ERR");
        assert_eq!(m[0].channel_id, None);
    }

    #[test]
    fn hello_limits_bound_the_other_direction() {
        let mut c = conn();
        let mut hel = b"HELF".to_vec();
        hel.extend_from_slice(&32u32.to_le_bytes());
        for x in [0u32, 8192, 8192, 0, 0] {
            hel.extend_from_slice(&x.to_le_bytes());
        }
        hel.extend_from_slice(&(-1i32).to_le_bytes());
        let ev = feed(&mut c, Direction::ClientToServer, &hel);
        assert!(ev
            .iter()
            .any(|e| matches!(e, EventKind::Hello(h) if h.receive_buffer_size == 8192)));
        // The server may not send a chunk larger than the client's ReceiveBufferSize.
        let ev = feed(&mut c, Direction::ServerToClient, &msg(1, &vec![0; 9000]));
        assert!(ev.iter().any(|e| matches!(e, EventKind::DecodeError { what, .. } if what.contains("over the limit of 8192"))), "{ev:?}");
        // The other direction is unaffected.
        let ev = feed(&mut c, Direction::ClientToServer, &msg(1, &read_request()));
        assert_eq!(message_infos(&ev)[0].service, Some("ReadRequest"));
    }

    fn request_header(handle: u32) -> RequestHeader<'static> {
        RequestHeader {
            authentication_token: NodeId::numeric(1, 5),
            timestamp: DateTime(0),
            request_handle: handle,
            return_diagnostics: 0,
            audit_entry_id: UaString::null(),
            timeout_hint: 0,
            additional_header: ExtensionObject::default(),
        }
    }

    fn response_header(handle: u32, result: u32) -> uatap_codec::services::ResponseHeader<'static> {
        uatap_codec::services::ResponseHeader {
            timestamp: DateTime(0),
            request_handle: handle,
            service_result: uatap_codec::status::StatusCode(result),
            service_diagnostics: Default::default(),
            string_table: None,
            additional_header: ExtensionObject::default(),
        }
    }

    fn body<T: Encode>(type_id: u32, v: &T) -> Vec<u8> {
        let mut b = NodeId::numeric(0, type_id).to_vec();
        v.encode(&mut b);
        b
    }

    /// A Republish loop after a reconnect: one message comes back, then the server says it
    /// holds no more (Bad_MessageNotAvailable), which ends the loop normally.
    #[test]
    fn republish_loop_is_reported() {
        use uatap_codec::services::{
            NotificationMessage, RepublishRequest, RepublishResponse, ServiceFault,
        };
        let mut c = conn();
        let req = |seq: u32| RepublishRequest {
            request_header: request_header(seq),
            subscription_id: 9,
            retransmit_sequence_number: seq,
        };
        feed(
            &mut c,
            Direction::ClientToServer,
            &msg(10, &body(832, &req(5))),
        );
        let ok = RepublishResponse {
            response_header: response_header(5, 0),
            notification_message: NotificationMessage {
                sequence_number: 5,
                publish_time: DateTime(0),
                notification_data: Some(vec![]),
            },
        };
        let ev = feed(&mut c, Direction::ServerToClient, &msg(10, &body(835, &ok)));
        let r: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                EventKind::Republish(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].subscription_id, r[0].retransmit_sequence_number),
            (9, 5)
        );
        assert_eq!(r[0].status.status_name, Some("Good"));
        feed(
            &mut c,
            Direction::ClientToServer,
            &msg(11, &body(832, &req(6))),
        );
        let fault = ServiceFault {
            response_header: response_header(6, 0x807B_0000),
        };
        let ev = feed(
            &mut c,
            Direction::ServerToClient,
            &msg(11, &body(397, &fault)),
        );
        let f = ev
            .iter()
            .find_map(|e| match e {
                EventKind::ServiceFault(f) => Some(f.clone()),
                _ => None,
            })
            .expect("service_fault");
        assert_eq!(f.for_service, Some("RepublishRequest"));
        assert!(f.normal, "Bad_MessageNotAvailable ends a Republish loop");
        assert!(ev.iter().any(|e| matches!(e, EventKind::Republish(r)
            if r.retransmit_sequence_number == 6 && r.status.status_name == Some("Bad_MessageNotAvailable"))));
        // A response without a request is still decoded, and a request never answered is
        // listed when the connection ends.
        feed(
            &mut c,
            Direction::ClientToServer,
            &msg(12, &body(832, &req(7))),
        );
        c.handle_close(
            ClosedBy::Client,
            CloseReason::Fin,
            Timestamp::from_unix_micros(9),
        );
        let ev: Vec<EventKind> = std::iter::from_fn(|| c.poll_event())
            .map(|e| e.kind)
            .collect();
        let summary = ev
            .iter()
            .find_map(|e| match e {
                EventKind::Summary(s) => Some(s.clone()),
                _ => None,
            })
            .expect("summary");
        assert_eq!(summary.unanswered, vec!["RepublishRequest#12".to_string()]);
        assert_eq!(summary.service_faults, 1);
        assert_eq!(summary.abnormal_faults, 0);
    }
}
