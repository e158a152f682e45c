//! NodeId and ExpandedNodeId (OPC 10000-6 §5.2.2.9–10): an encoding byte, then a namespace and
//! an identifier in one of six wire forms.

use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::BufMut;

use super::string::{base64, bytes_len, read_bytes, write_bytes};
use super::{invalid_at, ByteString, Decode, Guid, IntoStatic, UaString};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

/// ExpandedNodeId flag: a NamespaceUri String follows the NodeId.
const FLAG_NAMESPACE_URI: u8 = 0x80;
/// ExpandedNodeId flag: a ServerIndex UInt32 follows (after the URI if both).
const FLAG_SERVER_INDEX: u8 = 0x40;

/// The wire form of a NodeId (low 6 bits of its first byte, encoding.md §4).
///
/// Numeric identifiers have three forms; decoders accept any, so a byte-exact re-encoder must
/// remember the one it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NodeIdEncoding {
    /// 0x00: namespace 0, numeric identifier ≤ 255 in one byte (2 bytes in all).
    TwoByte = 0,
    /// 0x01: namespace ≤ 255 in one byte, numeric identifier ≤ 65535 (4 bytes in all).
    FourByte = 1,
    /// 0x02: UInt16 namespace, UInt32 identifier (7 bytes in all).
    Numeric = 2,
    /// 0x03: UInt16 namespace, String identifier.
    String = 3,
    /// 0x04: UInt16 namespace, Guid identifier.
    Guid = 4,
    /// 0x05: UInt16 namespace, ByteString (opaque) identifier.
    ByteString = 5,
}

impl NodeIdEncoding {
    /// True when this form can carry `namespace` and `identifier`.
    pub fn can_represent(self, namespace: u16, identifier: &Identifier<'_>) -> bool {
        match (self, identifier) {
            (NodeIdEncoding::TwoByte, Identifier::Numeric(id)) => namespace == 0 && *id <= 0xff,
            (NodeIdEncoding::FourByte, Identifier::Numeric(id)) => {
                namespace <= 0xff && *id <= 0xffff
            }
            (NodeIdEncoding::Numeric, Identifier::Numeric(_))
            | (NodeIdEncoding::String, Identifier::String(_))
            | (NodeIdEncoding::Guid, Identifier::Guid(_))
            | (NodeIdEncoding::ByteString, Identifier::Opaque(_)) => true,
            _ => false,
        }
    }

    /// The smallest valid form (open62541's encoder rule): TwoByte for namespace 0 and id ≤ 255,
    /// FourByte for namespace ≤ 255 and id ≤ 65535, else Numeric.
    pub fn smallest_for(namespace: u16, identifier: &Identifier<'_>) -> NodeIdEncoding {
        match identifier {
            Identifier::Numeric(id) if namespace == 0 && *id <= 0xff => NodeIdEncoding::TwoByte,
            Identifier::Numeric(id) if namespace <= 0xff && *id <= 0xffff => {
                NodeIdEncoding::FourByte
            }
            Identifier::Numeric(_) => NodeIdEncoding::Numeric,
            Identifier::String(_) => NodeIdEncoding::String,
            Identifier::Guid(_) => NodeIdEncoding::Guid,
            Identifier::Opaque(_) => NodeIdEncoding::ByteString,
        }
    }
}

/// The identifier part of a NodeId.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier<'a> {
    /// `i=` numeric identifier.
    Numeric(u32),
    /// `s=` string identifier.
    String(UaString<'a>),
    /// `g=` Guid identifier.
    Guid(Guid),
    /// `b=` opaque (ByteString) identifier.
    Opaque(ByteString<'a>),
}

/// A NodeId (OPC 10000-6 §5.2.2.9): namespace index, identifier, and the wire form it came in.
///
/// Equality and hashing ignore `encoding`: `i=85` in TwoByte and Numeric form is the same node.
/// Compare `encoding` explicitly when the wire form matters.
#[derive(Debug, Clone)]
pub struct NodeId<'a> {
    /// Namespace index.
    pub namespace: u16,
    /// The identifier.
    pub identifier: Identifier<'a>,
    /// Wire form received (or wanted). If it cannot represent the value, the encoder uses
    /// [`NodeIdEncoding::smallest_for`] instead.
    pub encoding: NodeIdEncoding,
}

impl PartialEq for NodeId<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.namespace == other.namespace && self.identifier == other.identifier
    }
}

