//! Cross-check against an independent decoder: the `message` events of `uatap analyze` and
//! tshark's OPC UA dissector must agree, message by message, on the fixtures and on traffic
//! captured live from asyncua and node-opcua in both roles.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{fixture_captures, fixture_port, peers_dir, python, run};

/// The fields compared, as named in the event contract.
pub const FIELDS: &[&str] = &[
    "msg_type",
    "chunks",
    "channel_id",
    "token_id",
    "sequence_number",
    "request_id",
    "type_id",
    "request_handle",
    "service_result",
    "notification_sequence_number",
];

fn uatap_messages(capture: &Path, extra: &[&str]) -> Vec<Value> {
    let out = run(Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--messages", "--json"])
        .args(extra)
        .arg(capture));
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let errors: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "decode_error")
        .collect();
    assert!(errors.is_empty(), "{}: {errors:?}", capture.display());
    events
        .into_iter()
        .filter(|e| e["kind"] == "message")
        .collect()
}

fn tshark_messages(capture: &Path, ports: &[u16]) -> Vec<Value> {
    let out = run(Command::new(python())
        .arg(peers_dir().join("tshark_messages.py"))
        .arg(capture)
        .args(ports.iter().map(u16::to_string)));
    out.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Compares both decoders on one capture; returns the number of messages compared.
fn crosscheck(capture: &Path, port: u16) -> usize {
    crosscheck_fields(capture, port, FIELDS)
}

/// Like [`crosscheck`], with the fields compared on OPN messages given apart (on a secured
/// channel their sequence header and body are RSA-encrypted: tshark shows noise there, uatap
/// `null`).
fn crosscheck_fields(capture: &Path, port: u16, opn_fields: &[&str]) -> usize {
    crosscheck_with(capture, &[port], &[], opn_fields)
}

/// The general form: several server ports, extra `uatap analyze` options.
pub fn crosscheck_with(
    capture: &Path,
    ports: &[u16],
    extra: &[&str],
    opn_fields: &[&str],
) -> usize {
    let ours = uatap_messages(capture, extra);
    let theirs = tshark_messages(capture, ports);
    assert!(
        !ours.is_empty(),
        "{}: uatap found no message",
        capture.display()
    );
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{}: uatap found {} messages, tshark {}",
        capture.display(),
        ours.len(),
        theirs.len()
    );
    let mut notifications = 0;
    for dir in ["c2s", "s2c"] {
        let a: Vec<&Value> = ours.iter().filter(|m| m["dir"] == dir).collect();
        let b: Vec<&Value> = theirs.iter().filter(|m| m["dir"] == dir).collect();
        assert_eq!(
            a.len(),
            b.len(),
            "{}: {dir} message counts",
            capture.display()
        );
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let fields = if x["msg_type"] == "OPN" {
                opn_fields
            } else {
                FIELDS
            };
            for f in fields {
                assert_eq!(
                    x[f],
                    y[f],
                    "{}: {dir} message {i}, field {f}\n uatap: {x}\ntshark: {y}",
                    capture.display()
                );
            }
            if !x["notification_sequence_number"].is_null() {
                notifications += 1;
            }
        }
    }
    assert!(
        notifications > 0,
        "{}: no NotificationMessage compared",
        capture.display()
    );
    ours.len()
}

/// Mode Sign: tshark decodes the bodies (ignoring the signature) and so does uatap.
#[test]
fn sign_fixture_agrees_with_tshark() {
    let capture = crate::util::root()
        .join("fixtures")
        .join("sign-b256sha256.pcapng");
    let n = crosscheck_fields(
        &capture,
        fixture_port(&capture),
        &["msg_type", "chunks", "channel_id", "token_id"],
    );
    assert_eq!(n, 91);
}

#[test]
fn fixtures_agree_with_tshark() {
    for capture in fixture_captures() {
        let port = fixture_port(&capture);
        let n = crosscheck(&capture, port);
        assert!(n > 30, "{}: {n} messages", capture.display());
    }
}

/// Records asyncua and node-opcua talking on loopback with tshark, then cross-checks.
fn live(server: &str, client: &str, mode: &str) {
    let dir = std::env::temp_dir().join(format!("uatap-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join(format!("{mode}-{server}-{client}.pcapng"));
    let summary = run(Command::new(python())
        .arg(peers_dir().join("capture.py"))
        .args([
            "--server", server, "--client", client, "--mode", mode, "--port", "0",
        ])
        .arg("--out")
        .arg(&out));
    let port: u16 = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix("port="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in capture summary: {summary}"));
    let n = crosscheck(&out, port);
    assert!(n > 20, "{}: {n} messages", out.display());
    check_story(&out);
    let _ = std::fs::remove_file(&out);
}

#[test]
fn live_asyncua_client_node_server_agrees_with_tshark() {
    live("node", "asyncua", "basic");
}

#[test]
fn live_node_client_asyncua_server_agrees_with_tshark() {
    live("asyncua", "node", "basic");
}

#[test]
fn live_multi_chunk_publish_agrees_with_tshark() {
    live("node", "asyncua", "big");
}

/// The analysis of a clean live session: one channel, a session created, activated and
/// closed, every NotificationMessage from 1 on without a gap, and only normal faults.
fn check_story(capture: &Path) {
    let out = run(Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--json"])
        .arg(capture));
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let kind = |k: &str| evs.iter().filter(|e| e["kind"] == k).collect::<Vec<_>>();
    let channels = kind("secure_channel");
    assert_eq!(channels.len(), 1, "{channels:?}");
    assert_eq!(channels[0]["outcome"], "ok");
    let sessions: Vec<&str> = kind("session")
        .iter()
        .filter(|s| s["outcome"] == "ok")
        .map(|s| s["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        sessions,
        ["create", "activate", "close"],
        "{}",
        capture.display()
    );
    let seqs: Vec<u64> = kind("publish")
        .iter()
        .filter(|p| p["keep_alive"] == false)
        .map(|p| p["sequence_number"].as_u64().unwrap_or(0))
        .collect();
    assert!(seqs.len() >= 2, "{}: publishes {seqs:?}", capture.display());
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{}",
        capture.display()
    );
    assert!(kind("sequence_gap").is_empty(), "{}", capture.display());
    assert!(kind("decode_error").is_empty(), "{}", capture.display());
    for f in kind("service_fault") {
        assert_eq!(
            f["normal"],
            true,
            "{}: unexpected fault {f}",
            capture.display()
        );
    }
}
