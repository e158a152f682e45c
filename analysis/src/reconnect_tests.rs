//! Conversations built with the codec's encoder, fed through an [`Analyzer`] with chosen
//! times: reconnects, their verdicts, and the item-level events.

use uatap_codec::services::{
    ActivateSessionRequest, ActivateSessionResponse, CallMethodRequest, CallMethodResult,
    CallRequest, CallResponse, ChannelSecurityToken, CloseSessionRequest,
    CreateMonitoredItemsRequest, CreateMonitoredItemsResponse, CreateSessionResponse,
    CreateSubscriptionRequest, CreateSubscriptionResponse, DataChangeNotification,
    DeleteMonitoredItemsRequest, MonitoredItemCreateRequest, MonitoredItemCreateResult,
    MonitoredItemNotification, MonitoringParameters, NotificationMessage, OpenSecureChannelRequest,
    OpenSecureChannelResponse, PublishRequest, PublishResponse, ReadRequest, ReadResponse,
    ReadValueId, RepublishRequest, RepublishResponse, RequestHeader, ResponseHeader, Secret,
    ServiceFault, SetMonitoringModeRequest, SignatureData, StatusResults,
    SubscriptionAcknowledgement, TransferResult, TransferSubscriptionsRequest,
    TransferSubscriptionsResponse,
};
use uatap_codec::status::StatusCode;
use uatap_codec::types::{
    ByteString, DataValue, DateTime, ExtensionObject, NodeId, QualifiedName, UaString, Variant,
};
use uatap_codec::Encode;

use crate::connection::{Analyzer, Connection, Options};
use crate::event::{CloseReason, ClosedBy, Direction, Event, EventKind};
use crate::payload::{ItemQualityInfo, ItemStaleInfo, MonitoredItemInfo, ReconnectInfo};
use crate::time::Timestamp;

const T0: i64 = 1_795_000_000_000_000;
const SUB: u32 = 7;
const NOT_AVAILABLE: u32 = 0x807B_0000;

/// One connection of the conversation.
struct Link {
    c: Connection,
    channel: u32,
    seq: u32,
    next_request: u32,
    /// AuthenticationToken used in request headers.
    token: u32,
}

/// An analyzer, a clock and every event so far.
struct Sim {
    an: Analyzer,
    ms: i64,
    events: Vec<Event>,
}

fn req_header(token: u32) -> RequestHeader<'static> {
    RequestHeader {
        authentication_token: NodeId::numeric(1, token),
        timestamp: DateTime(0),
        request_handle: 1,
        return_diagnostics: 0,
        audit_entry_id: UaString::null(),
        timeout_hint: 0,
        additional_header: ExtensionObject::default(),
    }
}

fn resp_header(result: u32) -> ResponseHeader<'static> {
    ResponseHeader {
        timestamp: DateTime(0),
        request_handle: 1,
        service_result: StatusCode(result),
        service_diagnostics: Default::default(),
        string_table: None,
        additional_header: ExtensionObject::default(),
    }
}

fn signature() -> SignatureData<'static> {
    SignatureData {
        algorithm: UaString::null(),
        signature: ByteString::null(),
    }
}

fn body<T: Encode>(type_id: u32, v: &T) -> Vec<u8> {
    let mut b = NodeId::numeric(0, type_id).to_vec();
    v.encode(&mut b);
    b
}

fn chunk(
    kind: &[u8; 3],
    channel: u32,
    header: &[u8],
    seq: u32,
    request_id: u32,
    body: &[u8],
) -> Vec<u8> {
    let mut v = kind.to_vec();
    v.push(b'F');
    let size = 8 + 4 + header.len() + 8 + body.len();
    v.extend_from_slice(&(size as u32).to_le_bytes());
    v.extend_from_slice(&channel.to_le_bytes());
    v.extend_from_slice(header);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&request_id.to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn none_policy_header() -> Vec<u8> {
    let uri = b"http://opcfoundation.org/UA/SecurityPolicy#None";
    let mut h = (uri.len() as i32).to_le_bytes().to_vec();
    h.extend_from_slice(uri);
    h.extend_from_slice(&(-1i32).to_le_bytes());
    h.extend_from_slice(&(-1i32).to_le_bytes());
    h
}

fn data_change(items: &[(u32, Option<u32>, i64)]) -> ExtensionObject<'static> {
    let dc = DataChangeNotification {
        monitored_items: Some(
            items
                .iter()
                .map(|(handle, status, ts)| MonitoredItemNotification {
                    client_handle: *handle,
                    value: DataValue {
                        value: Some(Variant::from(1.5f64)),
                        status: *status,
                        source_timestamp: Some(DateTime(*ts)),
                        ..DataValue::default()
                    },
                })
                .collect(),
        ),
        diagnostic_infos: None,
    };
    ExtensionObject::binary(NodeId::numeric(0, 811), dc.to_vec())
}

/// The `reconnect` payloads so far; every rule they judge is one of the table's.
fn reconnects(events: &[Event]) -> Vec<ReconnectInfo> {
    let r: Vec<ReconnectInfo> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Reconnect(r) => Some((**r).clone()),
            _ => None,
        })
        .collect();
    for v in r.iter().flat_map(|x| &x.rules) {
        assert!(
            crate::reconnect::RULES.iter().any(|(id, _)| *id == v.id),
            "{} is not in RULES",
            v.id
        );
        assert_eq!(v.ok, v.verdict != "FAIL");
    }
    r
}

fn rule<'a>(r: &'a ReconnectInfo, id: &str) -> &'a crate::payload::RuleVerdict {
    r.rules
        .iter()
        .find(|v| v.id == id)
        .unwrap_or_else(|| panic!("no {id} in {:?}", r.rules))
}

fn patterns(r: &ReconnectInfo) -> Vec<&'static str> {
    r.patterns.iter().map(|p| p.name).collect()
}

