use super::*;
use proptest::prelude::*;

const C: &str = "10.0.0.1:50000";
const S: &str = "10.0.0.2:4840";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Drives a reassembler with hand-made segments and records owned events.
struct Sim {
    r: TcpReassembler,
    events: Vec<StreamEvent<'static>>,
    t: i64,
}

impl Sim {
    fn new() -> Self {
        Sim::with(ReassemblyConfig::default())
    }

    fn with(config: ReassemblyConfig) -> Self {
        Sim {
            r: TcpReassembler::new(config),
            events: Vec::new(),
            t: 0,
        }
    }

    fn send(
        &mut self,
        src: &str,
        dst: &str,
        seq: u32,
        ack: Option<u32>,
        flags: u8,
        payload: &[u8],
    ) {
        let mut f = flags;
        if ack.is_some() {
            f |= TcpFlags::ACK.0;
        }
        let seg = TcpSegment {
            src: addr(src),
            dst: addr(dst),
            seq,
            ack: ack.unwrap_or(0),
            flags: TcpFlags(f),
            window: 65535,
            payload,
            truncated: false,
        };
        self.t += 1;
        let events = &mut self.events;
        self.r
            .handle_segment(Timestamp::from_unix_micros(self.t), &seg, |e| {
                events.push(e.into_owned())
            });
    }

    fn finish(&mut self) {
        let events = &mut self.events;
        self.r.finish(|e| events.push(e.into_owned()));
    }

    /// Concatenated data of one direction of one connection; gaps as `#` bytes.
    fn stream(&self, conn: u32, dir: Direction) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.events {
            match e {
                StreamEvent::Data {
                    conn: c,
                    dir: d,
                    offset_in_stream,
                    bytes,
                    ..
                } if *c == ConnId(conn) && *d == dir => {
                    assert_eq!(*offset_in_stream, out.len() as u64);
                    out.extend_from_slice(bytes);
                }
                StreamEvent::Gap {
                    conn: c,
                    dir: d,
                    offset_in_stream,
                    missing_bytes,
                    ..
                } if *c == ConnId(conn) && *d == dir => {
                    assert_eq!(*offset_in_stream, out.len() as u64);
                    out.extend(std::iter::repeat_n(b'#', *missing_bytes as usize));
                }
                _ => {}
            }
        }
        out
    }

    fn gaps(&self) -> Vec<(Direction, u64, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Gap {
                    dir,
                    offset_in_stream,
                    missing_bytes,
                    ..
                } => Some((*dir, *offset_in_stream, *missing_bytes)),
                _ => None,
            })
            .collect()
    }

    fn closes(&self) -> Vec<(ConnId, Option<Direction>, CloseReason)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Close {
                    conn, by, reason, ..
                } => Some((*conn, *by, *reason)),
                _ => None,
            })
            .collect()
    }

    /// Like [`Sim::send`], stamped `micros` instead of the next tick (captures whose
    /// timestamps go backwards, e.g. two packets swapped in the file).
    #[allow(clippy::too_many_arguments)]
    fn send_at(
        &mut self,
        micros: i64,
        src: &str,
        dst: &str,
        seq: u32,
        ack: Option<u32>,
        flags: u8,
        payload: &[u8],
    ) {
        self.t = micros - 1;
        self.send(src, dst, seq, ack, flags, payload);
    }

    /// (direction:bytes, time in µs) of every `Data` event, in order.
    fn data_times(&self) -> Vec<(String, i64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Data { dir, bytes, ts, .. } => Some((
                    format!("{dir:?}:{}", String::from_utf8_lossy(bytes)),
                    ts.unix_micros(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Event kinds in order, to check interleaving.
    fn kinds(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| match e {
                StreamEvent::Open { conn, .. } => format!("open{}", conn.0),
                StreamEvent::Data { dir, bytes, .. } => {
                    format!("{dir:?}:{}", String::from_utf8_lossy(bytes))
                }
                StreamEvent::Gap {
                    dir, missing_bytes, ..
                } => format!("{dir:?}:gap{missing_bytes}"),
                StreamEvent::Fin { dir, .. } => format!("{dir:?}:fin"),
                StreamEvent::Close { reason, .. } => format!("close:{reason:?}"),
            })
            .collect()
    }
}

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const NONE: u8 = 0;

/// Handshake with client ISN 1000 and server ISN 5000.
fn handshake(sim: &mut Sim) {
    sim.send(C, S, 1000, None, SYN, b"");
    sim.send(S, C, 5000, Some(1001), SYN, b"");
    sim.send(C, S, 1001, Some(5001), NONE, b"");
}

#[test]
fn full_connection_interleaves_and_closes() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1001, Some(5001), NONE, b"HELF");
    sim.send(S, C, 5001, Some(1005), NONE, b"ACKF");
    sim.send(C, S, 1005, Some(5005), NONE, b"MSG1");
    sim.send(S, C, 5005, Some(1009), NONE, b"RSP1");
    sim.send(C, S, 1009, Some(5009), FIN, b"");
    sim.send(S, C, 5009, Some(1010), FIN, b"");
    sim.send(C, S, 1010, Some(5010), NONE, b"");
    sim.finish();
    assert_eq!(
        sim.kinds(),
        [
            "open0",
            "AToB:HELF",
            "BToA:ACKF",
            "AToB:MSG1",
            "BToA:RSP1",
            "AToB:fin",
            "BToA:fin",
            "close:Fin"
        ]
    );
    match &sim.events[0] {
        StreamEvent::Open {
            client,
            server,
            syn_seen,
            guess,
            ..
        } => {
            assert_eq!(*client, addr(C));
            assert_eq!(*server, addr(S));
            assert!(*syn_seen);
            assert_eq!(*guess, ClientGuess::Syn);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(
        sim.closes(),
        [(ConnId(0), Some(Direction::AToB), CloseReason::Fin)]
    );
    let stats = sim.r.stats();
    assert_eq!(stats.bytes, 16);
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.gaps, 0);
    assert_eq!(stats.ignored_segments, 0);
}

#[test]
fn retransmission_and_partial_overlap() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1001, Some(5001), NONE, b"abcd");
    sim.send(C, S, 1001, Some(5001), NONE, b"abcd"); // duplicate
    sim.send(C, S, 1003, Some(5001), NONE, b"cdef"); // overlaps "cd"
    sim.send(C, S, 1000, Some(5001), NONE, b"?"); // keep-alive style, before the stream
    sim.send(C, S, 1007, Some(5001), NONE, b"gh");
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"abcdefgh");
    assert!(sim.gaps().is_empty());
    assert_eq!(sim.r.stats().retransmitted_bytes, 4 + 2 + 1);
}

