//! Prometheus metrics of the proxy: counters fed by the event stream (a [`MetricsSink`] in the
//! hub) and served in the text exposition format (version 0.0.4) on `GET /metrics` by a tiny
//! HTTP/1.1 responder.
//!
//! Labels carry only names from fixed tables (service names, status names, upstream error
//! codes, event kinds): never a user name, session id, node id or address.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `uatap_connections_total` | counter | client connections accepted (`conn_open`) |
//! | `uatap_connections_open` | gauge | connections open now (`conn_open` minus `conn_close`) |
//! | `uatap_bytes_total{dir="c2s\|s2c"}` | counter | bytes forwarded: each whole message when it is complete (`message.size`), and at `conn_close` whatever else the connection carried (partial messages, bytes that are not OPC UA, bytes the analysis lost), so that once a connection is closed its share equals `bytes_c2s` / `bytes_s2c` |
//! | `uatap_messages_total{service="..."}` | counter | whole messages by service (`PublishResponse`); messages without a service by their type (`HEL`, `ACK`, `ERR`, `OPN`, `CLO`, `RHE`), `encrypted` for a MSG whose body is encrypted, `unknown` for one that could not be decoded |
//! | `uatap_rejects_total{kind="...",status="..."}` | counter | refusals: `kind` is the event that told (`upstream_error`, `tcp_error`, `secure_channel`, `session`); `status` is the status name (`Bad_SecurityChecksFailed`), the code in hex when it has no name, or the upstream error (`refused`, `timeout`, `unreachable`, `reset`, `dns`) |
//! | `uatap_sequence_gaps_total` | counter | `sequence_gap` events |
//! | `uatap_republish_total` | counter | `republish` events |
//! | `uatap_decode_errors_total` | counter | `decode_error` events |
//! | `uatap_service_faults_total{normal="true\|false"}` | counter | `service_fault` events, by whether the fault is part of a normal sequence |
//! | `uatap_stalls_total{kind="message\|write"}` | counter | `message_stalled` and `write_blocked` events |
//! | `uatap_recording_stopped` | gauge | 1 once the recording stopped (`recording` event), else 0 |
//! | `uatap_recording_behind` | gauge | 1 while the recording is behind the traffic and writes the server's leg as headers only |
//! | `uatap_recording_headers_only_bytes_total` | counter | bytes of the server's leg recorded as headers only (their copy is on the client's leg) |

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uatap_analysis::{Direction, Event, EventKind};

use crate::access::{Access, Io};
use crate::hub::EventSink;

/// The port of `--metrics` when only an address or nothing is given (Prometheus' registry
/// lists 9464 for exporters of this kind).
pub const DEFAULT_PORT: u16 = 9464;

/// At most this many distinct `rejects_total` label sets; further ones are counted under
/// `status="other"` (status codes come from the traffic, so their number is not bounded).
const MAX_REJECT_SERIES: usize = 256;

/// Counters, one lock for all (the hub updates them per event, the responder reads them per
/// scrape: neither holds the lock for long).
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    connections_total: u64,
    connections_open: u64,
    /// c2s, s2c.
    bytes: [u64; 2],
    messages: BTreeMap<&'static str, u64>,
    rejects: BTreeMap<(&'static str, String), u64>,
    sequence_gaps: u64,
    republish: u64,
    decode_errors: u64,
    /// normal, abnormal.
    service_faults: [u64; 2],
    /// message_stalled, write_blocked.
    stalls: [u64; 2],
    recording_stopped: bool,
    /// Between a `recording` `behind` and its `caught_up`.
    recording_behind: bool,
    recording_headers_only_bytes: u64,
    /// Per open connection: the message bytes counted so far, c2s and s2c.
    conns: HashMap<Arc<str>, [u64; 2]>,
}

fn add(v: &mut u64, n: u64) {
    *v = v.saturating_add(n);
}

