//! RequestHeader, ResponseHeader and ServiceFault (OPC 10000-4 §7.32–7.34), and the small
//! structures several services share.

use super::macros::ua_struct;
use crate::status::StatusCode;
use crate::types::{
    ByteString, DateTime, DiagnosticInfo, ExtensionObject, NodeId, QualifiedName, UaString,
};

ua_struct! {
    /// Starts every request: session token, client timestamp, RequestHandle (§7.32).
    pub struct RequestHeader<'a> {
        /// Secret session token from CreateSessionResponse; null before a session exists.
        authentication_token: one NodeId<'a>,
        /// When the client sent the request.
        timestamp: one DateTime,
        /// Chosen by the client, echoed in the response.
        request_handle: one u32,
        /// Bit mask of the diagnostics wanted.
        return_diagnostics: one u32,
        /// Audit log entry id.
        audit_entry_id: one UaString<'a>,
        /// Client-side timeout in ms (0 = none).
        timeout_hint: one u32,
        /// Reserved for future use; normally null.
        additional_header: one ExtensionObject<'a>,
    }
}

ua_struct! {
    /// Starts every response: server timestamp, echoed RequestHandle, ServiceResult (§7.33).
    pub struct ResponseHeader<'a> {
        /// When the server sent the response.
        timestamp: one DateTime,
        /// The request's RequestHandle.
        request_handle: one u32,
        /// Overall result of the service.
        service_result: one StatusCode,
        /// Diagnostics for the service result.
        service_diagnostics: one DiagnosticInfo<'a>,
        /// Strings referenced by the diagnostics.
        string_table: array UaString<'a>,
        /// Reserved; normally null.
        additional_header: one ExtensionObject<'a>,
    }
}

ua_struct! {
    /// Sent instead of the normal response when a whole service fails (§7.34).
    pub struct ServiceFault<'a> {
        /// Its ServiceResult says why.
        response_header: one ResponseHeader<'a>,
    }
}

ua_struct! {
    /// Names one attribute of one node, for Read and for monitored items.
    pub struct ReadValueId<'a> {
        /// The node.
        node_id: one NodeId<'a>,
        /// Which attribute (13 = Value).
        attribute_id: one u32,
        /// Sub-range of an array value.
        index_range: one UaString<'a>,
        /// Requested data encoding.
        data_encoding: one QualifiedName<'a>,
    }
}

ua_struct! {
    /// A signature over certificate and nonce, proving possession of a private key.
    pub struct SignatureData<'a> {
        /// Signature algorithm URI.
        algorithm: one UaString<'a>,
        /// The signature.
        signature: one ByteString<'a>,
    }
}

ua_struct! {
    /// Results of a service that acts on a list: one StatusCode per operation.
    pub struct StatusResults<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// One result per operation.
        results: array StatusCode,
        /// Diagnostics per operation.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}
