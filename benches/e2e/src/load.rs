//! Load for the reliability runs: `uatap-e2e load-server` / `load-client` (driven by
//! benches/soak/run.py, `make soak`) and the short versions in tests/load.rs, which include this
//! file and ua.rs with `#[path]` so that `make test` compiles no second project.
//!
//! The server answers HEL and OPN (security None), then streams PublishResponses paced at a
//! rate per connection until the client half-closes; then it closes its side too. The client
//! holds many such connections for a while (one PublishRequest per 10 responses), or runs
//! open/close cycles (HEL, OPN, CLO, close). Both sides count every byte they sent and
//! received and the Publish messages, so that a run can be compared with what the proxy
//! reported (events) and recorded (pcapng). Each connection ends with a clean half-close from
//! the client and reads to the end, so nothing is in flight when the counters are read.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use super::ua;

/// Running totals of one side of the load (server or client), shared by its connections.
#[derive(Default, Debug)]
pub struct Counters {
    /// Connections that passed HEL/ACK and OPN.
    pub opened: AtomicU64,
    /// Connections that ended (cleanly or not).
    pub closed: AtomicU64,
    /// Connections that ended with an error (a protocol surprise or a reset).
    pub errors: AtomicU64,
    /// Bytes written to the sockets.
    pub bytes_sent: AtomicU64,
    /// Bytes read from the sockets.
    pub bytes_received: AtomicU64,
    /// PublishResponses sent (server) or received (client).
    pub publish_responses: AtomicU64,
    /// PublishRequests sent (client) or received (server).
    pub publish_requests: AtomicU64,
}

/// The counters at one moment, to compare and to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::opened`].
    pub opened: u64,
    /// See [`Counters::closed`].
    pub closed: u64,
    /// See [`Counters::errors`].
    pub errors: u64,
    /// See [`Counters::bytes_sent`].
    pub bytes_sent: u64,
    /// See [`Counters::bytes_received`].
    pub bytes_received: u64,
    /// See [`Counters::publish_responses`].
    pub publish_responses: u64,
    /// See [`Counters::publish_requests`].
    pub publish_requests: u64,
}

impl Counters {
    /// The totals now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            opened: self.opened.load(Relaxed),
            closed: self.closed.load(Relaxed),
            errors: self.errors.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            publish_responses: self.publish_responses.load(Relaxed),
            publish_requests: self.publish_requests.load(Relaxed),
        }
    }
}

impl Snapshot {
    /// One JSON object (the driver script reads these).
    pub fn json(&self) -> String {
        format!(
            "{{\"opened\":{},\"closed\":{},\"errors\":{},\"bytes_sent\":{},\"bytes_received\":{},\"publish_responses\":{},\"publish_requests\":{}}}",
            self.opened,
            self.closed,
            self.errors,
            self.bytes_sent,
            self.bytes_received,
            self.publish_responses,
            self.publish_requests
        )
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")
}

/// Reads whole UA TCP chunks, counting every byte read.
#[derive(Default)]
struct Chunks {
    buf: Vec<u8>,
}

impl Chunks {
    /// The next chunk; `None` at a clean end of stream (no partial chunk left).
    async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        received: &AtomicU64,
    ) -> io::Result<Option<Vec<u8>>> {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            if self.buf.len() >= 8 {
                let size = ua::get_u32(&self.buf, 4) as usize;
                if size < 8 {
                    return Err(io::Error::other(format!("bad chunk size {size}")));
                }
                if self.buf.len() >= size {
                    return Ok(Some(self.buf.drain(..size).collect()));
                }
            }
            // Cancel-safe: nothing is read unless the read completes.
            let n = r.read(&mut tmp).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(eof())
                };
            }
            received.fetch_add(n as u64, Relaxed);
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8], c: &Counters) -> io::Result<()> {
    w.write_all(bytes).await?;
    c.bytes_sent.fetch_add(bytes.len() as u64, Relaxed);
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Server

/// What the load server sends.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// PublishResponses per second per connection; 0: none (the connection only handshakes).
    pub rate: f64,
    /// MonitoredItemNotifications per PublishResponse (100 make about 3.1 KB).
    pub items: u32,
}

