//! The service-level ledger of a connection: requests matched to responses by RequestId, and
//! the channel, session, subscription and Publish state they change. Sessions and
//! subscriptions live in [`Shared`], so a client that comes back on a new connection and
//! activates the same session continues the same story.

use std::collections::{BTreeMap, HashMap};

use uatap_codec::ids::structure;
use uatap_codec::reassembly::OpenSecurityHeader;
use uatap_codec::services::{
    parse_notification, scan_data_change, security_mode_name, IdentityToken, Message, Notification,
    ServiceBody, REQUEST_TYPE_ISSUE, REQUEST_TYPE_RENEW,
};
use uatap_codec::status::StatusCode;
use uatap_codec::types::Variant;

use crate::cert::{summarize_certificate, CertSummary};
use crate::event::{Direction, EventKind};
use crate::items::{monitoring_mode_name, ItemEvent, Items};
use crate::payload::{
    MonitoredItemInfo, PublishInfo, ReconnectInfo, RepublishInfo, SecureChannelInfo,
    SequenceGapInfo, ServiceFaultInfo, SessionInfo, Status, SubscriptionInfo, SummaryInfo,
};
use crate::reconnect::{never_came_back, OldSession, OldSubscription, Recovery, MAX_ACK_NOTES};
use crate::time::Timestamp;

/// ServerStatus.State: what a client should monitor to notice a lost connection (R1).
const SERVER_STATE: u32 = 2259;
/// The Server object and its ResendData method (R12).
const SERVER_OBJECT: u32 = 2253;
const RESEND_DATA: u32 = 12873;

/// Most requests kept waiting for an answer per connection; older ones are forgotten.
const MAX_PENDING: usize = 65_536;
/// Most missing sequence numbers listed in one `sequence_gap` event.
const MAX_LISTED_MISSING: u64 = 1000;
/// node-opcua servers wrap NotificationMessage numbers to 1 already after this value.
const EARLY_WRAP_FLOOR: u32 = 0xFFFF_FBFF;

/// State that outlives a connection: sessions by AuthenticationToken, subscriptions by server
/// and SubscriptionId.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    sessions: HashMap<String, SessionState>,
    /// Subscriptions by (server number, SubscriptionId): looked up on every PublishResponse.
    subscriptions:
        HashMap<(u32, u32), SubscriptionState, std::hash::BuildHasherDefault<PairHasher>>,
    /// Server address -> its number in `subscriptions`.
    servers: HashMap<String, u32>,
    /// (client host, server number) -> when recoveries of that client recreated subscriptions
    /// (the last few), to name a recreate loop.
    recreations: HashMap<(String, u32), Vec<Timestamp>>,
    /// The earliest time a lost session's timeout runs out (when a verdict may be due).
    next_expiry: Option<Timestamp>,
    /// Server address -> thumbprints (upper-case hex) of the certificates it presented, in
    /// GetEndpoints answers and OPN answers, the last few: what a client's
    /// ReceiverCertificateThumbprint is compared with.
    server_certs: HashMap<String, Vec<String>>,
}

/// Server certificates remembered per server.
const MAX_SERVER_CERTS: usize = 8;

/// Recreations remembered per client host.
const MAX_RECREATIONS: usize = 32;
/// Failed attempts remembered per lost session.
const MAX_ATTEMPTS: usize = 64;

impl Shared {
    /// A certificate the server presented.
    fn note_server_cert(&mut self, server: &str, thumbprint: String) {
        let certs = self.server_certs.entry(server.to_string()).or_default();
        certs.retain(|t| *t != thumbprint);
        if certs.len() >= MAX_SERVER_CERTS {
            certs.remove(0);
        }
        certs.push(thumbprint);
    }

    /// The server's current certificate, when the client encrypted to another one.
    fn receiver_mismatch(&self, server: &str, receiver: Option<&str>) -> Option<String> {
        let receiver = receiver?;
        let certs = self.server_certs.get(server)?;
        if certs.iter().any(|t| t == receiver) {
            return None;
        }
        certs.last().cloned()
    }

    fn server_number(&mut self, server: &str) -> u32 {
        let next = u32::try_from(self.servers.len()).unwrap_or(u32::MAX);
        *self.servers.entry(server.to_string()).or_insert(next)
    }

    /// Number of sessions and subscriptions held.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> (usize, usize) {
        (self.sessions.len(), self.subscriptions.len())
    }

    /// Adds what these tables hold to `r`.
    pub(crate) fn retained(&self, r: &mut crate::connection::Retained) {
        r.sessions = r.sessions.saturating_add(self.sessions.len());
        r.subscriptions = r.subscriptions.saturating_add(self.subscriptions.len());
        for s in self.subscriptions.values() {
            r.monitored_items = r.monitored_items.saturating_add(s.items.len());
            r.sequence_numbers = r.sequence_numbers.saturating_add(
                s.available.len() + s.ack_keep_alive.len() + s.ack_unavailable.len(),
            );
        }
        let notes = self
            .sessions
            .values()
            .map(|s| s.attempts.len())
            .sum::<usize>()
            + self.recreations.values().map(Vec::len).sum::<usize>()
            + self.server_certs.values().map(Vec::len).sum::<usize>();
        r.notes = r.notes.saturating_add(notes);
    }

    /// Acknowledgements noted as wrong (of keep-alives, of numbers not available).
    #[cfg(test)]
    pub(crate) fn bad_acks_noted(&self) -> usize {
        self.subscriptions
            .values()
            .map(|s| s.ack_keep_alive.len() + s.ack_unavailable.len())
            .sum()
    }

    /// What a session looked like before it was lost, for a recovery's verdict.
    fn old_session(&self, token: &str) -> OldSession {
        let Some(s) = self.sessions.get(token) else {
            return OldSession::default();
        };
        let mut subscriptions: Vec<OldSubscription> = Vec::new();
        let mut last_seen: Option<Timestamp> = None;
        for ((server, id), sub) in &self.subscriptions {
            if Some(*server) != s.server || sub.session.as_deref() != Some(token) {
                continue;
            }
            if let Some(t) = sub.last_publish_at {
                if last_seen.is_none_or(|l| t > l) {
                    last_seen = Some(t);
                }
            }
            subscriptions.push(OldSubscription {
                id: *id,
                last_received: sub.last_data,
                ack_keep_alive: sub.ack_keep_alive.clone(),
                ack_unavailable: sub.ack_unavailable.clone(),
            });
        }
        subscriptions.sort_by_key(|o| o.id);
        OldSession {
            session_id: s.session_id.clone(),
            conn: s.conn_id.clone().unwrap_or_default(),
            channel_id: s.activated_on.and_then(|a| a.1),
            lost_at: s.lost_at,
            last_seen,
            policy_uri: s.policy_uri.clone(),
            client_thumbprint: s.client_thumbprint.clone(),
            identity: s.identity,
            watches_server_state: s.watches_server_state,
            session_timeout_ms: s.timeout_ms,
            attempts: s.attempts.clone(),
            subscriptions,
        }
    }

    /// Verdicts for the sessions lost and never recovered: called once when the analysis
    /// ends. Returns (connection id of the lost session, verdict), oldest loss first.
    pub(crate) fn finish(&mut self, now: Timestamp) -> Vec<(String, ReconnectInfo)> {
        self.verdicts_due(now, |_| true)
    }

    /// Verdicts for lost sessions whose session timeout ran out before the client came back:
    /// the server has dropped them, so the verdict need not wait for the end (a proxy runs for
    /// months). Cheap when nothing is due: called on every input.
    pub(crate) fn expired(&mut self, now: Timestamp) -> Vec<(String, ReconnectInfo)> {
        if self.next_expiry.is_none_or(|e| now < e) {
            return Vec::new();
        }
        let out = self.verdicts_due(now, |s| s.expiry().is_some_and(|e| e <= now));
        self.next_expiry = self
            .sessions
            .values()
            .filter(|s| s.awaits_verdict())
            .filter_map(SessionState::expiry)
            .min();
        out
    }

    /// Notes when a just-lost session's timeout runs out.
    fn lost_session_expires(&mut self, at: Option<Timestamp>) {
        if let Some(at) = at {
            if self.next_expiry.is_none_or(|e| at < e) {
                self.next_expiry = Some(at);
            }
        }
    }

    fn verdicts_due(
        &mut self,
        now: Timestamp,
        due: impl Fn(&SessionState) -> bool,
    ) -> Vec<(String, ReconnectInfo)> {
        let mut lost: Vec<(Timestamp, String)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.awaits_verdict() && due(s))
            .map(|(t, s)| (s.lost_at.unwrap_or(now), t.clone()))
            .collect();
        lost.sort();
        let mut out = Vec::new();
        for (_, token) in lost {
            let old = self.old_session(&token);
            if let Some(s) = self.sessions.get_mut(&token) {
                // Still linkable if the client does come back with a new session.
                s.verdict_given = true;
            }
            out.push((old.conn.clone(), never_came_back(&old, now)));
        }
        out
    }
}

