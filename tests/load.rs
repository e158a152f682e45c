//! Load, short versions (the long ones are `make soak`, benches/soak/run.py): many concurrent
//! connections with Publish traffic, open/close cycles, and a mini soak with ring-buffer
//! rotation, each through one `uatap proxy` on 127.0.0.1 with the load server and client of
//! benches/e2e/src/load.rs running in this process. Each checks that the proxy's file
//! descriptors come back to their baseline when the connections are gone, that its memory
//! stays bounded, that the events count every PublishResponse, connection and byte, and that
//! the recording holds exactly the bytes the peers sent, on both legs.

#[allow(dead_code)] // shared with uatap-e2e, which uses more of it
#[path = "../benches/e2e/src/ua.rs"]
mod ua;

#[allow(dead_code)] // Snapshot::json is for uatap-e2e
#[path = "../benches/e2e/src/load.rs"]
mod driver;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driver::{Counters, ServerConfig, Snapshot};

use crate::util::{read_events, temp_dir, terminate};

/// The load tests take the machine's CPU: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// RSS of a process in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of a process.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count()
}

/// Lifts this process's soft open-file limit to the hard one: the client and server ends of
/// hundreds of connections live here.
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A `uatap proxy` child with its event file and recording in `dir`.
struct Proxy {
    child: Child,
    listen: SocketAddr,
    events: PathBuf,
}

