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
use uatap_recorder::{
    Direction as RDir, InterfaceDescription, InterfaceId, RotatingWriter, RotationConfig,
    TcpFlowWriter, WriteError,
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
    /// The proxy reached the server: the addresses of the second leg.
    Connected {
        /// Connection number.
        id: u64,
        /// The proxy's own address on the server leg.
        local: SocketAddr,
        /// The server's address.
        upstream: SocketAddr,
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
    /// Bytes a fault kept from the receiver (blackhole, drop-message, an answered HEL): they
    /// are recorded on the sender's leg only. The analysis follows the client's leg: what the
    /// client sent is analysed, what the server sent and the client never got is not.
    Withheld {
        /// Connection number.
        id: u64,
        /// Which way they were going.
        dir: Direction,
        /// The bytes.
        bytes: Vec<u8>,
        /// When they were read.
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
    /// The relay changed (or declined to change) forwarded bytes on the user's request, e.g.
    /// `--rewrite-endpoint-urls`: reported as a `fault_injected` event.
    FaultInjected {
        /// Connection number.
        id: u64,
        /// Which way the changed bytes went.
        dir: Option<Direction>,
        /// Name of the fault.
        fault: &'static str,
        /// What was changed, or why not.
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

/// Writes what crosses the proxy to pcapng: per proxied connection two TCP flows (client to
/// proxy, proxy to server) with the real addresses, the events as packet comments.
pub struct Recording {
    writer: RotatingWriter,
    interface: InterfaceId,
    flows: HashMap<u64, (TcpFlowWriter, Option<TcpFlowWriter>)>,
    stopped: bool,
}

impl Recording {
    /// Starts a recording (one interface block for the listener).
    pub fn create(
        path: &std::path::Path,
        rotation: RotationConfig,
        description: &str,
    ) -> Result<Self, WriteError> {
        let mut writer = RotatingWriter::create(path, rotation)?;
        let interface =
            writer.add_interface(InterfaceDescription::ethernet("uatap", description))?;
        Ok(Recording {
            writer,
            interface,
            flows: HashMap::new(),
            stopped: false,
        })
    }

    fn guard(&mut self, r: Result<(), WriteError>) {
        if let Err(e) = r {
            if e.stops_recording() && !self.stopped {
                self.stopped = true;
                eprintln!("uatap: recording stopped ({e}); forwarding goes on");
            }
        }
    }

    fn open(&mut self, id: u64, client: SocketAddr, server: SocketAddr, ts: Timestamp, note: &str) {
        if self.stopped {
            return;
        }
        let Ok(mut flow) = TcpFlowWriter::new(self.interface, client, server) else {
            return;
        };
        let r = flow.open(&mut self.writer, rts(ts), Some(note));
        self.guard(r);
        self.flows.insert(id, (flow, None));
    }

    fn connected(&mut self, id: u64, local: SocketAddr, upstream: SocketAddr, ts: Timestamp) {
        if self.stopped {
            return;
        }
        let Ok(mut flow) = TcpFlowWriter::new(self.interface, local, upstream) else {
            return;
        };
        let r = flow.open(&mut self.writer, rts(ts), None);
        self.guard(r);
        if let Some(f) = self.flows.get_mut(&id) {
            f.1 = Some(flow);
        }
    }

    fn data(&mut self, id: u64, dir: Direction, bytes: &[u8], ts: Timestamp, comments: &str) {
        if self.stopped {
            return;
        }
        let d = rdir(dir);
        let comment = (!comments.is_empty()).then_some(comments);
        let Some((client_leg, server_leg)) = self.flows.get_mut(&id) else {
            return;
        };
        // What the sender sent is on its own leg first, then on the other: the bytes are the
        // same on both, and the comments go with the client's view.
        let mut r = client_leg.data(&mut self.writer, d, rts(ts), bytes, comment);
        if let (Ok(()), Some(s)) = (&r, server_leg.as_mut()) {
            r = s.data(&mut self.writer, d, rts(ts), bytes, None);
        }
        self.guard(r);
    }

    /// Bytes that reached the proxy but not the receiver: on the sender's leg only.
    fn withheld(&mut self, id: u64, dir: Direction, bytes: &[u8], ts: Timestamp, comments: &str) {
        if self.stopped {
            return;
        }
        let comment = (!comments.is_empty()).then_some(comments);
        let Some((client_leg, server_leg)) = self.flows.get_mut(&id) else {
            return;
        };
        let leg = match dir {
            Direction::ClientToServer => Some(client_leg),
            Direction::ServerToClient => server_leg.as_mut(),
        };
        if let Some(leg) = leg {
            let r = leg.data(&mut self.writer, rdir(dir), rts(ts), bytes, comment);
            self.guard(r);
        }
    }

    fn close(&mut self, id: u64, by: ClosedBy, reason: CloseReason, ts: Timestamp, comments: &str) {
        let Some((mut client_leg, server_leg)) = self.flows.remove(&id) else {
            return;
        };
        if self.stopped {
            return;
        }
        let comment = (!comments.is_empty()).then_some(comments);
        let dir = match by {
            ClosedBy::Server => RDir::BToA,
            _ => RDir::AToB,
        };
        let t = rts(ts);
        let mut legs = vec![(&mut client_leg, comment)];
        let mut server_leg = server_leg;
        if let Some(s) = server_leg.as_mut() {
            legs.push((s, None));
        }
        for (leg, c) in legs {
            let r = match reason {
                CloseReason::Rst => leg.rst(&mut self.writer, dir, t, c),
                _ => leg
                    .fin(&mut self.writer, dir, t, c)
                    .and_then(|()| leg.fin(&mut self.writer, dir.reverse(), t, None)),
            };
            self.guard(r);
        }
    }

    fn finish(self) {
        if let Err(e) = self.writer.finish() {
            eprintln!("uatap: recording: {e}");
        }
    }
}

fn rts(t: Timestamp) -> uatap_recorder::Timestamp {
    uatap_recorder::Timestamp::from_unix_micros(t.unix_micros)
}

fn rdir(d: Direction) -> RDir {
    match d {
        Direction::ClientToServer => RDir::AToB,
        Direction::ServerToClient => RDir::BToA,
    }
}

/// Receives events from the hub.
pub trait EventSink: Send {
    /// One event, in order.
    fn event(&mut self, e: &Event);
    /// The proxy is stopping: flush.
    fn flush(&mut self) {}
}

/// Runs the analysis until every sender of `rx` is gone; returns the sinks (flushed). With a
/// recording, every tapped byte is written to it, with the events it caused as comments.
pub fn run_hub(
    mut rx: mpsc::Receiver<Tap>,
    options: Options,
    mut sinks: Vec<Box<dyn EventSink>>,
    mut recording: Option<Recording>,
) -> Vec<Box<dyn EventSink>> {
    let mut analyzer = Analyzer::new(options);
    let mut conns: HashMap<u64, Connection> = HashMap::new();
    // Drains a connection's events to the sinks; returns their text for packet comments.
    let emit = |c: &mut Connection, sinks: &mut Vec<Box<dyn EventSink>>, comments: bool| {
        let mut text = String::new();
        while let Some(e) = c.poll_event() {
            for s in sinks.iter_mut() {
                s.event(&e);
            }
            if comments && !matches!(e.kind, uatap_analysis::EventKind::Message(_)) {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str("uatap: ");
                text.push_str(&e.to_text());
            }
        }
        text
    };
    let rec = recording.is_some();
    // Text of `fault_injected` events waiting for the next bytes of their connection.
    let mut pending_notes: HashMap<u64, String> = HashMap::new();
    loop {
        // Sinks are flushed whenever the queue runs dry: a person (or `| jq`) sees each event
        // at once when traffic is light, and a busy proxy does not pay a write per line.
        let tap = match rx.try_recv() {
            Ok(t) => t,
            Err(mpsc::error::TryRecvError::Empty) => {
                for s in sinks.iter_mut() {
                    s.flush();
                }
                match rx.blocking_recv() {
                    Some(t) => t,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match tap {
            Tap::Open {
                id,
                client,
                server,
                ts,
            } => {
                let mut c = analyzer.open(client.to_string(), server.to_string(), ts);
                let text = emit(&mut c, &mut sinks, rec);
                if let Some(r) = recording.as_mut() {
                    r.open(id, client, server, ts, &text);
                }
                conns.insert(id, c);
            }
            Tap::Connected {
                id,
                local,
                upstream,
                ts,
            } => {
                if let Some(r) = recording.as_mut() {
                    r.connected(id, local, upstream, ts);
                }
            }
            Tap::Data { id, dir, bytes, ts } => {
                if let Some(c) = conns.get_mut(&id) {
                    analyzer.handle_input(c, dir, &bytes, ts);
                    let mut text = emit(c, &mut sinks, rec);
                    if let Some(mut note) = pending_notes.remove(&id) {
                        if !text.is_empty() {
                            note.push('\n');
                            note.push_str(&text);
                        }
                        text = note;
                    }
                    if let Some(r) = recording.as_mut() {
                        r.data(id, dir, &bytes, ts, &text);
                    }
                }
            }
            Tap::Withheld { id, dir, bytes, ts } => {
                let mut note = pending_notes.remove(&id).unwrap_or_default();
                if dir == Direction::ClientToServer {
                    // The client did send them: they are on the client's leg of the recording,
                    // so the live analysis (of that leg) sees them too, as `analyze` will.
                    if let Some(c) = conns.get_mut(&id) {
                        analyzer.handle_input(c, dir, &bytes, ts);
                        let text = emit(c, &mut sinks, rec);
                        if !text.is_empty() {
                            if !note.is_empty() {
                                note.push('\n');
                            }
                            note.push_str(&text);
                        }
                    }
                }
                if let Some(r) = recording.as_mut() {
                    r.withheld(id, dir, &bytes, ts, &note);
                }
            }
            Tap::Lost { id, dir, bytes, ts } => {
                if let Some(c) = conns.get_mut(&id) {
                    analyzer.handle_gap(c, dir, bytes, ts);
                    emit(c, &mut sinks, false);
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
                    emit(c, &mut sinks, false);
                }
            }
            Tap::FaultInjected {
                id,
                dir,
                fault,
                detail,
                ts,
            } => {
                if let Some(c) = conns.get(&id) {
                    let e = Event {
                        ts,
                        conn: c.id().into(),
                        dir,
                        kind: uatap_analysis::EventKind::FaultInjected {
                            fault: fault.to_string(),
                            detail,
                        },
                    };
                    for s in sinks.iter_mut() {
                        s.event(&e);
                    }
                    if rec {
                        // Goes into the recording with the next bytes of the connection.
                        let note = pending_notes.entry(id).or_default();
                        if !note.is_empty() {
                            note.push('\n');
                        }
                        note.push_str("uatap: ");
                        note.push_str(&e.to_text());
                    }
                }
            }
            Tap::Close { id, by, reason, ts } => {
                pending_notes.remove(&id);
                if let Some(mut c) = conns.remove(&id) {
                    analyzer.handle_close(&mut c, by, reason, ts);
                    let text = emit(&mut c, &mut sinks, rec);
                    if let Some(r) = recording.as_mut() {
                        r.close(id, by, reason, ts, &text);
                    }
                }
            }
        }
    }
    // Shutting down: close what is still open so summaries and recordings are complete.
    let ts = now();
    for (id, mut c) in conns.drain() {
        analyzer.handle_close(&mut c, ClosedBy::Proxy, CloseReason::Error, ts);
        let text = emit(&mut c, &mut sinks, rec);
        if let Some(r) = recording.as_mut() {
            r.close(id, ClosedBy::Proxy, CloseReason::Fin, ts, &text);
        }
    }
    if let Some(r) = recording {
        r.finish();
    }
    for s in sinks.iter_mut() {
        s.flush();
    }
    sinks
}
