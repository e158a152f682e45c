//! The events of the public JSON contract (`EVENTS.md`): what every view of the traffic emits.

use serde_json::{json, Map, Value};
use uatap_codec::status::StatusCode;

use crate::payload::{
    ItemQualityInfo, ItemStaleInfo, MonitoredItemInfo, PublishInfo, ReconnectInfo, RepublishInfo,
    SecureChannelInfo, SequenceGapInfo, ServiceFaultInfo, SessionInfo, SubscriptionInfo,
    SummaryInfo,
};
use crate::time::Timestamp;

/// Version of the event schema, written as `v` in every event.
pub const SCHEMA_VERSION: u64 = 1;

/// Which way the bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    ClientToServer,
    /// Server to client.
    ServerToClient,
}

impl Direction {
    /// `c2s` or `s2c`, as the event stream writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }

    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }
}

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client side.
    Client,
    /// The server side.
    Server,
    /// uatap itself (a fault, or shutdown).
    Proxy,
    /// Nobody seen: the capture ended with the connection still open (written as `null`).
    Unknown,
}

impl ClosedBy {
    /// `client`, `server`, `proxy`, or `None` (written as `null`) when nobody was seen.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            ClosedBy::Client => Some("client"),
            ClosedBy::Server => Some("server"),
            ClosedBy::Proxy => Some("proxy"),
            ClosedBy::Unknown => None,
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Orderly FIN.
    Fin,
    /// Reset.
    Rst,
    /// An error (or the capture ended with the connection still open).
    Error,
    /// An injected fault.
    Fault,
    /// The capture ended with the connection still open (`capture_end`, an addition to the
    /// contract's values).
    CaptureEnd,
}

impl CloseReason {
    /// The `reason` value of `conn_close`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Fin => "fin",
            CloseReason::Rst => "rst",
            CloseReason::Error => "error",
            CloseReason::Fault => "fault",
            CloseReason::CaptureEnd => "capture_end",
        }
    }
}

/// One `message` event: a whole UA message after reassembly (EVENTS.md, kind `message`).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageInfo {
    /// `HEL` … `CLO`.
    pub msg_type: &'static str,
    /// Number of chunks.
    pub chunks: u32,
    /// Bytes on the wire.
    pub size: u64,
    /// SecureChannelId as written in the header.
    pub channel_id: Option<u32>,
    /// TokenId (MSG/CLO).
    pub token_id: Option<u32>,
    /// SequenceNumber of the last chunk.
    pub sequence_number: Option<u32>,
    /// RequestId of the last chunk.
    pub request_id: Option<u32>,
    /// Service name, e.g. `PublishResponse`.
    pub service: Option<&'static str>,
    /// Numeric encoding id of the body.
    pub type_id: Option<u32>,
    /// RequestHandle from the request or response header.
    pub request_handle: Option<u32>,
    /// ServiceResult of a response.
    pub service_result: Option<u32>,
    /// NotificationMessage SequenceNumber of a Publish or Republish response (an extra field).
    pub notification_sequence_number: Option<u32>,
    /// The body (and sequence header) is encrypted: only the clear headers were read (extra).
    pub encrypted: bool,
    /// For a response: ms since its request (extra).
    pub latency_ms: Option<f64>,
}

/// HEL/ACK limits (EVENTS.md, kind `hello`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    /// EndpointUrl (HEL only).
    pub endpoint_url: Option<String>,
    /// ProtocolVersion.
    pub protocol_version: u32,
    /// ReceiveBufferSize.
    pub receive_buffer_size: u32,
    /// SendBufferSize.
    pub send_buffer_size: u32,
    /// MaxMessageSize.
    pub max_message_size: u32,
    /// MaxChunkCount.
    pub max_chunk_count: u32,
}

