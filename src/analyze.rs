//! `uatap analyze`: reads a capture, finds the OPC UA connections on any port, and runs the
//! same per-connection analysis as the live proxy over them.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use uatap_analysis::{
    Analyzer, CloseReason, ClosedBy, Connection, Direction, Event, Options, Timestamp,
};
use uatap_codec::tcp::frame;
use uatap_recorder::{self as recorder, StreamEvent, StreamReader};

/// Options of `uatap analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The capture file (pcap or pcapng).
    pub file: PathBuf,
    /// Also print one `message` event per OPC UA message.
    #[arg(long)]
    pub messages: bool,
    /// Write JSON Lines (the event contract) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A TCP connection of the capture, before and after we know it carries OPC UA.
enum Tracked {
    /// Open seen, no payload yet.
    Pending {
        client: std::net::SocketAddr,
        server: std::net::SocketAddr,
        ts: Timestamp,
    },
    /// OPC UA; `swapped` when the recorder's guessed client is really the server.
    Ua {
        conn: Box<Connection>,
        swapped: bool,
    },
    /// Not OPC UA: ignored.
    Other,
}

fn ts(t: recorder::Timestamp) -> Timestamp {
    Timestamp::from_unix_micros(t.unix_nanos.div_euclid(1000))
}

/// The first bytes of a stream look like a UA message header (or may still become one).
fn looks_like_ua(bytes: &[u8]) -> bool {
    frame(bytes, None).is_ok()
}

/// Runs the subcommand.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let options = Options {
        messages: args.messages,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut write_error: Option<io::Error> = None;
    let damage = for_each_event(&args.file, options, |e| {
        if write_error.is_none() {
            if let Err(err) = write_event(&mut out, e, args.json) {
                write_error = Some(err);
            }
        }
    })?;
    if let Err(e) = out.flush() {
        write_error.get_or_insert(e);
    }
    if let Some(e) = write_error {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    if let Some(e) = damage {
        // Everything read before the damage was analysed and printed; say what stopped us.
        eprintln!(
            "uatap: {}: {e}; the events above cover the capture up to that point",
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Analyses a capture file and hands every event to `sink`, in order.
///
/// Returns `Err` when the file cannot be read at all, and `Ok(Some(damage))` when it was read
/// up to a damaged or truncated place (everything before it was analysed).
pub fn for_each_event(
    file: &Path,
    options: Options,
    mut sink: impl FnMut(&Event),
) -> anyhow::Result<Option<recorder::RecorderError>> {
    let mut reader =
        StreamReader::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut conns: HashMap<recorder::ConnId, Tracked> = HashMap::new();
    let mut analyzer = Analyzer::new(options);
    let mut emit = |c: &mut Connection| {
        while let Some(e) = c.poll_event() {
            sink(&e);
        }
    };
    let result = reader.for_each_event(|ev| match ev {
        StreamEvent::Open {
            conn,
            client,
            server,
            ts: t,
            ..
        } => {
            conns.insert(
                conn,
                Tracked::Pending {
                    client,
                    server,
                    ts: ts(t),
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
            let entry = conns.entry(conn).or_insert(Tracked::Other);
            if let Tracked::Pending {
                client,
                server,
                ts: opened,
            } = entry
            {
                *entry = if looks_like_ua(&bytes) {
                    // Whoever sends HEL is the client, whoever sends ACK or RHE the server.
                    let first = bytes.get(..3).unwrap_or(&[]);
                    let swapped = match dir {
                        recorder::Direction::AToB => first == b"ACK" || first == b"RHE",
                        recorder::Direction::BToA => first == b"HEL",
                    };
                    let (c, s) = if swapped {
                        (*server, *client)
                    } else {
                        (*client, *server)
                    };
                    Tracked::Ua {
                        conn: Box::new(analyzer.open(c.to_string(), s.to_string(), *opened)),
                        swapped,
                    }
                } else {
                    Tracked::Other
                };
            }
            if let Tracked::Ua { conn: c, swapped } = entry {
                analyzer.handle_input(c, direction(dir, *swapped), &bytes, ts(t));
                emit(c);
            }
        }
        StreamEvent::Gap {
            conn,
            dir,
            ts: t,
            missing_bytes,
            ..
        } => {
            if let Some(Tracked::Ua { conn: c, swapped }) = conns.get_mut(&conn) {
                analyzer.handle_gap(c, direction(dir, *swapped), missing_bytes, ts(t));
                emit(c);
            }
        }
        StreamEvent::Fin { .. } => {}
        StreamEvent::Close {
            conn,
            ts: t,
            by,
            reason,
        } => {
            if let Some(Tracked::Ua {
                conn: mut c,
                swapped,
            }) = conns.remove(&conn)
            {
                let by = match by.map(|d| direction(d, swapped)) {
                    Some(Direction::ClientToServer) => ClosedBy::Client,
                    Some(Direction::ServerToClient) => ClosedBy::Server,
                    None => ClosedBy::Proxy,
                };
                let reason = match reason {
                    recorder::CloseReason::Fin => CloseReason::Fin,
                    recorder::CloseReason::Rst => CloseReason::Rst,
                    recorder::CloseReason::Reused | recorder::CloseReason::EndOfCapture => {
                        CloseReason::Error
                    }
                };
                analyzer.handle_close(&mut c, by, reason, ts(t));
                emit(&mut c);
            }
        }
    });
    Ok(result.err())
}

fn direction(d: recorder::Direction, swapped: bool) -> Direction {
    match (d, swapped) {
        (recorder::Direction::AToB, false) | (recorder::Direction::BToA, true) => {
            Direction::ClientToServer
        }
        _ => Direction::ServerToClient,
    }
}

fn write_event(out: &mut impl Write, e: &Event, json: bool) -> io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, &e.to_json())?;
        out.write_all(b"\n")
    } else {
        writeln!(out, "{}", e.to_text())
    }
}
