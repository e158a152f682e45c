//! Fault injection: each fault does what it says to the bytes, keeps the channel valid where
//! it must (renumbered chunks after a dropped message), is reported as `fault_injected`, and
//! can be added and removed at run time through the admin API and `uatap fault`.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use uatap_codec::reader::Reader;
use uatap_codec::secure::{parse_chunk, Protection};
use uatap_codec::services::parse_message;
use uatap_codec::tcp::{frame, Frame};

use crate::proxy::{read_all, write_randomly, Proxy};
use crate::util::{peers_dir, python, root, streams, temp_dir};

/// Splits a stream into its UA messages (chunks).
pub fn chunks(mut s: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Ok(Frame::Complete { header }) = frame(s, None) {
        let (c, rest) = s.split_at(header.message_size as usize);
        v.push(c.to_vec());
        s = rest;
    }
    assert!(s.is_empty(), "trailing bytes");
    v
}

/// (chunk sequence number, notification sequence number of a PublishResponse).
pub fn seqs(chunk: &[u8]) -> (Option<u32>, Option<u32>) {
    let Ok(c) = parse_chunk(&mut Reader::new(chunk), Protection::None) else {
        return (None, None);
    };
    let n = parse_message(&mut Reader::new(c.body))
        .ok()
        .filter(|m| m.type_id_numeric() == Some(829))
        .and_then(|m| m.notification_sequence_number());
    (c.sequence_header.map(|s| s.sequence_number), n)
}

fn uatap_fault(proxy: &Proxy, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .arg("fault")
        .arg("--admin")
        .arg(proxy.admin.expect("--admin").to_string())
        .args(args)
        .output()
        .expect("uatap fault runs");
    assert!(
        out.status.success(),
        "uatap fault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON answer")
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// A fake server plays a real server's bytes; the proxy drops one PublishResponse: the client
/// gets every other byte, with the chunk sequence numbers still rising by one, and uatap (which
/// analyses what the client received) reports the notification gap.
/// Plays basic-none through a proxy that drops the first PublishResponse; returns what the
/// server sent, what the client got, and the proxy's events (`extra`: more proxy options).
pub fn drop_message_exchange(
    dir: &std::path::Path,
    extra: &[&str],
) -> (Vec<u8>, Vec<u8>, Vec<Value>) {
    let (c2s, s2c) = streams(&root().join("fixtures/basic-none.pcapng"));
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let mut args = vec!["--fault", "drop-message PublishResponse x1"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start_with(&upstream, dir, &args);
    let sent = s2c.clone();
    let hel_len = chunks(&c2s)[0].len();
    let server_side = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        // Like a server, say nothing before the client's HEL.
        let mut got = vec![0u8; hel_len];
        s.read_exact(&mut got).expect("HEL");
        let w = s.try_clone().expect("clone");
        let writer = std::thread::spawn(move || write_randomly(w, sent, 7));
        got.extend(read_all(s));
        writer.join().expect("writer");
        got
    });
    let client = TcpStream::connect(proxy.listen).expect("connect");
    let w = client.try_clone().expect("clone");
    let writer = std::thread::spawn(move || write_randomly(w, c2s, 8));
    let got = read_all(client);
    writer.join().expect("writer");
    server_side.join().expect("server");
    (s2c, got, proxy.stop())
}

