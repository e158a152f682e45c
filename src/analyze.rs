//! `uatap analyze`: reads a capture, finds the OPC UA connections on any port, and runs the
//! same per-connection analysis as the live proxy over them.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use uatap_analysis::{
    Analyzer, CloseReason, ClosedBy, Connection, Direction, Event, Options, Timestamp,
};
use uatap_codec::tcp::frame;
use uatap_crypto::passive::KeyStore;
use uatap_recorder::{self as recorder, StreamEvent, StreamReader};

/// Options of `uatap analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The capture file (pcap or pcapng).
    #[arg(required_unless_present = "interface")]
    pub file: Option<PathBuf>,
    /// Capture live from this network interface instead of reading a file (a SPAN/mirror port
    /// or the gateway's own NIC; Linux, needs root or CAP_NET_RAW).
    #[arg(short = 'i', long, value_name = "IFACE", conflicts_with = "file")]
    pub interface: Option<String>,
    /// With -i: only TCP traffic from or to this port (the OPC UA server's).
    #[arg(
        long,
        value_name = "N",
        requires = "interface",
        conflicts_with = "file"
    )]
    pub port: Option<u16>,
    /// With -i: stop after this many seconds (default: at Ctrl-C).
    #[arg(
        long,
        value_name = "SECS",
        requires = "interface",
        conflicts_with = "file",
        value_parser = parse_seconds
    )]
    pub duration: Option<Duration>,
    /// Also print one `message` event per OPC UA message.
    #[arg(long)]
    pub messages: bool,
    /// Write JSON Lines (the event contract) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only connections whose id (`client ip:port->server ip:port`) contains this text.
    #[arg(long, value_name = "TEXT")]
    pub conn: Option<String>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-11-23T19:31:57Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// Only events before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// Print each connection as a readable timeline (channel, session, subscriptions, publish
    /// cadence, breaks, recovery steps, the verdict in one sentence) instead of the events.
    #[arg(long, conflicts_with = "json")]
    pub timeline: bool,
    /// Also write a self-contained HTML report: the timelines and a chart of publish sequence
    /// numbers over time per subscription, gaps marked.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// When the capture holds both legs of a proxy or relay, which to report.
    #[arg(long, value_enum, default_value_t = Leg::Client)]
    pub leg: Leg,
    #[command(flatten)]
    pub keys: crate::keys::KeyArgs,
}

/// Which leg of a proxied connection to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Leg {
    /// The client's side (what the OPC UA client saw).
    Client,
    /// The server's side (what the OPC UA server saw).
    Server,
    /// Both legs, as separate connections.
    Both,
}

/// What to analyse and report.
#[derive(Debug, Clone)]
pub struct Config {
    /// Analysis options.
    pub options: Options,
    /// Leg choice for proxied connections.
    pub leg: Leg,
    /// Connection id filter.
    pub conn: Option<String>,
    /// Earliest event time.
    pub from: Option<Timestamp>,
    /// Latest event time (exclusive).
    pub until: Option<Timestamp>,
    /// Private keys to read secured channels with.
    pub keys: KeyStore,
}

impl Config {
    /// Every event of every connection, client legs of proxied pairs.
    pub fn new(options: Options) -> Self {
        Config {
            options,
            leg: Leg::Client,
            conn: None,
            from: None,
            until: None,
            keys: KeyStore::default(),
        }
    }

    fn keeps(&self, e: &Event) -> bool {
        self.conn.as_deref().is_none_or(|c| e.conn.contains(c))
            && self.from.is_none_or(|f| e.ts >= f)
            && self.until.is_none_or(|u| e.ts < u)
    }
}

/// Parses an RFC 3339 UTC time such as `2026-11-23T19:31:57.5Z` (or with `+00:00`).
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    let bad = || format!("not an RFC 3339 UTC time: {s} (e.g. 2026-11-23T19:31:57Z)");
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .ok_or_else(bad)?;
    let (date, time) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().map_err(|_| bad()));
    let (y, m, dd) = (
        d.next().ok_or_else(bad)??,
        d.next().ok_or_else(bad)??,
        d.next().ok_or_else(bad)??,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().map_err(|_| bad()));
    let (hh, mm, ss) = (
        t.next().ok_or_else(bad)??,
        t.next().ok_or_else(bad)??,
        t.next().ok_or_else(bad)??,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&dd) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        digits.parse().map_err(|_| bad())?
    };
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(Timestamp::from_unix_micros(
        ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros,
    ))
}

