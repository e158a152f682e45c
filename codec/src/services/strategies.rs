//! proptest strategies for every typed service structure (owned, `'static` values), for whole
//! [`Message`]s of every [`ServiceBody`] variant, and for NotificationData and user identity
//! tokens carried as real encoded bodies inside ExtensionObjects.
//!
//! Built on the built-in type strategies of [`crate::types::strategies`]. Doubles are never NaN
//! (NaN is unequal to itself). Each structure strategy builds its value with a full struct
//! literal, so a field added to a `ua_struct!` declaration fails to compile here until it is
//! generated too.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    dead_code
)]

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::ids::{self, service as id, structure};
use crate::types::strategies::{
    byte_string, data_value, date_time, diagnostic_info, double, expanded_node_id,
    extension_object, localized_text, node_id, qualified_name, ua_string, variant,
};
use crate::types::{Array, ExtensionObject, ExtensionObjectBody, NodeId, NodeIdEncoding};

/// Builds a strategy for a struct from one strategy per field: `strategy!(T { f: s, .. })`.
macro_rules! strategy {
    ($name:ident { $($field:ident : $s:expr),* $(,)? }) => {
        ($($s,)*)
            .prop_map(|($($field,)*)| $name { $($field,)* })
            .boxed()
    };
}

/// An array field: null, or 0..=`max` elements.
pub(crate) fn arr<T: std::fmt::Debug + Clone + 'static>(
    elem: impl Strategy<Value = T> + 'static,
    max: usize,
) -> BoxedStrategy<Array<T>> {
    prop_oneof![1 => Just(None), 6 => vec(elem, 0..=max).prop_map(Some)].boxed()
}

/// Any StatusCode.
pub(crate) fn status_code() -> impl Strategy<Value = StatusCode> {
    any::<u32>().prop_map(StatusCode)
}

/// Any Secret.
pub(crate) fn secret() -> impl Strategy<Value = Secret<'static>> {
    byte_string().prop_map(Secret)
}

/// A wire form for a ns=0 numeric NodeId (applied only where it can carry the id).
pub(crate) fn numeric_form() -> impl Strategy<Value = NodeIdEncoding> {
    select(vec![
        NodeIdEncoding::TwoByte,
        NodeIdEncoding::FourByte,
        NodeIdEncoding::Numeric,
    ])
}

/// `i=id` in ns=0, in `form` if that can carry it, else in the smallest form.
pub(crate) fn ns0(id: u32, form: NodeIdEncoding) -> NodeId<'static> {
    let mut n = NodeId::numeric(0, id);
    if form.can_represent(0, &n.identifier) {
        n.encoding = form;
    }
    n
}

// ---- common.rs ----

/// Any RequestHeader.
pub(crate) fn request_header() -> BoxedStrategy<RequestHeader<'static>> {
    strategy!(RequestHeader {
        authentication_token: node_id(),
        timestamp: date_time(),
        request_handle: any::<u32>(),
        return_diagnostics: any::<u32>(),
        audit_entry_id: ua_string(),
        timeout_hint: any::<u32>(),
        additional_header: extension_object(),
    })
}

/// Any ResponseHeader.
pub(crate) fn response_header() -> BoxedStrategy<ResponseHeader<'static>> {
    strategy!(ResponseHeader {
        timestamp: date_time(),
        request_handle: any::<u32>(),
        service_result: status_code(),
        service_diagnostics: diagnostic_info(),
        string_table: arr(ua_string(), 4),
        additional_header: extension_object(),
    })
}

/// Any ServiceFault.
pub(crate) fn service_fault() -> BoxedStrategy<ServiceFault<'static>> {
    strategy!(ServiceFault {
        response_header: response_header(),
    })
}

/// Any ReadValueId.
pub(crate) fn read_value_id() -> BoxedStrategy<ReadValueId<'static>> {
    strategy!(ReadValueId {
        node_id: node_id(),
        attribute_id: any::<u32>(),
        index_range: ua_string(),
        data_encoding: qualified_name(),
    })
}

/// Any SignatureData.
pub(crate) fn signature_data() -> BoxedStrategy<SignatureData<'static>> {
    strategy!(SignatureData {
        algorithm: ua_string(),
        signature: byte_string(),
    })
}

/// Any StatusResults.
pub(crate) fn status_results() -> BoxedStrategy<StatusResults<'static>> {
    strategy!(StatusResults {
        response_header: response_header(),
        results: arr(status_code(), 5),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

// ---- secure_channel.rs ----

/// Any OpenSecureChannelRequest.
pub(crate) fn open_secure_channel_request() -> BoxedStrategy<OpenSecureChannelRequest<'static>> {
    strategy!(OpenSecureChannelRequest {
        request_header: request_header(),
        client_protocol_version: any::<u32>(),
        request_type: any::<i32>(),
        security_mode: any::<i32>(),
        client_nonce: byte_string(),
        requested_lifetime: any::<u32>(),
    })
}

/// Any ChannelSecurityToken.
pub(crate) fn channel_security_token() -> BoxedStrategy<ChannelSecurityToken> {
    strategy!(ChannelSecurityToken {
        channel_id: any::<u32>(),
        token_id: any::<u32>(),
        created_at: date_time(),
        revised_lifetime: any::<u32>(),
    })
}

/// Any OpenSecureChannelResponse.
pub(crate) fn open_secure_channel_response() -> BoxedStrategy<OpenSecureChannelResponse<'static>> {
    strategy!(OpenSecureChannelResponse {
        response_header: response_header(),
        server_protocol_version: any::<u32>(),
        security_token: channel_security_token(),
        server_nonce: byte_string(),
    })
}

