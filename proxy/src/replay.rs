//! The sockets of `uatap replay`: the recorded server played toward live clients, and the
//! recorded client played toward a live server (the logic is in `uatap_replay`, sans-IO).
//!
//! Every byte sent and received goes through the same analysis as the proxy's, so a replay
//! reports the live legs with the usual events, plus `replay_divergence`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uatap_analysis::{Analyzer, CloseReason, ClosedBy, Connection, Direction, Event, EventKind};
use uatap_analysis::{Options, Timestamp};
use uatap_replay::server::{Close, ServerReplay};
use uatap_replay::Divergence;

use crate::hub::now;

/// How `replay server` ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOutcome {
    /// Recorded connections played to a live client.
    pub played: usize,
    /// Recorded connections no client came for.
    pub not_played: usize,
}

fn divergence_event(role: &'static str, conn: &Arc<str>, d: Divergence) -> Event {
    Event {
        ts: now(),
        conn: conn.clone(),
        dir: None,
        kind: EventKind::ReplayDivergence {
            role,
            service: d.service,
            detail: d.detail,
            answer: d.answer,
        },
    }
}

fn until(t: Timestamp) -> tokio::time::Instant {
    let wait = t.unix_micros.saturating_sub(now().unix_micros).max(0);
    tokio::time::Instant::now() + Duration::from_micros(u64::try_from(wait).unwrap_or(0))
}

fn drain(conn: &mut Connection, analyzer: &mut Analyzer, sink: &mut dyn FnMut(Event)) {
    while let Some(e) = conn.poll_event() {
        sink(e);
    }
    while let Some(e) = analyzer.poll_event() {
        sink(e);
    }
}

/// Plays the recorded server to the clients that connect to `listener`, one recorded
/// connection per live one, until every recorded connection was played or no client came
/// within `accept_timeout`.
pub async fn serve(
    mut replay: ServerReplay,
    listener: TcpListener,
    accept_timeout: Duration,
    options: Options,
    sink: &mut dyn FnMut(Event),
) -> std::io::Result<ServerOutcome> {
    let mut analyzer = Analyzer::new(options);
    let mut outcome = ServerOutcome::default();
    let local = listener.local_addr()?;
    while replay.connections_left() > 0 {
        let accepted = tokio::time::timeout(accept_timeout, listener.accept()).await;
        let Ok(accepted) = accepted else { break };
        let (stream, peer) = accepted?;
        if !replay.accept(now()) {
            break;
        }
        outcome.played = outcome.played.saturating_add(1);
        play_one(&mut replay, stream, peer, local, &mut analyzer, sink).await;
    }
    outcome.not_played = replay.connections_left();
    analyzer.finish(now());
    while let Some(e) = analyzer.poll_event() {
        sink(e);
    }
    Ok(outcome)
}

async fn play_one(
    replay: &mut ServerReplay,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    analyzer: &mut Analyzer,
    sink: &mut dyn FnMut(Event),
) {
    let _ = stream.set_nodelay(true);
    let mut conn = analyzer.open(peer.to_string(), local.to_string(), now());
    let id: Arc<str> = conn.id().into();
    drain(&mut conn, analyzer, sink);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // What is due goes out first.
        while let Some(bytes) = replay.poll_transmit() {
            if stream.write_all(&bytes).await.is_err() {
                replay.handle_peer_close(now());
                analyzer.handle_close(&mut conn, ClosedBy::Client, CloseReason::Rst, now());
                drain(&mut conn, analyzer, sink);
                return;
            }
            analyzer.handle_input(&mut conn, Direction::ServerToClient, &bytes, now());
        }
        while let Some(d) = replay.poll_event() {
            sink(divergence_event("server", &id, d));
        }
        drain(&mut conn, analyzer, sink);
        if let Some(close) = replay.poll_close() {
            let reason = close_as(stream, close).await;
            analyzer.handle_close(&mut conn, ClosedBy::Server, reason, now());
            drain(&mut conn, analyzer, sink);
            return;
        }
        let deadline = replay.poll_timeout();
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    replay.handle_peer_close(now());
                    analyzer.handle_close(&mut conn, ClosedBy::Client, CloseReason::Fin, now());
                    drain(&mut conn, analyzer, sink);
                    return;
                }
                let got = buf.get(..n).unwrap_or(&[]);
                let t = now();
                analyzer.handle_input(&mut conn, Direction::ClientToServer, got, t);
                replay.handle_input(got, t);
            }
            () = tokio::time::sleep_until(deadline.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                until,
            )) => {
                replay.handle_timeout(now());
            }
        }
    }
}

