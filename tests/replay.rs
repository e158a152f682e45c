//! `uatap replay` against real stacks (issue #8, section 3).
//!
//! `replay server`: the recorded server of fixtures/reconnect-node-cut.pcapng (a node-opcua
//! client cut by `uatap proxy --fault "cut after PublishResponse seq=20"`, then its reconnect) is
//! played to a live node-opcua client and to a live asyncua client. Each goes through the same
//! cut (its own log says so) and recovers its own way, which uatap's events show.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::util::{peers_dir, python, root, temp_dir, terminate};

/// A running `uatap replay server`; its JSON events go to a file.
struct ReplayServer {
    child: Child,
    url: String,
    events: std::path::PathBuf,
}

impl ReplayServer {
    fn start(recording: &Path, dir: &Path, extra: &[&str]) -> ReplayServer {
        let events = dir.join("replay.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(["replay", "server"])
            .arg(recording)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--accept-timeout",
                "20",
            ])
            .args(extra)
            .stdout(std::fs::File::create(&events).expect("events file"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("uatap replay server starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.expect("stderr line");
            if let Some(at) = line.find("on opc.tcp://") {
                url = Some(format!("{}/UA/Test", &line[at + 3..].trim()));
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        ReplayServer {
            child,
            url: url.expect("replay server banner"),
            events,
        }
    }

    /// Waits for the replay to end by itself (every recorded connection played), then returns
    /// its events.
    fn finish(mut self) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "replay server exit: {status}");
                break;
            }
            if std::time::Instant::now() > deadline {
                terminate(&mut self.child);
                panic!("the replay did not end after its last recorded connection");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        crate::util::read_events(&self.events)
    }
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

fn nums(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|n| n.as_u64().expect("number"))
        .collect()
}

/// The (sequence number, republished) of every notification line of a `watch` client's log.
fn notifications(log: &str) -> Vec<(u64, bool)> {
    log.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("notification"))
        .map(|l| {
            let seq = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("seq="))
                .and_then(|s| s.parse().ok())
                .expect("seq=");
            (seq, l.ends_with("republished"))
        })
        .collect()
}

fn run_client(stack: &str, url: &str, seconds: &str) -> String {
    let out = match stack {
        "node" => Command::new("node")
            .arg(peers_dir().join("ua_client.js"))
            .args(["watch", url, "--seconds", seconds])
            .output(),
        _ => Command::new(python())
            .arg(peers_dir().join("ua_client.py"))
            .args(["watch", url, "--seconds", seconds])
            .output(),
    }
    .expect("client runs");
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stack} client: {}\n{log}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    log
}

fn node_cut_fixture() -> std::path::PathBuf {
    root().join("fixtures").join("reconnect-node-cut.pcapng")
}

/// What every replay of the cut recording shows: the first connection closed by the replayed
/// server (the cut) after PublishResponse 20, and the client back on the same session.
fn the_cut_and_the_return(events: &[Value]) -> Value {
    let closes = of_kind(events, "conn_close");
    assert_eq!(closes.len(), 2, "two connections: {closes:?}");
    assert_eq!(closes[0]["by"], "server", "the cut: {}", closes[0]);
    let first_conn = closes[0]["conn"].clone();
    let last_before_cut = of_kind(events, "publish")
        .into_iter()
        .filter(|e| e["conn"] == first_conn && e["keep_alive"] == false)
        .map(|e| e["sequence_number"].as_u64().expect("seq"))
        .max();
    assert_eq!(
        last_before_cut,
        Some(20),
        "the cut comes after PublishResponse 20"
    );
    let rec = of_kind(events, "reconnect");
    assert_eq!(rec.len(), 1, "one reconnect verdict: {rec:?}");
    assert_eq!(rec[0]["session_reused"], true, "{}", rec[0]);
    assert_eq!(rec[0]["came_back"], true, "{}", rec[0]);
    rec[0].clone()
}

