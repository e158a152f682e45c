//! Subscriptions, monitored items, Publish and Republish (OPC 10000-4 §5.13–5.14), with the
//! notifications a PublishResponse carries.

use super::common::{ReadValueId, RequestHeader, ResponseHeader};
use super::macros::ua_struct;
use crate::error::DecodeError;
use crate::ids::structure;
use crate::reader::Reader;
use crate::status::StatusCode;
use crate::types::{DataValue, DateTime, Decode, DiagnosticInfo, ExtensionObject, Variant};

ua_struct! {
    /// Creates a subscription (§5.14.2).
    pub struct CreateSubscriptionRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// Requested publishing interval, ms.
        requested_publishing_interval: one f64,
        /// Publishing cycles without a Publish request before the subscription dies.
        requested_lifetime_count: one u32,
        /// Empty cycles before a keep-alive.
        requested_max_keep_alive_count: one u32,
        /// Cap on notifications per Publish response (0 = none).
        max_notifications_per_publish: one u32,
        /// Publishing on.
        publishing_enabled: one bool,
        /// Relative priority.
        priority: one u8,
    }
}

ua_struct! {
    /// The new subscription and its revised parameters.
    pub struct CreateSubscriptionResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// SubscriptionId.
        subscription_id: one u32,
        /// Publishing interval granted, ms.
        revised_publishing_interval: one f64,
        /// Lifetime count granted.
        revised_lifetime_count: one u32,
        /// Keep-alive count granted.
        revised_max_keep_alive_count: one u32,
    }
}

ua_struct! {
    /// Changes a subscription (§5.14.3).
    pub struct ModifySubscriptionRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// SubscriptionId.
        subscription_id: one u32,
        /// Requested publishing interval, ms.
        requested_publishing_interval: one f64,
        /// Requested lifetime count.
        requested_lifetime_count: one u32,
        /// Requested keep-alive count.
        requested_max_keep_alive_count: one u32,
        /// Cap on notifications per Publish response.
        max_notifications_per_publish: one u32,
        /// Relative priority.
        priority: one u8,
    }
}

ua_struct! {
    /// The revised parameters.
    pub struct ModifySubscriptionResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Publishing interval granted, ms.
        revised_publishing_interval: one f64,
        /// Lifetime count granted.
        revised_lifetime_count: one u32,
        /// Keep-alive count granted.
        revised_max_keep_alive_count: one u32,
    }
}

ua_struct! {
    /// Turns publishing on or off for subscriptions (§5.14.4).
    pub struct SetPublishingModeRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// On or off.
        publishing_enabled: one bool,
        /// Subscriptions.
        subscription_ids: array u32,
    }
}

ua_struct! {
    /// Deletes subscriptions (§5.14.8).
    pub struct DeleteSubscriptionsRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// Subscriptions.
        subscription_ids: array u32,
    }
}

ua_struct! {
    /// Sampling parameters of a monitored item; ClientHandle is how notifications name it.
    pub struct MonitoringParameters<'a> {
        /// Client's id for the item, carried by every notification.
        client_handle: one u32,
        /// Sampling interval, ms.
        sampling_interval: one f64,
        /// Data change or event filter.
        filter: one ExtensionObject<'a>,
        /// Queue size.
        queue_size: one u32,
        /// Discard oldest on overflow.
        discard_oldest: one bool,
    }
}

ua_struct! {
    /// One item to monitor.
    pub struct MonitoredItemCreateRequest<'a> {
        /// The node attribute.
        item_to_monitor: one ReadValueId<'a>,
        /// Disabled (0), Sampling (1), Reporting (2).
        monitoring_mode: one i32,
        /// Parameters.
        requested_parameters: one MonitoringParameters<'a>,
    }
}

ua_struct! {
    /// Creates monitored items in a subscription (§5.13.2).
    pub struct CreateMonitoredItemsRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// SubscriptionId.
        subscription_id: one u32,
        /// Source (0), Server (1), Both (2), Neither (3).
        timestamps_to_return: one i32,
        /// Items.
        items_to_create: array MonitoredItemCreateRequest<'a>,
    }
}

ua_struct! {
    /// Result for one item: its MonitoredItemId and revised parameters.
    pub struct MonitoredItemCreateResult<'a> {
        /// Result.
        status_code: one StatusCode,
        /// Server's id for the item.
        monitored_item_id: one u32,
        /// Sampling interval granted.
        revised_sampling_interval: one f64,
        /// Queue size granted.
        revised_queue_size: one u32,
        /// Filter result.
        filter_result: one ExtensionObject<'a>,
    }
}

ua_struct! {
    /// Results, one per item in request order.
    pub struct CreateMonitoredItemsResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Results.
        results: array MonitoredItemCreateResult<'a>,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}

ua_struct! {
    /// Deletes monitored items (§5.13.6).
    pub struct DeleteMonitoredItemsRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// SubscriptionId.
        subscription_id: one u32,
        /// Items.
        monitored_item_ids: array u32,
    }
}

ua_struct! {
    /// Acknowledges one NotificationMessage.
    pub struct SubscriptionAcknowledgement {
        /// SubscriptionId.
        subscription_id: one u32,
        /// NotificationMessage SequenceNumber acknowledged.
        sequence_number: one u32,
    }
}

ua_struct! {
    /// Hands the server a slot for a notification and acknowledges earlier ones (§5.14.5).
    pub struct PublishRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// Acknowledgements.
        subscription_acknowledgements: array SubscriptionAcknowledgement,
    }
}