fn slot(d: Direction) -> usize {
    match d {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// The status label of a refusal: its name, or the code in hex, or `unknown`.
fn status_label(name: Option<&str>, hex: Option<&str>) -> String {
    name.or(hex).unwrap_or("unknown").to_string()
}

impl Counters {
    fn reject(&mut self, kind: &'static str, status: String) {
        let key = (kind, status);
        let key = if self.rejects.contains_key(&key) || self.rejects.len() < MAX_REJECT_SERIES {
            key
        } else {
            (kind, "other".to_string())
        };
        add(self.rejects.entry(key).or_default(), 1);
    }

    fn event(&mut self, e: &Event) {
        match &e.kind {
            EventKind::ConnOpen { .. } => {
                add(&mut self.connections_total, 1);
                add(&mut self.connections_open, 1);
                self.conns.insert(e.conn.clone(), [0, 0]);
            }
            EventKind::ConnClose {
                bytes_c2s,
                bytes_s2c,
                ..
            } => {
                self.connections_open = self.connections_open.saturating_sub(1);
                let counted = self.conns.remove(&e.conn).unwrap_or_default();
                let [c, s] = counted;
                let [bc, bs] = &mut self.bytes;
                add(bc, bytes_c2s.saturating_sub(c));
                add(bs, bytes_s2c.saturating_sub(s));
            }
            EventKind::Message(m) => {
                let service = match m.service {
                    Some(s) => s,
                    None if m.msg_type != "MSG" => m.msg_type,
                    None if m.encrypted => "encrypted",
                    None => "unknown",
                };
                add(self.messages.entry(service).or_default(), 1);
                if let Some(d) = e.dir {
                    let i = slot(d);
                    if let Some(v) = self.bytes.get_mut(i) {
                        add(v, m.size);
                    }
                    if let Some(v) = self.conns.get_mut(&e.conn).and_then(|c| c.get_mut(i)) {
                        add(v, m.size);
                    }
                }
            }
            EventKind::UpstreamError { error, .. } => {
                self.reject("upstream_error", (*error).to_string());
            }
            EventKind::TcpError { status, .. } => {
                let code = status.map(status_of);
                let (name, hex) = code.unwrap_or((None, None));
                self.reject("tcp_error", status_label(name, hex.as_deref()));
            }
            EventKind::SecureChannel(p) if p.outcome == "rejected" => {
                let label = status_label(p.status.status_name, p.status.status.as_deref());
                self.reject("secure_channel", label);
            }
            EventKind::Session(p) if p.outcome == "rejected" => {
                let label = status_label(p.status.status_name, p.status.status.as_deref());
                self.reject("session", label);
            }
            EventKind::SequenceGap(_) => add(&mut self.sequence_gaps, 1),
            EventKind::Republish(_) => add(&mut self.republish, 1),
            EventKind::DecodeError { .. } => add(&mut self.decode_errors, 1),
            EventKind::MessageStalled { .. } => add(&mut self.stalls[0], 1),
            EventKind::WriteBlocked { .. } => add(&mut self.stalls[1], 1),
            EventKind::Recording {
                action,
                headers_only_bytes,
                ..
            } => match *action {
                "behind" => self.recording_behind = true,
                "caught_up" => {
                    self.recording_behind = false;
                    add(&mut self.recording_headers_only_bytes, *headers_only_bytes);
                }
                _ => self.recording_stopped = true,
            },
            EventKind::ServiceFault(p) => {
                let [normal, abnormal] = &mut self.service_faults;
                add(if p.normal { normal } else { abnormal }, 1);
            }
            _ => {}
        }
    }
}

/// Name and hex of a status code, as the event stream writes them.
fn status_of(code: u32) -> (Option<&'static str>, Option<String>) {
    let s = uatap_analysis::payload::Status::of(code);
    (s.status_name, s.status)
}

/// Escapes a label value for the text format: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric without labels: its HELP and TYPE lines, then its value.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

impl Metrics {
    /// No counts yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // A panic elsewhere while holding the lock leaves plain counters: still readable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one event.
    pub fn event(&self, e: &Event) {
        self.lock().event(e);
    }

    /// The metrics in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let c = self.lock();
        let mut out = String::with_capacity(2048);
        header(
            &mut out,
            "uatap_connections_total",
            "counter",
            "Client connections accepted.",
        );
        let _ = writeln!(out, "uatap_connections_total {}", c.connections_total);
        header(
            &mut out,
            "uatap_connections_open",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(out, "uatap_connections_open {}", c.connections_open);
        header(
            &mut out,
            "uatap_bytes_total",
            "counter",
            "Bytes forwarded: whole messages as they complete, the rest when the connection closes.",
        );
        let [c2s, s2c] = c.bytes;
        let _ = writeln!(out, "uatap_bytes_total{{dir=\"c2s\"}} {c2s}");
        let _ = writeln!(out, "uatap_bytes_total{{dir=\"s2c\"}} {s2c}");
        header(
            &mut out,
            "uatap_messages_total",
            "counter",
            "Whole OPC UA messages by service (or message type when there is no service).",
        );
        for (service, n) in &c.messages {
            let _ = writeln!(
                out,
                "uatap_messages_total{{service=\"{}\"}} {n}",
                escape_label(service)
            );
        }
        header(
            &mut out,
            "uatap_rejects_total",
            "counter",
            "Refusals of a connection, channel or session, by the event that told and its status.",
        );
        for ((kind, status), n) in &c.rejects {
            let _ = writeln!(
                out,
                "uatap_rejects_total{{kind=\"{}\",status=\"{}\"}} {n}",
                escape_label(kind),
                escape_label(status)
            );
        }
        header(
            &mut out,
            "uatap_sequence_gaps_total",
            "counter",
            "NotificationMessage sequence numbers that skipped or repeated.",
        );
        let _ = writeln!(out, "uatap_sequence_gaps_total {}", c.sequence_gaps);
        header(
            &mut out,
            "uatap_republish_total",
            "counter",
            "Republish exchanges.",
        );
        let _ = writeln!(out, "uatap_republish_total {}", c.republish);
        header(
            &mut out,
            "uatap_decode_errors_total",
            "counter",
            "Bytes that could not be decoded (decode_error events).",
        );
        let _ = writeln!(out, "uatap_decode_errors_total {}", c.decode_errors);
        header(
            &mut out,
            "uatap_service_faults_total",
            "counter",
            "ServiceFault responses, by whether they are part of a normal sequence.",
        );
        let [normal, abnormal] = c.service_faults;
        let _ = writeln!(
            out,
            "uatap_service_faults_total{{normal=\"true\"}} {normal}"
        );
        let _ = writeln!(
            out,
            "uatap_service_faults_total{{normal=\"false\"}} {abnormal}"
        );
        header(
            &mut out,
            "uatap_stalls_total",
            "counter",
            "Peers that stalled: a chunk left incomplete (message), a write that waited (write).",
        );
        let [message, write] = c.stalls;
        let _ = writeln!(out, "uatap_stalls_total{{kind=\"message\"}} {message}");
        let _ = writeln!(out, "uatap_stalls_total{{kind=\"write\"}} {write}");
        single(
            &mut out,
            "uatap_recording_stopped",
            "gauge",
            "1 once the recording stopped (a full disk, a write error).",
            u8::from(c.recording_stopped),
        );
        single(
            &mut out,
            "uatap_recording_behind",
            "gauge",
            "1 while the recording is behind the traffic: the server's leg gets its packets' headers only.",
            u8::from(c.recording_behind),
        );
        single(
            &mut out,
            "uatap_recording_headers_only_bytes_total",
            "counter",
            "Bytes of the server's leg recorded with their packets' headers only (in full on the client's leg), counted when the recording caught up.",
            c.recording_headers_only_bytes,
        );
        out
    }
}

/// Feeds [`Metrics`] from the hub's events.
pub struct MetricsSink {
    metrics: Arc<Metrics>,
}

impl MetricsSink {
    /// Counts into `metrics` (shared with the responder).
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsSink { metrics }
    }
}

impl EventSink for MetricsSink {
    fn event(&mut self, e: &Event) {
        self.metrics.event(e);
    }
}

/// Parses the address of `--metrics`: `IP:PORT`, a bare `PORT` (on 127.0.0.1) or a bare `IP`
/// (on port 9464).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    Err(format!(
        "not a metrics address: {s:?} (expected IP:PORT such as 127.0.0.1:{DEFAULT_PORT}, or a port)"
    ))
}