/// A TCP connection of the capture, before and after we know it carries OPC UA.
enum Tracked {
    /// Open seen, not yet known to be OPC UA; bytes that did not start with a UA header are
    /// kept (bounded) in case the capture started mid-stream.
    Pending {
        client: std::net::SocketAddr,
        server: std::net::SocketAddr,
        ts: Timestamp,
        early: Vec<(recorder::Direction, Vec<u8>)>,
        /// Bytes sent but not in the capture (packets cut by a snap length).
        uncaptured: u64,
    },
    /// OPC UA; `swapped` when the recorder's guessed client is really the server.
    Ua(Box<UaConn>),
    /// Not OPC UA: ignored.
    Other,
}

/// An OPC UA connection and what tells whether it is one leg of a proxied pair.
struct UaConn {
    conn: Connection,
    swapped: bool,
    /// The client's first bytes (HEL and first OPN): a proxy forwards them unchanged, so two
    /// connections that start with the same ones are the two legs of one proxied connection.
    fingerprint: Vec<u8>,
    /// Fingerprint complete and compared.
    fingerprinted: bool,
    /// Leg decision made (shown or not), so events flow instead of being held.
    decided: bool,
    /// Report this connection's events.
    shown: bool,
    /// Events held until the leg decision.
    held: Vec<Event>,
    /// The hidden server leg of a proxied pair (with `--leg client`): its bytes are no longer
    /// analysed, so that its copy of the session does not take the place of the client leg's
    /// (a reconnect would then be followed on neither leg).
    muted: bool,
}

/// Bytes of the client stream that make up the fingerprint: the HEL and the first OPN chunk.
fn fingerprint_complete(fp: &[u8]) -> bool {
    let mut rest = fp;
    for _ in 0..2 {
        match frame(rest, None) {
            Ok(uatap_codec::tcp::Frame::Complete { header }) => {
                rest = rest.get(header.message_size as usize..).unwrap_or(&[]);
            }
            Ok(_) => return false,
            // Not HEL+OPN: decide on what there is.
            Err(_) => return true,
        }
    }
    true
}

const MAX_FINGERPRINT: usize = 64 * 1024;

/// Bytes kept per connection while looking for OPC UA in a capture that starts mid-stream.
const MAX_EARLY_BYTES: usize = 256 * 1024;