#[test]
fn out_of_order_waits_for_the_hole() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1005, Some(5001), NONE, b"5678");
    sim.send(C, S, 1009, Some(5001), NONE, b"9");
    assert_eq!(sim.kinds(), ["open0"]);
    sim.send(C, S, 1001, Some(5001), NONE, b"1234");
    assert_eq!(sim.kinds(), ["open0", "AToB:1234", "AToB:5678", "AToB:9"]);
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"123456789");
    assert!(sim.gaps().is_empty());
    assert_eq!(sim.r.stats().out_of_order_segments, 2);
}

#[test]
fn buffered_bytes_keep_the_time_of_their_own_packet() {
    // Two server packets swapped in the file, each with its own timestamp: "BBBB" (t=30) is
    // read first and waits; "AAAA" (t=20) fills the hole. Each comes out at its own time, not
    // "BBBB" at 20, before the packet that carried it.
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send_at(10, C, S, 1001, Some(5001), NONE, b"REQ");
    sim.send_at(30, S, C, 5005, Some(1004), NONE, b"BBBB");
    sim.send_at(20, S, C, 5001, Some(1004), NONE, b"AAAA");
    assert_eq!(
        sim.data_times(),
        [
            ("AToB:REQ".to_string(), 10),
            ("BToA:AAAA".to_string(), 20),
            ("BToA:BBBB".to_string(), 30),
        ]
    );

    // In a file in time order the filler is the later packet: its time, as before.
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send_at(10, C, S, 1005, Some(5001), NONE, b"5678");
    sim.send_at(20, C, S, 1001, Some(5001), NONE, b"1234");
    assert_eq!(
        sim.data_times(),
        [("AToB:1234".to_string(), 20), ("AToB:5678".to_string(), 20)]
    );
}