impl Proxy {
    fn start(upstream: SocketAddr, dir: &Path, extra: &[&str]) -> Proxy {
        let events = dir.join("events.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream"])
            .arg(upstream.to_string())
            .arg("--json-file")
            .arg(&events)
            .arg("--record")
            .arg(dir.join("rec.pcapng"))
            .args(["--duration", "300"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("uatap proxy starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        let listen = loop {
            let mut line = String::new();
            let n = lines.read_line(&mut line).expect("banner");
            assert!(n > 0, "uatap proxy ended before its banner");
            if let Some(addr) = crate::util::banner_listen(&line) {
                break addr.parse().expect("listen address");
            }
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = lines.read_to_string(&mut sink);
        });
        Proxy {
            child,
            listen,
            events,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to 15 s for the proxy's descriptors to come down to `baseline`; returns the
    /// last count seen.
    fn fds_settle(&self, baseline: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = fd_count(self.pid());
            if n <= baseline || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The load server and a proxy in front of it, with the proxy's figures at the start.
struct Rig {
    rt: tokio::runtime::Runtime,
    server: Arc<Counters>,
    proxy: Proxy,
    upstream: SocketAddr,
    dir: PathBuf,
    fd_baseline: usize,
    rss_start_kib: u64,
}

impl Rig {
    fn start(name: &str, cfg: ServerConfig, proxy_extra: &[&str]) -> Rig {
        Rig::start_in(temp_dir(name), cfg, proxy_extra)
    }

    /// [`Rig::start`] in a directory made ready by the test (the recording is `rec.pcapng`).
    fn start_in(dir: PathBuf, cfg: ServerConfig, proxy_extra: &[&str]) -> Rig {
        raise_nofile();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = Arc::new(Counters::default());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let upstream = listener.local_addr().expect("addr");
        rt.spawn(driver::serve(listener, cfg, server.clone()));
        let proxy = Proxy::start(upstream, &dir, proxy_extra);
        // The hub, sinks and recording threads start right after the banner.
        std::thread::sleep(Duration::from_millis(300));
        let fd_baseline = fd_count(proxy.pid());
        let rss_start_kib = rss_kib(proxy.pid());
        Rig {
            rt,
            server,
            proxy,
            upstream,
            dir,
            fd_baseline,
            rss_start_kib,
        }
    }

    /// Waits until the server saw every connection end, then until the proxy's descriptors
    /// settle; stops the proxy (SIGTERM: it flushes) and gathers what it wrote.
    fn finish(mut self, client: &Counters) -> Outcome {
        let want = client.snapshot().opened;
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.server.snapshot().closed < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let fds_end = self.proxy.fds_settle(self.fd_baseline);
        let rss_end_kib = rss_kib(self.proxy.pid());
        let status = terminate(&mut self.proxy.child);
        assert!(status.success(), "uatap proxy exited with {status}");
        let events = read_events(&self.proxy.events);
        Outcome {
            client: client.snapshot(),
            server: self.server.snapshot(),
            events,
            fd_baseline: self.fd_baseline,
            fds_end,
            rss_start_kib: self.rss_start_kib,
            rss_end_kib,
            listen_port: self.proxy.listen.port(),
            upstream_port: self.upstream.port(),
        }
    }
}

/// What a run left: both peers' counters, the proxy's events and figures.
struct Outcome {
    client: Snapshot,
    server: Snapshot,
    events: Vec<serde_json::Value>,
    fd_baseline: usize,
    fds_end: usize,
    rss_start_kib: u64,
    rss_end_kib: u64,
    listen_port: u16,
    upstream_port: u16,
}

/// TCP payload bytes of a recording per leg and direction, and with them the bytes whose
/// packets hold their headers only (what a recording behind the traffic does to the server's
/// leg): [client leg c2s, client leg s2c, server leg c2s, server leg s2c].
fn recorded_bytes(files: &[PathBuf], listen: u16, upstream: u16) -> ([u64; 4], [u64; 4]) {
    let mut sums = [0u64; 4];
    let mut headers_only = [0u64; 4];
    for f in files {
        let mut r = uatap_recorder::CaptureReader::open(f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        while let Some(p) = r
            .next_packet()
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        {
            let Ok(seg) = uatap_recorder::decode_tcp(p.link_type, p.data) else {
                continue;
            };
            let n = seg.payload.len() as u64;
            let cut = u64::from(p.orig_len).saturating_sub(p.data.len() as u64);
            let (sp, dp) = (seg.src.port(), seg.dst.port());
            let at = if dp == listen {
                0
            } else if sp == listen {
                1
            } else if dp == upstream {
                2
            } else if sp == upstream {
                3
            } else {
                panic!("{}: a segment of neither leg: {seg:?}", f.display());
            };
            sums[at] += n;
            headers_only[at] += cut;
        }
    }
    (sums, headers_only)
}

impl Outcome {
    fn kind_count(&self, kind: &str) -> u64 {
        self.events.iter().filter(|e| e["kind"] == kind).count() as u64
    }

    /// The recording fell behind the traffic (a slow disk) and wrote some of the server's
    /// leg as headers only.
    fn recording_fell_behind(&self) -> bool {
        self.events
            .iter()
            .any(|e| e["kind"] == "recording" && e["action"] == "behind")
    }

    /// Checks the recorded bytes per leg and direction against what was sent: every byte on
    /// the client's leg, and on the server's, unless the recording fell behind the traffic;
    /// then the server's leg holds the rest as packets with their headers only.
    fn assert_recorded(&self, recorded: ([u64; 4], [u64; 4]), expected: [Option<u64>; 4]) {
        let (rec, cut) = recorded;
        let behind = self.recording_fell_behind();
        eprintln!("recorded {rec:?}, headers only {cut:?}, fell behind: {behind}");
        assert_eq!((cut[0], cut[1]), (0, 0), "the client's leg is never cut");
        if !behind {
            assert_eq!(
                cut, [0; 4],
                "packets cut without a `recording` `behind` event"
            );
        }
        for (i, want) in expected.iter().enumerate() {
            if let Some(want) = want {
                assert_eq!(
                    rec[i] + cut[i],
                    *want,
                    "recorded payload bytes [client leg c2s, s2c, server leg c2s, s2c][{i}]: {rec:?} + headers only {cut:?}"
                );
            }
        }
    }

    fn close_bytes(&self, field: &str) -> u64 {
        self.events
            .iter()
            .filter(|e| e["kind"] == "conn_close")
            .map(|e| e[field].as_u64().expect("conn_close byte count"))
            .sum()
    }

    /// Every connection clean on both peers, and the events and the recording account for
    /// every connection, PublishResponse and byte.
    fn assert_exact(&self, conns: u64, recording: &[PathBuf]) {
        let (c, s) = (&self.client, &self.server);
        assert_eq!((c.errors, s.errors), (0, 0), "client {c:?}, server {s:?}");
        assert_eq!((c.opened, c.closed), (conns, conns), "client {c:?}");
        assert_eq!((s.opened, s.closed), (conns, conns), "server {s:?}");
        assert_eq!(c.bytes_sent, s.bytes_received, "client to server bytes");
        assert_eq!(s.bytes_sent, c.bytes_received, "server to client bytes");
        assert_eq!(c.publish_responses, s.publish_responses);
        assert_eq!(c.publish_requests, s.publish_requests);
        // The events.
        assert_eq!(self.kind_count("conn_open"), conns, "conn_open events");
        assert_eq!(self.kind_count("conn_close"), conns, "conn_close events");
        assert_eq!(
            self.kind_count("publish"),
            s.publish_responses,
            "a publish event per PublishResponse"
        );
        assert_eq!(self.kind_count("decode_error"), 0, "no bytes missed");
        assert_eq!(self.close_bytes("bytes_c2s"), c.bytes_sent);
        assert_eq!(self.close_bytes("bytes_s2c"), s.bytes_sent);
        // The recording: both legs hold exactly what the peers sent.
        let rec = recorded_bytes(recording, self.listen_port, self.upstream_port);
        eprintln!(
            "{conns} connections: client {c:?}; server {s:?}; {} events; recorded {rec:?} (bytes, headers only) in {} files; fds {} -> {}; RSS {} -> {} KiB",
            self.events.len(),
            recording.len(),
            self.fd_baseline,
            self.fds_end,
            self.rss_start_kib,
            self.rss_end_kib
        );
        self.assert_recorded(
            rec,
            [c.bytes_sent, s.bytes_sent, c.bytes_sent, s.bytes_sent].map(Some),
        );
        // The proxy let go of every socket.
        assert_eq!(
            self.fds_end, self.fd_baseline,
            "proxy descriptors back to the baseline"
        );
    }
}

/// 200 connections at once, each with 5 PublishResponses a second for 5 s, through one proxy.
#[test]
fn concurrent_connections_with_publish_traffic() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let conns = 200u64;
    let rig = Rig::start(
        "load-conns",
        ServerConfig {
            rate: 5.0,
            items: 100,
        },
        &[],
    );
    let client = Arc::new(Counters::default());
    let pid = rig.proxy.pid();
    let listen = rig.proxy.listen;
    // The most descriptors and memory while the connections are held.
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let peak = std::thread::spawn(move || {
        let (mut fds, mut rss) = (0, 0);
        while !d.load(Ordering::Relaxed) {
            fds = fds.max(fd_count(pid));
            rss = rss.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        (fds, rss)
    });
    rig.rt
        .block_on(driver::hold(listen, conns as usize, 5.0, client.clone()));
    done.store(true, Ordering::Relaxed);
    let (fds_held, rss_held_kib) = peak.join().expect("sampler");
    let recording = vec![rig.dir.join("rec.pcapng")];
    let out = rig.finish(&client);
    out.assert_exact(conns, &recording);
    assert!(
        out.server.publish_responses >= conns * 15,
        "the stream ran: {:?}",
        out.server
    );
    // Two sockets per connection were open at once.
    assert!(
        fds_held >= out.fd_baseline + 2 * conns as usize,
        "{fds_held} descriptors while holding {conns} connections (baseline {})",
        out.fd_baseline
    );
    // Memory: bounded while holding them (64 KiB per connection, the bar of benches/e2e, plus
    // 16 MiB for the tap and recording buffers), and not growing after they closed.
    assert!(
        rss_held_kib <= out.rss_start_kib + 64 * conns + 16 * 1024,
        "RSS {rss_held_kib} KiB with {conns} connections (start {} KiB)",
        out.rss_start_kib
    );
    assert!(
        out.rss_end_kib <= rss_held_kib + 16 * 1024,
        "RSS {} KiB after the connections closed, {rss_held_kib} KiB while held",
        out.rss_end_kib
    );
}

/// A recording that falls behind the traffic writes the server's leg as headers only until it
/// catches up, and loses no byte: the recording goes into a pipe whose reader does not read
/// (as a disk that stalls) until the proxy reports `recording` `behind`. Every byte is then on
/// the client's leg, the server's leg has every packet, the analysis saw everything, and
/// `uatap analyze` on the recording gives the live events.
#[cfg(unix)]
#[test]
fn a_recording_behind_the_traffic_loses_no_byte() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let conns = 20u64;
    let dir = temp_dir("load-behind");
    let pipe = dir.join("rec.pcapng");
    let made = Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", pipe.display());
    let copy = dir.join("copy.pcapng");
    let go = Arc::new(AtomicBool::new(false));
    let reader = {
        let (pipe, copy, go) = (pipe.clone(), copy.clone(), go.clone());
        std::thread::spawn(move || {
            // Opens when the proxy opens the other end, then reads nothing until told.
            let mut from = std::fs::File::open(&pipe).expect("the pipe opens");
            while !go.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut to = std::fs::File::create(&copy).expect("the copy");
            std::io::copy(&mut from, &mut to).expect("the recording read to its end")
        })
    };
    let rig = Rig::start_in(
        dir.clone(),
        ServerConfig {
            rate: 50.0,
            items: 100,
        },
        &[],
    );
    let watcher = {
        let (events, go) = (rig.proxy.events.clone(), go.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut behind_at = None;
            while behind_at.is_none() && Instant::now() < deadline {
                if std::fs::read_to_string(&events)
                    .is_ok_and(|t| t.contains("\"action\":\"behind\""))
                {
                    behind_at = Some(Instant::now());
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            go.store(true, Ordering::Relaxed);
            behind_at
        })
    };
    let started = Instant::now();
    let client = Arc::new(Counters::default());
    let listen = rig.proxy.listen;
    let first = rig
        .rt
        .spawn(driver::hold(listen, conns as usize, 8.0, client.clone()));
    let behind_at = watcher.join().expect("watcher");
    // More connections open while the recording is behind: their server legs get no bytes.
    let later = 5u64;
    let second = rig
        .rt
        .spawn(driver::hold(listen, later as usize, 3.0, client.clone()));
    rig.rt.block_on(async {
        first.await.expect("first connections");
        second.await.expect("later connections");
    });
    let conns = conns + later;
    let out = rig.finish(&client);
    let read = reader.join().expect("reader");
    let behind_after = behind_at.map(|t| t.duration_since(started));
    eprintln!("behind after {behind_after:?}; {read} bytes of recording read from the pipe");
    assert!(
        behind_after.is_some_and(|t| t < Duration::from_secs(6)),
        "the proxy said that the recording was behind, while the traffic went on: {behind_after:?}"
    );
    // The peers, the events (no byte missed by the analysis) and the recording (every byte on
    // the client's leg, the server's leg complete with the packets cut).
    out.assert_exact(conns, std::slice::from_ref(&copy));
    let (_, cut) = recorded_bytes(
        std::slice::from_ref(&copy),
        out.listen_port,
        out.upstream_port,
    );
    let reported: u64 = out
        .events
        .iter()
        .filter(|e| e["kind"] == "recording" && e["action"] == "caught_up")
        .map(|e| {
            e["headers_only_bytes"]
                .as_u64()
                .expect("headers_only_bytes")
        })
        .sum();
    assert!(reported > 0, "the server's leg was cut: {cut:?}");
    // The event counts the bytes cut on the legs that opened before; the later legs have none.
    assert!(
        cut[2] + cut[3] > reported,
        "the bytes cut on the server's leg: {cut:?}, {reported} reported for the legs switched"
    );
    // Offline, the recording tells what the live proxy told: the server leg's packets without
    // bytes are paired with the client leg and not analysed.
    let offline = crate::util::run(
        Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["analyze", "--json"])
            .arg(&copy),
    );
    // Per connection: offline, a connection's `conn_open` comes with its first bytes, so the
    // order across connections differs from the live one.
    let by_conn = |text: &str| {
        let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for l in text.lines() {
            let e: serde_json::Value = serde_json::from_str(l).expect("JSON");
            if e["kind"] != "recording" {
                let conn = e["conn"].as_str().expect("conn").to_string();
                m.entry(conn).or_default().push(l.to_string());
            }
        }
        m
    };
    let live = by_conn(&std::fs::read_to_string(dir.join("events.jsonl")).expect("events"));
    let offline = by_conn(&offline);
    assert_eq!(live.len(), conns as usize, "connections in the live events");
    assert!(
        offline == live,
        "analyze on the recording == the live events but the recording's, connection by connection: {} and {} events",
        offline.values().map(Vec::len).sum::<usize>(),
        live.values().map(Vec::len).sum::<usize>()
    );
}

/// 1000 open/close cycles (connect, HEL, OPN, CLO, close), 8 at a time, through one proxy.
#[test]
fn open_close_cycles() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cycles = 1000u64;
    let rig = Rig::start(
        "load-cycles",
        ServerConfig {
            rate: 0.0,
            items: 100,
        },
        &[],
    );
    let client = Arc::new(Counters::default());
    rig.rt
        .block_on(driver::cycles(rig.proxy.listen, cycles, 8, client.clone()));
    let recording = vec![rig.dir.join("rec.pcapng")];
    let out = rig.finish(&client);
    out.assert_exact(cycles, &recording);
    assert_eq!(out.kind_count("hello"), 2 * cycles, "HEL and ACK each time");
    assert!(
        out.rss_end_kib < out.rss_start_kib + 32 * 1024,
        "RSS {} KiB after {cycles} cycles, {} KiB at the start",
        out.rss_end_kib,
        out.rss_start_kib
    );
}

/// Keeps a hard link to every file of a rotating recording while it exists, so that the files
/// the ring deletes can still be counted; notes the most files present at once.
struct RingWatcher {
    stop: Arc<AtomicBool>,
    most_present: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<PathBuf>>,
}

impl RingWatcher {
    fn start(dir: PathBuf, prefix: &'static str) -> RingWatcher {
        let kept = dir.join("kept");
        std::fs::create_dir_all(&kept).expect("kept dir");
        let stop = Arc::new(AtomicBool::new(false));
        let most_present = Arc::new(AtomicUsize::new(0));
        let (s, m) = (stop.clone(), most_present.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut kept_files = Vec::new();
            loop {
                let last = s.load(Ordering::Relaxed);
                let mut present = 0;
                for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !(name.starts_with(prefix) && name.ends_with(".pcapng")) {
                        continue;
                    }
                    present += 1;
                    if seen.insert(name.clone()) {
                        let link = kept.join(&name);
                        // A file deleted between the listing and here is lost to the count,
                        // and the byte check then fails: that is honest.
                        if std::fs::hard_link(e.path(), &link).is_ok() {
                            kept_files.push(link);
                        }
                    }
                }
                m.fetch_max(present, Ordering::Relaxed);
                if last {
                    kept_files.sort();
                    return kept_files;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RingWatcher {
            stop,
            most_present,
            thread,
        }
    }

    /// Stops watching (after one last look); every file the recording had, oldest first.
    fn finish(self) -> (Vec<PathBuf>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let files = self.thread.join().expect("watcher");
        (files, self.most_present.load(Ordering::Relaxed))
    }
}

/// 20 s of 20 connections at 10 PublishResponses a second each, recorded into a ring of 4
/// files of 1 MB, so the recording rotates (and deletes its oldest file) many times.
#[test]
fn mini_soak_with_ring_buffer_rotation() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (conns, seconds) = (20u64, 20.0);
    let rig = Rig::start(
        "load-soak",
        ServerConfig {
            rate: 10.0,
            items: 100,
        },
        &["--record-max-size", "1", "--record-files", "4"],
    );
    let watcher = RingWatcher::start(rig.dir.clone(), "rec_");
    let client = Arc::new(Counters::default());
    let pid = rig.proxy.pid();
    let listen = rig.proxy.listen;
    // Memory and descriptors at 5 s and near the end of the steady traffic.
    let sampler = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        let early = (rss_kib(pid), fd_count(pid));
        std::thread::sleep(Duration::from_secs(14));
        let late = (rss_kib(pid), fd_count(pid));
        (early, late)
    });
    rig.rt.block_on(driver::hold(
        listen,
        conns as usize,
        seconds,
        client.clone(),
    ));
    let ((rss_early, fds_early), (rss_late, fds_late)) = sampler.join().expect("sampler");
    let out = rig.finish(&client);
    let (files, most_present) = watcher.finish();
    assert!(
        files.len() >= 10,
        "the recording rotated {} times",
        files.len().saturating_sub(1)
    );
    assert!(
        most_present <= 4,
        "{most_present} recording files at once (--record-files 4)"
    );
    out.assert_exact(conns, &files);
    assert_eq!(fds_late, fds_early, "descriptors steady under traffic");
    assert!(
        rss_late <= rss_early + 16 * 1024,
        "RSS {rss_early} KiB at 5 s, {rss_late} KiB at 19 s"
    );
}

/// 100 clients reset their connections (RST, no CLO) in the middle of the PublishResponse
/// stream, at different moments: the proxy passes each reset on to the server (the server sees
/// every connection end), reports it, and lets go of both sockets.
#[test]
fn client_resets_mid_stream_release_everything() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let conns = 100u64;
    let rig = Rig::start(
        "load-resets",
        ServerConfig {
            rate: 50.0,
            items: 100,
        },
        &[],
    );
    let listen = rig.proxy.listen;
    let (sent, received) = rig.rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..conns {
            tasks.spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::connect(listen)
                    .await
                    .expect("connect");
                let hello = ua::hello("opc.tcp://127.0.0.1/load");
                let opn = ua::opn_request(1, 1);
                s.write_all(&hello).await.expect("HEL");
                s.write_all(&opn).await.expect("OPN");
                // Read the stream for 0.3 to 1.3 s, then reset.
                let until =
                    tokio::time::Instant::now() + Duration::from_millis(300 + 10 * (i % 100));
                let mut got = 0u64;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(Ok(n)) = tokio::time::timeout_at(until, s.read(&mut buf)).await {
                    assert!(n > 0, "the stream ended before the reset");
                    got += n as u64;
                }
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .expect("linger 0");
                drop(s);
                ((hello.len() + opn.len()) as u64, got)
            });
        }
        let (mut sent, mut received) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            let (s, g) = r.expect("client task");
            sent += s;
            received += g;
        }
        (sent, received)
    });
    // Finish waits for the server to see as many ends as the client counters say opened.
    let client = Counters::default();
    client.opened.store(conns, Ordering::Relaxed);
    let recording = vec![rig.dir.join("rec.pcapng")];
    let out = rig.finish(&client);
    let s = out.server;
    assert_eq!(
        (s.opened, s.closed),
        (conns, conns),
        "the server saw every connection end: {s:?}"
    );
    assert_eq!(
        s.bytes_received, sent,
        "every HEL and OPN reached the server"
    );
    assert_eq!(out.kind_count("conn_open"), conns);
    let resets = out
        .events
        .iter()
        .filter(|e| e["kind"] == "conn_close" && e["by"] == "client" && e["reason"] == "rst")
        .count() as u64;
    assert_eq!(
        resets, conns,
        "a conn_close by the client with reason rst each"
    );
    assert_eq!(out.close_bytes("bytes_c2s"), sent);
    let recorded = recorded_bytes(&recording, out.listen_port, out.upstream_port);
    // Client to server: every byte, on both legs.
    out.assert_recorded(recorded, [Some(sent), None, Some(sent), None]);
    // Server to client: what the client read was recorded; what was in flight at the reset
    // may or may not have been.
    let (rec, cut) = recorded;
    let server_leg = rec[3] + cut[3];
    assert!(
        received <= rec[1] && rec[1] <= server_leg && server_leg <= s.bytes_sent,
        "s2c: client read {received}, recorded {} (client leg) {server_leg} (server leg), server sent {}",
        rec[1],
        s.bytes_sent
    );
    assert!(received > 0, "the stream ran before the resets");
    assert_eq!(
        out.fds_end, out.fd_baseline,
        "proxy descriptors back to the baseline"
    );
}

