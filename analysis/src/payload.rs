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

    /// The code back from its hex text.
    pub fn code(&self) -> Option<u32> {
        let hex = self.status.as_deref()?.strip_prefix("0x")?;
        u32::from_str_radix(hex, 16).ok()
    }

    /// `0x80130000 (Bad_SecurityChecksFailed)`, or `no status`.
    pub fn describe(&self) -> String {
        match (&self.status, self.status_name) {
            (Some(h), Some(n)) => format!("{h} ({n})"),
            (Some(h), None) => h.clone(),
            _ => "no status".into(),
        }
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
    /// The thumbprint of the certificate the server presents now (in GetEndpoints or an
    /// earlier OPN answer), when the client encrypted to another one: a renewed server
    /// certificate the client still has the old copy of.
    pub server_cert_now: Option<String>,
    /// The OPN was secured and uatap read it with a private key the user gave
    /// (`--private-key`): the status and mode are read, not inferred.
    pub decrypted: bool,
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

/// `monitored_item`: one result of CreateMonitoredItems, ModifyMonitoredItems,
/// DeleteMonitoredItems or SetMonitoringMode; frozen tags are often items that failed here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitoredItemInfo {
    /// `create`, `modify`, `delete`, `set_monitoring_mode`.
    pub action: &'static str,
    /// SubscriptionId.
    pub subscription_id: u32,
    /// ClientHandle (from the request, or remembered from the create).
    pub client_handle: Option<u32>,
    /// MonitoredItemId (from the create result, or the request of the other services).
    pub monitored_item_id: Option<u32>,
    /// The node monitored, when a CreateMonitoredItems request showed it.
    pub node_id: Option<String>,
    /// Result for this item.
    #[serde(flatten)]
    pub status: Status,
    /// `disabled`, `sampling`, `reporting` (create and set_monitoring_mode).
    pub mode: Option<&'static str>,
    /// Sampling interval granted, ms (create, modify).
    pub revised_sampling_interval_ms: Option<f64>,
    /// Queue size granted (create, modify).
    pub revised_queue_size: Option<u32>,
}

/// `item_quality`: an item's DataValue status changed class (Good / Uncertain / Bad).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemQualityInfo {
    /// SubscriptionId.
    pub subscription_id: u32,
    /// ClientHandle.
    pub client_handle: u32,
    /// The node, when its CreateMonitoredItems was seen.
    pub node_id: Option<String>,
    /// Previous status, hex (`null` for the first value seen).
    pub from: Option<String>,
    /// Name of the previous status.
    pub from_name: Option<&'static str>,
    /// New status, hex.
    pub to: String,
    /// Name of the new status.
    pub to_name: Option<&'static str>,
    /// SourceTimestamp of the value that changed class.
    pub source_timestamp: Option<String>,
}

/// `item_stale`: an item's SourceTimestamp stopped advancing while its subscription keeps
/// publishing data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemStaleInfo {
    /// SubscriptionId.
    pub subscription_id: u32,
    /// ClientHandle.
    pub client_handle: u32,
    /// The node, when its CreateMonitoredItems was seen.
    pub node_id: Option<String>,
    /// The last SourceTimestamp that advanced (RFC 3339).
    pub since: Option<String>,
    /// Data NotificationMessages of the subscription since then.
    pub publishes_since: u64,
}

/// The verdict on one rule of `reference/reconnect.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleVerdict {
    /// `R1` … `R30`.
    pub id: &'static str,
    /// `PASS`, `FAIL`, `WARN`, `N/A`.
    pub verdict: &'static str,
    /// False only for `FAIL`.
    pub ok: bool,
    /// What the traffic showed.
    pub detail: String,
}

/// A known bad reconnect pattern seen in the field, named so it can be searched for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatternInfo {
    /// Stable snake_case name, e.g. `subscription_recreated_repeatedly`.
    pub name: &'static str,
    /// What in the traffic shows it.
    pub detail: String,
}

