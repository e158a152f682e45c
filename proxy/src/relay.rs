//! The forwarding path: accept a client, dial the server, copy bytes both ways unchanged and at
//! once, mirror half-closes and resets, and tap a copy of every byte for the analysis.
//!
//! Nothing here waits for the analysis: a copy that does not fit in the tap channel is counted
//! as lost for the analysis (reported as a gap), never held back from the peer. Only opening,
//! closing, upstream errors and the reports of changed bytes (rare) are always delivered.
//!
//! Two options, off by default, go beyond copying:
//! - `rewrite_endpoint_urls`: the server→client direction is framed and the endpoint URLs of
//!   GetEndpoints, FindServers and CreateSession responses are rewritten to the address the
//!   client dialed (see [`crate::rewrite`]); every change is reported as `fault_injected`.
//! - `mirror_refusal`: when the server refuses a connection, the listening socket is closed
//!   until the server accepts again, so that new clients see the refusal themselves.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use uatap_analysis::{CloseReason, ClosedBy, Direction};

use crate::fault::{self, Faults};
use crate::hub::{now, Tap, TapBytes};
use crate::rewrite::{self, ClientHello, EndpointRewriter, HelloSniffer};
use crate::upstream::{classify_io_error, client_view, Upstream};

/// One listener: where clients connect and where their connections go.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to accept clients on.
    pub listen: SocketAddr,
    /// The server.
    pub upstream: Upstream,
    /// How long to wait for the server to accept.
    pub connect_timeout: Duration,
    /// Rewrite the endpoint URLs the server advertises to the address the client dialed
    /// (security None channels only). Changes bytes.
    pub rewrite_endpoint_urls: bool,
    /// When the server refuses a connection, stop accepting until it accepts again.
    pub mirror_refusal: bool,
    /// A write toward a peer that waits this long is reported (`write_blocked`).
    pub stall_after: Duration,
    /// This listener's place in the proxy's list (its interface in the recording).
    pub index: usize,
    /// The proxy records: each relay computes the TCP checksum sums of the bytes it read for
    /// the recording while they are in its cache ([`TapBytes::sum_for_recording`]).
    pub sum_for_recording: bool,
    /// The fault table, when faults can be injected (`--fault`, `--admin`); `None`: plain
    /// forwarding with no fault machinery at all.
    pub faults: Option<Arc<Faults>>,
    /// The man-in-the-middle mode (`--mitm`): uatap terminates secured channels on both legs.
    pub mitm: Option<Arc<crate::mitm::MitmShared>>,
}

/// How often a closed listener (`mirror_refusal`) checks whether the server accepts again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A connection's report that the server refused it; answered once the listener is closed.
type Refusal = oneshot::Sender<()>;

/// Counts connection numbers across listeners.
#[derive(Debug, Default)]
pub struct Ids(AtomicU64);

impl Ids {
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }
}

