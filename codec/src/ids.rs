//! Binary encoding ids (ns=0) of every service of OPC 10000-4 and the structures the codec decodes.
//!
//! A message body starts with the NodeId of its type's `_Encoding_DefaultBinary` node; this table
//! names the service from that id even when the codec has no typed decoder for it.

/// Encoding ids of the service requests and responses (OPC 10000-6 §5.2.2.15; ids from NodeIds.csv).
pub mod service {
    /// `ServiceFault_Encoding_DefaultBinary`
    pub const SERVICE_FAULT: u32 = 397;
    /// `FindServersRequest_Encoding_DefaultBinary`
    pub const FIND_SERVERS_REQUEST: u32 = 422;
    /// `FindServersResponse_Encoding_DefaultBinary`
    pub const FIND_SERVERS_RESPONSE: u32 = 425;
    /// `GetEndpointsRequest_Encoding_DefaultBinary`
    pub const GET_ENDPOINTS_REQUEST: u32 = 428;
    /// `GetEndpointsResponse_Encoding_DefaultBinary`
    pub const GET_ENDPOINTS_RESPONSE: u32 = 431;
    /// `RegisterServerRequest_Encoding_DefaultBinary`
    pub const REGISTER_SERVER_REQUEST: u32 = 437;
    /// `RegisterServerResponse_Encoding_DefaultBinary`
    pub const REGISTER_SERVER_RESPONSE: u32 = 440;
    /// `OpenSecureChannelRequest_Encoding_DefaultBinary`
    pub const OPEN_SECURE_CHANNEL_REQUEST: u32 = 446;
    /// `OpenSecureChannelResponse_Encoding_DefaultBinary`
    pub const OPEN_SECURE_CHANNEL_RESPONSE: u32 = 449;
    /// `CloseSecureChannelRequest_Encoding_DefaultBinary`
    pub const CLOSE_SECURE_CHANNEL_REQUEST: u32 = 452;
    /// `CloseSecureChannelResponse_Encoding_DefaultBinary`
    pub const CLOSE_SECURE_CHANNEL_RESPONSE: u32 = 455;
    /// `CreateSessionRequest_Encoding_DefaultBinary`
    pub const CREATE_SESSION_REQUEST: u32 = 461;
    /// `CreateSessionResponse_Encoding_DefaultBinary`
    pub const CREATE_SESSION_RESPONSE: u32 = 464;
    /// `ActivateSessionRequest_Encoding_DefaultBinary`
    pub const ACTIVATE_SESSION_REQUEST: u32 = 467;
    /// `ActivateSessionResponse_Encoding_DefaultBinary`
    pub const ACTIVATE_SESSION_RESPONSE: u32 = 470;
    /// `CloseSessionRequest_Encoding_DefaultBinary`
    pub const CLOSE_SESSION_REQUEST: u32 = 473;
    /// `CloseSessionResponse_Encoding_DefaultBinary`
    pub const CLOSE_SESSION_RESPONSE: u32 = 476;
    /// `CancelRequest_Encoding_DefaultBinary`
    pub const CANCEL_REQUEST: u32 = 479;
    /// `CancelResponse_Encoding_DefaultBinary`
    pub const CANCEL_RESPONSE: u32 = 482;
    /// `AddNodesRequest_Encoding_DefaultBinary`
    pub const ADD_NODES_REQUEST: u32 = 488;
    /// `AddNodesResponse_Encoding_DefaultBinary`
    pub const ADD_NODES_RESPONSE: u32 = 491;
    /// `AddReferencesRequest_Encoding_DefaultBinary`
    pub const ADD_REFERENCES_REQUEST: u32 = 494;
    /// `AddReferencesResponse_Encoding_DefaultBinary`
    pub const ADD_REFERENCES_RESPONSE: u32 = 497;
    /// `DeleteNodesRequest_Encoding_DefaultBinary`
    pub const DELETE_NODES_REQUEST: u32 = 500;
    /// `DeleteNodesResponse_Encoding_DefaultBinary`
    pub const DELETE_NODES_RESPONSE: u32 = 503;
    /// `DeleteReferencesRequest_Encoding_DefaultBinary`
    pub const DELETE_REFERENCES_REQUEST: u32 = 506;
    /// `DeleteReferencesResponse_Encoding_DefaultBinary`
    pub const DELETE_REFERENCES_RESPONSE: u32 = 509;
    /// `BrowseRequest_Encoding_DefaultBinary`
    pub const BROWSE_REQUEST: u32 = 527;
    /// `BrowseResponse_Encoding_DefaultBinary`
    pub const BROWSE_RESPONSE: u32 = 530;
    /// `BrowseNextRequest_Encoding_DefaultBinary`
    pub const BROWSE_NEXT_REQUEST: u32 = 533;
    /// `BrowseNextResponse_Encoding_DefaultBinary`
    pub const BROWSE_NEXT_RESPONSE: u32 = 536;
    /// `TranslateBrowsePathsToNodeIdsRequest_Encoding_DefaultBinary`
    pub const TRANSLATE_BROWSE_PATHS_TO_NODE_IDS_REQUEST: u32 = 554;
    /// `TranslateBrowsePathsToNodeIdsResponse_Encoding_DefaultBinary`
    pub const TRANSLATE_BROWSE_PATHS_TO_NODE_IDS_RESPONSE: u32 = 557;
    /// `RegisterNodesRequest_Encoding_DefaultBinary`
    pub const REGISTER_NODES_REQUEST: u32 = 560;
    /// `RegisterNodesResponse_Encoding_DefaultBinary`
    pub const REGISTER_NODES_RESPONSE: u32 = 563;
    /// `UnregisterNodesRequest_Encoding_DefaultBinary`
    pub const UNREGISTER_NODES_REQUEST: u32 = 566;
    /// `UnregisterNodesResponse_Encoding_DefaultBinary`
    pub const UNREGISTER_NODES_RESPONSE: u32 = 569;
    /// `QueryFirstRequest_Encoding_DefaultBinary`
    pub const QUERY_FIRST_REQUEST: u32 = 615;
    /// `QueryFirstResponse_Encoding_DefaultBinary`
    pub const QUERY_FIRST_RESPONSE: u32 = 618;
    /// `QueryNextRequest_Encoding_DefaultBinary`
    pub const QUERY_NEXT_REQUEST: u32 = 621;
    /// `QueryNextResponse_Encoding_DefaultBinary`
    pub const QUERY_NEXT_RESPONSE: u32 = 624;
    /// `ReadRequest_Encoding_DefaultBinary`
    pub const READ_REQUEST: u32 = 631;
    /// `ReadResponse_Encoding_DefaultBinary`
    pub const READ_RESPONSE: u32 = 634;
    /// `HistoryReadRequest_Encoding_DefaultBinary`
    pub const HISTORY_READ_REQUEST: u32 = 664;
    /// `HistoryReadResponse_Encoding_DefaultBinary`
    pub const HISTORY_READ_RESPONSE: u32 = 667;
    /// `WriteRequest_Encoding_DefaultBinary`
    pub const WRITE_REQUEST: u32 = 673;
    /// `WriteResponse_Encoding_DefaultBinary`
    pub const WRITE_RESPONSE: u32 = 676;
    /// `HistoryUpdateRequest_Encoding_DefaultBinary`
    pub const HISTORY_UPDATE_REQUEST: u32 = 700;
    /// `HistoryUpdateResponse_Encoding_DefaultBinary`
    pub const HISTORY_UPDATE_RESPONSE: u32 = 703;
    /// `CallRequest_Encoding_DefaultBinary`
    pub const CALL_REQUEST: u32 = 712;
    /// `CallResponse_Encoding_DefaultBinary`
    pub const CALL_RESPONSE: u32 = 715;
    /// `CreateMonitoredItemsRequest_Encoding_DefaultBinary`
    pub const CREATE_MONITORED_ITEMS_REQUEST: u32 = 751;
    /// `CreateMonitoredItemsResponse_Encoding_DefaultBinary`
    pub const CREATE_MONITORED_ITEMS_RESPONSE: u32 = 754;
    /// `ModifyMonitoredItemsRequest_Encoding_DefaultBinary`
    pub const MODIFY_MONITORED_ITEMS_REQUEST: u32 = 763;
    /// `ModifyMonitoredItemsResponse_Encoding_DefaultBinary`
    pub const MODIFY_MONITORED_ITEMS_RESPONSE: u32 = 766;
    /// `SetMonitoringModeRequest_Encoding_DefaultBinary`
    pub const SET_MONITORING_MODE_REQUEST: u32 = 769;
    /// `SetMonitoringModeResponse_Encoding_DefaultBinary`
    pub const SET_MONITORING_MODE_RESPONSE: u32 = 772;
    /// `SetTriggeringRequest_Encoding_DefaultBinary`
    pub const SET_TRIGGERING_REQUEST: u32 = 775;
    /// `SetTriggeringResponse_Encoding_DefaultBinary`
    pub const SET_TRIGGERING_RESPONSE: u32 = 778;
    /// `DeleteMonitoredItemsRequest_Encoding_DefaultBinary`
    pub const DELETE_MONITORED_ITEMS_REQUEST: u32 = 781;
    /// `DeleteMonitoredItemsResponse_Encoding_DefaultBinary`
    pub const DELETE_MONITORED_ITEMS_RESPONSE: u32 = 784;
    /// `CreateSubscriptionRequest_Encoding_DefaultBinary`
    pub const CREATE_SUBSCRIPTION_REQUEST: u32 = 787;
    /// `CreateSubscriptionResponse_Encoding_DefaultBinary`
    pub const CREATE_SUBSCRIPTION_RESPONSE: u32 = 790;
    /// `ModifySubscriptionRequest_Encoding_DefaultBinary`
    pub const MODIFY_SUBSCRIPTION_REQUEST: u32 = 793;
    /// `ModifySubscriptionResponse_Encoding_DefaultBinary`
    pub const MODIFY_SUBSCRIPTION_RESPONSE: u32 = 796;
    /// `SetPublishingModeRequest_Encoding_DefaultBinary`
    pub const SET_PUBLISHING_MODE_REQUEST: u32 = 799;
    /// `SetPublishingModeResponse_Encoding_DefaultBinary`
    pub const SET_PUBLISHING_MODE_RESPONSE: u32 = 802;
    /// `PublishRequest_Encoding_DefaultBinary`
    pub const PUBLISH_REQUEST: u32 = 826;
    /// `PublishResponse_Encoding_DefaultBinary`
    pub const PUBLISH_RESPONSE: u32 = 829;
    /// `RepublishRequest_Encoding_DefaultBinary`
    pub const REPUBLISH_REQUEST: u32 = 832;
    /// `RepublishResponse_Encoding_DefaultBinary`
    pub const REPUBLISH_RESPONSE: u32 = 835;
    /// `TransferSubscriptionsRequest_Encoding_DefaultBinary`
    pub const TRANSFER_SUBSCRIPTIONS_REQUEST: u32 = 841;
    /// `TransferSubscriptionsResponse_Encoding_DefaultBinary`
    pub const TRANSFER_SUBSCRIPTIONS_RESPONSE: u32 = 844;
    /// `DeleteSubscriptionsRequest_Encoding_DefaultBinary`
    pub const DELETE_SUBSCRIPTIONS_REQUEST: u32 = 847;
    /// `DeleteSubscriptionsResponse_Encoding_DefaultBinary`
    pub const DELETE_SUBSCRIPTIONS_RESPONSE: u32 = 850;
    /// `FindServersOnNetworkRequest_Encoding_DefaultBinary`
    pub const FIND_SERVERS_ON_NETWORK_REQUEST: u32 = 12208;
    /// `FindServersOnNetworkResponse_Encoding_DefaultBinary`
    pub const FIND_SERVERS_ON_NETWORK_RESPONSE: u32 = 12209;
    /// `RegisterServer2Request_Encoding_DefaultBinary`
    pub const REGISTER_SERVER2_REQUEST: u32 = 12211;
    /// `RegisterServer2Response_Encoding_DefaultBinary`
    pub const REGISTER_SERVER2_RESPONSE: u32 = 12212;
}

