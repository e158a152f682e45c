//! `uatap probe` against real servers: every step as the usual events, every endpoint with its
//! certificate, the secured ones tried with the probe's own certificate (accepted, or refused
//! with the exact status), sessions over them, and the exit code.

use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// A secured test server on a port the system picks: the child and its endpoint URL.
fn secured_server(stack: &str, security: &str, pki: &Path, extra: &[&str]) -> (Child, String) {
    let mut cmd = if stack == "node" {
        let mut c = Command::new("node");
        c.arg(peers_dir().join("ua_server.js"));
        c
    } else {
        let mut c = Command::new(python());
        c.arg(peers_dir().join("ua_server.py"));
        c
    };
    let mut srv = cmd
        .args(["--port", "0", "--security", security, "--pki"])
        .arg(pki)
        .args(extra)
        .env("UATAP_TEST_PW", "right-horse-battery")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let ready = wait_ready(&mut srv);
    let url = ready
        .split_whitespace()
        .nth(1)
        .expect("READY names the URL")
        .to_string();
    (srv, url)
}

/// The one secured endpoint's `probe_endpoint` event.
fn secured_endpoint<'a>(events: &'a [Value], mode: &str) -> &'a Value {
    let eps = of_kind(events, "probe_endpoint");
    let secured: Vec<&&Value> = eps.iter().filter(|e| e["mode"] == mode).collect();
    assert_eq!(secured.len(), 1, "{eps:?}");
    secured[0]
}