/// Accepts clients until `shutdown` turns true; each connection runs in its own task.
pub async fn run_listener(
    listener: TcpListener,
    config: ListenerConfig,
    tap: mpsc::Sender<Tap>,
    ids: Arc<Ids>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let config = Arc::new(config);
    if config.rewrite_endpoint_urls {
        eprintln!(
            "uatap: --rewrite-endpoint-urls: bytes WILL be changed on {}: the endpoint URLs in GetEndpoints, FindServers and CreateSession responses are rewritten to the address the client dialed (security None channels only); each rewrite is reported as fault_injected",
            config.listen
        );
    }
    let (refusals, mut refused) = mpsc::channel::<Refusal>(16);
    let mut listener = Some(listener);
    // A failed re-bind is said once, not every second.
    let mut rebind_failed = false;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        match &listener {
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    let (client, peer) = match accepted {
                        Ok(a) => a,
                        // Out of file descriptors and the like: keep serving the others.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let id = ids.next();
                    let refusals = config.mirror_refusal.then(|| refusals.clone());
                    tasks.spawn(proxy_connection(client, peer, config.clone(), tap.clone(), id, shutdown.clone(), refusals));
                }
                Some(done) = refused.recv() => {
                    // Closing the socket makes the kernel refuse new clients, as the server does.
                    listener = None;
                    let _ = done.send(());
                    eprintln!(
                        "uatap: {} refused a connection: the listener on {} is closed until it accepts again (--mirror-refusal; checked every {}s)",
                        config.upstream,
                        config.listen,
                        PROBE_INTERVAL.as_secs()
                    );
                }
                _ = shutdown.changed() => break,
            },
            None => tokio::select! {
                Some(done) = refused.recv() => { let _ = done.send(()); }
                _ = tokio::time::sleep(PROBE_INTERVAL) => {
                    if dial(&config).await.is_ok() {
                        match bind(config.listen) {
                            Ok(l) => {
                                listener = Some(l);
                                rebind_failed = false;
                                eprintln!(
                                    "uatap: {} accepts connections again: listening on {} again",
                                    config.upstream, config.listen
                                );
                            }
                            Err(e) if !rebind_failed => {
                                rebind_failed = true;
                                eprintln!(
                                    "uatap: {} accepts again but {} cannot be listened on again: {e}; retrying every {}s",
                                    config.upstream,
                                    config.listen,
                                    PROBE_INTERVAL.as_secs()
                                );
                            }
                            Err(_) => {}
                        }
                    }
                }
                _ = shutdown.changed() => break,
            },
        }
        while tasks.try_join_next().is_some() {}
    }
    // Let open connections end (they stop on the same signal).
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Listens on `addr` again (address reuse on, so a reopened listener does not wait for old
/// connections in TIME_WAIT).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Resolves the upstream, trying each address.
async fn dial(config: &ListenerConfig) -> Result<TcpStream, (&'static str, String)> {
    let target = (config.upstream.host.as_str(), config.upstream.port);
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(target).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return Err((
                "dns",
                format!("cannot resolve {}: {e}", config.upstream.host),
            ))
        }
    };
    let mut last = (
        "unreachable",
        format!("{} resolves to no address", config.upstream.host),
    );
    for addr in addrs {
        match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = (classify_io_error(&e), format!("connect to {addr}: {e}")),
            Err(_) => {
                last = (
                    "timeout",
                    format!(
                        "connect to {addr}: no answer within {:?}",
                        config.connect_timeout
                    ),
                )
            }
        }
    }
    Err(last)
}

/// Sends a reset instead of a FIN when the socket closes.
fn reset_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

async fn proxy_connection(
    client: TcpStream,
    peer: SocketAddr,
    config: Arc<ListenerConfig>,
    tap: mpsc::Sender<Tap>,
    id: u64,
    mut shutdown: watch::Receiver<bool>,
    refusals: Option<mpsc::Sender<Refusal>>,
) {
    let server_addr = client.local_addr().unwrap_or(config.listen);
    // Opening and closing are always delivered (awaited); only data copies may be dropped.
    let _ = tap
        .send(Tap::Open {
            id,
            listener: config.index,
            client: peer,
            server: server_addr,
            ts: now(),
        })
        .await;
    let kill = match &config.faults {
        Some(f) => {
            let kill = f.register(id, config.listen, peer);
            if let Some(fault) = f.refuse(id, config.listen) {
                f.report(
                    id,
                    None,
                    "refuse",
                    format!("fault #{fault}: connection accepted and closed at once, with no ERR (as a server at its connection limit does); the server was not dialed"),
                );
                drop(client);
                f.unregister(id);
                let _ = tap
                    .send(Tap::Close {
                        id,
                        by: ClosedBy::Proxy,
                        reason: CloseReason::Fault,
                        ts: now(),
                    })
                    .await;
                return;
            }
            Some(kill)
        }
        None => None,
    };
    let closed = relay_connection(
        client,
        &config,
        &tap,
        id,
        &mut shutdown,
        refusals,
        server_addr,
        kill,
    )
    .await;
    if let Some(f) = &config.faults {
        f.unregister(id);
    }
    if let Some((by, reason)) = closed {
        let _ = tap
            .send(Tap::Close {
                id,
                by,
                reason,
                ts: now(),
            })
            .await;
    }
}