/// Any CloseSecureChannelRequest.
pub(crate) fn close_secure_channel_request() -> BoxedStrategy<CloseSecureChannelRequest<'static>> {
    strategy!(CloseSecureChannelRequest {
        request_header: request_header(),
    })
}

/// Any CloseSecureChannelResponse.
pub(crate) fn close_secure_channel_response() -> BoxedStrategy<CloseSecureChannelResponse<'static>>
{
    strategy!(CloseSecureChannelResponse {
        response_header: response_header(),
    })
}

// ---- discovery.rs ----

/// Any ApplicationDescription.
pub(crate) fn application_description() -> BoxedStrategy<ApplicationDescription<'static>> {
    strategy!(ApplicationDescription {
        application_uri: ua_string(),
        product_uri: ua_string(),
        application_name: localized_text(),
        application_type: any::<i32>(),
        gateway_server_uri: ua_string(),
        discovery_profile_uri: ua_string(),
        discovery_urls: arr(ua_string(), 3),
    })
}

/// Any UserTokenPolicy.
pub(crate) fn user_token_policy() -> BoxedStrategy<UserTokenPolicy<'static>> {
    strategy!(UserTokenPolicy {
        policy_id: ua_string(),
        token_type: any::<i32>(),
        issued_token_type: ua_string(),
        issuer_endpoint_url: ua_string(),
        security_policy_uri: ua_string(),
    })
}

/// Any EndpointDescription.
pub(crate) fn endpoint_description() -> BoxedStrategy<EndpointDescription<'static>> {
    strategy!(EndpointDescription {
        endpoint_url: ua_string(),
        server: application_description(),
        server_certificate: byte_string(),
        security_mode: any::<i32>(),
        security_policy_uri: ua_string(),
        user_identity_tokens: arr(user_token_policy(), 3),
        transport_profile_uri: ua_string(),
        security_level: any::<u8>(),
    })
}

/// Any GetEndpointsRequest.
pub(crate) fn get_endpoints_request() -> BoxedStrategy<GetEndpointsRequest<'static>> {
    strategy!(GetEndpointsRequest {
        request_header: request_header(),
        endpoint_url: ua_string(),
        locale_ids: arr(ua_string(), 3),
        profile_uris: arr(ua_string(), 3),
    })
}

/// Any GetEndpointsResponse.
pub(crate) fn get_endpoints_response() -> BoxedStrategy<GetEndpointsResponse<'static>> {
    strategy!(GetEndpointsResponse {
        response_header: response_header(),
        endpoints: arr(endpoint_description(), 3),
    })
}

/// Any FindServersRequest.
pub(crate) fn find_servers_request() -> BoxedStrategy<FindServersRequest<'static>> {
    strategy!(FindServersRequest {
        request_header: request_header(),
        endpoint_url: ua_string(),
        locale_ids: arr(ua_string(), 3),
        server_uris: arr(ua_string(), 3),
    })
}

/// Any FindServersResponse.
pub(crate) fn find_servers_response() -> BoxedStrategy<FindServersResponse<'static>> {
    strategy!(FindServersResponse {
        response_header: response_header(),
        servers: arr(application_description(), 3),
    })
}

// ---- session.rs ----

/// Any SignedSoftwareCertificate.
pub(crate) fn signed_software_certificate() -> BoxedStrategy<SignedSoftwareCertificate<'static>> {
    strategy!(SignedSoftwareCertificate {
        certificate_data: byte_string(),
        signature: byte_string(),
    })
}

/// Any CreateSessionRequest.
pub(crate) fn create_session_request() -> BoxedStrategy<CreateSessionRequest<'static>> {
    strategy!(CreateSessionRequest {
        request_header: request_header(),
        client_description: application_description(),
        server_uri: ua_string(),
        endpoint_url: ua_string(),
        session_name: ua_string(),
        client_nonce: secret(),
        client_certificate: byte_string(),
        requested_session_timeout: double(),
        max_response_message_size: any::<u32>(),
    })
}

/// Any CreateSessionResponse.
pub(crate) fn create_session_response() -> BoxedStrategy<CreateSessionResponse<'static>> {
    strategy!(CreateSessionResponse {
        response_header: response_header(),
        session_id: node_id(),
        authentication_token: node_id(),
        revised_session_timeout: double(),
        server_nonce: secret(),
        server_certificate: byte_string(),
        server_endpoints: arr(endpoint_description(), 2),
        server_software_certificates: arr(signed_software_certificate(), 2),
        server_signature: signature_data(),
        max_request_message_size: any::<u32>(),
    })
}

/// Any AnonymousIdentityToken.
pub(crate) fn anonymous_identity_token() -> BoxedStrategy<AnonymousIdentityToken<'static>> {
    strategy!(AnonymousIdentityToken {
        policy_id: ua_string(),
    })
}

/// Any UserNameIdentityToken.
pub(crate) fn user_name_identity_token() -> BoxedStrategy<UserNameIdentityToken<'static>> {
    strategy!(UserNameIdentityToken {
        policy_id: ua_string(),
        user_name: ua_string(),
        password: secret(),
        encryption_algorithm: ua_string(),
    })
}

/// Any X509IdentityToken.
pub(crate) fn x509_identity_token() -> BoxedStrategy<X509IdentityToken<'static>> {
    strategy!(X509IdentityToken {
        policy_id: ua_string(),
        certificate_data: byte_string(),
    })
}

/// Any IssuedIdentityToken.
pub(crate) fn issued_identity_token() -> BoxedStrategy<IssuedIdentityToken<'static>> {
    strategy!(IssuedIdentityToken {
        policy_id: ua_string(),
        token_data: secret(),
        encryption_algorithm: ua_string(),
    })
}

