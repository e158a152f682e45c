//! DiagnosticInfo (OPC 10000-6 §5.2.2.12): vendor diagnostics, possibly nested.

use std::fmt;

use bytes::BufMut;

use super::string::read_bytes;
use super::{invalid_at, nested, Decode, IntoStatic, UaString};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

const STRUCTURE: &str = "DiagnosticInfo";
const SYMBOLIC_ID: u8 = 0x01;
const NAMESPACE_URI: u8 = 0x02;
const LOCALIZED_TEXT: u8 = 0x04;
const LOCALE: u8 = 0x08;
const ADDITIONAL_INFO: u8 = 0x10;
const INNER_STATUS_CODE: u8 = 0x20;
const INNER_DIAGNOSTIC_INFO: u8 = 0x40;

/// Diagnostics a server attaches to a result.
///
/// Wire form: a mask byte, then the present fields in the order SymbolicId (0x01),
/// NamespaceUri (0x02), Locale (0x08), LocalizedText (0x04), AdditionalInfo (0x10),
/// InnerStatusCode (0x20), InnerDiagnosticInfo (0x40) — Locale precedes LocalizedText although
/// its bit is higher (encoding.md §9). Bit 0x80 is invalid. The four Int32 fields index the
/// ResponseHeader's StringTable (−1 = none). Each level counts against the nesting limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DiagnosticInfo<'a> {
    /// SymbolicId string-table index (0x01).
    pub symbolic_id: Option<i32>,
    /// NamespaceUri string-table index (0x02).
    pub namespace_uri: Option<i32>,
    /// Locale string-table index (0x08).
    pub locale: Option<i32>,
    /// LocalizedText string-table index (0x04).
    pub localized_text: Option<i32>,
    /// AdditionalInfo (0x10): vendor-specific text.
    pub additional_info: Option<UaString<'a>>,
    /// InnerStatusCode (0x20), raw.
    pub inner_status_code: Option<u32>,
    /// InnerDiagnosticInfo (0x40).
    pub inner_diagnostic_info: Option<Box<DiagnosticInfo<'a>>>,
}

impl DiagnosticInfo<'_> {
    /// The encoding mask this value is written with.
    pub fn encoding_mask(&self) -> u8 {
        let bits = [
            (self.symbolic_id.is_some(), SYMBOLIC_ID),
            (self.namespace_uri.is_some(), NAMESPACE_URI),
            (self.localized_text.is_some(), LOCALIZED_TEXT),
            (self.locale.is_some(), LOCALE),
            (self.additional_info.is_some(), ADDITIONAL_INFO),
            (self.inner_status_code.is_some(), INNER_STATUS_CODE),
            (self.inner_diagnostic_info.is_some(), INNER_DIAGNOSTIC_INFO),
        ];
        bits.iter()
            .filter(|(present, _)| *present)
            .fold(0, |m, (_, bit)| m | bit)
    }
}

#[inline]
fn opt_i32(mask: u8, bit: u8, r: &mut Reader<'_>) -> Result<Option<i32>, DecodeError> {
    if mask & bit != 0 {
        r.read_i32(STRUCTURE).map(Some)
    } else {
        Ok(None)
    }
}

impl<'a> Decode<'a> for DiagnosticInfo<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        nested(r, STRUCTURE, |r| {
            let at = r.offset();
            let mask = r.read_u8(STRUCTURE)?;
            if mask & 0x80 != 0 {
                return Err(invalid_at(at, STRUCTURE, "EncodingMask"));
            }
            let symbolic_id = opt_i32(mask, SYMBOLIC_ID, r)?;
            let namespace_uri = opt_i32(mask, NAMESPACE_URI, r)?;
            let locale = opt_i32(mask, LOCALE, r)?;
            let localized_text = opt_i32(mask, LOCALIZED_TEXT, r)?;
            let additional_info = if mask & ADDITIONAL_INFO != 0 {
                Some(UaString(read_bytes(r, STRUCTURE, "AdditionalInfo")?))
            } else {
                None
            };
            let inner_status_code = if mask & INNER_STATUS_CODE != 0 {
                Some(r.read_u32(STRUCTURE)?)
            } else {
                None
            };
            let inner_diagnostic_info = if mask & INNER_DIAGNOSTIC_INFO != 0 {
                Some(Box::new(DiagnosticInfo::decode(r)?))
            } else {
                None
            };
            Ok(DiagnosticInfo {
                symbolic_id,
                namespace_uri,
                locale,
                localized_text,
                additional_info,
                inner_status_code,
                inner_diagnostic_info,
            })
        })
    }
}