#[test]
fn data_times_never_decrease_within_a_connection() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send_at(50, C, S, 1003, Some(5001), NONE, b"22");
    sim.send_at(40, C, S, 1005, Some(5001), NONE, b"33");
    sim.send_at(30, C, S, 1001, Some(5001), NONE, b"11");
    // The other direction, stamped earlier still, comes after: not dated before the request.
    sim.send_at(25, S, C, 5001, Some(1007), NONE, b"RESP");
    sim.send_at(60, S, C, 5005, Some(1007), NONE, b"MORE");
    assert_eq!(
        sim.data_times(),
        [
            ("AToB:11".to_string(), 30),
            ("AToB:22".to_string(), 50),
            ("AToB:33".to_string(), 50),
            ("BToA:RESP".to_string(), 50),
            ("BToA:MORE".to_string(), 60),
        ]
    );
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"112233");
    assert!(sim.gaps().is_empty());
}

#[test]
fn peer_ack_beyond_hole_declares_gap() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1001, Some(5001), NONE, b"1234");
    // 1005..1009 lost by the capture.
    sim.send(C, S, 1009, Some(5001), NONE, b"9abc");
    sim.send(S, C, 5001, Some(1013), NONE, b"resp");
    sim.send(C, S, 1013, Some(5005), NONE, b"next");
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"1234####9abcnext");
    assert_eq!(sim.gaps(), [(Direction::AToB, 4, 4)]);
    // The gap and the buffered data come out before the response that acknowledged them.
    assert_eq!(
        sim.kinds()[..5],
        ["open0", "AToB:1234", "AToB:gap4", "AToB:9abc", "BToA:resp"]
    );
    assert_eq!(sim.closes(), [(ConnId(0), None, CloseReason::EndOfCapture)]);
}

#[test]
fn ack_of_unseen_tail_declares_gap() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1001, Some(5001), NONE, b"ab");
    // The client's next 10 bytes are missing entirely; the server acknowledges them.
    sim.send(S, C, 5001, Some(1013), NONE, b"");
    sim.send(C, S, 1013, Some(5001), NONE, b"cd");
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"ab##########cd");
}

#[test]
fn hole_never_filled_becomes_gap_at_fin_and_at_end() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1001, Some(5001), NONE, b"ab");
    sim.send(C, S, 1005, Some(5001), FIN, b"ef"); // "cd" missing, FIN after "ef"
    sim.send(S, C, 5001, Some(1001), NONE, b"xy");
    sim.send(S, C, 5005, Some(1001), NONE, b"zz"); // server hole of 2, never acked
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"ab##ef");
    assert_eq!(sim.stream(0, Direction::BToA), b"xy##zz");
    let kinds = sim.kinds();
    assert_eq!(kinds[kinds.len() - 1], "close:EndOfCapture");
    assert!(kinds.contains(&"AToB:fin".to_string()));
}

#[test]
fn pending_limit_declares_gap() {
    let mut sim = Sim::with(ReassemblyConfig {
        max_pending_bytes: 8,
    });
    handshake(&mut sim);
    sim.send(C, S, 1011, None, NONE, b"AAAA"); // hole of 10 before it
    sim.send(C, S, 1015, None, NONE, b"BBBB");
    assert_eq!(sim.kinds(), ["open0"]);
    sim.send(C, S, 1019, None, NONE, b"C"); // 9 pending > 8
    assert_eq!(
        sim.kinds(),
        ["open0", "AToB:gap10", "AToB:AAAA", "AToB:BBBB", "AToB:C"]
    );
}