/// A cheap hasher for pairs of small integers (server number, SubscriptionId).
#[derive(Default)]
pub(crate) struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(n)).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
}

#[derive(Debug, Default)]
struct SessionState {
    session_id: Option<String>,
    /// Connection and channel of the last successful activation.
    activated_on: Option<(u64, Option<u32>)>,
    /// Connection id, client host and server number of that activation.
    conn_id: Option<String>,
    client_host: Option<String>,
    server: Option<u32>,
    policy_uri: Option<String>,
    client_thumbprint: Option<String>,
    identity: Option<&'static str>,
    /// A monitored item on, or a Read of, ServerStatus.State (R1).
    watches_server_state: bool,
    /// Its connection ended without CloseSession.
    lost_at: Option<Timestamp>,
    /// A recovery (or the final verdict) has dealt with the loss.
    recovered: bool,
    timeout_ms: Option<f64>,
    /// Failed attempts since the loss (R4).
    attempts: Vec<Timestamp>,
    /// The never-came-back verdict was given (at its timeout or at the end).
    verdict_given: bool,
}

impl SessionState {
    /// Lost, not (yet) recovered, no verdict yet.
    fn awaits_verdict(&self) -> bool {
        self.lost_at.is_some() && !self.recovered && !self.verdict_given
    }

    /// When the server drops it: the loss plus its session timeout.
    fn expiry(&self) -> Option<Timestamp> {
        let lost = self.lost_at?;
        let ms = self.timeout_ms?;
        if !ms.is_finite() || ms < 0.0 {
            return None;
        }
        let micros = (ms * 1000.0).min(i64::MAX as f64) as i64;
        Some(Timestamp::from_unix_micros(
            lost.unix_micros.saturating_add(micros),
        ))
    }
}

#[derive(Debug, Default)]
struct SubscriptionState {
    /// Last data NotificationMessage number received.
    last_data: Option<u32>,
    /// Created in this capture, so its first number must be 1.
    created_here: bool,
    /// AuthenticationToken of the session that owns it.
    session: Option<String>,
    last_publish_at: Option<Timestamp>,
    /// AvailableSequenceNumbers of the last Publish response (or transfer result).
    available: Vec<u32>,
    /// Number carried by the last keep-alive, while no data message has used it.
    keep_alive: Option<u32>,
    /// Acknowledgements of keep-alive numbers (R18) and of numbers not available (R23).
    ack_keep_alive: Vec<u32>,
    ack_unavailable: Vec<u32>,
    items: Items,
    /// A StatusChangeNotification Good_SubscriptionTransferred was seen for it (R8).
    transferred_notice: bool,
}

#[derive(Debug)]
enum Detail {
    None,
    Publish(Vec<[u32; 2]>),
    Republish {
        subscription_id: u32,
        sequence_number: u32,
    },
    Modify(u32),
    Delete(Vec<u32>),
    SetPublishingMode {
        enabled: bool,
        ids: Vec<u32>,
    },
    Transfer {
        ids: Vec<u32>,
        send_initial_values: bool,
    },
    CreateSession {
        name: Option<String>,
    },
    Activate {
        token: String,
        identity: &'static str,
        user: Option<String>,
    },
    CloseSession {
        token: String,
    },
    CreateItems {
        subscription_id: u32,
        /// (ClientHandle, NodeId, MonitoringMode) per item.
        items: Vec<(u32, String, i32)>,
    },
    ModifyItems {
        subscription_id: u32,
        /// (MonitoredItemId, ClientHandle) per item.
        items: Vec<(u32, u32)>,
    },
    DeleteItems {
        subscription_id: u32,
        ids: Vec<u32>,
    },
    SetMonitoringMode {
        subscription_id: u32,
        mode: i32,
        ids: Vec<u32>,
    },
}

#[derive(Debug)]
struct Pending {
    service: Option<&'static str>,
    request_handle: Option<u32>,
    at: Timestamp,
    detail: Detail,
}

/// An OpenSecureChannel request waiting for its answer.
#[derive(Debug, Clone)]
struct PendingOpen {
    info: SecureChannelInfo,
}

/// The ledger of one connection.
#[derive(Debug)]
pub(crate) struct Tracker {
    conn_seq: u64,
    server: String,
    /// Number of the server in [`Shared`], once known.
    server_number: Option<u32>,
    pending: BTreeMap<u32, Pending>,
    open: Option<PendingOpen>,
    /// A secure_channel event held back until the first message tells the mode.
    held_channel: Option<SecureChannelInfo>,
    /// The held channel is the connection's first: if the connection ends before a message
    /// on it, the server's encrypted answer was a refusal (a ServiceFault), not a channel.
    held_is_first: bool,
    channel_id: Option<u32>,
    /// When this connection deleted subscriptions or closed its session (teardown).
    teardown: bool,
    session_token: Option<String>,
    pub(crate) summary: SummaryInfo,
    conn_id: String,
    /// Client address without the port: a client comes back from another port.
    client_host: String,
    channel_policy_uri: Option<String>,
    client_thumbprint: Option<String>,
    /// A client coming back on this connection, until the verdict.
    recovery: Option<Box<Recovery>>,
    /// AuthenticationToken of the session the recovery in progress is about.
    recovery_token: Option<String>,
    /// ActivateSession on a session of another connection failed here: (token, status).
    failed_activate: Option<(String, u32)>,
}

type Out = Vec<(Option<Direction>, EventKind)>;

fn policy_parts(h: &OpenSecurityHeader) -> (Option<String>, Option<String>) {
    let uri = h
        .security_policy_uri
        .as_deref()
        .map(|u| String::from_utf8_lossy(u).into_owned());
    (h.policy_name(), uri)
}

fn cert_of(bytes: &Option<Vec<u8>>) -> Option<CertSummary> {
    bytes
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(summarize_certificate)
}

fn following(seq: u32) -> u32 {
    if seq == u32::MAX {
        1
    } else {
        seq.saturating_add(1)
    }
}

fn preceding(seq: u32) -> u32 {
    if seq <= 1 {
        u32::MAX
    } else {
        seq.saturating_sub(1)
    }
}

/// Numbers from `from` up to but excluding `to`, in NotificationMessage order (0 skipped).
fn missing_between(from: u32, to: u32) -> (Vec<u32>, u64) {
    let mut count = u64::from(to.wrapping_sub(from));
    if to < from {
        count = count.saturating_sub(1); // 0 is never used
    }
    let mut list = Vec::new();
    let mut s = from;
    while s != to && (list.len() as u64) < MAX_LISTED_MISSING {
        list.push(s);
        s = following(s);
    }
    (list, count)
}

impl Tracker {
    pub(crate) fn new(conn_seq: u64, conn_id: String, client: &str, server: String) -> Self {
        let client_host = client
            .rsplit_once(':')
            .map_or(client, |(h, _)| h)
            .to_string();
        Tracker {
            conn_id,
            client_host,
            channel_policy_uri: None,
            client_thumbprint: None,
            recovery: None,
            recovery_token: None,
            failed_activate: None,
            conn_seq,
            server,
            server_number: None,
            pending: BTreeMap::new(),
            open: None,
            held_channel: None,
            held_is_first: false,
            channel_id: None,
            teardown: false,
            session_token: None,
            summary: SummaryInfo::default(),
        }
    }