impl Encode for DiagnosticInfo<'_> {
    fn encoded_len(&self) -> usize {
        let int = |v: Option<i32>| -> usize {
            if v.is_some() {
                4
            } else {
                0
            }
        };
        int(self.symbolic_id)
            .saturating_add(int(self.namespace_uri))
            .saturating_add(int(self.locale))
            .saturating_add(int(self.localized_text))
            .saturating_add(self.additional_info.as_ref().map_or(0, Encode::encoded_len))
            .saturating_add(if self.inner_status_code.is_some() {
                4
            } else {
                0
            })
            .saturating_add(
                self.inner_diagnostic_info
                    .as_ref()
                    .map_or(0, |d| d.encoded_len()),
            )
            .saturating_add(1)
    }

    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u8(self.encoding_mask());
        for v in [
            self.symbolic_id,
            self.namespace_uri,
            self.locale,
            self.localized_text,
        ]
        .into_iter()
        .flatten()
        {
            out.put_i32_le(v);
        }
        if let Some(s) = &self.additional_info {
            s.encode(out);
        }
        if let Some(s) = self.inner_status_code {
            out.put_u32_le(s);
        }
        if let Some(d) = &self.inner_diagnostic_info {
            d.encode(out);
        }
    }
}

impl IntoStatic for DiagnosticInfo<'_> {
    type Static = DiagnosticInfo<'static>;
    fn into_static(self) -> DiagnosticInfo<'static> {
        DiagnosticInfo {
            symbolic_id: self.symbolic_id,
            namespace_uri: self.namespace_uri,
            locale: self.locale,
            localized_text: self.localized_text,
            additional_info: self.additional_info.into_static(),
            inner_status_code: self.inner_status_code,
            inner_diagnostic_info: self.inner_diagnostic_info.into_static(),
        }
    }
}

/// The present fields, e.g. `DiagnosticInfo(symbolic_id=3, inner_status=0x80070000, inner=…)`.
impl fmt::Display for DiagnosticInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DiagnosticInfo(")?;
        let mut sep = "";
        let ints = [
            ("symbolic_id", self.symbolic_id),
            ("namespace_uri", self.namespace_uri),
            ("locale", self.locale),
            ("localized_text", self.localized_text),
        ];
        for (name, v) in ints {
            if let Some(v) = v {
                write!(f, "{sep}{name}={v}")?;
                sep = ", ";
            }
        }
        if let Some(s) = &self.additional_info {
            write!(f, "{sep}additional_info={s:?}")?;
            sep = ", ";
        }
        if let Some(s) = self.inner_status_code {
            write!(f, "{sep}inner_status=0x{s:08X}")?;
            sep = ", ";
        }
        if let Some(d) = &self.inner_diagnostic_info {
            write!(f, "{sep}inner={d}")?;
        }
        f.write_str(")")
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
    fn locale_precedes_localized_text() {
        let d = DiagnosticInfo {
            locale: Some(1),
            localized_text: Some(2),
            inner_diagnostic_info: Some(Box::new(DiagnosticInfo {
                inner_status_code: Some(0x8007_0000),
                ..DiagnosticInfo::default()
            })),
            ..DiagnosticInfo::default()
        };
        let bytes = [0x4C, 1, 0, 0, 0, 2, 0, 0, 0, 0x20, 0, 0, 0x07, 0x80];
        assert_eq!(d.to_vec(), bytes);
        assert_eq!(d.encoded_len(), bytes.len());
        let mut r = Reader::new(&bytes);
        assert_eq!(DiagnosticInfo::decode(&mut r).unwrap(), d);
        assert!(r.is_empty());
        assert_eq!(r.depth(), 0);
        assert_eq!(
            d.to_string(),
            "DiagnosticInfo(locale=1, localized_text=2, inner=DiagnosticInfo(inner_status=0x80070000))"
        );
    }

    #[test]
    fn invalid_mask() {
        let err = DiagnosticInfo::decode(&mut Reader::new(&[0x80])).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::InvalidValue {
                field: "EncodingMask"
            }
        );
    }

    proptest! {
        #[test]
        fn roundtrip(v in strategies::diagnostic_info()) {
            crate::types::strategies::check_roundtrip!(DiagnosticInfo, v);
        }
    }
}