/// Encoding ids of structures carried inside service bodies (ExtensionObject TypeIds).
pub mod structure {
    /// `ChannelSecurityToken_Encoding_DefaultBinary`
    pub const CHANNEL_SECURITY_TOKEN: u32 = 443;
    /// `ApplicationDescription_Encoding_DefaultBinary`
    pub const APPLICATION_DESCRIPTION: u32 = 310;
    /// `UserTokenPolicy_Encoding_DefaultBinary`
    pub const USER_TOKEN_POLICY: u32 = 306;
    /// `EndpointDescription_Encoding_DefaultBinary`
    pub const ENDPOINT_DESCRIPTION: u32 = 314;
    /// `SignedSoftwareCertificate_Encoding_DefaultBinary`
    pub const SIGNED_SOFTWARE_CERTIFICATE: u32 = 346;
    /// `SignatureData_Encoding_DefaultBinary`
    pub const SIGNATURE_DATA: u32 = 458;
    /// `AnonymousIdentityToken_Encoding_DefaultBinary`
    pub const ANONYMOUS_IDENTITY_TOKEN: u32 = 321;
    /// `UserNameIdentityToken_Encoding_DefaultBinary`
    pub const USER_NAME_IDENTITY_TOKEN: u32 = 324;
    /// `X509IdentityToken_Encoding_DefaultBinary`
    pub const X509_IDENTITY_TOKEN: u32 = 327;
    /// `IssuedIdentityToken_Encoding_DefaultBinary`
    pub const ISSUED_IDENTITY_TOKEN: u32 = 940;
    /// `ReadValueId_Encoding_DefaultBinary`
    pub const READ_VALUE_ID: u32 = 628;
    /// `MonitoringParameters_Encoding_DefaultBinary`
    pub const MONITORING_PARAMETERS: u32 = 742;
    /// `MonitoredItemCreateRequest_Encoding_DefaultBinary`
    pub const MONITORED_ITEM_CREATE_REQUEST: u32 = 745;
    /// `MonitoredItemCreateResult_Encoding_DefaultBinary`
    pub const MONITORED_ITEM_CREATE_RESULT: u32 = 748;
    /// `NotificationMessage_Encoding_DefaultBinary`
    pub const NOTIFICATION_MESSAGE: u32 = 805;
    /// `MonitoredItemNotification_Encoding_DefaultBinary`
    pub const MONITORED_ITEM_NOTIFICATION: u32 = 808;
    /// `DataChangeNotification_Encoding_DefaultBinary`
    pub const DATA_CHANGE_NOTIFICATION: u32 = 811;
    /// `StatusChangeNotification_Encoding_DefaultBinary`
    pub const STATUS_CHANGE_NOTIFICATION: u32 = 820;
    /// `EventNotificationList_Encoding_DefaultBinary`
    pub const EVENT_NOTIFICATION_LIST: u32 = 916;
    /// `EventFieldList_Encoding_DefaultBinary`
    pub const EVENT_FIELD_LIST: u32 = 919;
    /// `SubscriptionAcknowledgement_Encoding_DefaultBinary`
    pub const SUBSCRIPTION_ACKNOWLEDGEMENT: u32 = 823;
    /// `TransferResult_Encoding_DefaultBinary`
    pub const TRANSFER_RESULT: u32 = 838;
    /// `ServerStatusDataType_Encoding_DefaultBinary`
    pub const SERVER_STATUS_DATA_TYPE: u32 = 864;
    /// `BuildInfo_Encoding_DefaultBinary`
    pub const BUILD_INFO: u32 = 340;
}

