//! Why was it refused, against real servers: asyncua, node-opcua and open62541 (o6) servers each
//! set up to refuse one way (tests/peers/ua_server.* and o6_server.py options), `uatap proxy` in
//! front, a real client through it. The proxy's events must hold exactly one `reject` with the
//! stage, the cause, the status the server sent (or `inferred` when the answer is encrypted to
//! the client), an explanation that says what to change, and evidence that carries the status.
//! What the server sent is confirmed independently where the server logs it (node-opcua and
//! open62541 log their refusals).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proxy::Proxy;
use crate::util::{peers_dir, python, read_events, temp_dir, terminate};

/// A running peer server; its stdout lines after READY are kept (node-opcua logs there).
pub(crate) struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
    /// The server certificate it announced on a `CERT` line.
    cert: Option<PathBuf>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `ua_server.js` (`node`), `o6_server.py` (`o6`: open62541) or `ua_server.py`
    /// (`asyncua`) on a port the system picks.
    pub(crate) fn start(stack: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = match stack {
            "node" => {
                let mut c = Command::new("node");
                c.arg(peers_dir().join("ua_server.js"));
                c
            }
            "o6" => {
                let mut c = Command::new(python());
                c.arg(peers_dir().join("o6_server.py"));
                c
            }
            _ => {
                let mut c = Command::new(python());
                c.arg(peers_dir().join("ua_server.py"));
                c
            }
        };
        let mut child = cmd
            .args(["--port", "0"])
            .args(args)
            .envs(env.iter().copied())
            .current_dir(peers_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{stack} server starts (run `make deps`): {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let err_log = log.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                err_log.lock().expect("log").push(l);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut addr, mut cert, mut seen) = (None, None, Vec::new());
        for line in lines.by_ref() {
            let line = line.expect("server stdout");
            if let Some(c) = line.strip_prefix("CERT ") {
                cert = Some(PathBuf::from(c.trim()));
            }
            if let Some(url) = line.strip_prefix("READY opc.tcp://") {
                addr = url.split('/').next().map(str::to_string);
                break;
            }
            seen.push(line);
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!(
                "{stack} server {args:?} ended before READY:\n{}\n{}",
                seen.join("\n"),
                log.lock().expect("log").join("\n")
            );
        };
        let out = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                out.lock().expect("log").push(l);
            }
        });
        Server {
            child,
            addr,
            cert,
            log,
        }
    }

    pub(crate) fn cert(&self) -> String {
        self.cert
            .as_ref()
            .expect("the server announced its certificate")
            .display()
            .to_string()
    }

    /// Whether the server logged a line containing `text` (waits up to 10 s for it).
    pub(crate) fn logged(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self
                .log
                .lock()
                .expect("log")
                .iter()
                .any(|l| l.contains(text))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client command for `ua_client.js` (`node`) or `ua_client.py` (`asyncua`).
fn client_cmd(stack: &str, url: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = match stack {
        "node" => {
            let mut c = Command::new("node");
            c.arg(peers_dir().join("ua_client.js"));
            c
        }
        _ => {
            let mut c = Command::new(python());
            c.arg(peers_dir().join("ua_client.py"));
            c
        }
    };
    cmd.args(["basic", url])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(peers_dir());
    cmd
}

/// Runs a client to its end.
fn run_client(stack: &str, url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    client_cmd(stack, url, args, env)
        .args(["--seconds", "1"])
        .output()
        .unwrap_or_else(|e| panic!("{stack} client runs: {e}"))
}

/// A client that holds a session on the server directly (not through the proxy) until killed;
/// returned once its session is active (it read Counter).
pub(crate) fn hold_session(server: &Server) -> Child {
    let url = format!("opc.tcp://{}/UA/Test", server.addr);
    let mut child = client_cmd("asyncua", &url, &["--seconds", "60"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("first client starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let ready = lines.by_ref().map_while(Result::ok).any(|line| {
        seen.push(line);
        seen.last().is_some_and(|l| l.contains("Read Counter"))
    });
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the first client never got a session:\n{}", seen.join("\n"));
    }
    // Keep reading what it prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Waits until every connection the proxy saw has closed, then stops it; its events.
fn events_when_closed(proxy: Proxy) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&proxy.json).unwrap_or_default();
        let count = |kind: &str| text.matches(&format!("\"kind\":\"{kind}\"")).count();
        if count("conn_open") > 0 && count("conn_open") == count("conn_close") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections never closed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.stop()
}

