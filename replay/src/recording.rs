//! A recording read for replay: its OPC UA connections, each a list of whole messages in
//! capture order with their times, and how the connection ended.
//!
//! A recording made by `uatap proxy --record` holds both legs of every proxied connection (client
//! to uatap, uatap to server). Replay plays the client's leg: it shows what the client really
//! sent and really received, faults included (a message a fault kept from the client is on the
//! server's leg only). The server's leg of a pair is recognised by its opening bytes (HEL and
//! first OPN), which the proxy forwards unchanged, and kept apart in
//! [`Recording::server_legs`].

use std::collections::HashMap;
use std::path::Path;

use uatap_analysis::{Direction, Timestamp};
use uatap_codec::reassembly::{Reassembler, ReassemblyEvent};
use uatap_codec::services::{parse_message, Message};
use uatap_codec::tcp::MessageType;
use uatap_codec::Reader;
use uatap_recorder::{read_streams, StreamEvent};

/// Why a recording cannot be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// The file could not be read as a capture.
    #[error("cannot read the recording: {0}")]
    Read(#[from] uatap_recorder::RecorderError),
    /// No OPC UA connection in it.
    #[error("the recording holds no OPC UA connection")]
    NoConnection,
    /// `--conn` named no connection of the recording.
    #[error("no connection of the recording matches {0:?}")]
    NoSuchConnection(String),
}

/// One whole OPC UA message of a recorded connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedMessage {
    /// Client to server, or server to client.
    pub dir: Direction,
    /// Capture time of the bytes that completed it.
    pub at: Timestamp,
    /// HEL … CLO.
    pub message_type: MessageType,
    /// RequestId from the sequence header (secure conversation messages).
    pub request_id: Option<u32>,
    /// SecureChannelId of the last chunk.
    pub channel_id: Option<u32>,
    /// TokenId (MSG, CLO).
    pub token_id: Option<u32>,
    /// SequenceNumber of the last chunk.
    pub sequence_number: Option<u32>,
    /// Chunks it came in.
    pub chunks: u32,
    /// UA TCP messages (HEL, ACK, ERR): the whole message; secure conversation: the body
    /// (encoding NodeId first).
    pub payload: Vec<u8>,
    /// The body is encrypted and cannot be replayed.
    pub encrypted: bool,
    /// Byte offset of the message's first chunk in its direction's stream (for errors).
    pub offset: u64,
}

impl RecordedMessage {
    /// The decoded service body (secure conversation messages with a readable body).
    #[must_use]
    pub fn message(&self) -> Option<Message<'_>> {
        if self.encrypted || !self.message_type.is_secure_conversation() {
            return None;
        }
        parse_message(&mut Reader::new(&self.payload)).ok()
    }

    /// The numeric encoding id of the body, e.g. 826 for PublishRequest.
    #[must_use]
    pub fn type_id(&self) -> Option<u32> {
        if self.encrypted || !self.message_type.is_secure_conversation() {
            return None;
        }
        uatap_codec::services::summarize_message(&self.payload)
            .ok()
            .and_then(|s| s.type_id)
    }
}

/// Which side ended a recorded connection, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedEnd {
    /// When.
    pub at: Timestamp,
    /// The side that sent the first FIN or the RST (`None`: the capture ended first).
    pub by: Option<Direction>,
    /// A reset rather than a FIN.
    pub rst: bool,
    /// The client ended it on purpose: its last message was a CloseSecureChannel. Otherwise the
    /// close came from the server side (a server's close, a proxy's `cut`) or from a failure,
    /// whichever side's FIN the capture shows first (a recording synthesizes both FINs of a cut
    /// at the same instant).
    pub by_client: bool,
}

/// One recorded OPC UA connection (the client's leg).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedConnection {
    /// `client ip:port->server ip:port`, as the events name it.
    pub id: String,
    /// When it opened.
    pub opened: Timestamp,
    /// Its messages, in capture order.
    pub messages: Vec<RecordedMessage>,
    /// How it ended.
    pub end: Option<RecordedEnd>,
    /// SecurityPolicyUri of its first OPN when that is not None.
    pub secured_policy: Option<String>,
    /// Messages whose body is encrypted.
    pub encrypted_messages: usize,
}

/// A recording read for replay.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// The client legs (or the only leg) of its OPC UA connections, by opening time.
    pub connections: Vec<RecordedConnection>,
    /// Server legs of proxied pairs: what the server sent, including what a fault kept from the
    /// client (the recorded server's state, e.g. NotificationMessages for Republish).
    pub server_legs: Vec<RecordedConnection>,
    /// Things the person should know (secured channels replayed as None, capture damage).
    pub warnings: Vec<String>,
}