/// What happened; one variant per event kind.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A TCP connection was accepted or first seen.
    ConnOpen {
        /// Client `ip:port`.
        client: String,
        /// Server `ip:port`.
        server: String,
    },
    /// A TCP connection ended.
    ConnClose {
        /// Who closed it.
        by: ClosedBy,
        /// How.
        reason: CloseReason,
        /// Bytes the client sent.
        bytes_c2s: u64,
        /// Bytes the server sent.
        bytes_s2c: u64,
    },
    /// A whole UA message (only with `--messages`).
    Message(MessageInfo),
    /// A HEL or ACK.
    Hello(HelloInfo),
    /// An ERR message; `status` is `None` when the ERR is malformed.
    TcpError {
        /// Error status.
        status: Option<u32>,
        /// Reason text.
        reason: Option<String>,
    },
    /// An abort chunk.
    Abort {
        /// RequestId of the aborted message.
        request_id: Option<u32>,
        /// Status from the abort body.
        status: Option<u32>,
        /// Reason from the abort body.
        reason: Option<String>,
    },
    /// The proxy could not reach, or lost, the server at TCP level.
    UpstreamError {
        /// `refused`, `timeout`, `unreachable`, `reset`, `dns`.
        error: &'static str,
        /// What the operating system said, and what the client sees instead.
        detail: String,
    },
    /// An OpenSecureChannel exchange ended.
    SecureChannel(Box<SecureChannelInfo>),
    /// CreateSession / ActivateSession / CloseSession.
    Session(SessionInfo),
    /// Subscription life cycle.
    Subscription(SubscriptionInfo),
    /// A PublishResponse.
    Publish(PublishInfo),
    /// A NotificationMessage sequence number skipped or repeated.
    SequenceGap(SequenceGapInfo),
    /// A Republish exchange.
    Republish(RepublishInfo),
    /// A ServiceFault.
    ServiceFault(ServiceFaultInfo),
    /// A client came back after a lost connection (or never did), with the verdict.
    Reconnect(Box<ReconnectInfo>),
    /// A refusal of a connection, channel or session, with its cause and explanation.
    Reject(Box<crate::reject::RejectInfo>),
    /// `uatap probe`: one endpoint the server offers.
    ProbeEndpoint(Box<crate::payload::ProbeEndpointInfo>),
    /// `uatap probe`: the last line.
    ProbeSummary(Box<crate::payload::ProbeSummaryInfo>),
    /// One result of a monitored-item service.
    MonitoredItem(MonitoredItemInfo),
    /// An item's value changed quality class.
    ItemQuality(ItemQualityInfo),
    /// An item's SourceTimestamp stopped advancing.
    ItemStale(ItemStaleInfo),
    /// What happened on a connection, at its end.
    Summary(SummaryInfo),
    /// The proxy changed what it forwards because the user asked it to (a configured fault,
    /// `--rewrite-endpoint-urls`), or explains why it could not.
    FaultInjected {
        /// Name of the fault, e.g. `rewrite_endpoint_urls`.
        fault: String,
        /// What was changed, or why nothing was.
        detail: String,
    },
    /// Replay met a request or response the recording does not have, and what it did instead.
    ReplayDivergence {
        /// `server` (uatap played the recorded server) or `client`.
        role: &'static str,
        /// The service concerned, e.g. `ReadRequest`, when there is one.
        service: Option<String>,
        /// What differed.
        detail: String,
        /// What uatap did about it, e.g. `ServiceFault Bad_ServiceUnsupported`.
        answer: String,
    },
    /// A chunk begun by one side is still incomplete after the stall threshold
    /// ([`crate::Options::stall_after`]): a slow or stuck sender, or one that trickles bytes
    /// on purpose (slowloris). Reported once per chunk.
    MessageStalled {
        /// Offset of the chunk's first byte in that direction's stream.
        offset: u64,
        /// Bytes of the chunk seen so far.
        buffered_bytes: u64,
        /// Time since the chunk's first byte.
        stalled_ms: u64,
    },
    /// The proxy could not write toward the receiver of `dir` for the stall threshold: that
    /// peer does not read. Only a relay knows this; once per stall.
    WriteBlocked {
        /// How long the write has waited.
        blocked_ms: u64,
        /// Bytes read from the sender and held by uatap, not yet taken by the receiver.
        pending_bytes: u64,
    },
    /// The recording stopped (disk full, a write error), fell behind the traffic or caught up
    /// again; forwarding goes on. Concerns no one connection: `conn` is empty.
    Recording {
        /// `stopped`, `behind` or `caught_up`.
        action: &'static str,
        /// What happened: the operating system's words for `stopped`, what the recording does
        /// about it for `behind` and `caught_up`.
        reason: String,
        /// The file that was being written.
        path: String,
        /// Bytes of that file on disk: whole blocks, readable (for `stopped`; else 0).
        bytes_written: u64,
        /// Bytes of the server's leg recorded with their packets' headers only while the
        /// recording was behind (for `caught_up`; else 0). Each is on the client's leg.
        headers_only_bytes: u64,
    },
    /// Bytes that could not be decoded.
    DecodeError {
        /// Offset in that direction's stream.
        offset: u64,
        /// What was wrong.
        what: String,
        /// The first bytes at that place, hex (≤ 32 bytes).
        hex_prefix: String,
    },
}