#[test]
fn sequence_wrap_around() {
    let mut sim = Sim::new();
    let isn = u32::MAX - 2;
    sim.send(C, S, isn, None, SYN, b"");
    sim.send(S, C, 7, Some(isn.wrapping_add(1)), SYN, b"");
    // Data crosses 2^32: first byte at u32::MAX - 1.
    sim.send(C, S, isn.wrapping_add(1), Some(8), NONE, b"0123");
    sim.send(C, S, isn.wrapping_add(9), Some(8), NONE, b"89"); // out of order after wrap
    sim.send(C, S, isn.wrapping_add(5), Some(8), NONE, b"4567");
    sim.send(C, S, isn.wrapping_add(3), Some(8), NONE, b"2345"); // retransmission across wrap
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"0123456789");
    assert!(sim.gaps().is_empty());
}

#[test]
fn mid_connection_capture_guesses_by_port() {
    let mut sim = Sim::new();
    // First packet seen is the server's response; no handshake.
    sim.send(S, C, 777, Some(3000), NONE, b"resp");
    sim.send(C, S, 3000, Some(781), NONE, b"req2");
    sim.finish();
    match &sim.events[0] {
        StreamEvent::Open {
            client,
            server,
            syn_seen,
            guess,
            ..
        } => {
            assert_eq!((*client, *server), (addr(C), addr(S)));
            assert!(!syn_seen);
            assert_eq!(*guess, ClientGuess::HigherPort);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(sim.stream(0, Direction::BToA), b"resp");
    assert_eq!(sim.stream(0, Direction::AToB), b"req2");
}

#[test]
fn client_hint_and_equal_ports() {
    let mut sim = Sim::new();
    // The hint says the side on port 50000 is the server (contrary to the port rule).
    sim.r
        .set_client_hint(|src, dst| Some(dst.port() == 50000).filter(|_| src.port() != dst.port()));
    sim.send(C, S, 1, None, NONE, b"x");
    sim.send("10.0.0.1:7000", "10.0.0.2:7000", 1, None, NONE, b"y");
    sim.finish();
    let opens: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Open { client, guess, .. } => Some((*client, *guess)),
            _ => None,
        })
        .collect();
    assert_eq!(
        opens,
        [
            (addr(S), ClientGuess::Hint),
            (addr("10.0.0.1:7000"), ClientGuess::FirstSender)
        ]
    );
    assert_eq!(sim.stream(0, Direction::BToA), b"x");
}

#[test]
fn syn_ack_first_picks_receiver_as_client() {
    let mut sim = Sim::new();
    sim.send(S, C, 5000, Some(1001), SYN, b"");
    sim.send(C, S, 1001, Some(5001), NONE, b"HELF");
    sim.finish();
    assert!(matches!(
        sim.events[0],
        StreamEvent::Open {
            guess: ClientGuess::SynAck,
            syn_seen: true,
            ..
        }
    ));
    assert_eq!(sim.stream(0, Direction::AToB), b"HELF");
}

#[test]
fn rst_closes_and_reuse_gets_new_id() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1001, Some(5001), NONE, b"one");
    sim.send(S, C, 5001, Some(1004), RST, b"");
    sim.send(C, S, 1004, Some(5001), NONE, b"late"); // after RST: ignored
                                                     // Same 4-tuple, new handshake.
    sim.send(C, S, 90000, None, SYN, b"");
    sim.send(S, C, 123, Some(90001), SYN, b"");
    sim.send(C, S, 90001, Some(124), NONE, b"two");
    sim.send(C, S, 90004, Some(124), FIN, b"");
    sim.send(S, C, 124, Some(90005), FIN, b"");
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"one");
    assert_eq!(sim.stream(1, Direction::AToB), b"two");
    assert_eq!(
        sim.closes(),
        [
            (ConnId(0), Some(Direction::BToA), CloseReason::Rst),
            (ConnId(1), Some(Direction::AToB), CloseReason::Fin)
        ]
    );
    assert_eq!(sim.r.stats().ignored_segments, 1);
}

#[test]
fn new_syn_without_close_supersedes() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1001, Some(5001), NONE, b"old");
    sim.send(C, S, 1000, None, SYN, b""); // retransmitted SYN: same connection
    sim.send(C, S, 7000, None, SYN, b""); // different ISN: new connection
    sim.send(C, S, 7001, None, NONE, b"new");
    sim.finish();
    assert_eq!(
        sim.closes(),
        [
            (ConnId(0), None, CloseReason::Reused),
            (ConnId(1), None, CloseReason::EndOfCapture)
        ]
    );
    assert_eq!(sim.stream(1, Direction::AToB), b"new");
}

