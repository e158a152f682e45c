//! Live capture (`uatap analyze -i lo`) of a real asyncua client talking to a real node-opcua
//! server on loopback, checked against the session's known story and against tshark capturing
//! the same traffic at the same time. Needs root (or CAP_NET_RAW): without it the capture
//! cannot start and the test fails.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{peers_dir, python, run, temp_dir};

const UATAP: &str = env!("CARGO_BIN_EXE_uatap");

/// A child process killed when the test ends, passing or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of a pipe as they come, each with the instant it was read.
fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line with `needle`; every line read on the way is appended to `seen`.
fn wait_for_line(
    rx: &mpsc::Receiver<(Instant, String)>,
    needle: &str,
    timeout: Duration,
    seen: &mut Vec<String>,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((_, line)) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            Err(_) => return None,
        }
    }
    None
}

fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "{child:?} did not exit in time");
        thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    run(Command::new("kill").args([sig, &child.id().to_string()]));
}

fn tool(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_string())
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

fn parse_json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Starts `uatap analyze -i lo` with `args` and waits until it is capturing; fails the test
/// (with uatap's own message) if it cannot capture.
fn start_live(args: &[&str]) -> (Reaped, mpsc::Receiver<(Instant, String)>, Vec<String>) {
    let mut child = Command::new(UATAP)
        .args(["analyze", "-i", "lo"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start uatap");
    let stderr = lines(child.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    let ready = wait_for_line(
        &stderr,
        "capturing on lo",
        Duration::from_secs(10),
        &mut seen,
    );
    assert!(
        ready.is_some(),
        "uatap analyze -i lo did not start capturing (live capture needs root or CAP_NET_RAW):\n{}",
        seen.join("\n")
    );
    (Reaped(child), stderr, seen)
}

#[test]
fn live_capture_of_asyncua_and_node_opcua_matches_tshark() {
    let port = crate::util::free_port();
    let p = port.to_string();
    let url = format!("opc.tcp://127.0.0.1:{port}/UA/Test");
    let dir = temp_dir("live");
    let pcap = dir.join("tshark.pcapng");

    // The server first: its start-up is slow and needs no capture.
    let mut server = Command::new(tool("UATAP_NODE", "node"))
        .arg(peers_dir().join("ua_server.js"))
        .args(["--port", &p])
        .current_dir(peers_dir())
        .env("NODE_NO_WARNINGS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node ua_server.js (run `make deps`)");
    let server_out = lines(server.stdout.take().expect("stdout"));
    let server = Reaped(server);
    let mut seen = Vec::new();
    let ready = wait_for_line(&server_out, "READY ", Duration::from_secs(30), &mut seen)
        .unwrap_or_else(|| panic!("node-opcua server not READY:\n{}", seen.join("\n")));
    assert_eq!(ready.trim(), format!("READY {url}"));

    // uatap and tshark capture at the same time.
    let (mut uatap, uatap_err, mut uatap_notes) =
        start_live(&["--port", &p, "--json", "--duration", "12"]);
    let uatap_out = lines(uatap.0.stdout.take().expect("stdout"));
    let mut tshark = Command::new(tool("UATAP_TSHARK", "tshark"))
        .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
        .arg(&pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tshark");
    let tshark_err = lines(tshark.stderr.take().expect("stderr"));
    let mut tshark = Reaped(tshark);
    let mut tshark_lines = Vec::new();
    assert!(
        wait_for_line(
            &tshark_err,
            "Capturing on",
            Duration::from_secs(20),
            &mut tshark_lines
        )
        .is_some(),
        "tshark did not start: {tshark_lines:?}"
    );
    thread::sleep(Duration::from_millis(500));

    let client_started = Instant::now();
    run(Command::new(python())
        .arg("-u")
        .arg(peers_dir().join("ua_client.py"))
        .args(["basic", &url, "--seconds", "4"])
        .current_dir(peers_dir())
        .env("PYTHONUNBUFFERED", "1"));
    let client_done = Instant::now();
    assert!(
        client_done - client_started < Duration::from_secs(10),
        "the client took {:?}: the 12 s capture may have missed its end",
        client_done - client_started
    );
    thread::sleep(Duration::from_millis(500)); // FIN/ACK
    drop(server);
    thread::sleep(Duration::from_millis(300));
    signal(&tshark.0, "-INT");
    assert!(wait_exit(&mut tshark.0, Duration::from_secs(10)).success());
    tshark_lines.extend(tshark_err.iter().map(|(_, l)| l));

    let status = wait_exit(&mut uatap.0, Duration::from_secs(20));
    let exited = Instant::now();
    uatap_notes.extend(uatap_err.iter().map(|(_, l)| l));
    assert!(
        status.success(),
        "uatap: {status}\n{}",
        uatap_notes.join("\n")
    );
    let out: Vec<(Instant, String)> = uatap_out.iter().collect();
    let text: String = out.iter().map(|(_, l)| format!("{l}\n")).collect();
    let evs = parse_json_lines(&text);

    // Printed as it happened, not at exit: the hello came out while the client still ran.
    let hello_at = out
        .iter()
        .find(|(_, l)| l.contains("\"kind\":\"hello\""))
        .map(|(t, _)| *t)
        .expect("a hello event");
    assert!(
        hello_at < client_done && hello_at + Duration::from_secs(3) < exited,
        "events are printed live"
    );

    // The session's story.
    let one_conn: std::collections::BTreeSet<&str> =
        evs.iter().filter_map(|e| e["conn"].as_str()).collect();
    assert_eq!(one_conn.len(), 1, "{one_conn:?}");
    assert_eq!(of_kind(&evs, "conn_open").len(), 1);
    let hello = of_kind(&evs, "hello");
    assert_eq!(hello.len(), 2);
    assert_eq!(hello[0]["dir"], "c2s");
    assert_eq!(hello[0]["endpoint_url"], url.as_str());
    let ch = of_kind(&evs, "secure_channel");
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["outcome"], "ok");
    assert_eq!(ch[0]["policy"], "None");
    let sessions: Vec<(&str, &str)> = of_kind(&evs, "session")
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap_or(""),
                s["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        sessions,
        [("create", "ok"), ("activate", "ok"), ("close", "ok")]
    );
    let seqs: Vec<u64> = of_kind(&evs, "publish")
        .iter()
        .map(|p| p["sequence_number"].as_u64().expect("sequence_number"))
        .collect();
    assert!(seqs.len() >= 20, "{} publish events", seqs.len());
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "consecutive"
    );
    assert!(of_kind(&evs, "sequence_gap").is_empty());
    assert!(of_kind(&evs, "decode_error").is_empty());
    let close = of_kind(&evs, "conn_close");
    assert_eq!(close.len(), 1);
    // After the client's CloseSecureChannel both sides close the socket: either FIN is first.
    assert!(
        close[0]["by"] == "client" || close[0]["by"] == "server",
        "{}",
        close[0]
    );
    assert_eq!(close[0]["reason"], "fin");
    let notes = uatap_notes.join("\n");
    assert!(
        notes.contains(&format!("decoded OPC UA on TCP port {port}")),
        "{notes}"
    );
    assert!(notes.contains("stopped by --duration"), "{notes}");

    // tshark saw the same packets, each once (loopback's outgoing copies skipped) ...
    let tshark_packets = tshark_lines
        .iter()
        .find_map(|l| l.strip_suffix(" packets captured"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("tshark packet count: {tshark_lines:?}"));
    assert!(
        notes.contains(&format!("{tshark_packets} TCP segments on port {port}")),
        "tshark captured {tshark_packets}: {notes}"
    );
    // ... and its file analyses into the same events. Times may differ by a microsecond or
    // so (tshark's timestamps come through the packet ring, ours with the datagram).
    let from_file = file_events(&pcap);
    assert_eq!(evs.len(), from_file.len(), "live and file event counts");
    for (live, file) in evs.iter().zip(&from_file) {
        let (mut a, mut b) = (live.clone(), file.clone());
        for key in ["ts", "latency_ms"] {
            a.as_object_mut().map(|o| o.remove(key));
            b.as_object_mut().map(|o| o.remove(key));
        }
        assert_eq!(a, b, "live and file analyses differ");
        let dt = (seconds_of_day(live) - seconds_of_day(file)).abs();
        assert!(dt < 0.001, "{dt} s apart:\n{live}\n{file}");
        if let (Some(x), Some(y)) = (live["latency_ms"].as_f64(), file["latency_ms"].as_f64()) {
            assert!((x - y).abs() < 1.0, "latency {x} vs {y}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An event's time of day in seconds, from its RFC 3339 `ts`.
fn seconds_of_day(e: &Value) -> f64 {
    let ts = e["ts"].as_str().expect("ts");
    let time = ts
        .split_once('T')
        .and_then(|(_, t)| t.strip_suffix('Z'))
        .expect("RFC 3339 UTC");
    time.split(':')
        .map(|p| p.parse::<f64>().expect("number"))
        .fold(0.0, |acc, v| acc * 60.0 + v)
}

fn file_events(capture: &Path) -> Vec<Value> {
    parse_json_lines(&run(Command::new(UATAP)
        .args(["analyze", "--json"])
        .arg(capture)))
}

#[test]
fn live_capture_stops_cleanly_on_ctrl_c() {
    let port = crate::util::free_port().to_string();
    let (mut uatap, stderr, mut notes) = start_live(&["--port", &port, "--json"]);
    thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    signal(&uatap.0, "-INT");
    let status = wait_exit(&mut uatap.0, Duration::from_secs(5));
    assert!(asked.elapsed() < Duration::from_secs(2), "stopped promptly");
    notes.extend(stderr.iter().map(|(_, l)| l));
    assert!(status.success(), "{status}: {notes:?}");
    let notes = notes.join("\n");
    assert!(notes.contains("stopped by Ctrl-C"), "{notes}");
    assert!(notes.contains("no OPC UA connection found"), "{notes}");
}

#[test]
fn live_capture_names_an_unknown_interface() {
    let out = Command::new(UATAP)
        .args(["analyze", "-i", "nosuchif0", "--duration", "1"])
        .output()
        .expect("run uatap");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no network interface named \"nosuchif0\"") && err.contains("lo"),
        "{err}"
    );
}