/// Dials the server and relays until both directions end; returns who closed and how.
#[allow(clippy::too_many_arguments)]
async fn relay_connection(
    client: TcpStream,
    config: &Arc<ListenerConfig>,
    tap: &mpsc::Sender<Tap>,
    id: u64,
    shutdown: &mut watch::Receiver<bool>,
    refusals: Option<mpsc::Sender<Refusal>>,
    server_addr: SocketAddr,
    kill: Option<watch::Receiver<Option<fault::Kill>>>,
) -> Option<(ClosedBy, CloseReason)> {
    let upstream = match dial(config).await {
        Ok(s) => s,
        Err((error, detail)) => {
            let detail = match refusals {
                Some(refusals) if error == "refused" => {
                    // Close the listener before this client sees its reset, so that its next
                    // attempt is refused by the kernel.
                    let (done, closed) = oneshot::channel();
                    if refusals.send(done).await.is_ok() {
                        let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
                    }
                    format!(
                        "{detail}; the server refused the connection: uatap closed its listener on {} until the server accepts again (checked every {}s), so new clients get the refusal themselves (Ignition: Bad_ConnectionRejected); this client was accepted before the refusal was known and is reset (Bad_ConnectionClosed)",
                        config.listen,
                        PROBE_INTERVAL.as_secs()
                    )
                }
                _ => format!("{detail}; {}", client_view(error)),
            };
            let _ = tap
                .send(Tap::UpstreamError {
                    id,
                    error,
                    detail,
                    ts: now(),
                })
                .await;
            reset_on_close(&client);
            drop(client);
            return Some((ClosedBy::Proxy, CloseReason::Error));
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Some(shared) = &config.mitm {
        // The recording holds the client's leg only: the server's leg carries other bytes
        // (uatap's own channel), which are not tapped.
        return Some(
            mitm_relay(
                client,
                upstream,
                shared.clone(),
                server_addr,
                tap,
                id,
                shutdown,
                kill,
            )
            .await,
        );
    }
    if let (Ok(local), Ok(remote)) = (upstream.local_addr(), upstream.peer_addr()) {
        let _ = tap
            .send(Tap::Connected {
                id,
                local,
                upstream: remote,
                ts: now(),
            })
            .await;
    }
    let (c2s_filter, s2c_filter) = if config.rewrite_endpoint_urls {
        let hello = Arc::new(OnceLock::new());
        (
            Filter::Hello(HelloSniffer::default(), hello.clone()),
            Filter::Rewrite(Box::new(EndpointRewriter::new(
                hello,
                server_addr.to_string(),
            ))),
        )
    } else {
        (Filter::Copy, Filter::Copy)
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = upstream.into_split();
    type Pump = std::pin::Pin<Box<dyn std::future::Future<Output = End> + Send>>;
    let (c2s, s2c): (Pump, Pump) = match (kill, &config.faults) {
        (Some(kill), Some(faults)) => {
            let ctx = |dir| FaultCtx {
                faults: faults.clone(),
                listen: config.listen,
                id,
                dir,
                kill: kill.clone(),
                stall_after: config.stall_after,
            };
            (
                Box::pin(pump_faults(
                    cr,
                    sw,
                    tap.clone(),
                    ctx(Direction::ClientToServer),
                )),
                Box::pin(pump_faults(
                    sr,
                    cw,
                    tap.clone(),
                    ctx(Direction::ServerToClient),
                )),
            )
        }
        _ => (
            Box::pin(pump(
                cr,
                sw,
                Direction::ClientToServer,
                id,
                tap.clone(),
                c2s_filter,
                PumpOptions::of(config),
            )),
            Box::pin(pump(
                sr,
                cw,
                Direction::ServerToClient,
                id,
                tap.clone(),
                s2c_filter,
                PumpOptions::of(config),
            )),
        ),
    };
    let (mut c2s, mut s2c) = (c2s, s2c);
    let first = tokio::select! {
        e = &mut c2s => Some((Direction::ClientToServer, e)),
        e = &mut s2c => Some((Direction::ServerToClient, e)),
        _ = stopped(shutdown) => None,
    };
    let (by, reason) = match first {
        None => (ClosedBy::Proxy, CloseReason::Fin),
        Some((dir, end)) => {
            // The other direction may still carry data after a half-close: let it finish.
            match dir {
                Direction::ClientToServer => {
                    tokio::select! { _ = &mut s2c => {}, _ = stopped(shutdown) => {} }
                }
                Direction::ServerToClient => {
                    tokio::select! { _ = &mut c2s => {}, _ = stopped(shutdown) => {} }
                }
            }
            let by = match dir {
                Direction::ClientToServer => ClosedBy::Client,
                Direction::ServerToClient => ClosedBy::Server,
            };
            match end {
                End::Fin => (by, CloseReason::Fin),
                End::Reset => (by, CloseReason::Rst),
                End::WriteFailed => (by.other(), CloseReason::Rst),
                End::Killed => (ClosedBy::Proxy, CloseReason::Fault),
            }
        }
    };
    if reason == CloseReason::Rst && by == ClosedBy::Server {
        let _ = tap
            .send(Tap::UpstreamError {
                id,
                error: "reset",
                detail: format!("the server reset the connection; {}", client_view("reset")),
                ts: now(),
            })
            .await;
    }
    Some((by, reason))
}

/// Relays one connection through a MITM bridge: the client's bytes are tapped as they came,
/// the bytes written to the client as they went (the client's leg), both after the bridge has
/// registered their clear text for the analysis.
#[allow(clippy::too_many_arguments)]
async fn mitm_relay(
    client: TcpStream,
    upstream: TcpStream,
    shared: Arc<crate::mitm::MitmShared>,
    server_addr: SocketAddr,
    tap: &mpsc::Sender<Tap>,
    id: u64,
    shutdown: &mut watch::Receiver<bool>,
    mut kill: Option<watch::Receiver<Option<fault::Kill>>>,
) -> (ClosedBy, CloseReason) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bridge = crate::mitm::Bridge::new(shared, server_addr.to_string());
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = upstream.into_split();
    let mut cbuf = vec![0u8; 64 * 1024];
    let mut sbuf = vec![0u8; 64 * 1024];
    let mut notes_seen = 0usize;
    loop {
        let killed = async {
            match kill.as_mut() {
                Some(k) => loop {
                    if k.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if let Some(order) = k.borrow_and_update().clone() {
                        return order;
                    }
                },
                None => std::future::pending().await,
            }
        };
        let (dir, n) = tokio::select! {
            r = cr.read(&mut cbuf) => (Direction::ClientToServer, r),
            r = sr.read(&mut sbuf) => (Direction::ServerToClient, r),
            _ = stopped(shutdown) => return (ClosedBy::Proxy, CloseReason::Fin),
            order = killed => {
                // A timed cut or reset (`--fault`): both legs end at once.
                if order.reset {
                    reset_on_close(cw.as_ref());
                    reset_on_close(sw.as_ref());
                } else {
                    let _ = cw.shutdown().await;
                    let _ = sw.shutdown().await;
                }
                return (ClosedBy::Proxy, CloseReason::Fault);
            }
        };
        let by = match dir {
            Direction::ClientToServer => ClosedBy::Client,
            Direction::ServerToClient => ClosedBy::Server,
        };
        let n = match n {
            Ok(0) => return (by, CloseReason::Fin),
            Ok(n) => n,
            Err(_) => return (by, CloseReason::Rst),
        };
        match dir {
            Direction::ClientToServer => {
                let data = cbuf.get(..n).unwrap_or(&[]);
                bridge.client_bytes(data);
                if let Some(b) = TapBytes::copy_of(data) {
                    let _ = tap
                        .send(Tap::Data {
                            id,
                            dir,
                            bytes: b,
                            ts: now(),
                        })
                        .await;
                }
            }
            Direction::ServerToClient => bridge.server_bytes(sbuf.get(..n).unwrap_or(&[])),
        }
        for note in bridge.notes.iter().skip(notes_seen) {
            eprintln!("uatap: connection {id}: {note}");
        }
        notes_seen = bridge.notes.len();
        if !bridge.to_server.is_empty() {
            let out = std::mem::take(&mut bridge.to_server);
            if sw.write_all(&out).await.is_err() {
                return (ClosedBy::Server, CloseReason::Rst);
            }
        }
        if !bridge.to_client.is_empty() {
            let out = std::mem::take(&mut bridge.to_client);
            if let Some(b) = TapBytes::copy_of(&out) {
                let _ = tap
                    .send(Tap::Data {
                        id,
                        dir: Direction::ServerToClient,
                        bytes: b,
                        ts: now(),
                    })
                    .await;
            }
            if cw.write_all(&out).await.is_err() {
                return (ClosedBy::Client, CloseReason::Rst);
            }
        }
        if bridge.close {
            return (ClosedBy::Proxy, CloseReason::Fin);
        }
    }
}

/// Resolves when shutdown was requested.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            // The sender is gone: nobody can ask us to stop any more.
            std::future::pending::<()>().await;
        }
    }
}

