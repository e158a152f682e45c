#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use super::*;
use crate::types::{
    ByteString, DataValue, DateTime, ExtensionObject, ExtensionObjectBody, UaString, Variant,
};
use std::borrow::Cow;

fn response_header(handle: u32, result: u32) -> ResponseHeader<'static> {
    ResponseHeader {
        timestamp: DateTime(133_000_000_000_000_000),
        request_handle: handle,
        service_result: StatusCode(result),
        service_diagnostics: Default::default(),
        string_table: None,
        additional_header: ExtensionObject::default(),
    }
}

/// A PublishResponse with `n` Double data changes, as the benchmark and proptests use.
pub(crate) fn publish_response(n: usize) -> Message<'static> {
    let items: Vec<MonitoredItemNotification<'static>> = (0..n)
        .map(|i| MonitoredItemNotification {
            client_handle: i as u32,
            value: DataValue {
                value: Some(Variant::Double(i as f64 * 0.5)),
                source_timestamp: Some(DateTime(133_000_000_000_000_000 + i as i64)),
                server_timestamp: Some(DateTime(133_000_000_000_000_100 + i as i64)),
                ..Default::default()
            },
        })
        .collect();
    let dcn = DataChangeNotification {
        monitored_items: Some(items),
        diagnostic_infos: Some(vec![]),
    };
    let body = dcn.to_vec();
    Message {
        type_id: NodeId::numeric(0, ids::service::PUBLISH_RESPONSE),
        body: ServiceBody::PublishResponse(PublishResponse {
            response_header: response_header(42, 0),
            subscription_id: 7,
            available_sequence_numbers: Some(vec![12]),
            more_notifications: false,
            notification_message: NotificationMessage {
                sequence_number: 12,
                publish_time: DateTime(133_000_000_000_000_000),
                notification_data: Some(vec![ExtensionObject {
                    type_id: NodeId::numeric(0, ids::structure::DATA_CHANGE_NOTIFICATION),
                    body: ExtensionObjectBody::ByteString(Cow::Owned(body)),
                }]),
            },
            results: Some(vec![StatusCode(0)]),
            diagnostic_infos: Some(vec![]),
        }),
    }
}

#[test]
fn publish_response_round_trips_and_summarises() {
    let m = publish_response(100);
    let bytes = m.to_vec();
    assert_eq!(bytes.len(), m.encoded_len());
    assert_eq!(&bytes[..4], &[0x01, 0x00, 0x3d, 0x03]); // i=829 FourByte
    let back = parse_message(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.service_name(), Some("PublishResponse"));
    assert_eq!(back.request_handle(), Some(42));
    assert_eq!(back.notification_sequence_number(), Some(12));
    let ServiceBody::PublishResponse(p) = &back.body else {
        panic!()
    };
    assert_eq!(p.notification_message.notification_count(), 100);
    assert!(!p.notification_message.is_keep_alive());
    let eo = &p.notification_message.notification_data.as_ref().unwrap()[0];
    let Notification::DataChange(d) = parse_notification(eo).unwrap() else {
        panic!()
    };
    assert_eq!(d.monitored_items.as_ref().unwrap().len(), 100);
    let s = summarize_message(&bytes).unwrap();
    assert_eq!(s.type_id, Some(829));
    assert_eq!(s.request_handle, Some(42));
    assert_eq!(s.service_result, Some(StatusCode(0)));
}

#[test]
fn unknown_services_keep_their_bytes() {
    // A HistoryReadRequest (664) is not typed: the header is decoded, the rest kept raw.
    let header = RequestHeader {
        authentication_token: NodeId::numeric(1, 99),
        timestamp: DateTime(1),
        request_handle: 5,
        return_diagnostics: 0,
        audit_entry_id: UaString::null(),
        timeout_hint: 1000,
        additional_header: ExtensionObject::default(),
    };
    let mut bytes = NodeId::numeric(0, 664).to_vec();
    header.encode(&mut bytes);
    bytes.extend_from_slice(&[1, 2, 3, 4, 5]);
    let m = parse_message(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(m.service_name(), Some("HistoryReadRequest"));
    assert_eq!(m.request_handle(), Some(5));
    let ServiceBody::Other(raw) = &m.body else {
        panic!()
    };
    assert_eq!(raw.rest, &[1, 2, 3, 4, 5]);
    assert_eq!(m.to_vec(), bytes);
    // An id nobody knows: nothing but the raw bytes.
    let mut bytes = NodeId::numeric(0, 60000).to_vec();
    bytes.extend_from_slice(&[9, 9]);
    let m = parse_message(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(m.service_name(), None);
    assert_eq!(m.to_vec(), bytes);
}

#[test]
fn user_name_token_hides_the_password() {
    let token = UserNameIdentityToken {
        policy_id: UaString::from("username"),
        user_name: UaString::from("operator"),
        password: Secret(ByteString::from(&b"hunter2"[..])),
        encryption_algorithm: UaString::null(),
    };
    let shown = format!("{token:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("7 bytes"));
    let req = ActivateSessionRequest {
        request_header: RequestHeader {
            authentication_token: NodeId::numeric(1, 1),
            timestamp: DateTime(0),
            request_handle: 1,
            return_diagnostics: 0,
            audit_entry_id: UaString::null(),
            timeout_hint: 0,
            additional_header: ExtensionObject::default(),
        },
        client_signature: SignatureData {
            algorithm: UaString::null(),
            signature: ByteString::null(),
        },
        client_software_certificates: None,
        locale_ids: Some(vec![]),
        user_identity_token: ExtensionObject {
            type_id: NodeId::numeric(0, ids::structure::USER_NAME_IDENTITY_TOKEN),
            body: ExtensionObjectBody::ByteString(Cow::Owned(token.to_vec())),
        },
        user_token_signature: SignatureData {
            algorithm: UaString::null(),
            signature: ByteString::null(),
        },
    };
    let IdentityToken::UserName(t) = req.identity_token().unwrap() else {
        panic!()
    };
    assert_eq!(t.user_name.to_string(), "operator");
    assert_eq!(req.identity_token().unwrap().kind(), "username");
}

#[test]
fn truncated_bodies_fail_with_offsets() {
    let bytes = publish_response(3).to_vec();
    for cut in [1, 4, 10, bytes.len() / 2, bytes.len() - 1] {
        let err = parse_message(&mut Reader::new(&bytes[..cut])).unwrap_err();
        assert!(err.offset <= cut, "{err} for cut {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let err = parse_message(&mut Reader::new(&longer)).unwrap_err();
    assert_eq!(err.offset, bytes.len());
}