    /// Requests waiting for their response.
    pub(crate) fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// An OPN whose body could not be read (a secured channel): what the headers tell.
    pub(crate) fn on_encrypted_open(
        &mut self,
        shared: &mut Shared,
        dir: Direction,
        header: Option<&OpenSecurityHeader>,
        channel_id: Option<u32>,
        now: Timestamp,
        out: &mut Out,
    ) {
        let _ = now;
        let Some(h) = header else { return };
        let (policy, policy_uri) = policy_parts(h);
        match dir {
            Direction::ClientToServer => {
                self.flush_open(Some("a new OpenSecureChannel request came first"), out);
                self.open = Some(PendingOpen {
                    info: SecureChannelInfo {
                        request_type: None,
                        policy,
                        policy_uri,
                        mode: None,
                        outcome: "no_response",
                        status: Status::default(),
                        channel_id: None,
                        token_id: None,
                        revised_lifetime_ms: None,
                        requested_lifetime_ms: None,
                        client_cert: cert_of(&h.sender_certificate),
                        server_cert: None,
                        receiver_thumbprint: h
                            .receiver_certificate_thumbprint
                            .as_deref()
                            .map(|t| t.iter().map(|b| format!("{b:02X}")).collect()),
                        server_cert_now: None,
                        decrypted: false,
                    },
                });
                if let Some(p) = &mut self.open {
                    p.info.server_cert_now = shared
                        .receiver_mismatch(&self.server, p.info.receiver_thumbprint.as_deref());
                }
            }
            Direction::ServerToClient => {
                if let Some(mut p) = self.open.take() {
                    p.info.server_cert = cert_of(&h.sender_certificate);
                    p.info.channel_id = channel_id;
                    p.info.outcome = "ok";
                    self.held_is_first = self.summary.channels == 0;
                    self.summary.channels = self.summary.channels.saturating_add(1);
                    self.channel_id = channel_id;
                    self.note_channel(&p.info);
                    // The mode and the result are inside the encryption: hold the event
                    // until the first message on the channel shows the mode.
                    self.held_channel = Some(p.info);
                }
            }
        }
    }

    fn server_key(&mut self, shared: &mut Shared) -> u32 {
        match self.server_number {
            Some(n) => n,
            None => {
                let n = shared.server_number(&self.server);
                self.server_number = Some(n);
                n
            }
        }
    }

    /// What R3 compares across a reconnect: the policy and the client certificate.
    fn note_channel(&mut self, info: &SecureChannelInfo) {
        self.channel_policy_uri = info.policy_uri.clone();
        self.client_thumbprint = info.client_cert.as_ref().map(|c| c.thumbprint_sha1.clone());
        if let Some(r) = &mut self.recovery {
            r.new_channel_id = self.channel_id;
            r.new_policy_uri = self.channel_policy_uri.clone();
            r.new_client_thumbprint = self.client_thumbprint.clone();
        }
    }

    /// The first message on a secured channel told its mode.
    pub(crate) fn on_mode_known(&mut self, mode: &'static str, out: &mut Out) {
        if let Some(mut info) = self.held_channel.take() {
            info.mode = Some(mode);
            out.push((None, EventKind::SecureChannel(Box::new(info))));
        }
    }

    /// A message went over a secured channel whose mode is already known (read from the
    /// OpenSecureChannel request with a private key): the channel works.
    pub(crate) fn on_channel_used(&mut self, out: &mut Out) {
        if let Some(info) = self.held_channel.take() {
            out.push((None, EventKind::SecureChannel(Box::new(info))));
        }
    }

    /// An ERR: refuses whatever was waiting.
    pub(crate) fn on_tcp_error(&mut self, status: Option<u32>, out: &mut Out) {
        self.summary.rejects = self.summary.rejects.saturating_add(1);
        if let Some(mut p) = self.open.take() {
            p.info.outcome = "rejected";
            p.info.status = Status::opt(status);
            out.push((None, EventKind::SecureChannel(Box::new(p.info))));
        }
    }

    fn flush_open(&mut self, _why: Option<&str>, out: &mut Out) {
        if let Some(info) = self.held_channel.take() {
            out.push((None, EventKind::SecureChannel(Box::new(info))));
        }
        if let Some(p) = self.open.take() {
            out.push((None, EventKind::SecureChannel(Box::new(p.info))));
        }
    }

    /// The connection ended (`lost`: not because the capture ended): report what never got an
    /// answer, give a recovery in progress its verdict, and remember a session lost with it.
    pub(crate) fn on_close(
        &mut self,
        shared: &mut Shared,
        lost: bool,
        now: Timestamp,
        out: &mut Out,
    ) {
        if lost && self.held_is_first {
            if let Some(info) = &mut self.held_channel {
                // The server answered the first OpenSecureChannel with an encrypted message and
                // not one message followed on the channel: servers answer a refused secured
                // OPN with a ServiceFault encrypted to the client, then close.
                info.outcome = "rejected";
                self.summary.channels = self.summary.channels.saturating_sub(1);
                self.summary.rejects = self.summary.rejects.saturating_add(1);
            }
        }
        self.flush_open(None, out);
        self.settle(shared, now, true, out);
        let server = self.server_key(shared);
        let mut session_here = false;
        let mut expiry = None;
        if let Some(token) = &self.session_token {
            if let Some(s) = shared.sessions.get_mut(token) {
                if s.activated_on.is_some_and(|a| a.0 == self.conn_seq) {
                    session_here = true;
                    // A client that asked to close its session or delete its subscriptions
                    // meant to leave, even if the answer never came.
                    if lost && !self.teardown {
                        s.lost_at = Some(now);
                        s.recovered = false;
                        s.verdict_given = false;
                        expiry = s.expiry();
                    }
                }
            }
        }
        shared.lost_session_expires(expiry);
        if lost && !session_here {
            // A connection that ended before any session: a failed attempt to come back.
            let host = &self.client_host;
            if let Some(s) = shared
                .sessions
                .values_mut()
                .filter(|s| {
                    s.lost_at.is_some()
                        && !s.recovered
                        && s.server == Some(server)
                        && s.client_host.as_deref() == Some(host.as_str())
                })
                .max_by_key(|s| s.lost_at)
            {
                if s.attempts.len() < MAX_ATTEMPTS {
                    s.attempts.push(now);
                }
            }
        }
        let teardown = self.teardown;
        let (quiet, loud): (Vec<_>, Vec<_>) = self
            .pending
            .iter()
            .partition(|(_, p)| teardown && p.service == Some("PublishRequest"));
        self.summary.unanswered_publish_at_teardown = quiet.len() as u64;
        self.summary.unanswered = loud
            .iter()
            .map(|(id, p)| format!("{}#{id}", p.service.unwrap_or("?")))
            .collect();
    }

