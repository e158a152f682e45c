//! The analysis side of the proxy: relays tap what they forward into a channel; one thread
//! runs the same sans-IO analysis as `uatap analyze` on it and hands events to the sinks. The
//! forwarding path never waits for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use uatap_analysis::{
    Analyzer, CloseReason, ClosedBy, Connection, Direction, Event, Options, Timestamp,
};

/// What a relay reports about one proxied connection.
#[derive(Debug)]
pub enum Tap {
    /// A client connected (and the upstream connection, if it succeeded).
    Open {
        /// Connection number within this proxy.
        id: u64,
        /// The client's address.
        client: SocketAddr,
        /// The server the client thinks it talks to (the listen address it reached).
        server: SocketAddr,
        /// When.
        ts: Timestamp,
    },
    /// Bytes forwarded in one direction, exactly as they were forwarded.
    Data {
        /// Connection number.
        id: u64,
        /// Which way.
        dir: Direction,
        /// The bytes.
        bytes: Vec<u8>,
        /// When they were read.
        ts: Timestamp,
    },
    /// Bytes forwarded but not handed to the analysis (the channel was full).
    Lost {
        /// Connection number.
        id: u64,
        /// Which way.
        dir: Direction,
        /// How many.
        bytes: u64,
        /// When.
        ts: Timestamp,
    },
    /// The upstream could not be reached or was lost.
    UpstreamError {
        /// Connection number.
        id: u64,
        /// `refused`, `timeout`, `unreachable`, `reset`, `dns`.
        error: &'static str,
        /// Detail for the person.
        detail: String,
        /// When.
        ts: Timestamp,
    },
    /// The connection ended.
    Close {
        /// Connection number.
        id: u64,
        /// Who ended it.
        by: ClosedBy,
        /// How.
        reason: CloseReason,
        /// When.
        ts: Timestamp,
    },
}

/// Now, as the analysis' timestamp.
pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Receives events from the hub.
pub trait EventSink: Send {
    /// One event, in order.
    fn event(&mut self, e: &Event);
    /// The proxy is stopping: flush.
    fn flush(&mut self) {}
}

/// Runs the analysis until every sender of `rx` is gone; returns the sinks (flushed).
pub fn run_hub(
    mut rx: mpsc::Receiver<Tap>,
    options: Options,
    mut sinks: Vec<Box<dyn EventSink>>,
) -> Vec<Box<dyn EventSink>> {
    let mut analyzer = Analyzer::new(options);
    let mut conns: HashMap<u64, Connection> = HashMap::new();
    let emit = |c: &mut Connection, sinks: &mut Vec<Box<dyn EventSink>>| {
        while let Some(e) = c.poll_event() {
            for s in sinks.iter_mut() {
                s.event(&e);
            }
        }
    };
    while let Some(tap) = rx.blocking_recv() {
        match tap {
            Tap::Open {
                id,
                client,
                server,
                ts,
            } => {
                let mut c = analyzer.open(client.to_string(), server.to_string(), ts);
                emit(&mut c, &mut sinks);
                conns.insert(id, c);
            }
            Tap::Data { id, dir, bytes, ts } => {
                if let Some(c) = conns.get_mut(&id) {
                    analyzer.handle_input(c, dir, &bytes, ts);
                    emit(c, &mut sinks);
                }
            }
            Tap::Lost { id, dir, bytes, ts } => {
                if let Some(c) = conns.get_mut(&id) {
                    analyzer.handle_gap(c, dir, bytes, ts);
                    emit(c, &mut sinks);
                }
            }
            Tap::UpstreamError {
                id,
                error,
                detail,
                ts,
            } => {
                if let Some(c) = conns.get_mut(&id) {
                    c.handle_upstream_error(error, detail, ts);
                    emit(c, &mut sinks);
                }
            }
            Tap::Close { id, by, reason, ts } => {
                if let Some(mut c) = conns.remove(&id) {
                    analyzer.handle_close(&mut c, by, reason, ts);
                    emit(&mut c, &mut sinks);
                }
            }
        }
    }
    // Shutting down: close what is still open so summaries and recordings are complete.
    let ts = now();
    for (_, mut c) in conns.drain() {
        analyzer.handle_close(&mut c, ClosedBy::Proxy, CloseReason::Error, ts);
        emit(&mut c, &mut sinks);
    }
    for s in sinks.iter_mut() {
        s.flush();
    }
    sinks
}
