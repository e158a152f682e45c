//! The UA binary encoding (OPC 10000-6 §5.2): built-in types and the generic containers.
//!
//! Every built-in type implements [`Decode`] (borrowing from the input: strings and byte strings
//! are `Cow::Borrowed`, so decoding never copies them) and [`Encode`] (exact length first, then
//! the bytes). Decoding then encoding gives back the input bytes, with one documented exception:
//! a Boolean byte other than 0 or 1 decodes as `true` and is written back as 1.
//!
//! Main types: [`Variant`], [`DataValue`], [`NodeId`], [`ExtensionObject`], [`DiagnosticInfo`].
//! Status codes are carried as raw `u32` here; see [`crate::status`] for their names.

use std::fmt;

use bytes::BufMut;

use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

mod data_value;
mod date_time;
mod diagnostic_info;
mod extension_object;
mod guid;
mod node_id;
mod string;
mod text;
mod variant;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
pub(crate) mod strategies;

pub use data_value::DataValue;
pub use date_time::DateTime;
pub use diagnostic_info::DiagnosticInfo;
pub use extension_object::{ExtensionObject, ExtensionObjectBody};
pub use guid::{Guid, ParseGuidError};
pub use node_id::{parse_node_id_with_flags, ExpandedNodeId, Identifier, NodeId, NodeIdEncoding};
pub use string::{ByteString, UaString, XmlElement};
pub use text::{LocalizedText, QualifiedName};
pub use variant::{ArrayValues, Variant, VariantArray};

/// A UA array field: `None` is the null array (count −1), `Some(vec![])` the empty one (count 0).
///
/// Both exist on the wire and mean different things to some peers, so the distinction is kept
/// for byte-exact re-encoding (OPC 10000-6 §5.2.5).
pub type Array<T> = Option<Vec<T>>;

/// A value that can be read from the UA binary encoding, borrowing from the input `'a`.
pub trait Decode<'a>: Sized {
    /// Fewest bytes one value occupies on the wire; array counts are checked against
    /// `count * MIN_ENCODED_LEN <= remaining` before allocating.
    const MIN_ENCODED_LEN: usize = 1;

    /// Reads one value.
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError>;

    /// Reads `count` consecutive values into `out` (the count was already checked against the
    /// input). Fixed-size types override this to read the whole run at once.
    #[inline]
    fn decode_into(
        r: &mut Reader<'a>,
        count: usize,
        out: &mut Vec<Self>,
    ) -> Result<(), DecodeError> {
        for _ in 0..count {
            out.push(Self::decode(r)?);
        }
        Ok(())
    }
}

/// Converts a borrowing value into one that owns its bytes, so it can outlive the input buffer
/// (replay scripts, values kept across messages).
pub trait IntoStatic {
    /// The owning form of `Self`.
    type Static: 'static;
    /// Copies every borrowed byte.
    fn into_static(self) -> Self::Static;
}

/// Runs `f` one nesting level deeper: the depth limit is checked first, and the level is left
/// again on every path, errors included. Variant, DataValue, ExtensionObject and DiagnosticInfo
/// each count one level (encoding.md §11).
#[inline]
pub fn nested<'a, T>(
    r: &mut Reader<'a>,
    structure: &'static str,
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    r.enter(structure)?;
    let out = f(r);
    r.leave();
    out
}

/// Reads an array field: Int32 count (−1 = null) then the elements.
///
/// The count is checked against the array limit and against the remaining bytes
/// (`min_element_size` bytes per element, at least `T::MIN_ENCODED_LEN`) before anything is
/// allocated, so a hostile count cannot reserve memory the input does not justify.
pub fn decode_array<'a, T: Decode<'a>>(
    r: &mut Reader<'a>,
    structure: &'static str,
    field: &'static str,
    min_element_size: usize,
) -> Result<Array<T>, DecodeError> {
    let min = min_element_size.max(T::MIN_ENCODED_LEN);
    let Some(count) = r.read_array_length(structure, field, min)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(count);
    T::decode_into(r, count, &mut out)?;
    Ok(Some(out))
}

