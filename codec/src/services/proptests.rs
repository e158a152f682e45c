//! Round trips of every typed service structure and of whole messages of every `ServiceBody`
//! variant, over the strategies of [`super::strategies`].
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::strategies::{self as s, OwnedBody, OwnedMessage};
use super::*;
use crate::types::Decode;

/// Encodes `$v`, checks `encoded_len` against the bytes written, decodes them as `$ty`
/// (consuming every byte, depth back to 0), and checks the value and its re-encoding. Evaluates
/// to the encoded bytes.
macro_rules! roundtrip {
    ($ty:ident, $v:expr) => {{
        let v = &$v;
        let bytes = Encode::to_vec(v);
        prop_assert_eq!(
            bytes.len(),
            Encode::encoded_len(v),
            "encoded_len differs from the bytes written"
        );
        let mut r = Reader::new(&bytes);
        let d = <$ty as Decode>::decode(&mut r)
            .map_err(|e| TestCaseError::fail(format!("decode failed: {e} on {bytes:02x?}")))?;
        prop_assert_eq!(r.remaining(), 0, "decode left bytes over");
        prop_assert_eq!(r.depth(), 0, "nesting depth not restored");
        prop_assert_eq!(&d, v);
        prop_assert_eq!(&Encode::to_vec(&d), &bytes);
        bytes
    }};
}

/// One proptest per structure: `test_name: Type = strategy, cases;`.
macro_rules! struct_roundtrips {
    ($( $test:ident : $ty:ident = $strategy:expr, $cases:expr; )*) => {$(
        proptest! {
            #![proptest_config(ProptestConfig::with_cases($cases))]
            #[test]
            fn $test(v in $strategy) {
                roundtrip!($ty, v);
            }
        }
    )*};
}

