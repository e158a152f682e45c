//! Read, Write (OPC 10000-4 §5.11), Browse (§5.9) and Call (§5.12): enough to see what a client
//! reads after a reconnect and to spot a ResendData call.

use super::common::{ReadValueId, RequestHeader, ResponseHeader};
use super::macros::ua_struct;
use crate::status::StatusCode;
use crate::types::{
    ByteString, DataValue, DateTime, DiagnosticInfo, ExpandedNodeId, LocalizedText, NodeId,
    QualifiedName, UaString, Variant,
};

ua_struct! {
    /// Reads attributes.
    pub struct ReadRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// Maximum age of cached values, ms.
        max_age: one f64,
        /// Which timestamps to return.
        timestamps_to_return: one i32,
        /// The attributes.
        nodes_to_read: array ReadValueId<'a>,
    }
}

ua_struct! {
    /// The values read.
    pub struct ReadResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Values in request order.
        results: array DataValue<'a>,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}

ua_struct! {
    /// One attribute to write.
    pub struct WriteValue<'a> {
        /// The node.
        node_id: one NodeId<'a>,
        /// Attribute.
        attribute_id: one u32,
        /// Sub-range.
        index_range: one UaString<'a>,
        /// The value.
        value: one DataValue<'a>,
    }
}

ua_struct! {
    /// Writes attributes.
    pub struct WriteRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// The writes.
        nodes_to_write: array WriteValue<'a>,
    }
}

ua_struct! {
    /// The view to browse in.
    pub struct ViewDescription<'a> {
        /// View node (null = whole address space).
        view_id: one NodeId<'a>,
        /// View timestamp.
        timestamp: one DateTime,
        /// View version.
        view_version: one u32,
    }
}

ua_struct! {
    /// One node to browse.
    pub struct BrowseDescription<'a> {
        /// The node.
        node_id: one NodeId<'a>,
        /// Forward (0), Inverse (1), Both (2).
        browse_direction: one i32,
        /// Reference type.
        reference_type_id: one NodeId<'a>,
        /// Include subtypes.
        include_subtypes: one bool,
        /// Node class filter.
        node_class_mask: one u32,
        /// Fields wanted.
        result_mask: one u32,
    }
}

ua_struct! {
    /// Browses references.
    pub struct BrowseRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// View.
        view: one ViewDescription<'a>,
        /// Cap per node.
        requested_max_references_per_node: one u32,
        /// Nodes.
        nodes_to_browse: array BrowseDescription<'a>,
    }
}

ua_struct! {
    /// One reference found.
    pub struct ReferenceDescription<'a> {
        /// Reference type.
        reference_type_id: one NodeId<'a>,
        /// Direction.
        is_forward: one bool,
        /// Target.
        node_id: one ExpandedNodeId<'a>,
        /// Browse name.
        browse_name: one QualifiedName<'a>,
        /// Display name.
        display_name: one LocalizedText<'a>,
        /// Node class.
        node_class: one i32,
        /// Type definition.
        type_definition: one ExpandedNodeId<'a>,
    }
}

ua_struct! {
    /// References of one node.
    pub struct BrowseResult<'a> {
        /// Result.
        status_code: one StatusCode,
        /// For BrowseNext.
        continuation_point: one ByteString<'a>,
        /// References.
        references: array ReferenceDescription<'a>,
    }
}

ua_struct! {
    /// Browse results.
    pub struct BrowseResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Results.
        results: array BrowseResult<'a>,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}

ua_struct! {
    /// One method call (ResendData is ObjectId 2253, MethodId 12873).
    pub struct CallMethodRequest<'a> {
        /// Object owning the method.
        object_id: one NodeId<'a>,
        /// Method.
        method_id: one NodeId<'a>,
        /// Arguments.
        input_arguments: array Variant<'a>,
    }
}

ua_struct! {
    /// Calls methods.
    pub struct CallRequest<'a> {
        /// Header.
        request_header: one RequestHeader<'a>,
        /// Calls.
        methods_to_call: array CallMethodRequest<'a>,
    }
}

ua_struct! {
    /// Result of one call.
    pub struct CallMethodResult<'a> {
        /// Result.
        status_code: one StatusCode,
        /// Per argument.
        input_argument_results: array StatusCode,
        /// Diagnostics per argument.
        input_argument_diagnostic_infos: array DiagnosticInfo<'a>,
        /// Outputs.
        output_arguments: array Variant<'a>,
    }
}

ua_struct! {
    /// Call results.
    pub struct CallResponse<'a> {
        /// Header.
        response_header: one ResponseHeader<'a>,
        /// Results.
        results: array CallMethodResult<'a>,
        /// Diagnostics.
        diagnostic_infos: array DiagnosticInfo<'a>,
    }
}
