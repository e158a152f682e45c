//! Service bodies (OPC 10000-4): the typed requests and responses troubleshooting needs, and for
//! every other service its RequestHeader/ResponseHeader with the rest kept raw.
//!
//! A body starts with the NodeId of its type's binary encoding; [`parse_message`] names the
//! service from it and decodes what it can. [`Message`] encodes back to the same bytes.

mod attribute;
mod common;
mod discovery;
mod macros;
mod secure_channel;
mod session;
mod subscription;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod strategies;
#[cfg(test)]
mod tests;

pub use attribute::*;
pub use common::*;
pub use discovery::*;
pub use secure_channel::*;
pub use session::*;
pub use subscription::*;

use bytes::BufMut;

use crate::error::DecodeError;
use crate::ids::{self, service as id};
use crate::reader::Reader;
use crate::status::StatusCode;
use crate::types::{Decode, NodeId};
use crate::Encode;

/// The header of a service this codec has no typed decoder for.
#[derive(Debug, Clone, PartialEq)]
pub enum Header<'a> {
    /// A request.
    Request(RequestHeader<'a>),
    /// A response.
    Response(ResponseHeader<'a>),
    /// An unknown type id: not even the header is known.
    Unknown,
}

/// A service without a typed decoder: its header, and the rest of the body as raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawService<'a> {
    /// Decoded header.
    pub header: Header<'a>,
    /// Everything after the header, kept byte-exact.
    pub rest: &'a [u8],
}

macro_rules! services {
    ($( $variant:ident ( $ty:ident ) = $id:path, )*) => {
        /// The body of a service message, typed when the codec knows the service.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(missing_docs)]
        pub enum ServiceBody<'a> {
            $( $variant($ty<'a>), )*
            /// Any other service (or an unknown type id), header decoded, rest raw.
            Other(RawService<'a>),
        }

        fn decode_body<'a>(type_id: u32, r: &mut Reader<'a>) -> Result<ServiceBody<'a>, DecodeError> {
            Ok(match type_id {
                $( $id => ServiceBody::$variant($ty::decode(r)?), )*
                other => {
                    let header = match ids::service_name(other) {
                        Some(n) if n.ends_with("Request") => Header::Request(RequestHeader::decode(r)?),
                        Some(_) => Header::Response(ResponseHeader::decode(r)?),
                        None => Header::Unknown,
                    };
                    ServiceBody::Other(RawService { header, rest: r.take_rest() })
                }
            })
        }

        impl<'a> ServiceBody<'a> {
            /// The request header, for requests.
            pub fn request_header(&self) -> Option<&RequestHeader<'a>> {
                match self {
                    ServiceBody::Other(RawService { header: Header::Request(h), .. }) => Some(h),
                    $( ServiceBody::$variant(b) => services!(@req b $ty), )*
                    _ => None,
                }
            }

            /// The response header, for responses and ServiceFault.
            pub fn response_header(&self) -> Option<&ResponseHeader<'a>> {
                match self {
                    ServiceBody::Other(RawService { header: Header::Response(h), .. }) => Some(h),
                    $( ServiceBody::$variant(b) => services!(@resp b $ty), )*
                    _ => None,
                }
            }
        }

        impl Encode for ServiceBody<'_> {
            fn encoded_len(&self) -> usize {
                match self {
                    $( ServiceBody::$variant(b) => b.encoded_len(), )*
                    ServiceBody::Other(o) => {
                        let h = match &o.header {
                            Header::Request(h) => h.encoded_len(),
                            Header::Response(h) => h.encoded_len(),
                            Header::Unknown => 0,
                        };
                        h.saturating_add(o.rest.len())
                    }
                }
            }
            fn encode<B: BufMut>(&self, out: &mut B) {
                match self {
                    $( ServiceBody::$variant(b) => b.encode(out), )*
                    ServiceBody::Other(o) => {
                        match &o.header {
                            Header::Request(h) => h.encode(out),
                            Header::Response(h) => h.encode(out),
                            Header::Unknown => {}
                        }
                        out.put_slice(o.rest);
                    }
                }
            }
        }
    };
    (@req $b:ident $ty:ident) => { services!(@pick_req $b, $ty) };
    (@resp $b:ident $ty:ident) => { services!(@pick_resp $b, $ty) };
    (@pick_req $b:ident, $ty:ident) => { <$ty as HasHeaders>::request_header($b) };
    (@pick_resp $b:ident, $ty:ident) => { <$ty as HasHeaders>::response_header($b) };
}

/// Access to whichever header a typed service body starts with.
trait HasHeaders<'a> {
    fn request_header(&self) -> Option<&RequestHeader<'a>> {
        None
    }
    fn response_header(&self) -> Option<&ResponseHeader<'a>> {
        None
    }
}

macro_rules! requests {
    ($($ty:ident),*) => {$(
        impl<'a> HasHeaders<'a> for $ty<'a> {
            fn request_header(&self) -> Option<&RequestHeader<'a>> {
                Some(&self.request_header)
            }
        }
    )*};
}

