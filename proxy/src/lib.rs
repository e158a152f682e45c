//! Live traffic: the inline proxy (tokio) and passive live capture.
//!
//! - [`sniff`]: frames from a network interface (Linux `AF_PACKET`, no libpcap) turned into
//!   the same TCP stream events a capture file gives, for `uatap analyze -i IFACE`. Other
//!   platforms get a stub whose open fails with a message pointing to file capture.
//!
//! It does not decode OPC UA: the binary feeds the stream events to the analysis.
#![deny(missing_docs)]

pub mod access;
mod arena;
pub mod config;
pub mod fault;
pub mod hub;
pub mod metrics;
pub mod mitm;
pub mod os;
pub mod pki;
pub mod probe;
pub mod relay;
pub mod replay;
pub mod rewrite;
pub mod sink;
pub mod sniff;
pub mod upstream;

#[cfg(test)]
mod test_support;
