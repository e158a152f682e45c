//! Payloads of the service-level events (EVENTS.md): channels, sessions, subscriptions,
//! Publish, sequence gaps, Republish and faults. Serialised with the contract's field names.

use serde::Serialize;
use uatap_codec::status::StatusCode;

use crate::cert::CertSummary;

fn status_names<S: serde::Serializer>(v: &[StatusCode], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|c| c.to_string()))
}

/// `status` + `status_name`, flattened into an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Status {
    /// Hex, e.g. `0x80790000`.
    pub status: Option<String>,
    /// Spec name, or `null` for an unknown code.
    pub status_name: Option<&'static str>,
}

impl Status {
    /// Both fields from a code.
    pub fn of(code: u32) -> Self {
        Status {
            status: Some(StatusCode(code).hex()),
            status_name: StatusCode(code).name(),
        }
    }

    /// Both fields from an optional code.
    pub fn opt(code: Option<u32>) -> Self {
        code.map(Status::of).unwrap_or_default()
    }
}

/// `secure_channel`: one OpenSecureChannel exchange and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecureChannelInfo {
    /// `issue` or `renew` (`null` when the request was encrypted and no answer told).
    pub request_type: Option<&'static str>,
    /// Short policy name, e.g. `Basic256Sha256`.
    pub policy: Option<String>,
    /// Full SecurityPolicyUri.
    pub policy_uri: Option<String>,
    /// `None`, `Sign`, `SignAndEncrypt` (read from the request, or inferred from the first
    /// message on a secured channel).
    pub mode: Option<&'static str>,
    /// `ok`, `rejected`, `no_response`.
    pub outcome: &'static str,
    /// Result.
    #[serde(flatten)]
    pub status: Status,
    /// SecureChannelId granted.
    pub channel_id: Option<u32>,
    /// TokenId granted.
    pub token_id: Option<u32>,
    /// Token lifetime granted.
    pub revised_lifetime_ms: Option<u32>,
    /// Lifetime the client asked for.
    pub requested_lifetime_ms: Option<u32>,
    /// The client's certificate from the OPN request.
    pub client_cert: Option<CertSummary>,
    /// The server's certificate from the OPN response.
    pub server_cert: Option<CertSummary>,
    /// The client's thumbprint of the server certificate it encrypted to.
    pub receiver_thumbprint: Option<String>,
}

/// `session`: CreateSession, ActivateSession, CloseSession outcomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    /// `create`, `activate`, `close`.
    pub action: &'static str,
    /// Public SessionId (NodeId text), when known.
    pub session_id: Option<String>,
    /// `ok` or `rejected`.
    pub outcome: &'static str,
    /// Result.
    #[serde(flatten)]
    pub status: Status,
    /// `anonymous`, `username`, `x509`, `issued` (activate).
    pub identity: Option<&'static str>,
    /// User name (never a password).
    pub user: Option<String>,
    /// Activate: the session was activated before on another channel (a reconnect).
    pub reused_on_new_channel: Option<bool>,
    /// Create: the session name the client chose.
    pub session_name: Option<String>,
    /// Create: the timeout granted, ms.
    pub revised_session_timeout_ms: Option<f64>,
    /// Service latency, ms.
    pub latency_ms: Option<f64>,
}

/// `subscription`: create, modify, delete, transfer, set_publishing_mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriptionInfo {
    /// `create`, `modify`, `delete`, `transfer`, `set_publishing_mode`.
    pub action: &'static str,
    /// SubscriptionId.
    pub subscription_id: Option<u32>,
    /// Result.
    #[serde(flatten)]
    pub status: Status,
    /// Publishing interval granted, ms.
    pub revised_publishing_interval_ms: Option<f64>,
    /// Lifetime count granted.
    pub revised_lifetime_count: Option<u32>,
    /// Keep-alive count granted.
    pub revised_max_keep_alive_count: Option<u32>,
    /// set_publishing_mode: on or off.
    pub publishing_enabled: Option<bool>,
    /// transfer: sequence numbers the server can still republish.
    pub available_sequence_numbers: Option<Vec<u32>>,
    /// transfer: SendInitialValues of the request.
    pub send_initial_values: Option<bool>,
}