/// True for the ns=0 ids [`ActivateSessionRequest::identity_token`] decodes a binary body for.
fn is_identity_token_id(id: Option<u32>) -> bool {
    matches!(
        id,
        Some(
            structure::ANONYMOUS_IDENTITY_TOKEN
                | structure::USER_NAME_IDENTITY_TOKEN
                | structure::X509_IDENTITY_TOKEN
                | structure::ISSUED_IDENTITY_TOKEN
        )
    )
}

/// A UserIdentityToken ExtensionObject and the [`IdentityToken`] it must decode to: each of the
/// four tokens encoded with its type id (any ns=0 wire form), the null ExtensionObject, `i=0`
/// with a body, and foreign ExtensionObjects (Unknown).
pub(crate) fn identity_token_object(
) -> BoxedStrategy<(ExtensionObject<'static>, IdentityToken<'static>)> {
    fn encoded<T: Encode>(id: u32, form: NodeIdEncoding, t: &T) -> ExtensionObject<'static> {
        ExtensionObject::binary(ns0(id, form), t.to_vec())
    }
    let unknown = extension_object()
        .prop_filter("must not decode to a token or None", |eo| {
            let id = eo.type_id.as_ns0_numeric();
            id != Some(0) && !(eo.binary_body().is_some() && is_identity_token_id(id))
        })
        .prop_map(|eo| (eo, IdentityToken::Unknown));
    prop_oneof![
        (numeric_form(), anonymous_identity_token()).prop_map(|(f, t)| (
            encoded(structure::ANONYMOUS_IDENTITY_TOKEN, f, &t),
            IdentityToken::Anonymous(t)
        )),
        (numeric_form(), user_name_identity_token()).prop_map(|(f, t)| (
            encoded(structure::USER_NAME_IDENTITY_TOKEN, f, &t),
            IdentityToken::UserName(t)
        )),
        (numeric_form(), x509_identity_token()).prop_map(|(f, t)| (
            encoded(structure::X509_IDENTITY_TOKEN, f, &t),
            IdentityToken::X509(t)
        )),
        (numeric_form(), issued_identity_token()).prop_map(|(f, t)| (
            encoded(structure::ISSUED_IDENTITY_TOKEN, f, &t),
            IdentityToken::Issued(t)
        )),
        (numeric_form(), prop::option::of(vec(any::<u8>(), 0..8))).prop_map(|(f, body)| (
            ExtensionObject {
                type_id: ns0(0, f),
                body: body.map_or(ExtensionObjectBody::None, |b| {
                    ExtensionObjectBody::ByteString(b.into())
                }),
            },
            IdentityToken::None
        )),
        unknown,
    ]
    .boxed()
}

/// Any ActivateSessionRequest with the IdentityToken its user_identity_token decodes to.
pub(crate) fn activate_session_request_with_identity(
) -> BoxedStrategy<(ActivateSessionRequest<'static>, IdentityToken<'static>)> {
    (
        request_header(),
        signature_data(),
        arr(signed_software_certificate(), 2),
        arr(ua_string(), 3),
        identity_token_object(),
        signature_data(),
    )
        .prop_map(
            |(
                request_header,
                client_signature,
                client_software_certificates,
                locale_ids,
                (user_identity_token, identity),
                user_token_signature,
            )| {
                (
                    ActivateSessionRequest {
                        request_header,
                        client_signature,
                        client_software_certificates,
                        locale_ids,
                        user_identity_token,
                        user_token_signature,
                    },
                    identity,
                )
            },
        )
        .boxed()
}

/// Any ActivateSessionRequest (real identity tokens or arbitrary ExtensionObjects).
pub(crate) fn activate_session_request() -> BoxedStrategy<ActivateSessionRequest<'static>> {
    activate_session_request_with_identity()
        .prop_map(|(r, _)| r)
        .boxed()
}

/// Any ActivateSessionResponse.
pub(crate) fn activate_session_response() -> BoxedStrategy<ActivateSessionResponse<'static>> {
    strategy!(ActivateSessionResponse {
        response_header: response_header(),
        server_nonce: secret(),
        results: arr(status_code(), 4),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

/// Any CloseSessionRequest.
pub(crate) fn close_session_request() -> BoxedStrategy<CloseSessionRequest<'static>> {
    strategy!(CloseSessionRequest {
        request_header: request_header(),
        delete_subscriptions: any::<bool>(),
    })
}

/// Any CloseSessionResponse.
pub(crate) fn close_session_response() -> BoxedStrategy<CloseSessionResponse<'static>> {
    strategy!(CloseSessionResponse {
        response_header: response_header(),
    })
}

// ---- subscription.rs ----

/// Any CreateSubscriptionRequest.
pub(crate) fn create_subscription_request() -> BoxedStrategy<CreateSubscriptionRequest<'static>> {
    strategy!(CreateSubscriptionRequest {
        request_header: request_header(),
        requested_publishing_interval: double(),
        requested_lifetime_count: any::<u32>(),
        requested_max_keep_alive_count: any::<u32>(),
        max_notifications_per_publish: any::<u32>(),
        publishing_enabled: any::<bool>(),
        priority: any::<u8>(),
    })
}

/// Any CreateSubscriptionResponse.
pub(crate) fn create_subscription_response() -> BoxedStrategy<CreateSubscriptionResponse<'static>> {
    strategy!(CreateSubscriptionResponse {
        response_header: response_header(),
        subscription_id: any::<u32>(),
        revised_publishing_interval: double(),
        revised_lifetime_count: any::<u32>(),
        revised_max_keep_alive_count: any::<u32>(),
    })
}