/// A burst faster than the analysis fills the tap buffers up to their bound (200 clients that
/// stop reading while the server streams as fast as it can, then reset); once the connections
/// closed and the analysis caught up, that memory goes back to the system. It stayed resident
/// for the life of the proxy: glibc's malloc took the read buffers from heaps that kept it.
/// (With 100 clients, the analysis on huge pages sometimes kept up well enough that the burst
/// did not rise 48 MiB above the start.)
#[test]
fn burst_memory_goes_back_after_the_connections_close() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let conns = 200u64;
    let rig = Rig::start(
        "load-burst",
        ServerConfig {
            // As fast as the connections take them.
            rate: 1e9,
            items: 100,
        },
        &[],
    );
    let pid = rig.proxy.pid();
    let listen = rig.proxy.listen;
    let start_kib = rig.rss_start_kib;
    let dir = rig.dir.clone();
    let peak_kib = rig.rt.block_on(async move {
        use tokio::io::AsyncWriteExt;
        let mut held = Vec::new();
        for _ in 0..conns {
            let mut s = tokio::net::TcpStream::connect(listen)
                .await
                .expect("connect");
            s.write_all(&ua::hello("opc.tcp://127.0.0.1/load"))
                .await
                .expect("HEL");
            s.write_all(&ua::opn_request(1, 1)).await.expect("OPN");
            held.push(s);
        }
        // Not reading: the proxy fills the sockets' buffers, the analysis falls behind.
        let mut peak = 0;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(rss_kib(pid));
        }
        for s in held {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("linger 0");
        }
        peak
    });
    assert!(
        peak_kib >= start_kib + 48 * 1024,
        "the burst outran the analysis: RSS {peak_kib} KiB at the peak, {start_kib} KiB at the start"
    );
    // The analysis works through what it was given, then the buffers are freed.
    let bound = start_kib + 40 * 1024;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rss = rss_kib(pid);
    while rss > bound && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        rss = rss_kib(pid);
    }
    let client = Counters::default();
    client.opened.store(conns, Ordering::Relaxed);
    let out = rig.finish(&client);
    eprintln!(
        "burst: RSS {start_kib} KiB at the start, {peak_kib} KiB at the peak, {rss} KiB after"
    );
    assert!(
        rss <= bound,
        "RSS {rss} KiB after the burst, {peak_kib} KiB at its peak, {start_kib} KiB at the start"
    );
    assert_eq!(out.kind_count("conn_close"), conns);
    assert_eq!(
        out.fds_end, out.fd_baseline,
        "descriptors back to the baseline"
    );
    // The burst's recording and events take a gigabyte or two: kept only when the test fails.
    let _ = std::fs::remove_dir_all(&dir);
}
