//! The live proxy: every byte forwarded unchanged whatever the segmentation, real stacks
//! talking through it (checked on both legs with tshark), and upstream failures reported.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    all_fixture_captures, is_secured, peers_dir, python, read_events, streams, temp_dir, terminate,
    Rng,
};

/// A running `uatap proxy`, stopped (SIGTERM, so it flushes) when dropped.
pub struct Proxy {
    pub child: Child,
    pub listen: SocketAddr,
    pub json: PathBuf,
    /// The admin API address, when started with `--admin`.
    pub admin: Option<SocketAddr>,
}

impl Proxy {
    pub fn start(upstream: &str, dir: &Path) -> Proxy {
        Proxy::start_with(upstream, dir, &[])
    }

    /// Starts a proxy with extra options; waits for its banner (and its admin API line).
    pub fn start_with(upstream: &str, dir: &Path, extra: &[&str]) -> Proxy {
        let json = dir.join("events.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .arg("--json-file")
            .arg(&json)
            .args(["--duration", "120"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("uatap proxy starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        let wants_admin = extra.contains(&"--admin");
        let (mut listen, mut admin) = (None, None);
        while listen.is_none() || (wants_admin && admin.is_none()) {
            let mut line = String::new();
            let n = lines.read_line(&mut line).expect("banner");
            assert!(n > 0, "uatap proxy ended before its banner");
            if let Some(addr) = crate::util::banner_listen(&line) {
                listen = Some(addr.parse().expect("listen address"));
            }
            if let Some(rest) = line.split("admin API on http://").nth(1) {
                let addr = rest.split('/').next().expect("admin address");
                admin = Some(addr.parse().expect("admin address"));
            }
        }
        // Keep draining stderr so the proxy never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = lines.read_to_string(&mut sink);
        });
        Proxy {
            child,
            listen: listen.expect("listen"),
            json,
            admin,
        }
    }

    /// Stops the proxy and returns its JSON events.
    pub fn stop(mut self) -> Vec<Value> {
        terminate(&mut self.child);
        read_events(&self.json)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Writes `data` in random pieces with short random pauses, then half-closes.
pub fn write_randomly(mut s: TcpStream, data: Vec<u8>, seed: u64) {
    let mut rng = Rng(seed);
    let mut at = 0;
    while at < data.len() {
        let max = if rng.below(2) == 0 { 9 } else { 3000 };
        let n = 1 + rng.below(max);
        let end = (at + n).min(data.len());
        s.write_all(&data[at..end]).expect("write");
        at = end;
        if rng.below(8) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    s.shutdown(Shutdown::Write).expect("half-close");
}

pub fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read");
    v
}

/// Runs one exchange through the proxy: the client sends `c2s`, the server `s2c`, both in random
/// pieces; returns what each side received.
fn exchange(c2s: Vec<u8>, s2c: Vec<u8>, seed: u64) -> (Vec<u8>, Vec<u8>, Vec<Value>) {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir(&format!("proxy-{seed}"));
    let proxy = Proxy::start(&upstream, &dir);
    let server_side = std::thread::spawn(move || {
        let (s, _) = server.accept().expect("accept");
        let w = s.try_clone().expect("clone");
        let writer = std::thread::spawn(move || write_randomly(w, s2c, seed ^ 0x55));
        let got = read_all(s);
        writer.join().expect("server writer");
        got
    });
    let client = TcpStream::connect(proxy.listen).expect("connect to proxy");
    let w = client.try_clone().expect("clone");
    let writer = std::thread::spawn(move || write_randomly(w, c2s, seed));
    let client_got = read_all(client);
    writer.join().expect("client writer");
    let server_got = server_side.join().expect("server side");
    let events = proxy.stop();
    let _ = std::fs::remove_dir_all(dir);
    (server_got, client_got, events)
}

/// Byte-for-byte transparency under random TCP splits, on real OPC UA streams and on garbage.
#[test]
fn forwards_every_byte_unchanged_under_random_splits() {
    for (i, capture) in all_fixture_captures().iter().enumerate() {
        let (c2s, s2c) = streams(capture);
        let (server_got, client_got, events) = exchange(c2s.clone(), s2c.clone(), 7 + i as u64);
        assert!(
            server_got == c2s,
            "{}: server received other bytes",
            capture.display()
        );
        assert!(
            client_got == s2c,
            "{}: client received other bytes",
            capture.display()
        );
        let publishes = events.iter().filter(|e| e["kind"] == "publish").count();
        if !is_secured(capture) {
            assert!(
                publishes >= 4,
                "{}: {publishes} publish events",
                capture.display()
            );
        }
        let close = events
            .iter()
            .find(|e| e["kind"] == "conn_close")
            .expect("conn_close");
        assert_eq!(close["bytes_c2s"], c2s.len(), "{}", capture.display());
        assert_eq!(close["bytes_s2c"], s2c.len(), "{}", capture.display());
    }
    // Bytes that are not OPC UA are forwarded just the same; the analysis only reports them.
    let mut rng = Rng(99);
    let garbage: Vec<u8> = (0..50_000).map(|_| rng.below(256) as u8).collect();
    let back: Vec<u8> = garbage.iter().rev().copied().collect();
    let (server_got, client_got, events) = exchange(garbage.clone(), back.clone(), 3);
    assert!(
        server_got == garbage && client_got == back,
        "garbage altered"
    );
    assert!(events.iter().any(|e| e["kind"] == "decode_error"));
}

/// A long burst keeps a relay busy past its share of the runtime: it must yield and go on, and
/// every byte arrives (a relay that spun instead would never finish this transfer).
#[test]
fn a_long_burst_goes_through_whole() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("proxy-burst");
    let proxy = Proxy::start(&upstream, &dir);
    // One oversized chunk: the analysis reports its size and skips it without reading it.
    let mut data: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    let len = data.len() as u32;
    data[..4].copy_from_slice(b"MSGF");
    data[4..8].copy_from_slice(&len.to_le_bytes());
    let sent = data.clone();
    let server_side = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        for piece in sent.chunks(1 << 20) {
            s.write_all(piece).expect("server write");
        }
        s.shutdown(Shutdown::Write).expect("half-close");
        read_all(s)
    });
    let client = TcpStream::connect(proxy.listen).expect("connect to proxy");
    // A stalled relay fails the test instead of hanging it.
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    client.shutdown(Shutdown::Write).expect("client half-close");
    let got = read_all(client);
    assert_eq!(server_side.join().expect("server side"), b"");
    assert!(got == data, "{} of {} bytes arrived", got.len(), data.len());
    drop(proxy.stop());
    let _ = std::fs::remove_dir_all(dir);
}

/// The client→server bytes of the client leg (the one whose server is `server_port`) in a
/// recording, and the error that cut reading short, if any.
fn recorded_c2s(path: &Path, proxy_port: u16) -> (Vec<u8>, Option<uatap_recorder::RecorderError>) {
    let (events, damage) = uatap_recorder::read_streams(path).expect("recording opens");
    let mut client_leg = None;
    let mut bytes = Vec::new();
    for e in events {
        match e {
            uatap_recorder::StreamEvent::Open { conn, server, .. }
                if server.port() == proxy_port =>
            {
                client_leg = Some(conn);
            }
            uatap_recorder::StreamEvent::Data {
                conn,
                dir: uatap_recorder::Direction::AToB,
                bytes: b,
                ..
            } if Some(conn) == client_leg => bytes.extend_from_slice(&b),
            _ => {}
        }
    }
    (bytes, damage)
}

/// A recording collects blocks in memory and writes them together: once the traffic pauses
/// they are on disk, so a `kill -9` then loses nothing and leaves a file that reads without
/// error; killed in the middle of traffic, what was written still reads, in order, and at
/// most the last block is cut.
#[test]
fn recording_survives_kill_9() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("proxy-kill-9");
    let rec = dir.join("rec.pcapng");
    let mut proxy = Proxy::start_with(
        &upstream,
        &dir,
        &["--record", rec.to_str().expect("utf-8 path")],
    );
    let server_side = std::thread::spawn(move || {
        let (s, _) = server.accept().expect("accept");
        read_all(s)
    });
    let mut rng = Rng(5);
    let data: Vec<u8> = (0..8_000_000).map(|_| rng.below(256) as u8).collect();
    let first = 1_000_000;
    let mut client = TcpStream::connect(proxy.listen).expect("connect to proxy");
    client.write_all(&data[..first]).expect("send");
    // The traffic pauses: the recording gets everything so far.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (got, damage) = recorded_c2s(&rec, proxy.listen.port());
        if got.len() == first {
            assert!(
                got == data[..first],
                "recorded bytes differ from the sent ones"
            );
            assert!(damage.is_none(), "{damage:?}");
            break;
        }
        assert!(
            got.len() < first && got == data[..got.len()],
            "recorded bytes differ"
        );
        assert!(
            Instant::now() < deadline,
            "the recording never got the first {first} bytes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Traffic flows again, and the proxy is killed in the middle of it.
    let sender = std::thread::spawn(move || {
        for piece in data[first..].chunks(64 * 1024) {
            if client.write_all(piece).is_err() {
                break;
            }
        }
        data
    });
    std::thread::sleep(Duration::from_millis(20));
    proxy.child.kill().expect("kill -9");
    let _ = proxy.child.wait();
    let data = sender.join().expect("sender");
    let _ = server_side.join();
    let (got, damage) = recorded_c2s(&rec, proxy.listen.port());
    assert!(
        got.len() >= first,
        "the killed proxy's recording lost what was on disk"
    );
    assert!(
        got == data[..got.len()],
        "recorded bytes differ from the sent ones"
    );
    // At most a block cut by the kill, at the very end.
    assert!(
        matches!(
            damage,
            None | Some(uatap_recorder::RecorderError::Truncated { .. })
        ),
        "{damage:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A client that vanishes in the middle of a message (reset) is reported, and another client
/// on the same proxy at the same time is served byte for byte.
#[test]
fn client_vanishing_mid_message_does_not_disturb_others() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("vanish");
    let proxy = Proxy::start(&upstream, &dir);
    let capture = &crate::util::fixture_captures()[0];
    let (c2s, s2c) = streams(capture);
    let reply = s2c.clone();
    let server_side = std::thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..2 {
            let (s, _) = server.accept().expect("accept");
            let reply = reply.clone();
            got.push(std::thread::spawn(move || {
                let w = s.try_clone().expect("clone");
                let mut first = [0u8; 1];
                let mut r = s;
                // The vanishing client sends a partial HEL only; the good one sends everything.
                let n = r.read(&mut first).unwrap_or(0);
                let mut rest = Vec::new();
                let _ = r.read_to_end(&mut rest);
                let mut all = first[..n].to_vec();
                all.extend(rest);
                if all.len() > 100 {
                    write_randomly(w, reply, 11);
                }
                all
            }));
        }
        got.into_iter()
            .map(|h| h.join().expect("server conn"))
            .collect::<Vec<_>>()
    });
    // Client A: half a HEL, then a reset.
    let a = TcpStream::connect(proxy.listen).expect("connect");
    (&a).write_all(&c2s[..20]).expect("partial HEL");
    std::thread::sleep(Duration::from_millis(200));
    socket2::SockRef::from(&a)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(a);
    // Client B: a whole conversation.
    let b = TcpStream::connect(proxy.listen).expect("connect");
    let w = b.try_clone().expect("clone");
    let sent = c2s.clone();
    let writer = std::thread::spawn(move || write_randomly(w, sent, 5));
    let b_got = read_all(b);
    writer.join().expect("writer");
    let server_got = server_side.join().expect("server");
    assert!(b_got == s2c, "the other client got other bytes");
    assert!(
        server_got.contains(&c2s),
        "the server got the whole conversation"
    );
    assert!(
        server_got
            .iter()
            .any(|g| g.len() == 20 && g[..] == c2s[..20]),
        "and the partial HEL"
    );
    let events = proxy.stop();
    let closes: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "conn_close")
        .collect();
    assert_eq!(closes.len(), 2);
    let vanished = closes
        .iter()
        .find(|e| e["bytes_c2s"] == 20)
        .expect("the vanished client");
    assert_eq!(vanished["by"], "client");
    assert_eq!(vanished["reason"], "rst");
    assert!(events.iter().filter(|e| e["kind"] == "publish").count() >= 30);
    let _ = std::fs::remove_dir_all(dir);
}