    /// A decoded service message.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_message(
        &mut self,
        shared: &mut Shared,
        dir: Direction,
        request_id: Option<u32>,
        msg: &Message<'_>,
        now: Timestamp,
        header: Option<&OpenSecurityHeader>,
        channel_id: Option<u32>,
        out: &mut Out,
    ) -> Option<f64> {
        self.summary.messages = self.summary.messages.saturating_add(1);
        match dir {
            Direction::ClientToServer => {
                self.on_request(shared, msg, request_id, now, header);
                None
            }
            Direction::ServerToClient => {
                let pending = request_id.and_then(|id| self.pending.remove(&id));
                let latency = pending.as_ref().map(|p| now.millis_since(p.at));
                self.on_response(
                    shared, msg, request_id, pending, latency, header, channel_id, now, out,
                );
                self.settle(shared, now, false, out);
                latency
            }
        }
    }

    fn on_request(
        &mut self,
        shared: &mut Shared,
        msg: &Message<'_>,
        request_id: Option<u32>,
        now: Timestamp,
        header: Option<&OpenSecurityHeader>,
    ) {
        let detail = match &msg.body {
            ServiceBody::OpenSecureChannelRequest(r) => {
                let (policy, policy_uri) = header.map(policy_parts).unwrap_or_default();
                self.open = Some(PendingOpen {
                    info: SecureChannelInfo {
                        request_type: match r.request_type {
                            REQUEST_TYPE_ISSUE => Some("issue"),
                            REQUEST_TYPE_RENEW => Some("renew"),
                            _ => None,
                        },
                        policy,
                        policy_uri,
                        mode: Some(security_mode_name(r.security_mode)),
                        outcome: "no_response",
                        status: Status::default(),
                        channel_id: None,
                        token_id: None,
                        revised_lifetime_ms: None,
                        requested_lifetime_ms: Some(r.requested_lifetime),
                        client_cert: header.and_then(|h| cert_of(&h.sender_certificate)),
                        server_cert: None,
                        receiver_thumbprint: header
                            .and_then(|h| h.receiver_certificate_thumbprint.as_deref())
                            .map(|t| t.iter().map(|b| format!("{b:02X}")).collect()),
                        server_cert_now: None,
                        decrypted: false,
                    },
                });
                if let Some(p) = &mut self.open {
                    p.info.server_cert_now = shared
                        .receiver_mismatch(&self.server, p.info.receiver_thumbprint.as_deref());
                }
                Detail::None
            }
            ServiceBody::PublishRequest(r) => {
                let acks: Vec<[u32; 2]> = r
                    .subscription_acknowledgements
                    .iter()
                    .flatten()
                    .map(|a| [a.subscription_id, a.sequence_number])
                    .collect();
                self.check_acks(shared, &acks);
                if let Some(rec) = &mut self.recovery {
                    rec.on_publish_request();
                }
                Detail::Publish(acks)
            }
            ServiceBody::RepublishRequest(r) => {
                if let Some(rec) = &mut self.recovery {
                    rec.on_republish_request(r.subscription_id, r.retransmit_sequence_number);
                }
                Detail::Republish {
                    subscription_id: r.subscription_id,
                    sequence_number: r.retransmit_sequence_number,
                }
            }
            ServiceBody::CreateMonitoredItemsRequest(r) => {
                let items: Vec<(u32, String, i32)> = r
                    .items_to_create
                    .iter()
                    .flatten()
                    .map(|i| {
                        (
                            i.requested_parameters.client_handle,
                            i.item_to_monitor.node_id.to_string(),
                            i.monitoring_mode,
                        )
                    })
                    .collect();
                if r.items_to_create
                    .iter()
                    .flatten()
                    .any(|i| i.item_to_monitor.node_id.as_ns0_numeric() == Some(SERVER_STATE))
                {
                    self.watches_server_state(shared);
                }
                Detail::CreateItems {
                    subscription_id: r.subscription_id,
                    items,
                }
            }
            ServiceBody::ModifyMonitoredItemsRequest(r) => Detail::ModifyItems {
                subscription_id: r.subscription_id,
                items: r
                    .items_to_modify
                    .iter()
                    .flatten()
                    .map(|i| (i.monitored_item_id, i.requested_parameters.client_handle))
                    .collect(),
            },
            ServiceBody::DeleteMonitoredItemsRequest(r) => Detail::DeleteItems {
                subscription_id: r.subscription_id,
                ids: r.monitored_item_ids.clone().unwrap_or_default(),
            },
            ServiceBody::SetMonitoringModeRequest(r) => Detail::SetMonitoringMode {
                subscription_id: r.subscription_id,
                mode: r.monitoring_mode,
                ids: r.monitored_item_ids.clone().unwrap_or_default(),
            },
            ServiceBody::ReadRequest(r) => {
                if r.nodes_to_read
                    .iter()
                    .flatten()
                    .any(|n| n.node_id.as_ns0_numeric() == Some(SERVER_STATE))
                {
                    self.watches_server_state(shared);
                }
                if let Some(rec) = &mut self.recovery {
                    rec.on_read();
                }
                Detail::None
            }
            ServiceBody::CallRequest(r) => {
                for m in r.methods_to_call.iter().flatten() {
                    if m.object_id.as_ns0_numeric() == Some(SERVER_OBJECT)
                        && m.method_id.as_ns0_numeric() == Some(RESEND_DATA)
                    {
                        let sub = m.input_arguments.iter().flatten().find_map(|v| match v {
                            Variant::UInt32(n) => Some(*n),
                            _ => None,
                        });
                        if let Some(rec) = &mut self.recovery {
                            rec.on_resend_data(sub);
                        }
                    }
                }
                Detail::None
            }
            ServiceBody::ModifySubscriptionRequest(r) => Detail::Modify(r.subscription_id),
            ServiceBody::DeleteSubscriptionsRequest(r) => {
                // Servers answer the Publish requests still queued (Bad_NoSubscription) before
                // the DeleteSubscriptions response: teardown starts with the request.
                self.teardown = true;
                Detail::Delete(r.subscription_ids.clone().unwrap_or_default())
            }
            ServiceBody::SetPublishingModeRequest(r) => Detail::SetPublishingMode {
                enabled: r.publishing_enabled,
                ids: r.subscription_ids.clone().unwrap_or_default(),
            },
            ServiceBody::TransferSubscriptionsRequest(r) => {
                let ids = r.subscription_ids.clone().unwrap_or_default();
                if let Some(rec) = &mut self.recovery {
                    rec.on_transfer_request(&ids, r.send_initial_values);
                }
                Detail::Transfer {
                    ids,
                    send_initial_values: r.send_initial_values,
                }
            }
            ServiceBody::CreateSessionRequest(r) => Detail::CreateSession {
                name: r.session_name.as_str().map(str::to_string),
            },
            ServiceBody::ActivateSessionRequest(r) => {
                let token = r.identity_token();
                let identity = token.as_ref().map_or("unknown", IdentityToken::kind);
                let user = match &token {
                    // A null UserName is no name: `null`, not "" (which is a name sent empty).
                    Ok(IdentityToken::UserName(u)) => u
                        .user_name
                        .as_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    _ => None,
                };
                Detail::Activate {
                    token: r.request_header.authentication_token.to_string(),
                    identity,
                    user,
                }
            }
            ServiceBody::CloseSessionRequest(r) => {
                self.teardown = true;
                Detail::CloseSession {
                    token: r.request_header.authentication_token.to_string(),
                }
            }
            // Servers close the connection instead of answering CLO: nothing to wait for.
            ServiceBody::CloseSecureChannelRequest(_) => return,
            _ => Detail::None,
        };
        if let Some(id) = request_id {
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_first();
            }
            self.pending.insert(
                id,
                Pending {
                    service: msg.service_name(),
                    request_handle: msg.request_handle(),
                    at: now,
                    detail,
                },
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        shared: &mut Shared,
        msg: &Message<'_>,
        request_id: Option<u32>,
        pending: Option<Pending>,
        latency: Option<f64>,
        header: Option<&OpenSecurityHeader>,
        channel_id: Option<u32>,
        now: Timestamp,
        out: &mut Out,
    ) {
        let result = msg.service_result().map_or(0, |s| s.0);
        let status = Status::of(result);
        let ok = StatusCode(result).is_good();
        let detail = pending.as_ref().map_or(&Detail::None, |p| &p.detail);
        let d = Some(Direction::ServerToClient);
        match &msg.body {
            ServiceBody::OpenSecureChannelResponse(r) => {
                let mut info =
                    self.open
                        .take()
                        .map(|p| p.info)
                        .unwrap_or_else(|| SecureChannelInfo {
                            request_type: None,
                            policy: None,
                            policy_uri: None,
                            mode: None,
                            outcome: "ok",
                            status: Status::default(),
                            channel_id: None,
                            token_id: None,
                            revised_lifetime_ms: None,
                            requested_lifetime_ms: None,
                            client_cert: None,
                            server_cert: None,
                            receiver_thumbprint: None,
                            server_cert_now: None,
                            decrypted: false,
                        });
                info.outcome = if ok { "ok" } else { "rejected" };
                info.status = status;
                info.channel_id = Some(r.security_token.channel_id);
                info.token_id = Some(r.security_token.token_id);
                info.revised_lifetime_ms = Some(r.security_token.revised_lifetime);
                info.server_cert = header.and_then(|h| cert_of(&h.sender_certificate));
                if let Some(c) = &info.server_cert {
                    shared.note_server_cert(&self.server, c.thumbprint_sha1.clone());
                }
                if ok {
                    if info.request_type == Some("renew") {
                        self.summary.renewals = self.summary.renewals.saturating_add(1);
                    } else {
                        self.summary.channels = self.summary.channels.saturating_add(1);
                    }
                    self.channel_id = Some(r.security_token.channel_id);
                    self.note_channel(&info);
                } else {
                    self.summary.rejects = self.summary.rejects.saturating_add(1);
                }
                out.push((None, EventKind::SecureChannel(Box::new(info))));
            }
            ServiceBody::GetEndpointsResponse(r) => {
                for ep in r.endpoints.iter().flatten() {
                    if let Some(der) = ep.server_certificate.as_bytes().filter(|b| !b.is_empty()) {
                        let thumbprint = crate::cert::summarize_certificate(der).thumbprint_sha1;
                        shared.note_server_cert(&self.server, thumbprint);
                    }
                }
            }
            ServiceBody::ServiceFault(_) => {
                // The answer to an OpenSecureChannel: its request matched, or (the request
                // encrypted to the server, read with the client's key only) a fault in an OPN
                // while one is open.
                let opn_fault = pending.as_ref().and_then(|p| p.service)
                    == Some("OpenSecureChannelRequest")
                    || (pending.is_none() && header.is_some() && self.open.is_some());
                if opn_fault {
                    // A refused OpenSecureChannel: the channel's outcome is this status.
                    if let Some(mut p) = self.open.take() {
                        p.info.outcome = "rejected";
                        p.info.status = status;
                        p.info.server_cert = header.and_then(|h| cert_of(&h.sender_certificate));
                        self.summary.rejects = self.summary.rejects.saturating_add(1);
                        out.push((None, EventKind::SecureChannel(Box::new(p.info))));
                    }
                }
                self.on_fault(shared, request_id, pending.as_ref(), result, out);
            }
            ServiceBody::CreateSessionResponse(r) => {
                let session_id = r.session_id.to_string();
                shared.sessions.insert(
                    r.authentication_token.to_string(),
                    SessionState {
                        session_id: Some(session_id.clone()),
                        timeout_ms: Some(r.revised_session_timeout),
                        ..SessionState::default()
                    },
                );
                if ok {
                    self.on_new_session(shared, now);
                }
                self.count_session(ok);
                let name = match detail {
                    Detail::CreateSession { name } => name.clone(),
                    _ => None,
                };
                out.push((
                    d,
                    EventKind::Session(SessionInfo {
                        action: "create",
                        session_id: Some(session_id),
                        outcome: if ok { "ok" } else { "rejected" },
                        status,
                        identity: None,
                        user: None,
                        reused_on_new_channel: None,
                        session_name: name,
                        revised_session_timeout_ms: Some(r.revised_session_timeout),
                        latency_ms: latency,
                    }),
                ));
            }
            ServiceBody::ActivateSessionResponse(_) => {
                let (token, identity, user) = match detail {
                    Detail::Activate {
                        token,
                        identity,
                        user,
                    } => (Some(token.clone()), Some(*identity), user.clone()),
                    _ => (None, None, None),
                };
                let here = (self.conn_seq, channel_id);
                let server = self.server_key(shared);
                let session = token
                    .as_ref()
                    .map(|t| shared.sessions.entry(t.clone()).or_default());
                let reused = session
                    .as_ref()
                    .and_then(|s| s.activated_on)
                    .map(|prev| prev != here);
                // Activated before on another connection to the same server: a client coming
                // back (a proxy's other leg has another server address).
                let came_back = session.as_ref().is_some_and(|s| {
                    s.activated_on.is_some_and(|a| a.0 != self.conn_seq) && s.server == Some(server)
                });
                let session_id = session.as_ref().and_then(|s| s.session_id.clone());
                if !ok && came_back {
                    if let Some(t) = &token {
                        self.failed_activate = Some((t.clone(), result));
                    }
                }
                if ok {
                    let recovering_new = self.recovery.is_some() && !came_back;
                    if came_back && self.recovery.is_none() {
                        if let Some(t) = &token {
                            let old = shared.old_session(t);
                            self.start_recovery(t.clone(), old, now, true, None);
                        }
                    }
                    if let Some(s) = token.as_ref().and_then(|t| shared.sessions.get_mut(t)) {
                        s.activated_on = Some(here);
                        s.conn_id = Some(self.conn_id.clone());
                        s.client_host = Some(self.client_host.clone());
                        s.server = Some(server);
                        s.policy_uri = self.channel_policy_uri.clone();
                        s.client_thumbprint = self.client_thumbprint.clone();
                        s.identity = identity;
                        s.lost_at = None;
                        s.recovered = true;
                        s.attempts.clear();
                    }
                    if let Some(r) = &mut self.recovery {
                        if recovering_new {
                            r.on_new_session_activated(identity);
                        } else {
                            r.new_identity = identity;
                        }
                    }
                    self.session_token = token;
                    if reused == Some(true) {
                        self.summary.sessions = self.summary.sessions.saturating_add(1);
                    }
                } else {
                    self.summary.rejects = self.summary.rejects.saturating_add(1);
                }
                out.push((
                    d,
                    EventKind::Session(SessionInfo {
                        action: "activate",
                        session_id,
                        outcome: if ok { "ok" } else { "rejected" },
                        status,
                        identity,
                        user,
                        reused_on_new_channel: Some(reused.unwrap_or(false)),
                        session_name: None,
                        revised_session_timeout_ms: None,
                        latency_ms: latency,
                    }),
                ));
            }
            ServiceBody::CloseSessionResponse(_) => {
                self.teardown = true;
                let session_id = match detail {
                    Detail::CloseSession { token } => {
                        shared.sessions.remove(token).and_then(|s| s.session_id)
                    }
                    _ => None,
                };
                out.push((
                    d,
                    EventKind::Session(SessionInfo {
                        action: "close",
                        session_id,
                        outcome: if ok { "ok" } else { "rejected" },
                        status,
                        identity: None,
                        user: None,
                        reused_on_new_channel: None,
                        session_name: None,
                        revised_session_timeout_ms: None,
                        latency_ms: latency,
                    }),
                ));
            }
            ServiceBody::CreateSubscriptionResponse(r) => {
                if ok {
                    self.summary.subscriptions = self.summary.subscriptions.saturating_add(1);
                    let key = (self.server_key(shared), r.subscription_id);
                    shared.subscriptions.insert(
                        key,
                        SubscriptionState {
                            created_here: true,
                            session: self.session_token.clone(),
                            ..SubscriptionState::default()
                        },
                    );
                    if let Some(rec) = &mut self.recovery {
                        rec.on_subscription_created(r.subscription_id);
                    }
                }
                out.push((
                    d,
                    EventKind::Subscription(SubscriptionInfo {
                        action: "create",
                        subscription_id: Some(r.subscription_id),
                        status,
                        revised_publishing_interval_ms: Some(r.revised_publishing_interval),
                        revised_lifetime_count: Some(r.revised_lifetime_count),
                        revised_max_keep_alive_count: Some(r.revised_max_keep_alive_count),
                        publishing_enabled: None,
                        available_sequence_numbers: None,
                        send_initial_values: None,
                    }),
                ));
            }
            ServiceBody::ModifySubscriptionResponse(r) => {
                out.push((
                    d,
                    EventKind::Subscription(SubscriptionInfo {
                        action: "modify",
                        subscription_id: match detail {
                            Detail::Modify(id) => Some(*id),
                            _ => None,
                        },
                        status,
                        revised_publishing_interval_ms: Some(r.revised_publishing_interval),
                        revised_lifetime_count: Some(r.revised_lifetime_count),
                        revised_max_keep_alive_count: Some(r.revised_max_keep_alive_count),
                        publishing_enabled: None,
                        available_sequence_numbers: None,
                        send_initial_values: None,
                    }),
                ));
            }
            ServiceBody::DeleteSubscriptionsResponse(r)
            | ServiceBody::SetPublishingModeResponse(r) => {
                let (action, ids, enabled) = match detail {
                    Detail::Delete(ids) => ("delete", ids.clone(), None),
                    Detail::SetPublishingMode { enabled, ids } => {
                        ("set_publishing_mode", ids.clone(), Some(*enabled))
                    }
                    _ => return,
                };
                if action == "delete" {
                    self.teardown = true;
                }
                let results = r.results.as_deref().unwrap_or(&[]);
                for (i, id) in ids.iter().enumerate() {
                    let st = results.get(i).map_or(status.clone(), |s| Status::of(s.0));
                    if action == "delete" && results.get(i).is_some_and(|s| s.is_good()) {
                        {
                            let key = (self.server_key(shared), *id);
                            shared.subscriptions.remove(&key);
                        }
                    }
                    out.push((
                        d,
                        EventKind::Subscription(SubscriptionInfo {
                            action,
                            subscription_id: Some(*id),
                            status: st,
                            revised_publishing_interval_ms: None,
                            revised_lifetime_count: None,
                            revised_max_keep_alive_count: None,
                            publishing_enabled: enabled,
                            available_sequence_numbers: None,
                            send_initial_values: None,
                        }),
                    ));
                }
            }
            ServiceBody::TransferSubscriptionsResponse(r) => {
                let (ids, initial) = match detail {
                    Detail::Transfer {
                        ids,
                        send_initial_values,
                    } => (ids.clone(), Some(*send_initial_values)),
                    _ => (Vec::new(), None),
                };
                let results = r.results.as_deref().unwrap_or(&[]);
                for (i, id) in ids.iter().enumerate() {
                    let res = results.get(i);
                    if let (Some(rec), Some(t)) = (&mut self.recovery, res) {
                        rec.on_transfer_result(
                            *id,
                            t.status_code.0,
                            t.available_sequence_numbers.as_deref().unwrap_or(&[]),
                        );
                    }
                    if let Some(t) = res.filter(|t| t.status_code.is_good()) {
                        self.summary.subscriptions = self.summary.subscriptions.saturating_add(1);
                        let key = (self.server_key(shared), *id);
                        let sub = shared.subscriptions.entry(key).or_default();
                        sub.session = self.session_token.clone();
                        sub.available = t.available_sequence_numbers.clone().unwrap_or_default();
                    }
                    out.push((
                        d,
                        EventKind::Subscription(SubscriptionInfo {
                            action: "transfer",
                            subscription_id: Some(*id),
                            status: res.map_or(status.clone(), |t| Status::of(t.status_code.0)),
                            revised_publishing_interval_ms: None,
                            revised_lifetime_count: None,
                            revised_max_keep_alive_count: None,
                            publishing_enabled: None,
                            available_sequence_numbers: res
                                .map(|t| t.available_sequence_numbers.clone().unwrap_or_default()),
                            send_initial_values: initial,
                        }),
                    ));
                }
            }
            ServiceBody::CreateMonitoredItemsResponse(r) => {
                let Detail::CreateItems {
                    subscription_id,
                    items,
                } = detail
                else {
                    return;
                };
                let key = (self.server_key(shared), *subscription_id);
                let mut sub = shared.subscriptions.get_mut(&key);
                let results = r.results.as_deref().unwrap_or(&[]);
                let mut any_good = false;
                for (i, (handle, node, mode)) in items.iter().enumerate() {
                    let res = results.get(i);
                    let good = res.is_some_and(|x| x.status_code.is_good());
                    if let (true, Some(s), Some(x)) = (good, sub.as_deref_mut(), res) {
                        s.items
                            .created(*handle, x.monitored_item_id, Some(node.clone()));
                    }
                    any_good |= good;
                    out.push((
                        d,
                        EventKind::MonitoredItem(MonitoredItemInfo {
                            action: "create",
                            subscription_id: *subscription_id,
                            client_handle: Some(*handle),
                            monitored_item_id: res.filter(|_| good).map(|x| x.monitored_item_id),
                            node_id: Some(node.clone()),
                            status: res.map_or(status.clone(), |x| Status::of(x.status_code.0)),
                            mode: monitoring_mode_name(*mode),
                            revised_sampling_interval_ms: res.map(|x| x.revised_sampling_interval),
                            revised_queue_size: res.map(|x| x.revised_queue_size),
                        }),
                    ));
                }
                if any_good {
                    if let Some(rec) = &mut self.recovery {
                        rec.on_items_created(*subscription_id);
                    }
                }
            }
            ServiceBody::ModifyMonitoredItemsResponse(r) => {
                let Detail::ModifyItems {
                    subscription_id,
                    items,
                } = detail
                else {
                    return;
                };
                let key = (self.server_key(shared), *subscription_id);
                let mut sub = shared.subscriptions.get_mut(&key);
                let results = r.results.as_deref().unwrap_or(&[]);
                for (i, (id, handle)) in items.iter().enumerate() {
                    let res = results.get(i);
                    let mut node_id = None;
                    if let Some(s) = sub.as_deref_mut() {
                        node_id = s.items.by_id(*id).1;
                        if res.is_some_and(|x| x.status_code.is_good()) {
                            s.items.rehandled(*id, *handle);
                        }
                    }
                    out.push((
                        d,
                        EventKind::MonitoredItem(MonitoredItemInfo {
                            action: "modify",
                            subscription_id: *subscription_id,
                            client_handle: Some(*handle),
                            monitored_item_id: Some(*id),
                            node_id,
                            status: res.map_or(status.clone(), |x| Status::of(x.status_code.0)),
                            mode: None,
                            revised_sampling_interval_ms: res.map(|x| x.revised_sampling_interval),
                            revised_queue_size: res.map(|x| x.revised_queue_size),
                        }),
                    ));
                }
            }
            ServiceBody::DeleteMonitoredItemsResponse(r)
            | ServiceBody::SetMonitoringModeResponse(r) => {
                let (action, subscription_id, ids, mode) = match detail {
                    Detail::DeleteItems {
                        subscription_id,
                        ids,
                    } => ("delete", *subscription_id, ids, None),
                    Detail::SetMonitoringMode {
                        subscription_id,
                        mode,
                        ids,
                    } => (
                        "set_monitoring_mode",
                        *subscription_id,
                        ids,
                        monitoring_mode_name(*mode),
                    ),
                    _ => return,
                };
                let key = (self.server_key(shared), subscription_id);
                let mut sub = shared.subscriptions.get_mut(&key);
                let results = r.results.as_deref().unwrap_or(&[]);
                for (i, id) in ids.iter().enumerate() {
                    let res = results.get(i);
                    let (handle, node_id) =
                        sub.as_deref().map_or((None, None), |s| s.items.by_id(*id));
                    if action == "delete" && res.is_some_and(|x| x.is_good()) {
                        if let Some(s) = sub.as_deref_mut() {
                            s.items.deleted(*id);
                        }
                    }
                    out.push((
                        d,
                        EventKind::MonitoredItem(MonitoredItemInfo {
                            action,
                            subscription_id,
                            client_handle: handle,
                            monitored_item_id: Some(*id),
                            node_id,
                            status: res.map_or(status.clone(), |x| Status::of(x.0)),
                            mode,
                            revised_sampling_interval_ms: None,
                            revised_queue_size: None,
                        }),
                    ));
                }
            }
            ServiceBody::PublishResponse(r) => {
                let nm = &r.notification_message;
                let keep_alive = nm.is_keep_alive();
                let notifications = nm.notification_count();
                self.summary.publishes = self.summary.publishes.saturating_add(1);
                self.summary.notifications =
                    self.summary.notifications.saturating_add(notifications);
                let acks = match detail {
                    Detail::Publish(a) => a.clone(),
                    _ => Vec::new(),
                };
                out.push((
                    d,
                    EventKind::Publish(PublishInfo {
                        subscription_id: r.subscription_id,
                        sequence_number: nm.sequence_number,
                        keep_alive,
                        notifications,
                        more_notifications: r.more_notifications,
                        available_sequence_numbers: r
                            .available_sequence_numbers
                            .clone()
                            .unwrap_or_default(),
                        acks,
                        ack_results: r.results.clone().unwrap_or_default(),
                        status,
                        latency_ms: latency,
                    }),
                ));
                if r.subscription_id != 0 {
                    let key = (self.server_key(shared), r.subscription_id);
                    let sub = shared.subscriptions.entry(key).or_default();
                    if let Some(gap) =
                        track_sequence(sub, r.subscription_id, nm.sequence_number, keep_alive)
                    {
                        self.summary.sequence_gaps = self.summary.sequence_gaps.saturating_add(1);
                        out.push((d, EventKind::SequenceGap(gap)));
                    }
                    sub.last_publish_at = Some(now);
                    sub.keep_alive = keep_alive.then_some(nm.sequence_number);
                    sub.available.clear();
                    sub.available
                        .extend(r.available_sequence_numbers.iter().flatten().copied());
                    if sub.session.is_none() {
                        sub.session = self.session_token.clone();
                    }
                    if let Some(rec) = &mut self.recovery {
                        rec.on_publish_response(r.subscription_id, nm.sequence_number, keep_alive);
                    }
                    if !keep_alive {
                        scan_notifications(sub, r.subscription_id, nm, d, out);
                    }
                }
            }
            ServiceBody::RepublishResponse(r) => {
                if let Detail::Republish {
                    subscription_id,
                    sequence_number,
                } = detail
                {
                    let seq = r.notification_message.sequence_number;
                    if ok {
                        if let Some(rec) = &mut self.recovery {
                            rec.on_republish_result(*subscription_id, seq, result);
                        }
                        let key = (self.server_key(shared), *subscription_id);
                        if let Some(sub) = shared.subscriptions.get_mut(&key) {
                            // A recovered message counts as received.
                            if sub.last_data.is_some_and(|l| following(l) == seq) {
                                sub.last_data = Some(seq);
                            }
                            if !sub.available.contains(&seq) {
                                sub.available.push(seq);
                            }
                        }
                    }
                    out.push((
                        d,
                        EventKind::Republish(RepublishInfo {
                            subscription_id: *subscription_id,
                            retransmit_sequence_number: *sequence_number,
                            status,
                        }),
                    ));
                }
            }
            _ => {}
        }
    }

    /// A session of this connection reads or monitors ServerStatus.State (R1).
    fn watches_server_state(&mut self, shared: &mut Shared) {
        if let Some(s) = self
            .session_token
            .as_ref()
            .and_then(|t| shared.sessions.get_mut(t))
        {
            s.watches_server_state = true;
        }
    }

    /// Acknowledgements the server cannot hold: of keep-alive numbers (R18) or of numbers not in
    /// the last AvailableSequenceNumbers (R23).
    fn check_acks(&mut self, shared: &mut Shared, acks: &[[u32; 2]]) {
        if acks.is_empty() {
            return;
        }
        let server = self.server_key(shared);
        for [id, seq] in acks {
            let Some(sub) = shared.subscriptions.get_mut(&(server, *id)) else {
                continue;
            };
            if sub.last_publish_at.is_none() {
                continue; // nothing known to compare with
            }
            // A keep-alive that repeats the last data message's number (some servers do)
            // makes an acknowledgement of that number no keep-alive's.
            let keep_alive = sub.keep_alive == Some(*seq) && sub.last_data != Some(*seq);
            if !keep_alive {
                if let Some(i) = sub.available.iter().position(|n| n == seq) {
                    // The server deletes what is acknowledged: a second acknowledgement of
                    // it, before the next response lists what is left, is of a number gone.
                    sub.available.remove(i);
                    continue;
                }
            }
            let notes = if keep_alive {
                &mut sub.ack_keep_alive
            } else {
                &mut sub.ack_unavailable
            };
            if notes.len() < MAX_ACK_NOTES {
                notes.push(*seq);
            }
            if let Some(r) = &mut self.recovery {
                r.on_bad_ack(*id, *seq, keep_alive);
            }
        }
    }

    /// CreateSession succeeded: a client coming back without its old session?
    fn on_new_session(&mut self, shared: &mut Shared, now: Timestamp) {
        if self.recovery.is_some() {
            return;
        }
        let server = self.server_key(shared);
        let failed = self.failed_activate.take();
        let token = match &failed {
            Some((t, _)) => Some(t.clone()),
            None => shared
                .sessions
                .iter()
                .filter(|(_, s)| {
                    s.lost_at.is_some()
                        && !s.recovered
                        && s.server == Some(server)
                        && s.client_host.as_deref() == Some(self.client_host.as_str())
                })
                .max_by_key(|(_, s)| s.lost_at)
                .map(|(t, _)| t.clone()),
        };
        let Some(token) = token else { return };
        let old = shared.old_session(&token);
        if let Some(s) = shared.sessions.get_mut(&token) {
            s.recovered = true;
        }
        self.start_recovery(token, old, now, false, failed.map(|f| f.1));
    }

    fn start_recovery(
        &mut self,
        token: String,
        old: OldSession,
        now: Timestamp,
        reused: bool,
        activate_failed: Option<u32>,
    ) {
        let mut r = Recovery::new(old, now, reused, activate_failed);
        self.recovery_token = Some(token);
        r.new_channel_id = self.channel_id;
        r.new_policy_uri = self.channel_policy_uri.clone();
        r.new_client_thumbprint = self.client_thumbprint.clone();
        self.recovery = Some(Box::new(r));
    }

    /// Gives the verdict of a recovery that is settled (or `force`d at the end).
    fn settle(&mut self, shared: &mut Shared, now: Timestamp, force: bool, out: &mut Out) {
        let ready = self
            .recovery
            .as_ref()
            .is_some_and(|r| force || r.settled(now));
        if !ready {
            return;
        }
        let Some(mut r) = self.recovery.take() else {
            return;
        };
        let server = self.server_key(shared);
        if r.recreates() {
            let list = shared
                .recreations
                .entry((self.client_host.clone(), server))
                .or_default();
            if list.len() >= MAX_RECREATIONS {
                list.remove(0);
            }
            list.push(now);
            r.recreations = list.clone();
        }
        if r.old_subscription_ids().iter().any(|id| {
            shared
                .subscriptions
                .get(&(server, *id))
                .is_some_and(|s| s.transferred_notice)
        }) {
            r.on_transferred_notice();
        }
        out.push((None, EventKind::Reconnect(Box::new(r.verdict(now)))));
        // Forget what the verdict has dealt with: bounded memory for clients that recreate
        // their subscriptions again and again.
        if let Some(token) = self.recovery_token.take() {
            for id in r.abandoned() {
                let key = (server, id);
                if shared
                    .subscriptions
                    .get(&key)
                    .is_some_and(|s| s.session.as_deref() == Some(token.as_str()))
                {
                    shared.subscriptions.remove(&key);
                }
            }
            if r.session_replaced() {
                shared.sessions.remove(&token);
            }
        }
    }

    fn count_session(&mut self, ok: bool) {
        if ok {
            self.summary.sessions = self.summary.sessions.saturating_add(1);
        } else {
            self.summary.rejects = self.summary.rejects.saturating_add(1);
        }
    }

    fn on_fault(
        &mut self,
        shared: &mut Shared,
        request_id: Option<u32>,
        pending: Option<&Pending>,
        result: u32,
        out: &mut Out,
    ) {
        let for_service = pending.and_then(|p| p.service);
        let code = StatusCode(result);
        let server = self.server_key(shared);
        let session_has_subscriptions = shared.subscriptions.keys().any(|(s, _)| *s == server);
        let (normal, note) = match (for_service, code) {
            (Some("PublishRequest"), StatusCode::BAD_NO_SUBSCRIPTION) if self.teardown || !session_has_subscriptions => (
                true,
                Some("Publish requests still queued when the subscriptions were deleted are answered Bad_NoSubscription; normal at teardown"),
            ),
            (Some("PublishRequest"), StatusCode::BAD_SESSION_CLOSED) if self.teardown => {
                (true, Some("Publish requests still queued when the session closed; normal at teardown"))
            }
            (Some("RepublishRequest"), StatusCode::BAD_MESSAGE_NOT_AVAILABLE) => (
                true,
                Some("the server no longer holds that notification: the normal end of a Republish loop"),
            ),
            (Some("PublishRequest"), StatusCode::BAD_TOO_MANY_PUBLISH_REQUESTS) => (
                false,
                Some("the client keeps more Publish requests queued than the server accepts"),
            ),
            (Some("PublishRequest"), StatusCode::BAD_TIMEOUT) => (
                false,
                Some("a Publish request waited longer than its TimeoutHint"),
            ),
            _ => (false, None),
        };
        self.summary.service_faults = self.summary.service_faults.saturating_add(1);
        if !normal {
            self.summary.abnormal_faults = self.summary.abnormal_faults.saturating_add(1);
        }
        let d = Some(Direction::ServerToClient);
        out.push((
            d,
            EventKind::ServiceFault(ServiceFaultInfo {
                request_id,
                request_handle: pending.and_then(|p| p.request_handle),
                status: Status::of(result),
                for_service,
                normal,
                note,
            }),
        ));
        if code == StatusCode::BAD_TOO_MANY_PUBLISH_REQUESTS {
            if let Some(rec) = &mut self.recovery {
                rec.on_too_many_publish();
            }
        }
        match pending.map(|p| &p.detail) {
            Some(Detail::Republish {
                subscription_id,
                sequence_number,
            }) => {
                if let Some(rec) = &mut self.recovery {
                    rec.on_republish_result(*subscription_id, *sequence_number, result);
                }
                out.push((
                    d,
                    EventKind::Republish(RepublishInfo {
                        subscription_id: *subscription_id,
                        retransmit_sequence_number: *sequence_number,
                        status: Status::of(result),
                    }),
                ));
            }
            Some(Detail::Activate {
                token,
                identity,
                user,
            }) => {
                self.summary.rejects = self.summary.rejects.saturating_add(1);
                let server = self.server_key(shared);
                if shared.sessions.get(token).is_some_and(|s| {
                    s.activated_on.is_some_and(|a| a.0 != self.conn_seq) && s.server == Some(server)
                }) {
                    self.failed_activate = Some((token.clone(), result));
                }
                out.push((
                    d,
                    EventKind::Session(SessionInfo {
                        action: "activate",
                        session_id: shared
                            .sessions
                            .get(token)
                            .and_then(|s| s.session_id.clone()),
                        outcome: "rejected",
                        status: Status::of(result),
                        identity: Some(identity),
                        user: user.clone(),
                        reused_on_new_channel: None,
                        session_name: None,
                        revised_session_timeout_ms: None,
                        latency_ms: None,
                    }),
                ));
            }
            Some(Detail::CreateSession { name }) => {
                self.summary.rejects = self.summary.rejects.saturating_add(1);
                out.push((
                    d,
                    EventKind::Session(SessionInfo {
                        action: "create",
                        session_id: None,
                        outcome: "rejected",
                        status: Status::of(result),
                        identity: None,
                        user: None,
                        reused_on_new_channel: None,
                        session_name: name.clone(),
                        revised_session_timeout_ms: None,
                        latency_ms: None,
                    }),
                ));
            }
            _ => {}
        }
        if for_service == Some("OpenSecureChannelRequest") {
            if let Some(mut p) = self.open.take() {
                self.summary.rejects = self.summary.rejects.saturating_add(1);
                p.info.outcome = "rejected";
                p.info.status = Status::of(result);
                out.push((None, EventKind::SecureChannel(Box::new(p.info))));
            }
        }
    }
}