struct_roundtrips! {
    // common.rs
    request_header: RequestHeader = s::request_header(), 256;
    response_header: ResponseHeader = s::response_header(), 256;
    service_fault: ServiceFault = s::service_fault(), 128;
    read_value_id: ReadValueId = s::read_value_id(), 256;
    signature_data: SignatureData = s::signature_data(), 256;
    status_results: StatusResults = s::status_results(), 128;
    // secure_channel.rs
    open_secure_channel_request: OpenSecureChannelRequest = s::open_secure_channel_request(), 128;
    channel_security_token: ChannelSecurityToken = s::channel_security_token(), 256;
    open_secure_channel_response: OpenSecureChannelResponse =
        s::open_secure_channel_response(), 128;
    close_secure_channel_request: CloseSecureChannelRequest =
        s::close_secure_channel_request(), 128;
    close_secure_channel_response: CloseSecureChannelResponse =
        s::close_secure_channel_response(), 128;
    // discovery.rs
    application_description: ApplicationDescription = s::application_description(), 256;
    user_token_policy: UserTokenPolicy = s::user_token_policy(), 256;
    endpoint_description: EndpointDescription = s::endpoint_description(), 128;
    get_endpoints_request: GetEndpointsRequest = s::get_endpoints_request(), 128;
    get_endpoints_response: GetEndpointsResponse = s::get_endpoints_response(), 64;
    find_servers_request: FindServersRequest = s::find_servers_request(), 128;
    find_servers_response: FindServersResponse = s::find_servers_response(), 64;
    // session.rs
    signed_software_certificate: SignedSoftwareCertificate =
        s::signed_software_certificate(), 256;
    create_session_request: CreateSessionRequest = s::create_session_request(), 128;
    create_session_response: CreateSessionResponse = s::create_session_response(), 64;
    activate_session_request: ActivateSessionRequest = s::activate_session_request(), 128;
    activate_session_response: ActivateSessionResponse = s::activate_session_response(), 128;
    close_session_request: CloseSessionRequest = s::close_session_request(), 128;
    close_session_response: CloseSessionResponse = s::close_session_response(), 128;
    anonymous_identity_token: AnonymousIdentityToken = s::anonymous_identity_token(), 256;
    user_name_identity_token: UserNameIdentityToken = s::user_name_identity_token(), 256;
    x509_identity_token: X509IdentityToken = s::x509_identity_token(), 256;
    issued_identity_token: IssuedIdentityToken = s::issued_identity_token(), 256;
    // subscription.rs
    create_subscription_request: CreateSubscriptionRequest =
        s::create_subscription_request(), 128;
    create_subscription_response: CreateSubscriptionResponse =
        s::create_subscription_response(), 128;
    modify_subscription_request: ModifySubscriptionRequest =
        s::modify_subscription_request(), 128;
    modify_subscription_response: ModifySubscriptionResponse =
        s::modify_subscription_response(), 128;
    set_publishing_mode_request: SetPublishingModeRequest = s::set_publishing_mode_request(), 128;
    delete_subscriptions_request: DeleteSubscriptionsRequest =
        s::delete_subscriptions_request(), 128;
    monitoring_parameters: MonitoringParameters = s::monitoring_parameters(), 256;
    monitored_item_create_request: MonitoredItemCreateRequest =
        s::monitored_item_create_request(), 256;
    create_monitored_items_request: CreateMonitoredItemsRequest =
        s::create_monitored_items_request(), 128;
    monitored_item_create_result: MonitoredItemCreateResult =
        s::monitored_item_create_result(), 256;
    create_monitored_items_response: CreateMonitoredItemsResponse =
        s::create_monitored_items_response(), 128;
    delete_monitored_items_request: DeleteMonitoredItemsRequest =
        s::delete_monitored_items_request(), 128;
    monitored_item_modify_request: MonitoredItemModifyRequest =
        s::monitored_item_modify_request(), 256;
    modify_monitored_items_request: ModifyMonitoredItemsRequest =
        s::modify_monitored_items_request(), 128;
    monitored_item_modify_result: MonitoredItemModifyResult =
        s::monitored_item_modify_result(), 256;
    modify_monitored_items_response: ModifyMonitoredItemsResponse =
        s::modify_monitored_items_response(), 128;
    set_monitoring_mode_request: SetMonitoringModeRequest =
        s::set_monitoring_mode_request(), 128;
    subscription_acknowledgement: SubscriptionAcknowledgement =
        s::subscription_acknowledgement(), 256;
    publish_request: PublishRequest = s::publish_request(), 128;
    notification_message: NotificationMessage = s::notification_message(), 128;
    monitored_item_notification: MonitoredItemNotification =
        s::monitored_item_notification(), 256;
    data_change_notification: DataChangeNotification = s::data_change_notification(), 128;
    event_field_list: EventFieldList = s::event_field_list(), 128;
    event_notification_list: EventNotificationList = s::event_notification_list(), 64;
    status_change_notification: StatusChangeNotification = s::status_change_notification(), 256;
    publish_response: PublishResponse = s::publish_response(), 64;
    republish_request: RepublishRequest = s::republish_request(), 128;
    republish_response: RepublishResponse = s::republish_response(), 64;
    transfer_subscriptions_request: TransferSubscriptionsRequest =
        s::transfer_subscriptions_request(), 128;
    transfer_result: TransferResult = s::transfer_result(), 256;
    transfer_subscriptions_response: TransferSubscriptionsResponse =
        s::transfer_subscriptions_response(), 128;
    // attribute.rs
    read_request: ReadRequest = s::read_request(), 128;
    read_response: ReadResponse = s::read_response(), 64;
    write_value: WriteValue = s::write_value(), 128;
    write_request: WriteRequest = s::write_request(), 64;
    view_description: ViewDescription = s::view_description(), 256;
    browse_description: BrowseDescription = s::browse_description(), 256;
    browse_request: BrowseRequest = s::browse_request(), 128;
    reference_description: ReferenceDescription = s::reference_description(), 256;
    browse_result: BrowseResult = s::browse_result(), 128;
    browse_response: BrowseResponse = s::browse_response(), 64;
    call_method_request: CallMethodRequest = s::call_method_request(), 128;
    call_request: CallRequest = s::call_request(), 64;
    call_method_result: CallMethodResult = s::call_method_result(), 128;
    call_response: CallResponse = s::call_response(), 64;
}

/// Encodes the message, parses it back with [`parse_message`] and checks the value, the
/// length, the re-encoding, and that [`summarize_message`] agrees with the full decode.
fn check_message(om: &OwnedMessage) -> Result<(), TestCaseError> {
    let m = om.message();
    let bytes = m.to_vec();
    prop_assert_eq!(bytes.len(), m.encoded_len(), "encoded_len differs");
    let mut r = Reader::new(&bytes);
    let back = parse_message(&mut r)
        .map_err(|e| TestCaseError::fail(format!("parse_message failed: {e} on {bytes:02x?}")))?;
    prop_assert_eq!(r.remaining(), 0);
    prop_assert_eq!(r.depth(), 0);
    prop_assert_eq!(&back, &m);
    prop_assert_eq!(&back.to_vec(), &bytes);
    // The typed variants decode as themselves, the rest as Other.
    prop_assert_eq!(
        matches!(back.body, ServiceBody::Other(_)),
        matches!(om.body, OwnedBody::Other { .. })
    );
    let summary = summarize_message(&bytes)
        .map_err(|e| TestCaseError::fail(format!("summarize_message failed: {e}")))?;
    prop_assert_eq!(
        summary,
        MessageSummary {
            type_id: back.type_id_numeric(),
            request_handle: back.request_handle(),
            service_result: back.service_result(),
        }
    );
    if let Some(h) = back.body.request_header() {
        prop_assert!(back.service_name().is_some_and(|n| n.ends_with("Request")));
        prop_assert_eq!(back.request_handle(), Some(h.request_handle));
        prop_assert_eq!(back.service_result(), None);
    }
    Ok(())
}