/// A server that accepts the probe's certificate: the secured channel opens, an anonymous
/// session is activated over it, exit 0.
fn usable_secured(stack: &str, security: &str) {
    let dir = crate::util::temp_dir(&format!("probe-ok-{stack}-{}", security.replace(':', "-")));
    let (mut srv, url) = secured_server(stack, security, &dir.join("srv"), &[]);
    let pki = dir.join("pki");
    let (code, events) = probe(&url, &["--pki", pki.to_str().unwrap()]);
    terminate(&mut srv);
    let (policy, mode) = security.split_once(':').unwrap();
    assert_eq!(code, 0, "a secured endpoint is usable: {events:#?}");
    let ep = secured_endpoint(&events, mode);
    assert_eq!(ep["policy"], policy);
    assert_eq!(ep["usable"], true, "{ep:#}");
    assert_eq!(ep["channel"], "accepted");
    assert_eq!(ep["session"], "activated");
    assert_eq!(ep["identity"], "anonymous");
    assert_eq!(ep["cause"], Value::Null);
    let skew = ep["clock_skew_ms"]
        .as_f64()
        .expect("clock skew from the OPN");
    assert!(skew.abs() < 60_000.0, "same machine: {skew} ms");
    let channels = of_kind(&events, "secure_channel");
    assert!(
        channels
            .iter()
            .any(|c| c["policy"] == policy && c["outcome"] == "ok"),
        "{channels:#?}"
    );
    let activated = of_kind(&events, "session")
        .iter()
        .filter(|s| s["action"] == "activate" && s["outcome"] == "ok" && s["conn"] == ep["conn"])
        .count();
    assert_eq!(
        activated, 1,
        "the analysis read the session on the secured channel"
    );
    assert!(of_kind(&events, "reject").is_empty());
    let summary = of_kind(&events, "probe_summary");
    assert_eq!(summary[0]["usable_secure_endpoints"], 1);
    // The certificate was made on first use and kept.
    assert!(pki.join("own/cert.der").exists() && pki.join("own/key.pem").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn probe_opens_a_secured_channel_and_session_on_node_opcua_basic256sha256() {
    usable_secured("node", "Basic256Sha256:SignAndEncrypt");
}

#[test]
fn probe_opens_a_secured_channel_and_session_on_node_opcua_rsapss_sign() {
    usable_secured("node", "Aes256_Sha256_RsaPss:Sign");
}

#[test]
fn probe_opens_a_secured_channel_and_session_on_asyncua_basic256sha256() {
    usable_secured("asyncua", "Basic256Sha256:SignAndEncrypt");
}

#[test]
fn probe_opens_a_secured_channel_and_session_on_asyncua_rsapss_sign() {
    usable_secured("asyncua", "Aes256_Sha256_RsaPss:Sign");
}

#[test]
fn probe_reports_the_exact_status_of_an_untrusting_node_opcua_server() {
    let dir = crate::util::temp_dir("probe-untrusted-node");
    let (mut srv, url) = secured_server(
        "node",
        "Basic256Sha256:SignAndEncrypt",
        &dir.join("srv"),
        &["--no-auto-accept"],
    );
    let pki = dir.join("pki");
    let (code, events) = probe(&url, &["--pki", pki.to_str().unwrap()]);
    terminate(&mut srv);
    assert_eq!(code, 1, "no secured endpoint usable");
    let ep = secured_endpoint(&events, "SignAndEncrypt");
    assert_eq!(ep["usable"], false);
    assert_eq!(ep["channel"], "rejected");
    assert_eq!(ep["session"], Value::Null);
    // node-opcua turns Bad_CertificateUntrusted into Bad_SecurityChecksFailed, in a
    // ServiceFault encrypted to the probe: read with the probe's own key, so exact.
    assert_eq!(ep["status"], "0x80130000");
    assert_eq!(ep["status_name"], "Bad_SecurityChecksFailed");
    assert_eq!(ep["cause"], "security_checks_failed");
    let explanation = ep["explanation"].as_str().unwrap();
    assert!(
        explanation.contains(pki.join("own/cert.der").to_str().unwrap()),
        "names the certificate to trust: {explanation}"
    );
    let rejects = of_kind(&events, "reject");
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(rejects[0]["stage"], "secure_channel");
    assert_eq!(rejects[0]["status"], "0x80130000");
    assert_eq!(rejects[0]["inferred"], false);
    assert_eq!(rejects[0]["conn"], ep["conn"]);
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

/// `uatap probe --user` with the password in UATAP_PASSWORD: exit code, events, and all it
/// printed (stdout and stderr).
fn probe_as(url: &str, pki: &Path, user: &str, password: &str) -> (i32, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["probe", "--json", url, "--user", user, "--pki"])
        .arg(pki)
        .env("UATAP_PASSWORD", password)
        .output()
        .expect("uatap probe runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().expect("exit code"), events, all)
}

/// A user name login over the secured channel: the right password activates the session,
/// a wrong one is refused with the server's exact status; neither password is ever printed.
fn user_login(stack: &str, wrong: (&str, &str, &str)) {
    let dir = crate::util::temp_dir(&format!("probe-user-{stack}"));
    let (mut srv, url) = secured_server(
        stack,
        "Basic256Sha256:SignAndEncrypt",
        &dir.join("srv"),
        &["--user", "operator", "--password-env", "UATAP_TEST_PW"],
    );
    let pki = dir.join("pki");
    let (ok_code, ok_events, ok_all) = probe_as(&url, &pki, "operator", "right-horse-battery");
    let (bad_code, bad_events, bad_all) = probe_as(&url, &pki, "operator", "wrong-horse-staple");
    terminate(&mut srv);

    assert_eq!(ok_code, 0, "{ok_events:#?}");
    let ep = secured_endpoint(&ok_events, "SignAndEncrypt");
    assert_eq!(ep["session"], "activated", "{ep:#}");
    assert_eq!(ep["identity"], "username");
    let activate = of_kind(&ok_events, "session")
        .into_iter()
        .find(|s| s["action"] == "activate" && s["conn"] == ep["conn"])
        .expect("activate event");
    assert_eq!(activate["identity"], "username");
    assert_eq!(activate["user"], "operator");

    assert_eq!(bad_code, 1, "{bad_events:#?}");
    let ep = secured_endpoint(&bad_events, "SignAndEncrypt");
    assert_eq!(ep["channel"], "accepted");
    assert_eq!(ep["session"], "rejected");
    assert_eq!(ep["usable"], false);
    let (status, name, cause) = wrong;
    assert_eq!(ep["status"], status, "{ep:#}");
    assert_eq!(ep["status_name"], name);
    assert_eq!(ep["cause"], cause);
    let rejects = of_kind(&bad_events, "reject");
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(rejects[0]["stage"], "activate_session");
    assert_eq!(rejects[0]["status"], status);
    assert_eq!(rejects[0]["cause"], cause);

    for (all, pw) in [
        (&ok_all, "right-horse-battery"),
        (&bad_all, "wrong-horse-staple"),
    ] {
        assert!(!all.contains(pw), "the password was printed");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn probe_logs_in_over_a_secured_channel_node_opcua() {
    user_login(
        "node",
        (
            "0x801F0000",
            "Bad_UserAccessDenied",
            "wrong_user_or_password",
        ),
    );
}

#[test]
fn probe_logs_in_over_a_secured_channel_asyncua() {
    user_login(
        "asyncua",
        (
            "0x801F0000",
            "Bad_UserAccessDenied",
            "wrong_user_or_password",
        ),
    );
}

#[test]
fn probe_of_an_asyncua_server_with_a_trust_list_untrusted_then_trusted() {
    let dir = crate::util::temp_dir("probe-trust-asyncua");
    let pki = dir.join("pki");
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    // The trust list holds another application's certificate (asyncua cannot load an empty one).
    let other = dir.join("other");
    let _ = probe("opc.tcp://127.0.0.1:1", &["--pki", other.to_str().unwrap()]);
    std::fs::copy(other.join("own/cert.der"), trust.join("other.der")).unwrap();
    let trust_arg = trust.to_str().unwrap().to_string();
    let security = "Basic256Sha256:SignAndEncrypt";
    let (mut srv, url) = secured_server(
        "asyncua",
        security,
        &dir.join("srv"),
        &["--trust-dir", &trust_arg],
    );
    let (code, events) = probe(&url, &["--pki", pki.to_str().unwrap()]);
    terminate(&mut srv);
    assert_eq!(code, 1, "{events:#?}");
    let ep = secured_endpoint(&events, "SignAndEncrypt");
    // asyncua checks the client certificate at CreateSession, not at OpenSecureChannel.
    assert_eq!(ep["channel"], "accepted");
    assert_eq!(ep["session"], "rejected");
    assert_eq!(ep["status"], "0x801A0000");
    assert_eq!(ep["status_name"], "Bad_CertificateUntrusted");
    assert_eq!(ep["cause"], "client_cert_untrusted");
    let rejects = of_kind(&events, "reject");
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(rejects[0]["stage"], "create_session");

    // Trusted: the probe's certificate in the trust list.
    std::fs::copy(pki.join("own/cert.der"), trust.join("uatap.der")).unwrap();
    let (mut srv, url) = secured_server(
        "asyncua",
        security,
        &dir.join("srv"),
        &["--trust-dir", &trust_arg],
    );
    let (code, events) = probe(&url, &["--pki", pki.to_str().unwrap()]);
    terminate(&mut srv);
    assert_eq!(code, 0, "{events:#?}");
    let ep = secured_endpoint(&events, "SignAndEncrypt");
    assert_eq!(ep["session"], "activated");
    let _ = std::fs::remove_dir_all(dir);
}

/// Fetches `/metrics` from a loopback address.
fn get_metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of a metric line `name{...} value`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `--every` turns the probe into a synthetic monitor: its loopback `/metrics` says the server
/// is up with a usable secured endpoint, then down (and why) once the server is gone.
#[test]
fn probe_every_serves_metrics_up_then_down() {
    let dir = crate::util::temp_dir("probe-every");
    let (mut srv, url) = secured_server(
        "node",
        "Basic256Sha256:SignAndEncrypt",
        &dir.join("srv"),
        &[],
    );
    let mut mon = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args([
            "probe",
            &url,
            "--every",
            "0.5s",
            "--metrics",
            "127.0.0.1:0",
            "--json",
            "--timeout",
            "2",
        ])
        .arg("--pki")
        .arg(dir.join("pki"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("probe starts");
    let mut err = std::io::BufReader::new(mon.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "the probe ended before its metrics line");
        if let Some(a) = line.split("http://").nth(1) {
            break a.trim().trim_end_matches("/metrics").to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let wait_for = |what: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = get_metrics(&addr);
            if what(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "metrics never got there:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let up = wait_for(&|t| metric(t, "uatap_probe_runs_total").unwrap_or(0.0) >= 2.0);
    assert_eq!(metric(&up, "uatap_probe_up"), Some(1.0), "{up}");
    assert_eq!(
        metric(&up, "uatap_probe_secure_endpoints_usable"),
        Some(1.0),
        "{up}"
    );
    assert!(up.contains("# TYPE uatap_probe_up gauge"));
    terminate(&mut srv);
    let down = wait_for(&|t| metric(t, "uatap_probe_up") == Some(0.0));
    assert_eq!(
        metric(&down, "uatap_probe_secure_endpoints_usable"),
        Some(0.0)
    );
    assert!(
        down.contains("uatap_probe_rejects_total{") && down.contains("cause=\"tcp_refused\""),
        "{down}"
    );
    terminate(&mut mon);
    let _ = std::fs::remove_dir_all(dir);
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

/// The probe against the refusals of the reject table that a probe can meet, with a real
/// node-opcua server set up for each: what it says per endpoint, and the cause.
fn probe_refused(url: &str, pki: &Path, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["--pki", pki.to_str().unwrap()];
    args.extend_from_slice(extra);
    probe(url, &args)
}

/// Anonymous disabled: the endpoint's user token policies say so before any attempt, and the
/// probe says what to give instead of trying (a session needs `--user`).
#[test]
fn probe_names_anonymous_disabled_node_opcua() {
    let dir = crate::util::temp_dir("probe-no-anon");
    let (mut srv, url) = secured_server(
        "node",
        "Basic256Sha256:SignAndEncrypt",
        &dir.join("srv"),
        &[
            "--no-anonymous",
            "--user",
            "operator",
            "--password-env",
            "UATAP_TEST_PW",
        ],
    );
    let (_, events) = probe_refused(&url, &dir.join("pki"), &[]);
    terminate(&mut srv);
    let ep = secured_endpoint(&events, "SignAndEncrypt");
    assert_eq!(ep["channel"], "accepted");
    assert_eq!(
        ep["session"],
        Value::Null,
        "no anonymous session tried: {ep:#}"
    );
    assert_eq!(ep["user_tokens"], serde_json::json!(["username", "x509"]));
    let text = ep.to_string();
    assert!(
        text.contains("no anonymous login") && text.contains("--user"),
        "{ep:#}"
    );
    assert!(of_kind(&events, "reject").is_empty(), "nothing was refused");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn probe_names_the_session_limit_node_opcua() {
    let dir = crate::util::temp_dir("probe-session-limit");
    let server = crate::rejects::Server::start("node", &["--max-sessions", "1"], &[]);
    let mut holder = crate::rejects::hold_session(&server);
    let (code, events) = probe_refused(
        &format!("opc.tcp://{}/UA/Test", server.addr),
        &dir.join("pki"),
        &["--accept-none"],
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 1, "{events:#?}");
    let rejects = of_kind(&events, "reject");
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(rejects[0]["stage"], "create_session");
    assert_eq!(rejects[0]["status"], "0x80560000");
    assert_eq!(rejects[0]["cause"], "too_many_sessions");
    let _ = std::fs::remove_dir_all(dir);
}

/// The probe with an expired application certificate (`--cert/--key`): node-opcua's refusal
/// is encrypted to the probe, which reads it: Bad_CertificateTimeInvalid, `client_cert_expired`.
#[test]
fn probe_with_an_expired_certificate_node_opcua() {
    let dir = crate::util::temp_dir("probe-expired");
    crate::util::run(
        Command::new(python())
            .arg(peers_dir().join("make_cert.py"))
            .arg(dir.join("expired"))
            .args(["--app-uri", "urn:uatap:test-client:expired"]),
    );
    let (cert, key) = (dir.join("expired/cert.der"), dir.join("expired/key.pem"));
    let (mut srv, url) = secured_server(
        "node",
        "Basic256Sha256:SignAndEncrypt",
        &dir.join("srv"),
        &["--no-auto-accept", "--trust-cert", cert.to_str().unwrap()],
    );
    let (code, events) = probe(
        &url,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    terminate(&mut srv);
    assert_eq!(code, 1, "{events:#?}");
    let ep = secured_endpoint(&events, "SignAndEncrypt");
    assert_eq!(ep["channel"], "rejected", "{ep:#}");
    assert_eq!(ep["status"], "0x80140000", "{ep:#}");
    assert_eq!(ep["cause"], "client_cert_expired", "{ep:#}");
    let _ = std::fs::remove_dir_all(dir);
}