impl Sim {
    fn new() -> Self {
        Sim {
            an: Analyzer::new(Options::default()),
            ms: 0,
            events: Vec::new(),
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_unix_micros(T0 + self.ms * 1000)
    }

    fn at(&mut self, ms: i64) {
        self.ms = ms;
    }

    fn drain(&mut self, l: &mut Link) {
        while let Some(e) = l.c.poll_event() {
            self.events.push(e);
        }
    }

    fn feed(&mut self, l: &mut Link, dir: Direction, bytes: &[u8]) {
        let now = self.now();
        self.an.handle_input(&mut l.c, dir, bytes, now);
        self.drain(l);
    }

    /// A new connection from `port` and its OpenSecureChannel (Issue, None) granting `channel`.
    fn connect(&mut self, port: u16, channel: u32) -> Link {
        self.connect_from("10.0.0.1", port, channel)
    }

    /// Like [`Sim::connect`], from another client host.
    fn connect_from(&mut self, host: &str, port: u16, channel: u32) -> Link {
        let now = self.now();
        let c = self
            .an
            .open(format!("{host}:{port}"), "10.0.0.2:4840".into(), now);
        let mut l = Link {
            c,
            channel,
            seq: 1,
            next_request: 1,
            token: 0,
        };
        let opn = OpenSecureChannelRequest {
            request_header: req_header(0),
            client_protocol_version: 0,
            request_type: 0,
            security_mode: 1,
            client_nonce: ByteString::null(),
            requested_lifetime: 3_600_000,
        };
        let h = none_policy_header();
        self.feed(
            &mut l,
            Direction::ClientToServer,
            &chunk(b"OPN", 0, &h, 1, 1, &body(446, &opn)),
        );
        let resp = OpenSecureChannelResponse {
            response_header: resp_header(0),
            server_protocol_version: 0,
            security_token: ChannelSecurityToken {
                channel_id: channel,
                token_id: 1,
                created_at: DateTime(0),
                revised_lifetime: 3_600_000,
            },
            server_nonce: ByteString::null(),
        };
        self.feed(
            &mut l,
            Direction::ServerToClient,
            &chunk(b"OPN", channel, &h, 1, 1, &body(449, &resp)),
        );
        l.next_request = 2;
        l.seq = 2;
        l
    }

    fn request<T: Encode>(&mut self, l: &mut Link, type_id: u32, v: &T) -> u32 {
        let id = l.next_request;
        l.next_request += 1;
        l.seq += 1;
        let m = chunk(
            b"MSG",
            l.channel,
            &1u32.to_le_bytes(),
            l.seq,
            id,
            &body(type_id, v),
        );
        self.feed(l, Direction::ClientToServer, &m);
        id
    }

    fn respond<T: Encode>(&mut self, l: &mut Link, id: u32, type_id: u32, v: &T) {
        l.seq += 1;
        let m = chunk(
            b"MSG",
            l.channel,
            &1u32.to_le_bytes(),
            l.seq,
            id,
            &body(type_id, v),
        );
        self.feed(l, Direction::ServerToClient, &m);
    }

    fn fault(&mut self, l: &mut Link, id: u32, status: u32) {
        self.respond(
            l,
            id,
            397,
            &ServiceFault {
                response_header: resp_header(status),
            },
        );
    }

    fn create_session(&mut self, l: &mut Link, session: u32, token: u32) {
        // The request carries nothing the analysis needs: only the answer is sent.
        let id = l.next_request;
        l.next_request += 1;
        let resp = CreateSessionResponse {
            response_header: resp_header(0),
            session_id: NodeId::numeric(1, session),
            authentication_token: NodeId::numeric(1, token),
            revised_session_timeout: 60_000.0,
            server_nonce: Secret(ByteString::null()),
            server_certificate: ByteString::null(),
            server_endpoints: None,
            server_software_certificates: None,
            server_signature: signature(),
            max_request_message_size: 0,
        };
        self.respond(l, id, 464, &resp);
    }

    /// ActivateSession with `token`; `result` Good or a fault.
    fn activate(&mut self, l: &mut Link, token: u32, result: u32) {
        let req = ActivateSessionRequest {
            request_header: req_header(token),
            client_signature: signature(),
            client_software_certificates: None,
            locale_ids: None,
            user_identity_token: ExtensionObject::default(),
            user_token_signature: signature(),
        };
        let id = self.request(l, 467, &req);
        if result == 0 {
            l.token = token;
            let resp = ActivateSessionResponse {
                response_header: resp_header(0),
                server_nonce: Secret(ByteString::null()),
                results: None,
                diagnostic_infos: None,
            };
            self.respond(l, id, 470, &resp);
        } else {
            self.fault(l, id, result);
        }
    }

    fn session(&mut self, l: &mut Link, session: u32, token: u32) {
        self.create_session(l, session, token);
        self.activate(l, token, 0);
    }

    fn create_subscription(&mut self, l: &mut Link, sub: u32) {
        let req = CreateSubscriptionRequest {
            request_header: req_header(l.token),
            requested_publishing_interval: 1000.0,
            requested_lifetime_count: 60,
            requested_max_keep_alive_count: 10,
            max_notifications_per_publish: 0,
            publishing_enabled: true,
            priority: 0,
        };
        let id = self.request(l, 787, &req);
        let resp = CreateSubscriptionResponse {
            response_header: resp_header(0),
            subscription_id: sub,
            revised_publishing_interval: 1000.0,
            revised_lifetime_count: 60,
            revised_max_keep_alive_count: 10,
        };
        self.respond(l, id, 790, &resp);
    }

    /// CreateMonitoredItems: (ClientHandle, node, result, MonitoredItemId) per item.
    fn create_items(&mut self, l: &mut Link, sub: u32, items: &[(u32, NodeId<'static>, u32, u32)]) {
        let req = CreateMonitoredItemsRequest {
            request_header: req_header(l.token),
            subscription_id: sub,
            timestamps_to_return: 2,
            items_to_create: Some(
                items
                    .iter()
                    .map(|(handle, node, _, _)| MonitoredItemCreateRequest {
                        item_to_monitor: ReadValueId {
                            node_id: node.clone(),
                            attribute_id: 13,
                            index_range: UaString::null(),
                            data_encoding: QualifiedName::default(),
                        },
                        monitoring_mode: 2,
                        requested_parameters: MonitoringParameters {
                            client_handle: *handle,
                            sampling_interval: 250.0,
                            filter: ExtensionObject::default(),
                            queue_size: 1,
                            discard_oldest: true,
                        },
                    })
                    .collect(),
            ),
        };
        let id = self.request(l, 751, &req);
        let resp = CreateMonitoredItemsResponse {
            response_header: resp_header(0),
            results: Some(
                items
                    .iter()
                    .map(|(_, _, status, item_id)| MonitoredItemCreateResult {
                        status_code: StatusCode(*status),
                        monitored_item_id: *item_id,
                        revised_sampling_interval: 250.0,
                        revised_queue_size: 1,
                        filter_result: ExtensionObject::default(),
                    })
                    .collect(),
            ),
            diagnostic_infos: None,
        };
        self.respond(l, id, 754, &resp);
    }

    /// One Publish exchange: the request with `acks`, the response with `seq` carrying the
    /// item values (none: a keep-alive).
    fn publish(
        &mut self,
        l: &mut Link,
        acks: &[u32],
        seq: u32,
        items: &[(u32, Option<u32>, i64)],
        available: &[u32],
    ) {
        let req = PublishRequest {
            request_header: req_header(l.token),
            subscription_acknowledgements: Some(
                acks.iter()
                    .map(|n| SubscriptionAcknowledgement {
                        subscription_id: SUB,
                        sequence_number: *n,
                    })
                    .collect(),
            ),
        };
        let id = self.request(l, 826, &req);
        self.publish_response(l, id, seq, items, available);
    }

    fn publish_response(
        &mut self,
        l: &mut Link,
        id: u32,
        seq: u32,
        items: &[(u32, Option<u32>, i64)],
        available: &[u32],
    ) {
        let resp = PublishResponse {
            response_header: resp_header(0),
            subscription_id: SUB,
            available_sequence_numbers: Some(available.to_vec()),
            more_notifications: false,
            notification_message: NotificationMessage {
                sequence_number: seq,
                publish_time: DateTime(0),
                notification_data: Some(if items.is_empty() {
                    vec![]
                } else {
                    vec![data_change(items)]
                }),
            },
            results: None,
            diagnostic_infos: None,
        };
        self.respond(l, id, 829, &resp);
    }

    /// A Republish of `seq`: Good with the message, or the fault `result`.
    fn republish(&mut self, l: &mut Link, seq: u32, result: u32) {
        let req = RepublishRequest {
            request_header: req_header(l.token),
            subscription_id: SUB,
            retransmit_sequence_number: seq,
        };
        let id = self.request(l, 832, &req);
        if result == 0 {
            let resp = RepublishResponse {
                response_header: resp_header(0),
                notification_message: NotificationMessage {
                    sequence_number: seq,
                    publish_time: DateTime(0),
                    notification_data: Some(vec![data_change(&[(1, None, 5)])]),
                },
            };
            self.respond(l, id, 835, &resp);
        } else {
            self.fault(l, id, result);
        }
    }

    fn transfer(&mut self, l: &mut Link, result: u32, available: &[u32]) {
        let req = TransferSubscriptionsRequest {
            request_header: req_header(l.token),
            subscription_ids: Some(vec![SUB]),
            send_initial_values: true,
        };
        let id = self.request(l, 841, &req);
        let resp = TransferSubscriptionsResponse {
            response_header: resp_header(0),
            results: Some(vec![TransferResult {
                status_code: StatusCode(result),
                available_sequence_numbers: Some(available.to_vec()),
            }]),
            diagnostic_infos: None,
        };
        self.respond(l, id, 844, &resp);
    }

    fn close(&mut self, mut l: Link, by: ClosedBy, reason: CloseReason) {
        let now = self.now();
        self.an.handle_close(&mut l.c, by, reason, now);
        self.drain(&mut l);
    }

    fn finish(&mut self) {
        let now = self.now();
        self.an.finish(now);
        while let Some(e) = self.an.poll_event() {
            self.events.push(e);
        }
    }

    /// A first connection: session 100 (token 5) with subscription 7 whose item 1 is
    /// ns=2;s=Line4.CNC and item 2 ServerStatus.State, and data messages 1..=last received.
    fn first_connection(&mut self, last: u32) -> Link {
        let mut a = self.connect(50001, 1);
        self.session(&mut a, 100, 5);
        self.create_subscription(&mut a, SUB);
        self.create_items(
            &mut a,
            SUB,
            &[
                (1, NodeId::string(2, "Line4.CNC"), 0, 11),
                (2, NodeId::numeric(0, 2259), 0, 12),
            ],
        );
        for n in 1..=last {
            let acks: Vec<u32> = if n > 1 { vec![n - 1] } else { vec![] };
            self.publish(&mut a, &acks, n, &[(1, None, i64::from(n))], &[n]);
        }
        a
    }
}

#[test]
fn clean_reconnect_with_session_reuse_recovers_everything() {
    let mut s = Sim::new();
    let a = s.first_connection(3);
    s.at(10_000);
    s.close(a, ClosedBy::Client, CloseReason::Rst);
    s.at(12_000);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.republish(&mut b, 4, 0);
    s.republish(&mut b, 5, 0);
    s.republish(&mut b, 6, NOT_AVAILABLE);
    assert!(
        reconnects(&s.events).is_empty(),
        "no verdict before the first Publish"
    );
    s.publish(&mut b, &[3, 4, 5], 6, &[(1, None, 6)], &[6]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let r = &r[0];
    assert!(r.session_reused && r.came_back);
    assert_eq!(r.session_id.as_deref(), Some("ns=1;i=100"));
    assert_eq!((r.old_channel_id, r.new_channel_id), (Some(1), Some(2)));
    assert_eq!(r.republished, vec![4, 5]);
    assert!(r.lost.is_empty());
    assert!(r.recovered);
    assert_eq!(r.downtime_ms, Some(2000.0));
    assert_eq!(r.old_conn, "10.0.0.1:50001->10.0.0.2:4840");
    assert_eq!(rule(r, "R2").verdict, "PASS");
    assert_eq!(rule(r, "R10").verdict, "PASS", "{:?}", rule(r, "R10"));
    assert_eq!(rule(r, "R1").verdict, "PASS", "item on i=2259");
    assert_eq!(rule(r, "R5").verdict, "PASS");
    assert_eq!(rule(r, "R3").verdict, "PASS");
    assert!(r.patterns.is_empty(), "{:?}", r.patterns);
    // The recovered numbers count as received: no gap when 6 arrives.
    assert!(!s
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::SequenceGap(_))));
    // The session is recovered: nothing more at the end.
    s.close(b, ClosedBy::Unknown, CloseReason::CaptureEnd);
    s.finish();
    assert_eq!(reconnects(&s.events).len(), 1);
}

#[test]
fn create_session_and_transfer_without_trying_activate_first() {
    let mut s = Sim::new();
    let a = s.first_connection(2);
    s.at(5_000);
    s.close(a, ClosedBy::Server, CloseReason::Rst);
    s.at(8_000);
    let mut b = s.connect(50002, 2);
    s.session(&mut b, 101, 6);
    s.transfer(&mut b, 0, &[3]);
    s.republish(&mut b, 3, 0);
    s.republish(&mut b, 4, NOT_AVAILABLE);
    s.publish(&mut b, &[3], 4, &[(1, None, 4)], &[4]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let r = &r[0];
    assert!(!r.session_reused);
    assert_eq!(
        r.session_id.as_deref(),
        Some("ns=1;i=100"),
        "the session lost"
    );
    assert_eq!(r.transferred, vec![SUB]);
    assert_eq!(r.republished, vec![3]);
    assert!(r.lost.is_empty() && r.recovered);
    assert_eq!(rule(r, "R5").verdict, "FAIL");
    assert!(!rule(r, "R5").ok);
    assert_eq!(rule(r, "R2").verdict, "FAIL");
    assert_eq!(rule(r, "R6").verdict, "PASS");
    assert!(rule(r, "R6").detail.contains("SendInitialValues=true"));
    assert_eq!(rule(r, "R7").verdict, "PASS");
    assert!(rule(r, "R7").detail.contains("available [3]"));
    assert_eq!(rule(r, "R8").verdict, "N/A");
    assert_eq!(rule(r, "R10").verdict, "PASS", "{:?}", rule(r, "R10"));
}

#[test]
fn refused_transfer_after_failed_activate_and_recreated_subscription() {
    let mut s = Sim::new();
    let a = s.first_connection(2);
    s.at(5_000);
    s.close(a, ClosedBy::Server, CloseReason::Rst);
    s.at(90_000);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0x8025_0000); // Bad_SessionIdInvalid: it timed out
    s.session(&mut b, 101, 6);
    s.transfer(&mut b, 0x8028_0000, &[]);
    s.create_subscription(&mut b, 8);
    // Lost for 85 s, past the 60 s session timeout: that verdict came first.
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "waits for the monitored items: {r:?}");
    assert!(!r[0].came_back);
    s.create_items(&mut b, 8, &[(1, NodeId::string(2, "Line4.CNC"), 0, 21)]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 2, "{r:?}");
    let r = &r[1];
    assert!(r.came_back);
    assert_eq!(rule(r, "R5").verdict, "PASS");
    assert!(rule(r, "R5").detail.contains("Bad_SessionIdInvalid"));
    assert_eq!(rule(r, "R2").verdict, "PASS");
    assert_eq!(rule(r, "R7").verdict, "PASS", "{:?}", rule(r, "R7"));
    assert!(rule(r, "R7").detail.contains("recreated as [8]"));
    assert!(patterns(r).contains(&"recreated_after_refused_transfer"));
    assert!(r.transferred.is_empty());
    assert_eq!(r.recreated_subscriptions, vec![8]);
    assert!(!r.recovered);
}

#[test]
fn notifications_lost_when_the_client_never_republishes() {
    let mut s = Sim::new();
    let a = s.first_connection(3);
    s.at(10_000);
    s.close(a, ClosedBy::Client, CloseReason::Rst);
    s.at(11_000);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.publish(&mut b, &[3], 6, &[(1, None, 6)], &[4, 5, 6]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let r = &r[0];
    assert_eq!(r.lost, vec![4, 5]);
    assert!(r.republished.is_empty());
    assert!(!r.recovered);
    assert_eq!(rule(r, "R12").verdict, "WARN");
    assert_eq!(rule(r, "R10").verdict, "FAIL");
    assert!(rule(r, "R10")
        .detail
        .contains("[4, 5] missing and no Republish"));
}

#[test]
fn client_that_never_comes_back_gets_a_verdict_at_the_end() {
    let mut s = Sim::new();
    let a = s.first_connection(2);
    s.at(5_000);
    s.close(a, ClosedBy::Server, CloseReason::Rst);
    s.at(100_000);
    s.finish();
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let e = s
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Reconnect(_)))
        .expect("event");
    assert_eq!(&*e.conn, "10.0.0.1:50001->10.0.0.2:4840");
    let r = &r[0];
    assert!(!r.came_back && !r.recovered && !r.session_reused);
    assert_eq!(r.new_channel_id, None);
    assert_eq!(r.dropped_subscriptions, vec![SUB]);
    assert_eq!(r.downtime_ms, Some(95_000.0));
    assert_eq!(rule(r, "R2").verdict, "WARN");
    assert!(rule(r, "R2").detail.contains("past the session timeout"));
    assert_eq!(patterns(r), vec!["never_came_back"]);