trait Other {
    fn other(self) -> Self;
}

impl Other for ClosedBy {
    fn other(self) -> Self {
        match self {
            ClosedBy::Client => ClosedBy::Server,
            ClosedBy::Server => ClosedBy::Client,
            other => other,
        }
    }
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The sender closed its side (FIN); passed on as a half-close.
    Fin,
    /// Reading failed (reset); the other side is reset too.
    Reset,
    /// Writing to the receiver failed; the sender is reset.
    WriteFailed,
    /// A fault ended the connection.
    Killed,
}

/// What a direction does to the bytes besides copying them.
enum Filter {
    /// Nothing: a plain copy (the default).
    Copy,
    /// Copies unchanged, and reads the client's HEL for the rewriter of the other direction.
    Hello(HelloSniffer, Arc<OnceLock<ClientHello>>),
    /// Frames the server's stream and rewrites endpoint URLs (`--rewrite-endpoint-urls`).
    Rewrite(Box<EndpointRewriter>),
}

/// The listener's settings that one direction's plain relay ([`pump`]) follows.
#[derive(Clone, Copy)]
struct PumpOptions {
    /// A write that waits this long is reported (`write_blocked`).
    stall_after: Duration,
    /// Sum the bytes read for the recording ([`ListenerConfig::sum_for_recording`]).
    sum_for_recording: bool,
}

