//! ExtensionObject (OPC 10000-6 §5.2.2.15): a structure carried as TypeId + encoded body.

use std::borrow::Cow;
use std::fmt;

use bytes::BufMut;

use super::string::{bytes_len, write_bytes};
use super::{invalid_at, nested, Decode, IntoStatic, NodeId};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

/// The body of an [`ExtensionObject`], kept as raw bytes: typed decoding happens on demand,
/// elsewhere, keyed by the TypeId.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum ExtensionObjectBody<'a> {
    /// Encoding byte 0x00: no body.
    #[default]
    None,
    /// Encoding byte 0x01: a binary-encoded structure of `Length` bytes.
    ByteString(Cow<'a, [u8]>),
    /// Encoding byte 0x02: an XML-encoded structure of `Length` bytes.
    Xml(Cow<'a, [u8]>),
}

/// A structure whose type is only known at run time (OPC 10000-6 §5.2.2.15).
///
/// `type_id` is the DataTypeEncoding node (e.g. `AnonymousIdentityToken_Encoding_DefaultBinary`,
/// i=321), not the DataType. The wire form is TypeId NodeId, encoding Byte, then for 0x01/0x02 an
/// Int32 length and that many body bytes. A negative length is rejected (`InvalidValue`), unlike
/// asyncua which tolerates −1 by reading to the end of the buffer: that cannot be bounded here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ExtensionObject<'a> {
    /// The DataTypeEncoding NodeId of the body.
    pub type_id: NodeId<'a>,
    /// The body, as raw bytes.
    pub body: ExtensionObjectBody<'a>,
}

impl<'a> ExtensionObject<'a> {
    /// An ExtensionObject with a binary body.
    pub fn binary(type_id: NodeId<'a>, body: impl Into<Cow<'a, [u8]>>) -> Self {
        ExtensionObject {
            type_id,
            body: ExtensionObjectBody::ByteString(body.into()),
        }
    }

    /// The binary body bytes (`None` for no body or an XML body).
    #[inline]
    pub fn binary_body(&self) -> Option<&[u8]> {
        match &self.body {
            ExtensionObjectBody::ByteString(b) => Some(b),
            _ => None,
        }
    }

    /// The binary body borrowed from the original input, for decoders whose output must
    /// borrow for `'a`; `None` when there is no binary body or it is owned.
    #[inline]
    pub fn borrowed_binary_body(&self) -> Option<&'a [u8]> {
        match &self.body {
            ExtensionObjectBody::ByteString(Cow::Borrowed(b)) => Some(b),
            _ => None,
        }
    }

    /// A reader over the binary body (offsets relative to the body's first byte), for typed
    /// decoding on demand.
    pub fn body_reader(&self) -> Option<Reader<'_>> {
        self.binary_body().map(Reader::new)
    }
}

impl<'a> Decode<'a> for ExtensionObject<'a> {
    // TwoByte NodeId + encoding byte.
    const MIN_ENCODED_LEN: usize = 3;

    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        nested(r, "ExtensionObject", |r| {
            let type_id = NodeId::decode(r)?;
            let at = r.offset();
            let body = match r.read_u8("ExtensionObject")? {
                0 => ExtensionObjectBody::None,
                enc @ (1 | 2) => {
                    let Some(n) = r.read_length("ExtensionObject", "Length")? else {
                        return Err(invalid_at(
                            r.offset().saturating_sub(4),
                            "ExtensionObject",
                            "Length",
                        ));
                    };
                    let b = Cow::Borrowed(r.take(n, "ExtensionObject")?);
                    if enc == 1 {
                        ExtensionObjectBody::ByteString(b)
                    } else {
                        ExtensionObjectBody::Xml(b)
                    }
                }
                _ => return Err(invalid_at(at, "ExtensionObject", "Encoding")),
            };
            Ok(ExtensionObject { type_id, body })
        })
    }
}