/// Item quality and staleness from a data NotificationMessage, scanned only when the
/// subscription has items known from CreateMonitoredItems; and the R8 notice.
fn scan_notifications(
    sub: &mut SubscriptionState,
    subscription_id: u32,
    nm: &uatap_codec::services::NotificationMessage<'_>,
    d: Option<Direction>,
    out: &mut Out,
) {
    let scan = !sub.items.is_empty();
    let mut events = Vec::new();
    let mut read_all = true;
    for eo in nm.notification_data.iter().flatten() {
        match eo.type_id.as_ns0_numeric() {
            Some(structure::DATA_CHANGE_NOTIFICATION) if scan => {
                if let Some(body) = eo.binary_body() {
                    // A malformed tail only stops the scan; the message was decoded already.
                    read_all &= scan_data_change(body, |v| {
                        sub.items.on_value(subscription_id, v, &mut events)
                    })
                    .is_ok();
                }
            }
            Some(structure::STATUS_CHANGE_NOTIFICATION) => {
                if let Ok(Notification::StatusChange(c)) = parse_notification(eo) {
                    if c.status == StatusCode::GOOD_SUBSCRIPTION_TRANSFERRED {
                        sub.transferred_notice = true;
                    }
                }
            }
            _ => {}
        }
    }
    // A message whose values could not all be read tells nothing about whether they still
    // change: it does not count towards staleness.
    if scan && read_all {
        sub.items.after_data_message(subscription_id, &mut events);
    }
    for e in events {
        out.push((
            d,
            match e {
                ItemEvent::Quality(q) => EventKind::ItemQuality(q),
                ItemEvent::Stale(s) => EventKind::ItemStale(s),
            },
        ));
    }
}