/// node-opcua, as recorded: connection lost, its 1 s back-off, the same session, Republish
/// 21..24 from the recorded server, Bad_MessageNotAvailable for 25, then Publish again. Nothing
/// diverges from the recording.
#[test]
fn replay_server_node_client_goes_through_the_recorded_cut() {
    let dir = temp_dir("replay-server-node");
    let server = ReplayServer::start(&node_cut_fixture(), &dir, &[]);
    let log = run_client("node", &server.url, "6");
    let events = server.finish();
    assert!(log.contains("stack: client connection_lost"), "{log}");
    assert!(log.contains("stack: session session_restored"), "{log}");
    let got = notifications(&log);
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    let max = *seqs.iter().max().expect("notifications");
    assert!(max > 30, "data flows after the reconnect: {seqs:?}");
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=max).collect::<Vec<_>>(), "nothing lost");
    assert_eq!(seqs, sorted, "in order");
    let rec = the_cut_and_the_return(&events);
    assert_eq!(nums(&rec["republished"]), [21, 22, 23, 24], "{rec}");
    assert_eq!(rec["recovered"], true, "{rec}");
    let republish = of_kind(&events, "republish");
    assert_eq!(
        republish.last().map(|e| e["status_name"].clone()),
        Some(Value::from("Bad_MessageNotAvailable"))
    );
    // Same stack, same requests; only the number of Publish requests kept queued depends on
    // the live client's timing (an extra one is queued, unanswered, as the recorded server
    // would have).
    let div: Vec<&Value> = of_kind(&events, "replay_divergence")
        .into_iter()
        .filter(|d| {
            !(d["service"] == "PublishRequest" && d["answer"] == "left unanswered (queued)")
        })
        .collect();
    assert!(div.is_empty(), "same stack, same requests: {div:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// asyncua on the node-opcua recording: the same cut, noticed by its supervisor; it comes back
/// on the same session and asks TransferSubscriptions, which the recording never saw (answered
/// from the recorded subscription, a `replay_divergence`), then Republish 21..24, which the
/// recorded server answered to node-opcua.
#[test]
fn replay_server_asyncua_client_goes_through_the_recorded_cut() {
    let dir = temp_dir("replay-server-asyncua");
    let server = ReplayServer::start(&node_cut_fixture(), &dir, &[]);
    let log = run_client("asyncua", &server.url, "6");
    let events = server.finish();
    assert!(
        log.contains("stack: Supervisor detected connection issue"),
        "{log}"
    );
    assert!(
        log.contains("Reconnected successfully (session reused)"),
        "{log}"
    );
    let got = notifications(&log);
    let republished: Vec<u64> = got.iter().filter(|(_, r)| *r).map(|(s, _)| *s).collect();
    assert_eq!(republished, [21, 22, 23, 24], "{log}");
    let rec = the_cut_and_the_return(&events);
    assert_eq!(nums(&rec["republished"]), [21, 22, 23, 24], "{rec}");
    assert_eq!(nums(&rec["transferred"]), [764_872], "{rec}");
    let div = of_kind(&events, "replay_divergence");
    assert!(
        div.iter()
            .any(|d| d["service"] == "TransferSubscriptionsRequest" && d["role"] == "server"),
        "{div:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a real server on port 0; returns it and its URL.
fn start_server(stack: &str) -> (Child, String) {
    let mut child = match stack {
        "node" => Command::new("node")
            .arg(peers_dir().join("ua_server.js"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn(),
        _ => Command::new(python())
            .arg(peers_dir().join("ua_server.py"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn(),
    }
    .expect("server starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.expect("server stdout");
        if let Some(u) = line.strip_prefix("READY ") {
            url = Some(u.trim().to_string());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, url.expect("the server said READY"))
}

/// Runs `uatap replay client --json`; returns its exit code, its events and its diff lines.
fn replay_client(recording: &Path, url: &str, extra: &[&str]) -> (i32, Vec<Value>, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["replay", "client"])
        .arg(recording)
        .args(["--upstream", url, "--json", "--speed", "10"])
        .args(extra)
        .output()
        .expect("uatap replay client runs");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("2 of 2 recorded connection(s) played to their end"),
        "{stderr}"
    );
    let diff = stderr
        .lines()
        .filter(|l| l.starts_with("  connection "))
        .map(str::to_string)
        .collect();
    (out.status.code().expect("exit code"), events, diff)
}

/// The live legs of a client replay: uatap cut the first connection itself, came back on the
/// same session on a second one, and the session ended with the recorded CloseSession.
fn cut_then_reconnect(events: &[Value]) -> Value {
    let closes = of_kind(events, "conn_close");
    assert_eq!(closes.len(), 2, "{closes:?}");
    assert_eq!(
        closes[0]["by"], "proxy",
        "uatap made the cut: {}",
        closes[0]
    );
    let first = closes[0]["conn"].clone();
    let data_before_cut = of_kind(events, "publish")
        .into_iter()
        .filter(|e| e["conn"] == first && e["keep_alive"] == false)
        .count();
    assert!(
        data_before_cut >= 15,
        "Publish flow before the cut: {data_before_cut}"
    );
    let rec = of_kind(events, "reconnect");
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0]["session_reused"], true, "{}", rec[0]);
    let second = closes[1]["conn"].clone();
    let data_after = of_kind(events, "publish")
        .into_iter()
        .filter(|e| e["conn"] == second && e["keep_alive"] == false)
        .count();
    assert!(
        data_after >= 5,
        "Publish flow after the reconnect: {data_after}"
    );
    let closed = of_kind(events, "session")
        .into_iter()
        .any(|e| e["action"] == "close" && e["status_name"] == "Good" && e["conn"] == second);
    assert!(closed, "the recorded CloseSession, answered Good");
    rec[0].clone()
}

/// The asyncua client's recording (cut, reconnect, TransferSubscriptions refused by the
/// node-opcua server, subscription recreated) against a live node-opcua server: the same
/// story, and nothing differs from the recording.
#[test]
fn replay_client_asyncua_recording_against_node_server() {
    let (mut server, url) = start_server("node");
    let recording = root().join("fixtures").join("reconnect-asyncua-cut.pcapng");
    let (code, events, diff) = replay_client(&recording, &url, &["--strict"]);
    terminate(&mut server);
    assert!(diff.is_empty(), "{diff:?}");
    assert_eq!(code, 0);
    let rec = cut_then_reconnect(&events);
    let transfer: Vec<&Value> = of_kind(&events, "subscription")
        .into_iter()
        .filter(|e| e["action"] == "transfer")
        .collect();
    assert_eq!(transfer.len(), 1);
    assert_eq!(transfer[0]["status_name"], "Bad_NothingToDo");
    assert_eq!(nums(&rec["recreated_subscriptions"]).len(), 1, "{rec}");
    // Live ids, not the recorded ones: the recreated subscription is the live server's.
    let created: Vec<u64> = of_kind(&events, "subscription")
        .into_iter()
        .filter(|e| e["action"] == "create")
        .map(|e| e["subscription_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(nums(&rec["recreated_subscriptions"]), [created[1]]);
    assert!(of_kind(&events, "replay_divergence").is_empty());
}

/// The node-opcua client's recording (cut, reconnect, Republish 21..25) against a live asyncua
/// server: the same story, and the diff names the one answer the asyncua server gives
/// differently (Good with an empty message to Republish 25, where the recorded node-opcua
/// server said Bad_MessageNotAvailable); `--strict` makes that exit 1.
#[test]
fn replay_client_node_recording_against_asyncua_server() {
    let (mut server, url) = start_server("asyncua");
    let recording = node_cut_fixture();
    let (code, events, diff) = replay_client(&recording, &url, &["--strict"]);
    terminate(&mut server);
    let rec = cut_then_reconnect(&events);
    // The recorded Republish loop, 21 to 25, asked of the live server (which of them it still
    // held, and so what came back, is the live server's business).
    let asked: Vec<u64> = of_kind(&events, "republish")
        .iter()
        .map(|e| e["retransmit_sequence_number"].as_u64().expect("number"))
        .collect();
    assert_eq!(asked, [21, 22, 23, 24, 25]);
    assert!(
        nums(&rec["republished"])
            .iter()
            .all(|n| (21..=24).contains(n)),
        "{rec}"
    );
    assert_eq!(
        diff,
        [
            "  connection 2: RepublishRequest response: recorded ServiceFault, live RepublishResponse",
            "  connection 2: RepublishRequest ServiceResult: recorded Bad_MessageNotAvailable, live Good",
        ]
    );
    assert_eq!(code, 1, "--strict with a diff");
    let div = of_kind(&events, "replay_divergence");
    assert!(div.iter().all(|d| d["role"] == "client"), "{div:?}");
}

/// The issue's own scenario, recorded fresh: a node-opcua client against an asyncua server
/// through `uatap proxy --fault cut`. The asyncua server answers node-opcua's Republish with Good
/// and an empty message, so node-opcua's Republish loop never ends. `replay server` of that
/// recording puts a live node-opcua client through the same cut and the same endless loop (its
/// own log shows it, uatap names it), and a live asyncua client through the same cut, from
/// which it comes back its own way.
#[test]
fn replay_server_of_a_fresh_recording_node_client_asyncua_server() {
    let dir = temp_dir("replay-fresh");
    let (mut srv, upstream) = start_server("asyncua");
    let recording = dir.join("recording.pcapng");
    let proxy = crate::proxy::Proxy::start_with(
        &upstream,
        &dir,
        &[
            "--fault",
            "cut after PublishResponse seq=20",
            "--record",
            recording.to_str().expect("utf-8 path"),
        ],
    );
    let url = format!("opc.tcp://{}/UA/Test", proxy.listen);
    let recorded_log = run_client("node", &url, "3");
    let _ = proxy.stop();
    terminate(&mut srv);
    let empty_answers = |log: &str| {
        log.lines()
            .filter(|l| l.contains(" keepalive ") && l.ends_with(" seq=0"))
            .count()
    };
    assert!(recorded_log.contains("connection_lost"), "{recorded_log}");
    assert!(empty_answers(&recorded_log) > 20, "{recorded_log}");

    // Both live clients at once, each against its own replay of the recording.
    let play = |stack: &'static str| {
        let sub = dir.join(stack);
        let recording = recording.clone();
        std::thread::spawn(move || {
            std::fs::create_dir_all(&sub).expect("dir");
            let server = ReplayServer::start(&recording, &sub, &[]);
            let log = run_client(stack, &server.url, "3");
            (log, server.finish())
        })
    };
    let (node, asyncua) = (play("node"), play("asyncua"));
    let (log, events) = node.join().expect("node replay");
    assert!(log.contains("stack: client connection_lost"), "{log}");
    assert!(log.contains("stack: client after_reconnection"), "{log}");
    assert!(
        empty_answers(&log) > 20,
        "the same endless Republish loop: {log}"
    );
    let rec = the_cut_and_the_return(&events);
    let patterns: Vec<&str> = rec["patterns"]
        .as_array()
        .expect("patterns")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(patterns.contains(&"republish_loop_stuck"), "{rec}");

    let (log, events) = asyncua.join().expect("asyncua replay");
    assert!(
        log.contains("stack: Supervisor detected connection issue"),
        "{log}"
    );
    assert!(log.contains("Reconnected successfully"), "{log}");
    let rec = the_cut_and_the_return(&events);
    assert!(
        !of_kind(&events, "replay_divergence").is_empty(),
        "asyncua asks what node-opcua never did: {rec}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
