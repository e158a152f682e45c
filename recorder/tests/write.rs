//! The writing side against this crate's reader and against TShark: synthesized flows come
//! back byte for byte, TShark finds nothing malformed, checksums verify, OPC UA is dissected,
//! comments show, a killed writer leaves a readable file, and ring buffers rotate.
//!
//! TShark is required: a missing `tshark` fails these tests.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use uatap_recorder::{
    decode_tcp, CloseReason, Direction, InterfaceDescription, InterfaceId, LinkType, PacketSink,
    PcapngWriter, RecorderError, RotatingWriter, RotationConfig, StreamEvent, StreamReader,
    TcpFlowWriter, Timestamp, SECRETS_TYPE_OPCUA_KEY_LOG,
};

const T0: i64 = 1_700_000_000_000_000_000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_nanos(T0 + ms * 1_000_000)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A fresh directory for one test under Cargo's per-target temporary directory, unique per
/// process (another `cargo test` may run the same tests at once); removed when dropped after
/// the test passed, kept for inspection when it failed.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("uatap-recorder-write-{}", std::process::id()))
            .join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
            if let Some(parent) = self.0.parent() {
                // Succeeds only once the last test of this process is done.
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

/// OPC UA Hello (Part 6, 7.1.2.3): header "HELF" + size, five UInt32 fields, EndpointUrl.
fn hello(url: &str) -> Vec<u8> {
    let size = 8 + 20 + 4 + url.len();
    let mut m = b"HELF".to_vec();
    m.extend_from_slice(&(size as u32).to_le_bytes());
    for field in [0u32, 65_536, 65_536, 0, 0] {
        m.extend_from_slice(&field.to_le_bytes());
    }
    m.extend_from_slice(&(url.len() as i32).to_le_bytes());
    m.extend_from_slice(url.as_bytes());
    m
}

/// OPC UA Acknowledge (Part 6, 7.1.2.4).
fn acknowledge() -> Vec<u8> {
    let mut m = b"ACKF".to_vec();
    m.extend_from_slice(&28u32.to_le_bytes());
    for field in [0u32, 65_536, 65_536, 16_777_216, 5_000] {
        m.extend_from_slice(&field.to_le_bytes());
    }
    m
}

/// OPC UA Error (Part 6, 7.1.2.5) with a reason of `reason_len` bytes: a valid message of any
/// size, to cross the segment limit without upsetting the dissector.
fn error_message(reason_len: usize) -> Vec<u8> {
    let size = 8 + 4 + 4 + reason_len;
    let mut m = b"ERRF".to_vec();
    m.extend_from_slice(&(size as u32).to_le_bytes());
    m.extend_from_slice(&0x807F_0000u32.to_le_bytes());
    m.extend_from_slice(&(reason_len as i32).to_le_bytes());
    m.extend((0..reason_len).map(|i| b'a' + (i % 26) as u8));
    m
}

/// What one flow sent each way, as the test expects to read it back.
#[derive(Default)]
struct Sent {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

impl Sent {
    fn data(
        &mut self,
        flow: &mut TcpFlowWriter,
        sink: &mut impl PacketSink,
        dir: Direction,
        at: Timestamp,
        bytes: &[u8],
        comment: Option<&str>,
    ) {
        flow.data(sink, dir, at, bytes, comment).unwrap();
        match dir {
            Direction::AToB => self.to_server.extend_from_slice(bytes),
            Direction::BToA => self.to_client.extend_from_slice(bytes),
        }
    }
}

const V4_CLIENT: &str = "192.168.1.10:50123";
const V4_SERVER: &str = "192.168.1.1:4840";
const V6_CLIENT: &str = "[2001:db8::10]:40000";
const V6_SERVER: &str = "[2001:db8::1]:4840";
const V4_URL: &str = "opc.tcp://192.168.1.1:4840/uatap";

/// Two proxied legs on two interfaces, interleaved: an IPv4 one closed with FIN both ways
/// and an IPv6 one reset by the server; chunks split across calls, big messages over the
/// segment limit, comments. Returns what each flow sent.
fn write_scenario(w: &mut impl PacketSink, ifaces: [InterfaceId; 2]) -> [Sent; 2] {
    let mut a = TcpFlowWriter::new(ifaces[0], addr(V4_CLIENT), addr(V4_SERVER)).unwrap();
    let mut b = TcpFlowWriter::new(ifaces[1], addr(V6_CLIENT), addr(V6_SERVER)).unwrap();
    let (mut sa, mut sb) = (Sent::default(), Sent::default());

    a.open(w, ts(0), Some("uatap: connection from 192.168.1.10"))
        .unwrap();
    b.open(w, ts(1), None).unwrap();
    let hel = hello(V4_URL);
    // One Hello split over two calls; the dissector reassembles it.
    sa.data(&mut a, w, Direction::AToB, ts(2), &hel[..10], None);
    sa.data(
        &mut a,
        w,
        Direction::AToB,
        ts(3),
        &hel[10..],
        Some("uatap: HEL received"),
    );
    // A Hello bigger than one segment.
    let big_hel = big_hello();
    sb.data(
        &mut b,
        w,
        Direction::AToB,
        ts(4),
        &big_hel,
        Some("big hello"),
    );
    sa.data(&mut a, w, Direction::BToA, ts(5), &acknowledge(), None);
    sb.data(&mut b, w, Direction::BToA, ts(6), &acknowledge(), None);
    // An earlier time than the last packet: clamped, not written backwards.
    sa.data(
        &mut a,
        w,
        Direction::BToA,
        ts(2),
        &error_message(150_000),
        Some("uatap: ERR Bad_TcpMessageTooLarge (ünïcödé)"),
    );
    a.fin(w, Direction::BToA, ts(7), Some("uatap: server closed"))
        .unwrap();
    a.fin(w, Direction::AToB, ts(8), None).unwrap();
    b.rst(w, Direction::BToA, ts(9), Some("uatap: upstream reset"))
        .unwrap();
    assert!(a.is_closed() && b.is_closed());
    [sa, sb]
}

fn big_hello() -> Vec<u8> {
    hello(&format!(
        "opc.tcp://[2001:db8::1]:4840/{}",
        "x".repeat(70_000)
    ))
}

const SCENARIO_COMMENTS: [&str; 6] = [
    "uatap: connection from 192.168.1.10",
    "uatap: HEL received",
    "big hello",
    "uatap: ERR Bad_TcpMessageTooLarge (ünïcödé)",
    "uatap: server closed",
    "uatap: upstream reset",
];

fn new_writer<W: Write>(out: W) -> (PcapngWriter<W>, [InterfaceId; 2]) {
    let mut w = PcapngWriter::new(out).unwrap();
    let i0 = w
        .add_interface(&InterfaceDescription::ethernet(
            "listener 0.0.0.0:4840",
            "uatap client leg",
        ))
        .unwrap();
    let i1 = w
        .add_interface(&InterfaceDescription::ethernet(
            "upstream",
            "uatap server leg",
        ))
        .unwrap();
    (w, [i0, i1])
}

/// Reads a capture with this crate's reader; events plus the error that ended it.
fn read_events(bytes: &[u8]) -> (Vec<StreamEvent<'static>>, Result<(), RecorderError>) {
    let mut reader = StreamReader::new(bytes).unwrap();
    let mut events = Vec::new();
    let result = reader.for_each_event(|e| events.push(e.into_owned()));
    assert_eq!(reader.decode_stats().malformed, 0);
    (events, result)
}

/// Data per (client, server, direction); fails on gaps.
fn streams_by_addr(events: &[StreamEvent<'_>]) -> HashMap<(String, Direction), Vec<u8>> {
    let mut conns = HashMap::new();
    let mut out: HashMap<(String, Direction), Vec<u8>> = HashMap::new();
    for e in events {
        match e {
            StreamEvent::Open {
                conn,
                client,
                server,
                ..
            } => {
                conns.insert(*conn, format!("{client} {server}"));
            }
            StreamEvent::Data {
                conn, dir, bytes, ..
            } => out
                .entry((conns[conn].clone(), *dir))
                .or_default()
                .extend_from_slice(bytes),
            StreamEvent::Gap { .. } => panic!("gap: {e:?}"),
            _ => {}
        }
    }
    out
}

/// Every `opt_comment` of every EPB, in file order, parsed with pcap-parser (an independent
/// reader).
fn epb_comments(bytes: &[u8]) -> Vec<Vec<String>> {
    use pcap_parser::pcapng::Block;
    use pcap_parser::OptionCode;
    let (rest, capture) = pcap_parser::parse_pcapng(bytes).unwrap();
    assert!(rest.is_empty());
    capture
        .sections
        .iter()
        .flat_map(|s| &s.blocks)
        .filter_map(|b| match b {
            Block::EnhancedPacket(epb) => Some(
                epb.options
                    .iter()
                    .filter(|o| o.code == OptionCode::Comment)
                    .map(|o| o.as_str().unwrap().to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Every EPB's frame and comments.
fn epb_frames(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<String>)> {
    use pcap_parser::pcapng::Block;
    let (_, capture) = pcap_parser::parse_pcapng(bytes).unwrap();
    let frames = capture
        .sections
        .iter()
        .flat_map(|s| &s.blocks)
        .filter_map(|b| match b {
            Block::EnhancedPacket(epb) => Some(epb.data[..epb.caplen as usize].to_vec()),
            _ => None,
        });
    frames.zip(epb_comments(bytes)).collect()
}

/// Block types in file order, read straight from the bytes.
fn block_types(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 12 {
        out.push(u32::from_le_bytes(rest[0..4].try_into().unwrap()));
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        rest = &rest[len..];
    }
    assert!(rest.is_empty(), "file does not end on a block boundary");
    out
}

/// Runs TShark and returns its standard output; fails if TShark is missing or fails.
fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark is required for these tests (apt-get install tshark)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("appears to be damaged") && !stderr.contains("cut short"),
        "{stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

/// TShark's expert summary has no errors (malformed packets are errors too).
fn assert_tshark_clean(file: &Path) {
    let expert = tshark(file, &["-q", "-z", "expert"]);
    assert!(!expert.contains("Errors ("), "{expert}");
    assert!(!expert.contains("Malformed"), "{expert}");
}

#[test]
fn round_trip_through_own_reader() {
    let (mut w, ifaces) = new_writer(Vec::new());
    let [sa, sb] = write_scenario(&mut w, ifaces);
    let bytes = w.finish().unwrap();

    let (events, result) = read_events(&bytes);
    result.unwrap();
    let s = streams_by_addr(&events);
    let a = format!("{V4_CLIENT} {V4_SERVER}");
    let b = format!("{V6_CLIENT} {V6_SERVER}");
    assert_eq!(s.len(), 4);
    assert_eq!(s[&(a.clone(), Direction::AToB)], sa.to_server);
    assert_eq!(s[&(a.clone(), Direction::BToA)], sa.to_client);
    assert_eq!(s[&(b.clone(), Direction::AToB)], sb.to_server);
    assert_eq!(s[&(b.clone(), Direction::BToA)], sb.to_client);
    assert!(sa.to_client.len() > 150_000 && sb.to_server.len() > 70_000);

    // Opens (with handshake), FINs and closes, per connection.
    let summary: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Open {
                conn,
                client,
                server,
                syn_seen,
                ..
            } => Some(format!("{conn} open {client} {server} syn={syn_seen}")),
            StreamEvent::Fin { conn, dir, .. } => Some(format!("{conn} fin {dir:?}")),
            StreamEvent::Close {
                conn, by, reason, ..
            } => Some(format!("{conn} close {reason:?} {by:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        summary,
        [
            format!("tcp#0 open {V4_CLIENT} {V4_SERVER} syn=true"),
            format!("tcp#1 open {V6_CLIENT} {V6_SERVER} syn=true"),
            "tcp#0 fin BToA".into(),
            "tcp#0 fin AToB".into(),
            "tcp#0 close Fin Some(BToA)".into(),
            "tcp#1 close Rst Some(BToA)".into(),
        ]
    );
    assert!(matches!(
        events.last(),
        Some(StreamEvent::Close {
            reason: CloseReason::Rst,
            ..
        })
    ));
    // Times never go backwards, though the scenario gave one earlier time.
    assert!(events.windows(2).all(|p| p[0].ts() <= p[1].ts()));

    let comments: Vec<String> = epb_comments(&bytes).into_iter().flatten().collect();
    assert_eq!(comments, SCENARIO_COMMENTS);
    // The raw bytes carry the text too (UTF-8, no escaping).
    let needle = "ünïcödé".as_bytes();
    assert!(bytes.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn tshark_accepts_synthesized_flows() {
    let dir = TestDir::new("tshark");
    let path = dir.join("flows.pcapng");
    let (mut w, ifaces) = new_writer(fs::File::create(&path).unwrap());
    w.write_decryption_secrets(
        SECRETS_TYPE_OPCUA_KEY_LOG,
        b"client_iv_1_1: 00112233445566778899AABBCCDDEEFF\n",
    )
    .unwrap();
    write_scenario(&mut w, ifaces);
    let packets = w.packets_written();
    drop(w);

    assert_tshark_clean(&path);

    let all = lines(&tshark(&path, &["-T", "fields", "-e", "frame.number"])).len();
    assert_eq!(all as u64, packets);
    let v4 = lines(&tshark(
        &path,
        &["-Y", "ip", "-T", "fields", "-e", "frame.number"],
    ))
    .len();
    assert!(v4 > 0 && v4 < all);

    // Checksums: none bad, and all really verified ("Good", not "Unverified").
    let tcp_check = ["-o", "tcp.check_checksum:TRUE"];
    let bad = tshark(
        &path,
        &[&tcp_check[..], &["-Y", "tcp.checksum.status == \"Bad\""]].concat(),
    );
    assert_eq!(bad, "");
    let good = tshark(
        &path,
        &[
            &tcp_check[..],
            &[
                "-Y",
                "tcp.checksum.status == \"Good\"",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ],
        ]
        .concat(),
    );
    assert_eq!(lines(&good).len(), all);
    let ip_check = ["-o", "ip.check_checksum:TRUE"];
    let bad = tshark(
        &path,
        &[&ip_check[..], &["-Y", "ip.checksum.status == \"Bad\""]].concat(),
    );
    assert_eq!(bad, "");
    let good = tshark(
        &path,
        &[
            &ip_check[..],
            &[
                "-Y",
                "ip.checksum.status == \"Good\"",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ],
        ]
        .concat(),
    );
    assert_eq!(lines(&good).len(), v4);

    // OPC UA on port 4840 without any Decode As, IPv4 and IPv6, including the big ones.
    let ua = tshark(
        &path,
        &[
            "-Y",
            "opcua",
            "-T",
            "fields",
            "-e",
            "ipv6.src",
            "-e",
            "opcua.transport.type",
            "-e",
            "opcua.transport.size",
        ],
    );
    let ua = lines(&ua);
    assert_eq!(
        ua,
        [
            format!("\tHEL\t{}", hello(V4_URL).len()),
            format!("2001:db8::10\tHEL\t{}", big_hello().len()),
            "\tACK\t28".to_string(),
            "2001:db8::1\tACK\t28".to_string(),
            "\tERR\t150016".to_string(),
        ],
        "{ua:?}"
    );
    let url = tshark(
        &path,
        &[
            "-Y",
            "opcua.transport.type == \"HEL\" && ip",
            "-T",
            "fields",
            "-e",
            "opcua.transport.endpoint",
        ],
    );
    assert_eq!(url.trim(), V4_URL);

    // Comments, in packet order.
    let comments = tshark(
        &path,
        &["-Y", "frame.comment", "-T", "fields", "-e", "frame.comment"],
    );
    assert_eq!(lines(&comments), SCENARIO_COMMENTS);

    // Interfaces and the decryption secrets block.
    let out = Command::new("capinfos")
        .arg(&path)
        .output()
        .expect("capinfos (comes with tshark) is required");
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{info}");
    assert!(info.contains("Number of interfaces in file: 2"), "{info}");
    assert!(
        info.contains("Number of decryption secrets in file: 1"),
        "{info}"
    );
    assert!(info.contains("uatap "), "shb_userappl missing: {info}");
    assert!(info.contains("listener 0.0.0.0:4840"), "{info}");
    assert!(info.contains("nanoseconds (9)"), "{info}");
}

#[test]
fn other_port_needs_decode_as() {
    let dir = TestDir::new("port");
    let path = dir.join("port49320.pcapng");
    let (mut w, ifaces) = new_writer(fs::File::create(&path).unwrap());
    let mut f =
        TcpFlowWriter::new(ifaces[0], addr("10.1.2.3:51000"), addr("10.1.2.4:49320")).unwrap();
    f.open(&mut w, ts(0), None).unwrap();
    f.data(
        &mut w,
        Direction::AToB,
        ts(1),
        &hello("opc.tcp://10.1.2.4:49320"),
        None,
    )
    .unwrap();
    f.data(&mut w, Direction::BToA, ts(2), &acknowledge(), None)
        .unwrap();
    f.fin(&mut w, Direction::AToB, ts(3), None).unwrap();
    drop(w);

    assert_tshark_clean(&path);
    assert_eq!(tshark(&path, &["-Y", "opcua"]), "");
    let ua = tshark(
        &path,
        &[
            "-d",
            "tcp.port==49320,opcua",
            "-Y",
            "opcua",
            "-T",
            "fields",
            "-e",
            "opcua.transport.type",
            "-e",
            "opcua.transport.endpoint",
        ],
    );
    assert_eq!(
        lines(&ua),
        ["HEL\topc.tcp://10.1.2.4:49320", "ACK\t"],
        "{ua}"
    );
}

#[test]
fn dropped_writer_leaves_a_readable_file() {
    let dir = TestDir::new("drop");
    for forget in [false, true] {
        let path = dir.join(format!("crash-{forget}.pcapng"));
        let (mut w, ifaces) = new_writer(fs::File::create(&path).unwrap());
        let mut f = TcpFlowWriter::new(ifaces[0], addr(V4_CLIENT), addr(V4_SERVER)).unwrap();
        f.open(&mut w, ts(0), Some("open")).unwrap();
        f.data(&mut w, Direction::AToB, ts(1), &hello(V4_URL), None)
            .unwrap();
        f.data(&mut w, Direction::BToA, ts(2), &acknowledge(), Some("ack"))
            .unwrap();
        // No finish, no FIN: the process "dies" here. `forget` skips even the destructor.
        if forget {
            std::mem::forget(w);
        } else {
            drop(w);
        }

        let bytes = fs::read(&path).unwrap();
        let (events, result) = read_events(&bytes);
        result.unwrap();
        let s = streams_by_addr(&events);
        let key = format!("{V4_CLIENT} {V4_SERVER}");
        assert_eq!(s[&(key.clone(), Direction::AToB)], hello(V4_URL));
        assert_eq!(s[&(key, Direction::BToA)], acknowledge());
        assert!(matches!(
            events.last(),
            Some(StreamEvent::Close {
                reason: CloseReason::EndOfCapture,
                ..
            })
        ));
        assert_tshark_clean(&path);
        let ua = tshark(
            &path,
            &["-Y", "opcua", "-T", "fields", "-e", "opcua.transport.type"],
        );
        assert_eq!(lines(&ua), ["HEL", "ACK"]);
    }
}

const CHILD_ENV: &str = "UATAP_WRITE_TEST_CHILD_OUT";

/// Not a test of its own: the body of the process [`killed_writer_leaves_a_readable_file`]
/// starts and kills. Without the environment variable it returns at once.
#[test]
fn child_writes_until_killed() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut w = RotatingWriter::create(PathBuf::from(path), RotationConfig::default()).unwrap();
    let iface = w
        .add_interface(InterfaceDescription::ethernet("lo", "kill test"))
        .unwrap();
    let mut f = TcpFlowWriter::new(iface, addr(V4_CLIENT), addr(V4_SERVER)).unwrap();
    f.open(&mut w, ts(0), None).unwrap();
    let hel = hello(V4_URL);
    for i in 0.. {
        f.data(&mut w, Direction::AToB, ts(i), &hel, Some("hello again"))
            .unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn killed_writer_leaves_a_readable_file() {
    let dir = TestDir::new("kill");
    let path = dir.join("killed.pcapng");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writes_until_killed", "--exact", "--nocapture"])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::metadata(&path).map_or(0, |m| m.len()) < 100_000 {
        assert!(Instant::now() < deadline, "child wrote too little");
        assert!(child.try_wait().unwrap().is_none(), "child exited");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush.
    child.wait().unwrap();

    let bytes = fs::read(&path).unwrap();
    let (events, result) = read_events(&bytes);
    let hel = hello(V4_URL);
    let s = streams_by_addr(&events);
    let sent = &s[&(format!("{V4_CLIENT} {V4_SERVER}"), Direction::AToB)];
    assert!(sent.len() >= 100 * hel.len(), "{}", sent.len());
    match result {
        Ok(()) => {
            // The usual case: the file ends on a block boundary.
            assert_eq!(sent.len() % hel.len(), 0);
            assert!(sent.chunks(hel.len()).all(|c| c == hel));
            block_types(&bytes);
            assert_tshark_clean(&path);
        }
        // The kernel may stop a write crossing a page boundary when SIGKILL arrives; then only
        // the last block is cut, and everything before it is read.
        Err(RecorderError::Truncated { .. }) => {
            assert!(sent.chunks(hel.len()).all(|c| c == hel));
        }
        Err(e) => panic!("{e}"),
    }
}

/// Writes `rounds` exchanges on two long-lived flows through a rotating writer; returns what
/// each flow sent.
fn write_rotating(w: &mut RotatingWriter, rounds: usize) -> [Sent; 2] {
    let i0 = w
        .add_interface(InterfaceDescription::ethernet("listener", "client leg"))
        .unwrap();
    let i1 = w
        .add_interface(InterfaceDescription::ethernet("upstream", "server leg"))
        .unwrap();
    w.write_decryption_secrets(SECRETS_TYPE_OPCUA_KEY_LOG, b"client_siglen_1_1: 32\n")
        .unwrap();
    let mut a = TcpFlowWriter::new(i0, addr(V4_CLIENT), addr(V4_SERVER)).unwrap();
    let mut b = TcpFlowWriter::new(i1, addr(V6_CLIENT), addr(V6_SERVER)).unwrap();
    let (mut sa, mut sb) = (Sent::default(), Sent::default());
    a.open(w, ts(0), None).unwrap();
    b.open(w, ts(0), None).unwrap();
    for i in 0..rounds {
        let t = ts(i as i64 + 1);
        // Messages split at odd places, so files cut through them.
        let msg = error_message(100 + i * 7);
        let (head, tail) = msg.split_at(msg.len() / 3);
        sa.data(&mut a, w, Direction::AToB, t, head, None);
        sa.data(&mut a, w, Direction::AToB, t, tail, None);
        sb.data(&mut b, w, Direction::AToB, t, &msg, None);
        sa.data(&mut a, w, Direction::BToA, t, &acknowledge(), None);
        sb.data(&mut b, w, Direction::BToA, t, &acknowledge(), None);
    }
    a.fin(w, Direction::AToB, ts(10_000), None).unwrap();
    a.fin(w, Direction::BToA, ts(10_000), None).unwrap();
    b.rst(w, Direction::BToA, ts(10_000), None).unwrap();
    [sa, sb]
}

/// Checks one ring-buffer file stands on its own; returns its events.
fn check_ring_file(path: &Path, first: bool) -> Vec<StreamEvent<'static>> {
    let bytes = fs::read(path).unwrap();
    let types = block_types(&bytes);
    assert_eq!(types[..4], [0x0A0D_0D0A, 1, 1, 0x0A], "{}", path.display());
    assert!(types[4..].iter().all(|&t| t == 6), "{types:?}");
    let (events, result) = read_events(&bytes);
    result.unwrap();
    // The first packet of each flow in a later file says the flow started earlier; no other
    // packet has a comment.
    let mut seen = Vec::new();
    for (frame, comments) in epb_frames(&bytes) {
        let seg = decode_tcp(LinkType::ETHERNET, &frame).unwrap();
        let mut ends = [seg.src.to_string(), seg.dst.to_string()];
        ends.sort();
        let first_of_flow = !seen.contains(&ends);
        if first_of_flow {
            seen.push(ends.clone());
        }
        if first_of_flow && !first {
            assert_eq!(comments.len(), 1, "{}", path.display());
            assert!(comments[0].contains("started in an earlier file"));
            assert!(ends.iter().all(|e| comments[0].contains(e.as_str())));
        } else {
            assert!(comments.is_empty(), "{}: {comments:?}", path.display());
        }
    }
    assert!(!seen.is_empty());
    events
}

fn ring_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// `rec_NNNNN_YYYYmmddHHMMSS.pcapng` → NNNNN.
fn ring_number(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    let parts: Vec<&str> = name.strip_suffix(".pcapng").unwrap().split('_').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert_eq!(parts[0], "rec");
    assert_eq!(parts[1].len(), 5, "{name}");
    assert_eq!(parts[2].len(), 14, "{name}");
    assert!(parts[2].starts_with("20"), "{name}");
    parts[1].parse().unwrap()
}

#[test]
fn rotation_keeps_every_byte_across_files() {
    let dir = TestDir::new("rotate-all");
    let max = 8_000;
    let mut w = RotatingWriter::create(
        dir.join("rec.pcapng"),
        RotationConfig {
            max_size_bytes: Some(max),
            max_files: None,
        },
    )
    .unwrap();
    let [sa, sb] = write_rotating(&mut w, 60);
    let kept: Vec<PathBuf> = w.files().map(Path::to_path_buf).collect();
    w.finish().unwrap();

    let files = ring_files(&dir);
    assert_eq!(files, kept);
    assert!(files.len() >= 5, "{files:?}");
    let numbers: Vec<u64> = files.iter().map(|f| ring_number(f)).collect();
    assert_eq!(numbers, (1..=files.len() as u64).collect::<Vec<_>>());

    // Concatenating the files' streams gives back every byte, in order.
    let mut joined: HashMap<(String, Direction), Vec<u8>> = HashMap::new();
    for (i, file) in files.iter().enumerate() {
        let size = fs::metadata(file).unwrap().len();
        // Over the limit by at most one packet.
        assert!(size < max + 2_000, "{}: {size}", file.display());
        let events = check_ring_file(file, i == 0);
        for (key, data) in streams_by_addr(&events) {
            joined.entry(key).or_default().extend(data);
        }
        assert_tshark_clean(file);
    }
    let a = format!("{V4_CLIENT} {V4_SERVER}");
    let b = format!("{V6_CLIENT} {V6_SERVER}");
    assert_eq!(joined[&(a.clone(), Direction::AToB)], sa.to_server);
    assert_eq!(joined[&(a, Direction::BToA)], sa.to_client);
    assert_eq!(joined[&(b.clone(), Direction::AToB)], sb.to_server);
    assert_eq!(joined[&(b, Direction::BToA)], sb.to_client);
}

#[test]
fn rotation_deletes_the_oldest_files() {
    let dir = TestDir::new("rotate-ring");
    let mut w = RotatingWriter::create(
        dir.join("rec.pcapng"),
        RotationConfig {
            max_size_bytes: Some(4_000),
            max_files: NonZeroUsize::new(3),
        },
    )
    .unwrap();
    write_rotating(&mut w, 60);
    let current = w.current_path().to_path_buf();
    let kept: Vec<PathBuf> = w.files().map(Path::to_path_buf).collect();
    drop(w);

    let files = ring_files(&dir);
    assert_eq!(files, kept);
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(files.last(), Some(&current));
    let numbers: Vec<u64> = files.iter().map(|f| ring_number(f)).collect();
    assert!(numbers[0] > 3, "{numbers:?}");
    assert_eq!(numbers, [numbers[0], numbers[0] + 1, numbers[0] + 2]);
    for file in &files {
        check_ring_file(file, false);
        assert_tshark_clean(file);
    }
    // The newest file ends the flows: FIN both ways on the IPv4 leg, RST on the IPv6 leg.
    let (events, _) = read_events(&fs::read(&current).unwrap());
    let closes: Vec<CloseReason> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Close { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert!(closes.contains(&CloseReason::Fin) && closes.contains(&CloseReason::Rst));
}

#[test]
fn single_file_without_rotation_uses_the_exact_name() {
    let dir = TestDir::new("single");
    let path = dir.join("exact.pcapng");
    let mut w = RotatingWriter::create(&path, RotationConfig::default()).unwrap();
    let [sa, _] = write_rotating(&mut w, 30);
    assert_eq!(w.files().collect::<Vec<_>>(), [path.as_path()]);
    w.finish().unwrap();
    assert_eq!(ring_files(&dir), std::slice::from_ref(&path));
    let events = check_ring_file(&path, true);
    let s = streams_by_addr(&events);
    assert_eq!(
        s[&(format!("{V4_CLIENT} {V4_SERVER}"), Direction::AToB)],
        sa.to_server
    );
}
