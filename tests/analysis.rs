//! The offline analysis on real captures, checked against the ground truth written beside each
//! fixture (fixtures/*.md), which was established with tshark and the peers' own logs.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{root, run};

fn events(capture: &Path, messages: bool) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uatap"));
    cmd.args(["analyze", "--json"]);
    if messages {
        cmd.arg("--messages");
    }
    run(cmd.arg(capture))
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

fn fixture(name: &str) -> std::path::PathBuf {
    root().join("fixtures").join(name)
}

/// Asserts data notifications numbered 1..=n, each acknowledged by a later Publish request.
/// A client keeping `queued` requests outstanding acknowledges the last ones in requests that
/// are never answered, so those acknowledgements are not in any `publish` event.
fn assert_publish_sequence(evs: &[Value], n: u64, queued: u64) {
    let publishes = of_kind(evs, "publish");
    assert_eq!(publishes.len() as u64, n, "publish events");
    let mut acked = std::collections::BTreeSet::new();
    for (i, p) in publishes.iter().enumerate() {
        assert_eq!(p["sequence_number"], i as u64 + 1, "{p}");
        assert_eq!(p["keep_alive"], false);
        assert_eq!(p["status_name"], "Good");
        for a in p["acks"].as_array().expect("acks") {
            acked.insert(a[1].as_u64().expect("ack"));
        }
    }
    let expected: std::collections::BTreeSet<u64> = (1..=n.saturating_sub(queued)).collect();
    assert!(acked.is_superset(&expected), "acknowledged {acked:?}");
    assert!(of_kind(evs, "sequence_gap").is_empty(), "no gap");
}

#[test]
fn basic_none_node_server_asyncua_client() {
    let evs = events(&fixture("basic-none.pcapng"), false);
    let ch = of_kind(&evs, "secure_channel");
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["request_type"], "issue");
    assert_eq!(ch[0]["policy"], "None");
    assert_eq!(ch[0]["mode"], "None");
    assert_eq!(ch[0]["outcome"], "ok");
    assert_eq!(ch[0]["channel_id"], 1);
    let sessions: Vec<(String, String)> = of_kind(&evs, "session")
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sessions,
        [("create", "ok"), ("activate", "ok"), ("close", "ok")]
            .map(|(a, o)| (a.to_string(), o.to_string()))
    );
    assert_eq!(of_kind(&evs, "session")[1]["identity"], "anonymous");
    assert_publish_sequence(&evs, 31, 1);
    let total: u64 = of_kind(&evs, "publish")
        .iter()
        .map(|p| p["notifications"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 31, "31 data changes, as the client logged");
    // The one fault is the teardown's Bad_NoSubscription, named as normal.
    let faults = of_kind(&evs, "service_fault");
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0]["status"], "0x80790000");
    assert_eq!(faults[0]["status_name"], "Bad_NoSubscription");
    assert_eq!(faults[0]["for_service"], "PublishRequest");
    assert_eq!(faults[0]["normal"], true);
    let subs = of_kind(&evs, "subscription");
    assert_eq!(subs[0]["action"], "create");
    assert_eq!(subs[0]["revised_publishing_interval_ms"], 100.0);
    assert_eq!(subs[1]["action"], "delete");
    let summary = &of_kind(&evs, "summary")[0];
    assert_eq!(summary["abnormal_faults"], 0);
    assert_eq!(summary["unanswered"], serde_json::json!([]));
    let close = &of_kind(&evs, "conn_close")[0];
    assert_eq!(close["by"], "client");
    assert_eq!(close["reason"], "fin");
    assert!(of_kind(&evs, "decode_error").is_empty());
}

#[test]
fn basic_none_rev_asyncua_server_node_client() {
    let evs = events(&fixture("basic-none-rev.pcapng"), false);
    assert_publish_sequence(&evs, 30, 5);
    assert!(
        of_kind(&evs, "service_fault").is_empty(),
        "asyncua sends no teardown faults"
    );
    let hello = of_kind(&evs, "hello");
    assert_eq!(hello[0]["receive_buffer_size"], 655360);
    assert_eq!(hello[1]["receive_buffer_size"], 65535);
    assert_eq!(hello[1]["max_message_size"], 104857600);
    assert_eq!(hello[1]["max_chunk_count"], 1601);
    let summary = &of_kind(&evs, "summary")[0];
    // The five Publish requests node-opcua keeps queued are never answered: normal teardown.
    assert_eq!(summary["unanswered_publish_at_teardown"], 5);
    assert_eq!(summary["unanswered"], serde_json::json!([]));
}

