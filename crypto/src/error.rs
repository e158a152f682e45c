//! What can go wrong when securing or opening a chunk.

use thiserror::Error;

/// A failure of a security operation; chunk errors carry the byte offset in the chunk.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key or certificate could not be read or used.
    #[error("{0}")]
    Key(String),
    /// The chunk's layout is wrong for its policy (a length that is not a whole number of
    /// blocks, padding that runs past the start, a header that does not parse).
    #[error("{what} at offset {offset}")]
    Malformed {
        /// Offset in the chunk.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Decryption failed: the wrong private key or keys, or a damaged chunk.
    #[error("decryption failed at offset {offset} (wrong key, or damaged bytes)")]
    Decrypt {
        /// Offset in the chunk of the first encrypted byte.
        offset: usize,
    },
    /// The signature does not match the bytes: wrong keys, or the bytes were changed.
    #[error("the signature at offset {offset} does not verify")]
    BadSignature {
        /// Offset in the chunk of the signature.
        offset: usize,
    },
    /// Signing failed.
    #[error("signing failed")]
    Sign,
    /// The policy is None or unknown where a secured one is needed.
    #[error("security policy {0} has no such operation")]
    Policy(&'static str),
    /// The message is too big for one chunk of the negotiated size.
    #[error("the message needs {needed} bytes, over the chunk size of {limit}")]
    TooBig {
        /// Bytes needed.
        needed: usize,
        /// The chunk size.
        limit: usize,
    },
}
