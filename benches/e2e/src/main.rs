//! uatap-e2e: the pieces of the end-to-end proxy benchmark (driven by benches/e2e/run.py).
//!
//!   forwarder --listen A --upstream B
//!       plain tokio `copy_bidirectional` forwarder, TCP_NODELAY on both legs (the baseline)
//!   server --listen B --mode stream|pingpong [--items 100] [--nodes 1] [--batch 4] [--rate R]
//!       synthetic OPC UA server: HEL->ACK, OPN->OPN response, then either an endless stream of
//!       PublishResponses (one DataChangeNotification of --items Doubles with timestamps,
//!       increasing sequence numbers; --batch per write, or paced at --rate messages/s) or a
//!       ReadResponse for every ReadRequest
//!   client --connect A --mode stream|pingpong|idle [--seconds 5] [--warmup 1] [--conns 1]
//!          [--nodes 1] [--handshake 1]
//!       synthetic OPC UA client: HEL, OPN, then
//!         stream:   reads the stream (one acknowledging PublishRequest per 10 responses),
//!                   reports MB/s and messages/s after the warm-up
//!         pingpong: one ReadRequest at a time per connection, round trips in an HDR histogram
//!         idle:     opens --conns connections (HEL+OPN when --handshake 1, else raw TCP),
//!                   prints `READY n`, holds them --seconds, closes
//!       prints one JSON line with the result on standard output.
//!   load-server --listen B [--rate 1] [--items 100]
//!       the load server of src/load.rs: HEL/OPN, then PublishResponses paced at --rate per
//!       second per connection (0: none) until the client half-closes; prints its counters as
//!       one JSON line for every line read on standard input, and exits when that closes
//!   load-client --connect A --mode hold|cycles [--conns 1] [--seconds 5] [--cycles 1000]
//!          [--parallel 8]
//!       hold:   --conns connections read the stream for --seconds, then close cleanly
//!       cycles: --cycles connections (HEL, OPN, CLO, close), --parallel at a time
//!       prints one JSON line with its counters and the elapsed time.

mod load;
mod ua;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ENDPOINT: &str = "opc.tcp://127.0.0.1/bench";

fn usage() -> ! {
    eprintln!(
        "usage: uatap-e2e forwarder --listen A --upstream B\n\
         \x20      uatap-e2e server --listen B --mode stream|pingpong [--items N] [--nodes N] [--batch N] [--rate R]\n\
         \x20      uatap-e2e client --connect A --mode stream|pingpong|idle [--seconds S] [--warmup S] [--conns N] [--nodes N] [--handshake 0|1]\n\
         \x20      uatap-e2e load-server --listen B [--rate R] [--items N]\n\
         \x20      uatap-e2e load-client --connect A --mode hold|cycles [--conns N] [--seconds S] [--cycles N] [--parallel N]"
    );
    std::process::exit(2)
}

struct Opts(Vec<String>);

