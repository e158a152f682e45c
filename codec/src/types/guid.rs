//! Guid (OPC 10000-6 §5.2.2.6): Data1 UInt32, Data2 UInt16, Data3 UInt16 little-endian, then
//! Data4 as 8 bytes in order.

use std::fmt;
use std::str::FromStr;

use bytes::BufMut;

use super::{Decode, IntoStatic};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

/// A UA Guid, field by field as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid {
    /// First 4 bytes (little-endian on the wire).
    pub data1: u32,
    /// Next 2 bytes (little-endian on the wire).
    pub data2: u16,
    /// Next 2 bytes (little-endian on the wire).
    pub data3: u16,
    /// Last 8 bytes, in order.
    pub data4: [u8; 8],
}

impl Guid {
    /// The 16 wire bytes.
    pub fn to_wire_bytes(&self) -> [u8; 16] {
        let [a0, a1, a2, a3] = self.data1.to_le_bytes();
        let [b0, b1] = self.data2.to_le_bytes();
        let [c0, c1] = self.data3.to_le_bytes();
        let [d0, d1, d2, d3, d4, d5, d6, d7] = self.data4;
        [
            a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, d2, d3, d4, d5, d6, d7,
        ]
    }

    /// A Guid from its 16 wire bytes.
    pub fn from_wire_bytes(b: [u8; 16]) -> Guid {
        let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, d2, d3, d4, d5, d6, d7] = b;
        Guid {
            data1: u32::from_le_bytes([a0, a1, a2, a3]),
            data2: u16::from_le_bytes([b0, b1]),
            data3: u16::from_le_bytes([c0, c1]),
            data4: [d0, d1, d2, d3, d4, d5, d6, d7],
        }
    }
}

/// The usual text form, upper case: `72962B91-FA75-4AE6-8D28-B404DC7DAF63`.
impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g, h, i] = self.data4;
        write!(
            f,
            "{:08X}-{:04X}-{:04X}-{a:02X}{b:02X}-{c:02X}{d:02X}{e:02X}{g:02X}{h:02X}{i:02X}",
            self.data1, self.data2, self.data3
        )
    }
}

/// The text form was not `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (hex, either case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseGuidError;

impl fmt::Display for ParseGuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid GUID text")
    }
}

impl std::error::Error for ParseGuidError {}

/// Parses the text form (optionally in braces), for configuration and tests.
impl FromStr for Guid {
    type Err = ParseGuidError;

    fn from_str(s: &str) -> Result<Guid, ParseGuidError> {
        let s = s
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(s);
        let mut parts = s.split('-');
        let mut next = |len: usize| -> Result<u64, ParseGuidError> {
            let p = parts.next().ok_or(ParseGuidError)?;
            if p.len() != len || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseGuidError);
            }
            u64::from_str_radix(p, 16).map_err(|_| ParseGuidError)
        };
        let data1 = u32::try_from(next(8)?).map_err(|_| ParseGuidError)?;
        let data2 = u16::try_from(next(4)?).map_err(|_| ParseGuidError)?;
        let data3 = u16::try_from(next(4)?).map_err(|_| ParseGuidError)?;
        let hi = u16::try_from(next(4)?).map_err(|_| ParseGuidError)?;
        let lo = next(12)?;
        if parts.next().is_some() {
            return Err(ParseGuidError);
        }
        let [h0, h1] = hi.to_be_bytes();
        let [_, _, l0, l1, l2, l3, l4, l5] = lo.to_be_bytes();
        Ok(Guid {
            data1,
            data2,
            data3,
            data4: [h0, h1, l0, l1, l2, l3, l4, l5],
        })
    }
}

impl<'a> Decode<'a> for Guid {
    const MIN_ENCODED_LEN: usize = 16;

    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let b = r.take(16, "Guid")?;
        Ok(Guid::from_wire_bytes(b.try_into().unwrap_or([0u8; 16])))
    }
}

impl Encode for Guid {
    #[inline]
    fn encoded_len(&self) -> usize {
        16
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.data1);
        out.put_u16_le(self.data2);
        out.put_u16_le(self.data3);
        out.put_slice(&self.data4);
    }
}

impl IntoStatic for Guid {
    type Static = Guid;
    fn into_static(self) -> Guid {
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::types::strategies;
    use proptest::prelude::*;

    const EXAMPLE: [u8; 16] = [
        0x91, 0x2B, 0x96, 0x72, 0x75, 0xFA, 0xE6, 0x4A, 0x8D, 0x28, 0xB4, 0x04, 0xDC, 0x7D, 0xAF,
        0x63,
    ];

    #[test]
    fn encoding_md_example() {
        let g: Guid = "72962B91-FA75-4AE6-8D28-B404DC7DAF63".parse().unwrap();
        assert_eq!(g.to_vec(), EXAMPLE);
        assert_eq!(g.to_wire_bytes(), EXAMPLE);
        let d = Guid::decode(&mut Reader::new(&EXAMPLE)).unwrap();
        assert_eq!(d, g);
        assert_eq!(d.to_string(), "72962B91-FA75-4AE6-8D28-B404DC7DAF63");
        assert_eq!(
            "{72962b91-fa75-4ae6-8d28-b404dc7daf63}".parse::<Guid>(),
            Ok(g)
        );
        assert!("72962B91-FA75-4AE6-8D28".parse::<Guid>().is_err());
        assert!("72962B91-FA75-4AE6-8D28-B404DC7DAF6G"
            .parse::<Guid>()
            .is_err());
        assert!(Guid::decode(&mut Reader::new(&EXAMPLE[..15])).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(v in strategies::guid()) {
            crate::types::strategies::check_roundtrip!(Guid, v);
            prop_assert_eq!(v.to_string().parse::<Guid>(), Ok(v));
        }
    }
}
