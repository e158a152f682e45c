//! `--rewrite-endpoint-urls` (a client that dials the advertised endpoint stays on the proxy;
//! only the URLs change) and `--mirror-refusal` (a refusing server makes the proxy refuse).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use uatap_codec::secure::{parse_chunk, Protection};
use uatap_codec::services::{parse_message, EndpointDescription, ServiceBody};
use uatap_codec::tcp::{parse_hello_message, MessageType, MESSAGE_HEADER_LEN};
use uatap_codec::types::UaString;
use uatap_codec::{Encode, Reader};

use crate::util::{peers_dir, python, streams, temp_dir};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `uatap proxy` on 127.0.0.1:`port`; its stderr is collected.
struct Proxy {
    child: Child,
    listen: SocketAddr,
    json: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl Proxy {
    fn start(upstream: &str, flags: &[&str], dir: &Path) -> Proxy {
        let port = free_port();
        let json = dir.join(format!("events-{port}.jsonl"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["proxy", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", upstream])
            .arg("--json-file")
            .arg(&json)
            .args(["--duration", "120"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("uatap proxy starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        // The banner names the listen address once it is bound.
        let mut line = String::new();
        loop {
            line.clear();
            let n = lines.read_line(&mut line).expect("proxy stderr");
            assert!(n > 0, "the proxy exited: {}", stderr.lock().unwrap());
            stderr.lock().unwrap().push_str(&line);
            if line.contains(&listen.to_string()) {
                break;
            }
        }
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for l in lines.lines() {
                let Ok(l) = l else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Proxy {
            child,
            listen,
            json,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the proxy (SIGTERM, so it flushes) and returns its JSON events.
    fn stop(mut self) -> Vec<Value> {
        crate::util::terminate(&mut self.child);
        crate::util::read_events(&self.json)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node-opcua server: like Kepware it advertises its own address,
/// opc.tcp://127.0.0.1:PORT/UA/Test, whatever URL the client asked for (asyncua's server echoes
/// the client's). Killed when dropped.
struct Server(Child);

impl Server {
    fn start(port: u16) -> Server {
        let mut child = Command::new("node")
            .arg(peers_dir().join("ua_server.js"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            assert!(Instant::now() < deadline, "server never printed READY");
            match lines.next() {
                Some(Ok(l)) if l.contains("READY") => break,
                Some(Ok(_)) => {}
                _ => panic!("server exited before READY"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Milo-like client: GetEndpoints on `url`, then a session on the advertised URL.
/// Returns its output; fails the test when the client fails.
fn discovering_client(url: &str) -> String {
    let out = Command::new(python())
        .arg(peers_dir().join("ua_client.py"))
        .args(["discover", url, "--seconds", "2"])
        .output()
        .expect("client runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn dialed(client_output: &str) -> &str {
    client_output
        .lines()
        .find_map(|l| l.split_once("ENDPOINT ").map(|(_, u)| u.trim()))
        .unwrap_or_else(|| panic!("no ENDPOINT line in {client_output}"))
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// Without the option the client follows the server's advertised URL around the proxy; with
/// it, its session runs through the proxy and the rewrite is reported.
#[test]
fn rewritten_endpoint_urls_keep_a_discovering_client_on_the_proxy() {
    let dir = temp_dir("rewrite-peers");
    let sport = free_port();
    let _server = Server::start(sport);
    let upstream = format!("opc.tcp://127.0.0.1:{sport}/UA/Test");
    let advertised = format!("opc.tcp://127.0.0.1:{sport}/UA/Test");

    // Plain proxy: only the discovery connection goes through it.
    let proxy = Proxy::start(&upstream, &[], &dir);
    let out = discovering_client(&format!("opc.tcp://{}/UA/Test", proxy.listen));
    assert_eq!(dialed(&out), advertised, "{out}");
    let events = proxy.stop();
    assert_eq!(of_kind(&events, "conn_open").len(), 1, "{events:#?}");
    assert!(of_kind(&events, "session").is_empty());
    assert!(of_kind(&events, "publish").is_empty());
    assert!(of_kind(&events, "fault_injected").is_empty());

    // With the option: the advertised URL is the proxy's, and the session goes through it.
    let proxy = Proxy::start(&upstream, &["--rewrite-endpoint-urls"], &dir);
    let mine = format!("opc.tcp://{}/UA/Test", proxy.listen);
    let out = discovering_client(&mine);
    assert_eq!(dialed(&out), mine, "{out}");
    assert!(
        proxy.stderr().contains("bytes WILL be changed"),
        "{}",
        proxy.stderr()
    );
    let listen = proxy.listen;
    let events = proxy.stop();
    let faults = of_kind(&events, "fault_injected");
    assert!(!faults.is_empty(), "{events:#?}");
    for f in &faults {
        assert_eq!(f["fault"], "rewrite_endpoint_urls");
        assert_eq!(f["dir"], "s2c");
        let detail = f["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!(
                "opc.tcp://127.0.0.1:{sport} -> opc.tcp://{listen} ("
            )),
            "{detail}"
        );
    }
    assert!(faults.iter().any(|f| f["detail"]
        .as_str()
        .unwrap()
        .contains("GetEndpointsResponse")));
    assert!(faults.iter().any(|f| f["detail"]
        .as_str()
        .unwrap()
        .contains("CreateSessionResponse")));
    assert!(
        of_kind(&events, "conn_open").len() >= 2,
        "discovery + session"
    );
    let session_conn = of_kind(&events, "session")
        .into_iter()
        .find(|e| e["action"] == "create" && e["outcome"] == "ok")
        .map(|e| e["conn"].clone())
        .expect("CreateSession through the proxy");
    assert!(of_kind(&events, "session")
        .iter()
        .any(|e| e["action"] == "activate" && e["outcome"] == "ok" && e["conn"] == session_conn));
    let publishes = of_kind(&events, "publish")
        .into_iter()
        .filter(|e| e["conn"] == session_conn)
        .count();
    assert!(publishes >= 3, "{publishes} publishes through the proxy");
    assert!(of_kind(&events, "decode_error").is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

/// Replaces the endpoint URLs of a decoded GetEndpoints/CreateSession response the way the
/// proxy should have; returns how many were replaced.
fn expected_rewrite(list: &mut Option<Vec<EndpointDescription<'_>>>, authority: &str) -> usize {
    let mut n = 0;
    for e in list.iter_mut().flatten() {
        let url = e.endpoint_url.as_str().expect("URL").to_string();
        let path = url
            .strip_prefix("opc.tcp://")
            .and_then(|r| r.find('/').map(|i| r[i..].to_string()))
            .unwrap_or_default();
        e.endpoint_url = UaString::from(format!("opc.tcp://{authority}{path}"));
        n += 1;
    }
    n
}

fn split_chunks(mut s: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    while s.len() >= MESSAGE_HEADER_LEN {
        let size = u32::from_le_bytes([s[4], s[5], s[6], s[7]]) as usize;
        let (c, rest) = s.split_at(size.min(s.len()));
        v.push(c);
        s = rest;
    }
    v
}

/// A recorded conversation replayed through the proxy with the option: the server receives
/// every byte unchanged, and the client receives the server's bytes with only the endpoint
/// URLs changed (decoded and compared message by message), sequence numbers kept.
#[test]
fn only_the_endpoint_urls_change() {
    let dir = temp_dir("rewrite-bytes");
    let capture = crate::util::root()
        .join("fixtures")
        .join("basic-none.pcapng");
    let (c2s, s2c) = streams(&capture);
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let proxy = Proxy::start(&upstream, &["--rewrite-endpoint-urls"], &dir);
    let authority = proxy.listen.to_string();

    // The client dials the proxy: its HEL names the proxy (the rest of its stream as recorded).
    let hel_len = u32::from_le_bytes([c2s[4], c2s[5], c2s[6], c2s[7]]) as usize;
    let mut hello =
        parse_hello_message(&mut Reader::new(&c2s[MESSAGE_HEADER_LEN..hel_len])).expect("HEL");
    hello.endpoint_url = UaString::from(format!("opc.tcp://{authority}/UA/Test"));
    let body = hello.to_vec();
    let mut sent = b"HELF".to_vec();
    sent.extend_from_slice(&((MESSAGE_HEADER_LEN + body.len()) as u32).to_le_bytes());
    sent.extend_from_slice(&body);
    sent.extend_from_slice(&c2s[hel_len..]);

    let replay = s2c.clone();
    let server_side = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        // Answer in small pieces so that the proxy has to put chunks together.
        for piece in replay.chunks(97) {
            s.write_all(piece).expect("write");
        }
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        got
    });
    let mut client = TcpStream::connect(proxy.listen).expect("connect");
    client.write_all(&sent).expect("write");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("read");
    let server_got = server_side.join().expect("server");
    let events = proxy.stop();
    assert!(server_got == sent, "client->server bytes changed");

    let (before, after) = (split_chunks(&s2c), split_chunks(&got));
    assert_eq!(before.len(), after.len(), "same chunks");
    let mut rewritten = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        if b == a {
            continue;
        }
        let cb = parse_chunk(&mut Reader::new(b), Protection::None).expect("server chunk");
        let ca = parse_chunk(&mut Reader::new(a), Protection::None).expect("client chunk");
        assert_eq!(cb.header.message_type, MessageType::Message);
        assert_eq!(cb.sequence_header, ca.sequence_header, "sequence kept");
        assert_eq!(cb.secure_channel_id, ca.secure_channel_id);
        assert_eq!(
            ca.header.message_size as usize,
            a.len(),
            "MessageSize fixed"
        );
        let mut mb = parse_message(&mut Reader::new(cb.body)).expect("server message");
        let ma = parse_message(&mut Reader::new(ca.body)).expect("client message");
        let n = match &mut mb.body {
            ServiceBody::GetEndpointsResponse(r) => expected_rewrite(&mut r.endpoints, &authority),
            ServiceBody::CreateSessionResponse(r) => {
                expected_rewrite(&mut r.server_endpoints, &authority)
            }
            other => panic!("unexpected change in {other:?}"),
        };
        assert!(n > 0);
        assert_eq!(mb, ma, "only the URLs differ");
        rewritten.push(mb.service_name().unwrap_or("?"));
    }
    assert_eq!(
        rewritten,
        ["GetEndpointsResponse", "CreateSessionResponse"],
        "what changed"
    );
    assert_eq!(of_kind(&events, "fault_injected").len(), 2, "{events:#?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// With --mirror-refusal a refusing server closes the proxy's listener: the client already
/// accepted is reset, the next one is refused by the kernel, and once the server listens again
/// the proxy accepts again.
#[test]
fn mirror_refusal_closes_and_reopens_the_listener() {
    let dir = temp_dir("mirror-refusal");
    let (reserved, uport) = crate::util::refused_port();
    let proxy = Proxy::start(&format!("127.0.0.1:{uport}"), &["--mirror-refusal"], &dir);

    let mut first = TcpStream::connect(proxy.listen).expect("accepted before the refusal");
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let r = first.read(&mut [0u8; 16]);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");

    let second = TcpStream::connect(proxy.listen);
    assert_eq!(
        second.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::ConnectionRefused),
        "{second:?}"
    );

    // The server is back: within a few seconds the proxy accepts again.
    drop(reserved);
    let server = TcpListener::bind(("127.0.0.1", uport)).expect("the upstream port is free");
    let started = Instant::now();
    let reopened = loop {
        match TcpStream::connect(proxy.listen) {
            Ok(s) => break s,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "still refused after 5 s: {}",
                    proxy.stderr()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    // And it forwards again.
    let mut reopened = reopened;
    reopened.write_all(b"ping").expect("write");
    let mut upstream_side = loop {
        let (s, _) = server.accept().expect("the proxy dials the server");
        // Skip the proxy's probes (closed at once, nothing sent).
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 4];
        if s.read_exact(&mut buf).is_ok() {
            assert_eq!(&buf, b"ping");
            break s;
        }
    };
    upstream_side.write_all(b"pong").expect("write");
    let mut buf = [0u8; 4];
    reopened.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"pong");
    drop((reopened, upstream_side));

    let stderr = proxy.stderr();
    let events = proxy.stop();
    assert!(stderr.contains("accepts connections again"), "{stderr}");
    let err = of_kind(&events, "upstream_error");
    let err = err.first().expect("upstream_error");
    assert_eq!(err["error"], "refused");
    let detail = err["detail"].as_str().unwrap();
    assert!(
        detail.contains("closed its listener") && detail.contains("Bad_ConnectionRejected"),
        "{detail}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