    // A connection still open when the capture ends was not lost.
    let mut s = Sim::new();
    let a = s.first_connection(2);
    s.close(a, ClosedBy::Unknown, CloseReason::CaptureEnd);
    s.finish();
    assert!(reconnects(&s.events).is_empty());

    // Nor one whose client asked to close its session (the answer never came).
    let mut s = Sim::new();
    let mut a = s.first_connection(2);
    let close = CloseSessionRequest {
        request_header: req_header(5),
        delete_subscriptions: true,
    };
    s.request(&mut a, 473, &close);
    s.close(a, ClosedBy::Server, CloseReason::Fin);
    s.finish();
    assert!(reconnects(&s.events).is_empty());
}

#[test]
fn republish_starting_at_the_wrong_number_fails_r10() {
    let mut s = Sim::new();
    let a = s.first_connection(3);
    s.at(10_000);
    s.close(a, ClosedBy::Client, CloseReason::Rst);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.republish(&mut b, 2, 0);
    s.republish(&mut b, 3, 0);
    s.republish(&mut b, 4, NOT_AVAILABLE);
    s.publish(&mut b, &[3], 4, &[(1, None, 4)], &[4]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let v = rule(&r[0], "R10");
    assert_eq!(v.verdict, "FAIL");
    assert!(!v.ok);
    assert!(
        v.detail.contains("started at 2 where 4 was next"),
        "{}",
        v.detail
    );
    assert!(r[0].recovered, "nothing was missing");
}

#[test]
fn acknowledging_a_keep_alive_fails_r18() {
    let mut s = Sim::new();
    let mut a = s.first_connection(1);
    // Keep-alive 2 carries the next number; the client acknowledges it anyway.
    s.publish(&mut a, &[1], 2, &[], &[1]);
    s.publish(&mut a, &[2], 2, &[], &[]);
    s.at(4_000);
    s.close(a, ClosedBy::Server, CloseReason::Rst);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.publish(&mut b, &[], 2, &[], &[]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let v = rule(&r[0], "R18");
    assert_eq!(v.verdict, "FAIL");
    assert!(!v.ok);
    assert!(v.detail.contains("[(7, 2)]"), "{}", v.detail);
    assert!(r[0].recovered, "nothing lost: 2 was never used by data");
}

#[test]
fn subscription_recreated_again_and_again_is_named() {
    let mut s = Sim::new();
    let mut link = s.connect(50001, 1);
    s.session(&mut link, 100, 5);
    s.create_subscription(&mut link, SUB);
    for k in 0..4u32 {
        // Kepware closes the connection when the client acknowledges a number it no
        // longer holds; the client comes back with a new session and subscription.
        s.publish(&mut link, &[], 1, &[(1, None, 1)], &[1]);
        s.publish(&mut link, &[9], 2, &[(1, None, 2)], &[2]);
        s.at(i64::from(k) * 12_000 + 11_000);
        s.close(link, ClosedBy::Server, CloseReason::Fin);
        s.at(i64::from(k + 1) * 12_000);
        link = s.connect(50002 + k as u16, 2 + k);
        s.session(&mut link, 101 + k, 6 + k);
        s.create_subscription(&mut link, SUB);
        s.create_items(
            &mut link,
            SUB,
            &[(1, NodeId::string(2, "Line4.CNC"), 0, 30 + k)],
        );
    }
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 4, "{r:?}");
    for (i, x) in r.iter().enumerate() {
        assert_eq!(rule(x, "R6").verdict, "FAIL");
        assert_eq!(rule(x, "R5").verdict, "FAIL");
        assert!(patterns(x).contains(&"queued_data_dropped"));
        assert!(
            patterns(x).contains(&"ack_not_available"),
            "{:?}",
            x.patterns
        );
        assert_eq!(rule(x, "R23").verdict, "WARN");
        assert_eq!(
            patterns(x).contains(&"subscription_recreated_repeatedly"),
            i >= 2,
            "reconnect {i}: {:?}",
            x.patterns
        );
    }
    let p = r[3]
        .patterns
        .iter()
        .find(|p| p.name == "subscription_recreated_repeatedly")
        .expect("pattern");
    assert!(p.detail.contains("4 reconnects"), "{}", p.detail);
    assert!(p.detail.contains("about every 12.0 s"), "{}", p.detail);
    // Memory stays bounded however long the loop goes: only the live session and its
    // subscription are held.
    assert_eq!(s.an.tracked(), (1, 1));
}

#[test]
fn abandoned_subscriptions_are_forgotten() {
    let mut s = Sim::new();
    let a = s.first_connection(2);
    s.close(a, ClosedBy::Server, CloseReason::Rst);
    let mut b = s.connect(50002, 2);
    s.session(&mut b, 101, 6);
    s.create_subscription(&mut b, 8);
    s.create_items(&mut b, 8, &[(1, NodeId::string(2, "Line4.CNC"), 0, 21)]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].dropped_subscriptions, vec![SUB]);
    assert_eq!(r[0].recreated_subscriptions, vec![8]);
    assert!(patterns(&r[0]).contains(&"queued_data_dropped"));
    assert!(!r[0].recovered);
    // Subscription 7 and session 100 are gone from the state; 8 and 101 remain.
    assert_eq!(s.an.tracked(), (1, 1));
}