/// A fake server plays a real server's bytes; the proxy drops one PublishResponse: the client
/// gets every other byte, with the chunk sequence numbers still rising by one, and uatap (which
/// analyses what the client received) reports the notification gap.
#[test]
fn drop_message_renumbers_the_chunks_and_the_client_sees_a_gap() {
    let dir = temp_dir("fault-drop");
    let (s2c, got, events) = drop_message_exchange(&dir, &[]);
    let sent_chunks = chunks(&s2c);
    let got_chunks = chunks(&got);
    assert_eq!(
        got_chunks.len() + 1,
        sent_chunks.len(),
        "one message dropped"
    );
    let dropped = sent_chunks
        .iter()
        .map(|c| seqs(c).1)
        .find(Option::is_some)
        .flatten()
        .expect("the fixture has a PublishResponse");
    let delivered: Vec<u32> = got_chunks.iter().filter_map(|c| seqs(c).1).collect();
    assert!(!delivered.contains(&dropped), "{dropped} was dropped");
    let chunk_seqs: Vec<u32> = got_chunks.iter().filter_map(|c| seqs(c).0).collect();
    for w in chunk_seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "chunk sequence numbers: {chunk_seqs:?}");
    }
    // Every other byte is unchanged, but for the sequence numbers after the drop, one lower.
    let mut expected = Vec::new();
    let mut after = false;
    for c in &sent_chunks {
        if seqs(c).1 == Some(dropped) {
            after = true;
            continue;
        }
        let mut c = c.clone();
        if after {
            let seq = u32::from_le_bytes(c[16..20].try_into().unwrap()) - 1;
            c[16..20].copy_from_slice(&seq.to_le_bytes());
        }
        expected.extend_from_slice(&c);
    }
    assert_eq!(got, expected);
    let faults = of_kind(&events, "fault_injected");
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["fault"], "drop-message");
    assert!(faults[0]["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("PublishResponse seq={dropped}")));
    let gaps = of_kind(&events, "sequence_gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0]["missing"], serde_json::json!([dropped]));
    let _ = std::fs::remove_dir_all(dir);
}

/// `reject next OPN with ...`: the HEL and ACK pass, the OPN is answered with an ERR of that
/// status and never reaches the server, and both legs are closed.
#[test]
fn reject_next_opn_answers_with_an_err_and_closes() {
    let (c2s, s2c) = streams(&root().join("fixtures/basic-none.pcapng"));
    let hel = chunks(&c2s)[0].clone();
    let ack = chunks(&s2c)[0].clone();
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("fault-reject");
    let proxy = Proxy::start_with(
        &upstream,
        &dir,
        &["--fault", "reject next OPN with Bad_SecurityChecksFailed"],
    );
    let server_side = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        let mut got = vec![0u8; hel.len()];
        s.read_exact(&mut got).expect("HEL");
        s.write_all(&ack).expect("ACK");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (got, rest)
    });
    // The client waits for the ACK before its OPN, as real clients do.
    let mut client = TcpStream::connect(proxy.listen).expect("connect");
    let hel_len = chunks(&c2s)[0].len();
    client.write_all(&c2s[..hel_len]).expect("HEL");
    let mut got = vec![0u8; chunks(&s2c)[0].len()];
    client.read_exact(&mut got).expect("ACK");
    client.write_all(&c2s[hel_len..]).expect("the rest");
    got.extend(read_all(client));
    let (server_hel, server_rest) = server_side.join().expect("server");
    let events = proxy.stop();

    assert_eq!(server_hel, chunks(&c2s)[0]);
    assert!(
        server_rest.is_empty(),
        "nothing after the HEL reached the server"
    );
    let got = chunks(&got);
    assert_eq!(got.len(), 2, "ACK then ERR");
    assert_eq!(&got[1][..4], b"ERRF");
    assert_eq!(&got[1][8..12], &0x8013_0000u32.to_le_bytes());
    let errs = of_kind(&events, "tcp_error");
    assert_eq!(
        errs.len(),
        1,
        "the injected ERR is analysed as the client saw it"
    );
    assert_eq!(errs[0]["status_name"], "Bad_SecurityChecksFailed");
    let close = of_kind(&events, "conn_close");
    assert_eq!(close[0]["by"], "proxy");
    assert_eq!(close[0]["reason"], "fault");
    assert_eq!(of_kind(&events, "fault_injected")[0]["fault"], "err");
    let rejects = of_kind(&events, "reject");
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["stage"], "secure_channel");
    assert_eq!(rejects[0]["cause"], "security_checks_failed");
    assert_eq!(rejects[0]["inferred"], false);
    assert!(rejects[0]["explanation"]
        .as_str()
        .unwrap()
        .contains("not trusted"));
    assert!(rejects[0]["check"][0]
        .as_str()
        .unwrap()
        .starts_with("Kepware: OPC UA Configuration Manager > Trusted Clients"));
    let _ = std::fs::remove_dir_all(dir);
}

/// `err Bad_TcpServerTooBusy` against a real client (asyncua): it is told the server is busy.
#[test]
fn err_on_hello_reaches_a_real_client() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("fault-busy");
    let proxy = Proxy::start_with(&upstream, &dir, &["--fault", "err Bad_TcpServerTooBusy"]);
    let accept = std::thread::spawn(move || {
        let (s, _) = server.accept().expect("accept");
        read_all(s)
    });
    let out = Command::new(python())
        .arg(peers_dir().join("ua_client.py"))
        .args(["basic", &format!("opc.tcp://{}", proxy.listen)])
        .output()
        .expect("asyncua client runs");
    let server_got = accept.join().expect("server");
    let events = proxy.stop();
    assert!(!out.status.success(), "the client cannot connect");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("BadTcpServerTooBusy") || text.contains("807D"),
        "asyncua's log names the status: {text}"
    );
    assert!(server_got.is_empty(), "the HEL was not forwarded");
    assert_eq!(
        of_kind(&events, "tcp_error")[0]["status_name"],
        "Bad_TcpServerTooBusy"
    );
    let rejects = of_kind(&events, "reject");
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["stage"], "hello");
    assert_eq!(rejects[0]["cause"], "server_too_busy");
    assert_eq!(rejects[0]["status"], "0x807D0000");
    assert!(rejects[0]["evidence"]
        .as_str()
        .unwrap()
        .contains("in answer to the client's Hello"));
    let _ = std::fs::remove_dir_all(dir);
}

