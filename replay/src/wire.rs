//! What both replay roles write: secure conversation chunks of security None with live
//! numbering, and recorded bodies with their timestamps shifted and ClientHandles mapped.

use std::collections::HashMap;

use uatap_analysis::Timestamp;
use uatap_codec::ids::{self, structure};
use uatap_codec::secure::{
    AsymmetricSecurityHeader, Chunk, SecurityHeader, SequenceHeader, SECURITY_POLICY_NONE_URI,
};
use uatap_codec::services::{
    DataChangeNotification, EventNotificationList, Message, NotificationMessage, ResponseHeader,
    ServiceBody, ServiceFault,
};
use uatap_codec::status::StatusCode;
use uatap_codec::tcp::{ChunkType, MessageHeader, MessageType, MESSAGE_HEADER_LEN};
use uatap_codec::types::{
    ByteString, DataValue, DateTime, Decode, DiagnosticInfo, ExtensionObject, ExtensionObjectBody,
    NodeId, UaString,
};
use uatap_codec::{Encode, Reader};

/// The smallest chunk replay writes, whatever a peer announced: room for the headers and some
/// body.
const MIN_CHUNK: usize = 1024;

/// The numbering of one direction of a live channel: the chunks replay sends carry these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// SecureChannelId.
    pub channel_id: u32,
    /// TokenId.
    pub token_id: u32,
    /// Last SequenceNumber sent.
    pub sequence_number: u32,
    /// Largest chunk the peer accepts (its ReceiveBufferSize).
    pub max_chunk: u32,
}

impl Channel {
    /// A channel before OPN: id 0, token 0, numbering from `first_sequence_number`.
    #[must_use]
    pub fn new(first_sequence_number: u32, max_chunk: u32) -> Self {
        Channel {
            channel_id: 0,
            token_id: 0,
            sequence_number: first_sequence_number.wrapping_sub(1),
            max_chunk,
        }
    }

    /// Writes one message as chunks of security None: `body` is the encoded service message
    /// (encoding NodeId first).
    pub fn write(
        &mut self,
        message_type: MessageType,
        request_id: u32,
        body: &[u8],
        out: &mut Vec<u8>,
    ) {
        let security_header = match message_type {
            MessageType::OpenSecureChannel => {
                SecurityHeader::Asymmetric(AsymmetricSecurityHeader {
                    security_policy_uri: UaString::from(SECURITY_POLICY_NONE_URI),
                    sender_certificate: ByteString::null(),
                    receiver_certificate_thumbprint: ByteString::null(),
                })
            }
            _ => SecurityHeader::Symmetric {
                token_id: self.token_id,
            },
        };
        let overhead = MESSAGE_HEADER_LEN
            .saturating_add(4)
            .saturating_add(security_header.encoded_len())
            .saturating_add(8);
        let max_chunk = usize::try_from(self.max_chunk)
            .unwrap_or(usize::MAX)
            .max(MIN_CHUNK);
        let room = max_chunk.saturating_sub(overhead).max(1);
        let mut pieces: Vec<&[u8]> = body.chunks(room).collect();
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.into_iter().enumerate() {
            self.sequence_number = self.sequence_number.wrapping_add(1);
            let chunk = Chunk {
                header: MessageHeader {
                    message_type,
                    chunk_type: if i == last {
                        ChunkType::Final
                    } else {
                        ChunkType::Intermediate
                    },
                    message_size: 0,
                },
                secure_channel_id: self.channel_id,
                security_header: security_header.clone(),
                sequence_header: Some(SequenceHeader {
                    sequence_number: self.sequence_number,
                    request_id,
                }),
                body: piece,
                signature: &[],
                encrypted: false,
            };
            chunk.encode(out);
        }
    }
}

/// An OPC UA DateTime moved by `delta_micros` (the null DateTime stays null).
#[must_use]
pub fn shift(t: DateTime, delta_micros: i64) -> DateTime {
    if t.0 == 0 || delta_micros == 0 {
        return t;
    }
    DateTime(t.0.saturating_add(delta_micros.saturating_mul(10)))
}

/// An analysis timestamp as an OPC UA DateTime.
#[must_use]
pub fn date_time(t: Timestamp) -> DateTime {
    DateTime::from_unix_micros(t.unix_micros)
}

fn shift_value(v: &mut DataValue<'_>, delta: i64) {
    if let Some(t) = v.source_timestamp.as_mut() {
        *t = shift(*t, delta);
    }
    if let Some(t) = v.server_timestamp.as_mut() {
        *t = shift(*t, delta);
    }
}