/// Any ModifySubscriptionRequest.
pub(crate) fn modify_subscription_request() -> BoxedStrategy<ModifySubscriptionRequest<'static>> {
    strategy!(ModifySubscriptionRequest {
        request_header: request_header(),
        subscription_id: any::<u32>(),
        requested_publishing_interval: double(),
        requested_lifetime_count: any::<u32>(),
        requested_max_keep_alive_count: any::<u32>(),
        max_notifications_per_publish: any::<u32>(),
        priority: any::<u8>(),
    })
}

/// Any ModifySubscriptionResponse.
pub(crate) fn modify_subscription_response() -> BoxedStrategy<ModifySubscriptionResponse<'static>> {
    strategy!(ModifySubscriptionResponse {
        response_header: response_header(),
        revised_publishing_interval: double(),
        revised_lifetime_count: any::<u32>(),
        revised_max_keep_alive_count: any::<u32>(),
    })
}

/// Any SetPublishingModeRequest.
pub(crate) fn set_publishing_mode_request() -> BoxedStrategy<SetPublishingModeRequest<'static>> {
    strategy!(SetPublishingModeRequest {
        request_header: request_header(),
        publishing_enabled: any::<bool>(),
        subscription_ids: arr(any::<u32>(), 5),
    })
}

/// Any DeleteSubscriptionsRequest.
pub(crate) fn delete_subscriptions_request() -> BoxedStrategy<DeleteSubscriptionsRequest<'static>> {
    strategy!(DeleteSubscriptionsRequest {
        request_header: request_header(),
        subscription_ids: arr(any::<u32>(), 5),
    })
}

/// Any MonitoringParameters.
pub(crate) fn monitoring_parameters() -> BoxedStrategy<MonitoringParameters<'static>> {
    strategy!(MonitoringParameters {
        client_handle: any::<u32>(),
        sampling_interval: double(),
        filter: extension_object(),
        queue_size: any::<u32>(),
        discard_oldest: any::<bool>(),
    })
}

/// Any MonitoredItemCreateRequest.
pub(crate) fn monitored_item_create_request() -> BoxedStrategy<MonitoredItemCreateRequest<'static>>
{
    strategy!(MonitoredItemCreateRequest {
        item_to_monitor: read_value_id(),
        monitoring_mode: any::<i32>(),
        requested_parameters: monitoring_parameters(),
    })
}

/// Any CreateMonitoredItemsRequest.
pub(crate) fn create_monitored_items_request() -> BoxedStrategy<CreateMonitoredItemsRequest<'static>>
{
    strategy!(CreateMonitoredItemsRequest {
        request_header: request_header(),
        subscription_id: any::<u32>(),
        timestamps_to_return: any::<i32>(),
        items_to_create: arr(monitored_item_create_request(), 3),
    })
}

/// Any MonitoredItemCreateResult.
pub(crate) fn monitored_item_create_result() -> BoxedStrategy<MonitoredItemCreateResult<'static>> {
    strategy!(MonitoredItemCreateResult {
        status_code: status_code(),
        monitored_item_id: any::<u32>(),
        revised_sampling_interval: double(),
        revised_queue_size: any::<u32>(),
        filter_result: extension_object(),
    })
}

/// Any CreateMonitoredItemsResponse.
pub(crate) fn create_monitored_items_response(
) -> BoxedStrategy<CreateMonitoredItemsResponse<'static>> {
    strategy!(CreateMonitoredItemsResponse {
        response_header: response_header(),
        results: arr(monitored_item_create_result(), 3),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

/// Any DeleteMonitoredItemsRequest.
pub(crate) fn delete_monitored_items_request() -> BoxedStrategy<DeleteMonitoredItemsRequest<'static>>
{
    strategy!(DeleteMonitoredItemsRequest {
        request_header: request_header(),
        subscription_id: any::<u32>(),
        monitored_item_ids: arr(any::<u32>(), 5),
    })
}

/// Any MonitoredItemModifyRequest.
pub(crate) fn monitored_item_modify_request() -> BoxedStrategy<MonitoredItemModifyRequest<'static>>
{
    strategy!(MonitoredItemModifyRequest {
        monitored_item_id: any::<u32>(),
        requested_parameters: monitoring_parameters(),
    })
}

/// Any ModifyMonitoredItemsRequest.
pub(crate) fn modify_monitored_items_request() -> BoxedStrategy<ModifyMonitoredItemsRequest<'static>>
{
    strategy!(ModifyMonitoredItemsRequest {
        request_header: request_header(),
        subscription_id: any::<u32>(),
        timestamps_to_return: any::<i32>(),
        items_to_modify: arr(monitored_item_modify_request(), 3),
    })
}

/// Any MonitoredItemModifyResult.
pub(crate) fn monitored_item_modify_result() -> BoxedStrategy<MonitoredItemModifyResult<'static>> {
    strategy!(MonitoredItemModifyResult {
        status_code: status_code(),
        revised_sampling_interval: double(),
        revised_queue_size: any::<u32>(),
        filter_result: extension_object(),
    })
}

/// Any ModifyMonitoredItemsResponse.
pub(crate) fn modify_monitored_items_response(
) -> BoxedStrategy<ModifyMonitoredItemsResponse<'static>> {
    strategy!(ModifyMonitoredItemsResponse {
        response_header: response_header(),
        results: arr(monitored_item_modify_result(), 3),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

/// Any SetMonitoringModeRequest.
pub(crate) fn set_monitoring_mode_request() -> BoxedStrategy<SetMonitoringModeRequest<'static>> {
    strategy!(SetMonitoringModeRequest {
        request_header: request_header(),
        subscription_id: any::<u32>(),
        monitoring_mode: any::<i32>(),
        monitored_item_ids: arr(any::<u32>(), 5),
    })
}

/// Any SubscriptionAcknowledgement.
pub(crate) fn subscription_acknowledgement() -> BoxedStrategy<SubscriptionAcknowledgement> {
    strategy!(SubscriptionAcknowledgement {
        subscription_id: any::<u32>(),
        sequence_number: any::<u32>(),
    })
}

/// Any PublishRequest.
pub(crate) fn publish_request() -> BoxedStrategy<PublishRequest<'static>> {
    strategy!(PublishRequest {
        request_header: request_header(),
        subscription_acknowledgements: arr(subscription_acknowledgement(), 4),
    })
}

/// Any MonitoredItemNotification.
pub(crate) fn monitored_item_notification() -> BoxedStrategy<MonitoredItemNotification<'static>> {
    strategy!(MonitoredItemNotification {
        client_handle: any::<u32>(),
        value: data_value(),
    })
}