/// One proptest per typed `ServiceBody` variant: `test_name: Variant(strategy), cases;`.
macro_rules! message_roundtrips {
    ($( $test:ident : $variant:ident ( $strategy:expr ), $cases:expr; )*) => {$(
        proptest! {
            #![proptest_config(ProptestConfig::with_cases($cases))]
            #[test]
            fn $test(m in s::typed_message($strategy.prop_map(ServiceBody::$variant))) {
                check_message(&m)?;
            }
        }
    )*};
}

message_roundtrips! {
    message_open_secure_channel_request:
        OpenSecureChannelRequest(s::open_secure_channel_request()), 32;
    message_open_secure_channel_response:
        OpenSecureChannelResponse(s::open_secure_channel_response()), 32;
    message_close_secure_channel_request:
        CloseSecureChannelRequest(s::close_secure_channel_request()), 32;
    message_close_secure_channel_response:
        CloseSecureChannelResponse(s::close_secure_channel_response()), 32;
    message_service_fault: ServiceFault(s::service_fault()), 32;
    message_get_endpoints_request: GetEndpointsRequest(s::get_endpoints_request()), 32;
    message_get_endpoints_response: GetEndpointsResponse(s::get_endpoints_response()), 32;
    message_find_servers_request: FindServersRequest(s::find_servers_request()), 32;
    message_find_servers_response: FindServersResponse(s::find_servers_response()), 32;
    message_create_session_request: CreateSessionRequest(s::create_session_request()), 32;
    message_create_session_response: CreateSessionResponse(s::create_session_response()), 32;
    message_activate_session_request:
        ActivateSessionRequest(s::activate_session_request()), 32;
    message_activate_session_response:
        ActivateSessionResponse(s::activate_session_response()), 32;
    message_close_session_request: CloseSessionRequest(s::close_session_request()), 32;
    message_close_session_response: CloseSessionResponse(s::close_session_response()), 32;
    message_create_subscription_request:
        CreateSubscriptionRequest(s::create_subscription_request()), 32;
    message_create_subscription_response:
        CreateSubscriptionResponse(s::create_subscription_response()), 32;
    message_modify_subscription_request:
        ModifySubscriptionRequest(s::modify_subscription_request()), 32;
    message_modify_subscription_response:
        ModifySubscriptionResponse(s::modify_subscription_response()), 32;
    message_set_publishing_mode_request:
        SetPublishingModeRequest(s::set_publishing_mode_request()), 32;
    message_set_publishing_mode_response: SetPublishingModeResponse(s::status_results()), 32;
    message_delete_subscriptions_request:
        DeleteSubscriptionsRequest(s::delete_subscriptions_request()), 32;
    message_delete_subscriptions_response: DeleteSubscriptionsResponse(s::status_results()), 32;
    message_create_monitored_items_request:
        CreateMonitoredItemsRequest(s::create_monitored_items_request()), 32;
    message_create_monitored_items_response:
        CreateMonitoredItemsResponse(s::create_monitored_items_response()), 32;
    message_delete_monitored_items_request:
        DeleteMonitoredItemsRequest(s::delete_monitored_items_request()), 32;
    message_delete_monitored_items_response:
        DeleteMonitoredItemsResponse(s::status_results()), 32;
    message_modify_monitored_items_request:
        ModifyMonitoredItemsRequest(s::modify_monitored_items_request()), 32;
    message_modify_monitored_items_response:
        ModifyMonitoredItemsResponse(s::modify_monitored_items_response()), 32;
    message_set_monitoring_mode_request:
        SetMonitoringModeRequest(s::set_monitoring_mode_request()), 32;
    message_set_monitoring_mode_response: SetMonitoringModeResponse(s::status_results()), 32;
    message_publish_request: PublishRequest(s::publish_request()), 32;
    message_publish_response: PublishResponse(s::publish_response()), 32;
    message_republish_request: RepublishRequest(s::republish_request()), 32;
    message_republish_response: RepublishResponse(s::republish_response()), 32;
    message_transfer_subscriptions_request:
        TransferSubscriptionsRequest(s::transfer_subscriptions_request()), 32;
    message_transfer_subscriptions_response:
        TransferSubscriptionsResponse(s::transfer_subscriptions_response()), 32;
    message_read_request: ReadRequest(s::read_request()), 32;
    message_read_response: ReadResponse(s::read_response()), 32;
    message_write_request: WriteRequest(s::write_request()), 32;
    message_write_response: WriteResponse(s::status_results()), 32;
    message_browse_request: BrowseRequest(s::browse_request()), 32;
    message_browse_response: BrowseResponse(s::browse_response()), 32;
    message_call_request: CallRequest(s::call_request()), 32;
    message_call_response: CallResponse(s::call_response()), 32;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `Other` for every known service without a typed decoder, with its request or response
    /// header and random rest bytes.
    #[test]
    fn message_other_with_header(m in s::untyped_message()) {
        check_message(&m)?;
        let back = m.message();
        let OwnedBody::Other { header, .. } = &m.body else { panic!() };
        match header {
            Header::Request(h) => prop_assert_eq!(back.request_handle(), Some(h.request_handle)),
            Header::Response(h) => {
                prop_assert_eq!(back.request_handle(), Some(h.request_handle));
                prop_assert_eq!(back.service_result(), Some(h.service_result));
            }
            Header::Unknown => prop_assert!(false, "untyped_message without a header"),
        }
    }

    /// `Other` for a type id that names no service: every byte after it kept raw.
    #[test]
    fn message_unknown_type_id(m in s::unknown_message()) {
        check_message(&m)?;
        let back = m.message();
        prop_assert_eq!(back.service_name(), None);
        prop_assert_eq!(back.request_handle(), None);
        prop_assert_eq!(back.service_result(), None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// NotificationData carrying real encoded notifications: each decodes back to what was
    /// encoded, and `notification_count` counts their items and events.
    #[test]
    fn notification_data_decodes((m, expected) in s::notification_message_with_expected()) {
        let bytes = roundtrip!(NotificationMessage, m);
        let back = NotificationMessage::decode(&mut Reader::new(&bytes)).unwrap();
        let data = back.notification_data.as_deref().unwrap_or_default();
        prop_assert_eq!(data.len(), expected.len());
        let mut count = 0u64;
        for (eo, want) in data.iter().zip(&expected) {
            let got = parse_notification(eo)
                .map_err(|e| TestCaseError::fail(format!("parse_notification failed: {e}")))?;
            prop_assert_eq!(&got, want);
            count += match want {
                Notification::DataChange(d) => d.monitored_items.as_ref().map_or(0, Vec::len),
                Notification::Event(e) => e.events.as_ref().map_or(0, Vec::len),
                Notification::StatusChange(_) => 1,
                Notification::Other => 0,
            } as u64;
        }
        prop_assert_eq!(back.notification_count(), count);
        prop_assert_eq!(m.notification_count(), count);
        prop_assert_eq!(back.is_keep_alive(), expected.is_empty());
    }

    /// Each of the four identity tokens, encoded into UserIdentityToken, decodes back equal;
    /// null and foreign ExtensionObjects give None and Unknown.
    #[test]
    fn identity_token_decodes((req, want) in s::activate_session_request_with_identity()) {
        let bytes = roundtrip!(ActivateSessionRequest, req);
        let back = ActivateSessionRequest::decode(&mut Reader::new(&bytes)).unwrap();
        let got = back
            .identity_token()
            .map_err(|e| TestCaseError::fail(format!("identity_token failed: {e}")))?;
        prop_assert_eq!(got.kind(), want.kind());
        prop_assert_eq!(got, want);
    }
}

/// The typed ids of the strategies are exactly the ones `parse_message` dispatches on, and
/// every known service id is either typed or decoded as `Other` with a header.
#[test]
fn typed_and_untyped_ids_partition_the_services() {
    let untyped = s::untyped_service_ids();
    assert!(!untyped.is_empty());
    for i in s::TYPED_IDS {
        assert!(crate::ids::service_name(i).is_some(), "{i}");
        assert!(!untyped.contains(&i), "{i}");
    }
    let mut all: Vec<u32> = s::TYPED_IDS.to_vec();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), s::TYPED_IDS.len());
}