impl EventKind {
    /// The `kind` string of the event.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ConnOpen { .. } => "conn_open",
            EventKind::ConnClose { .. } => "conn_close",
            EventKind::Message(_) => "message",
            EventKind::Hello(_) => "hello",
            EventKind::TcpError { .. } => "tcp_error",
            EventKind::Abort { .. } => "abort",
            EventKind::DecodeError { .. } => "decode_error",
            EventKind::MessageStalled { .. } => "message_stalled",
            EventKind::WriteBlocked { .. } => "write_blocked",
            EventKind::Recording { .. } => "recording",
            EventKind::UpstreamError { .. } => "upstream_error",
            EventKind::FaultInjected { .. } => "fault_injected",
            EventKind::ReplayDivergence { .. } => "replay_divergence",
            EventKind::SecureChannel(_) => "secure_channel",
            EventKind::Session(_) => "session",
            EventKind::Subscription(_) => "subscription",
            EventKind::Publish(_) => "publish",
            EventKind::SequenceGap(_) => "sequence_gap",
            EventKind::Republish(_) => "republish",
            EventKind::ServiceFault(_) => "service_fault",
            EventKind::Reconnect(_) => "reconnect",
            EventKind::Reject(_) => "reject",
            EventKind::ProbeEndpoint(_) => "probe_endpoint",
            EventKind::ProbeSummary(_) => "probe_summary",
            EventKind::MonitoredItem(_) => "monitored_item",
            EventKind::ItemQuality(_) => "item_quality",
            EventKind::ItemStale(_) => "item_stale",
            EventKind::Summary(_) => "summary",
        }
    }
}

/// One event: when, on which connection, which way, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When the bytes that caused it were seen.
    pub ts: Timestamp,
    /// Connection id `client ip:port->server ip:port`.
    pub conn: std::sync::Arc<str>,
    /// Direction of the bytes, when the event comes from one direction.
    pub dir: Option<Direction>,
    /// What happened.
    pub kind: EventKind,
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

fn status_fields(m: &mut Map<String, Value>, key: &str, name_key: &str, status: Option<u32>) {
    m.insert(key.into(), opt(status.map(|s| StatusCode(s).hex())));
    m.insert(
        name_key.into(),
        opt(status.and_then(|s| StatusCode(s).name())),
    );
}

