//! `uatap proxy --metrics` (Prometheus text on GET /metrics) and `--config` (many listeners, one
//! event stream): real processes on loopback, fixture byte streams pushed through the proxy.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{root, streams, temp_dir, Rng};

/// A running `uatap proxy`, stopped (SIGTERM, so it flushes) by [`Running::stop`], killed when
/// dropped.
struct Running {
    child: Child,
    /// Listen address and upstream of each banner, in order.
    listeners: Vec<(SocketAddr, String)>,
    metrics: Option<SocketAddr>,
}

impl Running {
    /// Starts `uatap proxy ARGS` and reads stderr until it announced `listeners` listeners and,
    /// with `metrics`, the metrics address.
    fn start(args: &[&str], listeners: usize, metrics: bool) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .arg("proxy")
            .args(args)
            .args(["--duration", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("uatap proxy starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        let mut found = Vec::new();
        let mut metrics_addr = None;
        while found.len() < listeners || (metrics && metrics_addr.is_none()) {
            let mut line = String::new();
            if lines.read_line(&mut line).expect("stderr") == 0 {
                let _ = child.kill();
                panic!("the proxy ended before it was ready: {seen}");
            }
            seen.push_str(&line);
            if line.contains(" proxying ") {
                let words: Vec<&str> = line.split_whitespace().collect();
                let at = words
                    .iter()
                    .position(|w| w.starts_with("opc.tcp://"))
                    .expect("listen address in the banner");
                let listen = words[at]["opc.tcp://".len()..]
                    .parse()
                    .expect("listen address");
                let upstream = words[at + 2].trim_end_matches(';').to_string();
                found.push((listen, upstream));
            } else if let Some(rest) = line.trim().strip_prefix("uatap: metrics on http://") {
                let addr = rest.strip_suffix("/metrics").expect("…/metrics");
                metrics_addr = Some(addr.parse().expect("metrics address"));
            }
        }
        // Keep draining stderr so the proxy never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = lines.read_to_string(&mut sink);
        });
        Running {
            child,
            listeners: found,
            metrics: metrics_addr,
        }
    }

    /// Waits until the metrics satisfy `done`, and returns them.
    fn metrics_when(&self, done: impl Fn(&Samples) -> bool) -> Samples {
        let addr = self.metrics.expect("metrics address");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _, body) = get(addr, "/metrics");
            assert!(status.contains(" 200 "), "{status}");
            let s = samples(&body);
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "metrics never got there:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(mut self) {
        let status = crate::util::terminate(&mut self.child);
        assert!(status.success(), "proxy exit status {status}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` with a plain socket: status line, headers, body.
fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )
    .expect("request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("head and body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("length");
    assert_eq!(length, body.len(), "Content-Length");
    (status.to_string(), headers.to_string(), body.to_string())
}

/// Series (`name{labels}` as written) to value; checks every line is a comment or a sample.
type Samples = BTreeMap<String, u64>;

fn samples(body: &str) -> Samples {
    let mut out = Samples::new();
    for line in body.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value = value
            .parse()
            .unwrap_or_else(|_| panic!("not a counter value: {line:?}"));
        assert!(
            out.insert(series.to_string(), value).is_none(),
            "series twice: {line}"
        );
    }
    out
}

fn at(s: &Samples, series: &str) -> u64 {
    s.get(series).copied().unwrap_or(0)
}

/// The client sends `c2s` and the server `s2c` (each from its own thread, then a half-close),
/// through the proxy at `proxy`; the server side is the next client accepted by `server`.
/// Checks both sides received everything.
fn exchange(proxy: SocketAddr, server: &TcpListener, c2s: &[u8], s2c: &[u8]) {
    fn send_all(mut s: TcpStream, data: Vec<u8>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            s.write_all(&data).expect("write");
            s.shutdown(Shutdown::Write).expect("half-close");
        })
    }
    let client = TcpStream::connect(proxy).expect("connect to the proxy");
    let (upstream, _) = server.accept().expect("the proxy dials the server");
    let w1 = send_all(client.try_clone().expect("clone"), c2s.to_vec());
    let w2 = send_all(upstream.try_clone().expect("clone"), s2c.to_vec());
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut u = upstream;
        u.read_to_end(&mut got).expect("server reads");
        got
    });
    let mut client_got = Vec::new();
    let mut c = client;
    c.read_to_end(&mut client_got).expect("client reads");
    let server_got = reader.join().expect("server side");
    w1.join().expect("client writer");
    w2.join().expect("server writer");
    assert!(server_got == c2s, "the server received other bytes");
    assert!(client_got == s2c, "the client received other bytes");
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("events file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The `service` label a `message` event is counted under.
fn service_label(e: &Value) -> String {
    match (e["service"].as_str(), e["msg_type"].as_str()) {
        (Some(s), _) => s.to_string(),
        (None, Some(t)) if t != "MSG" => t.to_string(),
        _ if e["encrypted"] == true => "encrypted".to_string(),
        _ => "unknown".to_string(),
    }
}

fn count(events: &[Value], kind: &str) -> u64 {
    events.iter().filter(|e| e["kind"] == kind).count() as u64
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uatap"))
        .arg("proxy")
        .args(args)
        .args(["--duration", "5"])
        .stdin(Stdio::null())
        .output()
        .expect("uatap runs")
}

/// Exit 2 with one line on stderr that contains `expect`.
fn assert_usage_error(out: &Output, expect: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(expect), "{err}");
}