impl PumpOptions {
    fn of(config: &ListenerConfig) -> Self {
        PumpOptions {
            stall_after: config.stall_after,
            sum_for_recording: config.sum_for_recording,
        }
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    dir: Direction,
    id: u64,
    tap: mpsc::Sender<Tap>,
    mut filter: Filter,
    options: PumpOptions,
) -> End {
    let PumpOptions {
        stall_after,
        sum_for_recording,
    } = options;
    let mut rewritten = Vec::new();
    let mut notes = Vec::new();
    let mut lost: u64 = 0;
    loop {
        let data = match read_some(&mut from).await {
            Ok(b) if b.is_empty() => {
                if let Filter::Rewrite(r) = &mut filter {
                    // An incomplete chunk still held goes out as it is.
                    rewritten.clear();
                    r.finish(&mut rewritten);
                    let _ = to.write_all(&rewritten).await;
                    forwarded(&tap, id, dir, &rewritten, &mut lost);
                }
                // Mirror the half-close.
                let _ = to.shutdown().await;
                return End::Fin;
            }
            Ok(b) => b,
            Err(_) => {
                if let Filter::Rewrite(r) = &mut filter {
                    rewritten.clear();
                    r.finish(&mut rewritten);
                    let _ = to.write_all(&rewritten).await;
                    forwarded(&tap, id, dir, &rewritten, &mut lost);
                }
                // Pass the reset on: the receiver's socket will close with RST. Only its read
                // side is shut now (which sends nothing), to stop the other direction's pump;
                // shutting its write side would send a FIN before the reset.
                reset_on_close(to.as_ref());
                let _ = socket2::SockRef::from(to.as_ref()).shutdown(Shutdown::Read);
                // Dropping a write half sends a FIN; forgetting it leaves the close (with RST)
                // to the read half.
                to.forget();
                return End::Reset;
            }
        };
        let read = &data[..];
        let rewrote = match &mut filter {
            Filter::Copy => false,
            Filter::Hello(sniffer, hello) => {
                if let Some(h) = sniffer.push(read) {
                    let _ = hello.set(h);
                }
                false
            }
            Filter::Rewrite(r) => {
                rewritten.clear();
                r.push(read, &mut rewritten, &mut notes);
                for detail in notes.drain(..) {
                    let _ = tap
                        .send(Tap::FaultInjected {
                            id,
                            dir: Some(dir),
                            fault: rewrite::FAULT,
                            detail,
                            ts: now(),
                        })
                        .await;
                }
                if rewritten.is_empty() {
                    // Part of a chunk that may change: held until it is complete.
                    continue;
                }
                true
            }
        };
        let chunk = if rewrote { &rewritten[..] } else { read };
        let n = chunk.len();
        // Forward first, then copy for the analysis.
        if write_watched(&mut to, chunk, &tap, id, dir, stall_after)
            .await
            .is_err()
        {
            reset_on_close(from.as_ref());
            let _ = socket2::SockRef::from(from.as_ref()).shutdown(Shutdown::Read);
            return End::WriteFailed;
        }
        let ts = now();
        if lost > 0 {
            match tap.try_send(Tap::Lost {
                id,
                dir,
                bytes: lost,
                ts,
            }) {
                Ok(()) => lost = 0,
                Err(_) => {
                    lost = lost.saturating_add(n as u64);
                    continue;
                }
            }
        }
        // The read buffer itself goes to the analysis (no copy), unless every shared buffer
        // was in use: then the analysis is far behind and loses these bytes.
        let bytes = if rewrote {
            TapBytes::copy_of(&rewritten)
        } else {
            data.into_tap()
        };
        let Some(mut bytes) = bytes else {
            lost = lost.saturating_add(n as u64);
            continue;
        };
        if sum_for_recording {
            bytes.sum_for_recording();
        }
        if tap.try_send(Tap::Data { id, dir, bytes, ts }).is_err() {
            lost = lost.saturating_add(n as u64);
        }
    }
}

/// Writes all of `bytes` to `to`, as `write_all` does, and reports once (`write_blocked`) when
/// the receiver has taken nothing more for `stall_after`. Meanwhile this direction reads
/// nothing from its sender: what uatap holds for a peer that does not read is this one buffer,
/// and TCP flow control passes the stall on to the sender.
///
/// Bytes that the socket takes at once cost no timer (the common case).
async fn write_watched(
    to: &mut OwnedWriteHalf,
    bytes: &[u8],
    tap: &mpsc::Sender<Tap>,
    id: u64,
    dir: Direction,
    stall_after: Duration,
) -> io::Result<()> {
    let mut written = 0usize;
    // When the receiver last took bytes, while it does not; and whether this stall was said.
    let mut waiting: Option<(tokio::time::Instant, bool)> = None;
    while let Some(rest) = bytes.get(written..).filter(|r| !r.is_empty()) {
        match to.try_write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written = written.saturating_add(n);
                waiting = None;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let (since, said) = *waiting.get_or_insert((tokio::time::Instant::now(), false));
        if said {
            to.as_ref().writable().await?;
            continue;
        }
        tokio::select! {
            r = to.as_ref().writable() => r?,
            _ = tokio::time::sleep_until(since + stall_after) => {
                waiting = Some((since, true));
                let _ = tap
                    .send(Tap::WriteBlocked {
                        id,
                        dir,
                        blocked_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                        pending_bytes: rest.len() as u64,
                        ts: now(),
                    })
                    .await;
            }
        }
    }
    Ok(())
}

/// Waits until `from` has bytes without holding a buffer (an idle connection costs none), then
/// reads them into a shared read buffer; an empty buffer is the end of the stream.
///
/// The read goes through `poll_read`, not `try_read`: a read that does not fill the buffer
/// shows the socket drained, and `poll_read` then forgets the readiness, so the next wait does
/// not start with a read that can only say "would block" (one system call per message less,
/// as `copy_bidirectional` does). While the read is pending (no bytes, or the task used up its
/// share of the runtime and must yield), the buffer goes back.
async fn read_some(from: &mut OwnedReadHalf) -> io::Result<TapBytes> {
    use std::task::Poll;
    use tokio::io::{AsyncRead, ReadBuf};
    from.readable().await?;
    let mut held: Option<TapBytes> = None;
    std::future::poll_fn(|cx| {
        let buf = held.get_or_insert_with(TapBytes::read_buffer);
        let mut rb = ReadBuf::new(buf.spare());
        match std::pin::Pin::new(&mut *from).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                match held.take() {
                    Some(mut buf) => {
                        buf.set_len(n);
                        Poll::Ready(Ok(buf))
                    }
                    None => Poll::Ready(Err(io::Error::other("read buffer missing"))),
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                held = None;
                Poll::Pending
            }
        }
    })
    .await
}

