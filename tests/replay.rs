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
    let div = of_kind(&events, "replay_divergence");
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
