//! The error that stops reading a capture; everything handed over before it stays valid.

use std::io;
use std::path::PathBuf;

/// Why reading a capture stopped: callers keep the packets and streams already handed over
/// and show this next to them, so a damaged file still yields what it holds.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// The capture file could not be opened, so nothing was read.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The path as given by the caller.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The underlying reader failed in the middle of the capture.
    #[error("read error at byte {offset}: {source}")]
    Io {
        /// Byte offset in the file where the failed read started.
        offset: u64,
        /// What the reader said.
        #[source]
        source: io::Error,
    },
    /// The input starts with neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng capture (first bytes {magic:02x?})")]
    UnknownFormat {
        /// The first four bytes of the input.
        magic: [u8; 4],
    },
    /// The input ends inside a structure (file cut short, capture still being written).
    #[error(
        "capture truncated at byte {offset}: {structure} needs {needed} bytes, only {available} left"
    )]
    Truncated {
        /// Byte offset in the file where the incomplete structure starts.
        offset: u64,
        /// Which structure was cut, e.g. "pcapng block".
        structure: &'static str,
        /// How many bytes the structure claims or needs.
        needed: u64,
        /// How many bytes the input still had.
        available: u64,
    },
    /// A structure is malformed (bad length field, wrong magic, rejected by the parser).
    #[error("invalid {structure} at byte {offset}: {reason}")]
    Invalid {
        /// Byte offset in the file where the structure starts.
        offset: u64,
        /// Which structure, e.g. "pcapng block".
        structure: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl RecorderError {
    /// Byte offset in the file the error refers to, if it has one; lets a report point at the
    /// damaged spot.
    #[must_use]
    pub fn offset(&self) -> Option<u64> {
        match self {
            RecorderError::Io { offset, .. }
            | RecorderError::Truncated { offset, .. }
            | RecorderError::Invalid { offset, .. } => Some(*offset),
            RecorderError::UnknownFormat { .. } => Some(0),
            RecorderError::Open { .. } => None,
        }
    }
}
