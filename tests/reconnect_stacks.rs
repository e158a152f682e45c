//! Proof against real stacks (issue #6, section 3): a real server changes `Counter` every
//! 100 ms, a real client (node-opcua or asyncua, `watch` mode) is subscribed to it through
//! `uatap proxy --fault ... --record`, and logs every NotificationMessage its stack hands to the
//! subscription. Each test compares what the client really received with what uatap says it
//! received (its `publish`, `republish`, `sequence_gap` and `reconnect` events), and the live
//! verdicts with `uatap analyze` on the recording.
//!
//! The faults: `cut` and `blackhole` after a given PublishResponse, against the node-opcua server
//! (the asyncua server answers a Republish of a number it does not hold with Good and an empty
//! message instead of Bad_MessageNotAvailable, so a client's Republish loop never ends: see the
//! README, "What each stack does on reconnect"; one test shows it), and `drop-message` of one
//! PublishResponse, against the asyncua server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::proxy::Proxy;
use crate::util::{peers_dir, python, run, temp_dir, terminate};

/// The PublishResponse after which the fault fires: two seconds of data first.
const FAULT_AFTER_SEQ: u64 = 20;

/// One NotificationMessage as the client's stack handed it over.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    sub: u64,
    seq: u64,
    /// Counter values (empty for a keep-alive).
    values: Vec<i64>,
}

/// What one scenario produced.
struct Outcome {
    /// Data messages the client logged, in order.
    data: Vec<Received>,
    /// Keep-alives the client logged.
    keepalives: Vec<Received>,
    /// The client's "stack:" lines (its own account of the reconnect).
    stack: Vec<String>,
    live: Vec<Value>,
    offline: Vec<Value>,
    recording: PathBuf,
    dir: PathBuf,
}

impl Outcome {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.live.iter().filter(|e| e["kind"] == kind).collect()
    }

    /// (subscription, sequence number) of every data message that may have reached the
    /// client's socket: the data PublishResponses and the Good RepublishResponses uatap saw (a
    /// Good RepublishResponse may also carry an empty message: this is a superset).
    fn on_the_wire(&self) -> BTreeSet<(u64, u64)> {
        let mut v: BTreeSet<(u64, u64)> = self
            .of_kind("publish")
            .iter()
            .filter(|e| e["keep_alive"] == false)
            .map(|e| (num(&e["subscription_id"]), num(&e["sequence_number"])))
            .collect();
        v.extend(
            self.of_kind("republish")
                .iter()
                .filter(|e| e["status_name"] == "Good")
                .map(|e| {
                    (
                        num(&e["subscription_id"]),
                        num(&e["retransmit_sequence_number"]),
                    )
                }),
        );
        v
    }

    fn logged(&self) -> BTreeSet<(u64, u64)> {
        self.data.iter().map(|r| (r.sub, r.seq)).collect()
    }

    /// Per subscription, the numbers between the first and the last the client got that it
    /// never got.
    fn client_missing(&self) -> BTreeMap<u64, Vec<u64>> {
        let mut by_sub: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for r in &self.data {
            by_sub.entry(r.sub).or_default().insert(r.seq);
        }
        by_sub
            .into_iter()
            .map(|(sub, seqs)| {
                let (lo, hi) = (*seqs.first().unwrap(), *seqs.last().unwrap());
                (sub, (lo..=hi).filter(|s| !seqs.contains(s)).collect())
            })
            .collect()
    }

    /// The client's stack line containing `needle`, if any.
    fn stack_said(&self, needle: &str) -> bool {
        self.stack.iter().any(|l| l.contains(needle))
    }
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn nums(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(num)
        .collect()
}

