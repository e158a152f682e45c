//! Plays the recorded server toward a live client, one recorded connection per live one.
//!
//! Each live request is answered with the recorded response to the recorded request of the
//! same service and rank on that connection (Read by its NodeIds, Republish by its sequence
//! number), rewritten for the live client: its RequestId and RequestHandle, our own sequence
//! numbers, its ClientHandles in the notifications, timestamps moved to now (unless
//! `keep_time`). A recorded request that got no answer leaves the live one unanswered; a
//! connection the server side closed (a server's close, a proxy's `cut`) is closed after the
//! same last message, the recorded pause later. PublishResponses keep the recorded pacing,
//! scaled by the speed.
//!
//! What the recording never saw is answered from the recorded state where the specification
//! allows it (Republish from recorded NotificationMessages, TransferSubscriptions of a recorded
//! subscription, Read of a recorded or well-known node), else with a ServiceFault; each is a
//! [`Divergence`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use uatap_analysis::{Direction, Timestamp};
use uatap_codec::ids::service as id;
use uatap_codec::reassembly::{Reassembler, ReassemblyEvent};
use uatap_codec::services::{
    parse_message, Header, Message, NotificationMessage, RawService, ReadResponse, ReadValueId,
    RepublishResponse, ResponseHeader, ServiceBody, TransferResult, TransferSubscriptionsResponse,
};
use uatap_codec::status::StatusCode;
use uatap_codec::tcp::{
    parse_acknowledge_message, parse_message_header, parse_tcp_message, AcknowledgeMessage,
    MessageType, TcpMessage,
};
use uatap_codec::types::{DataValue, Decode, NodeId, Variant};
use uatap_codec::{Encode, Reader};

use crate::recording::{RecordedConnection, RecordedMessage};
use crate::wire::{self, Channel};
use crate::{Divergence, Speed};

/// Bad_ServiceUnsupported: the answer to a service the recording never saw.
const BAD_SERVICE_UNSUPPORTED: StatusCode = StatusCode(0x800B_0000);
/// Bad_NodeIdUnknown: a Read of a node the recording never saw.
const BAD_NODE_ID_UNKNOWN: StatusCode = StatusCode(0x8034_0000);
/// Bad_MessageNotAvailable: Republish of a number the recorded server never sent.
const BAD_MESSAGE_NOT_AVAILABLE: StatusCode = StatusCode(0x807B_0000);
/// Bad_SubscriptionIdInvalid: TransferSubscriptions of a subscription the recording never had.
const BAD_SUBSCRIPTION_ID_INVALID: StatusCode = StatusCode(0x8028_0000);

/// How long past the recorded close a server-side close waits for the message it follows
/// (when the live client never asks for it), in µs.
const CLOSE_GRACE_MICROS: i64 = 5_000_000;

/// How to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerOptions {
    /// Pacing of the recorded pauses.
    pub speed: Speed,
    /// Keep the recorded timestamps instead of moving them to now.
    pub keep_time: bool,
}

/// How replay ends a live connection, as the recorded one ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// An orderly close (FIN).
    Fin,
    /// A reset.
    Rst,
}

/// A message waiting for its time.
#[derive(Debug, Clone)]
struct Scheduled {
    due: Timestamp,
    /// Recorded time of a paced message: those go out in recorded order.
    paced_at: Option<Timestamp>,
    what: Outgoing,
}

#[derive(Debug, Clone)]
enum Outgoing {
    /// A recorded response for a live request.
    Recorded {
        msg: usize,
        request_id: u32,
        handle: u32,
        acks: usize,
        message_type: MessageType,
    },
    /// A whole UA TCP message (ACK, ERR) from the recording, possibly adjusted.
    Raw { msg: usize, bytes: Vec<u8> },
    /// A body replay made itself.
    Made {
        request_id: u32,
        message_type: MessageType,
        body: Vec<u8>,
    },
}

/// The live connection being played.
#[derive(Debug)]
struct Live {
    rec: usize,
    started: Timestamp,
    reassembler: Reassembler,
    channel: Channel,
    /// Recorded requests not yet matched, per encoding id, in order (message indexes).
    pending: HashMap<u32, VecDeque<usize>>,
    /// Recorded response of each recorded request (message indexes).
    response_of: HashMap<usize, usize>,
    /// The recorded answer to HEL (ACK or ERR).
    hello_answer: Option<usize>,
    /// Recorded server messages no request asks for (an ERR, a late abort), after which
    /// recorded message they follow.
    unsolicited: Vec<(usize, Option<usize>)>,
    scheduled: Vec<Scheduled>,
    /// Last paced message: (live time sent, recorded time).
    anchor: (Timestamp, Timestamp),
    /// The server side closed the recorded connection after this message.
    close_trigger: Option<usize>,
    close_due: Option<Timestamp>,
    close_rst: bool,
    told_extra_publish: bool,
}

/// The recorded server, played toward live clients (sans-IO).
#[derive(Debug)]
pub struct ServerReplay {
    conns: Vec<RecordedConnection>,
    options: ServerOptions,
    next: usize,
    live: Option<Live>,
    out: Vec<u8>,
    close: Option<Close>,
    events: VecDeque<Divergence>,
    /// Recorded ClientHandle -> the live client's.
    handles: HashMap<u32, u32>,
    /// Every NotificationMessage the recorded server sent: (subscription, number) -> (encoded
    /// NotificationMessage, recorded time).
    notifications: BTreeMap<(u32, u32), (Vec<u8>, Timestamp)>,
    /// Values the recorded server gave to Read: (encoded NodeId, AttributeId) -> encoded
    /// DataValue.
    values: HashMap<(Vec<u8>, u32), Vec<u8>>,
    /// Subscriptions the recorded server created.
    subscriptions: BTreeSet<u32>,
    /// NotificationMessages the live client acknowledged.
    acked: BTreeSet<(u32, u32)>,
}

fn is_server(m: &RecordedMessage) -> bool {
    m.dir == Direction::ServerToClient
}

fn micros_between(later: Timestamp, earlier: Timestamp) -> i64 {
    later.unix_micros.saturating_sub(earlier.unix_micros)
}

fn after(t: Timestamp, micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(t.unix_micros.saturating_add(micros))
}

/// A NodeId and AttributeId as a map key.
fn node_key(v: &ReadValueId<'_>) -> (Vec<u8>, u32) {
    (v.node_id.to_vec(), v.attribute_id)
}