/// Rewrites one NotificationMessage for the live peer: timestamps moved by `delta` µs,
/// recorded ClientHandles replaced by the live ones (`handles`, recorded -> live).
pub fn rewrite_notification_message(
    n: &mut NotificationMessage<'_>,
    delta: i64,
    handles: &HashMap<u32, u32>,
) {
    n.publish_time = shift(n.publish_time, delta);
    let Some(data) = n.notification_data.as_mut() else {
        return;
    };
    for eo in data.iter_mut() {
        let Some(id) = eo.type_id.as_ns0_numeric() else {
            continue;
        };
        let Some(body) = eo.binary_body() else {
            continue;
        };
        let rewritten = match id {
            structure::DATA_CHANGE_NOTIFICATION => {
                let mut r = Reader::new(body);
                let Ok(mut dc) = DataChangeNotification::decode(&mut r) else {
                    continue;
                };
                for item in dc.monitored_items.iter_mut().flatten() {
                    if let Some(live) = handles.get(&item.client_handle) {
                        item.client_handle = *live;
                    }
                    shift_value(&mut item.value, delta);
                }
                dc.to_vec()
            }
            structure::EVENT_NOTIFICATION_LIST => {
                let mut r = Reader::new(body);
                let Ok(mut ev) = EventNotificationList::decode(&mut r) else {
                    continue;
                };
                for e in ev.events.iter_mut().flatten() {
                    if let Some(live) = handles.get(&e.client_handle) {
                        e.client_handle = *live;
                    }
                }
                ev.to_vec()
            }
            _ => continue,
        };
        eo.body = ExtensionObjectBody::ByteString(std::borrow::Cow::Owned(rewritten));
    }
}

/// A ServiceFault answering a request with `request_handle`: what replay says when the
/// recording has no answer.
#[must_use]
pub fn service_fault(request_handle: u32, status: StatusCode, now: Timestamp) -> Vec<u8> {
    Message {
        type_id: NodeId::numeric(0, ids::service::SERVICE_FAULT),
        body: ServiceBody::ServiceFault(ServiceFault {
            response_header: response_header(request_handle, status, now),
        }),
    }
    .to_vec()
}

/// A ResponseHeader with nothing but the time, the handle and the result.
#[must_use]
pub fn response_header(
    request_handle: u32,
    status: StatusCode,
    now: Timestamp,
) -> ResponseHeader<'static> {
    ResponseHeader {
        timestamp: date_time(now),
        request_handle,
        service_result: status,
        service_diagnostics: DiagnosticInfo::default(),
        string_table: None,
        additional_header: ExtensionObject::default(),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use uatap_codec::reassembly::{Reassembler, ReassemblyEvent};
    use uatap_codec::services::parse_message;

    #[test]
    fn big_bodies_are_chunked_and_reassemble() {
        let body: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut ch = Channel::new(7, 1024);
        ch.channel_id = 3;
        ch.token_id = 4;
        let mut out = Vec::new();
        ch.write(MessageType::Message, 99, &body, &mut out);
        assert_eq!(
            ch.sequence_number,
            7 + 5 - 1,
            "5 chunks of at most 1024 bytes"
        );
        let mut r = Reassembler::default();
        r.handle_input(&out);
        let Some(ReassemblyEvent::Message(m)) = r.poll_event() else {
            panic!("one message")
        };
        assert_eq!(m.payload, body);
        assert_eq!(m.chunks, 5);
        assert_eq!(m.secure_channel_id, Some(3));
        assert_eq!(m.token_id, Some(4));
        assert_eq!(m.sequence_header.unwrap().request_id, 99);
        assert!(r.poll_event().is_none());
    }

    #[test]
    fn service_fault_decodes() {
        let now = Timestamp::from_unix_micros(1_700_000_000_000_000);
        let b = service_fault(42, StatusCode(0x800B_0000), now);
        let m = parse_message(&mut Reader::new(&b)).unwrap();
        assert_eq!(m.service_name(), Some("ServiceFault"));
        assert_eq!(m.request_handle(), Some(42));
        assert_eq!(m.service_result(), Some(StatusCode(0x800B_0000)));
    }

    #[test]
    fn shift_keeps_null() {
        assert_eq!(shift(DateTime(0), 5), DateTime(0));
        assert_eq!(shift(DateTime(100), 5), DateTime(150));
    }
}