impl Event {
    /// The event as one JSON object with the field names of EVENTS.md.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("v".into(), json!(SCHEMA_VERSION));
        m.insert("ts".into(), json!(self.ts.to_rfc3339()));
        m.insert("conn".into(), json!(&*self.conn));
        m.insert("kind".into(), json!(self.kind.name()));
        m.insert("dir".into(), opt(self.dir.map(Direction::as_str)));
        match &self.kind {
            EventKind::ConnOpen { client, server } => {
                m.insert("client".into(), json!(client));
                m.insert("server".into(), json!(server));
            }
            EventKind::ConnClose {
                by,
                reason,
                bytes_c2s,
                bytes_s2c,
            } => {
                let by = by.as_str();
                let reason = reason.as_str();
                m.insert("by".into(), json!(by));
                m.insert("reason".into(), json!(reason));
                m.insert("bytes_c2s".into(), json!(bytes_c2s));
                m.insert("bytes_s2c".into(), json!(bytes_s2c));
            }
            EventKind::Message(i) => {
                m.insert("msg_type".into(), json!(i.msg_type));
                m.insert("chunks".into(), json!(i.chunks));
                m.insert("size".into(), json!(i.size));
                m.insert("channel_id".into(), opt(i.channel_id));
                m.insert("token_id".into(), opt(i.token_id));
                m.insert("sequence_number".into(), opt(i.sequence_number));
                m.insert("request_id".into(), opt(i.request_id));
                m.insert("service".into(), opt(i.service));
                m.insert("type_id".into(), opt(i.type_id));
                m.insert("request_handle".into(), opt(i.request_handle));
                status_fields(
                    &mut m,
                    "service_result",
                    "service_result_name",
                    i.service_result,
                );
                m.insert(
                    "notification_sequence_number".into(),
                    opt(i.notification_sequence_number),
                );
                m.insert("encrypted".into(), json!(i.encrypted));
                m.insert("latency_ms".into(), opt(i.latency_ms));
            }
            EventKind::Hello(h) => {
                m.insert("endpoint_url".into(), opt(h.endpoint_url.clone()));
                m.insert("protocol_version".into(), json!(h.protocol_version));
                m.insert("receive_buffer_size".into(), json!(h.receive_buffer_size));
                m.insert("send_buffer_size".into(), json!(h.send_buffer_size));
                m.insert("max_message_size".into(), json!(h.max_message_size));
                m.insert("max_chunk_count".into(), json!(h.max_chunk_count));
            }
            EventKind::TcpError { status, reason } => {
                status_fields(&mut m, "status", "status_name", *status);
                m.insert("reason".into(), opt(reason.clone()));
            }
            EventKind::Abort {
                request_id,
                status,
                reason,
            } => {
                m.insert("request_id".into(), opt(*request_id));
                status_fields(&mut m, "status", "status_name", *status);
                m.insert("reason".into(), opt(reason.clone()));
            }
            EventKind::DecodeError {
                offset,
                what,
                hex_prefix,
            } => {
                m.insert("offset".into(), json!(offset));
                m.insert("what".into(), json!(what));
                m.insert("hex_prefix".into(), json!(hex_prefix));
            }
            EventKind::UpstreamError { error, detail } => {
                m.insert("error".into(), json!(error));
                m.insert("detail".into(), json!(detail));
            }
            EventKind::MessageStalled {
                offset,
                buffered_bytes,
                stalled_ms,
            } => {
                m.insert("offset".into(), json!(offset));
                m.insert("buffered_bytes".into(), json!(buffered_bytes));
                m.insert("stalled_ms".into(), json!(stalled_ms));
            }
            EventKind::WriteBlocked {
                blocked_ms,
                pending_bytes,
            } => {
                m.insert("blocked_ms".into(), json!(blocked_ms));
                m.insert("pending_bytes".into(), json!(pending_bytes));
            }
            EventKind::Recording {
                action,
                reason,
                path,
                bytes_written,
                headers_only_bytes,
            } => {
                m.insert("action".into(), json!(action));
                m.insert("reason".into(), json!(reason));
                m.insert("path".into(), json!(path));
                m.insert("bytes_written".into(), json!(bytes_written));
                m.insert("headers_only_bytes".into(), json!(headers_only_bytes));
            }
            EventKind::FaultInjected { fault, detail } => {
                m.insert("fault".into(), json!(fault));
                m.insert("detail".into(), json!(detail));
            }
            EventKind::ReplayDivergence {
                role,
                service,
                detail,
                answer,
            } => {
                m.insert("role".into(), json!(role));
                m.insert("service".into(), opt(service.clone()));
                m.insert("detail".into(), json!(detail));
                m.insert("answer".into(), json!(answer));
            }
            EventKind::SecureChannel(p) => merge(&mut m, p),
            EventKind::Session(p) => merge(&mut m, p),
            EventKind::Subscription(p) => merge(&mut m, p),
            EventKind::Publish(p) => merge(&mut m, p),
            EventKind::SequenceGap(p) => merge(&mut m, p),
            EventKind::Republish(p) => merge(&mut m, p),
            EventKind::ServiceFault(p) => merge(&mut m, p),
            EventKind::Summary(p) => merge(&mut m, p),
            EventKind::Reconnect(p) => merge(&mut m, p),
            EventKind::Reject(p) => merge(&mut m, p),
            EventKind::ProbeEndpoint(p) => merge(&mut m, p),
            EventKind::ProbeSummary(p) => merge(&mut m, p),
            EventKind::MonitoredItem(p) => merge(&mut m, p),
            EventKind::ItemQuality(p) => merge(&mut m, p),
            EventKind::ItemStale(p) => merge(&mut m, p),
        }
        Value::Object(m)
    }

    /// One line of text for a person at 2 a.m.
    pub fn to_text(&self) -> String {
        if matches!(self.kind, EventKind::Publish(_)) {
            let mut s = String::with_capacity(128);
            self.write_text(&mut s);
            return s;
        }
        let dir = self.dir.map_or("   ", Direction::as_str);
        let what = match &self.kind {
            EventKind::ConnOpen { client, server } => format!("connection {client} -> {server}"),
            EventKind::ConnClose {
                by,
                reason,
                bytes_c2s,
                bytes_s2c,
            } => match (by, reason) {
                (_, CloseReason::CaptureEnd) | (ClosedBy::Unknown, _) => format!(
                    "capture ended with the connection open; client sent {bytes_c2s} bytes, server {bytes_s2c}"
                ),
                _ => format!(
                    "connection closed by {by:?} ({reason:?}); client sent {bytes_c2s} bytes, server {bytes_s2c}"
                )
                .to_lowercase(),
            },
            EventKind::Message(i) => {
                let mut s = format!("{} ", i.msg_type);
                s.push_str(i.service.unwrap_or("-"));
                if let Some(c) = i.channel_id {
                    s.push_str(&format!(" ch={c}"));
                }
                if let Some(q) = i.sequence_number {
                    s.push_str(&format!(" seq={q}"));
                }
                if let Some(r) = i.request_id {
                    s.push_str(&format!(" req={r}"));
                }
                if let Some(h) = i.request_handle {
                    s.push_str(&format!(" handle={h}"));
                }
                if let Some(r) = i.service_result {
                    s.push_str(&format!(" result={}", StatusCode(r)));
                }
                if let Some(n) = i.notification_sequence_number {
                    s.push_str(&format!(" notification={n}"));
                }
                if i.encrypted {
                    s.push_str(" (encrypted)");
                }
                if i.chunks > 1 {
                    s.push_str(&format!(" chunks={}", i.chunks));
                }
                s.push_str(&format!(" {}B", i.size));
                s
            }
            EventKind::Hello(h) => format!(
                "{} buffers rx={} tx={} max_message={} max_chunks={}{}",
                if h.endpoint_url.is_some() { "HEL" } else { "ACK" },
                h.receive_buffer_size,
                h.send_buffer_size,
                h.max_message_size,
                h.max_chunk_count,
                h.endpoint_url
                    .as_deref()
                    .map(|u| format!(" endpoint={u}"))
                    .unwrap_or_default()
            ),
            EventKind::TcpError { status, reason } => format!(
                "ERR {} {}",
                status.map_or("(malformed)".to_string(), |s| StatusCode(s).to_string()),
                reason.as_deref().unwrap_or("")
            ),
            EventKind::Abort {
                request_id,
                status,
                reason,
            } => format!(
                "ABORT request {} {} {}",
                request_id.map_or("?".into(), |r| r.to_string()),
                status.map_or("?".to_string(), |s| StatusCode(s).to_string()),
                reason.as_deref().unwrap_or("")
            ),
            EventKind::DecodeError {
                offset,
                what,
                hex_prefix,
            } => format!("DECODE ERROR at {offset}: {what} [{hex_prefix}]"),
            EventKind::UpstreamError { error, detail } => {
                format!("UPSTREAM {} {detail}", error.to_uppercase())
            }
            EventKind::MessageStalled {
                offset,
                buffered_bytes,
                stalled_ms,
            } => format!(
                "MESSAGE STALLED: the {} began a chunk at offset {offset} and it is still incomplete after {:.1} s ({buffered_bytes} bytes of it so far): a slow or stuck sender, or a slowloris",
                sender(self.dir),
                *stalled_ms as f64 / 1000.0
            ),
            EventKind::WriteBlocked {
                blocked_ms,
                pending_bytes,
            } => format!(
                "WRITE BLOCKED for {:.1} s: the {} does not read; {pending_bytes} bytes wait in uatap, which stopped reading from the {} until they go (TCP flow control passes the stall on)",
                *blocked_ms as f64 / 1000.0,
                sender(self.dir.map(Direction::reverse)),
                sender(self.dir)
            ),
            EventKind::Recording {
                action,
                reason,
                path,
                bytes_written,
                headers_only_bytes,
            } => match *action {
                "behind" => format!("RECORDING BEHIND the traffic: {reason}"),
                "caught_up" => format!(
                    "RECORDING CAUGHT UP: {reason}; {headers_only_bytes} bytes of the server's leg were recorded with their packets' headers only, and in full on the client's leg"
                ),
                _ => format!(
                    "RECORDING {}: {reason}; {} keeps the {bytes_written} bytes written so far (whole blocks, readable); forwarding goes on",
                    action.to_uppercase(),
                    // The reason of an I/O error names the file already.
                    if reason.contains(path.as_str()) { "the file" } else { path.as_str() }
                ),
            },
            EventKind::FaultInjected { fault, detail } => {
                format!("FAULT INJECTED {fault}: {detail}")
            }
            EventKind::ReplayDivergence {
                role,
                service,
                detail,
                answer,
            } => format!(
                "REPLAY DIVERGENCE ({role}) {}: {detail}; answer: {answer}",
                service.as_deref().unwrap_or("-")
            ),
            EventKind::SecureChannel(p) => format!(
                "SECURE CHANNEL {} policy={} mode={} {} {}{}{}",
                p.request_type.unwrap_or("open"),
                p.policy.as_deref().unwrap_or("?"),
                p.mode.unwrap_or("?"),
                p.outcome,
                p.status.status_name.or(p.status.status.as_deref()).unwrap_or("-"),
                p.channel_id.map(|c| format!(" channel={c}")).unwrap_or_default(),
                p.token_id.map(|t| format!(" token={t}")).unwrap_or_default(),
            ),
            EventKind::Session(p) => format!(
                "SESSION {} {} {}{}{}{}",
                p.action,
                p.session_id.as_deref().unwrap_or("?"),
                p.outcome,
                status_text(&p.status),
                p.identity.map(|i| format!(" identity={i}")).unwrap_or_default(),
                if p.reused_on_new_channel == Some(true) { " (reused on a new channel)" } else { "" },
            ),
            EventKind::Subscription(p) => format!(
                "SUBSCRIPTION {} {}{}{}",
                p.action,
                p.subscription_id.map_or("?".into(), |s| s.to_string()),
                status_text(&p.status),
                p.revised_publishing_interval_ms
                    .map(|i| format!(" interval={i}ms"))
                    .unwrap_or_default(),
            ),
            // Written by `write_text` (one line per PublishResponse: no formatter).
            EventKind::Publish(_) => String::new(),
            EventKind::SequenceGap(p) => {
                if p.duplicate {
                    format!(
                        "SEQUENCE GAP sub={}: notification {} came again (expected {})",
                        p.subscription_id, p.got, p.expected
                    )
                } else {
                    format!(
                        "SEQUENCE GAP sub={}: expected notification {}, got {}: {} missing",
                        p.subscription_id, p.expected, p.got, p.missing_count
                    )
                }
            }
            EventKind::Republish(p) => format!(
                "REPUBLISH sub={} seq={}{}",
                p.subscription_id,
                p.retransmit_sequence_number,
                status_text(&p.status)
            ),
            EventKind::ServiceFault(p) => format!(
                "SERVICE FAULT {} for {}{}",
                p.status.status_name.or(p.status.status.as_deref()).unwrap_or("?"),
                p.for_service.unwrap_or("?"),
                p.note.map(|n| format!(" ({n})")).unwrap_or_default(),
            ),
            EventKind::ProbeEndpoint(p) => format!(
                "ENDPOINT {} {} {} users={} cert={} hosts=[{}]{} channel={}{}{}{} -> {}: {}",
                p.endpoint_url.as_deref().unwrap_or("?"),
                p.policy.as_deref().unwrap_or("?"),
                p.mode,
                p.user_tokens.join(","),
                p.server_cert.as_ref().and_then(|c| c.subject.as_deref()).unwrap_or("none"),
                p.server_cert_hosts.join(", "),
                match p.host_resolves {
                    Some(false) => " (host does NOT resolve from here)",
                    _ => "",
                },
                p.channel,
                p.session
                    .map(|s| format!(" session={s}({})", p.identity.unwrap_or("?")))
                    .unwrap_or_default(),
                p.cause
                    .map(|c| format!(" {} cause={c}", p.status.describe()))
                    .unwrap_or_default(),
                p.clock_skew_ms
                    .map(|s| format!(" clock_skew={s:.0}ms"))
                    .unwrap_or_default(),
                if p.usable { "usable" } else { "NOT usable" },
                p.explanation
            ),
            EventKind::ProbeSummary(p) => format!(
                "PROBE reachable={} endpoints={} usable={} usable_secure={}{}",
                p.reachable,
                p.endpoints,
                p.usable_endpoints,
                p.usable_secure_endpoints,
                p.clock_skew_ms
                    .map(|s| format!(" clock_skew={s:.0}ms"))
                    .unwrap_or_default()
            ),
            EventKind::Reject(p) => format!(
                "REJECTED at {}: {} cause={}{}: {} Evidence: {}",
                p.stage,
                p.status.describe(),
                p.cause,
                if p.inferred { " (inferred)" } else { "" },
                p.explanation,
                p.evidence
            ),
            EventKind::Reconnect(p) => format!(
                "RECONNECT {}. session={} {} channel {}->{} reused={} transferred={:?} republished={} lost={}{}{}{}",
                p.story().sentence(),
                p.session_id.as_deref().unwrap_or("?"),
                if !p.came_back { "NEVER CAME BACK" } else if p.recovered { "recovered" } else { "NOT recovered" },
                p.old_channel_id.map_or("?".into(), |c| c.to_string()),
                p.new_channel_id.map_or("?".into(), |c| c.to_string()),
                p.session_reused,
                p.transferred,
                p.republished.len(),
                p.lost.len(),
                p.downtime_ms.map(|d| format!(" downtime={d:.0}ms")).unwrap_or_default(),
                {
                    let bad: Vec<String> = p
                        .rules
                        .iter()
                        .filter(|r| r.verdict == "FAIL" || r.verdict == "WARN")
                        .map(|r| format!("{} {}: {}", r.id, r.verdict, r.detail))
                        .collect();
                    if bad.is_empty() { String::new() } else { format!(" | {}", bad.join(" | ")) }
                },
                if p.patterns.is_empty() {
                    String::new()
                } else {
                    format!(" | patterns: {}", p.patterns.iter().map(|x| x.name).collect::<Vec<_>>().join(","))
                },
            ),
            EventKind::MonitoredItem(p) => format!(
                "MONITORED ITEM {} sub={} handle={} id={} node={}{}{}",
                p.action,
                p.subscription_id,
                p.client_handle.map_or("?".into(), |h| h.to_string()),
                p.monitored_item_id.map_or("?".into(), |h| h.to_string()),
                p.node_id.as_deref().unwrap_or("?"),
                status_text(&p.status),
                p.mode.map(|m| format!(" mode={m}")).unwrap_or_default(),
            ),
            EventKind::ItemQuality(p) => format!(
                "ITEM QUALITY sub={} handle={} node={} {} -> {}",
                p.subscription_id,
                p.client_handle,
                p.node_id.as_deref().unwrap_or("?"),
                p.from_name.or(p.from.as_deref()).unwrap_or("(first value)"),
                p.to_name.unwrap_or(&p.to),
            ),
            EventKind::ItemStale(p) => format!(
                "ITEM STALE sub={} handle={} node={}: SourceTimestamp stuck at {} for {} data publishes",
                p.subscription_id,
                p.client_handle,
                p.node_id.as_deref().unwrap_or("?"),
                p.since.as_deref().unwrap_or("?"),
                p.publishes_since,
            ),
            EventKind::Summary(p) => format!(
                "SUMMARY messages={} channels={} renewals={} sessions={} subscriptions={} publishes={} notifications={} gaps={} rejects={} faults={} (abnormal {}) decode_errors={}{}",
                p.messages, p.channels, p.renewals, p.sessions, p.subscriptions, p.publishes,
                p.notifications, p.sequence_gaps, p.rejects, p.service_faults, p.abnormal_faults,
                p.decode_errors,
                if p.unanswered.is_empty() { String::new() } else { format!(" unanswered={}", p.unanswered.join(",")) },
            ),
        };
        format!("{} {} {dir} {what}", self.ts, self.conn)
    }
}