/// `publish`: one PublishResponse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishInfo {
    /// SubscriptionId (0 = none could answer).
    pub subscription_id: u32,
    /// NotificationMessage SequenceNumber.
    pub sequence_number: u32,
    /// No notifications: the Seq is the one the next data message will use.
    pub keep_alive: bool,
    /// Data changes and events carried.
    pub notifications: u64,
    /// More notifications are waiting.
    pub more_notifications: bool,
    /// Sequence numbers the server can still republish.
    pub available_sequence_numbers: Vec<u32>,
    /// `[subscription_id, sequence_number]` acknowledged by the matching request.
    pub acks: Vec<[u32; 2]>,
    /// Per-acknowledgement results (written as status names, hex when unknown).
    #[serde(serialize_with = "status_names")]
    pub ack_results: Vec<StatusCode>,
    /// ServiceResult.
    #[serde(flatten)]
    pub status: Status,
    /// How long the server held the request, ms.
    pub latency_ms: Option<f64>,
}

/// `sequence_gap`: a NotificationMessage sequence number skipped or repeated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceGapInfo {
    /// SubscriptionId.
    pub subscription_id: u32,
    /// The number expected.
    pub expected: u32,
    /// The number received.
    pub got: u32,
    /// The numbers never received (at most the first 1000; see `missing_count`).
    pub missing: Vec<u32>,
    /// How many are missing.
    pub missing_count: u64,
    /// A number already received came again.
    pub duplicate: bool,
}

/// `republish`: one Republish exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepublishInfo {
    /// SubscriptionId.
    pub subscription_id: u32,
    /// The number asked for.
    pub retransmit_sequence_number: u32,
    /// Result (Bad_MessageNotAvailable ends a reconnect's Republish loop).
    #[serde(flatten)]
    pub status: Status,
}

/// `service_fault`: a ServiceFault answered a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceFaultInfo {
    /// RequestId.
    pub request_id: Option<u32>,
    /// RequestHandle.
    pub request_handle: Option<u32>,
    /// The fault.
    #[serde(flatten)]
    pub status: Status,
    /// The request's service.
    pub for_service: Option<&'static str>,
    /// True when this fault is part of a normal sequence (e.g. the Publish requests still
    /// queued when the subscriptions are deleted are answered Bad_NoSubscription).
    pub normal: bool,
    /// Why it is normal, or what it means.
    pub note: Option<&'static str>,
}

/// `summary`: per connection, at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SummaryInfo {
    /// OPC UA messages.
    pub messages: u64,
    /// Secure channels opened (issue) and renewed.
    pub channels: u64,
    /// Token renewals.
    pub renewals: u64,
    /// Sessions created or activated on this connection.
    pub sessions: u64,
    /// Subscriptions created or transferred on this connection.
    pub subscriptions: u64,
    /// Publish responses.
    pub publishes: u64,
    /// Data changes and events delivered.
    pub notifications: u64,
    /// Sequence gaps (missing or duplicate).
    pub sequence_gaps: u64,
    /// Refusals (ERR, rejected OPN, failed CreateSession/ActivateSession).
    pub rejects: u64,
    /// Service faults, and how many of them were abnormal.
    pub service_faults: u64,
    /// Faults not explained as normal.
    pub abnormal_faults: u64,
    /// Decode errors.
    pub decode_errors: u64,
    /// Requests never answered before the connection ended (`Service#RequestId`).
    pub unanswered: Vec<String>,
    /// Publish requests still queued at a normal teardown (servers may drop them silently).
    pub unanswered_publish_at_teardown: u64,
}