/// Parses the client's lines: "<t> notification sub=S seq=N values=a,b[ republished]",
/// "<t> keepalive sub=S seq=N", "<t> stack: ...".
fn parse_client(stdout: &str) -> (Vec<Received>, Vec<Received>, Vec<String>) {
    let (mut data, mut keepalives, mut stack) = (Vec::new(), Vec::new(), Vec::new());
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        if words.next().and_then(|t| t.parse::<f64>().ok()).is_none() {
            continue;
        }
        let kind = words.next().unwrap_or("");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        match kind {
            "notification" | "keepalive" => {
                let sub = field("sub=").and_then(|s| s.parse().ok()).expect("sub=");
                let seq = field("seq=").and_then(|s| s.parse().ok()).expect("seq=");
                let values: Vec<i64> = field("values=")
                    .map(|v| v.split(',').map(|x| x.parse().expect("value")).collect())
                    .unwrap_or_default();
                let r = Received { sub, seq, values };
                if kind == "notification" {
                    data.push(r);
                } else {
                    keepalives.push(r);
                }
            }
            "stack:" => stack.push(line.to_string()),
            _ => {}
        }
    }
    (data, keepalives, stack)
}

/// Waits for the server's "READY opc.tcp://HOST:PORT/UA/Test" line; returns that URL (the
/// server was given port 0 and names the port it got).
fn wait_ready(child: &mut Child) -> String {
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line.expect("server stdout");
        if let Some(url) = line.strip_prefix("READY ") {
            std::thread::spawn(move || for _ in lines {});
            return url.trim().to_string();
        }
    }
    panic!("the server ended before READY");
}

/// Runs one scenario: `server` and `client` are "node" or "asyncua".
fn scenario(name: &str, server: &str, client: &str, fault: &str, seconds: u32) -> Outcome {
    let dir = temp_dir(&format!("reconnect-{name}"));
    let mut srv = match server {
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
    let upstream = wait_ready(&mut srv);
    let recording = dir.join("recording.pcapng");
    let rec = recording.to_str().expect("utf-8 path").to_string();
    let proxy = Proxy::start_with(&upstream, &dir, &["--fault", fault, "--record", &rec]);
    let url = format!("opc.tcp://{}/UA/Test", proxy.listen);
    let secs = seconds.to_string();
    let out = match client {
        "node" => Command::new("node")
            .arg(peers_dir().join("ua_client.js"))
            .args(["watch", &url, "--seconds", &secs])
            .output(),
        _ => Command::new(python())
            .arg(peers_dir().join("ua_client.py"))
            .args(["watch", &url, "--seconds", &secs])
            .output(),
    }
    .expect("client runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    std::fs::write(dir.join("client.log"), &stdout).expect("client log");
    std::fs::write(dir.join("client.err"), &out.stderr).expect("client stderr");
    let live = proxy.stop();
    terminate(&mut srv);
    assert!(
        out.status.success(),
        "{client} client: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let offline = run(Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--json"])
        .arg(&recording))
    .lines()
    .map(|l| serde_json::from_str(l).expect("JSON line"))
    .collect();
    if let Some(out_dir) = std::env::var_os("UATAP_RECONNECT_FIXTURES") {
        keep_as_fixture(Path::new(&out_dir), name, &recording, &stdout, &live);
    }
    let (data, keepalives, stack) = parse_client(&stdout);
    assert!(
        data.len() as u64 >= FAULT_AFTER_SEQ - 1,
        "the client got data before the fault: {stdout}"
    );
    Outcome {
        data,
        keepalives,
        stack,
        live,
        offline,
        recording,
        dir,
    }
}