impl Opts {
    fn get(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn req(&self, name: &str) -> &str {
        self.get(name).unwrap_or_else(|| {
            eprintln!("missing --{name}");
            usage()
        })
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("bad --{name} {v}");
                usage()
            }),
        }
    }
    fn addr(&self, name: &str) -> SocketAddr {
        let v = self.req(name);
        v.parse().unwrap_or_else(|_| {
            eprintln!("bad address --{name} {v}");
            usage()
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else { usage() };
    let opts = Opts(args[1..].to_vec());
    match cmd.as_str() {
        "forwarder" => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            rt.block_on(forwarder(opts.addr("listen"), opts.req("upstream").to_string()));
        }
        "server" => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let cfg = ServerCfg {
                stream: mode(&opts, &["stream", "pingpong"]) == "stream",
                items: opts.num("items", 100),
                nodes: opts.num("nodes", 1),
                batch: opts.num("batch", 4),
                rate: opts.num("rate", 0.0),
            };
            rt.block_on(server(opts.addr("listen"), Arc::new(cfg)));
        }
        "client" => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let m = mode(&opts, &["stream", "pingpong", "idle"]);
            let cfg = ClientCfg {
                addr: opts.addr("connect"),
                seconds: opts.num("seconds", 5.0),
                warmup: opts.num("warmup", 1.0),
                conns: opts.num("conns", 1),
                nodes: opts.num("nodes", 1),
                handshake: opts.num::<u32>("handshake", 1) != 0,
            };
            let line = rt.block_on(async {
                match m.as_str() {
                    "stream" => client_stream(&cfg).await,
                    "pingpong" => client_pingpong(&cfg).await,
                    _ => client_idle(&cfg).await,
                }
            });
            match line {
                Ok(l) => println!("{l}"),
                Err(e) => {
                    eprintln!("client: {e}");
                    std::process::exit(1);
                }
            }
        }
        "load-server" => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let cfg = load::ServerConfig { rate: opts.num("rate", 1.0), items: opts.num("items", 100) };
            let counters = Arc::new(load::Counters::default());
            let c = counters.clone();
            // The driver asks for the counters with a line; closing standard input stops us.
            std::thread::spawn(move || {
                let mut line = String::new();
                while io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    println!("{}", c.snapshot().json());
                    let _ = io::stdout().flush();
                    line.clear();
                }
                std::process::exit(0);
            });
            rt.block_on(async {
                let listener = TcpListener::bind(opts.addr("listen")).await.expect("bind");
                eprintln!("load-server: listening on {}", listener.local_addr().expect("addr"));
                load::serve(listener, cfg, counters).await
            });
        }
        "load-client" => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let addr = opts.addr("connect");
            let m = mode(&opts, &["hold", "cycles"]);
            let counters = Arc::new(load::Counters::default());
            let started = Instant::now();
            rt.block_on(async {
                if m == "hold" {
                    load::hold(addr, opts.num("conns", 1), opts.num("seconds", 5.0), counters.clone()).await
                } else {
                    load::cycles(addr, opts.num("cycles", 1000), opts.num("parallel", 8), counters.clone()).await
                }
            });
            println!(
                "{{\"mode\":\"{m}\",\"secs\":{:.3},\"counters\":{}}}",
                started.elapsed().as_secs_f64(),
                counters.snapshot().json()
            );
        }
        _ => usage(),
    }
}

fn mode(opts: &Opts, allowed: &[&str]) -> String {
    let m = opts.req("mode");
    if !allowed.contains(&m) {
        eprintln!("bad --mode {m}");
        usage()
    }
    m.to_string()
}

// ------------------------------------------------------------------------------------------
// Baseline forwarder