/// Any DataChangeNotification.
pub(crate) fn data_change_notification() -> BoxedStrategy<DataChangeNotification<'static>> {
    strategy!(DataChangeNotification {
        monitored_items: arr(monitored_item_notification(), 4),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

/// Any EventFieldList.
pub(crate) fn event_field_list() -> BoxedStrategy<EventFieldList<'static>> {
    strategy!(EventFieldList {
        client_handle: any::<u32>(),
        event_fields: arr(variant(), 3),
    })
}

/// Any EventNotificationList.
pub(crate) fn event_notification_list() -> BoxedStrategy<EventNotificationList<'static>> {
    strategy!(EventNotificationList {
        events: arr(event_field_list(), 3),
    })
}

/// Any StatusChangeNotification.
pub(crate) fn status_change_notification() -> BoxedStrategy<StatusChangeNotification<'static>> {
    strategy!(StatusChangeNotification {
        status: status_code(),
        diagnostic_info: diagnostic_info(),
    })
}

/// True for an ExtensionObject [`parse_notification`] would decode as a typed notification.
fn is_typed_notification(eo: &ExtensionObject<'_>) -> bool {
    eo.binary_body().is_some()
        && matches!(
            eo.type_id.as_ns0_numeric(),
            Some(
                structure::DATA_CHANGE_NOTIFICATION
                    | structure::EVENT_NOTIFICATION_LIST
                    | structure::STATUS_CHANGE_NOTIFICATION
            )
        )
}

/// One NotificationData entry and what [`parse_notification`] must decode it to: a real
/// DataChangeNotification / EventNotificationList / StatusChangeNotification encoded into a
/// binary ExtensionObject with its type id (any ns=0 wire form), or something else (`Other`):
/// an arbitrary ExtensionObject, or a notification type id without a binary body.
pub(crate) fn notification_entry(
) -> BoxedStrategy<(ExtensionObject<'static>, Notification<'static>)> {
    let notification_ids = select(vec![
        structure::DATA_CHANGE_NOTIFICATION,
        structure::EVENT_NOTIFICATION_LIST,
        structure::STATUS_CHANGE_NOTIFICATION,
    ]);
    prop_oneof![
        3 => (numeric_form(), data_change_notification()).prop_map(|(f, n)| (
            ExtensionObject::binary(ns0(structure::DATA_CHANGE_NOTIFICATION, f), n.to_vec()),
            Notification::DataChange(n)
        )),
        2 => (numeric_form(), event_notification_list()).prop_map(|(f, n)| (
            ExtensionObject::binary(ns0(structure::EVENT_NOTIFICATION_LIST, f), n.to_vec()),
            Notification::Event(n)
        )),
        2 => (numeric_form(), status_change_notification()).prop_map(|(f, n)| (
            ExtensionObject::binary(ns0(structure::STATUS_CHANGE_NOTIFICATION, f), n.to_vec()),
            Notification::StatusChange(n)
        )),
        2 => extension_object()
            .prop_filter("not a typed notification", |eo| !is_typed_notification(eo))
            .prop_map(|eo| (eo, Notification::Other)),
        1 => (notification_ids, numeric_form(), any::<bool>(), vec(any::<u8>(), 0..8)).prop_map(
            |(id, f, xml, b)| (
                ExtensionObject {
                    type_id: ns0(id, f),
                    body: if xml {
                        ExtensionObjectBody::Xml(b.into())
                    } else {
                        ExtensionObjectBody::None
                    },
                },
                Notification::Other
            )
        ),
    ]
    .boxed()
}

/// Any NotificationMessage, with what [`parse_notification`] must give for each entry of its
/// NotificationData (empty for a null array).
pub(crate) fn notification_message_with_expected(
) -> BoxedStrategy<(NotificationMessage<'static>, Vec<Notification<'static>>)> {
    (any::<u32>(), date_time(), arr(notification_entry(), 3))
        .prop_map(|(sequence_number, publish_time, entries)| {
            let expected = entries
                .as_ref()
                .map(|e| e.iter().map(|(_, n)| n.clone()).collect())
                .unwrap_or_default();
            let notification_data = entries.map(|e| e.into_iter().map(|(eo, _)| eo).collect());
            (
                NotificationMessage {
                    sequence_number,
                    publish_time,
                    notification_data,
                },
                expected,
            )
        })
        .boxed()
}

/// Any NotificationMessage (NotificationData as in [`notification_entry`]).
pub(crate) fn notification_message() -> BoxedStrategy<NotificationMessage<'static>> {
    notification_message_with_expected()
        .prop_map(|(m, _)| m)
        .boxed()
}

