//! Paths to the fixtures, the peers and the tools the tests drive.

use std::path::{Path, PathBuf};
use std::process::Command;

use uatap_recorder::{read_streams, Direction, StreamEvent};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The plain-text (security None) captures in fixtures/.
pub fn fixture_captures() -> Vec<PathBuf> {
    let v: Vec<PathBuf> = all_fixture_captures()
        .into_iter()
        .filter(|p| !is_secured(p))
        .collect();
    assert!(v.len() >= 3, "fixtures missing: {v:?}");
    v
}

/// Captures of secured channels (named `sign-*` and `encrypt-*`).
pub fn is_secured(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("sign-") || name.starts_with("encrypt-")
}

/// Every pcapng in fixtures/, secured ones included.
pub fn all_fixture_captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures"))
        .expect("fixtures/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng"))
        .collect();
    v.sort();
    assert!(v.len() >= 3, "fixtures missing: {v:?}");
    v
}

/// The server port of a fixture, from its name's companion .md ("tcp port N").
pub fn fixture_port(capture: &Path) -> u16 {
    let md = std::fs::read_to_string(capture.with_extension("md")).expect("fixture note");
    let at = md.find("tcp port ").expect("note names the port") + "tcp port ".len();
    md[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port number")
}

/// The Python of the peers' venv (installed by `make deps`); a missing venv fails the test.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("UATAP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"));
    let py = venv.join("bin").join("python");
    assert!(
        py.exists(),
        "{} missing: run `make deps` (or `make test`) to install the peers",
        py.display()
    );
    py
}

/// Directory of the peer scripts.
pub fn peers_dir() -> PathBuf {
    root().join("tests").join("peers")
}

/// Runs a command, fails the test with its output when it does not succeed, returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The two byte streams (client→server, server→client) of the first connection of a capture.
pub fn streams(capture: &Path) -> (Vec<u8>, Vec<u8>) {
    let (events, err) = read_streams(capture).expect("capture reads");
    assert!(err.is_none(), "{}: {err:?}", capture.display());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let first = events.first().map(StreamEvent::conn).expect("a connection");
    for e in events {
        if let StreamEvent::Data {
            conn, dir, bytes, ..
        } = e
        {
            if conn == first {
                match dir {
                    Direction::AToB => a.extend_from_slice(&bytes),
                    Direction::BToA => b.extend_from_slice(&bytes),
                }
            }
        }
    }
    assert!(a.starts_with(b"HELF"), "client stream starts with HEL");
    (a, b)
}

/// A small deterministic PRNG (xorshift) so split points are random but reproducible.
pub struct Rng(pub u64);

impl Rng {
    /// Next value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// One TCP segment of a capture, owned, for tests that edit captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Capture time, ns since the Unix epoch.
    pub ts_nanos: i64,
    /// Sender.
    pub src: std::net::SocketAddr,
    /// Receiver.
    pub dst: std::net::SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// TCP flags byte.
    pub flags: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Every TCP segment of a capture, in order.
pub fn read_segments(capture: &Path) -> Vec<Segment> {
    let mut r = uatap_recorder::CaptureReader::open(capture).expect("capture opens");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().expect("capture reads") {
        if let Ok(seg) = uatap_recorder::decode_tcp(p.link_type, p.data) {
            out.push(Segment {
                ts_nanos: p.ts.unix_nanos,
                src: seg.src,
                dst: seg.dst,
                seq: seg.seq,
                ack: seg.ack,
                flags: seg.flags.0,
                payload: seg.payload.to_vec(),
            });
        }
    }
    out
}

/// Writes segments as a classic pcap file (µs, LINKTYPE_RAW: IPv4 or IPv6 + TCP, checksums 0,
/// which tshark and uatap do not verify by default).
pub fn write_pcap(path: &Path, segments: &[Segment]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&262_144u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for s in segments {
        let mut tcp = Vec::with_capacity(20 + s.payload.len());
        tcp.extend_from_slice(&s.src.port().to_be_bytes());
        tcp.extend_from_slice(&s.dst.port().to_be_bytes());
        tcp.extend_from_slice(&s.seq.to_be_bytes());
        tcp.extend_from_slice(&s.ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, s.flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(&s.payload);
        let mut pkt = Vec::new();
        match (s.src.ip(), s.dst.ip()) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
                pkt.extend_from_slice(&[0x45, 0]);
                pkt.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
                pkt.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
                pkt.extend_from_slice(&a.octets());
                pkt.extend_from_slice(&b.octets());
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => {
                pkt.extend_from_slice(&[0x60, 0, 0, 0]);
                pkt.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
                pkt.extend_from_slice(&[6, 64]);
                pkt.extend_from_slice(&a.octets());
                pkt.extend_from_slice(&b.octets());
            }
            _ => panic!("mixed address families"),
        }
        pkt.extend_from_slice(&tcp);
        let micros = s.ts_nanos.div_euclid(1000);
        f.extend_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        f.extend_from_slice(&pkt);
    }
    std::fs::write(path, f).expect("write pcap");
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("uatap-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A TCP port free on 127.0.0.1 right now (the kernel's choice for a bind to port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Stops a process with SIGTERM (so it flushes what it writes) and waits up to 20 s for it;
/// fails the test if it does not stop.
pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("process {} did not stop on SIGTERM", child.id());
}

/// The JSON Lines events a run wrote to `path`.
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("events file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// A port on 127.0.0.1 that refuses connections and that no other test can take: a socket
/// bound to it but not listening. Keep the socket while the port must stay refused; drop it to
/// hand the port to a listener.
pub fn refused_port() -> (socket2::Socket, u16) {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("reuse");
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let port = s
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet")
        .port();
    (s, port)
}

/// The listen address in a `uatap proxy` banner line (`… proxying opc.tcp://ADDR -> …`), or
/// `None` for any other line.
pub fn banner_listen(line: &str) -> Option<&str> {
    if !line.contains("proxying") {
        return None;
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("opc.tcp://"))
}

/// Waits until a proxy writing its standard error to `stderr` has printed its banner, and
/// returns the listen address; fails the test after `timeout`.
pub fn wait_banner_in(stderr: &Path, timeout: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(banner_listen) {
            return addr.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no banner from uatap proxy: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