/// Well-known nodes a troubleshooting proxy looks for (ns=0).
pub mod node {
    /// The Server object, owner of the methods below.
    pub const SERVER: u32 = 2253;
    /// Server_ServerStatus_State: clients watch it to monitor the connection (reconnect rule R1).
    pub const SERVER_SERVER_STATUS_STATE: u32 = 2259;
    /// Server_ResendData method: asks the server to resend the current values of a subscription.
    pub const SERVER_RESEND_DATA: u32 = 12873;
    /// Server_GetMonitoredItems method.
    pub const SERVER_GET_MONITORED_ITEMS: u32 = 11492;
}

/// Every service encoding id with its name, sorted by id.
static SERVICE_NAMES: &[(u32, &str)] = &[
    (397, "ServiceFault"),
    (422, "FindServersRequest"),
    (425, "FindServersResponse"),
    (428, "GetEndpointsRequest"),
    (431, "GetEndpointsResponse"),
    (437, "RegisterServerRequest"),
    (440, "RegisterServerResponse"),
    (446, "OpenSecureChannelRequest"),
    (449, "OpenSecureChannelResponse"),
    (452, "CloseSecureChannelRequest"),
    (455, "CloseSecureChannelResponse"),
    (461, "CreateSessionRequest"),
    (464, "CreateSessionResponse"),
    (467, "ActivateSessionRequest"),
    (470, "ActivateSessionResponse"),
    (473, "CloseSessionRequest"),
    (476, "CloseSessionResponse"),
    (479, "CancelRequest"),
    (482, "CancelResponse"),
    (488, "AddNodesRequest"),
    (491, "AddNodesResponse"),
    (494, "AddReferencesRequest"),
    (497, "AddReferencesResponse"),
    (500, "DeleteNodesRequest"),
    (503, "DeleteNodesResponse"),
    (506, "DeleteReferencesRequest"),
    (509, "DeleteReferencesResponse"),
    (527, "BrowseRequest"),
    (530, "BrowseResponse"),
    (533, "BrowseNextRequest"),
    (536, "BrowseNextResponse"),
    (554, "TranslateBrowsePathsToNodeIdsRequest"),
    (557, "TranslateBrowsePathsToNodeIdsResponse"),
    (560, "RegisterNodesRequest"),
    (563, "RegisterNodesResponse"),
    (566, "UnregisterNodesRequest"),
    (569, "UnregisterNodesResponse"),
    (615, "QueryFirstRequest"),
    (618, "QueryFirstResponse"),
    (621, "QueryNextRequest"),
    (624, "QueryNextResponse"),
    (631, "ReadRequest"),
    (634, "ReadResponse"),
    (664, "HistoryReadRequest"),
    (667, "HistoryReadResponse"),
    (673, "WriteRequest"),
    (676, "WriteResponse"),
    (700, "HistoryUpdateRequest"),
    (703, "HistoryUpdateResponse"),
    (712, "CallRequest"),
    (715, "CallResponse"),
    (751, "CreateMonitoredItemsRequest"),
    (754, "CreateMonitoredItemsResponse"),
    (763, "ModifyMonitoredItemsRequest"),
    (766, "ModifyMonitoredItemsResponse"),
    (769, "SetMonitoringModeRequest"),
    (772, "SetMonitoringModeResponse"),
    (775, "SetTriggeringRequest"),
    (778, "SetTriggeringResponse"),
    (781, "DeleteMonitoredItemsRequest"),
    (784, "DeleteMonitoredItemsResponse"),
    (787, "CreateSubscriptionRequest"),
    (790, "CreateSubscriptionResponse"),
    (793, "ModifySubscriptionRequest"),
    (796, "ModifySubscriptionResponse"),
    (799, "SetPublishingModeRequest"),
    (802, "SetPublishingModeResponse"),
    (826, "PublishRequest"),
    (829, "PublishResponse"),
    (832, "RepublishRequest"),
    (835, "RepublishResponse"),
    (841, "TransferSubscriptionsRequest"),
    (844, "TransferSubscriptionsResponse"),
    (847, "DeleteSubscriptionsRequest"),
    (850, "DeleteSubscriptionsResponse"),
    (12208, "FindServersOnNetworkRequest"),
    (12209, "FindServersOnNetworkResponse"),
    (12211, "RegisterServer2Request"),
    (12212, "RegisterServer2Response"),
];