impl Encode for ExtensionObject<'_> {
    fn encoded_len(&self) -> usize {
        let body = match &self.body {
            ExtensionObjectBody::None => 0,
            ExtensionObjectBody::ByteString(b) | ExtensionObjectBody::Xml(b) => bytes_len(Some(b)),
        };
        self.type_id
            .encoded_len()
            .saturating_add(1)
            .saturating_add(body)
    }

    fn encode<B: BufMut>(&self, out: &mut B) {
        self.type_id.encode(out);
        match &self.body {
            ExtensionObjectBody::None => out.put_u8(0),
            ExtensionObjectBody::ByteString(b) => {
                out.put_u8(1);
                write_bytes(Some(b), out);
            }
            ExtensionObjectBody::Xml(b) => {
                out.put_u8(2);
                write_bytes(Some(b), out);
            }
        }
    }
}

impl IntoStatic for ExtensionObjectBody<'_> {
    type Static = ExtensionObjectBody<'static>;
    fn into_static(self) -> ExtensionObjectBody<'static> {
        match self {
            ExtensionObjectBody::None => ExtensionObjectBody::None,
            ExtensionObjectBody::ByteString(b) => {
                ExtensionObjectBody::ByteString(Cow::Owned(b.into_owned()))
            }
            ExtensionObjectBody::Xml(b) => ExtensionObjectBody::Xml(Cow::Owned(b.into_owned())),
        }
    }
}

impl IntoStatic for ExtensionObject<'_> {
    type Static = ExtensionObject<'static>;
    fn into_static(self) -> ExtensionObject<'static> {
        ExtensionObject {
            type_id: self.type_id.into_static(),
            body: self.body.into_static(),
        }
    }
}

/// `ExtensionObject(i=321, 12 bytes)`; the body is not interpreted here.
impl fmt::Display for ExtensionObject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            ExtensionObjectBody::None => write!(f, "ExtensionObject({}, no body)", self.type_id),
            ExtensionObjectBody::ByteString(b) => {
                write!(f, "ExtensionObject({}, {} bytes)", self.type_id, b.len())
            }
            ExtensionObjectBody::Xml(b) => {
                write!(
                    f,
                    "ExtensionObject({}, {} bytes XML)",
                    self.type_id,
                    b.len()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::DecodeErrorKind;
    use crate::reader::DecodeLimits;
    use crate::types::strategies;
    use proptest::prelude::*;

    #[test]
    fn anonymous_identity_token() {
        // TypeId i=321, binary body holding a String PolicyId "anon".
        let bytes = [
            0x01, 0x00, 0x41, 0x01, 0x01, 8, 0, 0, 0, 4, 0, 0, 0, b'a', b'n', b'o', b'n',
        ];
        let mut r = Reader::new(&bytes);
        let e = ExtensionObject::decode(&mut r).unwrap();
        assert!(r.is_empty());
        assert_eq!(r.depth(), 0);
        assert_eq!(e.type_id, NodeId::numeric(0, 321));
        assert_eq!(e.binary_body(), Some(&bytes[9..]));
        assert_eq!(e.borrowed_binary_body(), Some(&bytes[9..]));
        let mut body = e.body_reader().unwrap();
        assert_eq!(
            crate::types::UaString::decode(&mut body).unwrap(),
            crate::types::UaString::from("anon")
        );
        assert_eq!(e.to_vec(), bytes);
        assert_eq!(e.encoded_len(), bytes.len());
        assert_eq!(e.to_string(), "ExtensionObject(i=321, 8 bytes)");
    }

    #[test]
    fn bad_encoding_and_length() {
        let err = ExtensionObject::decode(&mut Reader::new(&[0, 0, 3])).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::InvalidValue { field: "Encoding" }
        );
        assert_eq!(err.offset, 2);
        let err = ExtensionObject::decode(&mut Reader::new(&[0, 0, 1, 0xff, 0xff, 0xff, 0xff]))
            .unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidValue { field: "Length" });
        assert_eq!(err.offset, 3);
        let err = ExtensionObject::decode(&mut Reader::new(&[0, 0, 1, 9, 0, 0, 0, 1])).unwrap_err();
        assert!(err.is_incomplete());
        let mut r = Reader::new(&[0, 0, 0]).with_limits(DecodeLimits {
            max_depth: 0,
            ..DecodeLimits::default()
        });
        let err = ExtensionObject::decode(&mut r).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::LimitExceeded { .. }));
    }

    proptest! {
        #[test]
        fn roundtrip(v in strategies::extension_object()) {
            crate::types::strategies::check_roundtrip!(ExtensionObject, v);
        }
    }
}