macro_rules! responses {
    ($($ty:ident),*) => {$(
        impl<'a> HasHeaders<'a> for $ty<'a> {
            fn response_header(&self) -> Option<&ResponseHeader<'a>> {
                Some(&self.response_header)
            }
        }
    )*};
}

requests!(
    OpenSecureChannelRequest,
    CloseSecureChannelRequest,
    GetEndpointsRequest,
    FindServersRequest,
    CreateSessionRequest,
    ActivateSessionRequest,
    CloseSessionRequest,
    CreateSubscriptionRequest,
    ModifySubscriptionRequest,
    SetPublishingModeRequest,
    DeleteSubscriptionsRequest,
    CreateMonitoredItemsRequest,
    DeleteMonitoredItemsRequest,
    ModifyMonitoredItemsRequest,
    SetMonitoringModeRequest,
    PublishRequest,
    RepublishRequest,
    TransferSubscriptionsRequest,
    ReadRequest,
    WriteRequest,
    BrowseRequest,
    CallRequest
);

responses!(
    OpenSecureChannelResponse,
    CloseSecureChannelResponse,
    ServiceFault,
    GetEndpointsResponse,
    FindServersResponse,
    CreateSessionResponse,
    ActivateSessionResponse,
    CloseSessionResponse,
    CreateSubscriptionResponse,
    ModifySubscriptionResponse,
    StatusResults,
    CreateMonitoredItemsResponse,
    ModifyMonitoredItemsResponse,
    PublishResponse,
    RepublishResponse,
    TransferSubscriptionsResponse,
    ReadResponse,
    BrowseResponse,
    CallResponse
);

services! {
    OpenSecureChannelRequest(OpenSecureChannelRequest) = id::OPEN_SECURE_CHANNEL_REQUEST,
    OpenSecureChannelResponse(OpenSecureChannelResponse) = id::OPEN_SECURE_CHANNEL_RESPONSE,
    CloseSecureChannelRequest(CloseSecureChannelRequest) = id::CLOSE_SECURE_CHANNEL_REQUEST,
    CloseSecureChannelResponse(CloseSecureChannelResponse) = id::CLOSE_SECURE_CHANNEL_RESPONSE,
    ServiceFault(ServiceFault) = id::SERVICE_FAULT,
    GetEndpointsRequest(GetEndpointsRequest) = id::GET_ENDPOINTS_REQUEST,
    GetEndpointsResponse(GetEndpointsResponse) = id::GET_ENDPOINTS_RESPONSE,
    FindServersRequest(FindServersRequest) = id::FIND_SERVERS_REQUEST,
    FindServersResponse(FindServersResponse) = id::FIND_SERVERS_RESPONSE,
    CreateSessionRequest(CreateSessionRequest) = id::CREATE_SESSION_REQUEST,
    CreateSessionResponse(CreateSessionResponse) = id::CREATE_SESSION_RESPONSE,
    ActivateSessionRequest(ActivateSessionRequest) = id::ACTIVATE_SESSION_REQUEST,
    ActivateSessionResponse(ActivateSessionResponse) = id::ACTIVATE_SESSION_RESPONSE,
    CloseSessionRequest(CloseSessionRequest) = id::CLOSE_SESSION_REQUEST,
    CloseSessionResponse(CloseSessionResponse) = id::CLOSE_SESSION_RESPONSE,
    CreateSubscriptionRequest(CreateSubscriptionRequest) = id::CREATE_SUBSCRIPTION_REQUEST,
    CreateSubscriptionResponse(CreateSubscriptionResponse) = id::CREATE_SUBSCRIPTION_RESPONSE,
    ModifySubscriptionRequest(ModifySubscriptionRequest) = id::MODIFY_SUBSCRIPTION_REQUEST,
    ModifySubscriptionResponse(ModifySubscriptionResponse) = id::MODIFY_SUBSCRIPTION_RESPONSE,
    SetPublishingModeRequest(SetPublishingModeRequest) = id::SET_PUBLISHING_MODE_REQUEST,
    SetPublishingModeResponse(StatusResults) = id::SET_PUBLISHING_MODE_RESPONSE,
    DeleteSubscriptionsRequest(DeleteSubscriptionsRequest) = id::DELETE_SUBSCRIPTIONS_REQUEST,
    DeleteSubscriptionsResponse(StatusResults) = id::DELETE_SUBSCRIPTIONS_RESPONSE,
    CreateMonitoredItemsRequest(CreateMonitoredItemsRequest) = id::CREATE_MONITORED_ITEMS_REQUEST,
    CreateMonitoredItemsResponse(CreateMonitoredItemsResponse) = id::CREATE_MONITORED_ITEMS_RESPONSE,
    DeleteMonitoredItemsRequest(DeleteMonitoredItemsRequest) = id::DELETE_MONITORED_ITEMS_REQUEST,
    DeleteMonitoredItemsResponse(StatusResults) = id::DELETE_MONITORED_ITEMS_RESPONSE,
    ModifyMonitoredItemsRequest(ModifyMonitoredItemsRequest) = id::MODIFY_MONITORED_ITEMS_REQUEST,
    ModifyMonitoredItemsResponse(ModifyMonitoredItemsResponse) = id::MODIFY_MONITORED_ITEMS_RESPONSE,
    SetMonitoringModeRequest(SetMonitoringModeRequest) = id::SET_MONITORING_MODE_REQUEST,
    SetMonitoringModeResponse(StatusResults) = id::SET_MONITORING_MODE_RESPONSE,
    PublishRequest(PublishRequest) = id::PUBLISH_REQUEST,
    PublishResponse(PublishResponse) = id::PUBLISH_RESPONSE,
    RepublishRequest(RepublishRequest) = id::REPUBLISH_REQUEST,
    RepublishResponse(RepublishResponse) = id::REPUBLISH_RESPONSE,
    TransferSubscriptionsRequest(TransferSubscriptionsRequest) = id::TRANSFER_SUBSCRIPTIONS_REQUEST,
    TransferSubscriptionsResponse(TransferSubscriptionsResponse) = id::TRANSFER_SUBSCRIPTIONS_RESPONSE,
    ReadRequest(ReadRequest) = id::READ_REQUEST,
    ReadResponse(ReadResponse) = id::READ_RESPONSE,
    WriteRequest(WriteRequest) = id::WRITE_REQUEST,
    WriteResponse(StatusResults) = id::WRITE_RESPONSE,
    BrowseRequest(BrowseRequest) = id::BROWSE_REQUEST,
    BrowseResponse(BrowseResponse) = id::BROWSE_RESPONSE,
    CallRequest(CallRequest) = id::CALL_REQUEST,
    CallResponse(CallResponse) = id::CALL_RESPONSE,
}

