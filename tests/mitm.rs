//! `uatap proxy --mitm` between real stacks on secured channels: asyncua and node-opcua clients
//! and servers, Basic256Sha256 SignAndEncrypt and Aes256_Sha256_RsaPss Sign, anonymous and user
//! name. The sessions activate, the subscriptions deliver, the analysis sees every message in
//! clear, and the password appears in no output and no recording.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::rejects::Server;
use crate::util::{peers_dir, python, read_events, temp_dir, terminate};

/// A MITM proxy whose standard error goes to a file (to search it for secrets).
struct Mitm {
    child: Child,
    listen: String,
    json: PathBuf,
    stderr: PathBuf,
    record: PathBuf,
    pki: PathBuf,
}

impl Mitm {
    fn start(upstream: &str, dir: &Path) -> Mitm {
        Mitm::start_with(upstream, dir, &[])
    }

    fn start_with(upstream: &str, dir: &Path, extra: &[&str]) -> Mitm {
        let (json, stderr, record, pki) = (
            dir.join("events.jsonl"),
            dir.join("proxy.err"),
            dir.join("mitm.pcapng"),
            dir.join("uatap-pki"),
        );
        let child = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "--mitm",
            ])
            .arg("--pki")
            .arg(&pki)
            .arg("--json-file")
            .arg(&json)
            .arg("--record")
            .arg(&record)
            .arg("--export-keys")
            .arg(dir.join("keys.log"))
            .args(["--duration", "120", "-v"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("uatap proxy starts");
        let listen = crate::util::wait_banner_in(&stderr, Duration::from_secs(20));
        Mitm {
            child,
            listen,
            json,
            stderr,
            record,
            pki,
        }
    }

    fn url(&self) -> String {
        format!("opc.tcp://{}/UA/Test", self.listen)
    }

    /// The metrics page, from the address the proxy announced (`--metrics 127.0.0.1:0`).
    fn metrics_page(&self) -> String {
        use std::io::{Read, Write};
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let addr = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("uatap: metrics on http://"))
            .and_then(|a| a.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("no metrics address: {text}"));
        let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
        write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request");
        let mut page = String::new();
        s.read_to_string(&mut page).expect("answer");
        page
    }

    /// Stops the proxy (it flushes) and returns the events, its standard error and the
    /// recording's bytes.
    fn stop(mut self) -> (Vec<Value>, String, Vec<u8>) {
        terminate(&mut self.child);
        (
            read_events(&self.json),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            std::fs::read(&self.record).unwrap_or_default(),
        )
    }
}

fn client(stack: &str, mode: &str, url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
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
    cmd.args([mode, url])
        .args(args)
        .args(["--seconds", "3"])
        .envs(env.iter().copied())
        .current_dir(peers_dir())
        .output()
        .unwrap_or_else(|e| panic!("{stack} client runs: {e}"))
}

fn of_kind<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["kind"] == kind).collect()
}

