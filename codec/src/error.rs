//! Decode errors: every failure says where in the input it happened and what was expected.

use thiserror::Error;

/// A failure to decode wire bytes, with the absolute byte offset where it was detected.
///
/// Decoders never panic on input; they return this instead, so a caller can report the
/// problem as a `decode_error` event and keep forwarding bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{structure} at offset {offset}: {kind}")]
pub struct DecodeError {
    /// Absolute offset (from the start of the input the reader was created over) of the failure.
    pub offset: usize,
    /// The spec structure being decoded, e.g. `HelloMessage`.
    pub structure: &'static str,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// What went wrong while decoding; open for new variants.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended; `needed` more bytes are required to go on (framing waits for them).
    #[error("unexpected end of input, {needed} more bytes needed")]
    UnexpectedEnd {
        /// How many more bytes would be needed at least.
        needed: usize,
    },
    /// A length, count or depth on the wire is larger than the configured or negotiated limit.
    #[error("{field} is {actual}, over the limit of {limit}")]
    LimitExceeded {
        /// The field whose value is too large.
        field: &'static str,
        /// The limit in force.
        limit: u64,
        /// The value found on the wire.
        actual: u64,
    },
    /// A field holds a value the specification does not allow here.
    #[error("invalid value in {field}")]
    InvalidValue {
        /// The offending field.
        field: &'static str,
    },
    /// The 3-byte message type is not one of HEL, ACK, ERR, RHE, OPN, MSG, CLO.
    #[error("unknown message type")]
    UnknownMessageType,
    /// A structure ended before the bytes that were declared for it.
    #[error("{count} trailing bytes after the structure")]
    TrailingBytes {
        /// Number of bytes left over.
        count: usize,
    },
}

impl DecodeError {
    /// True when more input could make this decode succeed (framing waits rather than fails).
    pub fn is_incomplete(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::UnexpectedEnd { .. })
    }
}
