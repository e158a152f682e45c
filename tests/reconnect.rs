//! A real node-opcua client that loses its connection and comes back on its own (new channel,
//! ActivateSession on the same session, Republish), against a real node-opcua server. A relay in
//! this test forwards the bytes, cuts the first connection, and records both connections as a
//! capture; `uatap analyze` must give one `reconnect` verdict that matches what happened.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::util::{free_port, peers_dir, run, temp_dir, write_pcap, Segment};

const UATAP: &str = env!("CARGO_BIN_EXE_uatap");

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Segments per connection (client address, segments in the order seen).
type Recording = Arc<Mutex<Vec<(SocketAddr, Vec<Segment>)>>>;

fn record(
    rec: &Recording,
    conn: usize,
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    payload: &[u8],
) {
    let mut r = rec.lock().unwrap();
    r[conn].1.push(Segment {
        ts_nanos: now_nanos(),
        src,
        dst,
        seq: 0,
        ack: 0,
        flags,
        payload: payload.to_vec(),
    });
}

/// Copies one direction, recording each read as a segment; a FIN when the sender closes,
/// unless the relay cut the connection.
#[allow(clippy::too_many_arguments)]
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    rec: Recording,
    conn: usize,
    src: SocketAddr,
    dst: SocketAddr,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            break;
        }
        record(&rec, conn, src, dst, 0x18, &buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !cut.load(Ordering::SeqCst) {
        record(&rec, conn, src, dst, 0x11, &[]);
        let _ = to.shutdown(Shutdown::Write);
    }
}