/// Follows the NotificationMessage numbers of one subscription (reconnect.md R15–R19).
fn track_sequence(
    sub: &mut SubscriptionState,
    subscription_id: u32,
    seq: u32,
    keep_alive: bool,
) -> Option<SequenceGapInfo> {
    if seq == 0 {
        // 0 is never a NotificationMessage number (R19): a wrong number, which skips nothing.
        // Counting from the expected number up to it would report 4294967294 messages lost.
        let expected = match sub.last_data {
            Some(last) => following(last),
            None if sub.created_here => 1,
            None => {
                // Met mid-capture: nothing to compare with.
                sub.last_data = Some(if keep_alive { preceding(0) } else { 0 });
                return None;
            }
        };
        if keep_alive && sub.last_data == Some(0) {
            // A keep-alive repeating the last number: that 0 was reported already.
            return None;
        }
        if !keep_alive {
            sub.last_data = Some(0);
        }
        return Some(SequenceGapInfo {
            subscription_id,
            expected,
            got: 0,
            missing: Vec::new(),
            missing_count: 0,
            duplicate: false,
        });
    }
    // A keep-alive carries the number the next data message will use.
    let last_sent = if keep_alive { preceding(seq) } else { seq };
    let Some(last) = sub.last_data else {
        sub.last_data = Some(last_sent);
        if sub.created_here && seq > 1 {
            let (missing, missing_count) = missing_between(1, seq);
            if keep_alive && missing.is_empty() {
                return None;
            }
            return Some(SequenceGapInfo {
                subscription_id,
                expected: 1,
                got: seq,
                missing,
                missing_count,
                duplicate: false,
            });
        }
        return None;
    };
    let expected = following(last);
    let in_order = seq == expected || (last >= EARLY_WRAP_FLOOR && seq == 1);
    if in_order {
        if !keep_alive {
            sub.last_data = Some(seq);
        }
        return None;
    }
    if keep_alive && seq == last {
        // Some servers repeat the last number in keep-alives; nothing was lost.
        return None;
    }
    // Behind (within half the number space): a repeat of something already received.
    let behind = last.wrapping_sub(seq) < (1 << 31);
    if behind {
        if keep_alive {
            return None;
        }
        return Some(SequenceGapInfo {
            subscription_id,
            expected,
            got: seq,
            missing: Vec::new(),
            missing_count: 0,
            duplicate: true,
        });
    }
    let (missing, missing_count) = missing_between(expected, seq);
    sub.last_data = Some(last_sent);
    Some(SequenceGapInfo {
        subscription_id,
        expected,
        got: seq,
        missing,
        missing_count,
        duplicate: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> SubscriptionState {
        SubscriptionState {
            last_data: None,
            created_here: true,
            ..SubscriptionState::default()
        }
    }

    #[test]
    fn in_order_numbers_and_keep_alives_are_quiet() {
        let mut s = sub();
        assert_eq!(track_sequence(&mut s, 1, 1, false), None);
        assert_eq!(track_sequence(&mut s, 1, 2, false), None);
        assert_eq!(
            track_sequence(&mut s, 1, 3, true),
            None,
            "keep-alive carries the next number"
        );
        assert_eq!(track_sequence(&mut s, 1, 3, true), None);
        assert_eq!(track_sequence(&mut s, 1, 3, false), None);
    }

    #[test]
    fn gaps_duplicates_and_wrap() {
        let mut s = sub();
        track_sequence(&mut s, 1, 1, false);
        let g = track_sequence(&mut s, 1, 5, false).unwrap();
        assert_eq!(
            (g.expected, g.got, g.missing.clone(), g.duplicate),
            (2, 5, vec![2, 3, 4], false)
        );
        let g = track_sequence(&mut s, 1, 5, false).unwrap();
        assert!(g.duplicate && g.missing.is_empty());
        // A keep-alive that skips ahead: 6 and 7 were sent and never arrived.
        let g = track_sequence(&mut s, 1, 8, true).unwrap();
        assert_eq!(g.missing, vec![6, 7]);
        assert_eq!(track_sequence(&mut s, 1, 8, false), None);
        // Wrap-around: after 4294967295 comes 1, never 0.
        let mut w = SubscriptionState {
            last_data: Some(u32::MAX - 1),
            created_here: false,
            ..SubscriptionState::default()
        };
        assert_eq!(track_sequence(&mut w, 1, u32::MAX, false), None);
        assert_eq!(track_sequence(&mut w, 1, 1, false), None);
        let mut w = SubscriptionState {
            last_data: Some(u32::MAX - 1),
            created_here: false,
            ..SubscriptionState::default()
        };
        let g = track_sequence(&mut w, 1, 2, false).unwrap();
        assert_eq!(g.missing, vec![u32::MAX, 1]);
        assert_eq!(g.missing_count, 2);
        // node-opcua wraps early.
        let mut w = SubscriptionState {
            last_data: Some(EARLY_WRAP_FLOOR),
            created_here: false,
            ..SubscriptionState::default()
        };
        assert_eq!(track_sequence(&mut w, 1, 1, false), None);
    }

    #[test]
    fn zero_after_the_wrap_is_a_wrong_number_not_four_billion_lost() {
        let mut w = SubscriptionState {
            last_data: Some(u32::MAX),
            created_here: false,
            ..SubscriptionState::default()
        };
        for keep_alive in [true, false] {
            let g = track_sequence(&mut w, 1, 0, keep_alive).unwrap();
            assert_eq!(
                (
                    g.expected,
                    g.got,
                    g.missing.len(),
                    g.missing_count,
                    g.duplicate
                ),
                (1, 0, 0, 0, false)
            );
        }
        // The server goes on from 0 with 1: in order.
        assert_eq!(track_sequence(&mut w, 1, 1, false), None);
        let mut s = sub();
        let g = track_sequence(&mut s, 1, 0, false).unwrap();
        assert_eq!((g.expected, g.missing_count), (1, 0));
    }

    #[test]
    fn first_number_must_be_one_for_new_subscriptions() {
        let mut s = sub();
        let g = track_sequence(&mut s, 9, 3, false).unwrap();
        assert_eq!(g.missing, vec![1, 2]);
        // A subscription met mid-capture starts wherever it is.
        let mut m = SubscriptionState::default();
        assert_eq!(track_sequence(&mut m, 9, 1234, false), None);
        // Huge jumps list at most 1000 numbers but count them all.
        let g = track_sequence(&mut m, 9, 1234 + 5000, false).unwrap();
        assert_eq!(g.missing.len(), 1000);
        assert_eq!(g.missing_count, 4999);
    }
}