/// The values the client saw ("done; values N gaps []").
fn values_seen(out: &Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("done; values"))
        .unwrap_or_else(|| {
            panic!(
                "client did not finish:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(line.ends_with("gaps []"), "{line}");
    line.split_whitespace()
        .skip_while(|w| *w != "values")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("value count")
}

/// What every MITM session must show: the secured channel read in clear, the session
/// activated, every Publish seen with no gap, nothing undecodable.
fn assert_session_in_clear(evs: &[Value], policy: &str, mode: &str, identity: &str, values: u64) {
    assert!(
        of_kind(evs, "decode_error").is_empty(),
        "{:#?}",
        of_kind(evs, "decode_error")
    );
    let secured: Vec<&Value> = of_kind(evs, "secure_channel")
        .into_iter()
        .filter(|c| c["policy"] == policy)
        .collect();
    assert_eq!(secured.len(), 1, "{:#?}", of_kind(evs, "secure_channel"));
    assert_eq!(secured[0]["mode"], mode);
    assert_eq!(secured[0]["outcome"], "ok");
    assert_eq!(secured[0]["decrypted"], true);
    let sessions = of_kind(evs, "session");
    let activate: Vec<&&Value> = sessions
        .iter()
        .filter(|s| s["action"] == "activate")
        .collect();
    assert_eq!(activate.len(), 1, "{sessions:#?}");
    assert_eq!(activate[0]["outcome"], "ok");
    assert_eq!(activate[0]["identity"], identity);
    let publishes = of_kind(evs, "publish");
    assert!(
        publishes.len() as u64 >= values.saturating_sub(2) && values > 5,
        "{} publish events for {values} values",
        publishes.len()
    );
    assert!(of_kind(evs, "sequence_gap").is_empty());
    assert!(
        of_kind(evs, "reject").is_empty(),
        "{:#?}",
        of_kind(evs, "reject")
    );
    // Every message was read, none left encrypted.
    let messages = of_kind(evs, "message");
    assert!(messages.len() > 40);
    assert!(
        messages.iter().all(|m| m["encrypted"] == false),
        "every message in clear"
    );
}

#[test]
fn mitm_asyncua_client_node_server_sign_and_encrypt() {
    let dir = temp_dir("mitm-asyncua-node");
    let server = Server::start(
        "node",
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &dir.join("srv").display().to_string(),
        ],
        &[],
    );
    let mitm = Mitm::start(&server.addr, &dir);
    // Like Milo: GetEndpoints first (it gets uatap's certificate), then the secured session.
    let out = client(
        "asyncua",
        "discover",
        &mitm.url(),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &dir.join("cli").display().to_string(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values = values_seen(&out);
    let pki = mitm.pki.clone();
    let (evs, stderr, _) = mitm.stop();
    assert_session_in_clear(
        &evs,
        "Basic256Sha256",
        "SignAndEncrypt",
        "anonymous",
        values,
    );
    assert!(
        stderr.contains("MITM mode") && stderr.contains("CHANGES BYTES"),
        "{stderr}"
    );
    assert!(pki.join("own/cert.der").exists() && pki.join("own/key.pem").exists());
    // The recording keeps the client's leg encrypted; the exported key log opens it offline,
    // with the same Publish sequence numbers as live.
    let keys = std::fs::read_to_string(dir.join("keys.log")).expect("key log");
    assert_eq!(keys.lines().count(), 6, "{keys}");
    let offline = crate::util::run(
        Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["analyze", "--json", "--keys"])
            .arg(dir.join("keys.log"))
            .arg(dir.join("mitm.pcapng")),
    );
    let offline: Vec<Value> = offline
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs = |evs: &[Value]| -> Vec<u64> {
        of_kind(evs, "publish")
            .iter()
            .filter_map(|p| p["sequence_number"].as_u64())
            .collect()
    };
    assert_eq!(seqs(&offline), seqs(&evs));
    assert!(of_kind(&offline, "decode_error").is_empty());
    let bare = crate::util::run(
        Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["analyze", "--json"])
            .arg(dir.join("mitm.pcapng")),
    );
    assert!(
        !bare.contains("\"kind\":\"publish\""),
        "without the keys nothing is read"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mitm_node_client_asyncua_server_user_name_password_never_shown() {
    let dir = temp_dir("mitm-node-asyncua");
    let password = "Pw-7h1s-mu5t-n0t-l3ak";
    let env = [("UATAP_MITM_PASSWORD", password)];
    let server = Server::start(
        "asyncua",
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &dir.join("srv").display().to_string(),
            "--user",
            "operator",
            "--password-env",
            "UATAP_MITM_PASSWORD",
            "--no-anonymous",
        ],
        &env,
    );
    let mitm = Mitm::start_with(&server.addr, &dir, &["--metrics", "127.0.0.1:0"]);
    let out = client(
        "node",
        "basic",
        &mitm.url(),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &dir.join("cli").display().to_string(),
            "--user",
            "operator",
            "--password-env",
            "UATAP_MITM_PASSWORD",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let values = values_seen(&out);
    let metrics_page = mitm.metrics_page();
    let (evs, stderr, recording) = mitm.stop();
    assert_session_in_clear(&evs, "Basic256Sha256", "SignAndEncrypt", "username", values);
    assert!(
        metrics_page.contains("uatap_connections_total"),
        "{metrics_page}"
    );
    // The recording read again with the keys uatap exported: the session decrypted offline, as
    // text (every message), the timeline, JSON and the HTML report.
    let keys = dir.join("keys.log");
    let html = dir.join("report.html");
    let mut offline = String::new();
    for extra in [
        &["--messages"][..],
        &["--timeline"][..],
        &["--json", "--messages"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .arg("analyze")
            .arg(dir.join("mitm.pcapng"))
            .arg("--keys")
            .arg(&keys)
            // uatap's own key too: the client encrypted the password to uatap's certificate.
            .arg("--private-key")
            .arg(dir.join("uatap-pki").join("own").join("key.pem"))
            .arg("--html")
            .arg(&html)
            .args(extra)
            .output()
            .expect("uatap analyze runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        offline.push_str(&String::from_utf8_lossy(&out.stdout));
        offline.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        offline.contains("\"identity\":\"username\""),
        "the offline analysis decrypted the session: {offline}"
    );
    let report = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(
        report.contains("(username)"),
        "the report shows the user-name session"
    );
    for (what, text) in [
        ("the offline analysis", &offline),
        ("the HTML report", &report),
        ("the metrics", &metrics_page),
    ] {
        assert!(!text.contains(password), "the password is in {what}");
    }
    let activate = of_kind(&evs, "session")
        .into_iter()
        .find(|s| s["action"] == "activate")
        .unwrap();
    assert_eq!(activate["user"], "operator");
    // The password was re-encrypted for the server (it let the user in) and is nowhere.
    let events_text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(!events_text.contains(password));
    assert!(!stderr.contains(password));
    assert!(!recording
        .windows(password.len())
        .any(|w| w == password.as_bytes()));
    assert!(recording.len() > 10_000, "the recording holds the session");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mitm_asyncua_client_node_server_rsa_pss_sign() {
    let dir = temp_dir("mitm-pss");
    let server = Server::start(
        "node",
        &[
            "--security",
            "Aes256_Sha256_RsaPss:Sign",
            "--pki",
            &dir.join("srv").display().to_string(),
        ],
        &[],
    );
    let mitm = Mitm::start(&server.addr, &dir);
    let out = client(
        "asyncua",
        "discover",
        &mitm.url(),
        &[
            "--security",
            "Aes256_Sha256_RsaPss:Sign",
            "--pki",
            &dir.join("cli").display().to_string(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values = values_seen(&out);
    let (evs, _, _) = mitm.stop();
    assert_session_in_clear(&evs, "Aes256_Sha256_RsaPss", "Sign", "anonymous", values);
    let _ = std::fs::remove_dir_all(dir);
}

/// A server that does not trust uatap's certificate refuses uatap's OpenSecureChannel; uatap
/// passes the refusal on to the client and explains it like any other.
#[test]
fn mitm_untrusted_by_the_server_is_explained_and_forwarded() {
    let dir = temp_dir("mitm-untrusted");
    let server = Server::start(
        "node",
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &dir.join("srv").display().to_string(),
            "--no-auto-accept",
        ],
        &[],
    );
    let mitm = Mitm::start(&server.addr, &dir);
    let out = client(
        "asyncua",
        "discover",
        &mitm.url(),
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &dir.join("cli").display().to_string(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the server let uatap in");
    let client_err = String::from_utf8_lossy(&out.stderr);
    assert!(
        client_err.contains("BadSecurityChecksFailed"),
        "the client got the server's status: {client_err}"
    );
    let (evs, stderr, _) = mitm.stop();
    assert!(
        stderr.contains("refused uatap's OpenSecureChannel"),
        "{stderr}"
    );
    let rejects = of_kind(&evs, "reject");
    assert_eq!(rejects.len(), 1, "{rejects:#?}");
    assert_eq!(rejects[0]["stage"], "secure_channel");
    assert_eq!(rejects[0]["status_name"], "Bad_SecurityChecksFailed");
    assert_eq!(rejects[0]["cause"], "security_checks_failed");
    let _ = std::fs::remove_dir_all(dir);
}

/// A `cut` on a MITM SignAndEncrypt session once data flows (added through the admin API):
/// node-opcua's client reconnects through uatap (a new secured channel on each leg), keeps its
/// session and republishes what it missed; the reconnect verdict is the same as on a None
/// channel (`tests/reconnect_stacks.rs`).
#[test]
fn mitm_cut_node_client_recovers_as_on_a_none_channel() {
    use std::io::BufRead;
    let dir = temp_dir("mitm-cut");
    let server = Server::start(
        "node",
        &[
            "--security",
            "Basic256Sha256:SignAndEncrypt",
            "--pki",
            &dir.join("srv").display().to_string(),
        ],
        &[],
    );
    let mitm = Mitm::start_with(&server.addr, &dir, &["--admin", "127.0.0.1:0"]);
    let admin = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&mitm.stderr).unwrap_or_default();
            if let Some(a) = text
                .split("admin API on http://")
                .nth(1)
                .and_then(|r| r.split('/').next())
            {
                break a.to_string();
            }
            assert!(Instant::now() < deadline, "no admin line: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut child = Command::new("node")
        .arg(peers_dir().join("ua_client.js"))
        .args([
            "watch",
            &mitm.url(),
            "--security",
            "Basic256Sha256:SignAndEncrypt",
        ])
        .arg("--pki")
        .arg(dir.join("cli"))
        .args(["--seconds", "6"])
        .current_dir(peers_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node client");
    let mut stdout = String::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.contains(" notification ") && line.contains("seq=10 ") {
            break;
        }
    }
    crate::util::run(
        Command::new(env!("CARGO_BIN_EXE_uatap")).args(["fault", "--admin", &admin, "add", "cut"]),
    );
    for line in lines {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{stdout}");
    assert!(stdout.contains("connection_lost"), "{stdout}");
    assert!(stdout.contains("session_restored"), "{stdout}");
    let (evs, _, _) = mitm.stop();
    assert!(
        of_kind(&evs, "decode_error").is_empty(),
        "{:#?}",
        of_kind(&evs, "decode_error")
    );
    let cuts: Vec<&Value> = of_kind(&evs, "conn_close")
        .into_iter()
        .filter(|c| c["reason"] == "fault")
        .collect();
    assert_eq!(cuts.len(), 1, "{:#?}", of_kind(&evs, "conn_close"));
    let secured = of_kind(&evs, "secure_channel")
        .into_iter()
        .filter(|c| c["policy"] == "Basic256Sha256" && c["outcome"] == "ok")
        .count();
    assert!(secured >= 2, "a secured channel before and after the cut");
    let rec = of_kind(&evs, "reconnect");
    assert_eq!(rec.len(), 1, "one reconnect verdict: {rec:#?}");
    assert_eq!(rec[0]["came_back"], true, "{}", rec[0]);
    assert_eq!(rec[0]["session_reused"], true, "{}", rec[0]);
    // What the client's own log says it got decides `recovered`: every number it was sent.
    let mut seen = std::collections::BTreeSet::new();
    for line in stdout.lines().filter(|l| l.contains(" notification ")) {
        if let Some(seq) = line.split_whitespace().find_map(|w| w.strip_prefix("seq=")) {
            seen.insert(seq.parse::<u64>().expect("seq"));
        }
    }
    let max = seen.iter().next_back().copied().unwrap_or(0);
    let complete = (1..=max).all(|n| seen.contains(&n));
    assert_eq!(
        rec[0]["recovered"], complete,
        "{} (client saw {seen:?})",
        rec[0]
    );
    let _ = std::fs::remove_dir_all(dir);
}
