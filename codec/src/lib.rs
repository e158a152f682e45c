//! Sans-IO codec for OPC UA over TCP: UA TCP framing (HEL/ACK/ERR/RHE), UA Secure Conversation
//! chunks (OPN/MSG/CLO, security and sequence headers), chunk reassembly under negotiated limits,
//! the UA binary encoding of the built-in types, and the service bodies troubleshooting needs.
//!
//! It does no IO, owns no socket, clock or thread: callers hand it bytes and get typed,
//! borrowing views back, or a [`DecodeError`] that carries the byte offset. Every length on the
//! wire is checked against the remaining input and the configured limits before use, so no input
//! can make it panic or allocate without bound. Encoders write back the exact bytes a decoder
//! read, which is what lets the proxy and replay rewrite a field and leave the rest untouched.
//!
//! It does not decrypt or verify signatures: on secured channels it reports the clear-text
//! headers and marks the body as protected.
//!
//! Main types: [`Reader`], [`DecodeError`], [`tcp::MessageHeader`], [`tcp::HelloMessage`],
//! [`secure::Chunk`], [`reassembly::Reassembler`], [`types::Variant`], [`services::Message`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod encode;
pub mod error;
pub mod ids;
pub mod reader;
pub mod reassembly;
pub mod secrets;
pub mod secure;
pub mod services;
pub mod status;
pub mod tcp;
pub mod types;

pub use encode::Encode;
pub use error::{DecodeError, DecodeErrorKind};
pub use reader::{DecodeLimits, Reader};