/// With `UATAP_RECONNECT_FIXTURES=DIR`: keeps the recording and the client's log as
/// `DIR/reconnect-NAME.{pcapng,log}` and writes `DIR/expect/reconnect-NAME.toml` from the live
/// verdicts, for `uatap check` on the recording (see fixtures/reconnect-*.md).
fn keep_as_fixture(dir: &Path, name: &str, recording: &Path, log: &str, live: &[Value]) {
    std::fs::create_dir_all(dir.join("expect")).expect("fixtures dir");
    let base = format!("reconnect-{name}");
    std::fs::copy(recording, dir.join(format!("{base}.pcapng"))).expect("copy recording");
    std::fs::write(dir.join(format!("{base}.log")), log).expect("client log");
    let mut toml = format!(
        "# What the proxy said live about fixtures/{base}.pcapng; `uatap check` on the recording\n\
         # must find the same (tests/reconnect_stacks.rs). See fixtures/{base}.md.\n"
    );
    // (`fault_injected` is the proxy's own event: the recording has it as a comment only.)
    let keep: &[(&str, &[&str])] = &[
        (
            "reconnect",
            &[
                "session_reused",
                "transferred",
                "republished",
                "lost",
                "recovered",
                "came_back",
                "dropped_subscriptions",
                "recreated_subscriptions",
            ],
        ),
        ("sequence_gap", &["subscription_id", "missing", "duplicate"]),
        (
            "republish",
            &[
                "subscription_id",
                "retransmit_sequence_number",
                "status_name",
            ],
        ),
        (
            "subscription",
            &["action", "subscription_id", "status_name"],
        ),
    ];
    for (kind, fields) in keep {
        let of_kind: Vec<&Value> = live.iter().filter(|e| e["kind"] == *kind).collect();
        for e in &of_kind {
            toml.push_str(&format!("\n[[expect]]\nkind = \"{kind}\"\n"));
            for f in *fields {
                toml.push_str(&format!("{f} = {}\n", toml_value(&e[*f])));
            }
        }
        if of_kind.is_empty() {
            toml.push_str(&format!("\n[[forbid]]\nkind = \"{kind}\"\n"));
        }
    }
    let data = live
        .iter()
        .filter(|e| e["kind"] == "publish" && e["keep_alive"] == false)
        .count();
    toml.push_str(&format!(
        "\n[[expect]]\nkind = \"publish\"\nkeep_alive = false\ncount = {data}\n\n\
         [[forbid]]\nkind = \"decode_error\"\n"
    ));
    std::fs::write(dir.join("expect").join(format!("{base}.toml")), toml).expect("expect file");
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Null => panic!("null has no TOML form"),
        other => other.to_string(),
    }
}

/// The verdict events, without what differs by nature between live and offline.
fn verdicts(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e["kind"].as_str(),
                Some("publish" | "sequence_gap" | "republish" | "reconnect" | "subscription")
            )
        })
        .cloned()
        .collect()
}

/// (a) and (c) for every scenario: every data message the client logged reached it according
/// to uatap, with the same number of values, and `uatap analyze` on the recording gives the
/// live verdicts.
fn common_checks(o: &Outcome) {
    let wire = o.on_the_wire();
    for r in &o.data {
        assert!(
            wire.contains(&(r.sub, r.seq)),
            "the client got sub {} seq {} but uatap did not see it reach the client",
            r.sub,
            r.seq
        );
    }
    let counts: BTreeMap<(u64, u64), u64> = o
        .of_kind("publish")
        .iter()
        .filter(|e| e["keep_alive"] == false)
        .map(|e| {
            (
                (num(&e["subscription_id"]), num(&e["sequence_number"])),
                num(&e["notifications"]),
            )
        })
        .collect();
    for r in &o.data {
        if let Some(n) = counts.get(&(r.sub, r.seq)) {
            assert_eq!(
                *n,
                r.values.len() as u64,
                "sub {} seq {}: notifications per uatap vs values the client got",
                r.sub,
                r.seq
            );
        }
    }
    let faults = o.of_kind("fault_injected");
    assert!(!faults.is_empty(), "the fault was applied");
    let (offline, live) = (verdicts(&o.offline), verdicts(&o.live));
    let first_difference = offline.iter().zip(&live).position(|(a, b)| a != b);
    assert!(
        offline.len() == live.len() && first_difference.is_none(),
        "uatap analyze {} gives the live verdicts: {} offline, {} live; first difference: {:?}",
        o.recording.display(),
        offline.len(),
        live.len(),
        first_difference.map(|i| (&offline[i], &live[i]))
    );
}