/// Writes an array field: Int32 count (−1 for `None`) then the elements.
///
/// An array longer than `i32::MAX` elements cannot be represented; only its first `i32::MAX`
/// elements are written (and counted by [`array_encoded_len`]).
pub fn encode_array<T: Encode, B: BufMut>(a: &Array<T>, out: &mut B) {
    match a {
        None => out.put_i32_le(-1),
        Some(v) => {
            let n = wire_count(v.len());
            out.put_i32_le(count_i32(n));
            for e in v.iter().take(n) {
                e.encode(out);
            }
        }
    }
}

/// Exact size of [`encode_array`]'s output.
pub fn array_encoded_len<T: Encode>(a: &Array<T>) -> usize {
    match a {
        None => 4,
        Some(v) => v
            .iter()
            .take(wire_count(v.len()))
            .fold(4usize, |acc, e| acc.saturating_add(e.encoded_len())),
    }
}

/// Largest count an Int32 length prefix can carry.
#[inline]
pub(crate) fn wire_count(len: usize) -> usize {
    len.min(i32::MAX as usize)
}

/// `n` (already clamped by [`wire_count`]) as the Int32 written on the wire.
#[inline]
pub(crate) fn count_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// An `InvalidValue` error at an earlier offset (e.g. the start of an encoding byte).
#[inline]
pub(crate) fn invalid_at(
    offset: usize,
    structure: &'static str,
    field: &'static str,
) -> DecodeError {
    DecodeError {
        offset,
        structure,
        kind: crate::error::DecodeErrorKind::InvalidValue { field },
    }
}

/// Writes `items` separated by `, ` inside brackets, or `null` for a null array.
pub(crate) fn fmt_list<T>(
    f: &mut fmt::Formatter<'_>,
    items: &Array<T>,
    each: impl Fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result,
) -> fmt::Result {
    let Some(items) = items else {
        return f.write_str("null");
    };
    f.write_str("[")?;
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        each(e, f)?;
    }
    f.write_str("]")
}

macro_rules! fixed_size {
    ($($t:ty, $name:literal, $n:literal, $read:ident, $put:ident;)*) => {$(
        impl<'a> Decode<'a> for $t {
            const MIN_ENCODED_LEN: usize = $n;

            #[inline]
            fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
                r.$read($name)
            }

            #[inline]
            fn decode_into(
                r: &mut Reader<'a>,
                count: usize,
                out: &mut Vec<Self>,
            ) -> Result<(), DecodeError> {
                let bytes = r.take(count.saturating_mul($n), $name)?;
                out.extend(bytes.chunks_exact($n).map(|c| {
                    <$t>::from_le_bytes(c.try_into().unwrap_or([0u8; $n]))
                }));
                Ok(())
            }
        }

        impl Encode for $t {
            #[inline]
            fn encoded_len(&self) -> usize {
                $n
            }

            #[inline]
            fn encode<B: BufMut>(&self, out: &mut B) {
                out.$put(*self);
            }
        }

        impl IntoStatic for $t {
            type Static = $t;
            #[inline]
            fn into_static(self) -> $t {
                self
            }
        }
    )*};
}

fixed_size! {
    i8, "SByte", 1, read_i8, put_i8;
    u8, "Byte", 1, read_u8, put_u8;
    i16, "Int16", 2, read_i16, put_i16_le;
    u16, "UInt16", 2, read_u16, put_u16_le;
    i32, "Int32", 4, read_i32, put_i32_le;
    u32, "UInt32", 4, read_u32, put_u32_le;
    i64, "Int64", 8, read_i64, put_i64_le;
    u64, "UInt64", 8, read_u64, put_u64_le;
    f32, "Float", 4, read_f32, put_f32_le;
    f64, "Double", 8, read_f64, put_f64_le;
}