/// Copies forwarded bytes for the analysis without waiting (end of stream only).
fn forwarded(tap: &mpsc::Sender<Tap>, id: u64, dir: Direction, bytes: &[u8], lost: &mut u64) {
    if bytes.is_empty() {
        return;
    }
    if *lost > 0 {
        if tap
            .try_send(Tap::Lost {
                id,
                dir,
                bytes: *lost,
                ts: now(),
            })
            .is_err()
        {
            *lost = lost.saturating_add(bytes.len() as u64);
            return;
        }
        *lost = 0;
    }
    let sent = TapBytes::copy_of(bytes).is_some_and(|b| {
        tap.try_send(Tap::Data {
            id,
            dir,
            bytes: b,
            ts: now(),
        })
        .is_ok()
    });
    if !sent {
        *lost = lost.saturating_add(bytes.len() as u64);
    }
}

/// Bytes read at a time by a relay that applies faults (not the fast path).
const FAULT_READ_BUFFER: usize = 16 * 1024;

/// What a relay needs to apply faults to one direction.
struct FaultCtx {
    faults: Arc<Faults>,
    listen: SocketAddr,
    id: u64,
    dir: Direction,
    kill: watch::Receiver<Option<fault::Kill>>,
    /// A write that waits this long is reported (`write_blocked`).
    stall_after: Duration,
}