impl Eq for NodeId<'_> {}

impl Hash for NodeId<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.namespace.hash(state);
        self.identifier.hash(state);
    }
}

impl Default for NodeId<'_> {
    fn default() -> Self {
        NodeId::NULL
    }
}

impl<'a> NodeId<'a> {
    /// The null NodeId `i=0` (TwoByte form).
    pub const NULL: NodeId<'static> = NodeId {
        namespace: 0,
        identifier: Identifier::Numeric(0),
        encoding: NodeIdEncoding::TwoByte,
    };

    /// A NodeId in its smallest wire form.
    pub fn new(namespace: u16, identifier: Identifier<'a>) -> Self {
        let encoding = NodeIdEncoding::smallest_for(namespace, &identifier);
        NodeId {
            namespace,
            identifier,
            encoding,
        }
    }

    /// A numeric NodeId in its smallest wire form (`NodeId::numeric(0, 85)` is `00 55`).
    pub fn numeric(namespace: u16, id: u32) -> Self {
        NodeId::new(namespace, Identifier::Numeric(id))
    }

    /// A string NodeId.
    pub fn string(namespace: u16, s: impl Into<UaString<'a>>) -> Self {
        NodeId::new(namespace, Identifier::String(s.into()))
    }

    /// A Guid NodeId.
    pub fn guid(namespace: u16, g: Guid) -> Self {
        NodeId::new(namespace, Identifier::Guid(g))
    }

    /// An opaque (ByteString) NodeId.
    pub fn opaque(namespace: u16, b: impl Into<ByteString<'a>>) -> Self {
        NodeId::new(namespace, Identifier::Opaque(b.into()))
    }

    /// True for the null NodeId (namespace 0, numeric 0).
    pub fn is_null(&self) -> bool {
        self.namespace == 0 && self.identifier == Identifier::Numeric(0)
    }

    /// The numeric identifier when this is a namespace-0 numeric NodeId (standard types and
    /// services are looked up this way).
    #[inline]
    pub fn as_ns0_numeric(&self) -> Option<u32> {
        match self.identifier {
            Identifier::Numeric(id) if self.namespace == 0 => Some(id),
            _ => None,
        }
    }

    /// The form [`Encode`] writes: `encoding` if it can carry the value, else the smallest one.
    #[inline]
    pub fn wire_encoding(&self) -> NodeIdEncoding {
        if self
            .encoding
            .can_represent(self.namespace, &self.identifier)
        {
            self.encoding
        } else {
            NodeIdEncoding::smallest_for(self.namespace, &self.identifier)
        }
    }

    /// Writes the NodeId with ExpandedNodeId `flags` (0x80, 0x40) or-ed into its first byte.
    pub fn encode_with_flags<B: BufMut>(&self, flags: u8, out: &mut B) {
        let enc = self.wire_encoding();
        out.put_u8((enc as u8) | (flags & (FLAG_NAMESPACE_URI | FLAG_SERVER_INDEX)));
        // Truncating casts are safe: `wire_encoding` only picks the small forms when the
        // values fit.
        match (&self.identifier, enc) {
            (Identifier::Numeric(id), NodeIdEncoding::TwoByte) => out.put_u8(*id as u8),
            (Identifier::Numeric(id), NodeIdEncoding::FourByte) => {
                out.put_u8(self.namespace as u8);
                out.put_u16_le(*id as u16);
            }
            (Identifier::Numeric(id), _) => {
                out.put_u16_le(self.namespace);
                out.put_u32_le(*id);
            }
            (Identifier::String(s), _) => {
                out.put_u16_le(self.namespace);
                write_bytes(s.as_bytes(), out);
            }
            (Identifier::Guid(g), _) => {
                out.put_u16_le(self.namespace);
                g.encode(out);
            }
            (Identifier::Opaque(b), _) => {
                out.put_u16_le(self.namespace);
                write_bytes(b.as_bytes(), out);
            }
        }
    }
}

/// Reads a NodeId whose first byte may carry the ExpandedNodeId flags; returns the NodeId and
/// the flag bits (`byte & 0xC0`). A plain NodeId rejects non-zero flags; ExpandedNodeId uses
/// them.
pub fn parse_node_id_with_flags<'a>(r: &mut Reader<'a>) -> Result<(NodeId<'a>, u8), DecodeError> {
    node_id_with_flags(r, "NodeId")
}

