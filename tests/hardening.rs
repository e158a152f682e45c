//! Hardening (issue #10): slow and abusive peers and upstream faults against a running
//! `uatap proxy`. Each test checks that the bytes still pass unchanged, that the proxy reports
//! what happened as events (JSON fields and the terminal line), that its memory and file
//! descriptors stay bounded, and that a second, well-behaved connection through the same proxy
//! keeps working meanwhile. Peers are synthetic (the abuse is the point); all on 127.0.0.1.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::chunks;
use crate::util::{read_events, refused_port, root, streams, temp_dir, terminate};

/// A running `uatap proxy` whose terminal log (stdout) and stderr go to files.
struct Running {
    child: Child,
    listen: SocketAddr,
    json: PathBuf,
    stdout: PathBuf,
}

impl Running {
    /// Starts `uatap proxy --upstream UPSTREAM EXTRA...` and waits for its banner.
    fn start(upstream: &str, dir: &Path, extra: &[&str]) -> Running {
        let json = dir.join("events.jsonl");
        let stdout = dir.join("stdout.txt");
        let stderr = dir.join("stderr.txt");
        let child = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .arg("--json-file")
            .arg(&json)
            .args(["--duration", "120"])
            .args(extra)
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("uatap proxy starts");
        let listen = crate::util::wait_banner_in(&stderr, Duration::from_secs(30))
            .parse()
            .expect("listen address");
        Running {
            child,
            listen,
            json,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The events written so far (the proxy flushes at least every 200 ms).
    fn events_now(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.json)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits up to `secs` for an event that `pred` accepts; fails the test otherwise.
    fn wait_event(&self, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(e) = self.events_now().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} event within {secs} s: {:#?}",
                self.events_now()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the proxy (SIGTERM, so it flushes); returns its events and its terminal log.
    fn stop(mut self) -> (Vec<Value>, String) {
        let status = terminate(&mut self.child);
        assert!(status.success(), "uatap proxy exited with {status}");
        let text = std::fs::read_to_string(&self.stdout).expect("terminal log");
        (read_events(&self.json), text)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A value in kB from /proc/PID/status (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Open file descriptors of a process.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count()
}

/// Waits up to 10 s for the proxy's fd count to come back to `baseline`; returns the last count.
fn fds_back_to(pid: u32, baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = fd_count(pid);
        if n <= baseline || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server that echoes every connection, each on its own thread, until the test ends.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || echo_on(l));
    addr
}

fn echo_on(l: TcpListener) {
    for s in l.incoming() {
        let Ok(mut s) = s else { return };
        std::thread::spawn(move || {
            let mut r = s.try_clone().expect("clone");
            let _ = std::io::copy(&mut r, &mut s);
            let _ = s.shutdown(Shutdown::Write);
        });
    }
}

/// The well-behaved connection: 256 KiB through the proxy to an echo server and back,
/// unchanged, within 20 s.
fn well_behaved(proxy: SocketAddr) {
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let s = TcpStream::connect(proxy).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).expect("write");
        w.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut got = Vec::new();
    (&s).read_to_end(&mut got).expect("echo comes back");
    writer.join().expect("writer");
    assert!(
        got == data,
        "the well-behaved connection got its bytes back unchanged"
    );
}

/// Events of one kind.
fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// Events of the connection from the client's local port `port`.
fn conn_of(events: &[Value], port: u16) -> Vec<&Value> {
    let prefix = format!("127.0.0.1:{port}->");
    events
        .iter()
        .filter(|e| e["conn"].as_str().is_some_and(|c| c.starts_with(&prefix)))
        .collect()
}

/// A slowloris client sends a HEL one byte a second: the server gets each byte at once, and
/// the proxy reports the chunk stalled (`message_stalled`) while an echo connection through the
/// same proxy works.
#[test]
fn slowloris_hel_is_forwarded_at_once_and_reported() {
    let dir = temp_dir("hard-slowloris");
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let proxy = Running::start(&upstream, &dir, &["--stall-after", "2"]);
    let client = TcpStream::connect(proxy.listen).expect("connect");
    let client_port = client.local_addr().expect("addr").port();
    let (mut slow, _) = server.accept().expect("accept");
    // Later connections are echoed.
    std::thread::spawn(move || echo_on(server));
    slow.set_read_timeout(Some(Duration::from_millis(900)))
        .expect("timeout");
    let hel = b"HELF\x38\x00\x00\x00";
    let mut client = client;
    for (i, b) in hel.iter().take(4).enumerate() {
        let t = Instant::now();
        client.write_all(&[*b]).expect("one byte");
        let mut got = [0u8; 1];
        slow.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("byte {i} not forwarded within 900 ms: {e}"));
        assert_eq!(got[0], *b, "byte {i} forwarded unchanged");
        if i == 1 {
            well_behaved(proxy.listen);
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    }
    let stalled = proxy.wait_event(10, "message_stalled", |e| e["kind"] == "message_stalled");
    assert_eq!(stalled["dir"], "c2s");
    assert_eq!(stalled["offset"], 0, "the chunk begins the stream");
    let held = stalled["buffered_bytes"].as_u64().expect("buffered_bytes");
    assert!((2..=4).contains(&held), "{stalled}");
    assert!(stalled["stalled_ms"].as_u64().expect("stalled_ms") >= 2000);
    assert!(stalled["conn"]
        .as_str()
        .expect("conn")
        .starts_with(&format!("127.0.0.1:{client_port}->")));
    drop(client);
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = slow.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing but the client's bytes: {rest:?}");
    let (events, text) = proxy.stop();
    assert_eq!(
        of_kind(&events, "message_stalled").len(),
        1,
        "reported once per chunk: {events:#?}"
    );
    assert!(
        text.lines().any(|l| l.contains("MESSAGE STALLED: the client began a chunk at offset 0 and it is still incomplete after")),
        "{text}"
    );
}

/// A client that stops inside a chunk and sends nothing more: only time tells, and the proxy
/// gives the analysis the time, so the stall is reported while nothing comes.
#[test]
fn a_client_that_stops_inside_a_chunk_is_reported_by_time() {
    let dir = temp_dir("hard-stopped");
    let upstream = echo_server().to_string();
    let proxy = Running::start(&upstream, &dir, &["--stall-after", "1"]);
    let mut c = TcpStream::connect(proxy.listen).expect("connect");
    c.write_all(b"HELF\x38").expect("write");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut echoed = [0u8; 5];
    c.read_exact(&mut echoed).expect("forwarded at once");
    assert_eq!(&echoed, b"HELF\x38");
    let stalled = proxy.wait_event(10, "message_stalled", |e| e["kind"] == "message_stalled");
    assert_eq!(stalled["dir"], "c2s");
    assert_eq!(stalled["buffered_bytes"], 5);
    assert!(stalled["stalled_ms"].as_u64().expect("stalled_ms") >= 1000);
    // The server's echo of the same bytes stalls the same way.
    proxy.wait_event(10, "message_stalled s2c", |e| {
        e["kind"] == "message_stalled" && e["dir"] == "s2c"
    });
    well_behaved(proxy.listen);
    drop(c);
    let (events, _) = proxy.stop();
    assert_eq!(of_kind(&events, "message_stalled").len(), 2, "{events:#?}");
}

/// A server that never reads while the client tries to push 200 MB: the proxy holds a bounded
/// amount (its peak RSS stays under 64 MiB), reports the blocked write (`write_blocked`), and
/// an echo connection through the same proxy works meanwhile.
#[test]
fn never_reading_server_keeps_the_proxy_bounded_and_is_reported() {
    never_reading_server("hard-noread", &[]);
}

/// The same through the relay that applies faults (on with `--admin`, even with no fault).
#[test]
fn never_reading_server_is_reported_by_the_fault_relay_too() {
    never_reading_server("hard-noread-faults", &["--admin", "127.0.0.1:0"]);
}

fn never_reading_server(name: &str, extra: &[&str]) {
    let dir = temp_dir(name);
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let mut args = vec!["--stall-after", "2"];
    args.extend_from_slice(extra);
    let proxy = Running::start(&upstream, &dir, &args);
    let pid = proxy.pid();
    let rss_before = status_kb(pid, "VmRSS");
    let client = TcpStream::connect(proxy.listen).expect("connect");
    let (deaf, _) = server.accept().expect("accept");
    std::thread::spawn(move || echo_on(server));
    client.set_nonblocking(true).expect("nonblocking");
    let block = vec![0x5au8; 1 << 20];
    let target: u64 = 200 << 20;
    let (mut attempted, mut accepted) = (0u64, 0u64);
    let start = Instant::now();
    let mut checked_other = false;
    let mut c = &client;
    // 200 tries of 1 MiB, 20 ms apart when the socket is full: about 4 s, past the stall
    // threshold.
    while attempted < target {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the client loop ends"
        );
        attempted += block.len() as u64;
        match c.write(&block) {
            Ok(n) => accepted += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("client write: {e}"),
        }
        if !checked_other && start.elapsed() > Duration::from_secs(1) {
            checked_other = true;
            well_behaved(proxy.listen);
        }
    }
    assert!(
        checked_other,
        "the echo connection was tried during the stall"
    );
    let blocked = proxy.wait_event(10, "write_blocked", |e| e["kind"] == "write_blocked");
    let (rss, hwm) = (status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM"));
    eprintln!(
        "never-reading server: client attempted {} MiB, the kernel took {} KiB; proxy RSS {} KiB before, {} KiB now, peak {} KiB",
        attempted >> 20,
        accepted >> 10,
        rss_before,
        rss,
        hwm
    );
    assert!(
        accepted < 64 << 20,
        "flow control stopped the client: {accepted}"
    );
    assert!(hwm < 64 * 1024, "proxy peak RSS {hwm} KiB over 64 MiB");
    assert_eq!(blocked["dir"], "c2s", "{blocked}");
    assert!(blocked["blocked_ms"].as_u64().expect("blocked_ms") >= 2000);
    let pending = blocked["pending_bytes"].as_u64().expect("pending_bytes");
    assert!(
        pending > 0 && pending <= 128 * 1024,
        "one read buffer at most: {blocked}"
    );
    drop(client);
    drop(deaf);
    let (events, text) = proxy.stop();
    assert_eq!(
        of_kind(&events, "write_blocked").len(),
        1,
        "one report per stall: {events:#?}"
    );
    assert!(
        text.lines().any(|l| l.contains("WRITE BLOCKED for")
            && l.contains("the server does not read")
            && l.contains("stopped reading from the client")),
        "{text}"
    );
}

/// A HEL that claims 4 GiB (MessageSize 0xFFFFFFFF) and one with every size field at
/// 0xFFFFFFFF: both reach the server unchanged; the first is a decode_error (a limit, not an
/// allocation: the peak RSS stays small), the second a hello event with the sizes as sent.
#[test]
fn hel_claiming_4_gib_is_reported_and_forwarded_unchanged() {
    let dir = temp_dir("hard-hel4g");
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let proxy = Running::start(&upstream, &dir, &[]);
    let url = b"opc.tcp://127.0.0.1:4840";
    let hel = |size: u32| {
        let mut v = b"HELF".to_vec();
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        for _ in 0..4 {
            v.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        v.extend_from_slice(&(url.len() as u32).to_le_bytes());
        v.extend_from_slice(url);
        v
    };
    let huge = hel(u32::MAX);
    let honest = hel(hel(0).len() as u32);
    let mut ports = Vec::new();
    for bytes in [&huge, &honest] {
        let mut client = TcpStream::connect(proxy.listen).expect("connect");
        ports.push(client.local_addr().expect("addr").port());
        let (mut s, _) = server.accept().expect("accept");
        client.write_all(bytes).expect("write");
        client.shutdown(Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("server reads");
        assert!(&got == bytes, "forwarded unchanged");
        drop(s);
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
    }
    std::thread::spawn(move || echo_on(server));
    well_behaved(proxy.listen);
    let hwm = status_kb(proxy.pid(), "VmHWM");
    eprintln!("4 GiB HEL: proxy peak RSS {hwm} KiB");
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB");
    let (events, text) = proxy.stop();
    let first = conn_of(&events, ports[0]);
    let errors: Vec<_> = first
        .iter()
        .filter(|e| e["kind"] == "decode_error")
        .collect();
    assert_eq!(errors.len(), 1, "{first:#?}");
    let what = errors[0]["what"].as_str().expect("what");
    assert!(
        what.contains("MessageSize") && what.contains("4294967295"),
        "{what}"
    );
    assert_eq!(errors[0]["dir"], "c2s");
    assert_eq!(errors[0]["offset"], 4, "the MessageSize field");
    assert!(errors[0]["hex_prefix"]
        .as_str()
        .expect("hex")
        .starts_with("48454c46ffffffff"));
    let second = conn_of(&events, ports[1]);
    let hello = second
        .iter()
        .find(|e| e["kind"] == "hello")
        .expect("hello event");
    for f in [
        "receive_buffer_size",
        "send_buffer_size",
        "max_message_size",
        "max_chunk_count",
    ] {
        assert_eq!(hello[f], u64::from(u32::MAX), "{f}: {hello}");
    }
    assert!(
        !second.iter().any(|e| e["kind"] == "decode_error"),
        "{second:#?}"
    );
    assert!(
        text.lines().any(|l| l.contains("DECODE ERROR at 4")
            && l.contains("MessageSize is 4294967295, over the limit")),
        "{text}"
    );
}

/// The smallest MSG chunk of a None channel (24 bytes, empty body).
fn tiny_chunk(kind: u8, channel: u32, token: u32, seq: u32, request: u32) -> [u8; 24] {
    let mut c = [0u8; 24];
    c[..3].copy_from_slice(b"MSG");
    c[3] = kind;
    c[4..8].copy_from_slice(&24u32.to_le_bytes());
    for (i, v) in [channel, token, seq, request].into_iter().enumerate() {
        c[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    c
}

/// After a real HEL/ACK/OPN of a None channel the client sends one message in 10^6 chunks:
/// every byte reaches the server unchanged, the reassembly stops at its ceiling of 65536 chunks
/// and says so once, and the proxy's peak RSS stays small.
#[test]
fn a_million_tiny_chunks_are_bounded_reported_and_forwarded() {
    let dir = temp_dir("hard-chunks");
    let (c2s, s2c) = streams(&root().join("fixtures/basic-none.pcapng"));
    let (cc, sc) = (chunks(&c2s), chunks(&s2c));
    assert!(&cc[0][..3] == b"HEL" && &cc[1][..3] == b"OPN" && &cc[2][..3] == b"MSG");
    let mut ack = sc[0].clone();
    assert_eq!(&ack[..3], b"ACK");
    // MaxMessageSize and MaxChunkCount 0 (no limit): uatap's own ceiling applies.
    ack[20..28].fill(0);
    let word = |c: &[u8], at: usize| u32::from_le_bytes(c[at..at + 4].try_into().expect("4"));
    let (channel, token, seq, request) = (
        word(&cc[2], 8),
        word(&cc[2], 12),
        word(&cc[2], 16),
        word(&cc[2], 20),
    );
    let n: u32 = 1_000_000;
    let mut sent =
        Vec::with_capacity(cc[0].len() + cc[1].len() + cc[2].len() + 24 * (n as usize + 1));
    for c in &cc[..3] {
        sent.extend_from_slice(c);
    }
    for i in 0..=n {
        let kind = if i == n { b'F' } else { b'C' };
        sent.extend_from_slice(&tiny_chunk(kind, channel, token, seq + 1 + i, request + 1));
    }
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let proxy = Running::start(&upstream, &dir, &[]);
    let answer: Vec<u8> = [ack, sc[1].clone()].concat();
    let server_side = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        s.write_all(&answer).expect("ACK and OPN response");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("server reads");
        std::thread::spawn(move || echo_on(server));
        got
    });
    let client = TcpStream::connect(proxy.listen).expect("connect");
    let port = client.local_addr().expect("addr").port();
    let mut w = client.try_clone().expect("clone");
    let to_send = sent.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&to_send).expect("write");
        w.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut got_back = Vec::new();
    (&client).read_to_end(&mut got_back).expect("client reads");
    writer.join().expect("writer");
    let got = server_side.join().expect("server");
    assert!(
        got.len() == sent.len() && got == sent,
        "every byte forwarded unchanged ({} of {})",
        got.len(),
        sent.len()
    );
    well_behaved(proxy.listen);
    let hwm = status_kb(proxy.pid(), "VmHWM");
    eprintln!(
        "10^6 chunks: {} bytes forwarded; proxy peak RSS {hwm} KiB",
        sent.len()
    );
    assert!(hwm < 160 * 1024, "peak RSS {hwm} KiB");
    let (events, text) = proxy.stop();
    let mine = conn_of(&events, port);
    let errors: Vec<_> = mine
        .iter()
        .filter(|e| e["kind"] == "decode_error")
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one report, no gap, no sequence jump: {errors:#?}"
    );
    let what = errors[0]["what"].as_str().expect("what");
    assert!(
        what.contains("MaxChunkCount") && what.contains("65536") && what.contains("65537"),
        "{what}"
    );
    assert_eq!(errors[0]["dir"], "c2s");
    let close = mine
        .iter()
        .find(|e| e["kind"] == "conn_close")
        .expect("conn_close");
    assert_eq!(
        close["bytes_c2s"],
        sent.len() as u64,
        "the analysis saw every byte"
    );
    assert!(text.contains("MaxChunkCount"), "{text}");
}

/// The client half-closes while the server keeps sending: the server sees the end of the
/// client's stream, the client still gets everything, conn_close says the client closed
/// (fin) with both byte counts, and the proxy's file descriptors come back to their number
/// before the connection.
#[test]
fn half_close_is_mirrored_reported_and_leaks_no_fd() {
    let dir = temp_dir("hard-halfclose");
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let proxy = Running::start(&upstream, &dir, &[]);
    let pid = proxy.pid();
    let baseline = fd_count(pid);
    let up = 10_000usize;
    let down = 1 << 20;
    let client = TcpStream::connect(proxy.listen).expect("connect");
    let port = client.local_addr().expect("addr").port();
    let (mut s, _) = server.accept().expect("accept");
    std::thread::spawn(move || echo_on(server));
    let mut c = &client;
    c.write_all(&vec![1u8; up]).expect("write");
    client.shutdown(Shutdown::Write).expect("half-close");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("server reads to the end");
    assert_eq!(
        got.len(),
        up,
        "the server saw the half-close after every byte"
    );
    let during = fd_count(pid);
    // The server goes on sending after the client's FIN, and the client still gets it all.
    let sender = std::thread::spawn(move || {
        for _ in 0..16 {
            s.write_all(&vec![2u8; down / 16])
                .expect("server writes after the FIN");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(s);
    });
    well_behaved(proxy.listen);
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("client reads");
    sender.join().expect("sender");
    assert!(
        back.len() == down && back.iter().all(|&b| b == 2),
        "{}",
        back.len()
    );
    drop(client);
    let after = fds_back_to(pid, baseline);
    eprintln!("half-close: proxy fds {baseline} before, {during} during, {after} after");
    assert!(during > baseline, "the connection held descriptors");
    assert_eq!(after, baseline, "no descriptor left behind");
    let (events, text) = proxy.stop();
    let mine = conn_of(&events, port);
    let close = mine
        .iter()
        .find(|e| e["kind"] == "conn_close")
        .expect("conn_close");
    assert_eq!(close["by"], "client", "{close}");
    assert_eq!(close["reason"], "fin");
    assert_eq!(close["bytes_c2s"], up as u64);
    assert_eq!(close["bytes_s2c"], down as u64);
    assert!(
        !mine.iter().any(|e| e["kind"] == "upstream_error"),
        "{mine:#?}"
    );
    assert!(
        text.contains(&format!(
            "connection closed by client (fin); client sent {up} bytes, server {down}"
        )),
        "{text}"
    );
}

/// The other way round: the server half-closes while the client keeps sending. The client
/// sees the end, the server gets every byte the client sent after it, and conn_close says the
/// server closed (fin); no descriptor is left behind.
#[test]
fn server_half_close_is_mirrored_while_the_client_keeps_sending() {
    let dir = temp_dir("hard-halfclose-server");
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let proxy = Running::start(&upstream, &dir, &[]);
    let pid = proxy.pid();
    let baseline = fd_count(pid);
    let (down, up) = (5_000usize, 1usize << 20);
    let client = TcpStream::connect(proxy.listen).expect("connect");
    let port = client.local_addr().expect("addr").port();
    let (s, _) = server.accept().expect("accept");
    std::thread::spawn(move || echo_on(server));
    let mut sw = &s;
    sw.write_all(&vec![3u8; down]).expect("server writes");
    s.shutdown(Shutdown::Write).expect("server half-closes");
    let mut got = Vec::new();
    (&client)
        .read_to_end(&mut got)
        .expect("client reads to the end");
    assert_eq!(
        got.len(),
        down,
        "the client saw the half-close after every byte"
    );
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        (&s).read_to_end(&mut all).expect("server reads");
        all
    });
    for _ in 0..16 {
        (&client)
            .write_all(&vec![4u8; up / 16])
            .expect("the client writes after the server's FIN");
        std::thread::sleep(Duration::from_millis(20));
    }
    well_behaved(proxy.listen);
    client.shutdown(Shutdown::Write).expect("client closes");
    let all = reader.join().expect("reader");
    assert!(
        all.len() == up && all.iter().all(|&b| b == 4),
        "{}",
        all.len()
    );
    drop(client);
    let after = fds_back_to(pid, baseline);
    assert_eq!(after, baseline, "no descriptor left behind");
    let (events, _) = proxy.stop();
    let mine = conn_of(&events, port);
    let close = mine
        .iter()
        .find(|e| e["kind"] == "conn_close")
        .expect("conn_close");
    assert_eq!(close["by"], "server", "{close}");
    assert_eq!(close["reason"], "fin");
    assert_eq!(close["bytes_c2s"], up as u64);
    assert_eq!(close["bytes_s2c"], down as u64);
}

/// The server restarts 100 times on the same port while clients keep coming: each client
/// while it is down gets `upstream_error` refused, each one while it is up passes its bytes,
/// and at the end the proxy's descriptors are back to their number before and it still serves.
#[test]
fn server_restarting_100_times() {
    let dir = temp_dir("hard-restart");
    // Keeps the port ours while the server is down: bound, not listening, so it refuses.
    let (_hold, port) = refused_port();
    let upstream = format!("127.0.0.1:{port}");
    let proxy = Running::start(&upstream, &dir, &[]);
    let pid = proxy.pid();
    let baseline = fd_count(pid);
    let listen = |port: u16| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.set_reuse_address(true).expect("reuse");
        s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())
            .expect("bind the server port again");
        s.listen(16).expect("listen");
        TcpListener::from(s)
    };
    let (mut up_ports, mut down_ports) = (Vec::new(), Vec::new());
    for round in 0..100u32 {
        // Up: one connection, answered.
        let l = listen(port);
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut q = [0u8; 4];
            s.read_exact(&mut q).expect("question");
            s.write_all(&(u32::from_le_bytes(q) * 2).to_le_bytes())
                .expect("answer");
            drop(s);
            // The listener goes with this thread: the server is down.
        });
        let mut c = TcpStream::connect(proxy.listen).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        up_ports.push(c.local_addr().expect("addr").port());
        c.write_all(&round.to_le_bytes()).expect("ask");
        let mut a = [0u8; 4];
        c.read_exact(&mut a).expect("answer through the proxy");
        assert_eq!(u32::from_le_bytes(a), round * 2);
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        drop(c);
        server.join().expect("server round");
        // Down: the proxy accepts, the server refuses, the client is closed.
        let mut c = TcpStream::connect(proxy.listen).expect("the proxy still accepts");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        down_ports.push(c.local_addr().expect("addr").port());
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty()),
            Err(e) => assert_ne!(e.kind(), ErrorKind::WouldBlock, "closed, not left hanging"),
        }
    }
    // Still serves once the server is back.
    let l = listen(port);
    std::thread::spawn(move || echo_on(l));
    well_behaved(proxy.listen);
    let after = fds_back_to(pid, baseline);
    eprintln!("server restarts: proxy fds {baseline} at start, {after} after 200 connections");
    assert_eq!(after, baseline, "no descriptor left behind");
    let (events, text) = proxy.stop();
    for p in &down_ports {
        let mine = conn_of(&events, *p);
        let err = mine
            .iter()
            .find(|e| e["kind"] == "upstream_error")
            .unwrap_or_else(|| panic!("no upstream_error for client port {p}: {mine:#?}"));
        assert_eq!(err["error"], "refused", "{mine:#?}");
        assert!(mine.iter().any(|e| e["kind"] == "conn_close"));
    }
    for p in &up_ports {
        let mine = conn_of(&events, *p);
        assert!(
            !mine.iter().any(|e| e["kind"] == "upstream_error"),
            "{mine:#?}"
        );
        let close = mine
            .iter()
            .find(|e| e["kind"] == "conn_close")
            .expect("conn_close");
        assert_eq!(
            (close["bytes_c2s"].as_u64(), close["bytes_s2c"].as_u64()),
            (Some(4), Some(4))
        );
    }
    assert_eq!(of_kind(&events, "upstream_error").len(), 100);
    assert!(text.contains("UPSTREAM REFUSED"), "{text}");
}

