//! The forwarding path: accept a client, dial the server, copy bytes both ways unchanged and at
//! once, mirror half-closes and resets, and tap a copy of every byte for the analysis.
//!
//! Nothing here waits for the analysis: a copy that does not fit in the tap channel is counted
//! as lost for the analysis (reported as a gap), never held back from the peer.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use uatap_analysis::{CloseReason, ClosedBy, Direction};

use crate::hub::{now, Tap};
use crate::upstream::{classify_io_error, client_view, Upstream};

/// Bytes read per system call and direction; with two directions this bounds the buffer
/// memory of a connection.
const READ_BUFFER: usize = 16 * 1024;

/// One listener: where clients connect and where their connections go.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to accept clients on.
    pub listen: SocketAddr,
    /// The server.
    pub upstream: Upstream,
    /// How long to wait for the server to accept.
    pub connect_timeout: Duration,
}

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
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (client, peer) = match accepted {
                    Ok(a) => a,
                    // Out of file descriptors and the like: keep serving the others.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let id = ids.next();
                tasks.spawn(proxy_connection(client, peer, config.clone(), tap.clone(), id, shutdown.clone()));
            }
            _ = shutdown.changed() => break,
        }
        while tasks.try_join_next().is_some() {}
    }
    // Let open connections end (they stop on the same signal).
    while tasks.join_next().await.is_some() {}
    Ok(())
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
) {
    let server_addr = client.local_addr().unwrap_or(config.listen);
    // Opening and closing are always delivered (awaited); only data copies may be dropped.
    let _ = tap
        .send(Tap::Open {
            id,
            client: peer,
            server: server_addr,
            ts: now(),
        })
        .await;
    let upstream = match dial(&config).await {
        Ok(s) => s,
        Err((error, detail)) => {
            let detail = format!("{detail}; {}", client_view(error));
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
            let _ = tap
                .send(Tap::Close {
                    id,
                    by: ClosedBy::Proxy,
                    reason: CloseReason::Error,
                    ts: now(),
                })
                .await;
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
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
    let (cr, cw) = client.into_split();
    let (sr, sw) = upstream.into_split();
    let c2s = pump(cr, sw, Direction::ClientToServer, id, tap.clone());
    let s2c = pump(sr, cw, Direction::ServerToClient, id, tap.clone());
    tokio::pin!(c2s, s2c);
    let first = tokio::select! {
        e = &mut c2s => Some((Direction::ClientToServer, e)),
        e = &mut s2c => Some((Direction::ServerToClient, e)),
        _ = stopped(&mut shutdown) => None,
    };
    let (by, reason) = match first {
        None => (ClosedBy::Proxy, CloseReason::Fin),
        Some((dir, end)) => {
            // The other direction may still carry data after a half-close: let it finish.
            match dir {
                Direction::ClientToServer => {
                    tokio::select! { _ = &mut s2c => {}, _ = stopped(&mut shutdown) => {} }
                }
                Direction::ServerToClient => {
                    tokio::select! { _ = &mut c2s => {}, _ = stopped(&mut shutdown) => {} }
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
    let _ = tap
        .send(Tap::Close {
            id,
            by,
            reason,
            ts: now(),
        })
        .await;
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
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    dir: Direction,
    id: u64,
    tap: mpsc::Sender<Tap>,
) -> End {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut lost: u64 = 0;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                // Mirror the half-close.
                let _ = to.shutdown().await;
                return End::Fin;
            }
            Ok(n) => n,
            Err(_) => {
                reset_on_close(to.as_ref());
                let _ = socket2::SockRef::from(to.as_ref()).shutdown(Shutdown::Both);
                return End::Reset;
            }
        };
        let chunk = buf.get(..n).unwrap_or(&[]);
        // Forward first, then copy for the analysis.
        if to.write_all(chunk).await.is_err() {
            reset_on_close(from.as_ref());
            let _ = socket2::SockRef::from(from.as_ref()).shutdown(Shutdown::Both);
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
        if tap
            .try_send(Tap::Data {
                id,
                dir,
                bytes: chunk.to_vec(),
                ts,
            })
            .is_err()
        {
            lost = lost.saturating_add(n as u64);
        }
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one (a service manager stopping uatap).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