/// Most requests answered at once; more are closed unanswered.
const MAX_CLIENTS: usize = 32;
/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers `GET /metrics` on `listener` until `shutdown` turns true (or its sender is gone),
/// over TLS and with a token when `access` says so.
pub async fn serve<P: Page>(
    listener: TcpListener,
    metrics: Arc<P>,
    access: Access,
    shutdown: watch::Receiver<bool>,
) {
    let token = access.clone();
    accept_loop(listener, MAX_CLIENTS, access, shutdown, move |s| {
        answer(s, metrics.clone(), token.clone())
    })
    .await;
}

/// What a `/metrics` endpoint serves: the proxy's counters, or the probe monitor's gauges.
pub trait Page: Send + Sync + 'static {
    /// The Prometheus text exposition.
    fn render(&self) -> String;
}

impl Page for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}

/// Accepts clients of a small HTTP endpoint until `shutdown` turns true, answering at most
/// `max_clients` at once (more are closed unanswered), after the TLS handshake when `access`
/// asks for TLS; shared by the metrics endpoint and the admin API.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max_clients: usize,
    access: Access,
    mut shutdown: watch::Receiver<bool>,
    answer: F,
) where
    F: Fn(Box<dyn Io>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let answer = Arc::new(answer);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => {
                    while tasks.try_join_next().is_some() {}
                    if tasks.len() < max_clients {
                        let (access, answer) = (access.clone(), answer.clone());
                        tasks.spawn(async move {
                            if let Some(s) = access.accept(s).await {
                                answer(s).await;
                            }
                        });
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            _ = shutdown.changed() => break,
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Reads the request head (up to the blank line), or `None` on timeout, EOF or excess.
async fn read_head(s: &mut Box<dyn Io>) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(buf.get(..n)?);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Some(());
            }
            if head.len() > MAX_REQUEST {
                return None;
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read).await.ok()??;
    Some(head)
}

/// The status line, extra headers and body for a request line.
fn respond<P: Page>(request_line: &str, metrics: &P) -> (&'static str, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\nContent-Type: text/plain; charset=utf-8\r\n",
            "only GET /metrics\n".to_string(),
        );
    }
    if path != "/metrics" {
        return (
            "404 Not Found",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "uatap serves GET /metrics\n".to_string(),
        );
    }
    (
        "200 OK",
        "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
        metrics.render(),
    )
}

