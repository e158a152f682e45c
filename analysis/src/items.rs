//! Monitored items of one subscription: ClientHandle -> NodeId (from CreateMonitoredItems
//! matched to its response), the quality class of the last value, and whether its
//! SourceTimestamp still advances. Frozen tags are often item-level: the subscription publishes
//! while one item went Bad, was never created, or stopped changing.
//!
//! Bounded: at most [`MAX_ITEMS_PER_SUBSCRIPTION`] items are tracked per subscription; items
//! created beyond that still get their `monitored_item` event but no quality or staleness.

use std::collections::HashMap;

use uatap_codec::services::ItemScan;
use uatap_codec::status::StatusCode;
use uatap_codec::types::DateTime;

use crate::payload::{ItemQualityInfo, ItemStaleInfo};
use crate::tracker::PairHasher;

/// ClientHandles are small integers chosen by the client: a cheap hash is enough, and this map
/// is consulted for every item of every data message.
type HandleMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<PairHasher>>;

/// Most items followed per subscription (memory stays bounded whatever the traffic).
pub(crate) const MAX_ITEMS_PER_SUBSCRIPTION: usize = 100_000;
/// An item is stale after at least this many data messages without a newer SourceTimestamp...
const STALE_MIN_PUBLISHES: u64 = 20;
/// ...and at least this many times its usual number of messages between two advances.
const STALE_FACTOR: u64 = 10;
/// An item must have advanced this often before it can be called stale (a constant tag is not).
const STALE_MIN_ADVANCES: u64 = 3;
/// Staleness is checked every this many data messages of the subscription at least...
const STALE_SWEEP_EVERY: u64 = 8;
/// ...and no more often than every (items / this) messages, so a sweep costs at most this many
/// items per data message on average, whatever the item count.
const STALE_SWEEP_ITEMS_PER_MESSAGE: u64 = 64;

/// Name of a MonitoringMode value.
pub(crate) fn monitoring_mode_name(mode: i32) -> Option<&'static str> {
    match mode {
        0 => Some("disabled"),
        1 => Some("sampling"),
        2 => Some("reporting"),
        _ => None,
    }
}

/// Good (0), Uncertain (1) or Bad (2) from the top bits of a StatusCode.
fn class(status: u32) -> u8 {
    match status >> 30 {
        0 => 0,
        1 => 1,
        _ => 2,
    }
}

#[derive(Debug, Default)]
struct Item {
    node_id: Option<String>,
    last_status: Option<u32>,
    last_ts: Option<i64>,
    advances: u64,
    first_advance_at: u64,
    last_advance_at: u64,
    stale_reported: bool,
}

/// The items of one subscription.
#[derive(Debug, Default)]
pub(crate) struct Items {
    by_handle: HandleMap<Item>,
    /// MonitoredItemId -> ClientHandle (Modify, Delete and SetMonitoringMode name items by id).
    by_id: HandleMap<u32>,
    /// Data NotificationMessages seen since the first item was created.
    data_messages: u64,
    /// Items created but not tracked because of the cap.
    pub(crate) untracked: u64,
}

/// What the items of one data message produced.
pub(crate) enum ItemEvent {
    Quality(ItemQualityInfo),
    Stale(ItemStaleInfo),
}

impl Items {
    /// Items tracked.
    pub(crate) fn len(&self) -> usize {
        self.by_handle.len()
    }

