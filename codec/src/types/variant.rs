//! Variant (OPC 10000-6 §5.2.2.16): an encoding byte (type id, array and dimensions bits) and
//! a value of any built-in type.

use std::fmt;

use bytes::BufMut;

use super::{
    array_encoded_len, count_i32, decode_array, encode_array, fmt_list, invalid_at, nested,
    wire_count, Array, ByteString, DataValue, DateTime, Decode, DiagnosticInfo, ExpandedNodeId,
    ExtensionObject, Guid, IntoStatic, LocalizedText, NodeId, QualifiedName, UaString, XmlElement,
};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

const STRUCTURE: &str = "Variant";
/// Encoding byte bit: the value is an array.
const ARRAY: u8 = 0x80;
/// Encoding byte bit: ArrayDimensions follow the array (only with [`ARRAY`]).
const DIMENSIONS: u8 = 0x40;
/// Encoding byte bits 0–5: the built-in type id.
const TYPE_MASK: u8 = 0x3f;

fn show<T: fmt::Display>(v: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    fmt::Display::fmt(v, f)
}

fn show_status(v: &u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "0x{v:08X}")
}

macro_rules! variant_types {
    (
        scalars { $( $sid:literal $sname:ident($sty:ty) $sshow:ident, $sdoc:literal; )* }
        arrays { $( $aid:literal $aname:ident($aty:ty) $ashow:ident; )* }
    ) => {
        /// A value of any built-in type (OPC 10000-6 §5.2.2.16).
        ///
        /// Scalars are stored inline (large, rare ones boxed), so decoding a scalar Double or
        /// Int32 allocates nothing. A scalar Variant inside a Variant is not allowed by the spec
        /// (only arrays of Variants are); type ids above 25 are rejected.
        #[derive(Debug, Clone, PartialEq, Default)]
        pub enum Variant<'a> {
            /// Encoding byte 0: no value.
            #[default]
            Empty,
            $( #[doc = $sdoc] $sname($sty), )*
            /// An array of one built-in type (encoding bit 0x80), with optional dimensions.
            Array(VariantArray<'a>),
        }

        /// The elements of a Variant array, one typed vector per built-in type, so an array of
        /// a million Doubles is one `Vec<f64>`. `None` is the null array (count −1).
        #[derive(Debug, Clone, PartialEq)]
        pub enum ArrayValues<'a> {
            $(
                #[doc = concat!("Array of ", stringify!($aname), " (type id ", stringify!($aid), ").")]
                $aname(Array<$aty>),
            )*
        }

        impl<'a> Variant<'a> {
            /// The built-in type id (0 for Empty; the element type for arrays).
            pub fn type_id(&self) -> u8 {
                match self {
                    Variant::Empty => 0,
                    $( Variant::$sname(_) => $sid, )*
                    Variant::Array(a) => a.values.type_id(),
                }
            }

            #[inline]
            fn decode_scalar(r: &mut Reader<'a>, type_id: u8, at: usize) -> Result<Self, DecodeError> {
                Ok(match type_id {
                    0 => Variant::Empty,
                    $( $sid => Variant::$sname(<$sty as Decode<'a>>::decode(r)?), )*
                    // 24 (a scalar Variant) and ids above 25.
                    _ => return Err(invalid_at(at, STRUCTURE, "EncodingByte")),
                })
            }

            /// Size of the value after the encoding byte.
            #[inline]
            fn body_len(&self) -> usize {
                match self {
                    Variant::Empty => 0,
                    $( Variant::$sname(v) => v.encoded_len(), )*
                    Variant::Array(a) => a.body_len(),
                }
            }

            #[inline]
            fn encode_body<B: BufMut>(&self, out: &mut B) {
                match self {
                    Variant::Empty => {}
                    $( Variant::$sname(v) => v.encode(out), )*
                    Variant::Array(a) => a.encode_body(out),
                }
            }
        }

        impl IntoStatic for Variant<'_> {
            type Static = Variant<'static>;
            fn into_static(self) -> Variant<'static> {
                match self {
                    Variant::Empty => Variant::Empty,
                    $( Variant::$sname(v) => Variant::$sname(v.into_static()), )*
                    Variant::Array(a) => Variant::Array(a.into_static()),
                }
            }
        }

        /// Scalars in their text form (status codes in hex), arrays as `[a, b]`.
        impl fmt::Display for Variant<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Variant::Empty => f.write_str("Empty"),
                    $( Variant::$sname(v) => $sshow(v, f), )*
                    Variant::Array(a) => a.values.fmt(f),
                }
            }
        }

        impl<'a> ArrayValues<'a> {
            /// The element type id.
            pub fn type_id(&self) -> u8 {
                match self {
                    $( ArrayValues::$aname(_) => $aid, )*
                }
            }

            /// Element count; `None` for the null array.
            pub fn len(&self) -> Option<usize> {
                match self {
                    $( ArrayValues::$aname(v) => v.as_ref().map(Vec::len), )*
                }
            }

            /// True for the null or an empty array.
            pub fn is_empty(&self) -> bool {
                self.len().unwrap_or(0) == 0
            }

            /// Reads the count and elements of type `type_id`.
            #[inline]
            fn decode(r: &mut Reader<'a>, type_id: u8, at: usize) -> Result<Self, DecodeError> {
                Ok(match type_id {
                    $(
                        $aid => ArrayValues::$aname(decode_array::<$aty>(
                            r,
                            STRUCTURE,
                            "ArrayLength",
                            <$aty as Decode<'a>>::MIN_ENCODED_LEN,
                        )?),
                    )*
                    // 0 (an array of Empty) and ids above 25.
                    _ => return Err(invalid_at(at, STRUCTURE, "EncodingByte")),
                })
            }

            /// Size of the count and the elements.
            #[inline]
            fn encoded_len(&self) -> usize {
                match self {
                    $( ArrayValues::$aname(v) => array_encoded_len(v), )*
                }
            }

            #[inline]
            fn encode<B: BufMut>(&self, out: &mut B) {
                match self {
                    $( ArrayValues::$aname(v) => encode_array(v, out), )*
                }
            }
        }

        impl IntoStatic for ArrayValues<'_> {
            type Static = ArrayValues<'static>;
            fn into_static(self) -> ArrayValues<'static> {
                match self {
                    $( ArrayValues::$aname(v) => ArrayValues::$aname(v.into_static()), )*
                }
            }
        }

        /// `[a, b, …]`, or `null`.
        impl fmt::Display for ArrayValues<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( ArrayValues::$aname(v) => fmt_list(f, v, $ashow), )*
                }
            }
        }
    };
}