/// The upstream's name does not resolve: each client gets `upstream_error` dns with the name
/// in the detail and is closed; the proxy keeps running and takes the next one.
#[test]
fn dns_failure_is_reported_for_each_client_and_the_proxy_goes_on() {
    let dir = temp_dir("hard-dns");
    let proxy = Running::start("nosuch-host.invalid:4840", &dir, &[]);
    let mut ports = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(proxy.listen).expect("the proxy accepts");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        ports.push(c.local_addr().expect("addr").port());
        c.write_all(b"HELF").expect("write");
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty()),
            Err(e) => assert_ne!(e.kind(), ErrorKind::WouldBlock, "closed, not left hanging"),
        }
    }
    let (events, text) = proxy.stop();
    for p in &ports {
        let mine = conn_of(&events, *p);
        let err = mine
            .iter()
            .find(|e| e["kind"] == "upstream_error")
            .unwrap_or_else(|| panic!("no upstream_error: {mine:#?}"));
        assert_eq!(err["error"], "dns");
        let detail = err["detail"].as_str().expect("detail");
        assert!(
            detail.starts_with("cannot resolve nosuch-host.invalid"),
            "{detail}"
        );
        let close = mine
            .iter()
            .find(|e| e["kind"] == "conn_close")
            .expect("conn_close");
        assert_eq!(close["by"], "proxy");
        let reject = mine.iter().find(|e| e["kind"] == "reject").expect("reject");
        assert_eq!(reject["cause"], "dns_failed", "{reject}");
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("UPSTREAM DNS"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for l in lines {
        eprintln!("terminal: {l}");
        assert!(l.contains("cannot resolve nosuch-host.invalid"), "{l}");
    }
}

/// `GET /metrics` of the proxy whose stderr (with the metrics banner) is `stderr`.
fn scrape(stderr: &Path) -> String {
    let banner = std::fs::read_to_string(stderr).expect("stderr");
    let addr = banner
        .split("metrics on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no metrics banner: {banner}"));
    let mut c = TcpStream::connect(addr).expect("metrics connect");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut body = String::new();
    c.read_to_string(&mut body).expect("response");
    body
}