/// A connection being read.
struct Reading {
    id: String,
    opened: Timestamp,
    /// The recorder's A side is the server (it sent ACK first, or the B side sent HEL).
    swapped: Option<bool>,
    c2s: Reassembler,
    s2c: Reassembler,
    messages: Vec<RecordedMessage>,
    end: Option<RecordedEnd>,
    client: String,
    server: String,
}

fn ts(t: uatap_recorder::Timestamp) -> Timestamp {
    Timestamp::from_unix_micros(t.unix_nanos.div_euclid(1000))
}

impl Reading {
    fn direction(&self, d: uatap_recorder::Direction) -> Direction {
        let a_is_client = !self.swapped.unwrap_or(false);
        match (d, a_is_client) {
            (uatap_recorder::Direction::AToB, true) | (uatap_recorder::Direction::BToA, false) => {
                Direction::ClientToServer
            }
            _ => Direction::ServerToClient,
        }
    }

    fn feed(&mut self, dir: Direction, bytes: &[u8], at: Timestamp) {
        let r = match dir {
            Direction::ClientToServer => &mut self.c2s,
            Direction::ServerToClient => &mut self.s2c,
        };
        r.handle_input(bytes);
        while let Some(ev) = r.poll_event() {
            if let ReassemblyEvent::Message(m) = ev {
                self.messages.push(RecordedMessage {
                    dir,
                    at,
                    message_type: m.message_type,
                    request_id: m.sequence_header.map(|h| h.request_id),
                    channel_id: m.secure_channel_id,
                    token_id: m.token_id,
                    sequence_number: m.sequence_header.map(|h| h.sequence_number),
                    chunks: m.chunks,
                    payload: m.payload.to_vec(),
                    encrypted: m.encrypted,
                    offset: m.offset,
                });
            }
        }
    }

    fn finish(self) -> Option<RecordedConnection> {
        let first = self.messages.first()?;
        if first.message_type != MessageType::Hello {
            return None;
        }
        let secured_policy = self
            .messages
            .iter()
            .find(|m| m.message_type == MessageType::OpenSecureChannel)
            .and_then(|m| {
                if m.encrypted {
                    Some("a secured policy".to_string())
                } else {
                    None
                }
            });
        let encrypted_messages = self.messages.iter().filter(|m| m.encrypted).count();
        let (client, server) = if self.swapped.unwrap_or(false) {
            (self.server, self.client)
        } else {
            (self.client, self.server)
        };
        let _ = self.id;
        Some(RecordedConnection {
            id: format!("{client}->{server}"),
            opened: self.opened,
            messages: self.messages,
            end: self.end,
            secured_policy,
            encrypted_messages,
        })
    }

    /// The HEL and the first OPN the client sent: the same on both legs of a proxied pair.
    fn fingerprint(c: &RecordedConnection) -> Option<Vec<u8>> {
        let mut fp = Vec::new();
        let mut n: usize = 0;
        for m in c
            .messages
            .iter()
            .filter(|m| m.dir == Direction::ClientToServer)
            .take(2)
        {
            fp.extend_from_slice(&m.payload);
            n = n.saturating_add(1);
        }
        (n == 2).then_some(fp)
    }
}

impl Recording {
    /// Reads a pcap or pcapng file.
    pub fn load(path: impl AsRef<Path>) -> Result<Recording, RecordingError> {
        let (events, damage) = read_streams(path)?;
        let mut rec = Recording::from_events(events);
        if let Some(e) = damage {
            rec.warnings.push(format!(
                "the recording is damaged ({e}); replaying what was read before"
            ));
        }
        if rec.connections.is_empty() {
            return Err(RecordingError::NoConnection);
        }
        Ok(rec)
    }