/// A server that resets mid-session: the reset is passed on to the client and reported.
#[test]
fn server_reset_is_mirrored_and_reported() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("server-reset");
    let proxy = Proxy::start(&upstream, &dir);
    let capture = &crate::util::fixture_captures()[0];
    let (c2s, s2c) = streams(capture);
    let partial = s2c[..s2c.len() / 2].to_vec();
    let server_side = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        s.write_all(&partial).expect("half the answers");
        std::thread::sleep(Duration::from_millis(300));
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(s);
    });
    let mut client = TcpStream::connect(proxy.listen).expect("connect");
    client.write_all(&c2s[..c2s.len() / 2]).expect("requests");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let ended = loop {
        match client.read(&mut buf) {
            Ok(0) => break "fin",
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!("{e}"),
        }
    };
    server_side.join().expect("server");
    assert_eq!(ended, "reset", "the client sees the server's reset");
    assert!(
        got == s2c[..s2c.len() / 2],
        "what came before the reset arrived unchanged"
    );
    let events = proxy.stop();
    let err = events
        .iter()
        .find(|e| e["kind"] == "upstream_error")
        .expect("upstream_error");
    assert_eq!(err["error"], "reset");
    let close = events
        .iter()
        .find(|e| e["kind"] == "conn_close")
        .expect("close");
    assert_eq!(close["by"], "server");
    assert_eq!(close["reason"], "rst");
    let _ = std::fs::remove_dir_all(dir);
}

