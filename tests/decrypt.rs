//! Secured recordings read with the applications' private keys (`--private-key`): the real
//! Basic256Sha256 captures of fixtures/ (node-opcua server, asyncua client) decode completely
//! with both keys, and with one key only the OpenSecureChannel message encrypted to it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::util::{root, run};

fn key(app: &str) -> PathBuf {
    root().join("fixtures/keys").join(app).join("key.pem")
}

fn analyze(capture: &str, keys: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uatap"));
    cmd.args(["analyze", "--json", "--messages"]);
    for k in keys {
        cmd.arg("--private-key").arg(key(k));
    }
    run(cmd.arg(root().join("fixtures").join(capture)))
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn of_kind<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["kind"] == kind).collect()
}

/// The ground truth of both fixtures' .md, read inside the secured channel.
fn assert_whole_session(evs: &[Value], mode: &str) {
    assert!(
        of_kind(evs, "decode_error").is_empty(),
        "{:?}",
        of_kind(evs, "decode_error")
    );
    let ch = of_kind(evs, "secure_channel");
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["policy"], "Basic256Sha256");
    assert_eq!(ch[0]["mode"], mode);
    assert_eq!(ch[0]["outcome"], "ok");
    assert_eq!(ch[0]["decrypted"], true);
    assert_eq!(ch[0]["token_id"], 1);
    let services: Vec<&str> = of_kind(evs, "message")
        .iter()
        .filter_map(|m| m["service"].as_str())
        .collect();
    for s in [
        "CreateSessionRequest",
        "ActivateSessionResponse",
        "CreateMonitoredItemsResponse",
    ] {
        assert!(services.contains(&s), "{s} in {services:?}");
    }
    assert_eq!(services.iter().filter(|s| **s == "ReadRequest").count(), 4);
    let seqs: Vec<u64> = of_kind(evs, "publish")
        .iter()
        .map(|p| p["sequence_number"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=31).collect::<Vec<_>>(),
        "NotificationMessages 1..31, no gap"
    );
    assert!(of_kind(evs, "sequence_gap").is_empty());
    let faults = of_kind(evs, "service_fault");
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0]["status_name"], "Bad_NoSubscription");
    let sessions = of_kind(evs, "session");
    let actions: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["action"].as_str())
        .collect();
    assert_eq!(actions, ["create", "activate", "close"]);
    assert!(sessions.iter().all(|s| s["outcome"] == "ok"));
    assert!(of_kind(evs, "reject").is_empty());
}

#[test]
fn sign_and_encrypt_capture_decodes_completely_with_both_keys() {
    let evs = analyze(
        "encrypt-b256sha256.pcapng",
        &["asyncua-client", "node-server"],
    );
    assert_whole_session(&evs, "SignAndEncrypt");
    // Without keys the same capture shows only the channel: no service, no Publish.
    let bare = analyze("encrypt-b256sha256.pcapng", &[]);
    assert!(of_kind(&bare, "publish").is_empty());
    assert!(of_kind(&bare, "message")
        .iter()
        .all(|m| m["service"].is_null()));
}

#[test]
fn sign_only_capture_decodes_with_both_keys_and_every_signature_verifies() {
    // A chunk whose HMAC does not verify is reported as a decode error, so none here means
    // every signature verified.
    let evs = analyze("sign-b256sha256.pcapng", &["node-server", "asyncua-client"]);
    assert_whole_session(&evs, "Sign");
}

#[test]
fn one_key_reads_the_opn_encrypted_to_it() {
    // The client's key opens the server's answer: token and status are read, the rest stays
    // encrypted.
    let evs = analyze("encrypt-b256sha256.pcapng", &["asyncua-client"]);
    let ch = of_kind(&evs, "secure_channel");
    assert_eq!(ch.len(), 1);
    assert_eq!(
        (ch[0]["decrypted"].clone(), ch[0]["status_name"].clone()),
        (Value::Bool(true), Value::from("Good"))
    );
    assert_eq!(ch[0]["revised_lifetime_ms"], 600000);
    assert!(of_kind(&evs, "publish").is_empty());
    assert!(of_kind(&evs, "decode_error").is_empty());
    // The server's key opens the client's request: the mode is read, not guessed.
    let evs = analyze("encrypt-b256sha256.pcapng", &["node-server"]);
    let ch = of_kind(&evs, "secure_channel");
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["mode"], "SignAndEncrypt");
    assert_eq!(ch[0]["outcome"], "ok");
    assert_eq!(ch[0]["requested_lifetime_ms"], 3600000);
    assert!(of_kind(&evs, "reject").is_empty());
}

#[test]
fn a_key_of_neither_application_reads_nothing_and_breaks_nothing() {
    let dir = crate::util::temp_dir("decrypt-other-key");
    let other = dir.join("other.der");
    std::fs::write(
        &other,
        uatap_crypto::PrivateKey::generate().unwrap().pkcs8_der(),
    )
    .unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--json", "--private-key"])
        .arg(&other)
        .arg(root().join("fixtures/encrypt-b256sha256.pcapng")));
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ch = of_kind(&evs, "secure_channel");
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["decrypted"], false);
    assert!(of_kind(&evs, "decode_error").is_empty());
    // A file that is not a key is refused with its name, before reading the capture.
    let bad = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--private-key"])
        .arg(root().join("fixtures/basic-none.md"))
        .arg(root().join("fixtures/encrypt-b256sha256.pcapng"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("basic-none.md"), "{err}");
}

#[test]
fn exported_key_log_decrypts_the_capture_alone() {
    let dir = crate::util::temp_dir("decrypt-keylog");
    let log = dir.join("keys.log");
    run(Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--json"])
        .arg("--private-key")
        .arg(key("asyncua-client"))
        .arg("--private-key")
        .arg(key("node-server"))
        .arg("--export-keys")
        .arg(&log)
        .arg(root().join("fixtures/encrypt-b256sha256.pcapng")));
    let text = std::fs::read_to_string(&log).unwrap();
    // Wireshark's format; the values are the session keys of the capture (see its .md).
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.contains(
            "client_key_1_1: 97A35CEE92698997AC62A45408D95012C18E5B41F6BE0BDD0E2E0A031EBC3B53"
        ),
        "{text}"
    );
    assert!(
        text.contains("server_iv_1_1: 3C530B37A0D4ED1145388E94BB6271DB"),
        "{text}"
    );
    assert!(text.contains("client_siglen_1_1: 32"), "{text}");
    // The key log alone (no private key) reads the whole session.
    let out = run(Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--json", "--keys"])
        .arg(&log)
        .arg(root().join("fixtures/encrypt-b256sha256.pcapng")));
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = of_kind(&evs, "publish")
        .iter()
        .map(|p| p["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=31).collect::<Vec<_>>());
    assert!(of_kind(&evs, "decode_error").is_empty());
    // A key log with the wrong keys: every chunk it claims is reported, nothing is invented.
    let wrong = text.replace("97A35CEE", "97A35CEF");
    std::fs::write(&log, wrong).unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--json", "--keys"])
        .arg(&log)
        .arg(root().join("fixtures/encrypt-b256sha256.pcapng")));
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        of_kind(&evs, "publish").len(),
        31,
        "the server's keys are still right"
    );
    assert!(
        !of_kind(&evs, "decode_error").is_empty(),
        "the client's chunks do not decrypt"
    );
    let _ = std::fs::remove_dir_all(dir);
}