#[test]
fn no_publish_after_reactivation_is_named() {
    let mut s = Sim::new();
    let a = s.first_connection(1);
    s.at(3_000);
    s.close(a, ClosedBy::Client, CloseReason::Rst);
    s.at(4_000);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.republish(&mut b, 2, NOT_AVAILABLE);
    // The client only reads, never publishes again.
    s.at(40_000);
    let read = ReadRequest {
        request_header: req_header(5),
        max_age: 0.0,
        timestamps_to_return: 2,
        nodes_to_read: Some(vec![ReadValueId {
            node_id: NodeId::numeric(0, 2258),
            attribute_id: 13,
            index_range: UaString::null(),
            data_encoding: QualifiedName::default(),
        }]),
    };
    let id = s.request(&mut b, 631, &read);
    let resp = ReadResponse {
        response_header: resp_header(0),
        results: Some(vec![DataValue::new(Variant::from(1.0f64))]),
        diagnostic_infos: None,
    };
    s.respond(&mut b, id, 634, &resp);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(patterns(&r[0]).contains(&"no_publish_after_reactivation"));
    assert_eq!(rule(&r[0], "R10").verdict, "FAIL");
}

#[test]
fn resend_data_after_a_gap_passes_r12() {
    let mut s = Sim::new();
    let a = s.first_connection(1);
    s.at(3_000);
    s.close(a, ClosedBy::Client, CloseReason::Rst);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.republish(&mut b, 2, NOT_AVAILABLE);
    let call = CallRequest {
        request_header: req_header(5),
        methods_to_call: Some(vec![CallMethodRequest {
            object_id: NodeId::numeric(0, 2253),
            method_id: NodeId::numeric(0, 12873),
            input_arguments: Some(vec![Variant::UInt32(SUB)]),
        }]),
    };
    let id = s.request(&mut b, 712, &call);
    let resp = CallResponse {
        response_header: resp_header(0),
        results: Some(vec![CallMethodResult {
            status_code: StatusCode(0),
            input_argument_results: None,
            input_argument_diagnostic_infos: None,
            output_arguments: None,
        }]),
        diagnostic_infos: None,
    };
    s.respond(&mut b, id, 715, &resp);
    s.publish(&mut b, &[], 4, &[(1, None, 4)], &[4]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].lost, vec![2, 3]);
    assert_eq!(rule(&r[0], "R12").verdict, "PASS");
    assert!(rule(&r[0], "R12").detail.contains("[7]"));
}

