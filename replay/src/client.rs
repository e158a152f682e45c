//! Plays the recorded client toward a live server, one live connection per recorded one.
//!
//! The recorded messages are walked in capture order. A request goes out when the responses
//! the recorded client had received before sending it have come from the live server (or did
//! not come within [`WAIT_MICROS`]), after the recorded pause since the previous step, scaled.
//! What must be live is taken from the live responses: SecureChannelId and TokenId (OPN),
//! AuthenticationToken (CreateSession), subscription and monitored item ids; Publish requests
//! acknowledge what the live server really sent. The recorded end of each connection is
//! reproduced: a CloseSecureChannel, or a cut uatap makes (the recording's cut, a server's
//! close), then the recorded pause and the next recorded connection (the reconnect).
//!
//! Each live response is compared with the recorded one: the service, the ServiceResult, and
//! the per-operation status codes (values too with `values`). Every difference is a
//! [`DiffEntry`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use uatap_analysis::{Direction, Timestamp};
use uatap_codec::reassembly::{AssembledMessage, Reassembler, ReassemblyEvent};
use uatap_codec::services::Secret;
use uatap_codec::services::{parse_message, Message, ServiceBody, SubscriptionAcknowledgement};
use uatap_codec::status::StatusCode;
use uatap_codec::tcp::{
    parse_acknowledge_message, parse_message_header, parse_tcp_message, MessageType, TcpMessage,
};
use uatap_codec::types::{ByteString, Decode, NodeId, UaString};
use uatap_codec::{Encode, Reader};

use crate::recording::{RecordedConnection, RecordedMessage};
use crate::server::Close;
use crate::wire::{self, Channel};
use crate::{Divergence, Speed};

/// How long replay waits for a live response the recorded client had received before it went
/// on, in µs.
pub const WAIT_MICROS: i64 = 5_000_000;

/// How long replay waits for the answer to a Publish request (the live server may publish at
/// another pace, or not answer queued requests at all when a session closes), in µs; after one
/// such wait on a connection, the others are not waited for.
pub const PUBLISH_WAIT_MICROS: i64 = 1_500_000;

/// How to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Pacing of the recorded pauses.
    pub speed: Speed,
    /// Compare values too (Read results), not only status codes and structure.
    pub values: bool,
    /// The live server's endpoint URL, written into HEL and CreateSession instead of the
    /// recorded one.
    pub endpoint_url: Option<String>,
}

/// One difference between a live response and the recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    /// Recorded connection number (1-based).
    pub conn: usize,
    /// The request, e.g. `TransferSubscriptionsRequest`.
    pub request: String,
    /// What differs, e.g. `ServiceResult` or `results[0]`.
    pub field: String,
    /// What the recorded server answered.
    pub recorded: String,
    /// What the live server answered.
    pub live: String,
}

impl std::fmt::Display for DiffEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection {}: {} {}: recorded {}, live {}",
            self.conn, self.request, self.field, self.recorded, self.live
        )
    }
}

#[derive(Debug)]
struct LiveConn {
    rec: usize,
    reassembler: Reassembler,
    channel: Channel,
    /// Next recorded message to play.
    cursor: usize,
    /// Recorded RequestId -> index of its recorded response.
    response_of: HashMap<u32, usize>,
    /// Live RequestId -> index of the recorded request.
    sent: HashMap<u32, usize>,
    /// Recorded server messages whose live counterpart has come.
    arrived: HashSet<usize>,
    /// (live time, recorded time) of the last step.
    anchor: (Timestamp, Timestamp),
    /// Since when replay waits at the cursor.
    waiting_since: Option<Timestamp>,
    /// The live server closed the connection.
    peer_closed: bool,
    /// ACK and ERR have no RequestId: their recorded index.
    uacp_answers: VecDeque<usize>,
    /// Recorded RequestIds of the Publish requests.
    publish_requests: HashSet<u32>,
    /// The live server left a Publish request unanswered once: do not wait for the others.
    publish_unanswered: usize,
}