/// (b) for a lost connection: one `reconnect` verdict, on a reused session, whose `republished`
/// are the messages the client got through Republish and whose `lost` are the numbers the client
/// never got.
fn reconnect_verdict(o: &Outcome) -> Value {
    let rec = o.of_kind("reconnect");
    assert_eq!(rec.len(), 1, "one reconnect verdict: {rec:?}");
    let rec = rec[0].clone();
    assert_eq!(rec["came_back"], true, "{rec}");
    // What came through Republish (a Good RepublishResponse may also be empty, so the republish
    // events alone do not tell): what the client got that no PublishResponse brought, and what
    // it got twice (once by Publish, once by Republish).
    let by_publish: BTreeSet<(u64, u64)> = o
        .of_kind("publish")
        .iter()
        .filter(|e| e["keep_alive"] == false)
        .map(|e| (num(&e["subscription_id"]), num(&e["sequence_number"])))
        .collect();
    let mut times: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for r in &o.data {
        *times.entry((r.sub, r.seq)).or_default() += 1;
    }
    let got_by_republish: Vec<u64> = times
        .iter()
        .filter(|(k, n)| !by_publish.contains(k) || **n > 1)
        .map(|((_, s), _)| *s)
        .collect();
    assert_eq!(
        nums(&rec["republished"]),
        got_by_republish,
        "republished = what the client got through Republish"
    );
    let missing: Vec<u64> = o.client_missing().into_values().flatten().collect();
    assert_eq!(
        nums(&rec["lost"]),
        missing,
        "lost = the numbers the client never got"
    );
    rec
}

/// node-opcua keeps its session and republishes what the server queued; when nothing was lost
/// the verdict is `recovered`.
fn node_client_recovers(o: &Outcome) {
    common_checks(o);
    let rec = reconnect_verdict(o);
    assert_eq!(rec["session_reused"], true, "{rec}");
    assert!(o.stack_said("session_restored"), "{:?}", o.stack);
    let subs: BTreeSet<u64> = o.data.iter().map(|r| r.sub).collect();
    assert_eq!(subs.len(), 1, "one subscription throughout: {subs:?}");
    let missing: Vec<u64> = o.client_missing().into_values().flatten().collect();
    assert_eq!(rec["recovered"], missing.is_empty(), "{rec}");
    // What the server had sent into the dead connection comes back through Republish (how
    // much depends on the timing), starting right after the last number received before.
    if let Some(first) = nums(&rec["republished"]).first() {
        assert!(o.logged().contains(&(o.data[0].sub, first - 1)));
    }
    let _ = std::fs::remove_dir_all(&o.dir);
}

#[test]
fn reconnect_node_client_cut() {
    let o = scenario(
        "node-cut",
        "node",
        "node",
        &format!("cut after PublishResponse seq={FAULT_AFTER_SEQ}"),
        6,
    );
    assert!(o.stack_said("connection_lost"), "{:?}", o.stack);
    node_client_recovers(&o);
}

#[test]
fn reconnect_node_client_blackhole() {
    let o = scenario(
        "node-blackhole",
        "node",
        "node",
        &format!("blackhole after PublishResponse seq={FAULT_AFTER_SEQ}"),
        12,
    );
    // Nothing is forwarded any more on that connection: the client's keep-alive Read and its
    // transport timeout notice it.
    assert!(o.stack_said("connection_lost"), "{:?}", o.stack);
    node_client_recovers(&o);
}

/// asyncua (auto_reconnect): ActivateSession on the old session, then TransferSubscriptions to
/// that same session, which the node-opcua server refuses (Bad_NothingToDo); asyncua then
/// deletes the subscription and creates a new one: what the server had queued for the old one
/// is gone.
#[test]
fn reconnect_asyncua_client_cut() {
    let o = scenario(
        "asyncua-cut",
        "node",
        "asyncua",
        &format!("cut after PublishResponse seq={FAULT_AFTER_SEQ}"),
        6,
    );
    common_checks(&o);
    assert_eq!(o.logged(), o.on_the_wire(), "the app got all that arrived");
    let rec = reconnect_verdict(&o);
    assert_eq!(rec["session_reused"], true, "{rec}");
    let old = o.data[0].sub;
    let new = o.data.last().unwrap().sub;
    assert_ne!(old, new, "asyncua recreated its subscription");
    assert!(o.stack_said("falling back to recreate"), "{:?}", o.stack);
    let transfers: Vec<&Value> = o
        .of_kind("subscription")
        .into_iter()
        .filter(|e| e["action"] == "transfer")
        .collect();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0]["subscription_id"], old);
    assert_eq!(transfers[0]["status_name"], "Bad_NothingToDo");
    assert_eq!(nums(&rec["recreated_subscriptions"]), [new]);
    // What the old subscription held when it was deleted is gone (how much depends on how
    // long the outage was: the Counter values the client never got are printed), and uatap
    // does not call a recreated subscription recovered.
    let last_old = o.data.iter().rev().find(|r| r.sub == old).unwrap();
    let first_new = o.data.iter().find(|r| r.sub == new).unwrap();
    println!(
        "asyncua cut: last value of the old subscription {:?}, first of the new {:?}",
        last_old.values.last(),
        first_new.values.first()
    );
    assert_eq!(nums(&rec["lost"]), Vec::<u64>::new(), "no number skipped");
    assert_eq!(rec["recovered"], false, "{rec}");
    let _ = std::fs::remove_dir_all(&o.dir);
}

