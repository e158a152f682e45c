//! String, ByteString and XmlElement (OPC 10000-6 §5.2.2.4, §5.2.2.7, §5.2.2.8): an Int32 byte
//! count (−1 = null) and the raw bytes.

use std::borrow::Cow;
use std::fmt;

use bytes::BufMut;

use super::{count_i32, wire_count, Decode, IntoStatic};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

/// Reads a length-prefixed byte run, borrowing it from the input.
#[inline]
pub(crate) fn read_bytes<'a>(
    r: &mut Reader<'a>,
    structure: &'static str,
    field: &'static str,
) -> Result<Option<Cow<'a, [u8]>>, DecodeError> {
    match r.read_length(structure, field)? {
        None => Ok(None),
        Some(n) => r.take(n, structure).map(|b| Some(Cow::Borrowed(b))),
    }
}

/// Size of [`write_bytes`]'s output.
#[inline]
pub(crate) fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 4,
        Some(b) => wire_count(b.len()).saturating_add(4),
    }
}

/// Writes a length-prefixed byte run (−1 for `None`). More than `i32::MAX` bytes cannot be
/// represented; only the first `i32::MAX` are written.
#[inline]
pub(crate) fn write_bytes<B: BufMut>(b: Option<&[u8]>, out: &mut B) {
    match b {
        None => out.put_i32_le(-1),
        Some(b) => {
            let n = wire_count(b.len());
            out.put_i32_le(count_i32(n));
            out.put_slice(b.get(..n).unwrap_or(b));
        }
    }
}

/// Standard base64 (RFC 4648, padded), the text form UA uses for ByteStrings (`b=` NodeIds).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(ALPHABET.get((i & 63) as usize).copied().unwrap_or(b'='));
    let mut s = String::with_capacity(bytes.len().div_ceil(3).saturating_mul(4));
    for chunk in bytes.chunks(3) {
        let (a, b, c) = match *chunk {
            [a, b, c] => (a, Some(b), Some(c)),
            [a, b] => (a, Some(b), None),
            [a] => (a, None, None),
            _ => continue,
        };
        let n = (u32::from(a) << 16) | (u32::from(b.unwrap_or(0)) << 8) | u32::from(c.unwrap_or(0));
        s.push(sym(n >> 18));
        s.push(sym(n >> 12));
        s.push(if b.is_some() { sym(n >> 6) } else { '=' });
        s.push(if c.is_some() { sym(n) } else { '=' });
    }
    s
}

macro_rules! byte_string_type {
    ($(#[$doc:meta])* $name:ident, $structure:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
        pub struct $name<'a>(pub Option<Cow<'a, [u8]>>);

        impl<'a> $name<'a> {
            /// The null value (length −1 on the wire).
            pub const NULL: $name<'static> = $name(None);

            /// The null value (length −1 on the wire).
            #[inline]
            pub fn null() -> Self {
                $name(None)
            }

            /// True for the null value (not for an empty one).
            #[inline]
            pub fn is_null(&self) -> bool {
                self.0.is_none()
            }

            /// The raw bytes, `None` when null.
            #[inline]
            pub fn as_bytes(&self) -> Option<&[u8]> {
                self.0.as_deref()
            }

            /// Byte length, 0 when null.
            #[inline]
            pub fn len(&self) -> usize {
                self.0.as_ref().map_or(0, |b| b.len())
            }

            /// True when null or empty.
            #[inline]
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }

        impl<'a> From<&'a [u8]> for $name<'a> {
            fn from(b: &'a [u8]) -> Self {
                $name(Some(Cow::Borrowed(b)))
            }
        }

        impl From<Vec<u8>> for $name<'static> {
            fn from(b: Vec<u8>) -> Self {
                $name(Some(Cow::Owned(b)))
            }
        }

        impl<'a> Decode<'a> for $name<'a> {
            const MIN_ENCODED_LEN: usize = 4;

            #[inline]
            fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
                read_bytes(r, $structure, "Length").map($name)
            }
        }

        impl Encode for $name<'_> {
            #[inline]
            fn encoded_len(&self) -> usize {
                bytes_len(self.as_bytes())
            }

            #[inline]
            fn encode<B: BufMut>(&self, out: &mut B) {
                write_bytes(self.as_bytes(), out)
            }
        }

        impl IntoStatic for $name<'_> {
            type Static = $name<'static>;
            fn into_static(self) -> $name<'static> {
                $name(self.0.map(|b| Cow::Owned(b.into_owned())))
            }
        }
    };
}

