//! Capture shapes and hostile captures (the offline-analysis issue): `uatap analyze` must give
//! the same events whatever shape the capture of a session has, and must survive captures that
//! are cut, edited or not captures at all.
//!
//! Live shapes: one asyncua client / node-opcua server session recorded at once by five
//! capturers (tshark pcapng on lo = the baseline, tshark classic pcap, tshark `-i any` as
//! LINUX_SLL and as LINUX_SLL2, tcpdump), plus a separate session over IPv6 loopback.
//! Edited shapes: fixtures/basic-none.pcapng rewritten as classic pcap (LINKTYPE_RAW) with one
//! edit each: started mid-connection, retransmissions and reordering, a cut file, an absurd
//! MessageSize, random bytes in the middle of a stream, and files that are no capture at all.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use uatap_recorder::{CaptureFormat, CaptureReader, LinkType};

use crate::util::{
    fixture_port, peers_dir, python, read_segments, root, run, temp_dir, write_pcap, Rng, Segment,
};

/// What one `uatap analyze --messages --json` run gave.
struct Analysis {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
}

/// Runs `uatap analyze --messages --json FILE`; fails the test on a panic or a non-JSON line,
/// whatever the exit code.
fn analyze(file: &Path) -> Analysis {
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--messages", "--json"])
        .arg(file)
        .output()
        .expect("uatap runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert!(
        !stderr.contains("panicked") && out.status.code().is_some(),
        "{}: uatap crashed ({}):\n{stderr}",
        file.display(),
        out.status
    );
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    Analysis {
        code: out.status.code(),
        stdout,
        stderr,
        events,
    }
}

/// The events of a capture uatap must read without complaint (exit 0, no damage reported).
fn events_of(file: &Path) -> Vec<Value> {
    let a = analyze(file);
    assert_eq!(a.code, Some(0), "{}: {}", file.display(), a.stderr);
    assert!(
        !a.stderr.contains("truncated") && !a.stderr.contains("invalid"),
        "{}: {}",
        file.display(),
        a.stderr
    );
    a.events
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// Sequence numbers of the data (not keep-alive) `publish` events, in order.
fn publish_seqs(events: &[Value]) -> Vec<u64> {
    of_kind(events, "publish")
        .iter()
        .filter(|p| p["keep_alive"] == false)
        .map(|p| p["sequence_number"].as_u64().expect("sequence_number"))
        .collect()
}

/// `ts` of an event as µs since the Unix epoch (RFC 3339 UTC with microseconds).
fn micros(e: &Value) -> i64 {
    let ts = e["ts"].as_str().unwrap_or_else(|| panic!("no ts: {e}"));
    let (date, time) = ts
        .strip_suffix('Z')
        .and_then(|s| s.split_once('T'))
        .unwrap_or_else(|| panic!("bad ts {ts}"));
    let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| panic!("bad ts {ts}"));
    let d: Vec<i64> = date.split('-').map(num).collect();
    let (hms, frac) = time
        .split_once('.')
        .unwrap_or_else(|| panic!("bad ts {ts}"));
    let t: Vec<i64> = hms.split(':').map(num).collect();
    assert!(
        d.len() == 3 && t.len() == 3 && frac.len() == 6,
        "bad ts {ts}"
    );
    // Days from civil (Howard Hinnant).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1])
    } else {
        (d[0], d[1])
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000 + num(frac)
}

/// Capture timestamps of different capturers of one packet differ by this much at most (see
/// the live test); still far below the 100 ms between two publishes, and a wrong unit or
/// resolution would be off by far more.
const TS_SLACK_US: i64 = 1000;