#[inline]
fn node_id_with_flags<'a>(
    r: &mut Reader<'a>,
    structure: &'static str,
) -> Result<(NodeId<'a>, u8), DecodeError> {
    let at = r.offset();
    let first = r.read_u8(structure)?;
    let flags = first & (FLAG_NAMESPACE_URI | FLAG_SERVER_INDEX);
    let (encoding, namespace, identifier) = match first & 0x3f {
        0 => (
            NodeIdEncoding::TwoByte,
            0,
            Identifier::Numeric(u32::from(r.read_u8(structure)?)),
        ),
        1 => {
            let ns = r.read_u8(structure)?;
            let id = r.read_u16(structure)?;
            (
                NodeIdEncoding::FourByte,
                u16::from(ns),
                Identifier::Numeric(u32::from(id)),
            )
        }
        2 => {
            let ns = r.read_u16(structure)?;
            let id = r.read_u32(structure)?;
            (NodeIdEncoding::Numeric, ns, Identifier::Numeric(id))
        }
        3 => {
            let ns = r.read_u16(structure)?;
            let s = read_bytes(r, structure, "Identifier")?;
            (NodeIdEncoding::String, ns, Identifier::String(UaString(s)))
        }
        4 => {
            let ns = r.read_u16(structure)?;
            let g = Guid::decode(r)?;
            (NodeIdEncoding::Guid, ns, Identifier::Guid(g))
        }
        5 => {
            let ns = r.read_u16(structure)?;
            let b = read_bytes(r, structure, "Identifier")?;
            (
                NodeIdEncoding::ByteString,
                ns,
                Identifier::Opaque(ByteString(b)),
            )
        }
        _ => return Err(invalid_at(at, structure, "EncodingByte")),
    };
    Ok((
        NodeId {
            namespace,
            identifier,
            encoding,
        },
        flags,
    ))
}

impl<'a> Decode<'a> for NodeId<'a> {
    const MIN_ENCODED_LEN: usize = 2;

    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.offset();
        match node_id_with_flags(r, "NodeId")? {
            (id, 0) => Ok(id),
            // 0x80 / 0x40 are ExpandedNodeId-only (encoding.md §4).
            _ => Err(invalid_at(at, "NodeId", "EncodingByte")),
        }
    }
}

impl Encode for NodeId<'_> {
    #[inline]
    fn encoded_len(&self) -> usize {
        match (&self.identifier, self.wire_encoding()) {
            (Identifier::Numeric(_), NodeIdEncoding::TwoByte) => 2,
            (Identifier::Numeric(_), NodeIdEncoding::FourByte) => 4,
            (Identifier::Numeric(_), _) => 7,
            (Identifier::String(s), _) => bytes_len(s.as_bytes()).saturating_add(3),
            (Identifier::Guid(_), _) => 19,
            (Identifier::Opaque(b), _) => bytes_len(b.as_bytes()).saturating_add(3),
        }
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.encode_with_flags(0, out)
    }
}

impl IntoStatic for Identifier<'_> {
    type Static = Identifier<'static>;
    fn into_static(self) -> Identifier<'static> {
        match self {
            Identifier::Numeric(n) => Identifier::Numeric(n),
            Identifier::String(s) => Identifier::String(s.into_static()),
            Identifier::Guid(g) => Identifier::Guid(g),
            Identifier::Opaque(b) => Identifier::Opaque(b.into_static()),
        }
    }
}

impl IntoStatic for NodeId<'_> {
    type Static = NodeId<'static>;
    fn into_static(self) -> NodeId<'static> {
        NodeId {
            namespace: self.namespace,
            identifier: self.identifier.into_static(),
            encoding: self.encoding,
        }
    }
}

impl fmt::Display for Identifier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Numeric(n) => write!(f, "i={n}"),
            Identifier::String(s) => write!(f, "s={s}"),
            Identifier::Guid(g) => write!(f, "g={g}"),
            Identifier::Opaque(b) => write!(f, "b={}", base64(b.as_bytes().unwrap_or(&[]))),
        }
    }
}

/// The standard text form: `i=85`, `ns=2;s=Temp`, `ns=1;g=…`, `ns=1;b=<base64>`.
impl fmt::Display for NodeId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace != 0 {
            write!(f, "ns={};", self.namespace)?;
        }
        self.identifier.fmt(f)
    }
}