/// The service name (e.g. `PublishResponse`) of a binary encoding id, or `None` if unknown.
pub fn service_name(type_id: u32) -> Option<&'static str> {
    SERVICE_NAMES
        .binary_search_by_key(&type_id, |(v, _)| *v)
        .ok()
        .and_then(|i| SERVICE_NAMES.get(i))
        .map(|(_, n)| *n)
}

/// True if the encoding id is a service request (the name ends in `Request`).
pub fn is_request(type_id: u32) -> bool {
    service_name(type_id).is_some_and(|n| n.ends_with("Request"))
}

/// The encoding id of the response that answers a request encoding id (request id + 3 for every
/// service of Part 4), or `None` if the id is not a known request.
pub fn response_for(request_type_id: u32) -> Option<u32> {
    let name = service_name(request_type_id)?.strip_suffix("Request")?;
    SERVICE_NAMES
        .iter()
        .find(|(_, n)| n.strip_suffix("Response") == Some(name))
        .map(|(v, _)| *v)
}

/// Every known service encoding id with its name.
pub fn all_services() -> &'static [(u32, &'static str)] {
    SERVICE_NAMES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_ids() {
        assert!(SERVICE_NAMES
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.0 < b.0)));
        assert_eq!(service_name(829), Some("PublishResponse"));
        assert_eq!(service_name(446), Some("OpenSecureChannelRequest"));
        assert_eq!(service_name(397), Some("ServiceFault"));
        assert_eq!(service_name(12208), Some("FindServersOnNetworkRequest"));
        assert_eq!(service_name(1), None);
        assert_eq!(response_for(826), Some(829));
        assert_eq!(response_for(12208), Some(12209));
        assert!(is_request(631) && !is_request(634));
        assert_eq!(SERVICE_NAMES.len(), 79);
    }
}