    /// Builds a recording from TCP stream events (a capture already read).
    #[must_use]
    pub fn from_events(events: Vec<StreamEvent<'static>>) -> Recording {
        let mut open: HashMap<uatap_recorder::ConnId, Reading> = HashMap::new();
        let mut done = Vec::new();
        for ev in events {
            match ev {
                StreamEvent::Open {
                    conn,
                    client,
                    server,
                    ts: t,
                    ..
                } => {
                    open.insert(
                        conn,
                        Reading {
                            id: format!("{client}->{server}"),
                            opened: ts(t),
                            swapped: None,
                            c2s: Reassembler::default(),
                            s2c: Reassembler::default(),
                            messages: Vec::new(),
                            end: None,
                            client: client.to_string(),
                            server: server.to_string(),
                        },
                    );
                }
                StreamEvent::Data {
                    conn,
                    dir,
                    ts: t,
                    bytes,
                    ..
                } => {
                    if let Some(r) = open.get_mut(&conn) {
                        if r.swapped.is_none() {
                            let first = bytes.get(..3).unwrap_or(&[]);
                            let a_sent = dir == uatap_recorder::Direction::AToB;
                            r.swapped = Some(match first {
                                b"HEL" => !a_sent,
                                b"ACK" | b"ERR" | b"RHE" => a_sent,
                                _ => false,
                            });
                        }
                        let d = r.direction(dir);
                        r.feed(d, &bytes, ts(t));
                    }
                }
                StreamEvent::Gap { .. } | StreamEvent::Fin { .. } => {}
                StreamEvent::Close {
                    conn,
                    ts: t,
                    by,
                    reason,
                } => {
                    if let Some(mut r) = open.remove(&conn) {
                        let by = by.map(|d| r.direction(d));
                        let ended = reason != uatap_recorder::CloseReason::EndOfCapture;
                        let by_client = r
                            .messages
                            .iter()
                            .rev()
                            .find(|m| m.dir == Direction::ClientToServer)
                            .is_some_and(|m| m.message_type == MessageType::CloseSecureChannel);
                        r.end = ended.then_some(RecordedEnd {
                            at: ts(t),
                            by,
                            rst: reason == uatap_recorder::CloseReason::Rst,
                            by_client,
                        });
                        done.push(r);
                    }
                }
            }
        }
        done.extend(open.into_values());
        let mut conns: Vec<RecordedConnection> =
            done.into_iter().filter_map(Reading::finish).collect();
        conns.sort_by_key(|c| c.opened);
        let mut rec = Recording::default();
        let mut seen: HashMap<Vec<u8>, ()> = HashMap::new();
        for c in conns {
            match Reading::fingerprint(&c) {
                Some(fp) if seen.contains_key(&fp) => rec.server_legs.push(c),
                Some(fp) => {
                    seen.insert(fp, ());
                    rec.connections.push(c);
                }
                None => rec.connections.push(c),
            }
        }
        for c in &rec.connections {
            if let Some(p) = &c.secured_policy {
                rec.warnings.push(format!(
                    "{}: recorded with {p}; replayed as security None ({} message bodies are \
                     encrypted and cannot be replayed)",
                    c.id, c.encrypted_messages
                ));
            }
        }
        rec
    }

    /// The connections to replay: all of them, or those whose id contains `filter` (or whose
    /// 1-based number is `filter`).
    pub fn select(&self, filter: Option<&str>) -> Result<Vec<RecordedConnection>, RecordingError> {
        let Some(f) = filter else {
            return Ok(self.connections.clone());
        };
        let by_number = f
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.connections.get(i));
        let v: Vec<RecordedConnection> = match by_number {
            Some(c) => vec![c.clone()],
            None => self
                .connections
                .iter()
                .filter(|c| c.id.contains(f))
                .cloned()
                .collect(),
        };
        if v.is_empty() {
            return Err(RecordingError::NoSuchConnection(f.to_string()));
        }
        Ok(v)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("fixtures")
            .join(name)
    }

    #[test]
    fn proxied_recording_gives_the_client_legs_in_order() {
        let rec = Recording::load(fixture("reconnect-node-cut.pcapng")).unwrap();
        // One connection cut, one reconnect: two client legs, two server legs.
        assert_eq!(rec.connections.len(), 2, "{:?}", rec.warnings);
        assert_eq!(rec.server_legs.len(), 2);
        let first = &rec.connections[0];
        assert!(first.opened < rec.connections[1].opened);
        assert_eq!(first.messages[0].message_type, MessageType::Hello);
        assert_eq!(first.messages[0].dir, Direction::ClientToServer);
        assert_eq!(first.messages[1].message_type, MessageType::Acknowledge);
        // The proxy cut the client's leg: no CloseSecureChannel before the close.
        let end = first.end.unwrap();
        assert!(!end.by_client);
        assert!(!end.rst);
        assert!(rec.connections[1].end.unwrap().by_client);
        // The client's leg ends with PublishResponse seq=20.
        let last_seq = |c: &RecordedConnection| {
            c.messages
                .iter()
                .filter_map(|m| m.message())
                .filter_map(|m| match m.body {
                    uatap_codec::services::ServiceBody::PublishResponse(p) => {
                        Some(p.notification_message.sequence_number)
                    }
                    _ => None,
                })
                .max()
        };
        assert_eq!(last_seq(first), Some(20));
        assert!(last_seq(&rec.server_legs[0]).unwrap() >= 20);
        assert!(rec.warnings.is_empty());
    }

    #[test]
    fn secured_recording_says_so() {
        let rec = Recording::load(fixture("encrypt-b256sha256.pcapng")).unwrap();
        assert!(!rec.warnings.is_empty());
        assert!(rec.warnings[0].contains("replayed as security None"));
    }

    #[test]
    fn select_by_number_and_text() {
        let rec = Recording::load(fixture("reconnect-node-cut.pcapng")).unwrap();
        assert_eq!(rec.select(Some("2")).unwrap()[0], rec.connections[1]);
        assert!(rec.select(Some("nothing-like-this")).is_err());
        assert_eq!(rec.select(None).unwrap().len(), 2);
    }
}