fn monitored(events: &[Event]) -> Vec<MonitoredItemInfo> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MonitoredItem(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn monitored_item_events_carry_node_ids() {
    let mut s = Sim::new();
    let mut a = s.connect(50001, 1);
    s.session(&mut a, 100, 5);
    s.create_subscription(&mut a, SUB);
    s.create_items(
        &mut a,
        SUB,
        &[
            (1, NodeId::string(2, "Line4.CNC"), 0, 11),
            (2, NodeId::string(2, "Gone.Tag"), 0x8034_0000, 0),
        ],
    );
    let m = monitored(&s.events);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].action, "create");
    assert_eq!(m[0].node_id.as_deref(), Some("ns=2;s=Line4.CNC"));
    assert_eq!(
        (m[0].client_handle, m[0].monitored_item_id),
        (Some(1), Some(11))
    );
    assert_eq!(m[0].mode, Some("reporting"));
    assert_eq!(m[0].status.status_name, Some("Good"));
    assert_eq!(m[1].node_id.as_deref(), Some("ns=2;s=Gone.Tag"));
    assert_eq!(m[1].status.status_name, Some("Bad_NodeIdUnknown"));
    assert_eq!(m[1].monitored_item_id, None);

    let req = SetMonitoringModeRequest {
        request_header: req_header(5),
        subscription_id: SUB,
        monitoring_mode: 0,
        monitored_item_ids: Some(vec![11]),
    };
    let id = s.request(&mut a, 769, &req);
    let ok = StatusResults {
        response_header: resp_header(0),
        results: Some(vec![StatusCode(0)]),
        diagnostic_infos: None,
    };
    s.respond(&mut a, id, 772, &ok);
    let req = DeleteMonitoredItemsRequest {
        request_header: req_header(5),
        subscription_id: SUB,
        monitored_item_ids: Some(vec![11]),
    };
    let id = s.request(&mut a, 781, &req);
    s.respond(&mut a, id, 784, &ok);
    let m = monitored(&s.events);
    assert_eq!(m.len(), 4);
    assert_eq!(m[2].action, "set_monitoring_mode");
    assert_eq!(m[2].mode, Some("disabled"));
    assert_eq!(m[2].client_handle, Some(1));
    assert_eq!(m[2].node_id.as_deref(), Some("ns=2;s=Line4.CNC"));
    assert_eq!(m[3].action, "delete");
    assert_eq!(m[3].node_id.as_deref(), Some("ns=2;s=Line4.CNC"));
    assert_eq!(m[3].monitored_item_id, Some(11));
}