impl Event {
    /// Appends [`to_text`](Self::to_text) to `out`; the line of a `publish` event, the one
    /// that comes with every PublishResponse, is written without a formatter.
    pub fn write_text(&self, out: &mut String) {
        let EventKind::Publish(p) = &self.kind else {
            out.push_str(&self.to_text());
            return;
        };
        let mut num = itoa::Buffer::new();
        self.ts.write_rfc3339(out);
        out.push(' ');
        out.push_str(&self.conn);
        out.push(' ');
        out.push_str(self.dir.map_or("   ", Direction::as_str));
        out.push_str(" PUBLISH sub=");
        out.push_str(num.format(p.subscription_id));
        out.push_str(" seq=");
        out.push_str(num.format(p.sequence_number));
        if p.keep_alive {
            out.push_str(" keep-alive");
        }
        out.push_str(" notifications=");
        out.push_str(num.format(p.notifications));
        if !p.acks.is_empty() {
            out.push_str(" acks=[");
            for (i, a) in p.acks.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(num.format(a[1]));
            }
            out.push(']');
        }
        match (p.status.status_name, &p.status.status) {
            (Some(n), _) => {
                out.push(' ');
                out.push_str(n);
            }
            (None, Some(h)) => {
                out.push(' ');
                out.push_str(h);
            }
            _ => {}
        }
    }
}

