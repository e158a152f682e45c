//! The proxy's analysis side without sockets: a stream of PublishResponses (100 items, as the
//! end-to-end bench's server sends them) handed to `run_hub` in 128 KiB reads, as the relays
//! hand them over, with the sinks and the recording of `uatap proxy --json-file F [--record R]`.
//!
//! Prints wall-clock and CPU time (all threads: analysis, sinks, recording) per message, so a
//! change to the per-message cost shows without the noise of the loopback and the peers.
//!
//! Run with `cargo bench --bench hub`; `-- --messages N --rounds R` to change the size.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::sync::mpsc;
use uatap_analysis::{CloseReason, ClosedBy, Direction, Options, Timestamp};
use uatap_proxy::hub::{run_hub, EventSink, Recording, Tap, TapBytes};
use uatap_proxy::sink::{JsonSink, TextSink};
use uatap_recorder::RotationConfig;

#[allow(dead_code)]
#[rustfmt::skip]
#[path = "e2e/src/ua.rs"]
mod ua;

/// Bytes per tapped read (the relays read up to 128 KiB at a time).
const READ: usize = 128 * 1024;

/// Both directions of one connection, as the relays would tap them.
fn stream(messages: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (channel, token) = (7, 1);
    let mut c2s = ua::hello("opc.tcp://127.0.0.1/bench");
    c2s.extend(ua::opn_request(1, 1));
    let mut s2c = ua::ack();
    s2c.extend(ua::opn_response(channel, token, 1, 1, 1));
    let subscription = 1000 + channel;
    let tmpl = ua::PublishResponseTemplate::new(channel, token, subscription, 100);
    let mut req = ua::PublishRequestTemplate::new(channel, token);
    let (mut seq_c, mut seq_s, mut rid) = (1u32, 1u32, 1u32);
    let ts = ua::now_ticks();
    // The client asks for one message in ten, acknowledging the last it got.
    let mut asked = Vec::new();
    for n in 0..messages {
        if n % 10 == 0 {
            seq_c += 1;
            rid += 1;
            req.patch(seq_c, rid, subscription, n);
            c2s.extend_from_slice(&req.bytes);
            asked.push(rid);
        }
        seq_s += 1;
        let (r, h) = asked
            .pop()
            .map_or((0x4000_0000 + n, 0x4000_0000 + n), |r| (r, r));
        tmpl.emit(&mut s2c, seq_s, r, h, n + 1, ts);
    }
    let split = |b: Vec<u8>| b.chunks(READ).map(<[u8]>::to_vec).collect::<Vec<_>>();
    (split(c2s), split(s2c))
}

/// CPU seconds of this process so far (user and system, all threads); 0 where the platform's
/// clock is not read (the CPU column then reads 0).
fn cpu_secs() -> f64 {
    uatap_proxy::os::process_cpu_secs().unwrap_or(0.0)
}

#[derive(Clone, Copy)]
enum Setup {
    Analysis,
    Json,
    JsonText,
    JsonTextRecord,
}

fn run(setup: Setup, c2s: &[Vec<u8>], s2c: &[Vec<u8>], dir: &std::path::Path) -> (f64, f64) {
    let (tx, rx) = mpsc::channel(c2s.len() + s2c.len() + 16);
    let client: SocketAddr = "127.0.0.1:50000"
        .parse()
        .unwrap_or(([127, 0, 0, 1], 1).into());
    let server: SocketAddr = "127.0.0.1:4840"
        .parse()
        .unwrap_or(([127, 0, 0, 1], 2).into());
    let ts = Timestamp::from_unix_micros(1_700_000_000_000_000);
    let send = |t: Tap| {
        let _ = tx.try_send(t);
    };
    send(Tap::Open {
        id: 1,
        listener: 0,
        client,
        server,
        ts,
    });
    send(Tap::Connected {
        id: 1,
        local: client,
        upstream: server,
        ts,
    });
    // The client's requests go first in each round, as on the wire.
    let mut c = c2s.iter();
    for s in s2c {
        if let Some(b) = c.next() {
            send(Tap::Data {
                id: 1,
                dir: Direction::ClientToServer,
                bytes: TapBytes::from(b.clone()),
                ts,
            });
        }
        send(Tap::Data {
            id: 1,
            dir: Direction::ServerToClient,
            bytes: TapBytes::from(s.clone()),
            ts,
        });
    }
    for b in c {
        send(Tap::Data {
            id: 1,
            dir: Direction::ClientToServer,
            bytes: TapBytes::from(b.clone()),
            ts,
        });
    }
    send(Tap::Close {
        id: 1,
        by: ClosedBy::Client,
        reason: CloseReason::Fin,
        ts,
    });
    drop(tx);
    let json = dir.join("hub-bench.jsonl");
    let rec = dir.join("hub-bench.pcapng");
    let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
    if !matches!(setup, Setup::Analysis) {
        let f = std::fs::File::create(&json).ok();
        if let Some(f) = f {
            sinks.push(Box::new(JsonSink::new(std::io::BufWriter::new(f), false)));
        }
    }
    if matches!(setup, Setup::JsonText | Setup::JsonTextRecord) {
        sinks.push(Box::new(TextSink::new(std::io::sink(), false, false)));
    }
    let recording = match setup {
        Setup::JsonTextRecord => Recording::create(
            &rec,
            RotationConfig::default(),
            &["bench".to_string()],
            false,
        )
        .ok(),
        _ => None,
    };
    let (t0, cpu0) = (Instant::now(), cpu_secs());
    drop(run_hub(
        rx,
        Options {
            messages: false,
            stall_after: None,
        },
        Default::default(),
        sinks,
        recording,
    ));
    let out = (t0.elapsed().as_secs_f64(), cpu_secs() - cpu0);
    let _ = std::fs::remove_file(json);
    let _ = std::fs::remove_file(rec);
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: u32| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let messages = opt("--messages", 100_000);
    let rounds = opt("--rounds", 5);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let (c2s, s2c) = stream(messages);
    let dir = std::env::temp_dir();
    println!("hub: {messages} PublishResponses of 100 items, {rounds} rounds, medians");
    for (name, setup) in [
        ("analysis only", Setup::Analysis),
        ("+ JSON file", Setup::Json),
        ("+ JSON file + text log", Setup::JsonText),
        ("+ JSON file + text log + recording", Setup::JsonTextRecord),
    ] {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (w, c) = run(setup, &c2s, &s2c, &dir);
            wall.push(w);
            cpu.push(c);
        }
        let per = |s: f64| s * 1e9 / f64::from(messages);
        println!(
            "{name:38} wall {:7.0} ns/msg   cpu {:7.0} ns/msg",
            per(median(wall)),
            per(median(cpu))
        );
    }
}
