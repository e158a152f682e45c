//! Paths to the fixtures, the peers and the tools the tests drive.

use std::path::{Path, PathBuf};
use std::process::Command;

use uatap_recorder::{read_streams, Direction, StreamEvent};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every pcapng in fixtures/.
pub fn fixture_captures() -> Vec<PathBuf> {
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