    /// True when no item is known: data messages are then not scanned at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_handle.is_empty()
    }

    /// A created item (Good result).
    pub(crate) fn created(&mut self, handle: u32, id: u32, node_id: Option<String>) {
        if self.by_handle.len() >= MAX_ITEMS_PER_SUBSCRIPTION
            && !self.by_handle.contains_key(&handle)
        {
            self.untracked = self.untracked.saturating_add(1);
            return;
        }
        self.by_handle.insert(
            handle,
            Item {
                node_id,
                ..Item::default()
            },
        );
        self.by_id.insert(id, handle);
    }

    /// ClientHandle and NodeId of an item by its MonitoredItemId.
    pub(crate) fn by_id(&self, id: u32) -> (Option<u32>, Option<String>) {
        let handle = self.by_id.get(&id).copied();
        let node = handle
            .and_then(|h| self.by_handle.get(&h))
            .and_then(|i| i.node_id.clone());
        (handle, node)
    }

    /// ModifyMonitoredItems may give an item a new ClientHandle.
    pub(crate) fn rehandled(&mut self, id: u32, new_handle: u32) {
        let Some(old) = self.by_id.get(&id).copied() else {
            return;
        };
        if old != new_handle {
            if let Some(item) = self.by_handle.remove(&old) {
                self.by_handle.insert(new_handle, item);
                self.by_id.insert(id, new_handle);
            }
        }
    }

    /// A deleted item.
    pub(crate) fn deleted(&mut self, id: u32) {
        if let Some(h) = self.by_id.remove(&id) {
            self.by_handle.remove(&h);
        }
    }

    /// One item value of a data message.
    pub(crate) fn on_value(&mut self, subscription_id: u32, v: ItemScan, out: &mut Vec<ItemEvent>) {
        let now = self.data_messages;
        let Some(item) = self.by_handle.get_mut(&v.client_handle) else {
            return;
        };
        let status = v.status.unwrap_or(0);
        let changed_class = match item.last_status {
            None => class(status) != 0,
            Some(prev) => class(prev) != class(status),
        };
        if changed_class {
            out.push(ItemEvent::Quality(ItemQualityInfo {
                subscription_id,
                client_handle: v.client_handle,
                node_id: item.node_id.clone(),
                from: item.last_status.map(|s| StatusCode(s).hex()),
                from_name: item.last_status.and_then(|s| StatusCode(s).name()),
                to: StatusCode(status).hex(),
                to_name: StatusCode(status).name(),
                source_timestamp: v.source_timestamp.map(DateTime::to_rfc3339),
            }));
        }
        item.last_status = Some(status);
        if let Some(ts) = v.source_timestamp {
            if item.last_ts.is_none_or(|last| ts.0 > last) {
                if item.advances == 0 {
                    item.first_advance_at = now;
                }
                item.advances = item.advances.saturating_add(1);
                item.last_advance_at = now;
                item.last_ts = Some(ts.0);
                item.stale_reported = false;
            }
        }
    }

    /// Called after each data message of the subscription: counts it and, every few
    /// messages, reports items whose SourceTimestamp stopped advancing.
    pub(crate) fn after_data_message(&mut self, subscription_id: u32, out: &mut Vec<ItemEvent>) {
        self.data_messages = self.data_messages.saturating_add(1);
        let now = self.data_messages;
        let every = STALE_SWEEP_EVERY
            .max((self.by_handle.len() as u64).div_ceil(STALE_SWEEP_ITEMS_PER_MESSAGE));
        if now % every != 0 {
            return;
        }
        let first = out.len();
        for (handle, item) in &mut self.by_handle {
            if item.stale_reported || item.advances < STALE_MIN_ADVANCES {
                continue;
            }
            let usual = item
                .last_advance_at
                .saturating_sub(item.first_advance_at)
                .checked_div(item.advances.saturating_sub(1))
                .unwrap_or(1)
                .max(1);
            let since = now.saturating_sub(item.last_advance_at);
            if since >= STALE_MIN_PUBLISHES.max(usual.saturating_mul(STALE_FACTOR)) {
                item.stale_reported = true;
                out.push(ItemEvent::Stale(ItemStaleInfo {
                    subscription_id,
                    client_handle: *handle,
                    node_id: item.node_id.clone(),
                    since: item.last_ts.map(|t| DateTime(t).to_rfc3339()),
                    publishes_since: since,
                }));
            }
        }
        // Hash order is not stable: events come in ClientHandle order.
        if let Some(new) = out.get_mut(first..) {
            new.sort_by_key(|e| match e {
                ItemEvent::Stale(s) => s.client_handle,
                ItemEvent::Quality(q) => q.client_handle,
            });
        }
    }
}