macro_rules! text_methods {
    ($name:ident) => {
        impl<'a> $name<'a> {
            /// The text, invalid UTF-8 replaced by U+FFFD; empty when null.
            pub fn to_string_lossy(&self) -> Cow<'_, str> {
                match &self.0 {
                    None => Cow::Borrowed(""),
                    Some(b) => String::from_utf8_lossy(b),
                }
            }

            /// The text if it is valid UTF-8 (`None` when null or invalid).
            pub fn as_str(&self) -> Option<&str> {
                self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
            }
        }

        impl<'a> From<&'a str> for $name<'a> {
            fn from(s: &'a str) -> Self {
                $name(Some(Cow::Borrowed(s.as_bytes())))
            }
        }

        impl From<String> for $name<'static> {
            fn from(s: String) -> Self {
                $name(Some(Cow::Owned(s.into_bytes())))
            }
        }

        /// Lossy UTF-8; null prints as nothing.
        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_string_lossy())
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match &self.0 {
                    None => write!(f, "{}(null)", stringify!($name)),
                    Some(_) => write!(f, "{}({:?})", stringify!($name), self.to_string_lossy()),
                }
            }
        }
    };
}

byte_string_type!(
    /// A UA String: raw bytes as received (normally UTF-8), `None` = null.
    ///
    /// Bytes are kept as they are, valid UTF-8 or not, so re-encoding is exact; display is lossy.
    UaString,
    "String"
);
text_methods!(UaString);

byte_string_type!(
    /// A UA XmlElement: a String holding UTF-8 XML, `None` = null.
    XmlElement,
    "XmlElement"
);
text_methods!(XmlElement);

byte_string_type!(
    /// A UA ByteString (certificates, nonces, opaque identifiers), `None` = null.
    ByteString,
    "ByteString"
);

/// Base64, the UA text form; null prints as nothing.
impl fmt::Display for ByteString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_bytes() {
            None => Ok(()),
            Some(b) => f.write_str(&base64(b)),
        }
    }
}

impl fmt::Debug for ByteString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_bytes() {
            None => f.write_str("ByteString(null)"),
            Some(b) => {
                f.write_str("ByteString(")?;
                for x in b {
                    write!(f, "{x:02x}")?;
                }
                f.write_str(")")
            }
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

    #[test]
    fn string_null_empty_and_text() {
        assert_eq!(UaString::null().to_vec(), [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(UaString::from("").to_vec(), [0, 0, 0, 0]);
        assert_eq!(
            UaString::from("Temp").to_vec(),
            [4, 0, 0, 0, b'T', b'e', b'm', b'p']
        );
        let bytes = [2, 0, 0, 0, 0xff, b'a'];
        let s = UaString::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(s.as_bytes(), Some(&[0xff, b'a'][..]));
        assert_eq!(s.to_string(), "\u{fffd}a");
        assert_eq!(s.as_str(), None);
        assert!(matches!(s.0, Some(Cow::Borrowed(_))));
        assert_eq!(s.to_vec(), bytes);
    }

    #[test]
    fn string_length_errors() {
        let err = UaString::decode(&mut Reader::new(&[5, 0, 0, 0, b'a'])).unwrap_err();
        assert!(err.is_incomplete());
        let err = UaString::decode(&mut Reader::new(&[0xfe, 0xff, 0xff, 0xff])).unwrap_err();
        assert_eq!(err.structure, "String");
        assert_eq!(err.kind, DecodeErrorKind::InvalidValue { field: "Length" });
    }

    #[test]
    fn base64_text_form() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(ByteString::from(&[0xfbu8, 0xff][..]).to_string(), "+/8=");
    }

    proptest! {
        #[test]
        fn string_roundtrip(v in strategies::ua_string()) {
            crate::types::strategies::check_roundtrip!(UaString, v);
        }

        #[test]
        fn byte_string_roundtrip(v in strategies::byte_string()) {
            crate::types::strategies::check_roundtrip!(ByteString, v);
        }

        #[test]
        fn xml_roundtrip(v in strategies::xml_element()) {
            crate::types::strategies::check_roundtrip!(XmlElement, v);
        }
    }
}