#[test]
fn item_quality_good_bad_good() {
    let mut s = Sim::new();
    let mut a = s.first_connection(1);
    s.publish(&mut a, &[1], 2, &[(1, Some(0x8031_0000), 2)], &[2]);
    s.publish(&mut a, &[2], 3, &[(1, Some(0x8031_0000), 3)], &[3]);
    s.publish(&mut a, &[3], 4, &[(1, None, 4)], &[4]);
    let q: Vec<ItemQualityInfo> = s
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ItemQuality(q) => Some(q.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(q[0].node_id.as_deref(), Some("ns=2;s=Line4.CNC"));
    assert_eq!((q[0].subscription_id, q[0].client_handle), (SUB, 1));
    assert_eq!(q[0].from.as_deref(), Some("0x00000000"));
    assert_eq!(q[0].to, "0x80310000");
    assert_eq!(q[0].to_name, Some("Bad_NoCommunication"));
    assert_eq!(q[1].from.as_deref(), Some("0x80310000"));
    assert_eq!(q[1].to, "0x00000000");
    assert_eq!(q[1].to_name, Some("Good"));
}

#[test]
fn item_whose_source_timestamp_stops_is_stale() {
    let mut s = Sim::new();
    let mut a = s.first_connection(0);
    let mut seq = 0u32;
    for n in 1..=5i64 {
        seq += 1;
        s.publish(
            &mut a,
            &[],
            seq,
            &[(1, None, n * 10_000_000), (2, None, n * 10_000_000)],
            &[seq],
        );
    }
    for n in 6..=40i64 {
        // Item 2 keeps changing; item 1 repeats its last SourceTimestamp.
        seq += 1;
        s.publish(
            &mut a,
            &[],
            seq,
            &[(1, None, 50_000_000), (2, None, n * 10_000_000)],
            &[seq],
        );
    }
    let st: Vec<ItemStaleInfo> = s
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ItemStale(x) => Some(x.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0].client_handle, 1);
    assert_eq!(st[0].node_id.as_deref(), Some("ns=2;s=Line4.CNC"));
    assert_eq!(
        st[0].since,
        Some(DateTime(50_000_000).to_rfc3339()),
        "the last SourceTimestamp that advanced"
    );
    assert!(st[0].publishes_since >= 20);
}