/// `refuse x1`: the first client is accepted and closed at once without a byte (the server is
/// not even dialed); the next one is proxied.
#[test]
fn refuse_closes_new_connections_without_an_err() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("fault-refuse");
    let proxy = Proxy::start_with(&upstream, &dir, &["--fault", "refuse x1"]);
    let first = TcpStream::connect(proxy.listen).expect("connect");
    assert!(read_all(first).is_empty(), "closed with nothing sent");
    let echo = std::thread::spawn(move || {
        let (mut s, _) = server
            .accept()
            .expect("the second client reaches the server");
        let mut b = [0u8; 5];
        s.read_exact(&mut b).expect("read");
        s.write_all(&b).expect("echo");
    });
    let mut second = TcpStream::connect(proxy.listen).expect("connect");
    second.write_all(b"HELLO").expect("write");
    let mut b = [0u8; 5];
    second.read_exact(&mut b).expect("echo back");
    assert_eq!(&b, b"HELLO");
    echo.join().expect("server");
    drop(second);
    let events = proxy.stop();
    let faults = of_kind(&events, "fault_injected");
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0]["fault"], "refuse");
    let closes = of_kind(&events, "conn_close");
    assert!(closes
        .iter()
        .any(|c| c["reason"] == "fault" && c["by"] == "proxy"));
    let _ = std::fs::remove_dir_all(dir);
}

/// The admin API at run time: a blackhole swallows what the client sends while the connection
/// stays open, removing it lets bytes through again, and a reset aimed at the connection ends
/// it with a RST on the client's side.
#[test]
fn admin_api_blackholes_then_resets_a_live_connection() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("fault-admin");
    let proxy = Proxy::start_with(&upstream, &dir, &["--admin", "127.0.0.1:0"]);
    let mut client = TcpStream::connect(proxy.listen).expect("connect");
    let (mut s, _) = server.accept().expect("accept");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");

    client.write_all(b"one").expect("write");
    let mut b = [0u8; 3];
    s.read_exact(&mut b).expect("passes");
    assert_eq!(&b, b"one");

    let added = uatap_fault(&proxy, &["add", "blackhole", "c2s"]);
    let id = added["id"].as_u64().expect("fault id");
    client.write_all(b"two").expect("write");
    let err = s
        .read(&mut b)
        .expect_err("nothing arrives while blackholed");
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    let listed = uatap_fault(&proxy, &["list"]);
    assert_eq!(listed["faults"][0]["state"], "active");
    uatap_fault(&proxy, &["remove", &id.to_string()]);
    client.write_all(b"six").expect("write");
    s.read_exact(&mut b).expect("passes again");
    assert_eq!(
        &b, b"six",
        "the blackholed bytes are gone, the new ones pass"
    );

    let conns = uatap_fault(&proxy, &["connections"]);
    let conn = conns["connections"][0]["id"]
        .as_u64()
        .expect("connection id");
    uatap_fault(&proxy, &["add", "reset", "--conn", &conn.to_string()]);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let err = client.read(&mut b).expect_err("reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    let events = proxy.stop();
    let faults: Vec<&str> = of_kind(&events, "fault_injected")
        .iter()
        .map(|e| e["fault"].as_str().unwrap())
        .collect();
    assert_eq!(faults, ["blackhole", "reset"]);
    let close = of_kind(&events, "conn_close");
    assert_eq!(close[0]["reason"], "fault");
    let _ = std::fs::remove_dir_all(dir);
}

/// `latency 300ms c2s`: what the client sends reaches the server no sooner than 300 ms later
/// (a lower bound only: the machine may add more, never less).
#[test]
fn latency_delays_one_direction() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = server.local_addr().expect("addr").to_string();
    let dir = temp_dir("fault-latency");
    let proxy = Proxy::start_with(&upstream, &dir, &["--fault", "latency 300ms c2s"]);
    let mut client = TcpStream::connect(proxy.listen).expect("connect");
    let (mut s, _) = server.accept().expect("accept");
    let t = Instant::now();
    client.write_all(b"ping").expect("write");
    let mut b = [0u8; 4];
    s.read_exact(&mut b).expect("read");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    s.write_all(b"pong").expect("write back");
    client.read_exact(&mut b).expect("read back");
    assert_eq!(&b, b"pong");
    drop(client);
    drop(s);
    proxy.stop();
    let _ = std::fs::remove_dir_all(dir);
}
