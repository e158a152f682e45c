//! DataValue (OPC 10000-6 §5.2.2.17): a value with its status and timestamps.

use std::fmt;

use bytes::BufMut;

use super::{invalid_at, nested, DateTime, Decode, IntoStatic, Variant};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

const STRUCTURE: &str = "DataValue";
const VALUE: u8 = 0x01;
const STATUS: u8 = 0x02;
const SOURCE_TIMESTAMP: u8 = 0x04;
const SERVER_TIMESTAMP: u8 = 0x08;
const SOURCE_PICOSECONDS: u8 = 0x10;
const SERVER_PICOSECONDS: u8 = 0x20;

/// A value as read, written or published, with quality and timestamps.
///
/// Wire form: a mask byte, then the present fields in the order Value (0x01), Status (0x02),
/// SourceTimestamp (0x04), SourcePicoseconds (0x10), ServerTimestamp (0x08), ServerPicoseconds
/// (0x20) — note the picoseconds bits are not in wire order (encoding.md §8). Bits 0x40 and 0x80
/// are invalid. Picoseconds are kept raw (open62541 clamps values over 9999; we do not, so the
/// bytes round-trip).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataValue<'a> {
    /// The value (0x01).
    pub value: Option<Variant<'a>>,
    /// StatusCode (0x02), raw; absent means Good.
    pub status: Option<u32>,
    /// SourceTimestamp (0x04).
    pub source_timestamp: Option<DateTime>,
    /// SourcePicoseconds (0x10), in 10 ps units.
    pub source_picoseconds: Option<u16>,
    /// ServerTimestamp (0x08).
    pub server_timestamp: Option<DateTime>,
    /// ServerPicoseconds (0x20), in 10 ps units.
    pub server_picoseconds: Option<u16>,
}

impl<'a> DataValue<'a> {
    /// A DataValue holding only `value`.
    pub fn new(value: impl Into<Variant<'a>>) -> Self {
        DataValue {
            value: Some(value.into()),
            ..DataValue::default()
        }
    }

    /// The encoding mask this value is written with.
    pub fn encoding_mask(&self) -> u8 {
        let mut m = 0;
        if self.value.is_some() {
            m |= VALUE;
        }
        if self.status.is_some() {
            m |= STATUS;
        }
        if self.source_timestamp.is_some() {
            m |= SOURCE_TIMESTAMP;
        }
        if self.server_timestamp.is_some() {
            m |= SERVER_TIMESTAMP;
        }
        if self.source_picoseconds.is_some() {
            m |= SOURCE_PICOSECONDS;
        }
        if self.server_picoseconds.is_some() {
            m |= SERVER_PICOSECONDS;
        }
        m
    }
}

#[inline]
fn opt<T>(
    mask: u8,
    bit: u8,
    r: &mut Reader<'_>,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if mask & bit != 0 {
        read(r).map(Some)
    } else {
        Ok(None)
    }
}

impl<'a> Decode<'a> for DataValue<'a> {
    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        nested(r, STRUCTURE, |r| {
            let at = r.offset();
            let mask = r.read_u8(STRUCTURE)?;
            if mask & 0xC0 != 0 {
                return Err(invalid_at(at, STRUCTURE, "EncodingMask"));
            }
            let value = if mask & VALUE != 0 {
                Some(Variant::decode(r)?)
            } else {
                None
            };
            Ok(DataValue {
                value,
                status: opt(mask, STATUS, r, |r| r.read_u32(STRUCTURE))?,
                source_timestamp: opt(mask, SOURCE_TIMESTAMP, r, |r| {
                    r.read_i64(STRUCTURE).map(DateTime)
                })?,
                source_picoseconds: opt(mask, SOURCE_PICOSECONDS, r, |r| r.read_u16(STRUCTURE))?,
                server_timestamp: opt(mask, SERVER_TIMESTAMP, r, |r| {
                    r.read_i64(STRUCTURE).map(DateTime)
                })?,
                server_picoseconds: opt(mask, SERVER_PICOSECONDS, r, |r| r.read_u16(STRUCTURE))?,
            })
        })
    }
}