#[test]
fn new_event_kinds_write_the_same_json_both_ways() {
    let mut s = Sim::new();
    let a = s.first_connection(3);
    s.close(a, ClosedBy::Server, CloseReason::Rst);
    s.finish();
    let mut kinds = std::collections::BTreeSet::new();
    for e in &s.events {
        let mut line = String::new();
        e.write_json(&mut line);
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed, e.to_json(), "{line}");
        kinds.insert(e.kind.name());
    }
    assert!(
        kinds.contains("reconnect") && kinds.contains("monitored_item"),
        "{kinds:?}"
    );
    let r = s
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Reconnect(_)))
        .expect("reconnect")
        .to_json();
    for field in [
        "session_id",
        "old_channel_id",
        "new_channel_id",
        "session_reused",
        "transferred",
        "republished",
        "lost",
        "recovered",
        "downtime_ms",
        "rules",
    ] {
        assert!(r.get(field).is_some(), "{field} missing: {r}");
    }
    assert_eq!(r["rules"][0]["id"], "R2");
    assert_eq!(r["rules"][0]["ok"], true);
}

#[test]
fn tight_retry_loop_warns_r4() {
    let mut s = Sim::new();
    let a = s.first_connection(1);
    s.at(1_000);
    s.close(a, ClosedBy::Server, CloseReason::Rst);
    // Two connections that end before any session, 200 ms apart, then the real one.
    for (k, at) in [(0u16, 1_100i64), (1, 1_300)] {
        s.at(at);
        let l = s.connect(50010 + k, 20 + u32::from(k));
        s.close(l, ClosedBy::Server, CloseReason::Rst);
    }
    s.at(2_000);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.publish(&mut b, &[1], 2, &[(1, None, 2)], &[2]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let v = rule(&r[0], "R4");
    assert_eq!(v.verdict, "WARN");
    assert!(
        v.detail.starts_with("2 failed attempts, 1 of them"),
        "{}",
        v.detail
    );
    assert!(r[0].recovered);
}

#[test]
fn republish_loops_that_never_advance_or_never_stop_are_named() {
    // Stuck: the same number again and again.
    let mut s = Sim::new();
    let a = s.first_connection(1);
    s.close(a, ClosedBy::Client, CloseReason::Rst);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    for _ in 0..3 {
        s.republish(&mut b, 2, 0);
    }
    s.republish(&mut b, 3, NOT_AVAILABLE);
    s.publish(&mut b, &[], 3, &[(1, None, 3)], &[3]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(rule(&r[0], "R10").verdict, "FAIL");
    assert_eq!(patterns(&r[0]), vec!["republish_loop_stuck"]);

    // Never stops: the client goes on asking after Bad_MessageNotAvailable.
    let mut s = Sim::new();
    let a = s.first_connection(1);
    s.close(a, ClosedBy::Client, CloseReason::Rst);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.republish(&mut b, 2, NOT_AVAILABLE);
    s.republish(&mut b, 3, NOT_AVAILABLE);
    s.republish(&mut b, 4, NOT_AVAILABLE);
    s.publish(&mut b, &[], 2, &[(1, None, 2)], &[2]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let v = rule(&r[0], "R10");
    assert_eq!(v.verdict, "WARN", "{}", v.detail);
    assert!(
        v.detail.contains("2 more after Bad_MessageNotAvailable"),
        "{}",
        v.detail
    );
    assert_eq!(patterns(&r[0]), vec!["republish_loop_never_stops"]);
}

#[test]
fn publish_request_flood_is_named() {
    let mut s = Sim::new();
    let a = s.first_connection(1);
    s.close(a, ClosedBy::Client, CloseReason::Rst);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0);
    s.republish(&mut b, 2, NOT_AVAILABLE);
    for _ in 0..3 {
        let req = PublishRequest {
            request_header: req_header(5),
            subscription_acknowledgements: None,
        };
        let id = s.request(&mut b, 826, &req);
        s.fault(&mut b, id, 0x8078_0000);
    }
    s.publish(&mut b, &[], 2, &[(1, None, 2)], &[2]);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    let v = rule(&r[0], "R25");
    assert_eq!(v.verdict, "WARN");
    assert!(v.detail.starts_with("3 Publish requests"), "{}", v.detail);
    assert_eq!(patterns(&r[0]), vec!["too_many_publish_requests"]);
}

/// A small deterministic generator (xorshift64*), so the random conversations are the same on
/// every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// Thousands of random conversations of connects, cuts, sessions, activations, subscriptions,
/// Publish, Republish and transfers: no panic (overflow included: tests run with debug
/// assertions), both JSON writers agree, and every verdict is consistent with itself.
#[test]
fn random_conversations_keep_the_invariants() {
    // How often each kind of story came up, so the test is known to reach them.
    let (mut reused, mut replaced, mut never, mut quality) = (0, 0, 0, 0);
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut s = Sim::new();
        let mut links: Vec<Link> = Vec::new();
        let mut port = 50000u16;
        for _ in 0..60 {
            let op = rng.below(11);
            if links.is_empty() || op == 0 {
                port += 1;
                let ch = u32::from(port % 7);
                links.push(s.connect(port, ch));
                continue;
            }
            let i = rng.below(links.len() as u64) as usize;
            match op {
                1 => {
                    let l = links.swap_remove(i);
                    let (by, reason) = rng.pick(&[
                        (ClosedBy::Client, CloseReason::Rst),
                        (ClosedBy::Server, CloseReason::Fin),
                        (ClosedBy::Unknown, CloseReason::CaptureEnd),
                    ]);
                    s.close(l, by, reason);
                }
                2 => {
                    let t = rng.pick(&[5u32, 6, 7]);
                    s.session(&mut links[i], 100 + t, t);
                }
                3 => {
                    let t = rng.pick(&[5u32, 6, 7]);
                    let res = rng.pick(&[0u32, 0x8025_0000]);
                    s.activate(&mut links[i], t, res);
                }
                4 => {
                    let id = rng.pick(&[SUB, 8]);
                    s.create_subscription(&mut links[i], id);
                }
                5 => {
                    let sub = rng.pick(&[SUB, 8]);
                    let st = rng.pick(&[0u32, 0x8034_0000]);
                    let item = 11 + rng.below(3) as u32;
                    s.create_items(
                        &mut links[i],
                        sub,
                        &[(1, NodeId::numeric(0, 2259), st, item)],
                    );
                }
                6 => {
                    let seq = 1 + rng.below(8) as u32;
                    let acks: Vec<u32> = (0..rng.below(3)).map(|_| rng.below(8) as u32).collect();
                    let avail: Vec<u32> =
                        (0..rng.below(4)).map(|_| 1 + rng.below(8) as u32).collect();
                    let status = rng.pick(&[None, Some(0x8031_0000), Some(0x4000_0000)]);
                    let items: Vec<(u32, Option<u32>, i64)> = if rng.below(3) == 0 {
                        vec![]
                    } else {
                        vec![(1, status, rng.below(5) as i64)]
                    };
                    s.publish(&mut links[i], &acks, seq, &items, &avail);
                }
                7 => {
                    let seq = rng.below(9) as u32;
                    let res = rng.pick(&[0u32, NOT_AVAILABLE, 0x8028_0000]);
                    s.republish(&mut links[i], seq, res);
                }
                8 => {
                    let res = rng.pick(&[0u32, 0x8028_0000, 0x801F_0000]);
                    let avail: Vec<u32> =
                        (0..rng.below(3)).map(|_| 1 + rng.below(8) as u32).collect();
                    s.transfer(&mut links[i], res, &avail);
                }
                9 => {
                    let ms = s.ms + rng.below(40_000) as i64;
                    s.at(ms);
                }
                _ => {
                    let req = PublishRequest {
                        request_header: req_header(links[i].token),
                        subscription_acknowledgements: None,
                    };
                    let id = s.request(&mut links[i], 826, &req);
                    s.fault(&mut links[i], id, 0x8078_0000);
                }
            }
        }
        for l in links.drain(..) {
            s.close(l, ClosedBy::Client, CloseReason::Rst);
        }
        s.finish();
        for e in &s.events {
            let mut line = String::new();
            e.write_json(&mut line);
            let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
            assert_eq!(parsed, e.to_json(), "seed {seed}: {line}");
        }
        for r in reconnects(&s.events) {
            assert!(
                r.lost.iter().all(|n| !r.republished.contains(n)),
                "seed {seed}: {r:?}"
            );
            assert!(!r.recovered || r.lost.is_empty(), "seed {seed}: {r:?}");
            assert!(
                r.came_back || r.new_channel_id.is_none(),
                "seed {seed}: {r:?}"
            );
            assert!(!r.lost.contains(&0), "seed {seed}: 0 is never a number");
            match (r.came_back, r.session_reused) {
                (false, _) => never += 1,
                (true, true) => reused += 1,
                (true, false) => replaced += 1,
            }
        }
        quality += s
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::ItemQuality(_)))
            .count();
    }
    eprintln!(
        "reused {reused}, replaced {replaced}, never came back {never}, item_quality {quality}"
    );
    assert!(reused > 20 && replaced > 20 && never > 20 && quality > 20);
}