fn merge<T: serde::Serialize>(m: &mut Map<String, Value>, payload: &T) {
    if let Ok(Value::Object(fields)) = serde_json::to_value(payload) {
        m.extend(fields);
    }
}

fn status_text(s: &crate::payload::Status) -> String {
    match (s.status_name, &s.status) {
        (Some(n), _) => format!(" {n}"),
        (None, Some(h)) => format!(" {h}"),
        _ => String::new(),
    }
}

/// Who sends in `dir`, for a person.
fn sender(dir: Option<Direction>) -> &'static str {
    match dir {
        Some(Direction::ClientToServer) => "client",
        Some(Direction::ServerToClient) => "server",
        None => "peer",
    }
}

/// Lower-case hex of at most the first 32 bytes.
pub fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(32).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{PublishInfo, Status};
    use uatap_codec::status::StatusCode;

    #[test]
    fn publish_lines_read_as_the_formatter_wrote_them() {
        for (keep_alive, acks, status) in [
            (false, vec![], Status::of(0)),
            (true, vec![[5, 6], [5, 9]], Status::of(0x807A_0000)),
            (false, vec![[5, 6]], Status::of(0x1234_5678)),
            (false, vec![], Status::default()),
        ] {
            let p = PublishInfo {
                subscription_id: 5,
                sequence_number: 4_000_000_000,
                keep_alive,
                notifications: 100,
                more_notifications: false,
                available_sequence_numbers: vec![6],
                acks,
                ack_results: vec![StatusCode(0)],
                status,
                latency_ms: None,
            };
            let formatted = format!(
                "PUBLISH sub={} seq={}{} notifications={}{}{}",
                p.subscription_id,
                p.sequence_number,
                if p.keep_alive { " keep-alive" } else { "" },
                p.notifications,
                if p.acks.is_empty() {
                    String::new()
                } else {
                    format!(
                        " acks={:?}",
                        p.acks.iter().map(|a| a[1]).collect::<Vec<_>>()
                    )
                },
                status_text(&p.status),
            );
            let e = Event {
                ts: Timestamp::from_unix_micros(1_795_462_316_041_123),
                conn: "10.0.0.1:50000->10.0.0.2:4840".into(),
                dir: Some(Direction::ServerToClient),
                kind: EventKind::Publish(p),
            };
            assert_eq!(e.to_text(), format!("{} {} s2c {formatted}", e.ts, e.conn));
        }
    }
}