/// Three connections (plain fixture, encrypted fixture, bytes that are not OPC UA): every
/// counter agrees with the byte streams, with the fixture's ground truth and with the JSON
/// events of the same run.
#[test]
fn metrics_count_what_crosses_the_proxy() {
    let dir = temp_dir("metrics-count");
    let json = dir.join("events.jsonl");
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let proxy = Running::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--metrics",
            "127.0.0.1:0",
            "--json-file",
            json.to_str().expect("utf-8 path"),
            // `message` events in the file too, to count them against the metrics.
            "--messages",
        ],
        1,
        true,
    );
    let listen = proxy.listeners[0].0;
    let metrics = proxy.metrics.expect("metrics address");
    assert!(metrics.ip().is_loopback());

    // Before any traffic: the unlabelled counters are there, at 0.
    let (status, headers, body) = get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers
            .lines()
            .any(|h| h.starts_with("Content-Type: text/plain; version=0.0.4")),
        "{headers}"
    );
    for name in [
        "uatap_connections_total",
        "uatap_connections_open",
        "uatap_bytes_total",
        "uatap_messages_total",
        "uatap_rejects_total",
        "uatap_sequence_gaps_total",
        "uatap_republish_total",
        "uatap_decode_errors_total",
        "uatap_service_faults_total",
        "uatap_stalls_total",
        "uatap_recording_stopped",
    ] {
        assert!(body.contains(&format!("# TYPE {name} ")), "{name}: {body}");
    }
    let s = samples(&body);
    assert_eq!(at(&s, "uatap_connections_total"), 0);
    assert!(s.contains_key("uatap_bytes_total{dir=\"c2s\"}"), "{body}");
    assert!(get(metrics, "/other").0.contains(" 404 "));

    let (plain_c2s, plain_s2c) = streams(&fixture("basic-none.pcapng"));
    exchange(listen, &server, &plain_c2s, &plain_s2c);
    let (enc_c2s, enc_s2c) = streams(&fixture("encrypt-b256sha256.pcapng"));
    exchange(listen, &server, &enc_c2s, &enc_s2c);
    let mut rng = Rng(17);
    let junk: Vec<u8> = (0..20_000).map(|_| rng.below(256) as u8).collect();
    let junk_back: Vec<u8> = junk.iter().rev().copied().collect();
    exchange(listen, &server, &junk, &junk_back);

    let s = proxy.metrics_when(|s| {
        at(s, "uatap_connections_total") == 3 && at(s, "uatap_connections_open") == 0
    });
    let body = get(metrics, "/metrics").2;
    proxy.stop();
    let events = read_events(&json);

    // Bytes: exactly the streams (whole messages as they complete, the rest at close).
    let c2s = (plain_c2s.len() + enc_c2s.len() + junk.len()) as u64;
    let s2c = (plain_s2c.len() + enc_s2c.len() + junk_back.len()) as u64;
    assert_eq!(at(&s, "uatap_bytes_total{dir=\"c2s\"}"), c2s, "{body}");
    assert_eq!(at(&s, "uatap_bytes_total{dir=\"s2c\"}"), s2c, "{body}");

    // basic-none's ground truth (fixtures/basic-none.md, checked with tshark): 31
    // PublishResponses, one normal ServiceFault (Bad_NoSubscription after the delete).
    // sign/encrypt-b256sha256 has no PublishResponse we can read (encrypted).
    assert_eq!(
        at(&s, "uatap_messages_total{service=\"PublishResponse\"}"),
        31,
        "{body}"
    );
    assert_eq!(count(&events, "publish"), 31);
    // Both streams are sent at once here, so whether the fault counts as normal (it follows
    // the DeleteSubscriptions) depends on the order the analysis saw them in: check the sum,
    // and each label against the events.
    let faults = |normal: bool| {
        events
            .iter()
            .filter(|e| e["kind"] == "service_fault" && e["normal"] == normal)
            .count() as u64
    };
    let (normal, abnormal) = (
        at(&s, "uatap_service_faults_total{normal=\"true\"}"),
        at(&s, "uatap_service_faults_total{normal=\"false\"}"),
    );
    assert_eq!(normal + abnormal, 1, "{body}");
    assert_eq!((normal, abnormal), (faults(true), faults(false)));
    assert_eq!(at(&s, "uatap_messages_total{service=\"HEL\"}"), 2);
    assert!(
        at(&s, "uatap_messages_total{service=\"encrypted\"}") > 0,
        "{body}"
    );

    // Every message event of the run, by service label, and nothing else.
    let mut by_service: HashMap<String, u64> = HashMap::new();
    for e in events.iter().filter(|e| e["kind"] == "message") {
        *by_service.entry(service_label(e)).or_default() += 1;
    }
    let metric_services: HashMap<String, u64> = s
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("uatap_messages_total{service=\"")
                .and_then(|r| r.strip_suffix("\"}"))
                .map(|svc| (svc.to_string(), *v))
        })
        .collect();
    assert_eq!(metric_services, by_service);
    assert_eq!(
        at(&s, "uatap_decode_errors_total"),
        count(&events, "decode_error")
    );
    assert!(at(&s, "uatap_decode_errors_total") > 0);
    assert_eq!(
        at(&s, "uatap_sequence_gaps_total"),
        count(&events, "sequence_gap")
    );
    assert_eq!(at(&s, "uatap_republish_total"), count(&events, "republish"));
    assert!(
        !s.keys().any(|k| k.starts_with("uatap_rejects_total")),
        "{body}"
    );
    // Nothing that identifies a peer or a session: no address, no session id.
    assert!(
        !body.contains("127.0.0.1") && !body.contains("ns="),
        "{body}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A server that refuses: one reject under the upstream error's name.
#[test]
fn metrics_count_a_refused_upstream() {
    // A port nobody listens on and nobody can take while this test runs: the local port of an
    // outgoing connection we keep open (a bound-then-closed port could be reused by a parallel
    // test and accept).
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let outgoing = TcpStream::connect(holder.local_addr().expect("addr")).expect("connect");
    let _accepted = holder.accept().expect("accept");
    let upstream = outgoing.local_addr().expect("local addr").to_string();
    let proxy = Running::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--metrics",
            "127.0.0.1:0",
        ],
        1,
        true,
    );
    let mut c = TcpStream::connect(proxy.listeners[0].0).expect("the proxy accepts");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = c.read(&mut [0u8; 16]);
    let s = proxy.metrics_when(|s| {
        at(s, "uatap_connections_open") == 0 && at(s, "uatap_connections_total") == 1
    });
    assert_eq!(
        at(
            &s,
            "uatap_rejects_total{kind=\"upstream_error\",status=\"refused\"}"
        ),
        1,
        "{s:?}"
    );
    assert_eq!(at(&s, "uatap_bytes_total{dir=\"c2s\"}"), 0);
    proxy.stop();
}

