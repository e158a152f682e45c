//! QualifiedName (OPC 10000-6 §5.2.2.13) and LocalizedText (§5.2.2.14).

use std::fmt;

use bytes::BufMut;

use super::string::read_bytes;
use super::{invalid_at, Decode, IntoStatic, UaString};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::reader::Reader;

/// A name qualified by a namespace index (browse names): UInt16 then String.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct QualifiedName<'a> {
    /// Namespace index.
    pub namespace_index: u16,
    /// The name.
    pub name: UaString<'a>,
}

impl<'a> QualifiedName<'a> {
    /// A QualifiedName from its parts.
    pub fn new(namespace_index: u16, name: impl Into<UaString<'a>>) -> Self {
        QualifiedName {
            namespace_index,
            name: name.into(),
        }
    }
}

/// The text form `2:Temp`, or just `Temp` in namespace 0.
impl fmt::Display for QualifiedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace_index != 0 {
            write!(f, "{}:", self.namespace_index)?;
        }
        self.name.fmt(f)
    }
}

impl<'a> Decode<'a> for QualifiedName<'a> {
    const MIN_ENCODED_LEN: usize = 6;

    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let namespace_index = r.read_u16("QualifiedName")?;
        let name = UaString(read_bytes(r, "QualifiedName", "Name")?);
        Ok(QualifiedName {
            namespace_index,
            name,
        })
    }
}

impl Encode for QualifiedName<'_> {
    #[inline]
    fn encoded_len(&self) -> usize {
        self.name.encoded_len().saturating_add(2)
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u16_le(self.namespace_index);
        self.name.encode(out);
    }
}

impl IntoStatic for QualifiedName<'_> {
    type Static = QualifiedName<'static>;
    fn into_static(self) -> QualifiedName<'static> {
        QualifiedName {
            namespace_index: self.namespace_index,
            name: self.name.into_static(),
        }
    }
}

/// LocalizedText mask bit: Locale present.
const LOCALE: u8 = 0x01;
/// LocalizedText mask bit: Text present.
const TEXT: u8 = 0x02;

/// Human-readable text with an optional locale: mask byte (0x01 Locale, 0x02 Text), then the
/// present strings in that order.
///
/// `Some(UaString(None))` is a field whose bit is set but whose string is null; it is kept so
/// the mask re-encodes as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LocalizedText<'a> {
    /// Locale, e.g. `en-US` (mask bit 0x01).
    pub locale: Option<UaString<'a>>,
    /// The text (mask bit 0x02).
    pub text: Option<UaString<'a>>,
}

impl<'a> LocalizedText<'a> {
    /// A text without locale.
    pub fn new(text: impl Into<UaString<'a>>) -> Self {
        LocalizedText {
            locale: None,
            text: Some(text.into()),
        }
    }
}

/// The text only (lossy UTF-8); absent text prints as nothing.
impl fmt::Display for LocalizedText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(t) => t.fmt(f),
            None => Ok(()),
        }
    }
}

impl<'a> Decode<'a> for LocalizedText<'a> {
    #[inline]
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.offset();
        let mask = r.read_u8("LocalizedText")?;
        if mask & !(LOCALE | TEXT) != 0 {
            return Err(invalid_at(at, "LocalizedText", "EncodingMask"));
        }
        let locale = if mask & LOCALE != 0 {
            Some(UaString(read_bytes(r, "LocalizedText", "Locale")?))
        } else {
            None
        };
        let text = if mask & TEXT != 0 {
            Some(UaString(read_bytes(r, "LocalizedText", "Text")?))
        } else {
            None
        };
        Ok(LocalizedText { locale, text })
    }
}

impl Encode for LocalizedText<'_> {
    #[inline]
    fn encoded_len(&self) -> usize {
        let field = |s: &Option<UaString<'_>>| s.as_ref().map_or(0, Encode::encoded_len);
        field(&self.locale)
            .saturating_add(field(&self.text))
            .saturating_add(1)
    }

    #[inline]
    fn encode<B: BufMut>(&self, out: &mut B) {
        let mut mask = 0;
        if self.locale.is_some() {
            mask |= LOCALE;
        }
        if self.text.is_some() {
            mask |= TEXT;
        }
        out.put_u8(mask);
        if let Some(l) = &self.locale {
            l.encode(out);
        }
        if let Some(t) = &self.text {
            t.encode(out);
        }
    }
}

impl IntoStatic for LocalizedText<'_> {
    type Static = LocalizedText<'static>;
    fn into_static(self) -> LocalizedText<'static> {
        LocalizedText {
            locale: self.locale.into_static(),
            text: self.text.into_static(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::DecodeErrorKind;
    use crate::types::strategies;
    use proptest::prelude::*;

    #[test]
    fn qualified_name_wire_form() {
        let q = QualifiedName::new(2, "Temp");
        let bytes = [2, 0, 4, 0, 0, 0, b'T', b'e', b'm', b'p'];
        assert_eq!(q.to_vec(), bytes);
        assert_eq!(QualifiedName::decode(&mut Reader::new(&bytes)).unwrap(), q);
        assert_eq!(q.to_string(), "2:Temp");
    }

    #[test]
    fn localized_text_mask() {
        let t = LocalizedText::new("Hi");
        let bytes = [0x02, 2, 0, 0, 0, b'H', b'i'];
        assert_eq!(t.to_vec(), bytes);
        assert_eq!(LocalizedText::decode(&mut Reader::new(&bytes)).unwrap(), t);
        assert_eq!(LocalizedText::default().to_vec(), [0]);
        // Locale precedes Text; a flagged null string is kept.
        let bytes = [0x03, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, b'x'];
        let t = LocalizedText::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(t.locale, Some(UaString::null()));
        assert_eq!(t.text, Some(UaString::from("x")));
        assert_eq!(t.to_vec(), bytes);
        let err = LocalizedText::decode(&mut Reader::new(&[0x04])).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::InvalidValue {
                field: "EncodingMask"
            }
        );
    }

    proptest! {
        #[test]
        fn qualified_name_roundtrip(v in strategies::qualified_name()) {
            crate::types::strategies::check_roundtrip!(QualifiedName, v);
        }

        #[test]
        fn localized_text_roundtrip(v in strategies::localized_text()) {
            crate::types::strategies::check_roundtrip!(LocalizedText, v);
        }
    }
}