/// The one reject of the events.
fn one_reject(events: &[Value]) -> &Value {
    let rejects: Vec<&Value> = events.iter().filter(|e| e["kind"] == "reject").collect();
    assert_eq!(rejects.len(), 1, "exactly one reject: {rejects:#?}");
    rejects[0]
}

/// What a reject must say.
struct Want<'a> {
    stage: &'a str,
    cause: &'a str,
    /// The status the server sent; `None`: encrypted, so the cause is inferred.
    status: Option<(&'a str, &'a str)>,
    /// Words of the explanation that name what to change.
    change: &'a [&'a str],
    /// Words the evidence must hold (besides the status).
    evidence: &'a [&'a str],
}

fn check(events: &[Value], want: &Want<'_>) -> Value {
    let r = one_reject(events).clone();
    assert_eq!(r["stage"], want.stage, "{r:#}");
    assert_eq!(r["cause"], want.cause, "{r:#}");
    let evidence = r["evidence"].as_str().expect("evidence");
    match want.status {
        Some((hex, name)) => {
            assert_eq!(r["status"], hex, "{r:#}");
            assert_eq!(r["status_name"], name, "{r:#}");
            assert_eq!(r["inferred"], false, "{r:#}");
            assert!(
                evidence.contains(hex) && evidence.contains(name),
                "evidence carries the status: {evidence}"
            );
        }
        None => {
            assert_eq!(r["status"], Value::Null, "{r:#}");
            assert_eq!(r["inferred"], true, "{r:#}");
        }
    }
    for w in want.evidence {
        assert!(evidence.contains(w), "{w:?} in the evidence {evidence:?}");
    }
    let explanation = r["explanation"].as_str().expect("explanation");
    for w in want.change {
        assert!(explanation.contains(w), "{w:?} in {explanation:?}");
    }
    let check = r["check"].as_array().expect("check");
    assert!(
        check.len() == 2
            && check[0]
                .as_str()
                .is_some_and(|c| c.starts_with("Kepware: "))
            && check[1]
                .as_str()
                .is_some_and(|c| c.starts_with("Ignition: ")),
        "{check:?}"
    );
    r
}

fn proxy_url(proxy: &Proxy, path: &str) -> String {
    format!("opc.tcp://{}{path}", proxy.listen)
}

fn secure_channels(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "secure_channel")
        .collect()
}

