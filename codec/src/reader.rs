//! A bounds-checked cursor over borrowed input that knows its absolute offset.

use crate::error::{DecodeError, DecodeErrorKind};

/// Limits applied while decoding the UA binary encoding.
///
/// `None` means unlimited (never 0). Lengths are in any case checked against the bytes that
/// remain, so even unlimited decoding never allocates more than the input can justify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most nesting levels of Variant, DataValue, ExtensionObject and DiagnosticInfo together.
    pub max_depth: u32,
    /// Longest String, ByteString or XmlElement accepted, in bytes.
    pub max_string_length: Option<u32>,
    /// Largest element count accepted for any array.
    pub max_array_length: Option<u32>,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // The spec asks decoders to support at least 100 nesting levels (OPC 10000-6 §5.2.2.12).
        DecodeLimits {
            max_depth: 100,
            max_string_length: None,
            max_array_length: None,
        }
    }
}

/// A cursor over `&'a [u8]`; every read is checked and failures carry the absolute offset.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
    depth: u32,
    limits: DecodeLimits,
}

macro_rules! read_le {
    ($name:ident, $t:ty, $n:expr) => {
        #[doc = concat!("Reads a little-endian `", stringify!($t), "`.")]
        #[inline]
        pub fn $name(&mut self, structure: &'static str) -> Result<$t, DecodeError> {
            let bytes = self.take($n, structure)?;
            let mut arr = [0u8; $n];
            arr.copy_from_slice(bytes);
            Ok(<$t>::from_le_bytes(arr))
        }
    };
}

impl<'a> Reader<'a> {
    /// A reader over `data`, whose first byte is at absolute offset 0.
    pub fn new(data: &'a [u8]) -> Self {
        Self::with_base(data, 0)
    }

    /// A reader over `data`, whose first byte is at absolute offset `base` of a larger stream.
    pub fn with_base(data: &'a [u8], base: usize) -> Self {
        Reader {
            data,
            pos: 0,
            base,
            depth: 0,
            limits: DecodeLimits::default(),
        }
    }

    /// Replaces the decoding limits.
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Absolute offset of the next byte to read.
    #[inline]
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Position relative to the start of this reader.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Number of bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// True when every byte has been read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }

    /// Consumes and returns every unread byte.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let r = self.rest();
        self.pos = self.data.len();
        r
    }

    /// An error at the current offset.
    pub fn error(&self, structure: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.offset(),
            structure,
            kind,
        }
    }

    /// An `InvalidValue` error at the current offset.
    pub fn invalid(&self, structure: &'static str, field: &'static str) -> DecodeError {
        self.error(structure, DecodeErrorKind::InvalidValue { field })
    }

    /// Consumes exactly `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize, structure: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => end,
            _ => {
                return Err(self.error(
                    structure,
                    DecodeErrorKind::UnexpectedEnd {
                        needed: n.saturating_sub(self.remaining()),
                    },
                ))
            }
        };
        let out = self.data.get(self.pos..end).unwrap_or(&[]);
        self.pos = end;
        Ok(out)
    }

    /// Consumes `n` bytes and returns a reader over exactly them (same limits and depth).
    pub fn sub(&mut self, n: usize, structure: &'static str) -> Result<Reader<'a>, DecodeError> {
        let base = self.offset();
        let data = self.take(n, structure)?;
        Ok(Reader {
            data,
            pos: 0,
            base,
            depth: self.depth,
            limits: self.limits,
        })
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, structure: &'static str) -> Result<(), DecodeError> {
        self.take(n, structure).map(|_| ())
    }

    /// Fails with `TrailingBytes` unless every byte was consumed.
    pub fn finish(&self, structure: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.error(structure, DecodeErrorKind::TrailingBytes { count })),
        }
    }

    /// Reads one byte.
    #[inline]
    pub fn read_u8(&mut self, structure: &'static str) -> Result<u8, DecodeError> {
        match self.data.get(self.pos) {
            Some(b) => {
                self.pos = self.pos.saturating_add(1);
                Ok(*b)
            }
            None => Err(self.error(structure, DecodeErrorKind::UnexpectedEnd { needed: 1 })),
        }
    }

    /// Reads a signed byte.
    pub fn read_i8(&mut self, structure: &'static str) -> Result<i8, DecodeError> {
        self.read_u8(structure).map(|b| b as i8)
    }

    read_le!(read_u16, u16, 2);
    read_le!(read_i16, i16, 2);
    read_le!(read_u32, u32, 4);
    read_le!(read_i32, i32, 4);
    read_le!(read_u64, u64, 8);
    read_le!(read_i64, i64, 8);
    read_le!(read_f32, f32, 4);
    read_le!(read_f64, f64, 8);

    /// Reads an Int32 length prefix: `Ok(None)` for -1 (null), an error for other negative values,
    /// or for a length longer than the remaining bytes / the string limit.
    pub fn read_length(
        &mut self,
        structure: &'static str,
        field: &'static str,
    ) -> Result<Option<usize>, DecodeError> {
        let at = self.offset();
        let len = self.read_i32(structure)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| DecodeError {
            offset: at,
            structure,
            kind: DecodeErrorKind::InvalidValue { field },
        })?;
        if let Some(limit) = self.limits.max_string_length {
            if len > limit as usize {
                return Err(DecodeError {
                    offset: at,
                    structure,
                    kind: DecodeErrorKind::LimitExceeded {
                        field,
                        limit: u64::from(limit),
                        actual: len as u64,
                    },
                });
            }
        }
        if len > self.remaining() {
            return Err(self.error(
                structure,
                DecodeErrorKind::UnexpectedEnd {
                    needed: len.saturating_sub(self.remaining()),
                },
            ));
        }
        Ok(Some(len))
    }

    /// Reads an Int32 array count: `Ok(None)` for -1 (null). The count is checked against the
    /// array limit and against the remaining bytes (`min_element_size` bytes each) before any
    /// allocation.
    pub fn read_array_length(
        &mut self,
        structure: &'static str,
        field: &'static str,
        min_element_size: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let at = self.offset();
        let len = self.read_i32(structure)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| DecodeError {
            offset: at,
            structure,
            kind: DecodeErrorKind::InvalidValue { field },
        })?;
        if let Some(limit) = self.limits.max_array_length {
            if len > limit as usize {
                return Err(DecodeError {
                    offset: at,
                    structure,
                    kind: DecodeErrorKind::LimitExceeded {
                        field,
                        limit: u64::from(limit),
                        actual: len as u64,
                    },
                });
            }
        }
        let need = len.saturating_mul(min_element_size.max(1));
        if need > self.remaining() {
            return Err(self.error(
                structure,
                DecodeErrorKind::UnexpectedEnd {
                    needed: need.saturating_sub(self.remaining()),
                },
            ));
        }
        Ok(Some(len))
    }

    /// Enters one nesting level (Variant, DataValue, ExtensionObject, DiagnosticInfo); fails past
    /// the depth limit. Pair every successful call with [`Reader::leave`].
    pub fn enter(&mut self, structure: &'static str) -> Result<(), DecodeError> {
        if self.depth >= self.limits.max_depth {
            return Err(self.error(
                structure,
                DecodeErrorKind::LimitExceeded {
                    field: "nesting depth",
                    limit: u64::from(self.limits.max_depth),
                    actual: u64::from(self.depth).saturating_add(1),
                },
            ));
        }
        self.depth = self.depth.saturating_add(1);
        Ok(())
    }

    /// Leaves one nesting level.
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Current nesting depth.
    pub fn depth(&self) -> u32 {
        self.depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_tracks_offset() {
        let mut r = Reader::with_base(&[1, 2, 3, 4, 5], 100);
        assert_eq!(r.read_u16("t").ok(), Some(0x0201));
        assert_eq!(r.offset(), 102);
        let err = r.read_u32("t").err();
        assert_eq!(
            err,
            Some(DecodeError {
                offset: 102,
                structure: "t",
                kind: DecodeErrorKind::UnexpectedEnd { needed: 1 }
            })
        );
    }

    #[test]
    fn lengths_are_checked_before_use() {
        // -1 is null, -2 invalid, a length past the end is incomplete.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.read_length("s", "len").ok(), Some(None));
        let mut r = Reader::new(&[0xfe, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.read_length("s", "len").map_err(|e| e.kind),
            Err(DecodeErrorKind::InvalidValue { .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0x7f, 0]);
        assert!(r.read_length("s", "len").is_err_and(|e| e.is_incomplete()));
        let mut r = Reader::new(&[0x10, 0x27, 0, 0]).with_limits(DecodeLimits {
            max_array_length: Some(100),
            ..DecodeLimits::default()
        });
        assert!(matches!(
            r.read_array_length("a", "n", 1).map_err(|e| e.kind),
            Err(DecodeErrorKind::LimitExceeded {
                limit: 100,
                actual: 10000,
                ..
            })
        ));
    }

    #[test]
    fn depth_is_capped() {
        let mut r = Reader::new(&[]).with_limits(DecodeLimits {
            max_depth: 2,
            ..DecodeLimits::default()
        });
        assert!(r.enter("v").is_ok());
        assert!(r.enter("v").is_ok());
        assert!(r.enter("v").is_err());
        r.leave();
        assert!(r.enter("v").is_ok());
    }
}