/// A server that refuses: the client's connection is reset at once and the event says what
/// the client sees instead of a refusal.
#[test]
fn upstream_refusal_is_reported() {
    let (_reserved, port) = crate::util::refused_port();
    let dir = temp_dir("refused");
    let proxy = Proxy::start(&format!("127.0.0.1:{port}"), &dir);
    let started = Instant::now();
    let mut c = TcpStream::connect(proxy.listen).expect("the proxy accepts");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let r = c.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed at once");
    let events = proxy.stop();
    let err = events
        .iter()
        .find(|e| e["kind"] == "upstream_error")
        .expect("upstream_error");
    assert_eq!(err["error"], "refused");
    let reject = events
        .iter()
        .find(|e| e["kind"] == "reject")
        .expect("reject");
    assert_eq!(reject["stage"], "tcp");
    assert_eq!(reject["cause"], "tcp_refused");
    assert_eq!(reject["status_name"], "Bad_ConnectionRejected");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("Bad_ConnectionClosed"),
        "{err}"
    );
    let close = events
        .iter()
        .find(|e| e["kind"] == "conn_close")
        .expect("conn_close");
    assert_eq!(close["by"], "proxy");
    let _ = std::fs::remove_dir_all(dir);
}

/// A server that never answers a SYN (its accept queue is full, so the kernel drops new SYNs,
/// as a firewall dropping packets would): the proxy gives up after --connect-timeout and reports
/// a timeout. All on loopback.
#[test]
fn upstream_connect_timeout_is_reported() {
    let silent =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    silent
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    // A backlog of 0 holds one connection: fill it, and never accept.
    silent.listen(0).expect("listen");
    let port = silent.local_addr().unwrap().as_socket().unwrap().port();
    let _filler = TcpStream::connect(("127.0.0.1", port)).expect("fills the queue");
    let probe = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    );
    assert!(probe.is_err(), "the queue is full: new connects hang");
    let dir = temp_dir("connect-timeout");
    let proxy = Proxy::start_with(
        &format!("127.0.0.1:{port}"),
        &dir,
        &["--connect-timeout", "0.5"],
    );
    let mut c = TcpStream::connect(proxy.listen).expect("the proxy accepts");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let r = c.read(&mut buf);
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "closed after the timeout: {r:?}"
    );
    let events = proxy.stop();
    let err = events
        .iter()
        .find(|e| e["kind"] == "upstream_error")
        .expect("upstream_error");
    assert_eq!(err["error"], "timeout", "{err}");
    let reject = events
        .iter()
        .find(|e| e["kind"] == "reject")
        .expect("reject");
    assert_eq!(reject["cause"], "tcp_timeout");
    assert_eq!(reject["status_name"], "Bad_Timeout");
    assert!(
        err["detail"].as_str().unwrap().contains("no answer within"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

pub fn wait_ready(child: &mut Child) -> String {
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if l.contains("READY") => {
                std::thread::spawn(move || for _ in lines {});
                return l;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    panic!("server never printed READY");
}

/// Real stacks through the proxy, both legs captured with tshark: what each side received is
/// exactly what the other sent, and the proxy's live events tell the same story.
/// `payload_once`: the recording is made with `--record-payload-once` (the server's leg without
/// its bytes).
fn real_peers_through_proxy(server: &str, client: &str, payload_once: bool) {
    let dir = temp_dir(&format!("peers-{server}-{client}-{payload_once}"));
    let (sport, pcap) = (crate::util::free_port(), dir.join("legs.pcapng"));
    let mut srv = match server {
        "node" => Command::new("node")
            .arg(peers_dir().join("ua_server.js"))
            .args(["--port", &sport.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn(),
        _ => Command::new(python())
            .arg(peers_dir().join("ua_server.py"))
            .args(["--port", &sport.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn(),
    }
    .expect("server starts");
    wait_ready(&mut srv);
    // The proxy listens on a port the kernel picks (a fixed one may be taken by another test
    // by then); the capture starts once it is known, before any traffic.
    let json = dir.join("events.jsonl");
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["proxy", "--listen", "127.0.0.1:0"])
        .args([
            "--upstream",
            &format!("opc.tcp://127.0.0.1:{sport}/UA/Test"),
        ])
        .arg("--json-file")
        .arg(&json)
        .arg("--record")
        .arg(dir.join("recording.pcapng"))
        // `message` events too: they are compared with tshark's fields below.
        .arg("--messages")
        .args(payload_once.then_some("--record-payload-once"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("proxy starts");
    // The banner comes once the listener is bound.
    let mut banner = BufReader::new(proxy.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("proxying") {
        line.clear();
        assert!(
            banner.read_line(&mut line).expect("proxy stderr") > 0,
            "the proxy ended before listening"
        );
    }
    std::thread::spawn(move || for _ in banner.lines() {});
    let pport: u16 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("opc.tcp://"))
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("no listen address in {line:?}"));
    let mut tshark = Command::new("tshark")
        .args(["-i", "lo", "-w"])
        .arg(&pcap)
        .args(["-f", &format!("tcp port {sport} or tcp port {pport}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark runs");
    let mut err = BufReader::new(tshark.stderr.take().expect("stderr"));
    let mut tline = String::new();
    while err.read_line(&mut tline).expect("tshark stderr") > 0 && !tline.contains("Capturing on") {
        tline.clear();
    }
    std::thread::spawn(move || for _ in err.lines() {});
    let url = format!("opc.tcp://127.0.0.1:{pport}/UA/Test");
    let status = match client {
        "node" => Command::new("node")
            .arg(peers_dir().join("ua_client.js"))
            .args(["basic", &url])
            .stdout(Stdio::null())
            .status(),
        _ => Command::new(python())
            .arg(peers_dir().join("ua_client.py"))
            .args(["basic", &url])
            .stdout(Stdio::null())
            .status(),
    }
    .expect("client runs");
    assert!(
        status.success(),
        "{client} client through the proxy: {status}"
    );
    std::thread::sleep(Duration::from_millis(700));
    terminate(&mut proxy);
    let _ = srv.kill();
    let _ = Command::new("kill")
        .args(["-INT", &tshark.id().to_string()])
        .status();
    let _ = tshark.wait();

    let mut legs: std::collections::BTreeMap<u16, (Vec<u8>, Vec<u8>)> = Default::default();
    let (events, damage) = uatap_recorder::read_streams(&pcap).expect("capture");
    assert!(damage.is_none(), "{damage:?}");
    let mut server_port_of = std::collections::HashMap::new();
    for e in &events {
        if let uatap_recorder::StreamEvent::Open { conn, server, .. } = e {
            server_port_of.insert(*conn, server.port());
        }
    }
    for e in events {
        if let uatap_recorder::StreamEvent::Data {
            conn, dir, bytes, ..
        } = e
        {
            let leg = legs.entry(server_port_of[&conn]).or_default();
            match dir {
                uatap_recorder::Direction::AToB => leg.0.extend_from_slice(&bytes),
                uatap_recorder::Direction::BToA => leg.1.extend_from_slice(&bytes),
            }
        }
    }
    let client_leg = legs.get(&pport).expect("client leg captured");
    let server_leg = legs.get(&sport).expect("server leg captured");
    assert!(client_leg.0.len() > 1000 && client_leg.1.len() > 1000);
    assert!(
        client_leg.0 == server_leg.0,
        "client->server bytes differ between the legs"
    );
    assert!(
        client_leg.1 == server_leg.1,
        "server->client bytes differ between the legs"
    );

    let live: Vec<Value> = std::fs::read_to_string(&json)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let seqs: Vec<u64> = live
        .iter()
        .filter(|e| e["kind"] == "publish" && e["keep_alive"] == false)
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert!(seqs.len() >= 10, "{seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(!live
        .iter()
        .any(|e| e["kind"] == "sequence_gap" || e["kind"] == "decode_error"));

    // The proxy's own recording: the same events offline as live, to the microsecond, and
    // tshark decodes both legs without a malformed packet.
    let recording = dir.join("recording.pcapng");
    let offline = crate::util::run(
        Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["analyze", "--json", "--messages"])
            .arg(&recording),
    );
    let live_text = std::fs::read_to_string(&json).expect("events");
    assert_eq!(
        offline, live_text,
        "analyze on the recording == the live events"
    );
    let ports = [
        "-d".to_string(),
        format!("tcp.port=={sport},opcua"),
        "-d".to_string(),
        format!("tcp.port=={pport},opcua"),
    ];
    let expert = crate::util::run(
        Command::new("tshark")
            .arg("-r")
            .arg(&recording)
            .args(&ports)
            .args(["-z", "expert,warn", "-q"]),
    );
    assert!(
        !expert.contains("Malformed") && !expert.contains("Error"),
        "{expert}"
    );
    // tshark verifies the TCP checksum of every packet that holds its bytes (the relays sum
    // the bytes they read for the recording, the recording thread writes them later): none
    // is bad, and every one holding bytes is good.
    let tshark_count = |filter: &str| {
        crate::util::run(
            Command::new("tshark")
                .arg("-r")
                .arg(&recording)
                .args(&ports)
                .args(["-o", "tcp.check_checksum:TRUE", "-Y", filter]),
        )
        .lines()
        .count()
    };
    assert_eq!(tshark_count("tcp.checksum.status == 0"), 0, "bad checksums");
    let captured = tshark_count("tcp.len > 0 && frame.len == frame.cap_len");
    assert!(captured > 20, "{captured} packets with bytes");
    assert_eq!(
        tshark_count("tcp.len > 0 && frame.len == frame.cap_len && tcp.checksum.status == 1"),
        captured,
        "every packet with bytes has a good checksum"
    );
    let messages = live.iter().filter(|e| e["kind"] == "message").count();
    if payload_once {
        let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .arg("analyze")
            .arg(&recording)
            .output()
            .expect("analyze runs");
        let notes = String::from_utf8_lossy(&out.stderr);
        assert!(
            notes.contains("1 TCP connection carried") && notes.contains("--record-payload-once"),
            "analyze says that the server leg has no bytes: {notes}"
        );
        // The server's leg is there, packet for packet, without its bytes.
        let cut = crate::util::run(
            Command::new("tshark")
                .arg("-r")
                .arg(&recording)
                .args(["-Y", &format!("tcp.port=={sport} && tcp.len > 0")])
                .args([
                    "-T",
                    "fields",
                    "-e",
                    "frame.len",
                    "-e",
                    "frame.cap_len",
                    "-e",
                    "tcp.len",
                ]),
        );
        let mut server_leg_bytes = 0usize;
        for line in cut.lines() {
            let f: Vec<usize> = line
                .split('\t')
                .map(|x| x.parse().expect("number"))
                .collect();
            assert!(f[1] < f[0], "the server leg's payload is left out: {line}");
            server_leg_bytes += f[2];
        }
        assert_eq!(
            server_leg_bytes,
            client_leg.0.len() + client_leg.1.len(),
            "the server leg's packets count every byte"
        );
        let compared = crate::crosscheck::crosscheck_with(
            &recording,
            &[sport, pport],
            &["--leg", "client"],
            crate::crosscheck::FIELDS,
        );
        assert_eq!(compared, messages, "every message on the client leg");
    } else {
        // tshark's OPC UA fields agree with uatap's message events, message by message, on
        // both legs.
        let compared = crate::crosscheck::crosscheck_with(
            &recording,
            &[sport, pport],
            &["--leg", "both"],
            crate::crosscheck::FIELDS,
        );
        assert_eq!(compared, 2 * messages, "every message on both legs");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn asyncua_client_node_server_through_proxy() {
    real_peers_through_proxy("node", "asyncua", false);
}

#[test]
fn recording_with_the_payload_once_keeps_the_server_leg_s_packets_without_bytes() {
    real_peers_through_proxy("node", "asyncua", true);
}

#[test]
fn node_client_asyncua_server_through_proxy() {
    real_peers_through_proxy("asyncua", "node", false);
}
