//! `uatap redact`: a user name session over a None channel, recorded through the proxy, holds
//! the password in clear (evidence); the redacted copy does not, keeps the file's layout, and
//! decodes to the same events.

use std::process::Command;

use serde_json::Value;

use crate::proxy::Proxy;
use crate::rejects::Server;
use crate::util::{peers_dir, python, read_segments, run, temp_dir, write_pcap, Rng, Segment};

fn analyze(path: &std::path::Path) -> Vec<Value> {
    run(Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--json", "--messages"])
        .arg(path))
    .lines()
    .map(|l| serde_json::from_str(l).expect("JSON line"))
    .collect()
}

/// Runs `uatap redact IN OUT`, which must succeed, and returns what it said.
fn redact(input: &std::path::Path, output: &std::path::Path) -> String {
    let done = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .arg("redact")
        .arg(input)
        .arg(output)
        .output()
        .expect("uatap runs");
    let said = String::from_utf8_lossy(&done.stderr).into_owned();
    assert!(done.status.success(), "{said}");
    said
}

#[test]
fn redact_removes_the_password_and_keeps_the_rest() {
    let dir = temp_dir("redact");
    let password = "Plain-Text-Secret-42";
    let env = [("UATAP_REDACT_PW", password)];
    let server = Server::start(
        "asyncua",
        &["--user", "operator", "--password-env", "UATAP_REDACT_PW"],
        &env,
    );
    let rec = dir.join("session.pcapng");
    let proxy = Proxy::start_with(&server.addr, &dir, &["--record", rec.to_str().unwrap()]);
    let out = Command::new(python())
        .arg(peers_dir().join("ua_client.py"))
        .args(["basic", &format!("opc.tcp://{}/UA/Test", proxy.listen)])
        .args([
            "--user",
            "operator",
            "--password-env",
            "UATAP_REDACT_PW",
            "--seconds",
            "1",
        ])
        .envs(env)
        .current_dir(peers_dir())
        .output()
        .expect("client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    proxy.stop();
    let original = std::fs::read(&rec).unwrap();
    let has_pw = |b: &[u8]| b.windows(password.len()).any(|w| w == password.as_bytes());
    assert!(
        has_pw(&original),
        "the recording keeps the password as it crossed the wire"
    );

    let red = dir.join("redacted.pcapng");
    let said = redact(&rec, &red);
    assert!(!said.contains(password));
    let redacted = std::fs::read(&red).unwrap();
    assert!(!has_pw(&redacted), "the password is gone");
    assert_eq!(redacted.len(), original.len(), "same layout");
    let changed = original
        .iter()
        .zip(&redacted)
        .filter(|(a, b)| a != b)
        .count();
    assert!(changed >= password.len(), "{changed} bytes changed");
    // Nonces and signatures are not in the events: the copy decodes the same.
    let strip = |evs: Vec<Value>| -> Vec<Value> {
        evs.into_iter()
            .filter(|e| e["kind"] != "decode_error")
            .collect()
    };
    let (a, b) = (analyze(&rec), analyze(&red));
    assert!(
        b.iter().all(|e| e["kind"] != "decode_error"),
        "the copy decodes cleanly"
    );
    assert_eq!(strip(a), b);
    let activate = b
        .iter()
        .find(|e| e["kind"] == "session" && e["action"] == "activate")
        .expect("activate");
    assert_eq!(activate["user"], "operator");
    // tshark reads the copy as OPC UA, with no malformed packet and no bad checksum.
    let tshark = run(Command::new("tshark")
        .arg("-r")
        .arg(&red)
        .args([
            "-d",
            &format!(
                "tcp.port=={},opcua",
                server.addr.rsplit(':').next().unwrap()
            ),
        ])
        .args(["-o", "tcp.check_checksum:TRUE"])
        .args([
            "-Y",
            "_ws.malformed || _ws.expert.severity >= error || tcp.checksum.status == 0",
        ]));
    // ... and every TCP checksum of the changed segments was recomputed.
    let checked = run(Command::new("tshark").arg("-r").arg(&red).args([
        "-o",
        "tcp.check_checksum:TRUE",
        "-Y",
        "tcp.checksum.status == 1",
    ]));
    assert!(
        checked.lines().count() > 10,
        "checksums verified good: {checked}"
    );
    assert!(tshark.trim().is_empty(), "tshark: {tshark}");

    // The same session with every segment cut into pieces of 1 to 7 bytes, each piece sent
    // twice (a retransmission): the password now spans segments, and is still found.
    let mut rng = Rng(0x5eed_cafe);
    let mut pieces = Vec::new();
    for seg in read_segments(&rec) {
        if seg.payload.is_empty() {
            pieces.push(seg);
            continue;
        }
        let mut at = 0;
        while at < seg.payload.len() {
            let n = (1 + rng.below(7)).min(seg.payload.len() - at);
            let piece = Segment {
                seq: seg.seq.wrapping_add(at as u32),
                payload: seg.payload[at..at + n].to_vec(),
                ..seg.clone()
            };
            pieces.push(piece.clone());
            pieces.push(piece);
            at += n;
        }
    }
    let split = dir.join("split.pcap");
    write_pcap(&split, &pieces);
    assert!(
        !has_pw(&std::fs::read(&split).unwrap()),
        "split: no piece holds it whole"
    );
    let split_red = dir.join("split-redacted.pcap");
    let said = redact(&split, &split_red);
    assert!(said.contains(" 0 gap(s)"), "{said}");
    // Joined again, the streams hold no password: every piece of it was zeroed.
    let joined: Vec<u8> = read_segments(&split_red)
        .chunks(2)
        .flat_map(|pair| pair[0].payload.clone())
        .collect();
    let original_joined: Vec<u8> = read_segments(&split)
        .chunks(2)
        .flat_map(|pair| pair[0].payload.clone())
        .collect();
    assert!(
        has_pw(&original_joined),
        "the split session holds the password"
    );
    assert!(!has_pw(&joined), "the password is gone from the split copy");
    // Both copies of every retransmitted piece were zeroed alike.
    for pair in read_segments(&split_red).chunks(2) {
        assert_eq!(pair[0].payload, pair[1].payload);
    }
    // And the split copy decodes to the same events as the whole redacted copy.
    let events = |evs: Vec<Value>| -> Vec<(String, String)> {
        evs.into_iter()
            .filter(|e| e["kind"] != "message")
            .map(|e| (e["kind"].to_string(), e["dir"].to_string()))
            .collect()
    };
    assert_eq!(events(analyze(&split_red)), events(analyze(&red)));
    let _ = std::fs::remove_dir_all(dir);
}