/// Ends this direction on a fault's order: the client gets the ERR first if there is one, and
/// both sockets are closed with a FIN or a RST.
async fn killed(
    k: &fault::Kill,
    from: &mut OwnedReadHalf,
    mut to: OwnedWriteHalf,
    ctx: &FaultCtx,
    tap: &mpsc::Sender<Tap>,
) -> End {
    if let (Some(reply), Direction::ServerToClient) = (&k.reply_to_client, ctx.dir) {
        if to.write_all(reply).await.is_ok() {
            let _ = tap.try_send(Tap::Data {
                id: ctx.id,
                dir: ctx.dir,
                bytes: reply.to_vec().into(),
                ts: now(),
            });
        }
    }
    if k.reset {
        reset_on_close(from.as_ref());
        reset_on_close(to.as_ref());
        let _ = socket2::SockRef::from(to.as_ref()).shutdown(Shutdown::Read);
        to.forget();
    } else {
        let _ = to.shutdown().await;
    }
    End::Killed
}

/// A tiny generator for latency jitter (no need for a cryptographic one).
struct Jitter(u64);

impl Jitter {
    fn up_to(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.0.checked_rem(nanos.saturating_add(1)).unwrap_or(0))
    }
}

/// `pump` with the faults of the table applied: blackhole, latency, bandwidth, slow close,
/// message faults (drop, ERR answers, cut or reset after a message) and kills.
async fn pump_faults(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    tap: mpsc::Sender<Tap>,
    mut ctx: FaultCtx,
) -> End {
    let (id, dir) = (ctx.id, ctx.dir);
    let mut buf = vec![0u8; FAULT_READ_BUFFER];
    let (mut out, mut withheld) = (Vec::new(), Vec::new());
    let mut framer = fault::MessageFramer::default();
    let mut version = u64::MAX;
    let mut view = fault::DirView::default();
    let mut blackhole_said = None;
    let mut jitter = Jitter(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut lost: u64 = 0;
    let mut kill_live = true;
    loop {
        let read = tokio::select! {
            r = from.read(&mut buf) => r,
            changed = ctx.kill.changed(), if kill_live => {
                match changed {
                    Ok(()) => {
                        let k = ctx.kill.borrow_and_update().clone();
                        if let Some(k) = k {
                            return killed(&k, &mut from, to, &ctx, &tap).await;
                        }
                    }
                    // Nobody can order a kill any more: just relay.
                    Err(_) => kill_live = false,
                }
                continue;
            }
        };
        if ctx.faults.version() != version {
            version = ctx.faults.version();
            view = ctx.faults.view(id, ctx.listen, dir);
            framer.set_hold(view.framing);
        }
        let n = match read {
            Ok(0) => {
                out.clear();
                framer.finish(&mut out);
                if !out.is_empty() && to.write_all(&out).await.is_ok() {
                    forwarded(&tap, id, dir, &out, &mut lost);
                }
                if let Some(delay) = view.slow_close {
                    ctx.faults.report(
                        id,
                        Some(dir),
                        "slow-close",
                        format!("the close is passed on after {} ms", delay.as_millis()),
                    );
                    tokio::time::sleep(delay).await;
                }
                let _ = to.shutdown().await;
                return End::Fin;
            }
            Ok(n) => n,
            Err(_) => {
                reset_on_close(to.as_ref());
                let _ = socket2::SockRef::from(to.as_ref()).shutdown(Shutdown::Read);
                to.forget();
                return End::Reset;
            }
        };
        let read = buf.get(..n).unwrap_or(&[]);
        let ts = now();
        if let Some(fault) = view.blackhole {
            if blackhole_said != Some(fault) {
                blackhole_said = Some(fault);
                ctx.faults.report(
                    id,
                    Some(dir),
                    "blackhole",
                    format!("fault #{fault}: the connection stays open but nothing is forwarded {} (the bytes are read and discarded)", match dir { Direction::ClientToServer => "to the server", Direction::ServerToClient => "to the client" }),
                );
            }
            let _ = tap.try_send(Tap::Withheld {
                id,
                dir,
                bytes: read.to_vec(),
                ts,
            });
            continue;
        }
        out.clear();
        withheld.clear();
        let (faults, listen) = (&ctx.faults, ctx.listen);
        let stop = framer.push(read, &mut out, &mut withheld, &mut |m| {
            faults.on_message(id, listen, dir, m)
        });
        if let Some(note) = framer.note.take() {
            ctx.faults.report(id, Some(dir), "drop-message", note);
        }
        if let Some((latency, spread)) = view.latency {
            let due = tokio::time::Instant::now() + latency + jitter.up_to(spread);
            tokio::time::sleep_until(due).await;
        }
        let written = match view.bandwidth {
            None => write_watched(&mut to, &out, &tap, id, dir, ctx.stall_after).await,
            Some(rate) => {
                // A tenth of a second's worth at a time.
                let piece = usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1);
                let mut r = Ok(());
                for p in out.chunks(piece) {
                    r = to.write_all(p).await;
                    if r.is_err() {
                        break;
                    }
                    let secs = p.len() as f64 / rate.max(1) as f64;
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                }
                r
            }
        };
        if written.is_err() {
            reset_on_close(from.as_ref());
            let _ = socket2::SockRef::from(from.as_ref()).shutdown(Shutdown::Read);
            return End::WriteFailed;
        }
        forwarded(&tap, id, dir, &out, &mut lost);
        if !withheld.is_empty() {
            let _ = tap.try_send(Tap::Withheld {
                id,
                dir,
                bytes: std::mem::take(&mut withheld),
                ts,
            });
        }
        match stop {
            None => {}
            Some(fault::Stop::Reply { status, .. }) => {
                let err = uatap_codec::tcp::TcpMessage::Error(uatap_codec::tcp::ErrorMessage {
                    error: status.0,
                    reason: uatap_codec::types::UaString::from("uatap: injected fault"),
                });
                ctx.faults.kill(
                    id,
                    fault::Kill {
                        reset: false,
                        reply_to_client: Some(uatap_codec::Encode::to_vec(&err).into()),
                    },
                );
            }
            Some(fault::Stop::Kill { reset, .. }) => ctx.faults.kill(
                id,
                fault::Kill {
                    reset,
                    reply_to_client: None,
                },
            ),
        }
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one (a service manager stopping uatap).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    // SIGTERM is caught from this call on (not from the first poll), so a caller that installs
    // it before it announces itself cannot be killed by a SIGTERM that comes right after.
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