/// Accepts connections for ever, each served in its own task.
pub async fn serve(listener: TcpListener, cfg: ServerConfig, counters: Arc<Counters>) {
    let mut channel: u32 = 0;
    loop {
        let Ok((s, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        channel = channel.wrapping_add(1);
        let c = counters.clone();
        let ch = channel;
        tokio::spawn(async move {
            if serve_conn(s, ch, cfg, &c).await.is_err() {
                c.errors.fetch_add(1, Relaxed);
            }
            c.closed.fetch_add(1, Relaxed);
        });
    }
}

async fn serve_conn(
    s: TcpStream,
    channel: u32,
    cfg: ServerConfig,
    c: &Arc<Counters>,
) -> io::Result<()> {
    let _ = s.set_nodelay(true);
    let (mut r, mut w) = s.into_split();
    let mut chunks = Chunks::default();
    let hel = chunks
        .next(&mut r, &c.bytes_received)
        .await?
        .ok_or_else(eof)?;
    if !hel.starts_with(b"HEL") {
        return Err(io::Error::other("expected HEL"));
    }
    send(&mut w, &ua::ack(), c).await?;
    let opn = chunks
        .next(&mut r, &c.bytes_received)
        .await?
        .ok_or_else(eof)?;
    if !opn.starts_with(b"OPN") || opn.len() < 16 {
        return Err(io::Error::other("expected OPN"));
    }
    let uri_len = (ua::get_u32(&opn, 12) as i32).max(0) as usize;
    let at = 16 + uri_len + 8 + 4;
    if opn.len() < at + 4 {
        return Err(io::Error::other("short OPN"));
    }
    let request_id = ua::get_u32(&opn, at);
    let token = 1;
    let mut seq: u32 = 1;
    send(
        &mut w,
        &ua::opn_response(channel, token, seq, request_id, 1),
        c,
    )
    .await?;
    c.opened.fetch_add(1, Relaxed);

    // The client's requests are read on the side until it half-closes.
    let (done_tx, mut done) = watch::channel(false);
    let (req_tx, mut requests) = mpsc::unbounded_channel::<(u32, u32)>();
    let rc = c.clone();
    let reader = tokio::spawn(async move {
        let result = loop {
            match chunks.next(&mut r, &rc.bytes_received).await {
                Ok(Some(chunk)) => {
                    if let Some((rid, handle, ty)) = ua::request_ids(&chunk) {
                        if ty == ua::PUBLISH_REQUEST {
                            rc.publish_requests.fetch_add(1, Relaxed);
                            let _ = req_tx.send((rid, handle));
                        }
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let _ = done_tx.send(true);
        result
    });

    let mut result = Ok(());
    if cfg.rate > 0.0 {
        let tmpl = ua::PublishResponseTemplate::new(channel, token, 1000 + channel, cfg.items);
        let started = Instant::now();
        let mut sent: u64 = 0;
        let mut own_id: u32 = 0x4000_0000;
        let mut out = Vec::new();
        while !*done.borrow() {
            let due = (started.elapsed().as_secs_f64() * cfg.rate) as u64;
            if due <= sent {
                let next = started + Duration::from_secs_f64((sent + 1) as f64 / cfg.rate);
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = done.changed() => {}
                }
                continue;
            }
            let n = (due - sent).min(64);
            out.clear();
            let ts = ua::now_ticks();
            for _ in 0..n {
                let (rid, handle) = requests.try_recv().unwrap_or_else(|_| {
                    own_id = own_id.wrapping_add(1);
                    (own_id, own_id)
                });
                seq = seq.wrapping_add(1);
                sent += 1;
                tmpl.emit(&mut out, seq, rid, handle, sent as u32, ts);
            }
            if let Err(e) = send(&mut w, &out, c).await {
                result = Err(e);
                break;
            }
            c.publish_responses.fetch_add(n, Relaxed);
        }
    } else {
        let _ = done.wait_for(|d| *d).await;
    }
    // The client half-closed (or went away): close this side too.
    let _ = w.shutdown().await;
    let read = reader.await.map_err(io::Error::other)?;
    result.and(read)
}

// ------------------------------------------------------------------------------------------
// Client

/// A channel the client opened: the socket halves, what was read past the OPN response, ids.
struct Open {
    r: tokio::net::tcp::OwnedReadHalf,
    w: tokio::net::tcp::OwnedWriteHalf,
    chunks: Chunks,
    channel: u32,
    token: u32,
}

async fn open(addr: SocketAddr, c: &Counters) -> io::Result<Open> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (mut r, mut w) = s.into_split();
    let mut chunks = Chunks::default();
    send(&mut w, &ua::hello("opc.tcp://127.0.0.1/load"), c).await?;
    let ack = chunks
        .next(&mut r, &c.bytes_received)
        .await?
        .ok_or_else(eof)?;
    if !ack.starts_with(b"ACK") {
        return Err(io::Error::other("expected ACK"));
    }
    send(&mut w, &ua::opn_request(1, 1), c).await?;
    let opn = chunks
        .next(&mut r, &c.bytes_received)
        .await?
        .ok_or_else(eof)?;
    let (channel, token) =
        ua::opn_response_ids(&opn).ok_or_else(|| io::Error::other("bad OPN response"))?;
    c.opened.fetch_add(1, Relaxed);
    Ok(Open {
        r,
        w,
        chunks,
        channel,
        token,
    })
}

/// Says goodbye (CLO, then FIN) and reads what the server still sends until it closes.
async fn close(mut o: Open, seq: u32, request_id: u32, c: &Counters) -> io::Result<()> {
    send(
        &mut o.w,
        &ua::clo_request(o.channel, o.token, seq, request_id),
        c,
    )
    .await?;
    o.w.shutdown().await?;
    while let Some(chunk) = o.chunks.next(&mut o.r, &c.bytes_received).await? {
        if chunk.starts_with(b"MSG") {
            c.publish_responses.fetch_add(1, Relaxed);
        }
    }
    Ok(())
}

/// One connection: open, read the PublishResponses until `until` (a PublishRequest per 10),
/// close.
async fn hold_one(
    addr: SocketAddr,
    until: Instant,
    c: &Counters,
    opening: &Semaphore,
) -> io::Result<()> {
    let permit = opening.acquire().await.map_err(io::Error::other)?;
    let mut o = open(addr, c).await?;
    drop(permit);
    let mut publish = ua::PublishRequestTemplate::new(o.channel, o.token);
    let (mut seq, mut request_id) = (1u32, 1u32);
    let mut received: u32 = 0;
    loop {
        tokio::select! {
            chunk = o.chunks.next(&mut o.r, &c.bytes_received) => {
                let Some(chunk) = chunk? else { return Err(eof()) };
                if chunk.starts_with(b"MSG") {
                    c.publish_responses.fetch_add(1, Relaxed);
                    received = received.wrapping_add(1);
                    if received % 10 == 0 {
                        seq += 1;
                        request_id += 1;
                        publish.patch(seq, request_id, 1000 + o.channel, received);
                        send(&mut o.w, &publish.bytes, c).await?;
                        c.publish_requests.fetch_add(1, Relaxed);
                    }
                }
            }
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    close(o, seq + 1, request_id + 1, c).await
}

/// Opens `conns` connections (at most 64 handshakes at a time) that each read the server's
/// stream until `seconds` from now, then close cleanly; returns when all have ended.
pub async fn hold(addr: SocketAddr, conns: usize, seconds: f64, c: Arc<Counters>) {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let opening = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (c, opening) = (c.clone(), opening.clone());
        tasks.spawn(async move {
            if hold_one(addr, until, &c, &opening).await.is_err() {
                c.errors.fetch_add(1, Relaxed);
            }
            c.closed.fetch_add(1, Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// `total` open/close cycles (TCP connect, HEL, OPN, CLO, FIN, read to the end), `parallel`
/// at a time.
pub async fn cycles(addr: SocketAddr, total: u64, parallel: usize, c: Arc<Counters>) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (c, next) = (c.clone(), next.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Relaxed) < total {
                let r = async {
                    let o = open(addr, &c).await?;
                    close(o, 2, 2, &c).await
                }
                .await;
                if r.is_err() {
                    c.errors.fetch_add(1, Relaxed);
                }
                c.closed.fetch_add(1, Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