/// The mutable ResponseHeader of any response body.
fn header_mut<'b, 'a>(body: &'b mut ServiceBody<'a>) -> Option<&'b mut ResponseHeader<'a>> {
    use ServiceBody as B;
    Some(match body {
        B::OpenSecureChannelResponse(b) => &mut b.response_header,
        B::CloseSecureChannelResponse(b) => &mut b.response_header,
        B::ServiceFault(b) => &mut b.response_header,
        B::GetEndpointsResponse(b) => &mut b.response_header,
        B::FindServersResponse(b) => &mut b.response_header,
        B::CreateSessionResponse(b) => &mut b.response_header,
        B::ActivateSessionResponse(b) => &mut b.response_header,
        B::CloseSessionResponse(b) => &mut b.response_header,
        B::CreateSubscriptionResponse(b) => &mut b.response_header,
        B::ModifySubscriptionResponse(b) => &mut b.response_header,
        B::SetPublishingModeResponse(b)
        | B::DeleteSubscriptionsResponse(b)
        | B::DeleteMonitoredItemsResponse(b)
        | B::SetMonitoringModeResponse(b)
        | B::WriteResponse(b) => &mut b.response_header,
        B::CreateMonitoredItemsResponse(b) => &mut b.response_header,
        B::ModifyMonitoredItemsResponse(b) => &mut b.response_header,
        B::PublishResponse(b) => &mut b.response_header,
        B::RepublishResponse(b) => &mut b.response_header,
        B::TransferSubscriptionsResponse(b) => &mut b.response_header,
        B::ReadResponse(b) => &mut b.response_header,
        B::BrowseResponse(b) => &mut b.response_header,
        B::CallResponse(b) => &mut b.response_header,
        B::Other(RawService {
            header: Header::Response(h),
            ..
        }) => h,
        _ => return None,
    })
}

impl ServerReplay {
    /// A replay of these recorded connections, in order.
    #[must_use]
    pub fn new(conns: Vec<RecordedConnection>, options: ServerOptions) -> Self {
        let mut s = ServerReplay {
            conns,
            options,
            next: 0,
            live: None,
            out: Vec::new(),
            close: None,
            events: VecDeque::new(),
            handles: HashMap::new(),
            notifications: BTreeMap::new(),
            values: HashMap::new(),
            subscriptions: BTreeSet::new(),
            acked: BTreeSet::new(),
        };
        s.learn_state();
        s
    }

    /// Adds what the server legs of a proxied recording show of the recorded server (messages
    /// a fault kept from the client), for Republish and TransferSubscriptions.
    pub fn add_server_state(&mut self, legs: &[RecordedConnection]) {
        for c in legs {
            Self::learn_from(
                c,
                &mut self.notifications,
                &mut self.values,
                &mut self.subscriptions,
            );
        }
    }

    fn learn_state(&mut self) {
        for c in &self.conns {
            Self::learn_from(
                c,
                &mut self.notifications,
                &mut self.values,
                &mut self.subscriptions,
            );
        }
    }

    fn learn_from(
        c: &RecordedConnection,
        notifications: &mut BTreeMap<(u32, u32), (Vec<u8>, Timestamp)>,
        values: &mut HashMap<(Vec<u8>, u32), Vec<u8>>,
        subscriptions: &mut BTreeSet<u32>,
    ) {
        let mut reads: HashMap<u32, Vec<(Vec<u8>, u32)>> = HashMap::new();
        for m in &c.messages {
            let Some(msg) = m.message() else { continue };
            match &msg.body {
                ServiceBody::ReadRequest(r) => {
                    if let Some(rid) = m.request_id {
                        reads.insert(
                            rid,
                            r.nodes_to_read.iter().flatten().map(node_key).collect(),
                        );
                    }
                }
                ServiceBody::ReadResponse(r) => {
                    let nodes = m.request_id.and_then(|rid| reads.remove(&rid));
                    if let (Some(nodes), Some(results)) = (nodes, &r.results) {
                        for (k, v) in nodes.into_iter().zip(results) {
                            values.insert(k, v.to_vec());
                        }
                    }
                }
                ServiceBody::CreateSubscriptionResponse(r) => {
                    subscriptions.insert(r.subscription_id);
                }
                ServiceBody::PublishResponse(p) if !p.notification_message.is_keep_alive() => {
                    notifications.insert(
                        (p.subscription_id, p.notification_message.sequence_number),
                        (p.notification_message.to_vec(), m.at),
                    );
                }
                _ => {}
            }
        }
    }

    /// Recorded connections not yet played.
    #[must_use]
    pub fn connections_left(&self) -> usize {
        self.conns.len().saturating_sub(self.next)
    }

    /// The id of the recorded connection being played.
    #[must_use]
    pub fn current(&self) -> Option<&RecordedConnection> {
        self.live.as_ref().and_then(|l| self.conns.get(l.rec))
    }

    /// A live client connected: it plays the next recorded connection. Returns false when
    /// every recorded connection has been played (the caller should refuse it).
    pub fn accept(&mut self, now: Timestamp) -> bool {
        let Some(conn) = self.conns.get(self.next) else {
            return false;
        };
        let rec = self.next;
        self.next = self.next.saturating_add(1);
        let mut pending: HashMap<u32, VecDeque<usize>> = HashMap::new();
        let mut by_request_id: HashMap<u32, usize> = HashMap::new();
        let mut response_of = HashMap::new();
        let mut hello_answer = None;
        let mut unsolicited = Vec::new();
        let mut last_server: Option<usize> = None;
        let mut first_seq = None;
        for (i, m) in conn.messages.iter().enumerate() {
            if !is_server(m) {
                if m.message_type.is_secure_conversation() {
                    if let Some(t) = m.type_id() {
                        pending.entry(t).or_default().push_back(i);
                    }
                    if let Some(rid) = m.request_id {
                        by_request_id.insert(rid, i);
                    }
                }
                continue;
            }
            if first_seq.is_none() {
                first_seq = m.sequence_number;
            }
            let answered = match m.message_type {
                MessageType::Acknowledge if hello_answer.is_none() => {
                    hello_answer = Some(i);
                    true
                }
                MessageType::Error if hello_answer.is_none() && last_server.is_none() => {
                    hello_answer = Some(i);
                    true
                }
                t if t.is_secure_conversation() => {
                    match m.request_id.and_then(|rid| by_request_id.remove(&rid)) {
                        Some(req) => {
                            response_of.insert(req, i);
                            true
                        }
                        None => false,
                    }
                }
                _ => false,
            };
            if !answered {
                unsolicited.push((i, last_server));
            }
            last_server = Some(i);
        }
        let (close_trigger, close_due, close_rst) = match conn.end {
            Some(end) if !end.by_client => {
                let due = match last_server {
                    Some(_) => None,
                    None => Some(after(
                        now,
                        self.options
                            .speed
                            .scale(micros_between(end.at, conn.opened)),
                    )),
                };
                (last_server, due, end.rst)
            }
            _ => (None, None, false),
        };
        self.live = Some(Live {
            rec,
            started: now,
            reassembler: Reassembler::default(),
            channel: Channel::new(first_seq.unwrap_or(1), 65_536),
            pending,
            response_of,
            hello_answer,
            unsolicited,
            scheduled: Vec::new(),
            anchor: (now, conn.opened),
            close_trigger,
            close_due,
            close_rst,
            told_extra_publish: false,
        });
        // Server messages before any request (none in OPC UA, but a recording may start so).
        self.schedule_unsolicited(None, now);
        self.close = None;
        true
    }

