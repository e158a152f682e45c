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
    /// New parameters for one monitored item, named by its MonitoredItemId.
    pub struct MonitoredItemModifyRequest<'a> {
        /// Server's id for the item.
        monitored_item_id: one u32,
        /// Parameters (ClientHandle may change too).
        requested_parameters: one MonitoringParameters<'a>,
    }
}

ua_struct! {
    /// Changes the sampling parameters of monitored items (§5.13.3).
    pub struct ModifyMonitoredItemsRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// SubscriptionId.
        subscription_id: one u32,
        /// Source (0), Server (1), Both (2), Neither (3).
        timestamps_to_return: one i32,
        /// Items.
        items_to_modify: array MonitoredItemModifyRequest<'a>,
    }
}

ua_struct! {
    /// Result for one modified item.
    pub struct MonitoredItemModifyResult<'a> {
        /// Result.
        status_code: one StatusCode,
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
    pub struct ModifyMonitoredItemsResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Results.
        results: array MonitoredItemModifyResult<'a>,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}

ua_struct! {
    /// Disables, samples or reports monitored items (§5.13.4); a Disabled item is a frozen tag.
    pub struct SetMonitoringModeRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// SubscriptionId.
        subscription_id: one u32,
        /// Disabled (0), Sampling (1), Reporting (2).
        monitoring_mode: one i32,
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

/// What a quick scan of one MonitoredItemNotification reads: enough to follow an item's
/// quality and freshness without building its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemScan {
    /// ClientHandle.
    pub client_handle: u32,
    /// DataValue StatusCode (absent means Good).
    pub status: Option<u32>,
    /// DataValue SourceTimestamp.
    pub source_timestamp: Option<DateTime>,
}

/// Fixed byte size of a scalar Variant of this built-in type, when it has one.
fn fixed_scalar_size(type_id: u8) -> Option<usize> {
    Some(match type_id {
        0 => 0,
        1..=3 => 1,
        4 | 5 => 2,
        6 | 7 | 10 | 19 => 4,
        8 | 9 | 11 | 13 => 8,
        14 => 16,
        _ => return None,
    })
}

/// Skips one Variant: fixed-size scalars and strings by length, anything else by decoding it.
fn skip_variant(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    const S: &str = "Variant";
    let mask = r.rest().first().copied().unwrap_or(0);
    let type_id = mask & 0x3F;
    if mask & 0xC0 == 0 {
        if let Some(n) = fixed_scalar_size(type_id) {
            r.skip(1, S)?;
            return r.skip(n, S);
        }
        if matches!(type_id, 12 | 15 | 16) {
            r.skip(1, S)?;
            let len = r.read_i32(S)?;
            return r.skip(usize::try_from(len).unwrap_or(0), S);
        }
    }
    Variant::decode(r).map(|_| ())
}

/// Reads each MonitoredItemNotification of a DataChangeNotification body (ClientHandle,
/// DataValue status and SourceTimestamp) and skips its value: the live proxy follows item
/// quality at Publish rate without decoding every Variant. Stops at the first malformed item.
pub fn scan_data_change(body: &[u8], mut f: impl FnMut(ItemScan)) -> Result<(), DecodeError> {
    const S: &str = "DataChangeNotification";
    let mut r = Reader::new(body);
    let count = r.read_array_length(S, "MonitoredItems", 5)?.unwrap_or(0);
    for _ in 0..count {
        let client_handle = r.read_u32(S)?;
        let mask = r.read_u8(S)?;
        if mask & 0x01 != 0 {
            skip_variant(&mut r)?;
        }
        let status = if mask & 0x02 != 0 {
            Some(r.read_u32(S)?)
        } else {
            None
        };
        let source_timestamp = if mask & 0x04 != 0 {
            Some(DateTime(r.read_i64(S)?))
        } else {
            None
        };
        // SourcePicoseconds, ServerTimestamp, ServerPicoseconds.
        let tail = [(0x10, 2), (0x08, 8), (0x20, 2)]
            .iter()
            .filter(|(bit, _)| mask & bit != 0)
            .map(|(_, n)| n)
            .sum();
        r.skip(tail, S)?;
        f(ItemScan {
            client_handle,
            status,
            source_timestamp,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::arithmetic_side_effects
)]
mod scan_tests {
    use super::*;
    use crate::encode::Encode;
    use crate::types::{ArrayValues, UaString};

    #[test]
    fn scan_reads_what_the_full_decoder_reads() {
        let values = [
            DataValue {
                value: Some(Variant::from(3.5f64)),
                status: Some(0x8000_0000),
                source_timestamp: Some(DateTime(77)),
                server_timestamp: Some(DateTime(78)),
                server_picoseconds: Some(5),
                ..DataValue::default()
            },
            DataValue {
                value: Some(Variant::from(UaString::from("text"))),
                source_timestamp: Some(DateTime(99)),
                source_picoseconds: Some(1),
                ..DataValue::default()
            },
            DataValue::new(Variant::from(ArrayValues::Int32(Some(vec![1, 2, 3])))),
        ];
        let dc = DataChangeNotification {
            monitored_items: Some(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| MonitoredItemNotification {
                        client_handle: 10 + i as u32,
                        value: v.clone(),
                    })
                    .collect(),
            ),
            diagnostic_infos: None,
        };
        let mut seen = Vec::new();
        scan_data_change(&dc.to_vec(), |s| seen.push(s)).unwrap();
        assert_eq!(
            seen,
            vec![
                ItemScan {
                    client_handle: 10,
                    status: Some(0x8000_0000),
                    source_timestamp: Some(DateTime(77))
                },
                ItemScan {
                    client_handle: 11,
                    status: None,
                    source_timestamp: Some(DateTime(99))
                },
                ItemScan {
                    client_handle: 12,
                    status: None,
                    source_timestamp: None
                },
            ]
        );
        assert!(scan_data_change(&[1, 0, 0, 0, 5], |_| {}).is_err());
    }
}