async fn answer<P: Page>(mut s: Box<dyn Io>, metrics: Arc<P>, access: Access) {
    let Some(head) = read_head(&mut s).await else {
        return;
    };
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("");
    let (status, headers, body) = if access.authorized(&head) {
        respond(line, &*metrics)
    } else {
        (
            "401 Unauthorized",
            "WWW-Authenticate: Bearer realm=\"uatap\"\r\nContent-Type: text/plain; charset=utf-8\r\n",
            "a bearer token is needed (Authorization: Bearer TOKEN)\n".to_string(),
        )
    };
    let head_only = line.starts_with("HEAD ");
    let mut reply = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        reply.push_str(&body);
    }
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, s.write_all(reply.as_bytes())).await;
    let _ = s.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use uatap_analysis::payload::{ServiceFaultInfo, Status};
    use uatap_analysis::{CloseReason, ClosedBy, Timestamp};

    fn ev(conn: &Arc<str>, dir: Option<Direction>, kind: EventKind) -> Event {
        Event {
            ts: Timestamp::from_unix_micros(1),
            conn: conn.clone(),
            dir,
            kind,
        }
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("Bad_Timeout"), "Bad_Timeout");
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("9000"), Ok("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(parse_addr("::1"), Ok("[::1]:9464".parse().unwrap()));
        assert_eq!(
            parse_addr("10.0.0.1:80"),
            Ok("10.0.0.1:80".parse().unwrap())
        );
        assert!(parse_addr("metrics.example:80").is_err());
    }

    #[test]
    fn counts_and_renders() {
        let m = Metrics::new();
        let a: Arc<str> = Arc::from("1.1.1.1:1->2.2.2.2:2");
        m.event(&ev(
            &a,
            None,
            EventKind::ConnOpen {
                client: "1.1.1.1:1".into(),
                server: "2.2.2.2:2".into(),
            },
        ));
        m.event(&ev(
            &a,
            None,
            EventKind::UpstreamError {
                error: "refused",
                detail: "x".into(),
            },
        ));
        m.event(&ev(
            &a,
            Some(Direction::ServerToClient),
            EventKind::TcpError {
                status: Some(0x80AC_0000),
                reason: None,
            },
        ));
        m.event(&ev(
            &a,
            Some(Direction::ServerToClient),
            EventKind::ServiceFault(ServiceFaultInfo {
                request_id: None,
                request_handle: None,
                status: Status::of(0x8079_0000),
                for_service: None,
                normal: true,
                note: None,
            }),
        ));
        let text = m.render();
        assert!(text.contains("uatap_connections_open 1\n"), "{text}");
        assert!(
            text.contains("uatap_rejects_total{kind=\"upstream_error\",status=\"refused\"} 1\n")
        );
        assert!(text.contains(
            "uatap_rejects_total{kind=\"tcp_error\",status=\"Bad_ConnectionRejected\"} 1\n"
        ));
        assert!(text.contains("uatap_service_faults_total{normal=\"true\"} 1\n"));
        assert!(text.contains("uatap_recording_stopped 0\n"), "{text}");
        let recording = |action: &'static str, headers_only_bytes: u64| {
            ev(
                &Arc::from(""),
                None,
                EventKind::Recording {
                    action,
                    reason: String::new(),
                    path: "x.pcapng".into(),
                    bytes_written: 0,
                    headers_only_bytes,
                },
            )
        };
        m.event(&recording("behind", 0));
        let text = m.render();
        assert!(text.contains("uatap_recording_behind 1\n"), "{text}");
        assert!(
            text.contains("uatap_recording_stopped 0\n"),
            "behind is not stopped"
        );
        m.event(&recording("caught_up", 5000));
        m.event(&recording("behind", 0));
        m.event(&recording("caught_up", 700));
        let text = m.render();
        assert!(text.contains("uatap_recording_behind 0\n"), "{text}");
        assert!(text.contains("uatap_recording_headers_only_bytes_total 5700\n"));
        assert!(text.contains("uatap_recording_stopped 0\n"));
        m.event(&ev(
            &a,
            Some(Direction::ClientToServer),
            EventKind::WriteBlocked {
                blocked_ms: 10_000,
                pending_bytes: 5,
            },
        ));
        m.event(&ev(
            &Arc::from(""),
            None,
            EventKind::Recording {
                action: "stopped",
                reason: "disk full".into(),
                path: "x.pcapng".into(),
                bytes_written: 148,
                headers_only_bytes: 0,
            },
        ));
        let text = m.render();
        assert!(
            text.contains("uatap_stalls_total{kind=\"write\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("uatap_stalls_total{kind=\"message\"} 0\n"));
        assert!(text.contains("uatap_recording_stopped 1\n"));
        m.event(&ev(
            &a,
            None,
            EventKind::ConnClose {
                by: ClosedBy::Proxy,
                reason: CloseReason::Error,
                bytes_c2s: 10,
                bytes_s2c: 20,
            },
        ));
        let text = m.render();
        assert!(text.contains("uatap_connections_total 1\n"));
        assert!(text.contains("uatap_connections_open 0\n"));
        assert!(text.contains("uatap_bytes_total{dir=\"c2s\"} 10\n"));
        assert!(text.contains("uatap_bytes_total{dir=\"s2c\"} 20\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            v.parse::<u64>().unwrap();
        }
    }

    #[test]
    fn http_answers() {
        let m = Metrics::new();
        let (s, _, body) = respond("GET /metrics HTTP/1.1", &m);
        assert_eq!(s, "200 OK");
        assert!(body.contains("# TYPE uatap_connections_total counter"));
        assert_eq!(respond("GET /metrics?x=1 HTTP/1.1", &m).0, "200 OK");
        assert_eq!(respond("GET / HTTP/1.1", &m).0, "404 Not Found");
        assert_eq!(
            respond("POST /metrics HTTP/1.1", &m).0,
            "405 Method Not Allowed"
        );
    }
}