/// The recorded client, played toward a live server (sans-IO).
#[derive(Debug)]
pub struct ClientReplay {
    conns: Vec<RecordedConnection>,
    options: ClientOptions,
    next: usize,
    live: Option<LiveConn>,
    out: Vec<u8>,
    close: Option<Close>,
    connect_at: Option<Timestamp>,
    events: VecDeque<Divergence>,
    diff: Vec<DiffEntry>,
    /// Recorded AuthenticationToken (encoded) -> the live one (encoded).
    tokens: HashMap<Vec<u8>, Vec<u8>>,
    /// Recorded subscription id -> live.
    subscriptions: HashMap<u32, u32>,
    /// Recorded monitored item id -> live.
    items: HashMap<u32, u32>,
    /// NotificationMessages the live server sent and replay has not acknowledged yet.
    unacked: BTreeSet<(u32, u32)>,
    /// Recorded connections played to their end.
    completed: usize,
}

fn after(t: Timestamp, micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(t.unix_micros.saturating_add(micros))
}

fn micros_between(later: Timestamp, earlier: Timestamp) -> i64 {
    later.unix_micros.saturating_sub(earlier.unix_micros)
}

fn status_text(s: StatusCode) -> String {
    match s.name() {
        Some(n) => n.to_string(),
        None => s.hex(),
    }
}

/// The per-operation status codes of a response, for the structural diff.
fn operation_results(body: &ServiceBody<'_>) -> Option<Vec<StatusCode>> {
    use ServiceBody as B;
    Some(match body {
        B::SetPublishingModeResponse(b)
        | B::DeleteSubscriptionsResponse(b)
        | B::DeleteMonitoredItemsResponse(b)
        | B::SetMonitoringModeResponse(b)
        | B::WriteResponse(b) => b.results.clone().unwrap_or_default(),
        B::CreateMonitoredItemsResponse(b) => {
            b.results.iter().flatten().map(|r| r.status_code).collect()
        }
        B::ModifyMonitoredItemsResponse(b) => {
            b.results.iter().flatten().map(|r| r.status_code).collect()
        }
        B::TransferSubscriptionsResponse(b) => {
            b.results.iter().flatten().map(|r| r.status_code).collect()
        }
        B::ReadResponse(b) => b
            .results
            .iter()
            .flatten()
            .map(|v| StatusCode(v.status.unwrap_or(0)))
            .collect(),
        B::CallResponse(b) => b.results.iter().flatten().map(|r| r.status_code).collect(),
        _ => return None,
    })
}

impl ClientReplay {
    /// A replay of these recorded connections, in order.
    #[must_use]
    pub fn new(conns: Vec<RecordedConnection>, options: ClientOptions, now: Timestamp) -> Self {
        ClientReplay {
            conns,
            options,
            next: 0,
            live: None,
            out: Vec::new(),
            close: None,
            connect_at: Some(now),
            events: VecDeque::new(),
            diff: Vec::new(),
            tokens: HashMap::new(),
            subscriptions: HashMap::new(),
            items: HashMap::new(),
            unacked: BTreeSet::new(),
            completed: 0,
        }
    }

    /// When the next connection to the live server should be made (`None`: none is due).
    #[must_use]
    pub fn poll_connect(&self) -> Option<Timestamp> {
        if self.live.is_some() || self.next >= self.conns.len() {
            return None;
        }
        self.connect_at
    }

