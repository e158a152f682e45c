//! Fault injection, toxiproxy-like but OPC UA aware: break, slow down or starve a proxied
//! connection on purpose, at a time or when a given UA message passes, to reproduce what the
//! plant did. Every fault applied is reported as a `fault_injected` event.
//!
//! - [`spec`]: the one-line fault language (`cut at 10s`, `drop-message PublishResponse x3`).
//! - [`table`]: the faults in force and the open connections, shared by relays, the
//!   scheduler and the admin API.
//! - [`stream`]: frames a direction into whole messages for the message faults.
//! - [`admin`]: the loopback HTTP API (list, add, remove faults; list connections).

pub mod admin;
pub mod spec;
pub mod stream;
pub mod table;

pub use spec::{Action, FaultSpec, Match, Start};
pub use stream::{MessageFramer, Stop};
pub use table::{DirView, Faults, Kill, MessageInfo, Verdict};