/// In a stream met mid-way, finds two consecutive valid UA secure-conversation chunks; returns
/// whether they were sent by the server (a response or unknown type: `true`), or `None` when
/// no UA framing is found.
fn mid_stream_side(stream: &[u8]) -> Option<bool> {
    use uatap_codec::secure::{summarize_chunk, Protection};
    use uatap_codec::tcp::Frame;
    let max = Some(16u32 << 20);
    for pos in 0..stream.len() {
        let rest = stream.get(pos..).unwrap_or(&[]);
        let Ok(Frame::Complete { header }) = frame(rest, max) else {
            continue;
        };
        if !header.message_type.is_secure_conversation() {
            continue;
        }
        let next = rest.get(header.message_size as usize..).unwrap_or(&[]);
        let next_ok = match frame(next, max) {
            Ok(Frame::Complete { header: h }) => h.message_type.is_secure_conversation(),
            Ok(Frame::Incomplete { .. }) => !next.is_empty(),
            Err(_) => false,
        };
        if !next_ok {
            continue;
        }
        let type_id = summarize_chunk(rest, Protection::None)
            .ok()
            .and_then(|c| c.type_id);
        return Some(match type_id {
            Some(id) if uatap_codec::ids::service_name(id).is_some() => {
                !uatap_codec::ids::is_request(id)
            }
            _ => true,
        });
    }
    None
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
    let config = Config {
        options: Options {
            messages: args.messages,
            stall_after: Some(uatap_analysis::DEFAULT_STALL_AFTER),
        },
        leg: args.leg,
        conn: args.conn.clone(),
        from: args.from,
        until: args.until,
        keys: args.keys.load()?,
    };
    if let Some(interface) = &args.interface {
        return run_live(args, interface, &config);
    }
    let file = args
        .file
        .as_deref()
        .context("name a capture file, or an interface with -i")?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut write_error: Option<io::Error> = None;
    let mut line = String::with_capacity(1024);
    let collect = args.timeline || args.html.is_some();
    let mut collected = Vec::new();
    let report = analyze_file(file, &config, |e| {
        if collect {
            collected.push(e.to_json());
        }
        if write_error.is_none() && !args.timeline {
            if let Err(err) = write_event(&mut out, &mut line, e, args.json) {
                write_error = Some(err);
            }
        }
    })?;
    if collect {
        let view = crate::report::build(&collected);
        if args.timeline {
            if let Err(e) = out.write_all(crate::report::text(&view).as_bytes()) {
                write_error.get_or_insert(e);
            }
        }
        if let Some(path) = &args.html {
            let title = format!("uatap report: {}", file.display());
            std::fs::write(path, crate::report::html(&view, &title))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("uatap: report written to {}", path.display());
        }
    }
    if let Err(e) = out.flush() {
        write_error.get_or_insert(e);
    }
    if let Some(e) = write_error {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    for note in &report.notes {
        eprintln!("uatap: {note}");
    }
    if let Some(e) = report.damage {
        // Everything read before the damage was analysed and printed; say what stopped us.
        eprintln!(
            "uatap: {}: {e}; the events above cover the capture up to that point",
            file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What an analysis run found besides its events.
#[derive(Debug, Default)]
pub struct Report {
    /// The file was read up to a damaged or truncated place.
    pub damage: Option<recorder::RecorderError>,
    /// Lines for the person: ports decoded, proxy legs paired.
    pub notes: Vec<String>,
}

/// Analyses a capture file with default settings and hands every event to `sink`, in order.
///
/// Returns `Err` when the file cannot be read at all, and `Ok(Some(damage))` when it was read
/// up to a damaged or truncated place (everything before it was analysed).
pub fn for_each_event(
    file: &Path,
    options: Options,
    sink: impl FnMut(&Event),
) -> anyhow::Result<Option<recorder::RecorderError>> {
    Ok(analyze_file(file, &Config::new(options), sink)?.damage)
}

/// Analyses a capture file and hands every event that passes the filters to `sink`, in order.
pub fn analyze_file(
    file: &Path,
    config: &Config,
    mut sink: impl FnMut(&Event),
) -> anyhow::Result<Report> {
    let mut reader =
        StreamReader::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut analysis = StreamAnalysis::new(config);
    let mut out = |e: &Event| {
        if config.keeps(e) {
            sink(e)
        }
    };
    let result = reader.for_each_event(|ev| analysis.handle(ev, &mut out));
    Ok(Report {
        damage: result.err(),
        notes: analysis.finish(&mut out),
    })
}

/// Drains a connection's events: held until its leg is known, then shown or dropped.
fn emit(u: &mut UaConn, out: &mut dyn FnMut(&Event)) {
    if u.decided && !u.held.is_empty() {
        for e in std::mem::take(&mut u.held) {
            if u.shown {
                out(&e);
            }
        }
    }
    while let Some(e) = u.conn.poll_event() {
        if !u.decided {
            u.held.push(e);
        } else if u.shown {
            out(&e);
        }
    }
}

/// Hashes connection numbers cheaply (they are small sequential integers, not attacker-chosen
/// keys): the connection map is consulted for every packet.
#[derive(Default)]
struct ConnIdHasher(u64);

impl std::hash::Hasher for ConnIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ConnMap<V> = HashMap<recorder::ConnId, V, std::hash::BuildHasherDefault<ConnIdHasher>>;

/// The OPC UA analysis of a capture's TCP streams, fed one stream event at a time: a file or
/// a live interface drive it the same way.
pub struct StreamAnalysis<'c> {
    config: &'c Config,
    conns: ConnMap<Tracked>,
    /// Opening bytes -> the first connection that had them, and whether a second leg followed.
    fingerprints: HashMap<Vec<u8>, (String, bool)>,
    first_legs: HashMap<recorder::ConnId, Vec<u8>>,
    ports: std::collections::BTreeMap<u16, u64>,
    notes: Vec<String>,
    analyzer: Analyzer,
    /// Time of the last stream event: when the analysis ends.
    last_ts: Option<Timestamp>,
    /// Connections that ended with bytes sent but none captured, and those bytes.
    payloadless: (u64, u64),
}

impl<'c> StreamAnalysis<'c> {
    /// A new analysis with the given settings.
    pub fn new(config: &'c Config) -> Self {
        StreamAnalysis {
            config,
            conns: ConnMap::default(),
            fingerprints: HashMap::new(),
            first_legs: HashMap::new(),
            ports: Default::default(),
            notes: Vec::new(),
            payloadless: (0, 0),
            analyzer: {
                let mut a = Analyzer::new(config.options);
                a.set_keys(config.keys.clone());
                a
            },
            last_ts: None,
        }
    }

    /// One event of the TCP reassembly; the resulting OPC UA events go to `out`.
    pub fn handle(&mut self, ev: StreamEvent<'_>, out: &mut dyn FnMut(&Event)) {
        let at = match &ev {
            StreamEvent::Open { ts: t, .. }
            | StreamEvent::Data { ts: t, .. }
            | StreamEvent::Gap { ts: t, .. }
            | StreamEvent::Close { ts: t, .. } => Some(ts(*t)),
            StreamEvent::Fin { .. } => None,
        };
        if at.is_some() {
            self.last_ts = at;
        }
        match ev {
            StreamEvent::Open {
                conn,
                client,
                server,
                ts: t,
                ..
            } => {
                self.conns.insert(
                    conn,
                    Tracked::Pending {
                        client,
                        server,
                        ts: ts(t),
                        early: Vec::new(),
                        uncaptured: 0,
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
                let entry = self.conns.entry(conn).or_insert(Tracked::Other);
                let mut replay = Vec::new();
                if let Tracked::Pending {
                    client,
                    server,
                    ts: opened,
                    early,
                    ..
                } = entry
                {
                    // Whoever sends HEL is the client, whoever sends ACK or RHE the server.
                    let first = bytes.get(..3).unwrap_or(&[]);
                    let opening = matches!(first, b"HEL" | b"ACK" | b"RHE");
                    let mut decision =
                        (early.is_empty() && opening && looks_like_ua(&bytes)).then(|| match dir {
                            recorder::Direction::AToB => first != b"HEL",
                            recorder::Direction::BToA => first == b"HEL",
                        });
                    if decision.is_none() {
                        // Mid-stream: look for a run of valid UA chunks in what this direction
                        // sent so far; a response type id tells that it is the server's side.
                        let mut stream: Vec<u8> = early
                            .iter()
                            .filter(|(d, _)| *d == dir)
                            .flat_map(|(_, b)| b.iter().copied())
                            .collect();
                        stream.extend_from_slice(&bytes);
                        decision = mid_stream_side(&stream)
                            .map(|is_server| is_server == (dir == recorder::Direction::AToB));
                    }
                    match decision {
                        Some(swapped) => {
                            let (c, s) = if swapped {
                                (*server, *client)
                            } else {
                                (*client, *server)
                            };
                            *self.ports.entry(s.port()).or_default() += 1;
                            replay = std::mem::take(early);
                            *entry = Tracked::Ua(Box::new(UaConn {
                                conn: self.analyzer.open(c.to_string(), s.to_string(), *opened),
                                swapped,
                                fingerprint: Vec::new(),
                                fingerprinted: self.config.leg == Leg::Both,
                                decided: self.config.leg == Leg::Both,
                                shown: true,
                                held: Vec::new(),
                                muted: false,
                            }));
                        }
                        None => {
                            let held: usize = early.iter().map(|(_, b)| b.len()).sum();
                            if held.saturating_add(bytes.len()) > MAX_EARLY_BYTES {
                                *entry = Tracked::Other;
                            } else {
                                early.push((dir, bytes.to_vec()));
                            }
                        }
                    }
                }
                if let Tracked::Ua(u) = entry {
                    for (d, b) in replay {
                        let d = direction(d, u.swapped);
                        self.analyzer.handle_input(&mut u.conn, d, &b, ts(t));
                    }
                }
                if let Tracked::Ua(u) = entry {
                    let d = direction(dir, u.swapped);
                    if !u.fingerprinted && d == Direction::ClientToServer {
                        let room = MAX_FINGERPRINT.saturating_sub(u.fingerprint.len());
                        u.fingerprint
                            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or(&[]));
                        if fingerprint_complete(&u.fingerprint) || room <= bytes.len() {
                            u.decided = true;
                            u.fingerprinted = true;
                            match self.fingerprints.get_mut(&u.fingerprint) {
                                Some((first_id, paired)) => {
                                    // The later connection with the same opening is the proxy's
                                    // leg toward the server.
                                    *paired = true;
                                    u.shown = self.config.leg != Leg::Client;
                                    u.muted = self.config.leg == Leg::Client;
                                    self.notes.push(format!(
                                    "{} and {} carry the same bytes: the two legs of one proxied connection; showing the {} leg (--leg)",
                                    first_id,
                                    u.conn.id(),
                                    match self.config.leg {
                                        Leg::Client => "client",
                                        Leg::Server => "server",
                                        Leg::Both => "client and the server",
                                    }
                                ));
                                }
                                None => {
                                    if self.config.leg == Leg::Server {
                                        // Whether a server leg follows is known only later: hold
                                        // this one's events until it ends.
                                        u.decided = false;
                                    }
                                    self.first_legs.insert(conn, u.fingerprint.clone());
                                    self.fingerprints.insert(
                                        std::mem::take(&mut u.fingerprint),
                                        (u.conn.id().to_string(), false),
                                    );
                                }
                            }
                            u.fingerprint = Vec::new();
                        }
                    }
                    if !u.muted {
                        self.analyzer.handle_input(&mut u.conn, d, &bytes, ts(t));
                    }
                    emit(u, out);
                }
            }
            StreamEvent::Gap {
                conn,
                dir,
                ts: t,
                missing_bytes,
                ..
            } => {
                if let Some(Tracked::Pending { uncaptured, .. }) = self.conns.get_mut(&conn) {
                    *uncaptured = uncaptured.saturating_add(missing_bytes);
                }
                if let Some(Tracked::Ua(u)) = self.conns.get_mut(&conn).filter(|u| match u {
                    Tracked::Ua(u) => !u.muted,
                    _ => true,
                }) {
                    let d = direction(dir, u.swapped);
                    self.analyzer
                        .handle_gap(&mut u.conn, d, missing_bytes, ts(t));
                    emit(u, out);
                }
            }
            StreamEvent::Fin { .. } => {}
            StreamEvent::Close {
                conn,
                ts: t,
                by,
                reason,
            } => {
                let tracked = self.conns.remove(&conn);
                if let Some(Tracked::Pending {
                    early, uncaptured, ..
                }) = &tracked
                {
                    if early.is_empty() && *uncaptured > 0 {
                        self.payloadless.0 += 1;
                        self.payloadless.1 = self.payloadless.1.saturating_add(*uncaptured);
                    }
                }
                if let Some(Tracked::Ua(mut u)) = tracked {
                    let by = match by.map(|d| direction(d, u.swapped)) {
                        Some(Direction::ClientToServer) => ClosedBy::Client,
                        Some(Direction::ServerToClient) => ClosedBy::Server,
                        None => ClosedBy::Unknown,
                    };
                    let reason = match reason {
                        recorder::CloseReason::Fin => CloseReason::Fin,
                        recorder::CloseReason::Rst => CloseReason::Rst,
                        recorder::CloseReason::Reused => CloseReason::Error,
                        recorder::CloseReason::EndOfCapture => CloseReason::CaptureEnd,
                    };
                    if !u.muted {
                        self.analyzer.handle_close(&mut u.conn, by, reason, ts(t));
                    }
                    if let Some(fp) = self.first_legs.remove(&conn) {
                        // Legs of a proxy overlap in time: a later connection with the same
                        // opening (bytes replayed after a reconnect) is not a leg of this one.
                        let paired = self.fingerprints.remove(&fp).is_some_and(|(_, p)| p);
                        if !u.decided {
                            u.shown = !paired;
                        }
                    }
                    u.decided = true;
                    emit(&mut u, out);
                }
            }
        }
    }

    /// Ends the analysis: the verdicts only the end can give (sessions lost and never
    /// recovered) go to `out`; returns the notes for the person (ports decoded, legs paired).
    pub fn finish(mut self, out: &mut dyn FnMut(&Event)) -> Vec<String> {
        if let Some(now) = self.last_ts {
            self.analyzer.finish(now);
            while let Some(e) = self.analyzer.poll_event() {
                out(&e);
            }
        }
        let (conns, bytes) = self.payloadless;
        if conns > 0 {
            self.notes.push(format!(
                "{conns} TCP connection{} carried {bytes} bytes of which the capture holds none (packets cut by a snap length, or the server leg of `uatap proxy --record-payload-once`){}",
                if conns == 1 { "" } else { "s" },
                if self.config.leg == Leg::Client {
                    ""
                } else {
                    "; where a server leg has no bytes, its client leg is shown"
                }
            ));
        }
        if self.ports.is_empty() {
            self.notes
                .push("no OPC UA connection found in the capture".to_string());
        } else {
            let list: Vec<String> = self
                .ports
                .iter()
                .map(|(p, n)| format!("{p} ({n} connection{})", if *n == 1 { "" } else { "s" }))
                .collect();
            self.notes.push(format!(
                "decoded OPC UA on TCP port {}; to open it in Wireshark: {}",
                list.join(", "),
                self.ports
                    .keys()
                    .map(|p| format!("-d tcp.port=={p},opcua"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        self.notes
    }
}

fn direction(d: recorder::Direction, swapped: bool) -> Direction {
    match (d, swapped) {
        (recorder::Direction::AToB, false) | (recorder::Direction::BToA, true) => {
            Direction::ClientToServer
        }
        _ => Direction::ServerToClient,
    }
}

fn write_event(out: &mut impl Write, line: &mut String, e: &Event, json: bool) -> io::Result<()> {
    if json {
        line.clear();
        e.write_json(line);
        line.push('\n');
        out.write_all(line.as_bytes())
    } else {
        writeln!(out, "{}", e.to_text())
    }
}

/// Parses `--duration`: seconds, fractions allowed.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("not a positive number of seconds: {s}"))
}

/// `analyze -i`: the live capture, events printed and flushed one by one as they happen.
fn run_live(args: &Args, interface: &str, config: &Config) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    let mut write_error: Option<io::Error> = None;
    let mut line = String::new();
    let report = analyze_live(interface, args.port, args.duration, config, |e| {
        if write_error.is_none() {
            // Flushed per event so `| jq` and a person watching see it at once.
            if let Err(err) =
                write_event(&mut out, &mut line, e, args.json).and_then(|()| out.flush())
            {
                write_error = Some(err);
            }
        }
        write_error.is_none()
    })?;
    if let Some(e) = write_error {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    for note in &report.notes {
        eprintln!("uatap: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Captures live on `interface` (only TCP port `port` if given) until `duration` has passed,
/// Ctrl-C, or `sink` returns false (its output is gone), running the same analysis as on a
/// file; connections still open at the end are closed as at the end of a capture.
pub fn analyze_live(
    interface: &str,
    port: Option<u16>,
    duration: Option<Duration>,
    config: &Config,
    mut sink: impl FnMut(&Event) -> bool,
) -> anyhow::Result<Report> {
    use uatap_proxy::sniff;

    let mut live = sniff::LiveStreams::open(interface, port)
        .with_context(|| format!("cannot capture on {interface}"))?;
    sniff::catch_interrupts()?;
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    eprintln!(
        "uatap: capturing on {interface}{}{}, {}",
        if live.sniffer().promiscuous() {
            " (promiscuous)"
        } else {
            ""
        },
        port.map(|p| format!(", tcp port {p}")).unwrap_or_default(),
        match duration {
            Some(d) => format!("for {} s (Ctrl-C stops sooner)", d.as_secs_f64()),
            None => "until Ctrl-C".to_string(),
        }
    );
    let mut analysis = StreamAnalysis::new(config);
    // Whether the output still takes events; shared with the loop, which stops when it doesn't.
    let open = std::cell::Cell::new(true);
    let mut out = |e: &Event| {
        if open.get() && config.keeps(e) {
            open.set(sink(e));
        }
    };
    let mut stopped_by = "Ctrl-C (SIGINT/SIGTERM)";
    let mut error = None;
    loop {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => {
                    stopped_by = "--duration";
                    break;
                }
            },
            None => sniff::MAX_WAIT,
        };
        if sniff::interrupted() {
            break;
        }
        if !open.get() {
            stopped_by = "closed output";
            break;
        }
        if let Err(e) = live.step(wait, |ev| analysis.handle(ev, &mut out)) {
            // Report what was seen up to here, then the error.
            stopped_by = "an error";
            error = Some(e);
            break;
        }
    }
    let stats = live.finish(|ev| analysis.handle(ev, &mut out));
    let mut notes = analysis.finish(&mut out);
    notes.push(format!(
        "captured on {interface} for {:.1} s, stopped by {stopped_by}: {} frames, {} TCP segments{}",
        started.elapsed().as_secs_f64(),
        stats.frames,
        stats.tcp_segments,
        port.map(|p| format!(" on port {p}")).unwrap_or_default()
    ));
    if stats.kernel_drops > 0 {
        notes.push(format!(
            "the kernel dropped {} frames (uatap read too slowly): expect gaps in the analysis",
            stats.kernel_drops
        ));
    }
    if let Some(e) = error {
        for note in &notes {
            eprintln!("uatap: {note}");
        }
        return Err(anyhow::Error::new(e).context(format!("capture on {interface} failed")));
    }
    Ok(Report {
        damage: None,
        notes,
    })
}