/// asyncua on a blackhole: two of its watchdogs race. When the stale-subscription watchdog goes
/// first, it forgets the monitored items before its DeleteSubscriptions hangs; after the
/// reconnect (same session) it creates a new subscription without items, and drops every
/// message of the old subscription, which the server still sends on the reused session. On the
/// wire nothing is lost (uatap: recovered); the application gets no data any more.
#[test]
fn reconnect_asyncua_client_blackhole() {
    let o = scenario(
        "asyncua-blackhole",
        "node",
        "asyncua",
        &format!("blackhole after PublishResponse seq={FAULT_AFTER_SEQ}"),
        9,
    );
    common_checks(&o);
    let rec = reconnect_verdict(&o);
    assert_eq!(rec["session_reused"], true, "{rec}");
    let old = o.data[0].sub;
    let created = nums(&rec["recreated_subscriptions"]);
    assert_eq!(created.len(), 1, "{rec}");
    let stale_first = o.stack.iter().position(|l| l.contains("is stale"))
        < o.stack
            .iter()
            .position(|l| l.contains("Supervisor detected"))
        && o.stack_said("is stale");
    let after_loss: BTreeSet<(u64, u64)> = o
        .on_the_wire()
        .into_iter()
        .filter(|(s, q)| *s == old && *q > FAULT_AFTER_SEQ)
        .collect();
    if stale_first {
        // The old subscription goes on publishing to the client ...
        assert!(!after_loss.is_empty(), "{rec}");
        assert_eq!(rec["recovered"], true, "on the wire, nothing was lost");
        // ... which drops it all, and its new subscription carries no data.
        assert!(o.logged().is_disjoint(&after_loss));
        assert!(o.data.iter().all(|r| r.sub == old));
        assert!(o.keepalives.iter().any(|k| k.sub == created[0]));
    } else {
        // The supervisor went first: the same path as a cut.
        assert_eq!(o.logged(), o.on_the_wire());
        assert_eq!(rec["recovered"], false, "{rec}");
    }
    let _ = std::fs::remove_dir_all(&o.dir);
}