/// Boolean (OPC 10000-6 §5.2.2.1): any non-zero byte decodes as `true`, which is written back
/// as 1 — the only non-canonical input this codec accepts.
impl<'a> Decode<'a> for bool {
    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        r.read_u8("Boolean").map(|b| b != 0)
    }

    #[inline]
    fn decode_into(
        r: &mut Reader<'a>,
        count: usize,
        out: &mut Vec<Self>,
    ) -> Result<(), DecodeError> {
        let bytes = r.take(count, "Boolean")?;
        out.extend(bytes.iter().map(|b| *b != 0));
        Ok(())
    }
}

impl Encode for bool {
    #[inline]
    fn encoded_len(&self) -> usize {
        1
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u8(u8::from(*self));
    }
}

impl IntoStatic for bool {
    type Static = bool;
    #[inline]
    fn into_static(self) -> bool {
        self
    }
}

impl<'a, T: Decode<'a>> Decode<'a> for Box<T> {
    const MIN_ENCODED_LEN: usize = T::MIN_ENCODED_LEN;

    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        T::decode(r).map(Box::new)
    }
}

impl<T: Encode> Encode for Box<T> {
    #[inline]
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        (**self).encode(out)
    }
}

impl<T: IntoStatic> IntoStatic for Box<T> {
    type Static = Box<T::Static>;
    fn into_static(self) -> Self::Static {
        Box::new((*self).into_static())
    }
}

impl<T: IntoStatic> IntoStatic for Option<T> {
    type Static = Option<T::Static>;
    fn into_static(self) -> Self::Static {
        self.map(IntoStatic::into_static)
    }
}

impl<T: IntoStatic> IntoStatic for Vec<T> {
    type Static = Vec<T::Static>;
    fn into_static(self) -> Self::Static {
        self.into_iter().map(IntoStatic::into_static).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::error::DecodeErrorKind;

    #[test]
    fn primitives_are_little_endian() {
        let bytes = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(u32::decode(&mut Reader::new(&bytes)).unwrap(), 0x0403_0201);
        assert_eq!(
            u64::decode(&mut Reader::new(&bytes)).unwrap(),
            0x0807_0605_0403_0201
        );
        assert_eq!((-2i16).to_vec(), vec![0xfe, 0xff]);
        assert_eq!(1.0f64.to_vec(), vec![0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        assert_eq!(true.to_vec(), vec![1]);
        assert!(bool::decode(&mut Reader::new(&[0x7f])).unwrap());
    }

    #[test]
    fn arrays_keep_null_apart_from_empty() {
        let null: Array<i32> = None;
        let empty: Array<i32> = Some(vec![]);
        assert_eq!(null.as_ref().map(Vec::len), None);
        let mut b = Vec::new();
        encode_array(&null, &mut b);
        encode_array(&empty, &mut b);
        encode_array(&Some(vec![7i32, -1]), &mut b);
        assert_eq!(
            b,
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(array_encoded_len(&Some(vec![7i32, -1])), 12);
        let mut r = Reader::new(&b);
        assert_eq!(decode_array::<i32>(&mut r, "T", "a", 4).unwrap(), null);
        assert_eq!(decode_array::<i32>(&mut r, "T", "a", 4).unwrap(), empty);
        assert_eq!(
            decode_array::<i32>(&mut r, "T", "a", 4).unwrap(),
            Some(vec![7, -1])
        );
        assert!(r.is_empty());
    }

    #[test]
    fn huge_array_count_fails_before_allocating() {
        let bytes = [0xff, 0xff, 0xff, 0x7f, 1, 2, 3];
        let err = decode_array::<f64>(&mut Reader::new(&bytes), "T", "a", 8).unwrap_err();
        assert!(err.is_incomplete());
        let bytes = [0xfe, 0xff, 0xff, 0xff];
        let err = decode_array::<u8>(&mut Reader::new(&bytes), "T", "a", 1).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::InvalidValue { field: "a" });
    }

    #[test]
    fn nested_leaves_on_error() {
        let mut r = Reader::new(&[]);
        let res: Result<u8, _> = nested(&mut r, "X", |r| r.read_u8("X"));
        assert!(res.is_err());
        assert_eq!(r.depth(), 0);
    }
}