/// Asserts that `other` has the events of `base`, field by field; `ts` may differ by
/// `slack_us` and `latency_ms` (a difference of two `ts`) by twice that.
fn assert_same_events(base: &[Value], other: &[Value], label: &str, slack_us: i64) {
    assert_eq!(
        base.len(),
        other.len(),
        "{label}: {} events, baseline {}",
        other.len(),
        base.len()
    );
    let mut max_skew = 0;
    for (i, (b, o)) in base.iter().zip(other).enumerate() {
        let (bm, om) = (
            b.as_object().expect("object"),
            o.as_object().expect("object"),
        );
        let keys: BTreeSet<&String> = bm.keys().chain(om.keys()).collect();
        for k in keys {
            match k.as_str() {
                "ts" => {
                    let skew = (micros(b) - micros(o)).abs();
                    max_skew = max_skew.max(skew);
                    assert!(
                        skew <= slack_us,
                        "{label}: event {i} ts\n base: {b}\nshape: {o}"
                    );
                }
                "latency_ms" if b[k].is_number() && o[k].is_number() => {
                    let d = (b[k].as_f64().unwrap() - o[k].as_f64().unwrap()).abs();
                    let slack = 2.0 * slack_us as f64 / 1000.0 + 0.011;
                    assert!(
                        d <= slack,
                        "{label}: event {i} latency\n base: {b}\nshape: {o}"
                    );
                }
                _ => assert_eq!(
                    b[k], o[k],
                    "{label}: event {i} field {k}\n base: {b}\nshape: {o}"
                ),
            }
        }
    }
    eprintln!(
        "{label}: {} events agree, ts skew at most {max_skew} µs",
        base.len()
    );
}

/// Asserts two event lists are equal, naming the first difference instead of printing both.
fn assert_events_eq(got: &[Value], want: &[Value], label: &str) {
    let first = got.iter().zip(want).position(|(g, w)| g != w);
    if let Some(i) = first {
        panic!(
            "{label}: event {i} differs\n got: {}\nwant: {}",
            got[i], want[i]
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{label}: event counts; first extra: {:?}",
        got.get(want.len()).or(want.get(got.len()))
    );
}

/// The story of one basic-mode session (asyncua client, node-opcua server, SecurityPolicy
/// None): server at `server` (`ip:port` as uatap writes it), whole and undamaged.
fn assert_basic_session(events: &[Value], server: &str) {
    let opens = of_kind(events, "conn_open");
    assert_eq!(opens.len(), 1, "one connection: {opens:?}");
    assert_eq!(opens[0]["server"], server);
    let client = opens[0]["client"].as_str().expect("client");
    assert_eq!(opens[0]["conn"], format!("{client}->{server}"));
    let hellos = of_kind(events, "hello");
    assert_eq!(hellos.len(), 2, "HEL and ACK");
    assert_eq!(hellos[0]["dir"], "c2s");
    assert_eq!(
        hellos[0]["endpoint_url"],
        format!("opc.tcp://{server}/UA/Test")
    );
    assert_eq!(hellos[1]["dir"], "s2c");
    let ch = of_kind(events, "secure_channel");
    assert_eq!(ch.len(), 1, "{ch:?}");
    assert_eq!(ch[0]["request_type"], "issue");
    assert_eq!(ch[0]["policy"], "None");
    assert_eq!(ch[0]["outcome"], "ok");
    let sessions: Vec<(&Value, &Value)> = of_kind(events, "session")
        .iter()
        .map(|s| (&s["action"], &s["outcome"]))
        .collect();
    assert_eq!(
        sessions,
        [
            (&"create".into(), &"ok".into()),
            (&"activate".into(), &"ok".into()),
            (&"close".into(), &"ok".into())
        ],
        "session events"
    );
    let subs: Vec<&Value> = of_kind(events, "subscription")
        .iter()
        .map(|s| &s["action"])
        .collect();
    assert_eq!(subs, [&Value::from("create"), &Value::from("delete")]);
    let seqs = publish_seqs(events);
    assert!(seqs.len() >= 20, "3 s at 100 ms: {seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(of_kind(events, "sequence_gap").is_empty());
    assert!(of_kind(events, "decode_error").is_empty(), "decode errors");
    let close = of_kind(events, "conn_close");
    assert_eq!(close.len(), 1);
    assert_eq!(close[0]["reason"], "fin");
    assert!(of_kind(events, "message").len() > 60, "--messages");
}

/// Format and link type of a capture (of its first packet).
fn shape_of(file: &Path) -> (CaptureFormat, LinkType) {
    let mut r = CaptureReader::open(file).expect("capture opens");
    let format = r.format();
    let link = r
        .next_packet()
        .expect("capture reads")
        .expect("a packet")
        .link_type;
    (format, link)
}

/// Runs tests/peers/capture.py (node-opcua server, asyncua client, basic mode); returns the
/// summary line's words.
fn capture(args: &[&str], out: &Path) -> Vec<String> {
    let summary = run(Command::new(python())
        .arg(peers_dir().join("capture.py"))
        .args([
            "--server", "node", "--client", "asyncua", "--mode", "basic", "--port", "0",
        ])
        .args(args)
        .arg("--out")
        .arg(out));
    eprintln!("{}", summary.trim());
    summary.split_whitespace().map(str::to_string).collect()
}

fn summary_field<'a>(words: &'a [String], key: &str) -> &'a str {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {words:?}"))
}