impl Encode for DataValue<'_> {
    #[inline]
    fn encoded_len(&self) -> usize {
        let fixed = |present: bool, n: usize| if present { n } else { 0 };
        self.value
            .as_ref()
            .map_or(0, Encode::encoded_len)
            .saturating_add(1)
            .saturating_add(fixed(self.status.is_some(), 4))
            .saturating_add(fixed(self.source_timestamp.is_some(), 8))
            .saturating_add(fixed(self.source_picoseconds.is_some(), 2))
            .saturating_add(fixed(self.server_timestamp.is_some(), 8))
            .saturating_add(fixed(self.server_picoseconds.is_some(), 2))
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u8(self.encoding_mask());
        if let Some(v) = &self.value {
            v.encode(out);
        }
        if let Some(s) = self.status {
            out.put_u32_le(s);
        }
        if let Some(t) = self.source_timestamp {
            out.put_i64_le(t.0);
        }
        if let Some(p) = self.source_picoseconds {
            out.put_u16_le(p);
        }
        if let Some(t) = self.server_timestamp {
            out.put_i64_le(t.0);
        }
        if let Some(p) = self.server_picoseconds {
            out.put_u16_le(p);
        }
    }
}

impl IntoStatic for DataValue<'_> {
    type Static = DataValue<'static>;
    fn into_static(self) -> DataValue<'static> {
        DataValue {
            value: self.value.into_static(),
            status: self.status,
            source_timestamp: self.source_timestamp,
            source_picoseconds: self.source_picoseconds,
            server_timestamp: self.server_timestamp,
            server_picoseconds: self.server_picoseconds,
        }
    }
}

/// `value (status 0x…) @ source timestamp`; absent parts are left out.
impl fmt::Display for DataValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => v.fmt(f)?,
            None => f.write_str("(no value)")?,
        }
        if let Some(s) = self.status {
            write!(f, " (status 0x{s:08X})")?;
        }
        if let Some(t) = self.source_timestamp {
            write!(f, " @ {t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::error::DecodeErrorKind;
    use crate::types::strategies;
    use proptest::prelude::*;

    #[test]
    fn wire_order_puts_source_picoseconds_before_server_timestamp() {
        let dv = DataValue {
            value: Some(Variant::Double(1.0)),
            status: Some(0x4000_0000),
            source_timestamp: Some(DateTime(1)),
            source_picoseconds: Some(0x1122),
            server_timestamp: Some(DateTime(2)),
            server_picoseconds: Some(0x3344),
        };
        let bytes = [
            0x3f, // mask
            11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // Value
            0, 0, 0, 0x40, // Status
            1, 0, 0, 0, 0, 0, 0, 0, // SourceTimestamp
            0x22, 0x11, // SourcePicoseconds
            2, 0, 0, 0, 0, 0, 0, 0, // ServerTimestamp
            0x44, 0x33, // ServerPicoseconds
        ];
        assert_eq!(dv.to_vec(), bytes);
        assert_eq!(dv.encoded_len(), bytes.len());
        let mut r = Reader::new(&bytes);
        assert_eq!(DataValue::decode(&mut r).unwrap(), dv);
        assert!(r.is_empty());
        assert_eq!(r.depth(), 0);
    }

    #[test]
    fn empty_and_invalid_masks() {
        assert_eq!(DataValue::default().to_vec(), [0]);
        for mask in [0x40u8, 0x80] {
            let err = DataValue::decode(&mut Reader::new(&[mask])).unwrap_err();
            assert_eq!(
                err.kind,
                DecodeErrorKind::InvalidValue {
                    field: "EncodingMask"
                }
            );
        }
        let err = DataValue::decode(&mut Reader::new(&[0x02, 0, 0])).unwrap_err();
        assert!(err.is_incomplete());
    }

    #[test]
    fn display() {
        let dv = DataValue {
            status: Some(0x8007_0000),
            ..DataValue::new(2.5)
        };
        assert_eq!(dv.to_string(), "2.5 (status 0x80070000)");
    }

    proptest! {
        #[test]
        fn roundtrip(v in strategies::data_value()) {
            crate::types::strategies::check_roundtrip!(DataValue, v);
        }

        #[test]
        fn every_mask_combination(mask in 0u8..0x40, x in -1e9f64..1e9) {
            let dv = DataValue {
                value: (mask & 0x01 != 0).then_some(Variant::Double(x)),
                status: (mask & 0x02 != 0).then_some(0x8000_0000),
                source_timestamp: (mask & 0x04 != 0).then_some(DateTime(x as i64)),
                server_timestamp: (mask & 0x08 != 0).then_some(DateTime(5)),
                source_picoseconds: (mask & 0x10 != 0).then_some(9999),
                server_picoseconds: (mask & 0x20 != 0).then_some(1),
            };
            prop_assert_eq!(dv.encoding_mask(), mask);
            let d = crate::types::strategies::check_roundtrip!(DataValue, dv);
            prop_assert_eq!(d.to_vec()[0], mask);
        }
    }
}