#[test]
fn rejects_untrusted_client_certificate_node() {
    let dir = temp_dir("rejects-untrusted");
    let pki = dir.display().to_string();
    let server = Server::start(
        "node",
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &pki,
            "--no-auto-accept",
        ],
        &[],
    );
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client(
        "asyncua",
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &pki,
            "--server-cert",
            &server.cert(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    let r = check(
        &events,
        &Want {
            stage: "secure_channel",
            cause: "client_cert_untrusted",
            status: None,
            change: &["trust it on the server"],
            evidence: &["encrypted to the client", "inferred"],
        },
    );
    // The evidence names the certificate the client offered.
    let sc = secure_channels(&events);
    assert_eq!(sc.len(), 1, "{sc:#?}");
    assert_eq!(sc[0]["outcome"], "rejected");
    let thumb = sc[0]["client_cert"]["thumbprint_sha1"]
        .as_str()
        .expect("client certificate");
    assert!(r["evidence"].as_str().unwrap().contains(thumb), "{r:#}");
    // What node-opcua sent inside the encryption (it logs it): Bad_CertificateUntrusted
    // becomes Bad_SecurityChecksFailed.
    assert!(server.logged("sendError:  BadSecurityChecksFailed"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rejects_expired_client_certificate_node() {
    let dir = temp_dir("rejects-expired");
    let pki = dir.display().to_string();
    let made = crate::util::run(
        Command::new(python())
            .arg(peers_dir().join("make_cert.py"))
            .arg(dir.join("expired"))
            .args(["--app-uri", "urn:uatap:test-client:asyncua"]),
    );
    // "CERT <path> not_before <date> not_after <date>"
    let not_after = made
        .split_whitespace()
        .skip_while(|w| *w != "not_after")
        .nth(1)
        .and_then(|d| d.get(..10))
        .expect("not_after date")
        .to_string();
    let (cert, key) = (dir.join("expired/cert.der"), dir.join("expired/key.pem"));
    let server = Server::start(
        "node",
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &pki,
            "--no-auto-accept",
            "--trust-cert",
            &cert.display().to_string(),
        ],
        &[],
    );
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client(
        "asyncua",
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--cert",
            &cert.display().to_string(),
            "--key",
            &key.display().to_string(),
            "--server-cert",
            &server.cert(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    let r = check(
        &events,
        &Want {
            stage: "secure_channel",
            cause: "client_cert_expired",
            status: None,
            change: &["renew the client's certificate"],
            evidence: &["encrypted to the client", "inferred"],
        },
    );
    assert!(
        r["evidence"].as_str().unwrap().contains(&not_after),
        "the evidence shows the end of validity {not_after}: {r:#}"
    );
    assert!(server.logged("sendError:  BadCertificateTimeInvalid"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rejects_secured_channel_on_none_only_server_node_malformed_err() {
    let dir = temp_dir("rejects-policy-secured");
    let pki = dir.display().to_string();
    // Security None only; --pki makes the server announce its (real) certificate.
    let server = Server::start("node", &["--pki", &pki], &[]);
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client(
        "asyncua",
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &pki,
            "--server-cert",
            &server.cert(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "secure_channel",
            cause: "policy_rejected",
            status: Some(("0x80550000", "Bad_SecurityPolicyRejected")),
            change: &["pick one of the server's endpoints"],
            evidence: &["malformed ERR"],
        },
    );
    // node-opcua's ERR is laid out like an OPN chunk: reported as malformed, read for the
    // ServiceFault's status (its "Error" field is the SecureChannelId).
    let bad: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "decode_error")
        .collect();
    assert!(
        bad.len() == 1
            && bad[0]["what"]
                .as_str()
                .unwrap()
                .starts_with("ERR laid out like an OPN chunk"),
        "{bad:#?}"
    );
    let errs: Vec<&Value> = events.iter().filter(|e| e["kind"] == "tcp_error").collect();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0]["status"], "0x80550000");
    assert!(server.logged("BadSecurityPolicyRejected"));
    let _ = std::fs::remove_dir_all(dir);
}

/// asyncua's None-only server has no certificate: the client encrypts to one it was given, and
/// asyncua never answers the OPN (the client gives up after its 15 s timeout).
#[test]
fn rejects_secured_channel_on_none_only_server_asyncua_no_answer() {
    let dir = temp_dir("rejects-policy-secured-asyncua");
    let pki = dir.display().to_string();
    crate::util::run(
        Command::new(python())
            .arg(peers_dir().join("make_cert.py"))
            .arg(dir.join("other-server"))
            .args(["--app-uri", "urn:uatap:other-server"])
            .args(["--not-before-days", "-1", "--not-after-days", "365"]),
    );
    let server = Server::start("asyncua", &[], &[]);
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client(
        "asyncua",
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &pki,
            "--server-cert",
            &dir.join("other-server/cert.der").display().to_string(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "secure_channel",
            cause: "secure_channel_unanswered",
            status: None,
            change: &["check the policy and the server certificate"],
            evidence: &["got no answer", "inferred"],
        },
    );
    let sc = secure_channels(&events);
    assert!(
        sc.len() == 1 && sc[0]["outcome"] == "no_response",
        "{sc:#?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rejects_none_session_on_secured_only_server_node() {
    let dir = temp_dir("rejects-policy-none");
    let pki = dir.display().to_string();
    let server = Server::start(
        "node",
        &["--security", "Basic256Sha256:SignAndEncrypt", "--pki", &pki],
        &[],
    );
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    // asyncua's client asks for None; node-opcua lets the None channel open (for discovery)
    // and refuses the session.
    let out = run_client("asyncua", &proxy_url(&proxy, "/UA/Test"), &[], &[]);
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "create_session",
            cause: "policy_rejected",
            status: Some(("0x80540000", "Bad_SecurityModeRejected")),
            change: &["pick one of the server's endpoints"],
            evidence: &["CreateSession"],
        },
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// No stack (node-opcua, asyncua, open62541) checks the EndpointUrl of the Hello (nor of
/// CreateSession): a wrong path is served, and uatap must not invent a refusal.
#[test]
fn rejects_none_for_wrong_endpoint_url_every_stack() {
    for stack in ["node", "asyncua", "o6"] {
        let dir = temp_dir(&format!("rejects-url-{stack}"));
        let server = Server::start(stack, &[], &[]);
        let proxy = Proxy::start_with(&server.addr, &dir, &[]);
        let out = run_client("asyncua", &proxy_url(&proxy, "/Wrong/Path"), &[], &[]);
        assert!(
            out.status.success(),
            "{stack}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = events_when_closed(proxy);
        let hello = events
            .iter()
            .find(|e| e["kind"] == "hello" && e["dir"] == "c2s")
            .expect("the client's Hello");
        assert!(
            hello["endpoint_url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/Wrong/Path")),
            "{hello}"
        );
        assert!(
            events.iter().any(|e| e["kind"] == "session"
                && e["action"] == "activate"
                && e["outcome"] == "ok"),
            "{stack}: the session was activated"
        );
        assert!(
            !events.iter().any(|e| e["kind"] == "reject"),
            "{stack}: no refusal happened"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn rejects_session_limit_node() {
    let dir = temp_dir("rejects-sessions-node");
    let server = Server::start("node", &["--max-sessions", "1"], &[]);
    let mut first = hold_session(&server);
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client("asyncua", &proxy_url(&proxy, "/UA/Test"), &[], &[]);
    terminate(&mut first);
    assert!(!out.status.success(), "the server let a second session in");
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "create_session",
            cause: "too_many_sessions",
            status: Some(("0x80560000", "Bad_TooManySessions")),
            change: &["close the sessions", "raise the server's session limit"],
            evidence: &["CreateSession"],
        },
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rejects_session_limit_asyncua() {
    let dir = temp_dir("rejects-sessions-asyncua");
    let server = Server::start("asyncua", &["--max-sessions", "1"], &[]);
    let mut first = hold_session(&server);
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client("asyncua", &proxy_url(&proxy, "/UA/Test"), &[], &[]);
    terminate(&mut first);
    assert!(!out.status.success(), "the server let a second session in");
    let events = events_when_closed(proxy);
    // asyncua creates the session and refuses to activate it.
    check(
        &events,
        &Want {
            stage: "activate_session",
            cause: "too_many_sessions",
            status: Some(("0x80B70000", "Bad_MaxConnectionsReached")),
            change: &["close the sessions", "raise the server's session limit"],
            evidence: &["ActivateSession"],
        },
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rejects_connection_limit_asyncua() {
    let dir = temp_dir("rejects-connections-asyncua");
    let server = Server::start("asyncua", &["--max-connections", "1"], &[]);
    let mut first = hold_session(&server);
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client("asyncua", &proxy_url(&proxy, "/UA/Test"), &[], &[]);
    terminate(&mut first);
    assert!(
        !out.status.success(),
        "the server let a second connection in"
    );
    let events = events_when_closed(proxy);
    // asyncua closes the connection as soon as it accepts it, before or after the Hello got
    // there: nothing came from the server.
    check(
        &events,
        &Want {
            stage: "hello",
            cause: "connection_limit",
            status: None,
            change: &["close unused connections", "raise the server's limit"],
            evidence: &["without an ACK or an ERR (0 bytes from the server)"],
        },
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn anonymous_disabled(stack: &str, status: (&str, &str)) {
    let dir = temp_dir(&format!("rejects-anonymous-{stack}"));
    let server = Server::start(stack, &["--no-anonymous"], &[]);
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client("asyncua", &proxy_url(&proxy, "/UA/Test"), &[], &[]);
    assert!(
        !out.status.success(),
        "the server let an anonymous client in"
    );
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "activate_session",
            cause: "anonymous_disabled",
            status: Some(status),
            change: &[
                "give the client a user name and password",
                "allow anonymous",
            ],
            evidence: &["ActivateSession", "anonymous"],
        },
    );
    if stack == "o6" {
        // open62541 itself refuses the token: no anonymous policy on the endpoint.
        assert!(server.logged("Requested Endpoint/UserTokenPolicy not available"));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rejects_anonymous_disabled_node() {
    anonymous_disabled("node", ("0x80200000", "Bad_IdentityTokenInvalid"));
}

#[test]
fn rejects_anonymous_disabled_asyncua() {
    anonymous_disabled("asyncua", ("0x80210000", "Bad_IdentityTokenRejected"));
}

/// A user name / password user on the server; the client (of the same stack for node-opcua:
/// its server wants the password encrypted the way node-opcua's client does it) sends a wrong
/// password. Neither password may appear in the events or the client's output.
fn wrong_password(stack: &str, client: &str) {
    let dir = temp_dir(&format!("rejects-password-{stack}"));
    let right = format!("Right-{}-pw", std::process::id());
    let wrong = format!("Wrong-{}-pw", std::process::id());
    let env = [
        ("UATAP_TEST_PASSWORD", right.as_str()),
        ("UATAP_TEST_WRONG_PASSWORD", wrong.as_str()),
    ];
    let server = Server::start(
        stack,
        &[
            "--user",
            "operator",
            "--password-env",
            "UATAP_TEST_PASSWORD",
        ],
        &env,
    );
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client(
        client,
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--user",
            "operator",
            "--password-env",
            "UATAP_TEST_WRONG_PASSWORD",
        ],
        &env,
    );
    assert!(!out.status.success(), "the server let a wrong password in");
    let json = proxy.json.clone();
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "activate_session",
            cause: "wrong_user_or_password",
            status: Some(("0x801F0000", "Bad_UserAccessDenied")),
            change: &["correct them in the client"],
            evidence: &["ActivateSession", "username user \"operator\""],
        },
    );
    assert_no_password(&json, &[&right, &wrong]);
    for text in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains(&right) && !text.contains(&wrong),
            "a password in the client's output"
        );
    }
    if stack == "o6" {
        // The password check is o6_server.py's AccessControl hook (see its docstring).
        assert!(server.logged("hook refused user 'operator': Bad_UserAccessDenied"));
    }
    let log = server.log.lock().expect("log").join("\n");
    assert!(
        !log.contains(&right) && !log.contains(&wrong),
        "a password in the server's output"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// No password in the events file, as written or with JSON escapes undone.
fn assert_no_password(events: &Path, passwords: &[&str]) {
    let text = std::fs::read_to_string(events).expect("events file");
    let values = read_events(events);
    assert!(
        values.iter().any(|e| e["kind"] == "session"),
        "events were written"
    );
    let decoded = values
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for p in passwords {
        assert!(
            !text.contains(p) && !decoded.contains(p),
            "a password in the events file"
        );
    }
}

#[test]
fn rejects_wrong_password_asyncua() {
    wrong_password("asyncua", "asyncua");
}

#[test]
fn rejects_wrong_password_node() {
    wrong_password("node", "node");
}

/// A refused secured OpenSecureChannel read with the client's private key: the proxy decrypts
/// the server's answer and reports the exact status, not an inference.
fn refusal_read_with_the_client_key(
    name: &str,
    not_after_days: &str,
    trusted: bool,
    want: Want<'_>,
) -> Vec<Value> {
    let dir = temp_dir(name);
    let pki = dir.display().to_string();
    crate::util::run(
        Command::new(python())
            .arg(peers_dir().join("make_cert.py"))
            .arg(dir.join("client"))
            .args(["--app-uri", "urn:uatap:test-client:asyncua"])
            .args([
                "--not-before-days",
                "-30",
                "--not-after-days",
                not_after_days,
            ]),
    );
    let (cert, key) = (dir.join("client/cert.der"), dir.join("client/key.pem"));
    let cert_arg = cert.display().to_string();
    let mut server_args = vec![
        "--security",
        "Basic256Sha256:SignAndEncrypt",
        "--pki",
        &pki,
        "--no-auto-accept",
    ];
    if trusted {
        server_args.extend(["--trust-cert", &cert_arg]);
    }
    let server = Server::start("node", &server_args, &[]);
    let key_arg = key.display().to_string();
    let proxy = Proxy::start_with(&server.addr, &dir, &["--private-key", &key_arg]);
    let out = run_client(
        "asyncua",
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--cert",
            &cert_arg,
            "--key",
            &key_arg,
            "--server-cert",
            &server.cert(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    let r = check(&events, &want);
    assert!(
        r["evidence"]
            .as_str()
            .unwrap()
            .contains("read by decrypting the server's answer with the client's private key"),
        "{r:#}"
    );
    let sc = secure_channels(&events);
    assert_eq!(sc.len(), 1, "{sc:#?}");
    assert_eq!(sc[0]["outcome"], "rejected");
    assert_eq!(sc[0]["decrypted"], true);
    assert_eq!(
        sc[0]["mode"],
        Value::Null,
        "the request is encrypted to the server"
    );
    let _ = std::fs::remove_dir_all(dir);
    events
}

#[test]
fn rejects_untrusted_client_certificate_node_read_with_the_client_key() {
    // node-opcua turns Bad_CertificateUntrusted into Bad_SecurityChecksFailed, as the
    // specification asks servers to (no detail to an unauthenticated client).
    refusal_read_with_the_client_key(
        "rejects-untrusted-key",
        "365",
        false,
        Want {
            stage: "secure_channel",
            cause: "security_checks_failed",
            status: Some(("0x80130000", "Bad_SecurityChecksFailed")),
            change: &["not trusted"],
            evidence: &["OpenSecureChannel Basic256Sha256 answered"],
        },
    );
}

#[test]
fn rejects_expired_client_certificate_node_read_with_the_client_key() {
    let events = refusal_read_with_the_client_key(
        "rejects-expired-key",
        "-1",
        true,
        Want {
            stage: "secure_channel",
            cause: "client_cert_expired",
            status: Some(("0x80140000", "Bad_CertificateTimeInvalid")),
            change: &["renew the client's certificate"],
            evidence: &["OpenSecureChannel Basic256Sha256 answered"],
        },
    );
    assert!(!events.is_empty());
}

/// A client that encrypts to a server certificate the server no longer presents (a renewed
/// server certificate; here: another application's certificate), after discovering the
/// server's endpoints through the proxy: uatap names the renewal from the thumbprints.
#[test]
fn rejects_request_encrypted_to_an_old_server_certificate_asyncua_client_node_server() {
    let dir = temp_dir("rejects-renewed");
    let pki = dir.display().to_string();
    let server = Server::start(
        "node",
        &["--security", "Basic256Sha256:SignAndEncrypt", "--pki", &pki],
        &[],
    );
    let proxy = Proxy::start_with(&server.addr, &dir, &["--rewrite-endpoint-urls"]);
    let old = crate::util::root().join("fixtures/keys/asyncua-client/cert.der");
    // Like Eclipse Milo: GetEndpoints first, then the advertised endpoint (via the proxy).
    let out = Command::new(python())
        .arg(peers_dir().join("ua_client.py"))
        .args(["discover", &proxy_url(&proxy, "/UA/Test")])
        .args(["--security", "Basic256Sha256:SignAndEncrypt", "--pki", &pki])
        .arg("--server-cert")
        .arg(&old)
        .args(["--seconds", "1"])
        .current_dir(peers_dir())
        .output()
        .expect("asyncua client runs");
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    let r = check(
        &events,
        &Want {
            stage: "secure_channel",
            cause: "server_cert_changed",
            // node-opcua: ERR, reason "Cannot decrypt OPN package ... oaep decoding error".
            status: Some(("0x80820000", "Bad_TcpInternalError")),
            change: &["renewed", "current certificate"],
            evidence: &["but the server presents certificate"],
        },
    );
    let sc = secure_channels(&events);
    let secured: Vec<&&Value> = sc
        .iter()
        .filter(|c| c["policy"] == "Basic256Sha256")
        .collect();
    assert_eq!(secured.len(), 1, "{sc:#?}");
    let now = secured[0]["server_cert_now"]
        .as_str()
        .expect("server_cert_now")
        .to_string();
    let wrong = secured[0]["receiver_thumbprint"]
        .as_str()
        .expect("receiver")
        .to_string();
    assert_eq!(
        wrong, "34041D8DFA4FCA6BE585F568B782C5C1600D63BE",
        "the certificate given"
    );
    assert_ne!(now, wrong);
    assert!(r["evidence"].as_str().unwrap().contains(&now));
    let _ = std::fs::remove_dir_all(dir);
}

// open62541 (through o6, tests/peers/o6_server.py): the third real server stack.

#[test]
fn rejects_anonymous_disabled_o6() {
    anonymous_disabled("o6", ("0x80200000", "Bad_IdentityTokenInvalid"));
}

#[test]
fn rejects_wrong_password_o6() {
    wrong_password("o6", "asyncua");
}

/// open62541 validates the client certificate against its (empty) trust list and answers the
/// OpenSecureChannel with an ERR in clear, not a ServiceFault encrypted to the client.
#[test]
fn rejects_untrusted_client_certificate_o6() {
    let dir = temp_dir("rejects-untrusted-o6");
    let pki = dir.display().to_string();
    let server = Server::start(
        "o6",
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &pki,
            "--no-auto-accept",
        ],
        &[],
    );
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client(
        "asyncua",
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &pki,
            "--server-cert",
            &server.cert(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "secure_channel",
            cause: "security_checks_failed",
            status: Some(("0x80130000", "Bad_SecurityChecksFailed")),
            change: &["not trusted"],
            evidence: &["ERR"],
        },
    );
    // What open62541 found (it logs it): Bad_CertificateUntrusted, sent as
    // Bad_SecurityChecksFailed.
    assert!(server.logged(
        "failed the verification in the CertificateGroup with StatusCode BadCertificateUntrusted"
    ));
    let _ = std::fs::remove_dir_all(dir);
}

/// A Basic256Sha256 client on open62541's None-only server (no certificate: the client
/// encrypts to another application's).
#[test]
fn rejects_secured_channel_on_none_only_server_o6() {
    let dir = temp_dir("rejects-policy-secured-o6");
    let pki = dir.display().to_string();
    crate::util::run(
        Command::new(python())
            .arg(peers_dir().join("make_cert.py"))
            .arg(dir.join("other-server"))
            .args(["--app-uri", "urn:uatap:other-server"])
            .args(["--not-before-days", "-1", "--not-after-days", "365"]),
    );
    let server = Server::start("o6", &[], &[]);
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client(
        "asyncua",
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &pki,
            "--server-cert",
            &dir.join("other-server/cert.der").display().to_string(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "secure_channel",
            cause: "policy_rejected",
            status: Some(("0x80550000", "Bad_SecurityPolicyRejected")),
            change: &["pick one of the server's endpoints"],
            evidence: &["ERR"],
        },
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A None client on open62541's secured-only server: unlike node-opcua, open62541 has no None
/// channel for discovery then, and refuses the OpenSecureChannel itself, in clear.
#[test]
fn rejects_none_channel_on_secured_only_server_o6() {
    let dir = temp_dir("rejects-policy-none-o6");
    let pki = dir.display().to_string();
    let server = Server::start(
        "o6",
        &["--security", "Basic256Sha256:SignAndEncrypt", "--pki", &pki],
        &[],
    );
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client("asyncua", &proxy_url(&proxy, "/UA/Test"), &[], &[]);
    assert!(!out.status.success(), "the server let the client in");
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "secure_channel",
            cause: "policy_rejected",
            status: Some(("0x80550000", "Bad_SecurityPolicyRejected")),
            change: &["pick one of the server's endpoints"],
            evidence: &["OpenSecureChannel None answered by ERR"],
        },
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A user name login on open62541's anonymous-only server: open62541 finds no user token
/// policy for the token on the endpoint and answers Bad_IdentityTokenInvalid. That is not a
/// wrong password: the server does not take user name logins there at all.
#[test]
fn rejects_user_name_login_on_anonymous_only_server_o6() {
    let dir = temp_dir("rejects-user-token-o6");
    let password = format!("Some-{}-pw", std::process::id());
    let env = [("UATAP_TEST_PASSWORD", password.as_str())];
    let server = Server::start("o6", &[], &[]);
    let proxy = Proxy::start_with(&server.addr, &dir, &[]);
    let out = run_client(
        "asyncua",
        &proxy_url(&proxy, "/UA/Test"),
        &[
            "--user",
            "operator",
            "--password-env",
            "UATAP_TEST_PASSWORD",
        ],
        &env,
    );
    assert!(!out.status.success(), "the server let the user in");
    let json = proxy.json.clone();
    let events = events_when_closed(proxy);
    check(
        &events,
        &Want {
            stage: "activate_session",
            cause: "user_token_not_offered",
            status: Some(("0x80200000", "Bad_IdentityTokenInvalid")),
            change: &["a login type the server's endpoint offers"],
            evidence: &["ActivateSession", "username user \"operator\""],
        },
    );
    assert!(server.logged("Requested Endpoint/UserTokenPolicy not available"));
    assert_no_password(&json, &[&password]);
    let _ = std::fs::remove_dir_all(dir);
}