/// Any PublishResponse.
pub(crate) fn publish_response() -> BoxedStrategy<PublishResponse<'static>> {
    strategy!(PublishResponse {
        response_header: response_header(),
        subscription_id: any::<u32>(),
        available_sequence_numbers: arr(any::<u32>(), 5),
        more_notifications: any::<bool>(),
        notification_message: notification_message(),
        results: arr(status_code(), 4),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

/// Any RepublishRequest.
pub(crate) fn republish_request() -> BoxedStrategy<RepublishRequest<'static>> {
    strategy!(RepublishRequest {
        request_header: request_header(),
        subscription_id: any::<u32>(),
        retransmit_sequence_number: any::<u32>(),
    })
}

/// Any RepublishResponse.
pub(crate) fn republish_response() -> BoxedStrategy<RepublishResponse<'static>> {
    strategy!(RepublishResponse {
        response_header: response_header(),
        notification_message: notification_message(),
    })
}

/// Any TransferSubscriptionsRequest.
pub(crate) fn transfer_subscriptions_request(
) -> BoxedStrategy<TransferSubscriptionsRequest<'static>> {
    strategy!(TransferSubscriptionsRequest {
        request_header: request_header(),
        subscription_ids: arr(any::<u32>(), 5),
        send_initial_values: any::<bool>(),
    })
}

/// Any TransferResult.
pub(crate) fn transfer_result() -> BoxedStrategy<TransferResult> {
    strategy!(TransferResult {
        status_code: status_code(),
        available_sequence_numbers: arr(any::<u32>(), 5),
    })
}

/// Any TransferSubscriptionsResponse.
pub(crate) fn transfer_subscriptions_response(
) -> BoxedStrategy<TransferSubscriptionsResponse<'static>> {
    strategy!(TransferSubscriptionsResponse {
        response_header: response_header(),
        results: arr(transfer_result(), 3),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

// ---- attribute.rs ----

/// Any ReadRequest.
pub(crate) fn read_request() -> BoxedStrategy<ReadRequest<'static>> {
    strategy!(ReadRequest {
        request_header: request_header(),
        max_age: double(),
        timestamps_to_return: any::<i32>(),
        nodes_to_read: arr(read_value_id(), 4),
    })
}

/// Any ReadResponse.
pub(crate) fn read_response() -> BoxedStrategy<ReadResponse<'static>> {
    strategy!(ReadResponse {
        response_header: response_header(),
        results: arr(data_value(), 3),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

/// Any WriteValue.
pub(crate) fn write_value() -> BoxedStrategy<WriteValue<'static>> {
    strategy!(WriteValue {
        node_id: node_id(),
        attribute_id: any::<u32>(),
        index_range: ua_string(),
        value: data_value(),
    })
}

/// Any WriteRequest.
pub(crate) fn write_request() -> BoxedStrategy<WriteRequest<'static>> {
    strategy!(WriteRequest {
        request_header: request_header(),
        nodes_to_write: arr(write_value(), 3),
    })
}

/// Any ViewDescription.
pub(crate) fn view_description() -> BoxedStrategy<ViewDescription<'static>> {
    strategy!(ViewDescription {
        view_id: node_id(),
        timestamp: date_time(),
        view_version: any::<u32>(),
    })
}

/// Any BrowseDescription.
pub(crate) fn browse_description() -> BoxedStrategy<BrowseDescription<'static>> {
    strategy!(BrowseDescription {
        node_id: node_id(),
        browse_direction: any::<i32>(),
        reference_type_id: node_id(),
        include_subtypes: any::<bool>(),
        node_class_mask: any::<u32>(),
        result_mask: any::<u32>(),
    })
}

/// Any BrowseRequest.
pub(crate) fn browse_request() -> BoxedStrategy<BrowseRequest<'static>> {
    strategy!(BrowseRequest {
        request_header: request_header(),
        view: view_description(),
        requested_max_references_per_node: any::<u32>(),
        nodes_to_browse: arr(browse_description(), 3),
    })
}

/// Any ReferenceDescription.
pub(crate) fn reference_description() -> BoxedStrategy<ReferenceDescription<'static>> {
    strategy!(ReferenceDescription {
        reference_type_id: node_id(),
        is_forward: any::<bool>(),
        node_id: expanded_node_id(),
        browse_name: qualified_name(),
        display_name: localized_text(),
        node_class: any::<i32>(),
        type_definition: expanded_node_id(),
    })
}

/// Any BrowseResult.
pub(crate) fn browse_result() -> BoxedStrategy<BrowseResult<'static>> {
    strategy!(BrowseResult {
        status_code: status_code(),
        continuation_point: byte_string(),
        references: arr(reference_description(), 3),
    })
}

/// Any BrowseResponse.
pub(crate) fn browse_response() -> BoxedStrategy<BrowseResponse<'static>> {
    strategy!(BrowseResponse {
        response_header: response_header(),
        results: arr(browse_result(), 3),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

/// Any CallMethodRequest.
pub(crate) fn call_method_request() -> BoxedStrategy<CallMethodRequest<'static>> {
    strategy!(CallMethodRequest {
        object_id: node_id(),
        method_id: node_id(),
        input_arguments: arr(variant(), 3),
    })
}

/// Any CallRequest.
pub(crate) fn call_request() -> BoxedStrategy<CallRequest<'static>> {
    strategy!(CallRequest {
        request_header: request_header(),
        methods_to_call: arr(call_method_request(), 3),
    })
}

/// Any CallMethodResult.
pub(crate) fn call_method_result() -> BoxedStrategy<CallMethodResult<'static>> {
    strategy!(CallMethodResult {
        status_code: status_code(),
        input_argument_results: arr(status_code(), 4),
        input_argument_diagnostic_infos: arr(diagnostic_info(), 2),
        output_arguments: arr(variant(), 3),
    })
}