ua_struct! {
    /// One numbered message of a subscription; empty NotificationData means keep-alive (§7.26).
    pub struct NotificationMessage<'a> {
        /// Sequence number within the subscription.
        sequence_number: one u32,
        /// When it was published.
        publish_time: one DateTime,
        /// DataChangeNotification, EventNotificationList, StatusChangeNotification.
        notification_data: array ExtensionObject<'a>,
    }
}

ua_struct! {
    /// A notification for one monitored item, named by ClientHandle.
    pub struct MonitoredItemNotification<'a> {
        /// ClientHandle.
        client_handle: one u32,
        /// The value.
        value: one DataValue<'a>,
    }
}

ua_struct! {
    /// Data changes of monitored items.
    pub struct DataChangeNotification<'a> {
        /// Items.
        monitored_items: array MonitoredItemNotification<'a>,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}

ua_struct! {
    /// The fields of one event.
    pub struct EventFieldList<'a> {
        /// ClientHandle.
        client_handle: one u32,
        /// Fields selected by the filter.
        event_fields: array Variant<'a>,
    }
}

ua_struct! {
    /// Events.
    pub struct EventNotificationList<'a> {
        /// Events.
        events: array EventFieldList<'a>,
    }
}

ua_struct! {
    /// A change of the subscription's own status (transferred, timed out).
    pub struct StatusChangeNotification<'a> {
        /// The status, e.g. Good_SubscriptionTransferred or Bad_Timeout.
        status: one StatusCode,
        /// Diagnostics.
        diagnostic_info: one DiagnosticInfo<'a>,
    }
}

ua_struct! {
    /// One NotificationMessage with the subscription's queue state and the ack results.
    pub struct PublishResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Subscription (0 = none could answer).
        subscription_id: one u32,
        /// Sequence numbers still available for Republish.
        available_sequence_numbers: array u32,
        /// More notifications are waiting.
        more_notifications: one bool,
        /// The message.
        notification_message: one NotificationMessage<'a>,
        /// One result per acknowledgement of the request.
        results: array StatusCode,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}

ua_struct! {
    /// Asks again for a NotificationMessage after a reconnect (§5.14.6).
    pub struct RepublishRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// SubscriptionId.
        subscription_id: one u32,
        /// Sequence number wanted.
        retransmit_sequence_number: one u32,
    }
}

ua_struct! {
    /// The message asked for (or a Bad_MessageNotAvailable result).
    pub struct RepublishResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// The message.
        notification_message: one NotificationMessage<'a>,
    }
}

ua_struct! {
    /// Moves subscriptions to a new session (§5.14.7).
    pub struct TransferSubscriptionsRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// Subscriptions.
        subscription_ids: array u32,
        /// Resend current values.
        send_initial_values: one bool,
    }
}

ua_struct! {
    /// Per-subscription transfer result.
    pub struct TransferResult {
        /// Result.
        status_code: one StatusCode,
        /// Sequence numbers available for Republish.
        available_sequence_numbers: array u32,
    }
}

ua_struct! {
    /// Results of TransferSubscriptions.
    pub struct TransferSubscriptionsResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Results.
        results: array TransferResult,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}

/// One entry of NotificationData, decoded on demand.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification<'a> {
    /// Data changes.
    DataChange(DataChangeNotification<'a>),
    /// Events.
    Event(EventNotificationList<'a>),
    /// Subscription status change.
    StatusChange(StatusChangeNotification<'a>),
    /// An unknown notification type, kept raw.
    Other,
}

/// Decodes one NotificationData entry.
pub fn parse_notification<'b>(
    eo: &'b ExtensionObject<'_>,
) -> Result<Notification<'b>, DecodeError> {
    let Some(body) = eo.binary_body() else {
        return Ok(Notification::Other);
    };
    let mut r = Reader::new(body);
    Ok(match eo.type_id.as_ns0_numeric() {
        Some(structure::DATA_CHANGE_NOTIFICATION) => {
            Notification::DataChange(DataChangeNotification::decode(&mut r)?)
        }
        Some(structure::EVENT_NOTIFICATION_LIST) => {
            Notification::Event(EventNotificationList::decode(&mut r)?)
        }
        Some(structure::STATUS_CHANGE_NOTIFICATION) => {
            Notification::StatusChange(StatusChangeNotification::decode(&mut r)?)
        }
        _ => Notification::Other,
    })
}

impl NotificationMessage<'_> {
    /// True for a keep-alive (no NotificationData).
    pub fn is_keep_alive(&self) -> bool {
        self.notification_data.as_ref().is_none_or(Vec::is_empty)
    }

    /// Counts the monitored-item notifications and events without decoding them: the arrays'
    /// Int32 counts are at the start of each ExtensionObject body, which carries its length.
    pub fn notification_count(&self) -> u64 {
        let Some(data) = &self.notification_data else {
            return 0;
        };
        data.iter()
            .map(|eo| match eo.type_id.as_ns0_numeric() {
                Some(structure::DATA_CHANGE_NOTIFICATION | structure::EVENT_NOTIFICATION_LIST) => {
                    eo.binary_body()
                        .and_then(|b| Reader::new(b).read_i32("NotificationData").ok())
                        .map_or(0, |n| u64::try_from(n).unwrap_or(0))
                }
                // Like the arms above (and parse_notification): only a binary body is one.
                Some(structure::STATUS_CHANGE_NOTIFICATION) => {
                    u64::from(eo.binary_body().is_some())
                }
                _ => 0,
            })
            .sum()
    }
}