async fn forwarder(listen: SocketAddr, upstream: String) {
    let listener = TcpListener::bind(listen).await.expect("bind");
    eprintln!("forwarder: {listen} -> {upstream}");
    loop {
        let (mut client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream.as_str()).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

// ------------------------------------------------------------------------------------------
// Chunk framing

/// Buffers a byte stream and hands out complete UA TCP messages/chunks.
struct Frames {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Frames {
    fn new(cap: usize) -> Self {
        Frames { buf: vec![0; cap], start: 0, end: 0 }
    }
    /// Reads more; Ok(0) at end of stream.
    async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                let n = self.buf.len();
                self.buf.resize(n * 2, 0);
            }
        }
        let n = r.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
    /// The next complete chunk's range, if buffered.
    fn pop(&mut self) -> Option<std::ops::Range<usize>> {
        let avail = self.end - self.start;
        if avail < 8 {
            return None;
        }
        let size = ua::get_u32(&self.buf, self.start + 4) as usize;
        if size < 8 {
            panic!("bad chunk size {size}");
        }
        if avail < size {
            if size > self.buf.len() {
                self.buf.resize(size * 2, 0);
            }
            return None;
        }
        let r = self.start..self.start + size;
        self.start += size;
        Some(r)
    }
    /// Reads until a complete chunk is buffered.
    async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<Option<std::ops::Range<usize>>> {
        loop {
            if let Some(c) = self.pop() {
                return Ok(Some(c));
            }
            if self.fill(r).await? == 0 {
                return Ok(None);
            }
        }
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")
}

// ------------------------------------------------------------------------------------------
// Server

struct ServerCfg {
    stream: bool,
    items: u32,
    nodes: u32,
    batch: usize,
    /// Stream mode: PublishResponses per second per connection (0: as fast as possible).
    rate: f64,
}

async fn server(listen: SocketAddr, cfg: Arc<ServerCfg>) {
    let listener = TcpListener::bind(listen).await.expect("bind");
    eprintln!("server: {listen} ({})", if cfg.stream { "stream" } else { "pingpong" });
    let mut next_channel: u32 = 0;
    loop {
        let (s, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        next_channel = next_channel.wrapping_add(1);
        let cfg = cfg.clone();
        let channel = next_channel;
        tokio::spawn(async move {
            let _ = serve_conn(s, channel, cfg).await;
        });
    }
}

async fn serve_conn(mut s: TcpStream, channel: u32, cfg: Arc<ServerCfg>) -> io::Result<()> {
    let token = 1;
    let mut frames = Frames::new(64 * 1024);
    // HEL -> ACK
    let c = frames.next(&mut s).await?.ok_or_else(eof)?;
    if &frames.buf[c.start..c.start + 3] != b"HEL" {
        return Err(io::Error::other("expected HEL"));
    }
    s.write_all(&ua::ack()).await?;
    // OPN -> OPN response
    let c = frames.next(&mut s).await?.ok_or_else(eof)?;
    let chunk = &frames.buf[c];
    if &chunk[..3] != b"OPN" {
        return Err(io::Error::other("expected OPN"));
    }
    let request_id = ua::get_u32(chunk, 16 + (ua::get_u32(chunk, 12) as i32).max(0) as usize + 8 + 4);
    let mut seq: u32 = 1;
    s.write_all(&ua::opn_response(channel, token, seq, request_id, 1)).await?;
    if cfg.stream {
        stream_out(s, frames, channel, token, seq, &cfg).await
    } else {
        let mut resp = ua::ReadResponseTemplate::new(channel, token, cfg.nodes);
        let mut out = Vec::with_capacity(4096);
        loop {
            let Some(c) = frames.next(&mut s).await? else { return Ok(()) };
            out.clear();
            let mut answer = |chunk: &[u8], out: &mut Vec<u8>| {
                if let Some((rid, handle, ty)) = ua::request_ids(chunk) {
                    if ty == ua::READ_REQUEST {
                        seq = seq.wrapping_add(1);
                        resp.patch(seq, rid, handle);
                        out.extend_from_slice(&resp.bytes);
                    }
                }
            };
            answer(&frames.buf[c], &mut out);
            // Pipelined requests already buffered get their answers in the same write.
            while let Some(c) = frames.pop() {
                answer(&frames.buf[c], &mut out);
            }
            if !out.is_empty() {
                s.write_all(&out).await?;
            }
        }
    }
}

/// Streams PublishResponses until the client goes away. Publish requests from the client are
/// read on the side; their request ids and handles are used by the next responses (the rest
/// carry ids of the server's own, as if answering requests queued earlier).
async fn stream_out(
    s: TcpStream,
    mut frames: Frames,
    channel: u32,
    token: u32,
    mut seq: u32,
    cfg: &ServerCfg,
) -> io::Result<()> {
    let (mut r, mut w) = s.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u32, u32)>();
    let reader = tokio::spawn(async move {
        loop {
            match frames.next(&mut r).await {
                Ok(Some(c)) => {
                    if let Some((rid, handle, ty)) = ua::request_ids(&frames.buf[c]) {
                        if ty == ua::PUBLISH_REQUEST {
                            let _ = tx.send((rid, handle));
                        }
                    }
                }
                _ => return,
            }
        }
    });
    let subscription = 1000 + channel;
    let tmpl = ua::PublishResponseTemplate::new(channel, token, subscription, cfg.items);
    let mut out = Vec::with_capacity(tmpl.bytes.len() * cfg.batch);
    let mut nm_seq: u32 = 0;
    let mut own_id: u32 = 0x4000_0000;
    let started = tokio::time::Instant::now();
    let result = loop {
        out.clear();
        let mut n = cfg.batch;
        if cfg.rate > 0.0 {
            // Paced: send what is due (the timer wakes about every millisecond).
            loop {
                let due = (started.elapsed().as_secs_f64() * cfg.rate) as u64;
                let sent = u64::from(nm_seq);
                if due > sent {
                    n = (due - sent).min(256) as usize;
                    break;
                }
                let next = started + Duration::from_secs_f64((sent + 1) as f64 / cfg.rate);
                tokio::time::sleep_until(next).await;
            }
        }
        let ts = ua::now_ticks();
        for _ in 0..n {
            let (rid, handle) = match rx.try_recv() {
                Ok(x) => x,
                Err(_) => {
                    own_id = own_id.wrapping_add(1);
                    (own_id, own_id)
                }
            };
            seq = seq.wrapping_add(1);
            nm_seq = nm_seq.wrapping_add(1);
            tmpl.emit(&mut out, seq, rid, handle, nm_seq, ts);
        }
        if let Err(e) = w.write_all(&out).await {
            break Err(e);
        }
    };
    reader.abort();
    result
}

// ------------------------------------------------------------------------------------------
// Client

struct ClientCfg {
    addr: SocketAddr,
    seconds: f64,
    warmup: f64,
    conns: usize,
    nodes: u32,
    handshake: bool,
}

struct Channel {
    s: TcpStream,
    frames: Frames,
    channel: u32,
    token: u32,
    seq: u32,
    request_id: u32,
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn open_channel(addr: SocketAddr) -> io::Result<Channel> {
    let mut s = connect(addr).await?;
    let mut frames = Frames::new(64 * 1024);
    s.write_all(&ua::hello(ENDPOINT)).await?;
    let c = frames.next(&mut s).await?.ok_or_else(eof)?;
    if &frames.buf[c.start..c.start + 3] != b"ACK" {
        return Err(io::Error::other("expected ACK"));
    }
    s.write_all(&ua::opn_request(1, 1)).await?;
    let c = frames.next(&mut s).await?.ok_or_else(eof)?;
    let (channel, token) = ua::opn_response_ids(&frames.buf[c]).ok_or_else(|| io::Error::other("bad OPN response"))?;
    Ok(Channel { s, frames, channel, token, seq: 1, request_id: 1 })
}

async fn client_stream(cfg: &ClientCfg) -> io::Result<String> {
    let Channel { s, channel, token, mut seq, mut request_id, frames } = open_channel(cfg.addr).await?;
    let (mut r, mut w) = s.into_split();
    let subscription = 1000 + channel;
    let mut publish = ua::PublishRequestTemplate::new(channel, token);
    // Bytes already buffered after the OPN response are part of the stream.
    let mut buf = vec![0u8; 256 * 1024];
    let mut hdr = [0u8; 8];
    let mut hdr_len = 0usize;
    let mut remaining = 0usize; // body bytes left in the current chunk
    let mut msgs: u64 = 0;
    let mut bytes: u64 = 0;
    let mut count = |data: &[u8], msgs: &mut u64| {
        let mut i = 0;
        while i < data.len() {
            if remaining > 0 {
                let take = remaining.min(data.len() - i);
                remaining -= take;
                i += take;
                if remaining == 0 {
                    *msgs += 1;
                }
                continue;
            }
            let take = (8 - hdr_len).min(data.len() - i);
            hdr[hdr_len..hdr_len + take].copy_from_slice(&data[i..i + take]);
            hdr_len += take;
            i += take;
            if hdr_len == 8 {
                hdr_len = 0;
                if &hdr[..4] != b"MSGF" {
                    panic!("unexpected chunk {:?}", &hdr[..4]);
                }
                remaining = ua::get_u32(&hdr, 4) as usize - 8;
            }
        }
    };
    let pending = &frames.buf[frames.start..frames.end];
    bytes += pending.len() as u64;
    count(pending, &mut msgs);
    let start = Instant::now();
    let t_warm = start + Duration::from_secs_f64(cfg.warmup);
    let t_end = t_warm + Duration::from_secs_f64(cfg.seconds);
    let mut at_warm: Option<(Instant, u64, u64)> = None;
    let mut acked: u64 = 0;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Err(eof());
        }
        bytes += n as u64;
        count(&buf[..n], &mut msgs);
        // One PublishRequest per 10 notification messages, acknowledging the last one.
        if msgs >= acked + 10 {
            acked = msgs;
            seq += 1;
            request_id += 1;
            publish.patch(seq, request_id, subscription, msgs as u32);
            w.write_all(&publish.bytes).await?;
        }
        let now = Instant::now();
        if at_warm.is_none() && now >= t_warm {
            at_warm = Some((now, bytes, msgs));
        }
        if now >= t_end {
            let (t0, b0, m0) = at_warm.unwrap_or((start, 0, 0));
            let secs = now.duration_since(t0).as_secs_f64();
            let mb = (bytes - b0) as f64 / 1e6 / secs;
            let mps = (msgs - m0) as f64 / secs;
            return Ok(format!(
                "{{\"mode\":\"stream\",\"secs\":{secs:.3},\"mb_per_s\":{mb:.2},\"msgs_per_s\":{mps:.0},\"msgs_total\":{msgs},\"bytes_total\":{bytes},\"requests_sent\":{}}}",
                request_id - 1
            ));
        }
    }
}

async fn client_pingpong(cfg: &ClientCfg) -> io::Result<String> {
    // Open every connection first, then start together.
    let mut chans = Vec::with_capacity(cfg.conns);
    for _ in 0..cfg.conns {
        chans.push(open_channel(cfg.addr).await?);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let t_warm = start + Duration::from_secs_f64(cfg.warmup);
    let t_end = t_warm + Duration::from_secs_f64(cfg.seconds);
    let mut tasks = Vec::new();
    for mut ch in chans {
        let nodes = cfg.nodes;
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
            let mut req = ua::ReadRequestTemplate::new(ch.channel, ch.token, nodes);
            tokio::time::sleep_until(start.into()).await;
            loop {
                ch.seq += 1;
                ch.request_id += 1;
                req.patch(ch.seq, ch.request_id, ch.request_id);
                let t = Instant::now();
                ch.s.write_all(&req.bytes).await?;
                let c = ch.frames.next(&mut ch.s).await?.ok_or_else(eof)?;
                let done = Instant::now();
                let chunk = &ch.frames.buf[c];
                if &chunk[..3] != b"MSG" || ua::get_u32(chunk, ua::MSG_REQUEST_ID) != ch.request_id {
                    return Err(io::Error::other("unexpected response"));
                }
                if t >= t_warm {
                    h.saturating_record(done.duration_since(t).as_nanos() as u64);
                }
                if done >= t_end {
                    return Ok::<_, io::Error>(h);
                }
            }
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    for t in tasks {
        let h = t.await.map_err(io::Error::other)??;
        all.add(&h).map_err(|e| io::Error::other(format!("{e:?}")))?;
    }
    let us = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    Ok(format!(
        "{{\"mode\":\"pingpong\",\"conns\":{},\"secs\":{:.3},\"count\":{},\"rate\":{:.0},\"mean_us\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
        cfg.conns,
        cfg.seconds,
        all.len(),
        all.len() as f64 / cfg.seconds,
        all.mean() / 1000.0,
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        all.max() as f64 / 1000.0
    ))
}

async fn client_idle(cfg: &ClientCfg) -> io::Result<String> {
    let mut held = Vec::with_capacity(cfg.conns);
    for _ in 0..cfg.conns {
        if cfg.handshake {
            held.push(open_channel(cfg.addr).await?.s);
        } else {
            held.push(connect(cfg.addr).await?);
        }
    }
    println!("READY {}", held.len());
    io::stdout().flush()?;
    tokio::time::sleep(Duration::from_secs_f64(cfg.seconds)).await;
    drop(held);
    Ok(format!("{{\"mode\":\"idle\",\"conns\":{},\"handshake\":{}}}", cfg.conns, cfg.handshake))
}