variant_types! {
    scalars {
        1 Boolean(bool) show, "Boolean (1).";
        2 SByte(i8) show, "SByte (2).";
        3 Byte(u8) show, "Byte (3).";
        4 Int16(i16) show, "Int16 (4).";
        5 UInt16(u16) show, "UInt16 (5).";
        6 Int32(i32) show, "Int32 (6); also enumerations.";
        7 UInt32(u32) show, "UInt32 (7).";
        8 Int64(i64) show, "Int64 (8).";
        9 UInt64(u64) show, "UInt64 (9).";
        10 Float(f32) show, "Float (10).";
        11 Double(f64) show, "Double (11).";
        12 String(UaString<'a>) show, "String (12).";
        13 DateTime(DateTime) show, "DateTime (13).";
        14 Guid(Guid) show, "Guid (14).";
        15 ByteString(ByteString<'a>) show, "ByteString (15).";
        16 XmlElement(XmlElement<'a>) show, "XmlElement (16).";
        17 NodeId(NodeId<'a>) show, "NodeId (17).";
        18 ExpandedNodeId(Box<ExpandedNodeId<'a>>) show, "ExpandedNodeId (18), boxed: rare and large.";
        19 StatusCode(u32) show_status, "StatusCode (19), raw UInt32 (see `crate::status`).";
        20 QualifiedName(QualifiedName<'a>) show, "QualifiedName (20).";
        21 LocalizedText(LocalizedText<'a>) show, "LocalizedText (21).";
        22 ExtensionObject(Box<ExtensionObject<'a>>) show, "ExtensionObject (22): structures, body kept raw.";
        23 DataValue(Box<DataValue<'a>>) show, "DataValue (23).";
        25 DiagnosticInfo(Box<DiagnosticInfo<'a>>) show, "DiagnosticInfo (25): the spec excludes it from Variants, open62541 decodes it, so do we.";
    }
    arrays {
        1 Boolean(bool) show;
        2 SByte(i8) show;
        3 Byte(u8) show;
        4 Int16(i16) show;
        5 UInt16(u16) show;
        6 Int32(i32) show;
        7 UInt32(u32) show;
        8 Int64(i64) show;
        9 UInt64(u64) show;
        10 Float(f32) show;
        11 Double(f64) show;
        12 String(UaString<'a>) show;
        13 DateTime(DateTime) show;
        14 Guid(Guid) show;
        15 ByteString(ByteString<'a>) show;
        16 XmlElement(XmlElement<'a>) show;
        17 NodeId(NodeId<'a>) show;
        18 ExpandedNodeId(ExpandedNodeId<'a>) show;
        19 StatusCode(u32) show_status;
        20 QualifiedName(QualifiedName<'a>) show;
        21 LocalizedText(LocalizedText<'a>) show;
        22 ExtensionObject(ExtensionObject<'a>) show;
        23 DataValue(DataValue<'a>) show;
        24 Variant(Variant<'a>) show;
        25 DiagnosticInfo(DiagnosticInfo<'a>) show;
    }
}

/// The array form of a [`Variant`]: elements and optional ArrayDimensions.
///
/// When `dimensions` is present it must be non-empty, every dimension > 0, and their product
/// equal to the element count (a null array has no valid dimensions); the decoder rejects
/// anything else, as open62541 does. Encoding bit 0x40 is set exactly when `dimensions` is
/// `Some`.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantArray<'a> {
    /// The elements.
    pub values: ArrayValues<'a>,
    /// ArrayDimensions for multi-dimensional arrays (row-major, OPC 10000-6 §5.2.2.16).
    pub dimensions: Option<Vec<i32>>,
}

impl<'a> VariantArray<'a> {
    /// A one-dimensional array.
    pub fn new(values: ArrayValues<'a>) -> Self {
        VariantArray {
            values,
            dimensions: None,
        }
    }

    #[inline]
    fn body_len(&self) -> usize {
        let dims = self.dimensions.as_ref().map_or(0, |d| {
            wire_count(d.len()).saturating_mul(4).saturating_add(4)
        });
        self.values.encoded_len().saturating_add(dims)
    }

    #[inline]
    fn encode_body<B: BufMut>(&self, out: &mut B) {
        self.values.encode(out);
        if let Some(d) = &self.dimensions {
            let n = wire_count(d.len());
            out.put_i32_le(count_i32(n));
            for x in d.iter().take(n) {
                out.put_i32_le(*x);
            }
        }
    }
}

impl IntoStatic for VariantArray<'_> {
    type Static = VariantArray<'static>;
    fn into_static(self) -> VariantArray<'static> {
        VariantArray {
            values: self.values.into_static(),
            dimensions: self.dimensions,
        }
    }
}

/// Reads ArrayDimensions and checks them against the element count `len`.
fn decode_dimensions(r: &mut Reader<'_>, len: Option<usize>) -> Result<Vec<i32>, DecodeError> {
    let at = r.offset();
    let bad = || invalid_at(at, STRUCTURE, "ArrayDimensions");
    let dims = decode_array::<i32>(r, STRUCTURE, "ArrayDimensions", 4)?;
    let dims = dims.filter(|d| !d.is_empty()).ok_or_else(bad)?;
    let mut product: usize = 1;
    for d in &dims {
        let d = usize::try_from(*d)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(bad)?;
        product = product.checked_mul(d).ok_or_else(bad)?;
    }
    if Some(product) != len {
        return Err(bad());
    }
    Ok(dims)
}

impl Variant<'_> {
    /// True for the array form.
    pub fn is_array(&self) -> bool {
        matches!(self, Variant::Array(_))
    }

    /// The encoding byte this value is written with.
    pub fn encoding_byte(&self) -> u8 {
        match self {
            Variant::Array(a) if a.dimensions.is_some() => a.values.type_id() | ARRAY | DIMENSIONS,
            Variant::Array(a) => a.values.type_id() | ARRAY,
            v => v.type_id(),
        }
    }
}

impl<'a> Decode<'a> for Variant<'a> {
    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        nested(r, STRUCTURE, |r| {
            let at = r.offset();
            let byte = r.read_u8(STRUCTURE)?;
            let type_id = byte & TYPE_MASK;
            if byte & ARRAY == 0 {
                if byte & DIMENSIONS != 0 {
                    return Err(invalid_at(at, STRUCTURE, "EncodingByte"));
                }
                return Variant::decode_scalar(r, type_id, at);
            }
            let values = ArrayValues::decode(r, type_id, at)?;
            let dimensions = if byte & DIMENSIONS != 0 {
                Some(decode_dimensions(r, values.len())?)
            } else {
                None
            };
            Ok(Variant::Array(VariantArray { values, dimensions }))
        })
    }
}

impl Encode for Variant<'_> {
    #[inline]
    fn encoded_len(&self) -> usize {
        self.body_len().saturating_add(1)
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u8(self.encoding_byte());
        self.encode_body(out);
    }
}

macro_rules! from_scalar {
    ($($t:ty => $v:ident,)*) => {$(
        impl<'a> From<$t> for Variant<'a> {
            fn from(v: $t) -> Self {
                Variant::$v(v)
            }
        }
    )*};
}

from_scalar! {
    bool => Boolean,
    i8 => SByte,
    u8 => Byte,
    i16 => Int16,
    u16 => UInt16,
    i32 => Int32,
    u32 => UInt32,
    i64 => Int64,
    u64 => UInt64,
    f32 => Float,
    f64 => Double,
    UaString<'a> => String,
    DateTime => DateTime,
    Guid => Guid,
    ByteString<'a> => ByteString,
    NodeId<'a> => NodeId,
    QualifiedName<'a> => QualifiedName,
    LocalizedText<'a> => LocalizedText,
}

impl<'a> From<&'a str> for Variant<'a> {
    fn from(s: &'a str) -> Self {
        Variant::String(UaString::from(s))
    }
}

impl<'a> From<ArrayValues<'a>> for Variant<'a> {
    fn from(values: ArrayValues<'a>) -> Self {
        Variant::Array(VariantArray::new(values))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::error::DecodeErrorKind;
    use crate::types::strategies;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Result<Variant<'_>, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Variant::decode(&mut r)?;
        assert_eq!(r.depth(), 0);
        r.finish("test")?;
        Ok(v)
    }

    fn invalid(bytes: &[u8], field: &'static str) {
        let err = decode(bytes).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::InvalidValue { field },
            "{bytes:02x?}"
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(decode(&[0]).unwrap(), Variant::Empty);
        let bytes = [11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f];
        assert_eq!(decode(&bytes).unwrap(), Variant::Double(1.0));
        assert_eq!(Variant::Double(1.0).to_vec(), bytes);
        let bytes = [6, 0xfe, 0xff, 0xff, 0xff];
        assert_eq!(decode(&bytes).unwrap(), Variant::Int32(-2));
        let bytes = [12, 4, 0, 0, 0, b'T', b'e', b'm', b'p'];
        assert_eq!(decode(&bytes).unwrap(), Variant::from("Temp"));
        let bytes = [17, 0x00, 0x55];
        assert_eq!(
            decode(&bytes).unwrap(),
            Variant::NodeId(NodeId::numeric(0, 85))
        );
        let bytes = [19, 0, 0, 0x07, 0x80];
        let v = decode(&bytes).unwrap();
        assert_eq!(v, Variant::StatusCode(0x8007_0000));
        assert_eq!(v.to_string(), "0x80070000");
        assert_eq!(v.to_vec(), bytes);
    }

    #[test]
    fn nan_payload_survives() {
        let bits = 0x7ff8_dead_beef_0001u64;
        let mut bytes = vec![11];
        bytes.extend_from_slice(&bits.to_le_bytes());
        let v = decode(&bytes).unwrap();
        assert!(matches!(v, Variant::Double(x) if x.to_bits() == bits));
        assert_eq!(v.to_vec(), bytes);
    }

    #[test]
    fn arrays_and_dimensions() {
        // Int32 array [1, 2, 3, 4, 5, 6] with dimensions [2, 3].
        let mut bytes = vec![6 | 0xC0, 6, 0, 0, 0];
        for i in 1..=6i32 {
            bytes.extend_from_slice(&i.to_le_bytes());
        }
        bytes.extend_from_slice(&[2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        let v = decode(&bytes).unwrap();
        assert_eq!(
            v,
            Variant::Array(VariantArray {
                values: ArrayValues::Int32(Some(vec![1, 2, 3, 4, 5, 6])),
                dimensions: Some(vec![2, 3]),
            })
        );
        assert_eq!(v.to_vec(), bytes);
        assert_eq!(v.encoded_len(), bytes.len());
        assert_eq!(v.to_string(), "[1, 2, 3, 4, 5, 6]");

        // Null and empty arrays are different values and re-encode as received.
        let null = [11 | 0x80, 0xff, 0xff, 0xff, 0xff];
        let v = decode(&null).unwrap();
        assert_eq!(v, Variant::from(ArrayValues::Double(None)));
        assert_eq!(v.to_vec(), null);
        let empty = [11 | 0x80, 0, 0, 0, 0];
        let v = decode(&empty).unwrap();
        assert_eq!(v, Variant::from(ArrayValues::Double(Some(vec![]))));
        assert_eq!(v.to_vec(), empty);
    }

    #[test]
    fn invalid_encodings() {
        invalid(&[26], "EncodingByte");
        invalid(&[0x3f], "EncodingByte");
        invalid(&[24, 0], "EncodingByte"); // scalar Variant in Variant
        invalid(&[0x40 | 6, 0, 0, 0, 0], "EncodingByte"); // dims without array
        invalid(&[0x80], "EncodingByte"); // array of Empty
        invalid(&[0x80 | 26, 0, 0, 0, 0], "EncodingByte");
        // Dimension product != length, zero and negative dimensions, empty and null dims.
        let arr = [0xC0 | 3, 2, 0, 0, 0, 7, 8];
        for dims in [
            &[1u8, 0, 0, 0, 3, 0, 0, 0][..],
            &[2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
            &[2, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 0],
            &[0xff, 0xff, 0xff, 0xff],
        ] {
            let mut b = arr.to_vec();
            b.extend_from_slice(dims);
            invalid(&b, "ArrayDimensions");
        }
        let mut ok = arr.to_vec();
        ok.extend_from_slice(&[2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(decode(&ok).unwrap().to_vec(), ok);
        // Overflowing product: 65536 * 65536 on a 2-element array.
        let mut b = arr.to_vec();
        b.extend_from_slice(&[2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0]);
        invalid(&b, "ArrayDimensions");
        // A null array cannot have dimensions.
        invalid(
            &[0xC0 | 3, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 1, 0, 0, 0],
            "ArrayDimensions",
        );
    }

    #[test]
    fn huge_counts_fail_without_allocating() {
        for t in [1u8, 11, 12, 22, 24, 25] {
            let err = decode(&[0x80 | t, 0xff, 0xff, 0xff, 0x7f, 0, 0]).unwrap_err();
            assert!(err.is_incomplete(), "type {t}: {err}");
        }
        let err = decode(&[0xC0 | 3, 1, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0x7f]).unwrap_err();
        assert!(err.is_incomplete());
    }

    #[test]
    fn nested_variant_arrays() {
        let inner = Variant::from(ArrayValues::Variant(Some(vec![
            Variant::Double(2.5),
            Variant::Empty,
            Variant::from(ArrayValues::String(Some(vec![
                UaString::from("a"),
                UaString::null(),
            ]))),
        ])));
        let outer = Variant::from(ArrayValues::Variant(Some(vec![
            inner.clone(),
            Variant::Boolean(true),
        ])));
        let bytes = outer.to_vec();
        assert_eq!(bytes.len(), outer.encoded_len());
        assert_eq!(decode(&bytes).unwrap(), outer);
        assert_eq!(outer.to_string(), "[[2.5, Empty, [a, ]], true]");
    }

    proptest! {
        #[test]
        fn roundtrip(v in strategies::variant()) {
            crate::types::strategies::check_roundtrip!(Variant, v);
        }
    }
}