/// A whole service message body: the encoding NodeId, then the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// NodeId of the body's binary encoding (e.g. i=829 for PublishResponse).
    pub type_id: NodeId<'a>,
    /// The body.
    pub body: ServiceBody<'a>,
}

/// Parses a reassembled message body; it must be consumed exactly.
pub fn parse_message<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, DecodeError> {
    let type_id = NodeId::decode(r)?;
    let numeric = type_id.as_ns0_numeric().unwrap_or(u32::MAX);
    let body = decode_body(numeric, r)?;
    r.finish("Message")?;
    Ok(Message { type_id, body })
}

impl Encode for Message<'_> {
    fn encoded_len(&self) -> usize {
        self.type_id
            .encoded_len()
            .saturating_add(self.body.encoded_len())
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.type_id.encode(out);
        self.body.encode(out);
    }
}

impl<'a> Message<'a> {
    /// Numeric encoding id when the type id is a ns=0 numeric NodeId.
    pub fn type_id_numeric(&self) -> Option<u32> {
        self.type_id.as_ns0_numeric()
    }

    /// Service name from the encoding id, e.g. `PublishResponse`.
    pub fn service_name(&self) -> Option<&'static str> {
        self.type_id_numeric().and_then(ids::service_name)
    }

    /// RequestHandle from whichever header the body has.
    pub fn request_handle(&self) -> Option<u32> {
        self.body
            .request_header()
            .map(|h| h.request_handle)
            .or_else(|| self.body.response_header().map(|h| h.request_handle))
    }

    /// ServiceResult of a response.
    pub fn service_result(&self) -> Option<StatusCode> {
        self.body.response_header().map(|h| h.service_result)
    }

    /// NotificationMessage SequenceNumber of a Publish or Republish response.
    pub fn notification_sequence_number(&self) -> Option<u32> {
        match &self.body {
            ServiceBody::PublishResponse(p) => Some(p.notification_message.sequence_number),
            ServiceBody::RepublishResponse(p) => Some(p.notification_message.sequence_number),
            _ => None,
        }
    }
}

/// What every message view needs from a body, readable even when the full decode fails: the
/// type id and the header fields, decoded on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageSummary {
    /// Numeric encoding id (ns=0).
    pub type_id: Option<u32>,
    /// RequestHandle.
    pub request_handle: Option<u32>,
    /// ServiceResult of a response.
    pub service_result: Option<StatusCode>,
}

/// Reads the type id and the request or response header only, for a body the full decoder
/// rejected or a caller that needs nothing else.
pub fn summarize_message(body: &[u8]) -> Result<MessageSummary, DecodeError> {
    let mut r = Reader::new(body);
    let type_id = NodeId::decode(&mut r)?.as_ns0_numeric();
    let mut s = MessageSummary {
        type_id,
        ..MessageSummary::default()
    };
    match type_id.and_then(ids::service_name) {
        Some(n) if n.ends_with("Request") => {
            let h = RequestHeader::decode(&mut r)?;
            s.request_handle = Some(h.request_handle);
        }
        Some(_) => {
            let h = ResponseHeader::decode(&mut r)?;
            s.request_handle = Some(h.request_handle);
            s.service_result = Some(h.service_result);
        }
        None => {}
    }
    Ok(s)
}
