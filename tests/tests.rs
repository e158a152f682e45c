//! Integration tests: fixtures from real stacks, live captures of asyncua and node-opcua on
//! loopback, and tshark as an independent decoder. A missing peer or tool fails the test.

mod util;

mod access;
mod analysis;
mod check;
mod crosscheck;
mod decrypt;
mod faults;
mod fixtures;
mod hardening;
mod live;
// Reads the proxy's memory and descriptors in /proc.
#[cfg(target_os = "linux")]
mod load;
mod metrics;
mod mitm;
mod probe;
mod proxy;
mod reconnect_relay;
mod reconnect_stacks;
mod redact;
mod rejects;
mod replay;
mod report;
mod rewrite;
mod shapes;