/// Accepts clients, forwards each to `upstream`, and cuts the first connection `cut_after`
/// its start (recorded as a reset from the server).
fn relay(listener: TcpListener, upstream: SocketAddr, cut_after: Duration, rec: Recording) {
    for (conn, client) in listener.incoming().enumerate() {
        let Ok(client) = client else { break };
        let Ok(server) = TcpStream::connect(upstream) else {
            break;
        };
        let c = client.peer_addr().unwrap();
        rec.lock().unwrap().push((c, Vec::new()));
        record(&rec, conn, c, upstream, 0x02, &[]);
        record(&rec, conn, upstream, c, 0x12, &[]);
        record(&rec, conn, c, upstream, 0x10, &[]);
        let cut = Arc::new(AtomicBool::new(false));
        for (from, to, src, dst) in [
            (
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                c,
                upstream,
            ),
            (
                server.try_clone().unwrap(),
                client.try_clone().unwrap(),
                upstream,
                c,
            ),
        ] {
            let (rec, cut) = (rec.clone(), cut.clone());
            thread::spawn(move || pump(from, to, rec, conn, src, dst, cut));
        }
        if conn == 0 {
            let rec = rec.clone();
            thread::spawn(move || {
                thread::sleep(cut_after);
                cut.store(true, Ordering::SeqCst);
                record(&rec, conn, upstream, c, 0x04, &[]);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    }
}

/// Sequence numbers as if these segments were all that was sent on the connection.
fn renumber(segs: &mut [Segment], client: SocketAddr) {
    let mut next = [1000u32, 5000u32];
    for s in segs.iter_mut() {
        let (me, peer) = if s.src == client { (0, 1) } else { (1, 0) };
        s.seq = next[me];
        s.ack = next[peer];
        let syn_fin = u32::from(s.flags & 0x03 != 0);
        next[me] = next[me].wrapping_add(s.payload.len() as u32 + syn_fin);
    }
}

#[test]
fn node_opcua_client_comes_back_with_its_session() {
    let port = free_port();
    let p = port.to_string();
    let dir = temp_dir("reconnect-peers");

    let mut server = Command::new(std::env::var("UATAP_NODE").unwrap_or_else(|_| "node".into()))
        .arg(peers_dir().join("ua_server.js"))
        .args(["--port", &p])
        .current_dir(peers_dir())
        .env("NODE_NO_WARNINGS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node ua_server.js (run `make deps`)");
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("READY ") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "node-opcua server ended before READY");
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let rec: Recording = Arc::new(Mutex::new(Vec::new()));
    let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    {
        let rec = rec.clone();
        thread::spawn(move || relay(listener, upstream, Duration::from_millis(2500), rec));
    }
    let url = format!("opc.tcp://127.0.0.1:{relay_port}/UA/Test");
    let client_out = run(Command::new(
        std::env::var("UATAP_NODE").unwrap_or_else(|_| "node".into()),
    )
    .arg(peers_dir().join("ua_client.js"))
    .args(["basic", &url, "--seconds", "7", "--reconnect"])
    .current_dir(peers_dir())
    .env("NODE_NO_WARNINGS", "1"));
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        client_out.contains("connection_reestablished"),
        "the client did not come back:\n{client_out}"
    );

    thread::sleep(Duration::from_millis(300));
    let conns = rec.lock().unwrap().clone();
    assert!(conns.len() >= 2, "{} connections", conns.len());
    let mut all = Vec::new();
    for (client, mut segs) in conns {
        renumber(&mut segs, client);
        all.extend(segs);
    }
    all.sort_by_key(|s| s.ts_nanos);
    let file = dir.join("reconnect.pcap");
    write_pcap(&file, &all);
    let text = run(Command::new(UATAP).arg("analyze").arg("--json").arg(&file));
    let evs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let rec: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "reconnect").collect();
    assert_eq!(rec.len(), 1, "{rec:#?}\n{client_out}");
    let r = rec[0];
    eprintln!("{r:#}");
    assert_eq!(r["came_back"], true);
    assert_eq!(r["session_reused"], true, "{r}");
    assert_ne!(r["old_channel_id"], r["new_channel_id"]);
    let activations: Vec<&Value> = evs
        .iter()
        .filter(|e| e["kind"] == "session" && e["action"] == "activate")
        .collect();
    assert_eq!(r["session_id"], activations[0]["session_id"]);
    let downtime = r["downtime_ms"].as_f64().unwrap();
    assert!(downtime > 0.0 && downtime < 5000.0, "{downtime}");
    let verdict = |id: &str| -> Value {
        r["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .map_or(Value::Null, |v| v["verdict"].clone())
    };
    assert_eq!(verdict("R2"), "PASS", "{r}");
    assert_eq!(verdict("R3"), "PASS", "{r}");
    assert_eq!(verdict("R5"), "PASS", "{r}");
    // node-opcua asks Republish from the next number until Bad_MessageNotAvailable; whether
    // its Publish requests interleave (WARN) depends on timing.
    let r10 = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "R10")
        .expect("R10");
    assert!(
        r10["verdict"] == "PASS" || r10["verdict"] == "WARN",
        "{r10}"
    );
    assert!(
        r10["detail"]
            .as_str()
            .unwrap()
            .contains("ended by Bad_MessageNotAvailable"),
        "{r10}"
    );
    // What the verdict says was recovered came back through Republish; what it says was lost
    // never reached the client on the new connection (node-opcua skips numbers when a Publish
    // response overtakes its Republish loop: seen here as lost with R12 WARN).
    let new_conn = r["conn"].as_str().unwrap();
    let good_republish: Vec<u64> = evs
        .iter()
        .filter(|e| e["kind"] == "republish" && e["status_name"] == "Good")
        .filter_map(|e| e["retransmit_sequence_number"].as_u64())
        .collect();
    let delivered: Vec<u64> = evs
        .iter()
        .filter(|e| e["kind"] == "publish" && e["conn"] == new_conn)
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    let republished: Vec<u64> = r["republished"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let lost: Vec<u64> = r["lost"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(!republished.is_empty(), "{r}");
    assert!(
        republished.iter().all(|n| good_republish.contains(n)),
        "{r}"
    );
    assert!(
        lost.iter()
            .all(|n| !good_republish.contains(n) && !delivered.contains(n)),
        "{r}"
    );
    assert_eq!(r["recovered"], lost.is_empty());
    if !lost.is_empty() {
        assert_eq!(verdict("R12"), "WARN", "{r}");
    }
    if std::env::var("UATAP_KEEP").is_ok() {
        eprintln!("kept {}", file.display());
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
}