#[test]
fn big_publish_counts_every_notification() {
    let evs = events(&fixture("big-publish.pcapng"), true);
    let counts: Vec<u64> = of_kind(&evs, "publish")
        .iter()
        .map(|p| p["notifications"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [4000, 14000, 20000, 18000]);
    assert_publish_sequence(&evs, 4, 1);
    let chunked: Vec<u64> = of_kind(&evs, "message")
        .iter()
        .filter(|m| m["chunks"] != 1)
        .map(|m| m["notification_sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(chunked, [3, 4], "seq 3 and 4 came in two chunks each");
    let hello = of_kind(&evs, "hello");
    assert_eq!(hello[1]["receive_buffer_size"], 524288);
    assert_eq!(hello[1]["max_chunk_count"], 256);
    // Responses carry their service latency.
    let latency = of_kind(&evs, "publish")[0]["latency_ms"]
        .as_f64()
        .expect("latency");
    assert!(latency > 0.0 && latency < 10_000.0, "{latency}");
}

/// A capture holding both legs of a proxy (the same bytes on two connections) is told as one
/// story: the client leg by default, the server leg or both on request.
#[test]
fn proxy_legs_are_paired() {
    use crate::util::{read_segments, temp_dir, write_pcap};
    let segs = read_segments(&fixture("basic-none.pcapng"));
    let server_port = 48401;
    // Leg 2: the proxy (127.0.0.2) dials the real server (127.0.0.3), 200 µs later.
    let mut both = Vec::new();
    for s in &segs {
        both.push(s.clone());
        let mut leg = s.clone();
        let remap = |a: std::net::SocketAddr| {
            if a.port() == server_port {
                std::net::SocketAddr::from(([127, 0, 0, 3], 4840))
            } else {
                std::net::SocketAddr::from(([127, 0, 0, 2], 61000))
            }
        };
        leg.src = remap(s.src);
        leg.dst = remap(s.dst);
        leg.ts_nanos += 200_000;
        both.push(leg);
    }
    both.sort_by_key(|s| s.ts_nanos);
    let dir = temp_dir("legs");
    let file = dir.join("legs.pcap");
    write_pcap(&file, &both);

    let analyze = |leg: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["analyze", "--json", "--leg", leg])
            .arg(&file)
            .output()
            .expect("uatap runs");
        assert!(out.status.success());
        let evs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        (evs, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (client, note) = analyze("client");
    let conns: std::collections::BTreeSet<&str> =
        client.iter().map(|e| e["conn"].as_str().unwrap()).collect();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert!(
        conns.iter().next().unwrap().ends_with(":48401"),
        "{conns:?}"
    );
    assert!(
        note.contains("two legs of one proxied connection"),
        "{note}"
    );
    assert_publish_sequence(&client, 31, 1);

    let (server, _) = analyze("server");
    let conns: std::collections::BTreeSet<&str> =
        server.iter().map(|e| e["conn"].as_str().unwrap()).collect();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert!(
        conns.contains("127.0.0.2:61000->127.0.0.3:4840"),
        "{conns:?}"
    );
    assert_publish_sequence(&server, 31, 1);
    let (all, _) = analyze("both");
    assert_eq!(of_kind(&all, "publish").len(), 62);
    let _ = std::fs::remove_dir_all(dir);
}

/// Renumbers the TCP sequence numbers of `segs` (one connection, both directions) so that each
/// direction's bytes are contiguous, as if these segments were all that was sent.
fn renumber(segs: &mut [crate::util::Segment], client: std::net::SocketAddr) {
    let mut next = [1000u32, 5000u32];
    for s in segs.iter_mut() {
        let from_client = s.src == client;
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        s.seq = next[me];
        s.ack = next[peer];
        let syn_fin = u32::from(s.flags & 0x03 != 0);
        next[me] = next[me].wrapping_add(s.payload.len() as u32 + syn_fin);
    }
}

/// What a segment carries: message type, service type id, NotificationMessage number.
fn classify(seg: &crate::util::Segment) -> (String, Option<u32>, Option<u32>) {
    use uatap_codec::reader::Reader;
    let kind = String::from_utf8_lossy(seg.payload.get(..3).unwrap_or(&[])).into_owned();
    let body = seg.payload.get(24..).unwrap_or(&[]);
    match uatap_codec::services::parse_message(&mut Reader::new(body)) {
        Ok(m) => (kind, m.type_id_numeric(), m.notification_sequence_number()),
        Err(_) => (kind, None, None),
    }
}

/// A client that loses its connection and activates the same session on a new one is one
/// story: the session is reused on a new channel, and the notifications that fell between the
/// two connections are a sequence gap.
#[test]
fn session_and_subscription_followed_across_connections() {
    use crate::util::{read_segments, temp_dir, write_pcap};
    let segs = read_segments(&fixture("basic-none.pcapng"));
    let client = segs[0].src;
    let info: Vec<_> = segs.iter().map(classify).collect();
    let publish_at = |seq: u32| {
        info.iter()
            .position(|(_, t, n)| *t == Some(829) && *n == Some(seq))
            .unwrap_or_else(|| panic!("PublishResponse {seq} in its own segment"))
    };
    // Connection 1: everything up to notification 10, then a reset.
    let cut = publish_at(10) + 1;
    let mut first: Vec<_> = segs[..cut].to_vec();
    let mut rst = first.last().unwrap().clone();
    rst.payload.clear();
    rst.flags = 0x04;
    first.push(rst);
    renumber(&mut first, client);
    // Connection 2, new client port: handshake, HEL/ACK, OPN, ActivateSession (same token),
    // then the traffic from notification 15 on.
    let new_client = std::net::SocketAddr::from(([127, 0, 0, 1], 40001));
    let keep_opening = |(k, t, _): &(String, Option<u32>, Option<u32>)| {
        matches!(k.as_str(), "HEL" | "ACK" | "OPN") || matches!(t, Some(467) | Some(470))
    };
    let mut second: Vec<_> = segs
        .iter()
        .zip(&info)
        .enumerate()
        .filter(|(i, (s, inf))| {
            (*i < 3 && s.payload.is_empty())
                || (*i < cut && keep_opening(inf))
                || *i >= publish_at(15)
        })
        .map(|(_, (s, _))| {
            let mut s = s.clone();
            if s.src == client {
                s.src = new_client;
            } else {
                s.dst = new_client;
            }
            s.ts_nanos += 10_000_000_000; // ten seconds later
            s
        })
        .collect();
    renumber(&mut second, new_client);
    let mut all = first;
    all.extend(second);
    let dir = temp_dir("reconnect");
    let file = dir.join("reconnect.pcap");
    write_pcap(&file, &all);
    let evs = events(&file, false);

    let activations: Vec<&Value> = of_kind(&evs, "session")
        .into_iter()
        .filter(|s| s["action"] == "activate")
        .collect();
    assert_eq!(activations.len(), 2, "{activations:?}");
    assert_eq!(activations[0]["reused_on_new_channel"], false);
    assert_eq!(activations[1]["reused_on_new_channel"], true);
    assert_eq!(activations[0]["session_id"], activations[1]["session_id"]);
    assert!(activations[1]["conn"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:40001->"));
    let gaps = of_kind(&evs, "sequence_gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0]["expected"], 11);
    assert_eq!(gaps[0]["got"], 15);
    assert_eq!(gaps[0]["missing"], serde_json::json!([11, 12, 13, 14]));
    let closes = of_kind(&evs, "conn_close");
    assert_eq!(closes[0]["reason"], "rst");
    // One verdict on the recovery: the session came back, but 11..14 were never republished.
    let rec = of_kind(&evs, "reconnect");
    assert_eq!(rec.len(), 1, "{rec:?}");
    let r = rec[0];
    assert!(r["conn"].as_str().unwrap().starts_with("127.0.0.1:40001->"));
    assert_eq!(r["session_id"], activations[0]["session_id"]);
    assert_eq!(r["session_reused"], true);
    assert_eq!(r["came_back"], true);
    assert_eq!(r["lost"], serde_json::json!([11, 12, 13, 14]));
    assert_eq!(r["republished"], serde_json::json!([]));
    assert_eq!(r["recovered"], false);
    let downtime = r["downtime_ms"].as_f64().unwrap();
    assert!(downtime > 0.0 && downtime < 10_000.0, "{downtime}");
    let verdict = |id: &str| {
        r["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {r}"))["verdict"]
            .clone()
    };
    // The second connection replays the first one's OPN, so the server "granted" the same
    // SecureChannelId again: R2 wants a new channel.
    assert_eq!(verdict("R2"), "WARN");
    assert_eq!(r["old_channel_id"], r["new_channel_id"]);
    assert_eq!(verdict("R3"), "PASS");
    assert_eq!(verdict("R10"), "FAIL");
    assert_eq!(verdict("R12"), "WARN");
    let _ = std::fs::remove_dir_all(dir);
}

/// Basic256Sha256 in mode Sign (node-opcua server, asyncua client): the mode is inferred from
/// the first body, and every message after the encrypted OPNs is decoded in full.
#[test]
fn sign_only_channel_is_decoded_in_full() {
    let evs = events(&fixture("sign-b256sha256.pcapng"), true);
    let ch = of_kind(&evs, "secure_channel");
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["policy"], "Basic256Sha256");
    assert_eq!(ch[0]["mode"], "Sign");
    assert_eq!(
        ch[0]["client_cert"]["application_uri"],
        "urn:uatap:test-client:asyncua"
    );
    assert_eq!(
        ch[0]["server_cert"]["application_uri"],
        "urn:uatap:test-server:node-opcua"
    );
    assert!(ch[0]["client_cert"]["thumbprint_sha1"]
        .as_str()
        .unwrap()
        .starts_with("34041D8D"));
    assert!(ch[0]["server_cert"]["thumbprint_sha1"]
        .as_str()
        .unwrap()
        .starts_with("2C700A50"));
    // The client encrypted its OPN to the server's certificate.
    assert_eq!(
        ch[0]["receiver_thumbprint"],
        ch[0]["server_cert"]["thumbprint_sha1"]
    );
    assert_publish_sequence(&evs, 31, 1);
    let msgs = of_kind(&evs, "message");
    let encrypted: Vec<&str> = msgs
        .iter()
        .filter(|m| m["encrypted"] == true)
        .map(|m| m["msg_type"].as_str().unwrap())
        .collect();
    assert_eq!(encrypted, ["OPN", "OPN"], "only the OPNs are unreadable");
    let decoded = msgs
        .iter()
        .filter(|m| m["msg_type"] == "MSG" && !m["service"].is_null())
        .count();
    assert_eq!(decoded, 86, "every MSG decoded");
    assert!(of_kind(&evs, "decode_error").is_empty());
}

/// Basic256Sha256 SignAndEncrypt: every clear-text header field is reported, the bodies are
/// marked encrypted, and nothing is an error.
#[test]
fn sign_and_encrypt_channel_reports_clear_headers() {
    let evs = events(&fixture("encrypt-b256sha256.pcapng"), true);
    let ch = of_kind(&evs, "secure_channel");
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["mode"], "SignAndEncrypt");
    assert_eq!(ch[0]["channel_id"], 1);
    assert_eq!(
        ch[0]["client_cert"]["subject"],
        "CN=urn:uatap:test-client:asyncua, O=uatap"
    );
    let msgs: Vec<&Value> = of_kind(&evs, "message")
        .into_iter()
        .filter(|m| m["msg_type"] == "MSG" || m["msg_type"] == "CLO")
        .collect();
    assert_eq!(msgs.len(), 87);
    for m in &msgs {
        assert_eq!(m["encrypted"], true, "{m}");
        assert_eq!(m["channel_id"], 1);
        assert_eq!(m["token_id"], 1);
        assert!(
            m["service"].is_null() && m["sequence_number"].is_null(),
            "{m}"
        );
    }
    assert!(of_kind(&evs, "decode_error").is_empty());
    assert!(
        of_kind(&evs, "publish").is_empty(),
        "nothing invented from ciphertext"
    );
}