    /// Bytes from the live client.
    pub fn handle_input(&mut self, bytes: &[u8], now: Timestamp) {
        let mut messages = Vec::new();
        if let Some(live) = self.live.as_mut() {
            live.reassembler.handle_input(bytes);
            while let Some(ev) = live.reassembler.poll_event() {
                match ev {
                    ReassemblyEvent::Message(m) => messages.push(m),
                    ReassemblyEvent::Error { error, .. } => self.events.push_back(Divergence {
                        service: None,
                        detail: format!("the live client sent bytes that do not decode: {error}"),
                        answer: "skipped them".into(),
                    }),
                    _ => {}
                }
            }
        }
        for m in messages {
            self.handle_message(m, now);
        }
        self.flush(now);
    }

    /// The live client closed its connection (or it broke): the recorded connection is over.
    pub fn handle_peer_close(&mut self, _now: Timestamp) {
        self.live = None;
    }

    /// When [`ServerReplay::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let live = self.live.as_ref()?;
        let deadline = match live.close_due {
            Some(d) => Some(d),
            None => self.close_deadline(),
        };
        live.scheduled.iter().map(|s| s.due).chain(deadline).min()
    }

    /// Time passed: sends what is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.flush(now);
        self.handle_deadline(now);
    }

    /// Bytes to send to the live client.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// The live connection must now be closed this way (after sending what
    /// [`ServerReplay::poll_transmit`] gave); the recorded connection is then over.
    #[must_use]
    pub fn poll_close(&mut self) -> Option<Close> {
        self.close.take()
    }

    /// What the replay met that the recording does not have.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Divergence> {
        self.events.pop_front()
    }

    /// True while a live connection is being played.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    fn diverge(&mut self, service: Option<&str>, detail: String, answer: impl Into<String>) {
        self.events.push_back(Divergence {
            service: service.map(str::to_string),
            detail,
            answer: answer.into(),
        });
    }

    fn conn(&self) -> Option<&RecordedConnection> {
        self.live.as_ref().and_then(|l| self.conns.get(l.rec))
    }

    fn recorded(&self, i: usize) -> Option<&RecordedMessage> {
        self.conn().and_then(|c| c.messages.get(i))
    }

    fn schedule(&mut self, due: Timestamp, what: Outgoing) {
        if let Some(live) = self.live.as_mut() {
            live.scheduled.push(Scheduled {
                due,
                paced_at: None,
                what,
            });
        }
    }

    /// Schedules a paced message no earlier than a paced message recorded before it.
    fn schedule_paced(&mut self, due: Timestamp, rec_at: Timestamp, what: Outgoing) {
        if let Some(live) = self.live.as_mut() {
            let after_earlier = live
                .scheduled
                .iter()
                .filter(|s| s.paced_at.is_some_and(|p| p <= rec_at))
                .map(|s| s.due)
                .max();
            live.scheduled.push(Scheduled {
                due: after_earlier.map_or(due, |d| d.max(due)),
                paced_at: Some(rec_at),
                what,
            });
        }
    }

    /// The time a recorded Publish-paced message is due: the recorded pause since the last one
    /// sent, scaled, and never before its request came.
    fn paced(&self, rec_at: Timestamp, now: Timestamp) -> Timestamp {
        let Some(live) = self.live.as_ref() else {
            return now;
        };
        let (live_at, anchor_rec) = live.anchor;
        let due = after(
            live_at,
            self.options.speed.scale(micros_between(rec_at, anchor_rec)),
        );
        due.max(now)
    }

    fn schedule_unsolicited(&mut self, after_msg: Option<usize>, now: Timestamp) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let due: Vec<usize> = live
            .unsolicited
            .iter()
            .filter(|(_, p)| *p == after_msg)
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            let Some(m) = self.recorded(i).cloned() else {
                continue;
            };
            let at = self.paced(m.at, now);
            let what = if m.message_type.is_secure_conversation() {
                Outgoing::Recorded {
                    msg: i,
                    request_id: m.request_id.unwrap_or(0),
                    handle: m
                        .message()
                        .and_then(|x| x.request_handle())
                        .unwrap_or_default(),
                    acks: 0,
                    message_type: m.message_type,
                }
            } else {
                Outgoing::Raw {
                    msg: i,
                    bytes: m.payload.clone(),
                }
            };
            self.schedule(at, what);
        }
    }

    fn handle_message(&mut self, m: uatap_codec::reassembly::AssembledMessage, now: Timestamp) {
        match m.message_type {
            MessageType::Hello => self.on_hello(&m.payload, now),
            MessageType::OpenSecureChannel | MessageType::Message => {
                let request_id = m.sequence_header.map_or(0, |h| h.request_id);
                if m.encrypted {
                    self.diverge(
                        None,
                        "the live client sent an encrypted message".into(),
                        "none: replay speaks security None only",
                    );
                    return;
                }
                match parse_message(&mut Reader::new(&m.payload)) {
                    Ok(msg) => self.on_request(&msg, m.message_type, request_id, now),
                    Err(e) => self.diverge(
                        None,
                        format!("a live request does not decode: {e}"),
                        "left unanswered",
                    ),
                }
            }
            // CLO: the client closes the socket next; nothing to answer.
            _ => {}
        }
    }

    fn on_hello(&mut self, payload: &[u8], now: Timestamp) {
        let hello = match parse_tcp_message(&mut Reader::new(payload)) {
            Ok(TcpMessage::Hello(h)) => Some(h),
            _ => None,
        };
        let Some(i) = self.live.as_ref().and_then(|l| l.hello_answer) else {
            self.diverge(
                None,
                "the recorded server never answered the HEL".into(),
                "left unanswered",
            );
            return;
        };
        let Some(rec) = self.recorded(i).cloned() else {
            return;
        };
        let mut bytes = rec.payload.clone();
        if rec.message_type == MessageType::Acknowledge {
            let mut r = Reader::new(&rec.payload);
            let parsed = parse_message_header(&mut r)
                .and_then(|h| parse_acknowledge_message(&mut r).map(|a| (h, a)));
            if let Ok((header, ack)) = parsed {
                // What the live client can take, not what the recorded one could.
                let ack = AcknowledgeMessage {
                    send_buffer_size: match &hello {
                        Some(h) if h.receive_buffer_size > 0 => {
                            ack.send_buffer_size.min(h.receive_buffer_size)
                        }
                        _ => ack.send_buffer_size,
                    },
                    receive_buffer_size: match &hello {
                        Some(h) if h.send_buffer_size > 0 => {
                            ack.receive_buffer_size.min(h.send_buffer_size)
                        }
                        _ => ack.receive_buffer_size,
                    },
                    ..ack
                };
                bytes = TcpMessage::Acknowledge(ack).to_vec();
                let _ = header;
                if let Some(live) = self.live.as_mut() {
                    live.channel.max_chunk = ack.send_buffer_size;
                }
            }
        }
        self.schedule(now, Outgoing::Raw { msg: i, bytes });
    }

    /// Takes the first pending recorded request of this type that `fits`.
    fn take_pending(&mut self, type_id: u32, fits: impl Fn(&Message<'_>) -> bool) -> Option<usize> {
        let live = self.live.as_ref()?;
        let conn = self.conns.get(live.rec)?;
        let queue = live.pending.get(&type_id)?;
        let pos = queue.iter().position(|i| {
            conn.messages
                .get(*i)
                .and_then(RecordedMessage::message)
                .is_some_and(|m| fits(&m))
        })?;
        let live = self.live.as_mut()?;
        live.pending.get_mut(&type_id)?.remove(pos)
    }

    fn on_request(
        &mut self,
        msg: &Message<'_>,
        message_type: MessageType,
        request_id: u32,
        now: Timestamp,
    ) {
        let type_id = msg.type_id_numeric().unwrap_or(0);
        let service = msg.service_name();
        let handle = msg.request_handle().unwrap_or(0);
        let mut acks: usize = 0;
        let taken = match &msg.body {
            ServiceBody::PublishRequest(p) => {
                for a in p.subscription_acknowledgements.iter().flatten() {
                    self.acked.insert((a.subscription_id, a.sequence_number));
                    acks = acks.saturating_add(1usize);
                }
                self.take_pending(type_id, |_| true)
            }
            ServiceBody::RepublishRequest(r) => {
                let (sub, seq) = (r.subscription_id, r.retransmit_sequence_number);
                let fits = |m: &Message<'_>| {
                    matches!(&m.body, ServiceBody::RepublishRequest(x)
                        if x.subscription_id == sub && x.retransmit_sequence_number == seq)
                };
                // A client asking the same number again and again (a Republish loop that never
                // ends) gets the recorded answer again and again.
                self.take_pending(type_id, fits)
                    .or_else(|| self.last_recorded_request(fits))
            }
            ServiceBody::ReadRequest(r) => {
                let want: Vec<(Vec<u8>, u32)> =
                    r.nodes_to_read.iter().flatten().map(node_key).collect();
                self.take_pending(type_id, |m| {
                    matches!(&m.body, ServiceBody::ReadRequest(x)
                        if x.nodes_to_read.iter().flatten().map(node_key).collect::<Vec<_>>() == want)
                })
            }
            _ => self.take_pending(type_id, |_| true),
        };
        let Some(req) = taken else {
            self.unrecorded(msg, message_type, request_id, now);
            return;
        };
        if let ServiceBody::CreateMonitoredItemsRequest(live_req) = &msg.body {
            self.map_handles(req, live_req);
        }
        let response = self
            .live
            .as_ref()
            .and_then(|l| l.response_of.get(&req).copied());
        let Some(resp) = response else {
            // The recorded request got no answer: neither does this one.
            return;
        };
        let Some(rec) = self.recorded(resp).cloned() else {
            return;
        };
        let due = if type_id == id::PUBLISH_REQUEST {
            self.paced(rec.at, now)
        } else {
            // The recorded service time, scaled.
            let req_at = self.recorded(req).map_or(rec.at, |m| m.at);
            after(
                now,
                self.options.speed.scale(micros_between(rec.at, req_at)),
            )
        };
        let _ = service;
        let what = Outgoing::Recorded {
            msg: resp,
            request_id,
            handle,
            acks,
            message_type,
        };
        if type_id == id::PUBLISH_REQUEST {
            self.schedule_paced(due, rec.at, what);
        } else {
            self.schedule(due, what);
        }
    }

    /// The last recorded request of this connection that `fits` and was answered.
    fn last_recorded_request(&self, fits: impl Fn(&Message<'_>) -> bool) -> Option<usize> {
        let live = self.live.as_ref()?;
        let conn = self.conns.get(live.rec)?;
        conn.messages
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, m)| !is_server(m) && live.response_of.contains_key(i))
            .find(|(_, m)| m.message().is_some_and(|x| fits(&x)))
            .map(|(i, _)| i)
    }

    fn map_handles(
        &mut self,
        req: usize,
        live_req: &uatap_codec::services::CreateMonitoredItemsRequest<'_>,
    ) {
        let Some(rec) = self.recorded(req).cloned() else {
            return;
        };
        let Some(Message {
            body: ServiceBody::CreateMonitoredItemsRequest(rec_req),
            ..
        }) = rec.message()
        else {
            return;
        };
        let recorded = rec_req.items_to_create.iter().flatten();
        let live = live_req.items_to_create.iter().flatten();
        let (mut n_rec, mut n_live) = (0usize, 0usize);
        for (r, l) in recorded.zip(live) {
            self.handles.insert(
                r.requested_parameters.client_handle,
                l.requested_parameters.client_handle,
            );
        }
        n_rec = n_rec.saturating_add(rec_req.items_to_create.as_ref().map_or(0, Vec::len));
        n_live = n_live.saturating_add(live_req.items_to_create.as_ref().map_or(0, Vec::len));
        if n_rec != n_live {
            self.diverge(
                Some("CreateMonitoredItemsRequest"),
                format!("the live client creates {n_live} items, the recorded one {n_rec}"),
                "the recorded results, one per recorded item",
            );
        }
    }

    /// A request the recorded connection has no (more) of.
    fn unrecorded(
        &mut self,
        msg: &Message<'_>,
        message_type: MessageType,
        request_id: u32,
        now: Timestamp,
    ) {
        let service = msg.service_name().unwrap_or("unknown service");
        let handle = msg.request_handle().unwrap_or(0);
        let made = |body: ServiceBody<'_>, type_id: u32| {
            Message {
                type_id: NodeId::numeric(0, type_id),
                body,
            }
            .to_vec()
        };
        let header = wire::response_header(handle, StatusCode(0), now);
        match &msg.body {
            ServiceBody::PublishRequest(_) => {
                // Recorded Publish requests are all used: the live client queued more than the
                // recorded one; they stay queued, as on a server with nothing to say yet.
                if let Some(live) = self.live.as_mut() {
                    if !live.told_extra_publish {
                        live.told_extra_publish = true;
                        self.diverge(
                            Some(service),
                            "more Publish requests than the recorded client sent on this \
                             connection"
                                .into(),
                            "left unanswered (queued)",
                        );
                    }
                }
            }
            ServiceBody::RepublishRequest(r) => {
                let key = (r.subscription_id, r.retransmit_sequence_number);
                let found = self.notifications.get(&key).cloned();
                let (body, answer) = match &found {
                    Some((bytes, at)) => {
                        let delta = self.delta(*at, now);
                        match NotificationMessage::decode(&mut Reader::new(bytes)) {
                            Ok(mut n) => {
                                wire::rewrite_notification_message(&mut n, delta, &self.handles);
                                (
                                    made(
                                        ServiceBody::RepublishResponse(RepublishResponse {
                                            response_header: header.clone(),
                                            notification_message: n,
                                        }),
                                        id::REPUBLISH_RESPONSE,
                                    ),
                                    "RepublishResponse Good with the recorded NotificationMessage",
                                )
                            }
                            Err(_) => (
                                not_available(handle, now),
                                "RepublishResponse Bad_MessageNotAvailable",
                            ),
                        }
                    }
                    None => (
                        not_available(handle, now),
                        "RepublishResponse Bad_MessageNotAvailable",
                    ),
                };
                self.diverge(
                    Some(service),
                    format!(
                        "no recorded Republish of subscription {} number {} on this connection",
                        key.0, key.1
                    ),
                    answer,
                );
                self.schedule(
                    now,
                    Outgoing::Made {
                        request_id,
                        message_type,
                        body,
                    },
                );
            }
            ServiceBody::TransferSubscriptionsRequest(t) => {
                let held_before = self.conn().map_or(now, |c| c.opened);
                let results: Vec<TransferResult> = t
                    .subscription_ids
                    .iter()
                    .flatten()
                    .map(|sub| {
                        if self.subscriptions.contains(sub) {
                            let available: Vec<u32> = self
                                .notifications
                                .iter()
                                .filter(|((s, n), (_, at))| {
                                    s == sub && *at < held_before && !self.acked.contains(&(*s, *n))
                                })
                                .map(|((_, n), _)| *n)
                                .collect();
                            TransferResult {
                                status_code: StatusCode(0),
                                available_sequence_numbers: Some(available),
                            }
                        } else {
                            TransferResult {
                                status_code: BAD_SUBSCRIPTION_ID_INVALID,
                                available_sequence_numbers: None,
                            }
                        }
                    })
                    .collect();
                let detail = format!(
                    "no recorded TransferSubscriptions on this connection ({})",
                    results
                        .iter()
                        .map(|r| format!(
                            "{} -> {}",
                            "subscription",
                            r.status_code.name().unwrap_or("?")
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let body = made(
                    ServiceBody::TransferSubscriptionsResponse(TransferSubscriptionsResponse {
                        response_header: header,
                        results: Some(results),
                        diagnostic_infos: None,
                    }),
                    id::TRANSFER_SUBSCRIPTIONS_RESPONSE,
                );
                self.diverge(
                    Some(service),
                    detail,
                    "TransferSubscriptionsResponse from the recorded subscriptions and their \
                     unacknowledged NotificationMessages",
                );
                self.schedule(
                    now,
                    Outgoing::Made {
                        request_id,
                        message_type,
                        body,
                    },
                );
            }
            ServiceBody::ReadRequest(r) => {
                let mut unknown = Vec::new();
                let unknown_value = DataValue {
                    status: Some(BAD_NODE_ID_UNKNOWN.0),
                    ..DataValue::default()
                }
                .to_vec();
                let stored: Vec<Vec<u8>> = r
                    .nodes_to_read
                    .iter()
                    .flatten()
                    .map(|v| {
                        self.known_value(v, now).unwrap_or_else(|| {
                            unknown.push(v.node_id.to_string());
                            unknown_value.clone()
                        })
                    })
                    .collect();
                let decoded: Vec<DataValue<'_>> = stored
                    .iter()
                    .filter_map(|b| DataValue::decode(&mut Reader::new(b)).ok())
                    .collect();
                let body = made(
                    ServiceBody::ReadResponse(ReadResponse {
                        response_header: header,
                        results: Some(decoded),
                        diagnostic_infos: None,
                    }),
                    id::READ_RESPONSE,
                );
                let nodes: Vec<String> = r
                    .nodes_to_read
                    .iter()
                    .flatten()
                    .map(|v| v.node_id.to_string())
                    .collect();
                let answer = if unknown.is_empty() {
                    "ReadResponse with the recorded (or the server's own) values".to_string()
                } else {
                    format!("ReadResponse, Bad_NodeIdUnknown for {}", unknown.join(", "))
                };
                self.diverge(
                    Some(service),
                    format!(
                        "no recorded Read of {} on this connection",
                        nodes.join(", ")
                    ),
                    answer,
                );
                self.schedule(
                    now,
                    Outgoing::Made {
                        request_id,
                        message_type,
                        body,
                    },
                );
            }
            _ => {
                // A stateless answer from another recorded connection fits as well.
                let type_id = msg.type_id_numeric().unwrap_or(0);
                let elsewhere = matches!(
                    type_id,
                    id::GET_ENDPOINTS_REQUEST
                        | id::FIND_SERVERS_REQUEST
                        | id::OPEN_SECURE_CHANNEL_REQUEST
                        | id::ACTIVATE_SESSION_REQUEST
                )
                .then(|| self.recorded_elsewhere(type_id))
                .flatten();
                match elsewhere {
                    Some((conn, resp)) => {
                        self.diverge(
                            Some(service),
                            "not recorded on this connection".into(),
                            format!(
                                "the recorded answer from connection {}",
                                conn.saturating_add(1)
                            ),
                        );
                        let mut body = resp.payload.clone();
                        if let Some(b) = self.rewrite(&resp, handle, 0, now) {
                            body = b;
                        }
                        self.schedule(
                            now,
                            Outgoing::Made {
                                request_id,
                                message_type,
                                body,
                            },
                        );
                    }
                    None => {
                        self.diverge(
                            Some(service),
                            "the recording has no such request here".into(),
                            "ServiceFault Bad_ServiceUnsupported",
                        );
                        self.schedule(
                            now,
                            Outgoing::Made {
                                request_id,
                                message_type,
                                body: wire::service_fault(handle, BAD_SERVICE_UNSUPPORTED, now),
                            },
                        );
                    }
                }
            }
        }
    }

    /// The last recorded response to a request of this type on any connection.
    fn recorded_elsewhere(&self, type_id: u32) -> Option<(usize, RecordedMessage)> {
        let mut found = None;
        for (ci, c) in self.conns.iter().enumerate() {
            let mut asked: HashMap<u32, ()> = HashMap::new();
            for m in &c.messages {
                match m.dir {
                    Direction::ClientToServer => {
                        if m.type_id() == Some(type_id) {
                            if let Some(rid) = m.request_id {
                                asked.insert(rid, ());
                            }
                        }
                    }
                    Direction::ServerToClient => {
                        if m.request_id.is_some_and(|rid| asked.remove(&rid).is_some()) {
                            found = Some((ci, m.clone()));
                        }
                    }
                }
            }
        }
        found
    }

    /// A value (encoded DataValue) for a Read the recording has no matching request for: what
    /// the recorded server answered for that node elsewhere, or the server's own state and
    /// clock.
    fn known_value(&self, v: &ReadValueId<'_>, now: Timestamp) -> Option<Vec<u8>> {
        if let Some(bytes) = self.values.get(&node_key(v)) {
            return Some(bytes.clone());
        }
        const VALUE: u32 = 13;
        if v.attribute_id != VALUE {
            return None;
        }
        let value = match v.node_id.as_ns0_numeric() {
            // Server_ServerStatus_State: Running.
            Some(2259) => Variant::Int32(0),
            // Server_ServerStatus_CurrentTime.
            Some(2258) => Variant::DateTime(wire::date_time(now)),
            _ => return None,
        };
        Some(
            DataValue {
                value: Some(value),
                source_timestamp: Some(wire::date_time(now)),
                server_timestamp: Some(wire::date_time(now)),
                ..DataValue::default()
            }
            .to_vec(),
        )
    }

    fn delta(&self, rec_at: Timestamp, now: Timestamp) -> i64 {
        if self.options.keep_time {
            0
        } else {
            micros_between(now, rec_at)
        }
    }

    /// A recorded response rewritten for the live request: its handle, the time, the live
    /// ClientHandles, one result per live acknowledgement.
    fn rewrite(
        &mut self,
        rec: &RecordedMessage,
        handle: u32,
        acks: usize,
        now: Timestamp,
    ) -> Option<Vec<u8>> {
        let mut msg = parse_message(&mut Reader::new(&rec.payload)).ok()?;
        let delta = self.delta(rec.at, now);
        if let Some(h) = header_mut(&mut msg.body) {
            h.request_handle = handle;
            h.timestamp = if self.options.keep_time {
                h.timestamp
            } else {
                wire::date_time(now)
            };
        }
        match &mut msg.body {
            ServiceBody::OpenSecureChannelResponse(o) => {
                o.security_token.created_at = wire::shift(o.security_token.created_at, delta);
                if let Some(live) = self.live.as_mut() {
                    live.channel.channel_id = o.security_token.channel_id;
                    live.channel.token_id = o.security_token.token_id;
                }
            }
            ServiceBody::PublishResponse(p) => {
                wire::rewrite_notification_message(
                    &mut p.notification_message,
                    delta,
                    &self.handles,
                );
                if acks > 0 || p.results.as_ref().is_some_and(|r| !r.is_empty()) {
                    p.results = Some(vec![StatusCode(0); acks]);
                    p.diagnostic_infos = None;
                }
            }
            ServiceBody::RepublishResponse(p) => {
                wire::rewrite_notification_message(
                    &mut p.notification_message,
                    delta,
                    &self.handles,
                );
            }
            _ => {}
        }
        Some(msg.to_vec())
    }

    /// Sends everything due, in order.
    fn flush(&mut self, now: Timestamp) {
        loop {
            let Some(live) = self.live.as_mut() else {
                return;
            };
            let next = live
                .scheduled
                .iter()
                .enumerate()
                .filter(|(_, s)| s.due <= now)
                .min_by_key(|(i, s)| (s.due, s.paced_at, *i))
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let s = live.scheduled.remove(i);
            self.send(s.what, now);
            if self.live.is_none() {
                return;
            }
        }
        if let Some(live) = self.live.as_mut() {
            if live.close_due.is_some_and(|d| d <= now) {
                self.close = Some(if live.close_rst {
                    Close::Rst
                } else {
                    Close::Fin
                });
                self.live = None;
            }
        }
    }

    fn send(&mut self, what: Outgoing, now: Timestamp) {
        let sent_msg = match what {
            Outgoing::Raw { msg, bytes } => {
                self.out.extend_from_slice(&bytes);
                Some(msg)
            }
            Outgoing::Made {
                request_id,
                message_type,
                body,
            } => {
                if let Some(live) = self.live.as_mut() {
                    live.channel
                        .write(message_type, request_id, &body, &mut self.out);
                }
                None
            }
            Outgoing::Recorded {
                msg,
                request_id,
                handle,
                acks,
                message_type,
            } => {
                let Some(rec) = self.recorded(msg).cloned() else {
                    return;
                };
                let body = match self.rewrite(&rec, handle, acks, now) {
                    Some(b) => b,
                    None => {
                        self.diverge(
                            None,
                            format!(
                                "the recorded response at offset {} does not decode",
                                rec.offset
                            ),
                            "sent as recorded",
                        );
                        rec.payload.clone()
                    }
                };
                if rec.type_id() == Some(id::PUBLISH_RESPONSE) {
                    if let Some(live) = self.live.as_mut() {
                        live.anchor = (now, rec.at);
                    }
                }
                if let Some(live) = self.live.as_mut() {
                    live.channel
                        .write(message_type, request_id, &body, &mut self.out);
                }
                Some(msg)
            }
        };
        let Some(msg) = sent_msg else { return };
        self.schedule_unsolicited(Some(msg), now);
        let Some(live) = self.live.as_ref() else {
            return;
        };
        if live.close_trigger == Some(msg) {
            let end_at = self.conn().and_then(|c| c.end).map(|e| e.at);
            let rec_at = self.recorded(msg).map(|m| m.at);
            if let (Some(end_at), Some(rec_at)) = (end_at, rec_at) {
                let due = after(
                    now,
                    self.options.speed.scale(micros_between(end_at, rec_at)),
                );
                if let Some(live) = self.live.as_mut() {
                    live.close_due = Some(due);
                }
            }
        }
    }

    /// The deadline of a server-side close whose last message the live client never asks for:
    /// the recorded close time, scaled, plus a grace period.
    #[must_use]
    pub fn close_deadline(&self) -> Option<Timestamp> {
        let live = self.live.as_ref()?;
        live.close_trigger?;
        let c = self.conns.get(live.rec)?;
        let end = c.end?;
        Some(after(
            live.started,
            self.options
                .speed
                .scale(micros_between(end.at, c.opened))
                .saturating_add(CLOSE_GRACE_MICROS),
        ))
    }

    /// Closes the live connection at the recorded close's deadline when the message it follows never went out.
    fn handle_deadline(&mut self, now: Timestamp) {
        let Some(deadline) = self.close_deadline() else {
            return;
        };
        let waiting = self.live.as_ref().is_some_and(|l| l.close_due.is_none());
        if waiting && now >= deadline {
            self.diverge(
                None,
                "the live client never asked for the message the recorded close followed".into(),
                "closed at the recorded time",
            );
            if let Some(live) = self.live.as_mut() {
                live.close_due = Some(now);
            }
            self.flush(now);
        }
    }
}

fn not_available(handle: u32, now: Timestamp) -> Vec<u8> {
    Message {
        type_id: NodeId::numeric(0, id::REPUBLISH_RESPONSE),
        body: ServiceBody::RepublishResponse(RepublishResponse {
            response_header: wire::response_header(handle, BAD_MESSAGE_NOT_AVAILABLE, now),
            notification_message: NotificationMessage {
                sequence_number: 0,
                publish_time: wire::date_time(now),
                notification_data: None,
            },
        }),
    }
    .to_vec()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::recording::Recording;
    use uatap_codec::reassembly::AssembledMessage;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("fixtures")
            .join(name)
    }

    /// The recorded client's requests of one connection, re-chunked with RequestIds moved by
    /// 1000 (as a live client would number them) and their RequestHandles kept.
    fn client_bytes(c: &RecordedConnection) -> Vec<(Timestamp, Vec<u8>)> {
        let mut ch = Channel::new(1, 65_536);
        c.messages
            .iter()
            .filter(|m| m.dir == Direction::ClientToServer)
            .map(|m| {
                let mut out = Vec::new();
                if m.message_type.is_secure_conversation() {
                    ch.channel_id = m.channel_id.unwrap_or(0);
                    ch.token_id = m.token_id.unwrap_or(0);
                    ch.write(
                        m.message_type,
                        m.request_id.unwrap_or(0) + 1000,
                        &m.payload,
                        &mut out,
                    );
                } else {
                    out = m.payload.clone();
                }
                (m.at, out)
            })
            .collect()
    }

    fn responses(bytes: &[u8]) -> Vec<AssembledMessage> {
        let mut r = Reassembler::default();
        r.handle_input(bytes);
        let mut v = Vec::new();
        while let Some(e) = r.poll_event() {
            match e {
                ReassemblyEvent::Message(m) => v.push(m),
                other => panic!("{other:?}"),
            }
        }
        v
    }

    #[test]
    fn the_recorded_client_gets_the_recorded_answers_and_the_cut() {
        let rec = Recording::load(fixture("reconnect-node-cut.pcapng")).unwrap();
        let mut s = ServerReplay::new(
            rec.connections.clone(),
            ServerOptions {
                speed: Speed::Max,
                keep_time: false,
            },
        );
        let t0 = Timestamp::from_unix_micros(2_000_000_000_000_000);
        assert!(s.accept(t0));
        let mut out = Vec::new();
        let mut close = None;
        for (at, bytes) in client_bytes(&rec.connections[0]) {
            let now = Timestamp::from_unix_micros(
                t0.unix_micros + (at.unix_micros - rec.connections[0].opened.unix_micros),
            );
            s.handle_input(&bytes, now);
            s.handle_timeout(now);
            while let Some(b) = s.poll_transmit() {
                out.extend_from_slice(&b);
            }
            if let Some(c) = s.poll_close() {
                close = Some(c);
                break;
            }
        }
        let divergences: Vec<Divergence> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(divergences.is_empty(), "{divergences:?}");
        assert_eq!(close, Some(Close::Fin), "the cut is reproduced");
        assert!(!s.is_live());
        let got = responses(&out);
        assert_eq!(got[0].message_type, MessageType::Acknowledge);
        assert_eq!(got[1].message_type, MessageType::OpenSecureChannel);
        let mut publish = Vec::new();
        let mut last_seq = None;
        for m in &got[1..] {
            let h = m.sequence_header.unwrap();
            assert!(h.request_id > 1000, "live RequestId echoed");
            if let Some(prev) = last_seq {
                assert_eq!(h.sequence_number, prev + 1, "our own numbering, no hole");
            }
            last_seq = Some(h.sequence_number);
            let msg = parse_message(&mut Reader::new(&m.payload)).unwrap();
            if let ServiceBody::PublishResponse(p) = &msg.body {
                publish.push(p.notification_message.sequence_number);
                // Timestamps moved to now.
                let t = Timestamp::from_ua_ticks(p.response_header.timestamp.0);
                assert!(t >= t0, "{t:?}");
            }
        }
        // Keep-alives aside, 1..=20 in order, then the cut.
        let data: Vec<u32> = publish.iter().copied().filter(|n| *n > 0).collect();
        assert_eq!(data.last(), Some(&20));
        assert!(data.windows(2).all(|w| w[0] <= w[1]), "{data:?}");

        // The reconnect plays the second recorded connection: Republish answered as recorded.
        let t1 = Timestamp::from_unix_micros(t0.unix_micros + 1_000_000);
        assert!(s.accept(t1));
        let mut out = Vec::new();
        for (_, bytes) in client_bytes(&rec.connections[1]) {
            s.handle_input(&bytes, t1);
            while let Some(b) = s.poll_transmit() {
                out.extend_from_slice(&b);
            }
        }
        let answers: Vec<(Option<u32>, Option<StatusCode>)> = responses(&out)
            .iter()
            .filter_map(|m| parse_message(&mut Reader::new(&m.payload)).ok())
            .map(|x| (x.notification_sequence_number(), x.service_result()))
            .collect();
        let republished: Vec<u32> = responses(&out)
            .iter()
            .filter_map(|m| parse_message(&mut Reader::new(&m.payload)).ok())
            .filter(|x| x.service_name() == Some("RepublishResponse"))
            .filter_map(|x| x.notification_sequence_number())
            .collect();
        assert_eq!(republished, [21, 22, 23, 24]);
        // Republish 25: the recorded ServiceFault Bad_MessageNotAvailable.
        assert!(
            answers.contains(&(None, Some(BAD_MESSAGE_NOT_AVAILABLE))),
            "{answers:?}"
        );
        assert!(!s.accept(t1) || s.connections_left() == 0);
    }

    #[test]
    fn unrecorded_requests_get_answers_from_the_recorded_state() {
        let rec = Recording::load(fixture("reconnect-node-cut.pcapng")).unwrap();
        let mut s = ServerReplay::new(
            rec.connections.clone(),
            ServerOptions {
                speed: Speed::Max,
                keep_time: false,
            },
        );
        let now = Timestamp::from_unix_micros(2_000_000_000_000_000);
        assert!(s.accept(now));
        let mut ch = Channel::new(1, 65_536);
        let call = |ch: &mut Channel, body: ServiceBody<'_>, type_id: u32, rid: u32| {
            let b = Message {
                type_id: NodeId::numeric(0, type_id),
                body,
            }
            .to_vec();
            let mut out = Vec::new();
            ch.write(MessageType::Message, rid, &b, &mut out);
            out
        };
        let header = uatap_codec::services::RequestHeader {
            authentication_token: NodeId::numeric(0, 0),
            timestamp: wire::date_time(now),
            request_handle: 77,
            return_diagnostics: 0,
            audit_entry_id: uatap_codec::types::UaString::null(),
            timeout_hint: 0,
            additional_header: uatap_codec::types::ExtensionObject::default(),
        };
        let read = uatap_codec::services::ReadRequest {
            request_header: header.clone(),
            max_age: 0.0,
            timestamps_to_return: 0,
            nodes_to_read: Some(vec![
                ReadValueId {
                    node_id: NodeId::numeric(0, 2259),
                    attribute_id: 13,
                    index_range: uatap_codec::types::UaString::null(),
                    data_encoding: uatap_codec::types::QualifiedName::default(),
                },
                ReadValueId {
                    node_id: NodeId::numeric(7, 4242),
                    attribute_id: 13,
                    index_range: uatap_codec::types::UaString::null(),
                    data_encoding: uatap_codec::types::QualifiedName::default(),
                },
            ]),
        };
        let bytes = call(&mut ch, ServiceBody::ReadRequest(read), id::READ_REQUEST, 5);
        s.handle_input(&bytes, now);
        let brw = uatap_codec::services::RawService {
            header: Header::Request(header.clone()),
            rest: &[],
        };
        let bytes = call(
            &mut ch,
            ServiceBody::Other(brw),
            uatap_codec::ids::service::ADD_NODES_REQUEST,
            6,
        );
        s.handle_input(&bytes, now);
        let out = s.poll_transmit().unwrap();
        let got = responses(&out);
        assert_eq!(got.len(), 2);
        let read = parse_message(&mut Reader::new(&got[0].payload)).unwrap();
        let ServiceBody::ReadResponse(r) = read.body else {
            panic!("{read:?}")
        };
        assert_eq!(r.response_header.request_handle, 77);
        let results = r.results.unwrap();
        assert_eq!(results[0].value, Some(Variant::Int32(0)), "Running");
        assert_eq!(results[1].status, Some(BAD_NODE_ID_UNKNOWN.0));
        let fault = parse_message(&mut Reader::new(&got[1].payload)).unwrap();
        assert_eq!(fault.service_name(), Some("ServiceFault"));
        assert_eq!(fault.service_result(), Some(BAD_SERVICE_UNSUPPORTED));
        assert_eq!(got[1].sequence_header.unwrap().request_id, 6);
        let events: Vec<Divergence> = std::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0]
            .answer
            .contains("Bad_NodeIdUnknown for ns=7;i=4242"));
        assert_eq!(events[1].answer, "ServiceFault Bad_ServiceUnsupported");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod hostile_tests {
    use super::*;
    use crate::recording::Recording;

    /// Garbage, truncated chunks and valid headers with absurd sizes: no panic, and the replay
    /// keeps going.
    #[test]
    fn any_input_is_survived() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/reconnect-node-cut.pcapng");
        let rec = Recording::load(path).unwrap();
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut s = ServerReplay::new(
                rec.connections.clone(),
                ServerOptions {
                    speed: Speed::Max,
                    keep_time: false,
                },
            );
            let now = Timestamp::from_unix_micros(1_000_000 + round);
            assert!(s.accept(now));
            let len = (next() % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Often a plausible header in front.
            if round % 2 == 0 {
                let t: &[u8] = match round % 6 {
                    0 => b"HELF",
                    2 => b"OPNF",
                    _ => b"MSGF",
                };
                let mut v = t.to_vec();
                v.extend_from_slice(&((len as u32).saturating_add(8)).to_le_bytes());
                v.extend_from_slice(&bytes);
                bytes = v;
            }
            s.handle_input(&bytes, now);
            s.handle_timeout(now);
            let _ = s.poll_transmit();
            let _ = s.poll_close();
            while s.poll_event().is_some() {}
            let mut c = crate::client::ClientReplay::new(
                rec.connections.clone(),
                crate::client::ClientOptions {
                    speed: Speed::Max,
                    values: true,
                    endpoint_url: Some("opc.tcp://x:1".into()),
                },
                now,
            );
            c.connected(now);
            c.handle_input(&bytes, now);
            c.handle_timeout(Timestamp::from_unix_micros(now.unix_micros + 10_000_000));
            let _ = c.poll_transmit();
            c.handle_peer_close(now);
            while c.poll_event().is_some() {}
        }
    }
}