/// Any CallResponse.
pub(crate) fn call_response() -> BoxedStrategy<CallResponse<'static>> {
    strategy!(CallResponse {
        response_header: response_header(),
        results: arr(call_method_result(), 3),
        diagnostic_infos: arr(diagnostic_info(), 2),
    })
}

// ---- whole messages ----

/// A [`Message`] that owns everything, including the raw rest of an untyped body (which a
/// `Message` only borrows); [`OwnedMessage::message`] lends it out as a `Message`.
#[derive(Debug, Clone)]
pub(crate) struct OwnedMessage {
    /// The encoding NodeId.
    pub(crate) type_id: NodeId<'static>,
    /// The body.
    pub(crate) body: OwnedBody,
}

/// The body of an [`OwnedMessage`].
#[derive(Debug, Clone)]
pub(crate) enum OwnedBody {
    /// A typed body (never `ServiceBody::Other`).
    Typed(Box<ServiceBody<'static>>),
    /// `ServiceBody::Other`: the header and the raw rest.
    Other {
        /// Header (Request, Response or Unknown).
        header: Header<'static>,
        /// Everything after the header.
        rest: Vec<u8>,
    },
}

impl OwnedMessage {
    /// The message, borrowing the raw rest.
    pub(crate) fn message(&self) -> Message<'_> {
        let body = match &self.body {
            OwnedBody::Typed(b) => (**b).clone(),
            OwnedBody::Other { header, rest } => ServiceBody::Other(RawService {
                header: header.clone(),
                rest,
            }),
        };
        Message {
            type_id: self.type_id.clone(),
            body,
        }
    }
}

/// The encoding id [`parse_message`] decodes each typed variant from (`None` for `Other`).
/// Exhaustive: a new variant fails to compile here until it has an id.
pub(crate) fn typed_id(b: &ServiceBody<'_>) -> Option<u32> {
    use ServiceBody as B;
    Some(match b {
        B::OpenSecureChannelRequest(_) => id::OPEN_SECURE_CHANNEL_REQUEST,
        B::OpenSecureChannelResponse(_) => id::OPEN_SECURE_CHANNEL_RESPONSE,
        B::CloseSecureChannelRequest(_) => id::CLOSE_SECURE_CHANNEL_REQUEST,
        B::CloseSecureChannelResponse(_) => id::CLOSE_SECURE_CHANNEL_RESPONSE,
        B::ServiceFault(_) => id::SERVICE_FAULT,
        B::GetEndpointsRequest(_) => id::GET_ENDPOINTS_REQUEST,
        B::GetEndpointsResponse(_) => id::GET_ENDPOINTS_RESPONSE,
        B::FindServersRequest(_) => id::FIND_SERVERS_REQUEST,
        B::FindServersResponse(_) => id::FIND_SERVERS_RESPONSE,
        B::CreateSessionRequest(_) => id::CREATE_SESSION_REQUEST,
        B::CreateSessionResponse(_) => id::CREATE_SESSION_RESPONSE,
        B::ActivateSessionRequest(_) => id::ACTIVATE_SESSION_REQUEST,
        B::ActivateSessionResponse(_) => id::ACTIVATE_SESSION_RESPONSE,
        B::CloseSessionRequest(_) => id::CLOSE_SESSION_REQUEST,
        B::CloseSessionResponse(_) => id::CLOSE_SESSION_RESPONSE,
        B::CreateSubscriptionRequest(_) => id::CREATE_SUBSCRIPTION_REQUEST,
        B::CreateSubscriptionResponse(_) => id::CREATE_SUBSCRIPTION_RESPONSE,
        B::ModifySubscriptionRequest(_) => id::MODIFY_SUBSCRIPTION_REQUEST,
        B::ModifySubscriptionResponse(_) => id::MODIFY_SUBSCRIPTION_RESPONSE,
        B::SetPublishingModeRequest(_) => id::SET_PUBLISHING_MODE_REQUEST,
        B::SetPublishingModeResponse(_) => id::SET_PUBLISHING_MODE_RESPONSE,
        B::DeleteSubscriptionsRequest(_) => id::DELETE_SUBSCRIPTIONS_REQUEST,
        B::DeleteSubscriptionsResponse(_) => id::DELETE_SUBSCRIPTIONS_RESPONSE,
        B::CreateMonitoredItemsRequest(_) => id::CREATE_MONITORED_ITEMS_REQUEST,
        B::CreateMonitoredItemsResponse(_) => id::CREATE_MONITORED_ITEMS_RESPONSE,
        B::DeleteMonitoredItemsRequest(_) => id::DELETE_MONITORED_ITEMS_REQUEST,
        B::DeleteMonitoredItemsResponse(_) => id::DELETE_MONITORED_ITEMS_RESPONSE,
        B::ModifyMonitoredItemsRequest(_) => id::MODIFY_MONITORED_ITEMS_REQUEST,
        B::ModifyMonitoredItemsResponse(_) => id::MODIFY_MONITORED_ITEMS_RESPONSE,
        B::SetMonitoringModeRequest(_) => id::SET_MONITORING_MODE_REQUEST,
        B::SetMonitoringModeResponse(_) => id::SET_MONITORING_MODE_RESPONSE,
        B::PublishRequest(_) => id::PUBLISH_REQUEST,
        B::PublishResponse(_) => id::PUBLISH_RESPONSE,
        B::RepublishRequest(_) => id::REPUBLISH_REQUEST,
        B::RepublishResponse(_) => id::REPUBLISH_RESPONSE,
        B::TransferSubscriptionsRequest(_) => id::TRANSFER_SUBSCRIPTIONS_REQUEST,
        B::TransferSubscriptionsResponse(_) => id::TRANSFER_SUBSCRIPTIONS_RESPONSE,
        B::ReadRequest(_) => id::READ_REQUEST,
        B::ReadResponse(_) => id::READ_RESPONSE,
        B::WriteRequest(_) => id::WRITE_REQUEST,
        B::WriteResponse(_) => id::WRITE_RESPONSE,
        B::BrowseRequest(_) => id::BROWSE_REQUEST,
        B::BrowseResponse(_) => id::BROWSE_RESPONSE,
        B::CallRequest(_) => id::CALL_REQUEST,
        B::CallResponse(_) => id::CALL_RESPONSE,
        B::Other(_) => return None,
    })
}