/// One PublishResponse dropped on a live connection, node-opcua client: it notices nothing,
/// asks for no Republish, and goes on; uatap reports the gap the client has.
#[test]
fn reconnect_node_client_drop_message() {
    let o = scenario(
        "node-drop",
        "asyncua",
        "node",
        &format!("drop-message PublishResponse seq={FAULT_AFTER_SEQ} x1"),
        5,
    );
    common_checks(&o);
    assert_eq!(o.logged(), o.on_the_wire());
    assert!(o.of_kind("reconnect").is_empty());
    assert!(o.of_kind("republish").is_empty());
    let gaps = o.of_kind("sequence_gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let sub = num(&gaps[0]["subscription_id"]);
    assert_eq!(
        o.client_missing()[&sub],
        nums(&gaps[0]["missing"]),
        "the gap uatap reports is the one the client has"
    );
    assert_eq!(nums(&gaps[0]["missing"]), [FAULT_AFTER_SEQ]);
    assert!(
        o.data.iter().any(|r| r.seq > FAULT_AFTER_SEQ),
        "data goes on"
    );
    let _ = std::fs::remove_dir_all(&o.dir);
}

/// One PublishResponse dropped, asyncua client: it keeps one Publish request outstanding and
/// waits for its answer without a timeout, so no data comes any more on that session (its
/// stale watchdog recreates the subscription, which does not restart Publish). uatap shows the
/// same: no PublishResponse after the dropped one.
#[test]
fn reconnect_asyncua_client_drop_message() {
    let o = scenario(
        "asyncua-drop",
        "asyncua",
        "asyncua",
        &format!("drop-message PublishResponse seq={FAULT_AFTER_SEQ} x1"),
        5,
    );
    common_checks(&o);
    assert_eq!(o.logged(), o.on_the_wire());
    let last = o.data.iter().map(|r| r.seq).max().unwrap();
    assert_eq!(
        last,
        FAULT_AFTER_SEQ - 1,
        "nothing after the dropped message"
    );
    let after: Vec<&Value> = o
        .of_kind("publish")
        .into_iter()
        .filter(|e| num(&e["sequence_number"]) >= FAULT_AFTER_SEQ)
        .collect();
    assert!(after.is_empty(), "{after:?}");
    assert!(o.of_kind("sequence_gap").is_empty());
    assert!(o.of_kind("reconnect").is_empty());
    let _ = std::fs::remove_dir_all(&o.dir);
}

/// The asyncua server answers a Republish of a number it does not hold with Good and an empty
/// NotificationMessage (sequence number 0) instead of Bad_MessageNotAvailable. node-opcua takes
/// that 0 as its last number and asks for 1, again and again: its Republish loop never ends (some
/// hundred requests a second for as long as the session lasts; data still comes through the
/// Publish requests it had queued). uatap names it (R10 FAIL, `republish_loop_stuck`), live and
/// offline, and the empty answers the client logged are ones uatap saw.
#[test]
fn reconnect_node_client_cut_asyncua_server_republish_never_ends() {
    let o = scenario(
        "node-cut-asyncua-server",
        "asyncua",
        "node",
        &format!("cut after PublishResponse seq={FAULT_AFTER_SEQ}"),
        3,
    );
    common_checks(&o);
    let rec = reconnect_verdict(&o);
    assert_eq!(rec["session_reused"], true, "{rec}");
    let patterns: Vec<&str> = rec["patterns"]
        .as_array()
        .expect("patterns")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(patterns.contains(&"republish_loop_stuck"), "{rec}");
    let r10 = rec["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["id"] == "R10")
        .expect("R10 judged");
    assert_eq!(r10["verdict"], "FAIL", "{r10}");
    // The client asked for 1 over and over, and got an empty message each time: every empty
    // message it logged is a Good RepublishResponse uatap saw without data.
    let asked_one = o
        .of_kind("republish")
        .iter()
        .filter(|e| e["retransmit_sequence_number"] == 1)
        .count();
    assert!(asked_one > 100, "Republish(1) asked {asked_one} times");
    let good = o
        .of_kind("republish")
        .iter()
        .filter(|e| e["status_name"] == "Good")
        .count();
    let empty_answers = good - nums(&rec["republished"]).len();
    let empty = o.keepalives.iter().filter(|k| k.seq == 0).count();
    assert!(
        empty > 100 && empty <= empty_answers,
        "{empty} empty messages logged, {empty_answers} empty Good RepublishResponses seen"
    );
    // The loop never reaches Bad_MessageNotAvailable; data still comes through the Publish
    // requests the client had queued.
    assert!(!o
        .of_kind("republish")
        .iter()
        .any(|e| e["status_name"] == "Bad_MessageNotAvailable"));
    let last_republished = *nums(&rec["republished"]).last().expect("republished");
    assert!(o.data.iter().any(|r| r.seq > last_republished + 5));
    let _ = std::fs::remove_dir_all(&o.dir);
}

/// The regression fixtures (one recording per scenario, kept from these tests) still give the
/// verdicts the proxy gave live when they were recorded.
#[test]
fn reconnect_fixtures_pass_their_expectations() {
    let expect_dir = crate::util::root().join("fixtures").join("expect");
    let mut checked = 0;
    for entry in std::fs::read_dir(&expect_dir).expect("fixtures/expect") {
        let expect = entry.expect("entry").path();
        let name = expect.file_stem().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with("reconnect-") {
            continue;
        }
        let capture = crate::util::root()
            .join("fixtures")
            .join(format!("{name}.pcapng"));
        let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .arg("check")
            .arg(&capture)
            .arg(&expect)
            .output()
            .expect("uatap check runs");
        assert!(
            out.status.success(),
            "uatap check {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "one fixture per client stack and fault");
}