#[test]
fn verdict_when_the_session_timeout_runs_out_without_finish() {
    let mut s = Sim::new();
    let a = s.first_connection(2);
    s.at(5_000);
    s.close(a, ClosedBy::Server, CloseReason::Rst);
    // Another client's traffic before and after the 60 s session timeout.
    s.at(30_000);
    let mut other = s.connect_from("10.0.0.9", 60000, 9);
    assert!(
        reconnects(&s.events).is_empty(),
        "not due before the timeout"
    );
    s.at(66_000);
    s.create_session(&mut other, 300, 30);
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(!r[0].came_back);
    assert!(rule(&r[0], "R2")
        .detail
        .contains("past the session timeout"));
    let e = s
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Reconnect(_)))
        .expect("event");
    assert_eq!(
        &*e.conn, "10.0.0.1:50001->10.0.0.2:4840",
        "named by the lost connection"
    );
    // The client does come back later, with a new session: that is still one story.
    s.at(80_000);
    let mut b = s.connect(50002, 2);
    s.activate(&mut b, 5, 0x8025_0000);
    s.session(&mut b, 101, 6);
    s.create_subscription(&mut b, 8);
    s.create_items(&mut b, 8, &[(1, NodeId::string(2, "Line4.CNC"), 0, 21)]);
    s.close(b, ClosedBy::Unknown, CloseReason::CaptureEnd);
    s.finish();
    let r = reconnects(&s.events);
    assert_eq!(r.len(), 2, "no second verdict at the end: {r:?}");
    assert!(r[1].came_back);
    assert_eq!(r[1].session_id.as_deref(), Some("ns=1;i=100"));
    assert_eq!(rule(&r[1], "R5").verdict, "PASS");
}