/// The endpoint has no authentication: an address other hosts reach needs the explicit flag.
#[test]
fn metrics_on_a_remote_address_needs_the_flag() {
    let out = run(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:1",
        "--metrics",
        "0.0.0.0:9464",
    ]);
    assert_usage_error(&out, "--metrics-allow-remote");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("proxying"), "refused before serving: {err}");
}

/// Two listeners from one file, to two servers: one process, one event stream with both
/// connections, metrics, the JSON file and one recording configured in the file, the recording
/// with one interface per listener (tshark reads which frame came through which).
#[test]
fn metrics_and_two_listeners_from_a_config_file() {
    let dir = temp_dir("metrics-config");
    let json = dir.join("all.jsonl");
    let server_a = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server_b = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (ua, ub) = (
        server_a.local_addr().expect("addr"),
        server_b.local_addr().expect("addr"),
    );
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"# two servers behind one proxy
json_file = "all.jsonl"
metrics = "127.0.0.1:0"
record = "all.pcapng"

[[listener]]
name = "line-a"
listen = "127.0.0.1:0"
upstream = "opc.tcp://{ua}/UA/Test"
connect_timeout = 2.5

[[listener]]
listen = "127.0.0.1:0"
upstream = "{ub}"
"#
        ),
    )
    .expect("write config");
    let proxy = Running::start(&["--config", config.to_str().expect("utf-8")], 2, true);
    let find = |up: SocketAddr| {
        proxy
            .listeners
            .iter()
            .find(|(_, u)| *u == up.to_string())
            .unwrap_or_else(|| panic!("no banner for {up}: {:?}", proxy.listeners))
            .0
    };
    let (la, lb) = (find(ua), find(ub));
    assert_ne!(la, lb);
    let (c2s, s2c) = streams(&fixture("basic-none.pcapng"));
    exchange(la, &server_a, &c2s, &s2c);
    let (c2s_b, s2c_b) = streams(&fixture("big-publish.pcapng"));
    exchange(lb, &server_b, &c2s_b, &s2c_b);
    let s = proxy.metrics_when(|s| {
        at(s, "uatap_connections_total") == 2 && at(s, "uatap_connections_open") == 0
    });
    assert_eq!(
        at(&s, "uatap_bytes_total{dir=\"c2s\"}"),
        (c2s.len() + c2s_b.len()) as u64
    );
    proxy.stop();

    let events = read_events(&json);
    let opens: Vec<&Value> = events.iter().filter(|e| e["kind"] == "conn_open").collect();
    assert_eq!(opens.len(), 2, "one stream, both connections");
    let conn_to = |listen: SocketAddr| {
        let o = opens
            .iter()
            .find(|e| e["server"] == listen.to_string())
            .unwrap_or_else(|| panic!("no connection to {listen}"));
        o["conn"].as_str().expect("conn id").to_string()
    };
    let (conn_a, conn_b) = (conn_to(la), conn_to(lb));
    assert_ne!(conn_a, conn_b);
    for (conn, up, down) in [(&conn_a, &c2s, &s2c), (&conn_b, &c2s_b, &s2c_b)] {
        let close = events
            .iter()
            .find(|e| e["kind"] == "conn_close" && e["conn"] == conn.as_str())
            .expect("conn_close");
        assert_eq!(close["bytes_c2s"], up.len(), "{conn}");
        assert_eq!(close["bytes_s2c"], down.len(), "{conn}");
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "publish" && e["conn"] == conn.as_str()),
            "{conn}: publish events"
        );
    }
    // The recording: the frames of each listener's connection, both legs, on its interface.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(dir.join("all.pcapng"))
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_id",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ports_of: BTreeMap<u32, std::collections::BTreeSet<u16>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let iface: u32 = f[0].parse().expect("interface id");
        let set = ports_of.entry(iface).or_default();
        set.insert(f[1].parse().expect("port"));
        set.insert(f[2].parse().expect("port"));
    }
    assert_eq!(ports_of.len(), 2, "two interfaces: {ports_of:?}");
    let iface_of = |port: u16| {
        ports_of
            .iter()
            .find(|(_, ports)| ports.contains(&port))
            .map(|(i, _)| *i)
            .unwrap_or_else(|| panic!("no frame with port {port}: {ports_of:?}"))
    };
    assert_eq!(
        iface_of(la.port()),
        iface_of(ua.port()),
        "both legs of line-a"
    );
    assert_eq!(
        iface_of(lb.port()),
        iface_of(ub.port()),
        "both legs of the second"
    );
    assert_ne!(iface_of(la.port()), iface_of(lb.port()));
    let _ = std::fs::remove_dir_all(dir);
}

