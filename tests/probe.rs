//! `uatap probe` against real servers: every step as the usual events, every endpoint with its
//! certificate, the secured ones honestly reported as not tried, and the exit code.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::proxy::wait_ready;
use crate::util::{free_port, peers_dir, python, refused_port, terminate};

fn probe(url: &str, extra: &[&str]) -> (i32, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["probe", "--json", url])
        .args(extra)
        .output()
        .expect("uatap probe runs");
    let events = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (out.status.code().expect("exit code"), events)
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn probe_of_a_node_opcua_server_opens_a_session_and_lists_the_endpoint() {
    let port = free_port();
    let mut srv = Command::new("node")
        .arg(peers_dir().join("ua_server.js"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node-opcua server starts");
    wait_ready(&mut srv);
    let url = format!("opc.tcp://127.0.0.1:{port}/UA/Test");
    let (code, events) = probe(&url, &[]);
    let (code_none, _) = probe(&url, &["--accept-none"]);
    terminate(&mut srv);

    assert_eq!(code, 1, "no secured endpoint is usable");
    assert_eq!(code_none, 0, "the None endpoint counts with --accept-none");
    let hello = of_kind(&events, "hello");
    assert_eq!(hello.len(), 2, "HEL and ACK");
    assert_eq!(hello[0]["endpoint_url"], url.as_str());
    assert_eq!(of_kind(&events, "secure_channel")[0]["outcome"], "ok");
    let sessions: Vec<&str> = of_kind(&events, "session")
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(sessions, ["create", "activate", "close"]);
    assert!(of_kind(&events, "reject").is_empty());
    let eps = of_kind(&events, "probe_endpoint");
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0]["mode"], "None");
    assert_eq!(eps[0]["usable"], true);
    assert_eq!(eps[0]["user_tokens"], serde_json::json!(["anonymous"]));
    assert!(eps[0]["server_cert"]["subject"]
        .as_str()
        .unwrap()
        .contains("NodeOPCUA"));
    assert_eq!(eps[0]["host_resolves"], true);
    let summary = of_kind(&events, "probe_summary");
    assert_eq!(summary.len(), 1);
    assert_eq!(events.last().unwrap()["kind"], "probe_summary");
    assert_eq!(summary[0]["reachable"], true);
    assert_eq!(summary[0]["usable_endpoints"], 1);
    assert_eq!(summary[0]["usable_secure_endpoints"], 0);
    let skew = summary[0]["clock_skew_ms"].as_f64().expect("clock skew");
    assert!(skew.abs() < 60_000.0, "same machine: {skew} ms");
}

#[test]
fn probe_of_a_secured_asyncua_server_lists_what_it_could_not_try() {
    let port = free_port();
    let dir = crate::util::temp_dir("probe-secure");
    let mut srv = Command::new(python())
        .arg(peers_dir().join("ua_server.py"))
        .args(["--port", &port.to_string()])
        .args(["--security", "Basic256Sha256:SignAndEncrypt"])
        .arg("--pki")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("asyncua server starts");
    wait_ready(&mut srv);
    let (code, events) = probe(&format!("opc.tcp://127.0.0.1:{port}/UA/Test"), &[]);
    terminate(&mut srv);
    assert_eq!(code, 1);
    let eps = of_kind(&events, "probe_endpoint");
    let secured: Vec<&&Value> = eps
        .iter()
        .filter(|e| e["mode"] == "SignAndEncrypt")
        .collect();
    assert_eq!(secured.len(), 1, "{eps:?}");
    assert_eq!(secured[0]["policy"], "Basic256Sha256");
    assert_eq!(secured[0]["usable"], false);
    assert!(secured[0]["explanation"]
        .as_str()
        .unwrap()
        .contains("not tried"));
    assert!(secured[0]["server_cert"]["thumbprint_sha1"]
        .as_str()
        .is_some_and(|t| t.len() == 40));
    assert!(secured[0]["server_cert"]["application_uri"]
        .as_str()
        .unwrap()
        .contains("urn:uatap:test-server:asyncua"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn probe_of_a_refusing_port_says_why() {
    let (_reserved, port) = refused_port();
    let (code, events) = probe(&format!("opc.tcp://127.0.0.1:{port}"), &[]);
    assert_eq!(code, 1);
    let reject = of_kind(&events, "reject");
    assert_eq!(reject.len(), 1);
    assert_eq!(reject[0]["stage"], "tcp");
    assert_eq!(reject[0]["cause"], "tcp_refused");
    let summary = of_kind(&events, "probe_summary");
    assert_eq!(summary[0]["reachable"], false);
}

/// open62541 (o6): a None-only server's endpoint is listed and usable with `--accept-none`; a
/// secured-only one refuses the probe's security None channel in clear, and the probe names
/// the cause.
#[test]
fn probe_of_open62541_servers_lists_the_endpoint_or_names_the_refusal() {
    let plain = crate::rejects::Server::start("o6", &[], &[]);
    let url = format!("opc.tcp://{}", plain.addr);
    let (code, events) = probe(&url, &["--accept-none"]);
    drop(plain);
    assert_eq!(code, 0, "the None endpoint counts with --accept-none");
    let eps = of_kind(&events, "probe_endpoint");
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0]["policy"], "None");
    assert_eq!(eps[0]["usable"], true);
    assert_eq!(eps[0]["user_tokens"], serde_json::json!(["anonymous"]));
    let sessions: Vec<&str> = of_kind(&events, "session")
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(sessions, ["create", "activate", "close"]);
    assert!(of_kind(&events, "reject").is_empty());

    let dir = crate::util::temp_dir("probe-o6-secure");
    let pki = dir.display().to_string();
    let secured = crate::rejects::Server::start(
        "o6",
        &["--security", "Basic256Sha256:SignAndEncrypt", "--pki", &pki],
        &[],
    );
    let (code, events) = probe(&format!("opc.tcp://{}", secured.addr), &[]);
    drop(secured);
    assert_eq!(code, 1);
    let reject = of_kind(&events, "reject");
    assert_eq!(reject.len(), 1, "{events:#?}");
    assert_eq!(reject[0]["stage"], "secure_channel");
    assert_eq!(reject[0]["cause"], "policy_rejected");
    assert_eq!(reject[0]["status"], "0x80550000");
    assert!(reject[0]["explanation"]
        .as_str()
        .unwrap()
        .contains("pick one of the server's endpoints"));
    let summary = of_kind(&events, "probe_summary");
    assert_eq!(summary[0]["reachable"], true);
    assert_eq!(summary[0]["usable_secure_endpoints"], 0);
    let _ = std::fs::remove_dir_all(dir);
}
