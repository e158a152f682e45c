//! Per-connection OPC UA analysis: bytes and time in, the events of the public contract out.
//!
//! Sans-IO: no socket, task or clock. The live proxy, offline `analyze` and replay all feed the
//! same [`Connection`] state machine, so they say the same things about the same bytes.
//!
//! Main types: [`Connection`], [`Event`], [`EventKind`], [`Timestamp`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cert;
pub mod connection;
pub mod event;
mod items;
mod json;
pub mod payload;
pub mod reconnect;
pub mod reject;
pub mod time;
mod tracker;

#[cfg(test)]
mod conversation_tests;

pub use connection::{Analyzer, Connection, Options, Retained, DEFAULT_STALL_AFTER};
pub use event::{CloseReason, ClosedBy, Direction, Event, EventKind};
pub use time::Timestamp;