/// `reconnect`: a client came back after a lost connection (or never did), and the verdict on
/// how it recovered its session, subscriptions and notifications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconnectInfo {
    /// Public SessionId of the session that was lost.
    pub session_id: Option<String>,
    /// SecureChannelId of the lost channel.
    pub old_channel_id: Option<u32>,
    /// SecureChannelId the client came back on (`null` if it never came back).
    pub new_channel_id: Option<u32>,
    /// ActivateSession on the old session succeeded on the new channel.
    pub session_reused: bool,
    /// SubscriptionIds transferred to a new session with a Good result.
    pub transferred: Vec<u32>,
    /// NotificationMessage numbers recovered by Republish.
    pub republished: Vec<u32>,
    /// Numbers the server sent or would have sent that the client never received.
    pub lost: Vec<u32>,
    /// Nothing was lost and every old subscription continues (transferred or reused).
    pub recovered: bool,
    /// From the loss (connection end, or the last Publish seen) to the new activation, ms.
    pub downtime_ms: Option<f64>,
    /// One verdict per rule that applies.
    pub rules: Vec<RuleVerdict>,
    /// Known bad patterns seen (an addition).
    pub patterns: Vec<PatternInfo>,
    /// The client came back at all (an addition; false for the verdict at the end).
    pub came_back: bool,
    /// Connection id of the lost connection (an addition).
    pub old_conn: String,
    /// Old subscriptions abandoned: neither reused nor transferred, their queued
    /// notifications dropped, count unknown (an addition).
    pub dropped_subscriptions: Vec<u32>,
    /// Subscriptions created after the reconnect (an addition).
    pub recreated_subscriptions: Vec<u32>,
}

/// `probe_endpoint`: one endpoint a server offers, as `uatap probe` found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeEndpointInfo {
    /// The URL the server advertises for it (the one a client like Ignition will dial).
    pub endpoint_url: Option<String>,
    /// Short policy name, e.g. `Basic256Sha256`.
    pub policy: Option<String>,
    /// Full SecurityPolicyUri.
    pub policy_uri: Option<String>,
    /// `None`, `Sign`, `SignAndEncrypt`.
    pub mode: &'static str,
    /// The user identity token types it accepts (`anonymous`, `username`, `x509`, `issued`).
    pub user_tokens: Vec<&'static str>,
    /// The server certificate it carries.
    pub server_cert: Option<crate::cert::CertSummary>,
    /// Host names and addresses in the certificate's SubjectAltName.
    pub server_cert_hosts: Vec<String>,
    /// Whether the host of `endpoint_url` resolves from here (`null`: not checked).
    pub host_resolves: Option<bool>,
    /// Whether uatap could use it (a channel and, where allowed, an anonymous session).
    pub usable: bool,
    /// Why, for a person.
    pub explanation: String,
    /// The OpenSecureChannel uatap tried on it: `accepted`, `rejected` or `not_tried`.
    pub channel: &'static str,
    /// The session uatap tried over that channel: `activated`, `rejected`, or `null` when none
    /// was tried.
    pub session: Option<&'static str>,
    /// The identity the session used: `anonymous` or `username` (`null`: no session tried).
    pub identity: Option<&'static str>,
    /// The cause of the refusal, as its `reject` event names it (`null` when none).
    pub cause: Option<&'static str>,
    /// The status of the refusal (`null` when none, or when it could not be read).
    #[serde(flatten)]
    pub status: Status,
    /// Server clock minus local clock, ms, from this endpoint's OpenSecureChannel response.
    pub clock_skew_ms: Option<f64>,
}

/// `probe_summary`: the last line of `uatap probe`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSummaryInfo {
    /// TCP connect and HEL/ACK worked.
    pub reachable: bool,
    /// How many endpoints uatap could use.
    pub usable_endpoints: u64,
    /// How many secured (Sign / SignAndEncrypt) endpoints uatap could use.
    pub usable_secure_endpoints: u64,
    /// How many endpoints the server offers.
    pub endpoints: u64,
    /// Server clock minus local clock, ms (from the response header timestamps).
    pub clock_skew_ms: Option<f64>,
    /// Why the probe stopped early, if it did.
    pub stopped: Option<String>,
}