/// A config that cannot be used stops the proxy at once: exit 2, one line saying where.
#[test]
fn metrics_config_errors_exit_2() {
    let dir = temp_dir("metrics-bad-config");
    let cases = [
        (
            "bad.toml",
            "[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = [\"x:1\"\n",
            "line 3",
        ),
        (
            "typo.toml",
            "[[listener]]\nlisten = \"127.0.0.1:0\"\nupstraem = \"x:1\"\n",
            "line 3, column 1: unknown field `upstraem`",
        ),
        (
            "addr.toml",
            "[[listener]]\nlisten = \"127.0.0.1\"\nupstream = \"x:1\"\n",
            "line 2, column 10",
        ),
        ("empty.toml", "metrics = \"127.0.0.1:0\"\n", "[[listener]]"),
        (
            "remote.toml",
            "metrics = \"0.0.0.0:0\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = \"x:1\"\n",
            "--metrics-allow-remote",
        ),
    ];
    for (name, text, expect) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let out = run(&["--config", path.to_str().expect("utf-8")]);
        assert_usage_error(&out, expect);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
    }
    // --config replaces --listen/--upstream.
    let path = dir.join("typo.toml");
    let out = run(&[
        "--config",
        path.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_usage_error(&out, "cannot be used with");
    let _ = std::fs::remove_dir_all(dir);
}