/// (a)..(d) of the issue: one session recorded at once in five shapes (the baseline plus four);
/// every shape gives the baseline's events. Each capturer's kernel socket stamps a packet
/// itself, so `ts` differs a little between shapes (1 µs for the lo captures and up to 16 µs
/// for `-i any` when this test was written; [`TS_SLACK_US`] allowed); every other field must
/// be identical.
#[test]
fn one_session_in_five_capture_shapes() {
    let dir = temp_dir("shapes-live");
    let baseline = dir.join("lo.pcapng");
    let pcap_us = CaptureFormat::Pcap {
        nanosecond: false,
        big_endian: false,
    };
    let shapes = [
        ("pcap", "lo.pcap", pcap_us, LinkType::ETHERNET),
        (
            "any",
            "any-sll.pcapng",
            CaptureFormat::PcapNg,
            LinkType::LINUX_SLL,
        ),
        (
            "any2",
            "any-sll2.pcapng",
            CaptureFormat::PcapNg,
            LinkType::LINUX_SLL2,
        ),
        ("tcpdump", "tcpdump.pcap", pcap_us, LinkType::ETHERNET),
    ];
    let also: Vec<String> = shapes
        .iter()
        .flat_map(|(kind, name, ..)| {
            [
                "--also".to_string(),
                format!("{kind}:{}", dir.join(name).display()),
            ]
        })
        .collect();
    let also: Vec<&str> = also.iter().map(String::as_str).collect();
    let words = capture(&also, &baseline);
    let port = summary_field(&words, "port=");
    let packets = summary_field(&words, "packets=");
    for (kind, name, ..) in &shapes {
        let want = format!("also={kind}:{packets}:{}", dir.join(name).display());
        assert!(
            words.contains(&want),
            "{kind}: same packet count: {words:?}"
        );
    }

    assert_eq!(
        shape_of(&baseline),
        (CaptureFormat::PcapNg, LinkType::ETHERNET)
    );
    let base = events_of(&baseline);
    assert_basic_session(&base, &format!("127.0.0.1:{port}"));
    for (kind, name, format, link) in shapes {
        let file = dir.join(name);
        assert_eq!(shape_of(&file), (format, link), "{kind}");
        assert_same_events(&base, &events_of(&file), name, TS_SLACK_US);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// (e) of the issue: a separate session over IPv6 loopback has the same story, and the same
/// capture rewritten as classic pcap with raw IPv6 packets gives exactly the same events.
#[test]
fn ipv6_loopback_session() {
    let dir = temp_dir("shapes-ipv6");
    let file = dir.join("v6.pcapng");
    let words = capture(&["--host", "::1"], &file);
    let port = summary_field(&words, "port=");
    let events = events_of(&file);
    assert_basic_session(&events, &format!("[::1]:{port}"));

    let raw = dir.join("v6-raw.pcap");
    write_pcap(&raw, &read_segments(&file));
    assert_eq!(
        shape_of(&raw),
        (
            CaptureFormat::Pcap {
                nanosecond: false,
                big_endian: false
            },
            LinkType::RAW
        )
    );
    assert_events_eq(&events_of(&raw), &events, "raw IPv6 pcap");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- edited captures, derived from fixtures/basic-none.pcapng

fn fixture() -> PathBuf {
    root().join("fixtures").join("basic-none.pcapng")
}

/// The fixture's segments and facts about them.
struct Fixture {
    segs: Vec<Segment>,
    server: SocketAddr,
    /// The fixture's own events.
    events: Vec<Value>,
}

fn load_fixture() -> Fixture {
    let segs = read_segments(&fixture());
    let port = fixture_port(&fixture());
    let server = segs
        .iter()
        .find(|s| s.src.port() == port)
        .expect("server segment")
        .src;
    let mut r = CaptureReader::open(fixture()).expect("fixture opens");
    let mut packets = 0;
    while r.next_packet().expect("fixture reads").is_some() {
        packets += 1;
    }
    assert_eq!(segs.len(), packets, "every packet holds a TCP segment");
    let events = events_of(&fixture());
    // Ground truth of fixtures/basic-none.md, on which the edits below rely.
    assert_eq!(publish_seqs(&events), (1..=31).collect::<Vec<u64>>());
    assert!(of_kind(&events, "decode_error").is_empty());
    Fixture {
        segs,
        server,
        events,
    }
}

impl Fixture {
    fn sent_by_server(&self, s: &Segment) -> bool {
        s.src == self.server
    }

    /// Indices of the data segments carrying a MSG chunk whose body starts with the
    /// four-byte-encoded NodeId `i=type_id` (every message of the fixture is one segment).
    fn with_type(&self, type_id: u16) -> Vec<usize> {
        let [lo, hi] = type_id.to_le_bytes();
        (0..self.segs.len())
            .filter(|&i| {
                let p = &self.segs[i].payload;
                p.starts_with(b"MSG") && p.get(24..28) == Some(&[1, 0, lo, hi][..])
            })
            .collect()
    }

    /// Index of the PublishResponse carrying NotificationMessage `seq` (the fixture's
    /// notifications are numbered 1..=31 in order, one per PublishResponse).
    fn publish_response(&self, seq: usize) -> usize {
        let all = self.with_type(829);
        assert_eq!(all.len(), 31, "PublishResponses");
        assert!(self.sent_by_server(&self.segs[all[seq - 1]]));
        all[seq - 1]
    }

    /// Position of segment `i`'s first payload byte in its direction's stream.
    fn stream_offset(&self, i: usize) -> u64 {
        let s = &self.segs[i];
        let syn = self
            .segs
            .iter()
            .find(|x| x.src == s.src && x.flags & 0x02 != 0)
            .expect("SYN of that direction");
        u64::from(s.seq.wrapping_sub(syn.seq).wrapping_sub(1))
    }

    /// Writes edited segments as classic pcap (LINKTYPE_RAW).
    fn write(&self, dir: &Path, name: &str, segs: &[Segment]) -> PathBuf {
        let file = dir.join(name);
        write_pcap(&file, segs);
        file
    }

    /// The fixture's events before time `ts_micros`.
    fn events_before(&self, ts_micros: i64) -> Vec<Value> {
        self.events
            .iter()
            .take_while(|e| micros(e) < ts_micros)
            .cloned()
            .collect()
    }
}

/// The client's messages: (service, sequence number) of every c2s `message` event.
fn c2s_messages(events: &[Value]) -> Vec<(Value, Value)> {
    events
        .iter()
        .filter(|e| e["kind"] == "message" && e["dir"] == "c2s")
        .map(|e| (e["service"].clone(), e["sequence_number"].clone()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn seg_micros(s: &Segment) -> i64 {
    s.ts_nanos.div_euclid(1000)
}

/// The rewriting itself changes nothing: same events, to the microsecond.
#[test]
fn rewritten_fixture_gives_the_same_events() {
    let fx = load_fixture();
    let dir = temp_dir("shapes-rewrite");
    let file = fx.write(&dir, "same.pcap", &fx.segs);
    assert_events_eq(&events_of(&file), &fx.events, "rewritten");
    let _ = std::fs::remove_dir_all(&dir);
}

/// (i) A capture started after HEL/ACK, OPN and CreateSession: the connection is still found
/// with its client and server, and every publish event is reported as in the whole capture.
/// Variant b also starts the client's stream in the middle of a message (resync on the next
/// header): at most one decode_error, for the cut message at the start of that stream.
#[test]
fn capture_started_mid_connection() {
    let fx = load_fixture();
    let dir = temp_dir("shapes-midconn");
    let activate = fx.with_type(467)[0]; // ActivateSessionRequest, right after CreateSession
    let dropped = &fx.segs[..activate];
    for what in [&b"HEL"[..], b"ACK", b"OPN"] {
        assert!(
            dropped.iter().any(|s| s.payload.starts_with(what)),
            "drops {what:?}"
        );
    }
    assert!(fx.with_type(461)[0] < activate && fx.with_type(464)[0] < activate);
    let conn = fx.events[0]["conn"].clone();
    let publishes = of_kind(&fx.events, "publish");

    let mut cut_inside = fx.segs[activate..].to_vec();
    let cut = 40;
    cut_inside[0].payload.drain(..cut);
    cut_inside[0].seq = cut_inside[0].seq.wrapping_add(cut as u32);
    for (name, segs, max_errors) in [
        ("a-at-message.pcap", fx.segs[activate..].to_vec(), 0),
        ("b-inside-message.pcap", cut_inside, 1),
    ] {
        let events = events_of(&fx.write(&dir, name, &segs));
        let opens = of_kind(&events, "conn_open");
        assert_eq!(opens.len(), 1, "{name}: {events:?}");
        assert_eq!(opens[0]["conn"], conn, "{name}: client and server");
        let got = of_kind(&events, "publish");
        assert_eq!(got, publishes, "{name}: publish events");
        let errors = of_kind(&events, "decode_error");
        eprintln!("{name}: {} events, decode errors {errors:?}", events.len());
        assert!(errors.len() <= max_errors, "{name}: {errors:?}");
        for e in errors {
            assert_eq!(
                (&e["dir"], &e["offset"]),
                (&"c2s".into(), &0.into()),
                "{name}: {e}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// (ii) Retransmitted segments (PublishResponse 10 and the PublishRequest after it, each sent
/// again a little later): the same events as the original, to the µs.
#[test]
fn retransmitted_segments_change_nothing() {
    let fx = load_fixture();
    let dir = temp_dir("shapes-retrans");
    let mut segs = fx.segs.clone();
    let response = fx.publish_response(10);
    let request = response + 1;
    assert!(!fx.sent_by_server(&segs[request]) && segs[request].payload.starts_with(b"MSG"));
    // Each copy goes in 3 segments after its original, 1 µs after the segment it follows.
    for at in [request, response] {
        let mut dup = fx.segs[at].clone();
        dup.ts_nanos = fx.segs[at + 3].ts_nanos + 1000;
        assert!(dup.ts_nanos < fx.segs[at + 4].ts_nanos);
        segs.insert(at + 4, dup);
    }
    assert_eq!(segs.len(), fx.segs.len() + 2);
    let file = fx.write(&dir, "retransmitted.pcap", &segs);
    assert_events_eq(&events_of(&file), &fx.events, "retransmitted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// (ii) Two consecutive data segments of the server (ServiceFault, then
/// DeleteSubscriptionsResponse) captured in swapped order, each with its own timestamp: the
/// same events as the original. Checked in two steps so that a failure says whether the
/// reassembly or only the timestamps are wrong.
#[test]
fn reordered_segments_change_nothing() {
    let fx = load_fixture();
    let dir = temp_dir("shapes-reorder");
    let mut segs = fx.segs.clone();
    let i = (0..segs.len() - 1)
        .find(|&i| {
            let (a, b) = (&segs[i], &segs[i + 1]);
            fx.sent_by_server(a)
                && fx.sent_by_server(b)
                && !a.payload.is_empty()
                && !b.payload.is_empty()
        })
        .expect("two server data segments in a row");
    assert_eq!(
        (fx.with_type(397), fx.with_type(850)),
        (vec![i], vec![i + 1])
    );
    segs.swap(i, i + 1);
    let events = events_of(&fx.write(&dir, "reordered.pcap", &segs));
    // Everything but the time: the bytes were put back in order.
    assert_same_events(&fx.events, &events, "reordered (times aside)", i64::MAX / 4);
    // The time: each message's bytes were seen at the time of their own packet.
    assert_events_eq(&events, &fx.events, "reordered");
    let _ = std::fs::remove_dir_all(&dir);
}

/// (iii) A file cut in the middle of a packet: exit 0, the events up to the cut exactly as in
/// the whole file, then only the end of the connection; stderr names the byte where the file
/// stops being readable. Both as the fixture's pcapng and as classic pcap.
#[test]
fn truncated_file() {
    let fx = load_fixture();
    let dir = temp_dir("shapes-truncated");
    let seq16 = fx.publish_response(16);
    let pcap = fx.write(&dir, "whole.pcap", &fx.segs);
    for (name, source) in [("cut.pcapng", fixture()), ("cut.pcap", pcap)] {
        // File offset of the packet that carries PublishResponse 16 (same index in both files:
        // every packet of the fixture holds a TCP segment).
        let mut r = CaptureReader::open(&source).expect("opens");
        let mut offset = None;
        for _ in 0..=seq16 {
            offset = Some(r.next_packet().expect("reads").expect("packet").file_offset);
        }
        let offset = offset.expect("offset");
        let bytes = std::fs::read(&source).expect("read");
        let file = dir.join(name);
        std::fs::write(&file, &bytes[..offset as usize + 40]).expect("write");

        let a = analyze(&file);
        assert_eq!(a.code, Some(0), "{name}: {}", a.stderr);
        assert!(
            a.stderr.contains(&format!("truncated at byte {offset}")),
            "{name}: stderr says where the file ends: {}",
            a.stderr
        );
        assert_eq!(
            publish_seqs(&a.events),
            (1..=15).collect::<Vec<u64>>(),
            "{name}"
        );
        let before = fx.events_before(seg_micros(&fx.segs[seq16]));
        assert!(
            a.events.len() >= before.len(),
            "{name}: {} events",
            a.events.len()
        );
        assert_events_eq(&a.events[..before.len()], &before, name);
        let rest: Vec<&Value> = a.events[before.len()..]
            .iter()
            .map(|e| &e["kind"])
            .collect();
        assert_eq!(rest, ["summary", "conn_close"], "{name}: after the cut");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// (iv) A MessageSize of 0xFFFFFFF0 in the middle of the server's stream: a decode_error at
/// that message's offset, no panic, exit 0, everything before it as in the original.
#[test]
fn absurd_message_size() {
    let fx = load_fixture();
    let dir = temp_dir("shapes-absurd");
    let at = fx.publish_response(14);
    let mut segs = fx.segs.clone();
    segs[at].payload[4..8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let a = analyze(&fx.write(&dir, "absurd.pcap", &segs));
    assert_eq!(a.code, Some(0), "{}", a.stderr);
    let errors = of_kind(&a.events, "decode_error");
    assert!(!errors.is_empty(), "no decode_error:\n{}", a.stdout);
    // `offset` points at the MessageSize field, `hex_prefix` shows the message header (the
    // bytes the decision was made on, the same however the stream was split).
    assert_eq!(errors[0]["dir"], "s2c", "{}", errors[0]);
    assert_eq!(
        errors[0]["offset"],
        fx.stream_offset(at) + 4,
        "{}",
        errors[0]
    );
    assert_eq!(errors[0]["hex_prefix"], hex(&segs[at].payload[..8]));
    let before = fx.events_before(seg_micros(&fx.segs[at]));
    assert!(a.events.len() >= before.len(), "{} events", a.events.len());
    assert_events_eq(&a.events[..before.len()], &before, "before the damage");
    assert_eq!(
        publish_seqs(&a.events)[..13],
        (1..=13).collect::<Vec<u64>>()
    );
    // The client's direction goes on (the server's cannot resync inside a 4 GiB message).
    assert_eq!(c2s_messages(&a.events), c2s_messages(&fx.events));
    let _ = std::fs::remove_dir_all(&dir);
}

/// (v) One server segment in the middle replaced by random bytes of the same length: a
/// decode_error where they start, then the analysis goes on: every later publish is reported,
/// and the lost notification shows as a sequence gap.
#[test]
fn random_bytes_mid_stream() {
    let fx = load_fixture();
    let dir = temp_dir("shapes-random");
    let at = fx.publish_response(14);
    let mut segs = fx.segs.clone();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    for b in segs[at].payload.iter_mut() {
        *b = rng.below(256) as u8;
    }
    let head = &segs[at].payload[..3];
    assert!(
        ![&b"HEL"[..], b"ACK", b"ERR", b"RHE", b"OPN", b"MSG", b"CLO"].contains(&head),
        "random enough"
    );
    let a = analyze(&fx.write(&dir, "random.pcap", &segs));
    assert_eq!(a.code, Some(0), "{}", a.stderr);
    let errors = of_kind(&a.events, "decode_error");
    assert!(!errors.is_empty(), "no decode_error:\n{}", a.stdout);
    assert_eq!(errors[0]["dir"], "s2c");
    assert_eq!(errors[0]["offset"], fx.stream_offset(at));
    assert_eq!(errors[0]["hex_prefix"], hex(&segs[at].payload[..32]));
    // At most one more: the next message's chunk SequenceNumber skips the lost one's.
    assert!(errors.len() <= 2, "{errors:?}");
    if let Some(e) = errors.get(1) {
        let next = (at + 1..segs.len())
            .find(|&j| fx.sent_by_server(&segs[j]) && !segs[j].payload.is_empty())
            .expect("next server data");
        assert_eq!(
            (&e["dir"], &e["offset"]),
            (&"s2c".into(), &fx.stream_offset(next).into())
        );
        assert!(
            e["what"]
                .as_str()
                .is_some_and(|w| w.contains("SequenceNumber")),
            "{e}"
        );
    }
    let want: Vec<u64> = (1..=31).filter(|&n| n != 14).collect();
    assert_eq!(publish_seqs(&a.events), want, "publishes around the damage");
    let gaps = of_kind(&a.events, "sequence_gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(
        (&gaps[0]["expected"], &gaps[0]["got"], &gaps[0]["missing"]),
        (&14.into(), &15.into(), &serde_json::json!([14])),
        "{}",
        gaps[0]
    );
    // The client's direction is untouched.
    assert_eq!(c2s_messages(&a.events), c2s_messages(&fx.events));
    let _ = std::fs::remove_dir_all(&dir);
}

/// (vi) Files that are no capture: exit 2, nothing on stdout, one line on stderr that names
/// the file and says why.
#[test]
fn not_a_capture() {
    let dir = temp_dir("shapes-notcap");
    let mut rng = Rng(0x0dd_ba11);
    let random: Vec<u8> = (0..4096).map(|_| rng.below(256) as u8).collect();
    let cases = [
        ("random.bin", random, "not a pcap or pcapng"),
        ("empty.pcap", Vec::new(), "truncated at byte 0"),
        (
            "text.pcap",
            b"# not a capture\nhello world\n".to_vec(),
            "not a pcap or pcapng",
        ),
    ];
    assert_unreadable(&dir, &cases);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each file gives exit 2, nothing on stdout, and one line on stderr that names the file and
/// contains the reason.
fn assert_unreadable(dir: &Path, cases: &[(&str, Vec<u8>, &str)]) {
    for (name, bytes, reason) in cases {
        let file = dir.join(name);
        std::fs::write(&file, bytes).expect("write");
        let a = analyze(&file);
        assert_eq!(a.code, Some(2), "{name}: {}", a.stderr);
        assert_eq!(a.stdout, "", "{name}");
        let lines: Vec<&str> = a.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: one line: {:?}", a.stderr);
        assert!(
            lines[0].starts_with("uatap: ") && lines[0].contains(&*file.to_string_lossy()),
            "{name}: {}",
            lines[0]
        );
        assert!(
            lines[0].contains(reason),
            "{name}: says {reason:?}: {}",
            lines[0]
        );
    }
}

/// A capture cut inside its file header (classic pcap: the 24-byte header; pcapng: the
/// Section Header Block) holds no packet at all: unreadable input, exit 2 with one line.
#[test]
fn file_cut_inside_its_header() {
    let dir = temp_dir("shapes-headercut");
    let pcapng = std::fs::read(fixture()).expect("fixture");
    let fx = load_fixture();
    let pcap = fx.write(&dir, "whole.pcap", &fx.segs);
    let pcap = std::fs::read(pcap).expect("pcap");
    let cases = [
        ("cut20.pcap", pcap[..20].to_vec(), "truncated at byte 0"),
        ("cut10.pcapng", pcapng[..10].to_vec(), "truncated at byte 0"),
        ("cut20.pcapng", pcapng[..20].to_vec(), "truncated at byte 0"),
    ];
    assert_unreadable(&dir, &cases);
    let _ = std::fs::remove_dir_all(&dir);
}