    /// True when every recorded connection has been played.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.live.is_none() && self.next >= self.conns.len()
    }

    /// Recorded connections played to their recorded end.
    #[must_use]
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// The differences found so far.
    #[must_use]
    pub fn diff(&self) -> &[DiffEntry] {
        &self.diff
    }

    /// The live connection is up: it plays the next recorded connection.
    pub fn connected(&mut self, now: Timestamp) {
        let Some(conn) = self.conns.get(self.next) else {
            return;
        };
        let rec = self.next;
        self.next = self.next.saturating_add(1);
        let mut response_of = HashMap::new();
        let mut uacp_answers = VecDeque::new();
        let mut asked = HashSet::new();
        let mut publish_requests = HashSet::new();
        for (i, m) in conn.messages.iter().enumerate() {
            match (m.dir, m.request_id) {
                (Direction::ClientToServer, Some(rid)) => {
                    asked.insert(rid);
                    if m.type_id() == Some(uatap_codec::ids::service::PUBLISH_REQUEST) {
                        publish_requests.insert(rid);
                    }
                }
                (Direction::ServerToClient, Some(rid)) if asked.remove(&rid) => {
                    response_of.insert(rid, i);
                }
                (Direction::ServerToClient, None) => uacp_answers.push_back(i),
                _ => {}
            }
        }
        self.live = Some(LiveConn {
            rec,
            reassembler: Reassembler::default(),
            channel: Channel::new(1, 65_536),
            cursor: 0,
            response_of,
            sent: HashMap::new(),
            arrived: HashSet::new(),
            anchor: (now, conn.opened),
            waiting_since: None,
            peer_closed: false,
            uacp_answers,
            publish_requests,
            publish_unanswered: 0,
        });
        self.connect_at = None;
        self.step(now);
    }

    /// The connection to the live server could not be made.
    pub fn connect_failed(&mut self, error: String, now: Timestamp) {
        self.diverge(
            None,
            format!("cannot connect to the live server: {error}"),
            "the replay stops",
        );
        self.next = self.conns.len();
        let _ = now;
    }

    /// Bytes from the live server.
    pub fn handle_input(&mut self, bytes: &[u8], now: Timestamp) {
        let mut messages = Vec::new();
        if let Some(live) = self.live.as_mut() {
            live.reassembler.handle_input(bytes);
            while let Some(ev) = live.reassembler.poll_event() {
                if let ReassemblyEvent::Message(m) = ev {
                    messages.push(m);
                }
            }
        }
        for m in messages {
            self.on_message(m, now);
        }
        self.step(now);
    }

    /// The live server closed the connection.
    pub fn handle_peer_close(&mut self, now: Timestamp) {
        if let Some(live) = self.live.as_mut() {
            live.peer_closed = true;
        }
        self.step(now);
        // Whatever is left of the recorded connection cannot be played on a closed one.
        if let Some(live) = self.live.as_ref() {
            let left = self
                .conns
                .get(live.rec)
                .map_or(0, |c| c.messages.len().saturating_sub(live.cursor));
            if left > 0 {
                self.diverge(
                    None,
                    format!(
                        "the live server closed the connection with {left} recorded message(s) \
                         still to play"
                    ),
                    "went on with the next recorded connection",
                );
            }
            self.end_connection(now);
        }
    }

    /// When [`ClientReplay::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.live {
            None => self.poll_connect(),
            Some(live) => {
                let conn = self.conns.get(live.rec)?;
                let m = conn.messages.get(live.cursor);
                match m {
                    Some(m) if m.dir == Direction::ClientToServer => Some(self.due(m.at)),
                    Some(m) => {
                        let wait = self.wait_for(m);
                        live.waiting_since.map(|t| after(t, wait))
                    }
                    None => Some(self.end_due()),
                }
            }
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.step(now);
    }

    /// Bytes to send to the live server.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// The live connection must now be closed this way (after sending what
    /// [`ClientReplay::poll_transmit`] gave).
    #[must_use]
    pub fn poll_close(&mut self) -> Option<Close> {
        self.close.take()
    }

    /// What the replay met that the recording does not have.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Divergence> {
        self.events.pop_front()
    }

    fn diverge(&mut self, service: Option<&str>, detail: String, answer: impl Into<String>) {
        self.events.push_back(Divergence {
            service: service.map(str::to_string),
            detail,
            answer: answer.into(),
        });
    }

    fn due(&self, rec_at: Timestamp) -> Timestamp {
        let Some(live) = self.live.as_ref() else {
            return rec_at;
        };
        let (live_at, rec_anchor) = live.anchor;
        after(
            live_at,
            self.options.speed.scale(micros_between(rec_at, rec_anchor)),
        )
    }

    fn end_due(&self) -> Timestamp {
        let Some(live) = self.live.as_ref() else {
            return Timestamp::default();
        };
        match self.conns.get(live.rec).and_then(|c| c.end) {
            Some(end) => self.due(end.at),
            None => live.anchor.0,
        }
    }

    /// Plays recorded messages as far as they can go now.
    fn step(&mut self, now: Timestamp) {
        loop {
            let Some(live) = self.live.as_ref() else {
                return;
            };
            let rec = live.rec;
            let cursor = live.cursor;
            let Some(m) = self
                .conns
                .get(rec)
                .and_then(|c| c.messages.get(cursor))
                .cloned()
            else {
                // The recorded connection is over: its end, at the recorded time.
                if now >= self.end_due() || live.peer_closed {
                    self.finish_connection(now);
                }
                return;
            };
            match m.dir {
                Direction::ServerToClient => {
                    if live.arrived.contains(&cursor) {
                        self.advance(now, m.at);
                        continue;
                    }
                    // A response to a request we never sent (not replayable): skip it.
                    let expected = m.request_id.is_none_or(|rid| {
                        live.sent.values().any(|req| {
                            self.conns
                                .get(rec)
                                .and_then(|c| c.messages.get(*req))
                                .and_then(|r| r.request_id)
                                == Some(rid)
                        })
                    });
                    if !expected {
                        self.advance(now, m.at);
                        continue;
                    }
                    if live.peer_closed {
                        self.advance(now, m.at);
                        continue;
                    }
                    let wait = self.wait_for(&m);
                    let publish = m
                        .request_id
                        .is_some_and(|rid| live.publish_requests.contains(&rid));
                    match live.waiting_since {
                        None if wait > 0 => {
                            if let Some(l) = self.live.as_mut() {
                                l.waiting_since = Some(now);
                            }
                            return;
                        }
                        Some(since) if micros_between(now, since) < wait => return,
                        _ => {
                            let service = m
                                .message()
                                .and_then(|x| x.service_name())
                                .unwrap_or(m.message_type.as_str())
                                .to_string();
                            if publish {
                                if let Some(l) = self.live.as_mut() {
                                    l.publish_unanswered = l.publish_unanswered.saturating_add(1);
                                }
                            } else {
                                let request = self.request_of(&m);
                                self.add_diff(&request, "response", service.clone(), "none".into());
                            }
                            if !publish
                                || self
                                    .live
                                    .as_ref()
                                    .is_some_and(|l| l.publish_unanswered == 1)
                            {
                                self.diverge(
                                    Some(&service),
                                    format!(
                                        "the live server sent no {service} within {} ms{}",
                                        wait / 1000,
                                        if publish {
                                            " for a Publish request (later ones are not waited for)"
                                        } else {
                                            ""
                                        }
                                    ),
                                    "went on without it",
                                );
                            }
                            self.advance(now, now);
                            continue;
                        }
                    }
                }
                Direction::ClientToServer => {
                    if now < self.due(m.at) {
                        return;
                    }
                    if !live.peer_closed {
                        self.send(&m, cursor, now);
                    }
                    self.advance(now, m.at);
                }
            }
        }
    }

    /// How long to wait for the live counterpart of this recorded server message.
    fn wait_for(&self, m: &RecordedMessage) -> i64 {
        let Some(live) = self.live.as_ref() else {
            return 0;
        };
        let publish = m
            .request_id
            .is_some_and(|rid| live.publish_requests.contains(&rid));
        match (publish, live.publish_unanswered) {
            (true, 0) => PUBLISH_WAIT_MICROS,
            (true, _) => 0,
            (false, _) => WAIT_MICROS,
        }
    }

    /// The service name of the recorded request a recorded response answers.
    fn request_of(&self, resp: &RecordedMessage) -> String {
        let conn = self.live.as_ref().and_then(|l| self.conns.get(l.rec));
        conn.and_then(|c| {
            c.messages
                .iter()
                .find(|m| m.dir == Direction::ClientToServer && m.request_id == resp.request_id)
        })
        .and_then(|m| m.message().and_then(|x| x.service_name()))
        .unwrap_or("request")
        .to_string()
    }

    fn advance(&mut self, now: Timestamp, rec_at: Timestamp) {
        if let Some(live) = self.live.as_mut() {
            live.cursor = live.cursor.saturating_add(1);
            live.anchor = (now, rec_at);
            live.waiting_since = None;
        }
    }

    /// The recorded connection is played: close the live one as the recorded one ended (a
    /// cut uatap makes when the client did not close it on purpose), then the reconnect.
    fn finish_connection(&mut self, now: Timestamp) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let end = self.conns.get(live.rec).and_then(|c| c.end);
        if !live.peer_closed {
            self.close = Some(if end.is_some_and(|e| e.rst) {
                Close::Rst
            } else {
                Close::Fin
            });
        }
        self.completed = self.completed.saturating_add(1);
        self.end_connection(now);
    }

    fn end_connection(&mut self, now: Timestamp) {
        let Some(live) = self.live.take() else {
            return;
        };
        let ended = self
            .conns
            .get(live.rec)
            .and_then(|c| c.end)
            .map_or(now, |e| e.at);
        if let Some(next) = self.conns.get(self.next) {
            let pause = micros_between(next.opened, ended).max(0);
            self.connect_at = Some(after(now, self.options.speed.scale(pause)));
        }
    }

    fn send(&mut self, m: &RecordedMessage, index: usize, now: Timestamp) {
        match m.message_type {
            MessageType::Hello => {
                let mut bytes = m.payload.clone();
                if let (Some(url), Ok(TcpMessage::Hello(mut h))) = (
                    self.options.endpoint_url.clone(),
                    parse_tcp_message(&mut Reader::new(&m.payload)),
                ) {
                    h.endpoint_url = UaString::from(url.as_str());
                    bytes = TcpMessage::Hello(h).to_vec();
                }
                self.out.extend_from_slice(&bytes);
            }
            t if t.is_secure_conversation() => {
                let request_id = m.request_id.unwrap_or(0);
                let body = self
                    .rewrite_request(m, now)
                    .unwrap_or_else(|| m.payload.clone());
                if let Some(live) = self.live.as_mut() {
                    live.sent.insert(request_id, index);
                    live.channel.write(t, request_id, &body, &mut self.out);
                }
            }
            _ => self.out.extend_from_slice(&m.payload),
        }
    }

    /// A recorded request with the live ids, the live session token and the time of now.
    fn rewrite_request(&mut self, m: &RecordedMessage, now: Timestamp) -> Option<Vec<u8>> {
        let mut msg = parse_message(&mut Reader::new(&m.payload)).ok()?;
        let token = msg
            .body
            .request_header()
            .map(|h| h.authentication_token.to_vec())
            .and_then(|t| self.tokens.get(&t).cloned());
        let live_token_bytes = token.unwrap_or_default();
        let live_token = if live_token_bytes.is_empty() {
            None
        } else {
            NodeId::decode(&mut Reader::new(&live_token_bytes)).ok()
        };
        let url = self.options.endpoint_url.clone();
        let acks: Vec<SubscriptionAcknowledgement> = self
            .unacked
            .iter()
            .map(|(s, n)| SubscriptionAcknowledgement {
                subscription_id: *s,
                sequence_number: *n,
            })
            .collect();
        let subs = self.subscriptions.clone();
        let sub = |s: u32| subs.get(&s).copied().unwrap_or(s);
        let items = self.items.clone();
        let item = |s: u32| items.get(&s).copied().unwrap_or(s);
        let mut acked = false;
        let header = |h: &mut uatap_codec::services::RequestHeader<'_>| {
            h.timestamp = wire::date_time(now);
        };
        use ServiceBody as B;
        match &mut msg.body {
            B::OpenSecureChannelRequest(b) => header(&mut b.request_header),
            B::CreateSessionRequest(b) => {
                header(&mut b.request_header);
                if let Some(u) = &url {
                    b.endpoint_url = UaString::from(u.as_str());
                }
                // Servers refuse a ClientNonce they have seen (node-opcua: Bad_NonceInvalid),
                // and a replay runs again and again: a fresh one each time.
                if b.client_nonce.0.as_bytes().is_some_and(|n| !n.is_empty()) {
                    b.client_nonce = Secret(ByteString::from(fresh_nonce(now, self.completed)));
                }
            }
            B::PublishRequest(b) => {
                header(&mut b.request_header);
                b.subscription_acknowledgements = Some(acks);
                acked = true;
            }
            B::RepublishRequest(b) => {
                header(&mut b.request_header);
                b.subscription_id = sub(b.subscription_id);
            }
            B::TransferSubscriptionsRequest(b) => {
                header(&mut b.request_header);
                for s in b.subscription_ids.iter_mut().flatten() {
                    *s = sub(*s);
                }
            }
            B::DeleteSubscriptionsRequest(b) => {
                header(&mut b.request_header);
                for s in b.subscription_ids.iter_mut().flatten() {
                    *s = sub(*s);
                }
            }
            B::SetPublishingModeRequest(b) => {
                header(&mut b.request_header);
                for s in b.subscription_ids.iter_mut().flatten() {
                    *s = sub(*s);
                }
            }
            B::ModifySubscriptionRequest(b) => {
                header(&mut b.request_header);
                b.subscription_id = sub(b.subscription_id);
            }
            B::CreateMonitoredItemsRequest(b) => {
                header(&mut b.request_header);
                b.subscription_id = sub(b.subscription_id);
            }
            B::DeleteMonitoredItemsRequest(b) => {
                header(&mut b.request_header);
                b.subscription_id = sub(b.subscription_id);
                for i in b.monitored_item_ids.iter_mut().flatten() {
                    *i = item(*i);
                }
            }
            B::SetMonitoringModeRequest(b) => {
                header(&mut b.request_header);
                b.subscription_id = sub(b.subscription_id);
                for i in b.monitored_item_ids.iter_mut().flatten() {
                    *i = item(*i);
                }
            }
            B::ModifyMonitoredItemsRequest(b) => {
                header(&mut b.request_header);
                b.subscription_id = sub(b.subscription_id);
                for i in b.items_to_modify.iter_mut().flatten() {
                    i.monitored_item_id = item(i.monitored_item_id);
                }
            }
            B::ActivateSessionRequest(b) => header(&mut b.request_header),
            B::CloseSessionRequest(b) => header(&mut b.request_header),
            B::ReadRequest(b) => header(&mut b.request_header),
            B::WriteRequest(b) => header(&mut b.request_header),
            B::BrowseRequest(b) => header(&mut b.request_header),
            B::CallRequest(b) => header(&mut b.request_header),
            B::GetEndpointsRequest(b) => {
                header(&mut b.request_header);
                if let Some(u) = &url {
                    b.endpoint_url = UaString::from(u.as_str());
                }
            }
            _ => {}
        }
        if let Some(t) = live_token {
            set_token(&mut msg.body, t);
        }
        if acked {
            self.unacked.clear();
        }
        Some(msg.to_vec())
    }

    fn on_message(&mut self, m: AssembledMessage, now: Timestamp) {
        match m.message_type {
            MessageType::Acknowledge | MessageType::Error => {
                if m.message_type == MessageType::Acknowledge {
                    let mut r = Reader::new(&m.payload);
                    if let Ok(ack) =
                        parse_message_header(&mut r).and_then(|_| parse_acknowledge_message(&mut r))
                    {
                        if let Some(live) = self.live.as_mut() {
                            live.channel.max_chunk = ack.receive_buffer_size;
                        }
                    }
                }
                let rec = self.live.as_mut().and_then(|l| l.uacp_answers.pop_front());
                let recorded_type = rec.and_then(|i| self.recorded(i)).map(|r| r.message_type);
                if let Some(i) = rec {
                    if let Some(live) = self.live.as_mut() {
                        live.arrived.insert(i);
                    }
                }
                if recorded_type != Some(m.message_type) {
                    let recorded = recorded_type.map_or("nothing", |t| t.as_str()).to_string();
                    self.add_diff("HEL", "answer", recorded, m.message_type.as_str().into());
                }
            }
            MessageType::OpenSecureChannel
            | MessageType::Message
            | MessageType::CloseSecureChannel => {
                let Some(rid) = m.sequence_header.map(|h| h.request_id) else {
                    return;
                };
                let Ok(live_msg) = parse_message(&mut Reader::new(&m.payload)) else {
                    self.diverge(None, "a live response does not decode".into(), "ignored");
                    return;
                };
                self.learn(&live_msg);
                let Some(live) = self.live.as_ref() else {
                    return;
                };
                let Some(req) = live.sent.get(&rid).copied() else {
                    return;
                };
                let request = self
                    .recorded(req)
                    .and_then(|r| r.message())
                    .and_then(|x| x.service_name())
                    .unwrap_or("request")
                    .to_string();
                let rec_idx = self
                    .recorded(req)
                    .and_then(|r| r.request_id)
                    .and_then(|r| live.response_of.get(&r).copied());
                let Some(rec_idx) = rec_idx else {
                    // The recorded server never answered it (a cut, a lost response).
                    return;
                };
                if let Some(live) = self.live.as_mut() {
                    live.arrived.insert(rec_idx);
                }
                let recorded = self.recorded(rec_idx).cloned();
                if let Some(rec_msg) = recorded.as_ref().and_then(|r| r.message()) {
                    self.compare(&request, &rec_msg, &live_msg);
                }
            }
            _ => {}
        }
        let _ = now;
    }

    fn recorded(&self, i: usize) -> Option<&RecordedMessage> {
        let live = self.live.as_ref()?;
        self.conns.get(live.rec)?.messages.get(i)
    }

    /// Takes what must be live from a live response.
    fn learn(&mut self, live: &Message<'_>) {
        match &live.body {
            ServiceBody::OpenSecureChannelResponse(o) => {
                if let Some(l) = self.live.as_mut() {
                    l.channel.channel_id = o.security_token.channel_id;
                    l.channel.token_id = o.security_token.token_id;
                }
            }
            ServiceBody::PublishResponse(p) if !p.notification_message.is_keep_alive() => {
                self.unacked
                    .insert((p.subscription_id, p.notification_message.sequence_number));
            }
            _ => {}
        }
    }

    /// The recorded and the live answer to one request: learns the live ids, notes the
    /// differences.
    fn compare(&mut self, request: &str, rec: &Message<'_>, live: &Message<'_>) {
        use ServiceBody as B;
        match (&rec.body, &live.body) {
            (B::CreateSessionResponse(r), B::CreateSessionResponse(l)) => {
                self.tokens.insert(
                    r.authentication_token.to_vec(),
                    l.authentication_token.to_vec(),
                );
            }
            (B::CreateSubscriptionResponse(r), B::CreateSubscriptionResponse(l)) => {
                self.subscriptions
                    .insert(r.subscription_id, l.subscription_id);
            }
            (B::CreateMonitoredItemsResponse(r), B::CreateMonitoredItemsResponse(l)) => {
                for (a, b) in r.results.iter().flatten().zip(l.results.iter().flatten()) {
                    self.items.insert(a.monitored_item_id, b.monitored_item_id);
                }
            }
            _ => {}
        }
        let (rs, ls) = (rec.service_name(), live.service_name());
        if rs != ls {
            self.add_diff(
                request,
                "response",
                rs.unwrap_or("?").into(),
                ls.unwrap_or("?").into(),
            );
        }
        let (rr, lr) = (rec.service_result(), live.service_result());
        if rr != lr {
            self.add_diff(
                request,
                "ServiceResult",
                rr.map_or("-".into(), status_text),
                lr.map_or("-".into(), status_text),
            );
        }
        if rs == ls {
            if let (Some(a), Some(b)) =
                (operation_results(&rec.body), operation_results(&live.body))
            {
                if a.len() != b.len() {
                    self.add_diff(
                        request,
                        "results",
                        format!("{} result(s)", a.len()),
                        format!("{} result(s)", b.len()),
                    );
                } else {
                    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                        if x != y {
                            self.add_diff(
                                request,
                                &format!("results[{i}]"),
                                status_text(*x),
                                status_text(*y),
                            );
                        }
                    }
                }
            }
            if self.options.values {
                if let (B::ReadResponse(a), B::ReadResponse(b)) = (&rec.body, &live.body) {
                    for (i, (x, y)) in a
                        .results
                        .iter()
                        .flatten()
                        .zip(b.results.iter().flatten())
                        .enumerate()
                    {
                        if x.value != y.value {
                            self.add_diff(
                                request,
                                &format!("results[{i}].value"),
                                format!("{:?}", x.value),
                                format!("{:?}", y.value),
                            );
                        }
                    }
                }
            }
        }
    }

    fn add_diff(&mut self, request: &str, field: &str, recorded: String, live: String) {
        let conn = self.live.as_ref().map_or(0, |l| l.rec.saturating_add(1));
        let entry = DiffEntry {
            conn,
            request: request.to_string(),
            field: field.to_string(),
            recorded: recorded.clone(),
            live: live.clone(),
        };
        self.diverge(
            Some(request),
            format!("{field}: recorded {recorded}, live {live}"),
            "noted in the diff",
        );
        self.diff.push(entry);
    }
}