/// An ExpandedNodeId (OPC 10000-6 §5.2.2.10): a NodeId that may name its namespace by URI and
/// live on another server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ExpandedNodeId<'a> {
    /// The NodeId. When `namespace_uri` is present its namespace index is not used (open62541
    /// writes 0) but is kept as received.
    pub node_id: NodeId<'a>,
    /// NamespaceUri (flag 0x80); `Some(UaString(None))` is a flagged but null string.
    pub namespace_uri: Option<UaString<'a>>,
    /// ServerIndex (flag 0x40).
    pub server_index: Option<u32>,
}

impl<'a> From<NodeId<'a>> for ExpandedNodeId<'a> {
    fn from(node_id: NodeId<'a>) -> Self {
        ExpandedNodeId {
            node_id,
            namespace_uri: None,
            server_index: None,
        }
    }
}

impl<'a> Decode<'a> for ExpandedNodeId<'a> {
    const MIN_ENCODED_LEN: usize = 2;

    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let (node_id, flags) = node_id_with_flags(r, "ExpandedNodeId")?;
        let namespace_uri = if flags & FLAG_NAMESPACE_URI != 0 {
            Some(UaString(read_bytes(r, "ExpandedNodeId", "NamespaceUri")?))
        } else {
            None
        };
        let server_index = if flags & FLAG_SERVER_INDEX != 0 {
            Some(r.read_u32("ExpandedNodeId")?)
        } else {
            None
        };
        Ok(ExpandedNodeId {
            node_id,
            namespace_uri,
            server_index,
        })
    }
}

impl Encode for ExpandedNodeId<'_> {
    fn encoded_len(&self) -> usize {
        let mut n = self.node_id.encoded_len();
        if let Some(uri) = &self.namespace_uri {
            n = n.saturating_add(uri.encoded_len());
        }
        if self.server_index.is_some() {
            n = n.saturating_add(4);
        }
        n
    }

    fn encode<B: BufMut>(&self, out: &mut B) {
        let mut flags = 0;
        if self.namespace_uri.is_some() {
            flags |= FLAG_NAMESPACE_URI;
        }
        if self.server_index.is_some() {
            flags |= FLAG_SERVER_INDEX;
        }
        self.node_id.encode_with_flags(flags, out);
        if let Some(uri) = &self.namespace_uri {
            uri.encode(out);
        }
        if let Some(s) = self.server_index {
            out.put_u32_le(s);
        }
    }
}

impl IntoStatic for ExpandedNodeId<'_> {
    type Static = ExpandedNodeId<'static>;
    fn into_static(self) -> ExpandedNodeId<'static> {
        ExpandedNodeId {
            node_id: self.node_id.into_static(),
            namespace_uri: self.namespace_uri.into_static(),
            server_index: self.server_index,
        }
    }
}