/// Unmounts a test's tmpfs, however the test ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The disk of the recording fills up (a 256 KiB tmpfs): forwarding goes on byte for byte,
/// the recording stops with a `recording` event, and the file written so far reads with
/// `uatap analyze`.
#[test]
fn full_disk_stops_the_recording_with_an_event_and_forwarding_goes_on() {
    let dir = temp_dir("hard-diskfull");
    let disk = dir.join("disk");
    std::fs::create_dir_all(&disk).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&disk)
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "cannot mount a tmpfs on {}",
        disk.display()
    );
    let _unmount = Unmount(disk.clone());
    let record = disk.join("x.pcapng");
    let upstream = echo_server().to_string();
    let proxy = Running::start(
        &upstream,
        &dir,
        &[
            "--record",
            record.to_str().expect("utf-8 path"),
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    // Small exchanges with pauses, as traffic fills a disk: each byte is recorded four times
    // (two legs, both ways), and the recording is written as the traffic pauses.
    let hel = chunks(&streams(&root().join("fixtures/basic-none.pcapng")).0)[0].clone();
    let mut rounds = 0;
    let stopped = loop {
        rounds += 1;
        assert!(
            rounds <= 200,
            "the recording never stopped: {:#?}",
            proxy.events_now()
        );
        let mut c = TcpStream::connect(proxy.listen).expect("connect");
        // OPC UA bytes (HEL messages), so that `uatap analyze` finds the connections.
        let data = hel.repeat(4096 / hel.len() + 1);
        c.write_all(&data).expect("write");
        c.shutdown(Shutdown::Write).expect("half-close");
        let mut back = Vec::new();
        c.read_to_end(&mut back).expect("echo");
        assert!(back == data, "forwarded byte for byte (round {rounds})");
        std::thread::sleep(Duration::from_millis(40));
        if let Some(e) = proxy
            .events_now()
            .into_iter()
            .find(|e| e["kind"] == "recording")
        {
            break e;
        }
    };
    // Forwarding goes on after the recording stopped.
    well_behaved(proxy.listen);
    // The metrics sink got the event too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = scrape(&dir.join("stderr.txt"));
        if m.contains("uatap_recording_stopped 1\n") || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(metrics.contains("uatap_recording_stopped 1\n"), "{metrics}");
    let (events, text) = proxy.stop();
    assert_eq!(stopped["action"], "stopped");
    assert_eq!(stopped["path"], record.to_str().expect("utf-8"));
    assert_eq!(stopped["conn"], "");
    let reason = stopped["reason"].as_str().expect("reason");
    assert!(reason.starts_with("disk full"), "{reason}");
    let written = stopped["bytes_written"].as_u64().expect("bytes_written");
    let on_disk = std::fs::metadata(&record).expect("the file stays").len();
    eprintln!("full disk: recording stopped at {written} bytes ({on_disk} on disk): {reason}");
    assert!(written > 0 && written <= 256 * 1024, "{written}");
    assert_eq!(on_disk, written, "nothing written after the stop");
    assert_eq!(of_kind(&events, "recording").len(), 1, "said once");
    assert_eq!(
        of_kind(&events, "conn_close").len(),
        rounds + 1,
        "every connection went through"
    );
    let line = text
        .lines()
        .find(|l| l.contains("RECORDING STOPPED"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("disk full") && line.contains("forwarding goes on"),
        "{line}"
    );
    // What was written reads.
    let copy = dir.join("x.pcapng");
    std::fs::copy(&record, &copy).expect("copy");
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--json"])
        .arg(&copy)
        .stdin(Stdio::null())
        .output()
        .expect("uatap analyze runs");
    assert!(
        out.status.success(),
        "analyze: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let analysed = String::from_utf8_lossy(&out.stdout);
    let recorded = analysed
        .lines()
        .filter(|l| l.contains("\"kind\":\"conn_open\""))
        .count();
    eprintln!("full disk: {rounds} connections, {recorded} in what was recorded");
    assert!(recorded >= 1 && recorded < rounds, "{analysed}");
}