/// How `replay client` ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOutcome {
    /// Recorded connections played to their recorded end.
    pub completed: usize,
    /// Recorded connections in the replay.
    pub total: usize,
    /// Differences between the live and the recorded responses.
    pub diff: Vec<uatap_replay::client::DiffEntry>,
}

/// Plays the recorded client toward the live server at `upstream`, connection after
/// connection (the recorded cut, then the recorded reconnect).
pub async fn play_client(
    mut replay: uatap_replay::client::ClientReplay,
    total: usize,
    upstream: &crate::upstream::Upstream,
    connect_timeout: Duration,
    options: Options,
    sink: &mut dyn FnMut(Event),
) -> ClientOutcome {
    let mut analyzer = Analyzer::new(options);
    while !replay.is_done() {
        let Some(at) = replay.poll_connect() else {
            break;
        };
        tokio::time::sleep_until(until(at)).await;
        let target = format!("{}:{}", upstream.host, upstream.port);
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&target)).await;
        let stream = match stream {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                replay.connect_failed(e.to_string(), now());
                break;
            }
            Err(_) => {
                replay.connect_failed(format!("no answer from {target}"), now());
                break;
            }
        };
        replay.connected(now());
        client_one(&mut replay, stream, &mut analyzer, sink).await;
    }
    while let Some(d) = replay.poll_event() {
        let conn: Arc<str> = Arc::from("-");
        sink(divergence_event("client", &conn, d));
    }
    analyzer.finish(now());
    while let Some(e) = analyzer.poll_event() {
        sink(e);
    }
    ClientOutcome {
        completed: replay.completed(),
        total,
        diff: replay.diff().to_vec(),
    }
}

async fn client_one(
    replay: &mut uatap_replay::client::ClientReplay,
    mut stream: TcpStream,
    analyzer: &mut Analyzer,
    sink: &mut dyn FnMut(Event),
) {
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut conn = analyzer.open(local, peer, now());
    let id: Arc<str> = conn.id().into();
    drain(&mut conn, analyzer, sink);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(bytes) = replay.poll_transmit() {
            if stream.write_all(&bytes).await.is_err() {
                replay.handle_peer_close(now());
                break;
            }
            analyzer.handle_input(&mut conn, Direction::ClientToServer, &bytes, now());
        }
        while let Some(d) = replay.poll_event() {
            sink(divergence_event("client", &id, d));
        }
        drain(&mut conn, analyzer, sink);
        if let Some(close) = replay.poll_close() {
            let reason = close_as(stream, close).await;
            analyzer.handle_close(&mut conn, ClosedBy::Proxy, reason, now());
            drain(&mut conn, analyzer, sink);
            return;
        }
        if replay.poll_connect().is_some() || replay.is_done() {
            // The live server closed and the replay moved on.
            analyzer.handle_close(&mut conn, ClosedBy::Server, CloseReason::Fin, now());
            drain(&mut conn, analyzer, sink);
            return;
        }
        let deadline = replay.poll_timeout();
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    replay.handle_peer_close(now());
                    continue;
                }
                let got = buf.get(..n).unwrap_or(&[]);
                let t = now();
                analyzer.handle_input(&mut conn, Direction::ServerToClient, got, t);
                replay.handle_input(got, t);
            }
            () = tokio::time::sleep_until(deadline.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                until,
            )) => {
                replay.handle_timeout(now());
            }
        }
    }
}

/// Closes the live connection the way the recording's did: a FIN, or a RST (zero linger).
async fn close_as(mut stream: TcpStream, close: Close) -> CloseReason {
    match close {
        Close::Fin => {
            let _ = stream.shutdown().await;
            CloseReason::Fin
        }
        Close::Rst => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            CloseReason::Rst
        }
    }
}