/// The standard text form: `svr=1;nsu=http://…;s=Temp`, or the NodeId form without a URI.
impl fmt::Display for ExpandedNodeId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.server_index {
            write!(f, "svr={s};")?;
        }
        match &self.namespace_uri {
            Some(uri) if !uri.is_null() => write!(f, "nsu={uri};{}", self.node_id.identifier),
            _ => self.node_id.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::error::DecodeErrorKind;
    use crate::types::strategies;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Result<NodeId<'_>, DecodeError> {
        let mut r = Reader::new(bytes);
        let id = NodeId::decode(&mut r)?;
        assert!(r.is_empty());
        Ok(id)
    }

    #[test]
    fn encoding_md_examples() {
        let i85 = NodeId::numeric(0, 85);
        assert_eq!(i85.encoding, NodeIdEncoding::TwoByte);
        assert_eq!(i85.to_vec(), [0x00, 0x55]);
        assert_eq!(decode(&[0x00, 0x55]).unwrap(), i85);
        assert_eq!(i85.to_string(), "i=85");

        let i446 = NodeId::numeric(0, 446);
        assert_eq!(i446.encoding, NodeIdEncoding::FourByte);
        assert_eq!(i446.to_vec(), [0x01, 0x00, 0xBE, 0x01]);
        assert_eq!(decode(&[0x01, 0x00, 0xBE, 0x01]).unwrap(), i446);

        let temp = NodeId::string(2, "Temp");
        let bytes = [
            0x03, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x54, 0x65, 0x6D, 0x70,
        ];
        assert_eq!(temp.to_vec(), bytes);
        assert_eq!(temp.encoded_len(), bytes.len());
        assert_eq!(decode(&bytes).unwrap(), temp);
        assert_eq!(temp.to_string(), "ns=2;s=Temp");

        // AnonymousIdentityToken encoding id (encoding.md §6).
        assert_eq!(NodeId::numeric(0, 321).to_vec(), [0x01, 0x00, 0x41, 0x01]);
        assert_eq!(
            NodeId::numeric(300, 1).to_vec(),
            [0x02, 0x2c, 0x01, 1, 0, 0, 0]
        );
    }

    #[test]
    fn wire_form_is_remembered() {
        // i=85 in the 7-byte Numeric form re-encodes as received.
        let bytes = [0x02, 0, 0, 85, 0, 0, 0];
        let id = decode(&bytes).unwrap();
        assert_eq!(id, NodeId::numeric(0, 85));
        assert_eq!(id.encoding, NodeIdEncoding::Numeric);
        assert_eq!(id.to_vec(), bytes);
        assert_eq!(id.encoded_len(), 7);
        // A form that cannot carry the value falls back to the smallest valid one.
        let id = NodeId {
            namespace: 3,
            identifier: Identifier::Numeric(70_000),
            encoding: NodeIdEncoding::TwoByte,
        };
        assert_eq!(id.wire_encoding(), NodeIdEncoding::Numeric);
        assert_eq!(id.to_vec().len(), id.encoded_len());
    }

    #[test]
    fn text_forms() {
        let g: Guid = "72962B91-FA75-4AE6-8D28-B404DC7DAF63".parse().unwrap();
        assert_eq!(
            NodeId::guid(1, g).to_string(),
            "ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63"
        );
        assert_eq!(NodeId::opaque(1, &b"foo"[..]).to_string(), "ns=1;b=Zm9v");
        let e = ExpandedNodeId {
            node_id: NodeId::string(0, "Temp"),
            namespace_uri: Some(UaString::from("urn:x")),
            server_index: Some(2),
        };
        assert_eq!(e.to_string(), "svr=2;nsu=urn:x;s=Temp");
    }

    #[test]
    fn flags_only_in_expanded() {
        for first in [0x80u8, 0x40, 0xC0] {
            let err = decode(&[first, 0x55]).unwrap_err();
            assert_eq!(
                err.kind,
                DecodeErrorKind::InvalidValue {
                    field: "EncodingByte"
                }
            );
            assert_eq!(err.offset, 0);
        }
        let err = decode(&[0x06, 0, 0]).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::InvalidValue {
                field: "EncodingByte"
            }
        );

        let bytes = [0xC0, 0x55, 3, 0, 0, 0, b'u', b'r', b'n', 7, 0, 0, 0];
        let mut r = Reader::new(&bytes);
        let e = ExpandedNodeId::decode(&mut r).unwrap();
        assert!(r.is_empty());
        assert_eq!(e.node_id, NodeId::numeric(0, 85));
        assert_eq!(e.namespace_uri, Some(UaString::from("urn")));
        assert_eq!(e.server_index, Some(7));
        assert_eq!(e.to_vec(), bytes);

        let mut r = Reader::new(&bytes);
        let (id, flags) = parse_node_id_with_flags(&mut r).unwrap();
        assert_eq!((id, flags), (NodeId::numeric(0, 85), 0xC0));
    }

    #[test]
    fn truncated_inputs_are_incomplete() {
        let bytes = [
            0x03, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x54, 0x65, 0x6D, 0x70,
        ];
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).unwrap_err().is_incomplete(), "{n}");
        }
    }

    proptest! {
        #[test]
        fn node_id_roundtrip(v in strategies::node_id()) {
            let d = crate::types::strategies::check_roundtrip!(NodeId, v);
            prop_assert_eq!(d.encoding, v.encoding);
        }

        #[test]
        fn expanded_node_id_roundtrip(v in strategies::expanded_node_id()) {
            crate::types::strategies::check_roundtrip!(ExpandedNodeId, v);
        }

        #[test]
        fn smallest_form_is_chosen(ns in any::<u16>(), id in any::<u32>()) {
            let n = NodeId::numeric(ns, id);
            let expected = if ns == 0 && id <= 255 { 2 } else if ns <= 255 && id <= 65535 { 4 } else { 7 };
            prop_assert_eq!(n.encoded_len(), expected);
            prop_assert_eq!(n.to_vec().len(), expected);
        }
    }
}