/// Every encoding id with a typed decoder (the ids [`typed_id`] returns).
pub(crate) const TYPED_IDS: [u32; 45] = [
    id::OPEN_SECURE_CHANNEL_REQUEST,
    id::OPEN_SECURE_CHANNEL_RESPONSE,
    id::CLOSE_SECURE_CHANNEL_REQUEST,
    id::CLOSE_SECURE_CHANNEL_RESPONSE,
    id::SERVICE_FAULT,
    id::GET_ENDPOINTS_REQUEST,
    id::GET_ENDPOINTS_RESPONSE,
    id::FIND_SERVERS_REQUEST,
    id::FIND_SERVERS_RESPONSE,
    id::CREATE_SESSION_REQUEST,
    id::CREATE_SESSION_RESPONSE,
    id::ACTIVATE_SESSION_REQUEST,
    id::ACTIVATE_SESSION_RESPONSE,
    id::CLOSE_SESSION_REQUEST,
    id::CLOSE_SESSION_RESPONSE,
    id::CREATE_SUBSCRIPTION_REQUEST,
    id::CREATE_SUBSCRIPTION_RESPONSE,
    id::MODIFY_SUBSCRIPTION_REQUEST,
    id::MODIFY_SUBSCRIPTION_RESPONSE,
    id::SET_PUBLISHING_MODE_REQUEST,
    id::SET_PUBLISHING_MODE_RESPONSE,
    id::DELETE_SUBSCRIPTIONS_REQUEST,
    id::DELETE_SUBSCRIPTIONS_RESPONSE,
    id::CREATE_MONITORED_ITEMS_REQUEST,
    id::CREATE_MONITORED_ITEMS_RESPONSE,
    id::DELETE_MONITORED_ITEMS_REQUEST,
    id::DELETE_MONITORED_ITEMS_RESPONSE,
    id::MODIFY_MONITORED_ITEMS_REQUEST,
    id::MODIFY_MONITORED_ITEMS_RESPONSE,
    id::SET_MONITORING_MODE_REQUEST,
    id::SET_MONITORING_MODE_RESPONSE,
    id::PUBLISH_REQUEST,
    id::PUBLISH_RESPONSE,
    id::REPUBLISH_REQUEST,
    id::REPUBLISH_RESPONSE,
    id::TRANSFER_SUBSCRIPTIONS_REQUEST,
    id::TRANSFER_SUBSCRIPTIONS_RESPONSE,
    id::READ_REQUEST,
    id::READ_RESPONSE,
    id::WRITE_REQUEST,
    id::WRITE_RESPONSE,
    id::BROWSE_REQUEST,
    id::BROWSE_RESPONSE,
    id::CALL_REQUEST,
    id::CALL_RESPONSE,
];

/// A message whose body comes from `body` (a typed variant), with its encoding id in any ns=0
/// wire form.
pub(crate) fn typed_message(
    body: impl Strategy<Value = ServiceBody<'static>> + 'static,
) -> BoxedStrategy<OwnedMessage> {
    (numeric_form(), body)
        .prop_map(|(form, body)| OwnedMessage {
            type_id: ns0(typed_id(&body).unwrap_or(u32::MAX), form),
            body: OwnedBody::Typed(Box::new(body)),
        })
        .boxed()
}

/// Every service encoding id known by name but without a typed decoder (HistoryRead,
/// RegisterServer, ...).
pub(crate) fn untyped_service_ids() -> Vec<u32> {
    (0..100_000u32)
        .filter(|i| ids::service_name(*i).is_some() && !TYPED_IDS.contains(i))
        .collect()
}

/// Raw rest bytes of an untyped body.
fn rest() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..40)
}

/// `ServiceBody::Other` for a known service without a typed decoder: a RequestHeader or
/// ResponseHeader (as its name says) and random rest bytes.
pub(crate) fn untyped_message() -> BoxedStrategy<OwnedMessage> {
    (
        select(untyped_service_ids()),
        numeric_form(),
        request_header(),
        response_header(),
        rest(),
    )
        .prop_map(|(i, form, req, resp, rest)| {
            let header = if ids::service_name(i).is_some_and(|n| n.ends_with("Request")) {
                Header::Request(req)
            } else {
                Header::Response(resp)
            };
            OwnedMessage {
                type_id: ns0(i, form),
                body: OwnedBody::Other { header, rest },
            }
        })
        .boxed()
}

/// `ServiceBody::Other` with a type id that names no service (any NodeId but the service
/// ids): no header, every byte raw.
pub(crate) fn unknown_message() -> BoxedStrategy<OwnedMessage> {
    (
        node_id().prop_filter("must not name a service", |n| {
            n.as_ns0_numeric()
                .is_none_or(|i| ids::service_name(i).is_none())
        }),
        rest(),
    )
        .prop_map(|(type_id, rest)| OwnedMessage {
            type_id,
            body: OwnedBody::Other {
                header: Header::Unknown,
                rest,
            },
        })
        .boxed()
}