/// 32 bytes that differ from run to run and call to call (security None: the nonce is only
/// checked for reuse, never used for keys).
fn fresh_nonce(now: Timestamp, salt: usize) -> Vec<u8> {
    let mut x = (now.unix_micros as u64) ^ ((salt as u64).rotate_left(32)) ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(32);
    for _ in 0..4 {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out
}

/// Puts the live AuthenticationToken into a request header.
fn set_token<'a>(body: &mut ServiceBody<'a>, token: NodeId<'a>) {
    use ServiceBody as B;
    let h = match body {
        B::ActivateSessionRequest(b) => &mut b.request_header,
        B::CloseSessionRequest(b) => &mut b.request_header,
        B::CreateSubscriptionRequest(b) => &mut b.request_header,
        B::ModifySubscriptionRequest(b) => &mut b.request_header,
        B::SetPublishingModeRequest(b) => &mut b.request_header,
        B::DeleteSubscriptionsRequest(b) => &mut b.request_header,
        B::CreateMonitoredItemsRequest(b) => &mut b.request_header,
        B::DeleteMonitoredItemsRequest(b) => &mut b.request_header,
        B::ModifyMonitoredItemsRequest(b) => &mut b.request_header,
        B::SetMonitoringModeRequest(b) => &mut b.request_header,
        B::PublishRequest(b) => &mut b.request_header,
        B::RepublishRequest(b) => &mut b.request_header,
        B::TransferSubscriptionsRequest(b) => &mut b.request_header,
        B::ReadRequest(b) => &mut b.request_header,
        B::WriteRequest(b) => &mut b.request_header,
        B::BrowseRequest(b) => &mut b.request_header,
        B::CallRequest(b) => &mut b.request_header,
        B::Other(uatap_codec::services::RawService {
            header: uatap_codec::services::Header::Request(h),
            ..
        }) => h,
        _ => return,
    };
    h.authentication_token = token;
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
    use crate::server::{ServerOptions, ServerReplay};

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("fixtures")
            .join(name)
    }

    /// The recorded client against the recorded server, both replayed, no socket: every
    /// recorded connection plays to its end, the cut and the reconnect included, and nothing
    /// differs.
    fn loopback(name: &str) -> (ClientReplay, Vec<Divergence>, Vec<Divergence>) {
        let rec = Recording::load(fixture(name)).unwrap();
        let mut now = Timestamp::from_unix_micros(2_000_000_000_000_000);
        let options = ClientOptions {
            speed: Speed::Max,
            values: false,
            endpoint_url: None,
        };
        let mut c = ClientReplay::new(rec.connections.clone(), options, now);
        let mut s = ServerReplay::new(
            rec.connections.clone(),
            ServerOptions {
                speed: Speed::Max,
                keep_time: false,
            },
        );
        let (mut c_events, mut s_events) = (Vec::new(), Vec::new());
        for _ in 0..100_000 {
            if c.is_done() {
                break;
            }
            if let Some(at) = c.poll_connect() {
                now = now.max(at);
                c.connected(now);
                assert!(s.accept(now));
            }
            c.handle_timeout(now);
            s.handle_timeout(now);
            loop {
                let mut moved = false;
                while let Some(b) = c.poll_transmit() {
                    s.handle_input(&b, now);
                    moved = true;
                }
                while let Some(b) = s.poll_transmit() {
                    c.handle_input(&b, now);
                    moved = true;
                }
                if c.poll_close().is_some() {
                    s.handle_peer_close(now);
                    moved = true;
                }
                if s.poll_close().is_some() {
                    c.handle_peer_close(now);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
            c_events.extend(std::iter::from_fn(|| c.poll_event()));
            s_events.extend(std::iter::from_fn(|| s.poll_event()));
            let next = [c.poll_timeout(), s.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            now = match next {
                Some(t) if t > now => t,
                _ => Timestamp::from_unix_micros(now.unix_micros + 1000),
            };
        }
        assert!(c.is_done(), "the replay ran to its end");
        (c, c_events, s_events)
    }

    #[test]
    fn recorded_client_against_recorded_server_node_cut() {
        let (c, ce, se) = loopback("reconnect-node-cut.pcapng");
        assert_eq!(c.completed(), 2, "{ce:?}");
        assert!(c.diff().is_empty(), "{:?}", c.diff());
        assert!(ce.is_empty(), "{ce:?}");
        assert!(se.is_empty(), "{se:?}");
    }

    #[test]
    fn recorded_client_against_recorded_server_asyncua_cut() {
        let (c, ce, se) = loopback("reconnect-asyncua-cut.pcapng");
        assert_eq!(c.completed(), 2, "{ce:?}");
        assert!(c.diff().is_empty(), "{:?}", c.diff());
        assert!(ce.is_empty(), "{ce:?}");
        assert!(se.is_empty(), "{se:?}");
    }

    #[test]
    fn a_different_answer_is_in_the_diff() {
        let rec = Recording::load(fixture("reconnect-node-cut.pcapng")).unwrap();
        let mut c = ClientReplay::new(
            rec.connections.clone(),
            ClientOptions {
                speed: Speed::Max,
                values: false,
                endpoint_url: None,
            },
            Timestamp::default(),
        );
        c.connected(Timestamp::default());
        let rec_msg = rec.connections[0]
            .messages
            .iter()
            .find(|m| m.dir == Direction::ServerToClient && m.message_type == MessageType::Message)
            .unwrap()
            .message()
            .unwrap();
        let fault = crate::wire::service_fault(1, StatusCode(0x8034_0000), Timestamp::default());
        let live = parse_message(&mut Reader::new(&fault)).unwrap();
        c.compare("ReadRequest", &rec_msg, &live);
        assert_eq!(c.diff().len(), 2, "{:?}", c.diff());
        assert_eq!(c.diff()[0].field, "response");
        assert_eq!(c.diff()[1].live, "Bad_NodeIdUnknown");
    }
}