#[test]
fn fin_waits_for_missing_data_then_half_close_allows_response() {
    let mut sim = Sim::new();
    handshake(&mut sim);
    sim.send(C, S, 1003, Some(5001), FIN, b"cd"); // ahead of "ab"
    assert_eq!(sim.kinds(), ["open0"]);
    sim.send(C, S, 1001, Some(5001), NONE, b"ab");
    sim.send(S, C, 5001, Some(1006), NONE, b"late answer");
    sim.send(S, C, 5012, Some(1006), FIN, b"");
    assert_eq!(
        sim.kinds(),
        [
            "open0",
            "AToB:ab",
            "AToB:cd",
            "AToB:fin",
            "BToA:late answer",
            "BToA:fin",
            "close:Fin"
        ]
    );
}

#[test]
fn lone_rst_is_ignored() {
    let mut sim = Sim::new();
    sim.send(C, S, 1, None, RST, b"");
    sim.finish();
    assert!(sim.events.is_empty());
}

#[test]
fn ipv6_endpoints() {
    let mut sim = Sim::new();
    sim.send("[::1]:40000", "[::1]:4840", 1, None, SYN, b"");
    sim.send("[::1]:40000", "[::1]:4840", 2, None, NONE, b"v6");
    sim.finish();
    assert_eq!(sim.stream(0, Direction::AToB), b"v6");
}

/// Splits `data` at the given cut points into (offset, bytes) segments.
fn split(data: &[u8], cuts: &[usize]) -> Vec<(usize, Vec<u8>)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| (w[0], data[w[0]..w[1]].to_vec()))
        .collect()
}

proptest! {
    #[test]
    fn any_shuffle_with_duplicates_reassembles(
        data in proptest::collection::vec(any::<u8>(), 1..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        isn in any::<u32>(),
        swaps in proptest::collection::vec((any::<usize>(), any::<usize>()), 0..20),
        dups in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 0..10),
    ) {
        let mut segs = split(&data, &cuts);
        // Duplicates, possibly partial (retransmissions with different boundaries).
        for (which, from, len) in dups {
            let (off, bytes) = segs[which % segs.len()].clone();
            let from = from % bytes.len().max(1);
            let len = 1 + len % (bytes.len() - from).max(1);
            let piece = bytes.get(from..from + len).unwrap_or(&bytes[from..]).to_vec();
            segs.push((off + from, piece));
        }
        let n = segs.len();
        for (x, y) in swaps {
            segs.swap(x % n, y % n);
        }
        let mut sim = Sim::new();
        sim.send(C, S, isn, None, SYN, b"");
        for (off, bytes) in &segs {
            sim.send(C, S, isn.wrapping_add(1).wrapping_add(*off as u32), None, NONE, bytes);
        }
        sim.finish();
        prop_assert_eq!(sim.stream(0, Direction::AToB), data);
        prop_assert!(sim.gaps().is_empty());
    }

    #[test]
    fn dropped_segments_become_exact_gaps(
        data in proptest::collection::vec(any::<u8>(), 1..1000),
        cuts in proptest::collection::vec(any::<usize>(), 1..20),
        drop in proptest::collection::vec(any::<bool>(), 20),
        isn in any::<u32>(),
    ) {
        let segs = split(&data, &cuts);
        let mut sim = Sim::new();
        sim.send(C, S, isn, None, SYN, b"");
        let mut expected = Vec::new();
        for (i, (off, bytes)) in segs.iter().enumerate() {
            if drop[i % drop.len()] && i + 1 < segs.len() {
                expected.extend(std::iter::repeat_n(b'#', bytes.len()));
            } else {
                expected.extend_from_slice(bytes);
                sim.send(C, S, isn.wrapping_add(1).wrapping_add(*off as u32), None, NONE, bytes);
            }
        }
        sim.finish();
        prop_assert_eq!(sim.stream(0, Direction::AToB), expected);
    }
}
