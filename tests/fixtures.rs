//! The codec and the analysis on real captures: byte-exact round trips of every chunk and
//! message, and the same events whatever the TCP segmentation.

use uatap_analysis::{Connection, Direction, Event, EventKind, Options, Timestamp};
use uatap_codec::reader::Reader;
use uatap_codec::reassembly::{Reassembler, ReassemblyEvent};
use uatap_codec::secure::{parse_chunk, Protection};
use uatap_codec::services::parse_message;
use uatap_codec::tcp::{frame, parse_tcp_message, Frame};
use uatap_codec::Encode;

use crate::util::{fixture_captures, streams, Rng};

/// Every chunk of both directions of every fixture decodes and re-encodes to its bytes.
#[test]
fn every_chunk_round_trips() {
    for capture in fixture_captures() {
        let (c2s, s2c) = streams(&capture);
        let mut chunks = 0;
        for stream in [&c2s, &s2c] {
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let Ok(Frame::Complete { header }) = frame(rest, None) else {
                    panic!("{}: unframed bytes", capture.display());
                };
                let (bytes, tail) = rest.split_at(header.message_size as usize);
                let encoded = if header.message_type.is_secure_conversation() {
                    parse_chunk(&mut Reader::new(bytes), Protection::None)
                        .unwrap_or_else(|e| panic!("{}: {e}", capture.display()))
                        .to_vec()
                } else {
                    parse_tcp_message(&mut Reader::new(bytes))
                        .unwrap_or_else(|e| panic!("{}: {e}", capture.display()))
                        .to_vec()
                };
                assert_eq!(encoded, bytes, "{}: chunk re-encodes", capture.display());
                chunks += 1;
                rest = tail;
            }
        }
        assert!(chunks > 30, "{}: only {chunks} chunks", capture.display());
    }
}

/// Every reassembled message body decodes with the typed decoders and re-encodes byte-exact.
#[test]
fn every_message_body_round_trips() {
    let mut typed = std::collections::BTreeSet::new();
    for capture in fixture_captures() {
        let (c2s, s2c) = streams(&capture);
        for stream in [&c2s, &s2c] {
            let mut r = Reassembler::default();
            r.handle_input(stream);
            let mut n = 0;
            while let Some(ev) = r.poll_event() {
                let ReassemblyEvent::Message(m) = ev else {
                    panic!("{}: unexpected {ev:?}", capture.display());
                };
                if !m.message_type.is_secure_conversation() || m.encrypted {
                    continue;
                }
                let msg = parse_message(&mut Reader::new(&m.payload))
                    .unwrap_or_else(|e| panic!("{}: {e}", capture.display()));
                assert_eq!(
                    msg.to_vec(),
                    m.payload,
                    "{}: body re-encodes",
                    capture.display()
                );
                if let Some(name) = msg.service_name() {
                    typed.insert(name);
                }
                n += 1;
            }
            assert!(n > 10, "{}: {n} messages", capture.display());
        }
    }
    for service in [
        "OpenSecureChannelRequest",
        "GetEndpointsResponse",
        "CreateSessionResponse",
        "ActivateSessionRequest",
        "CreateMonitoredItemsRequest",
        "PublishResponse",
        "ServiceFault",
        "CloseSecureChannelRequest",
    ] {
        assert!(
            typed.contains(service),
            "{service} not seen in fixtures: {typed:?}"
        );
    }
}

fn run_connection(inputs: &[(Direction, Vec<u8>)]) -> Vec<Event> {
    let mut c = Connection::new(
        "127.0.0.1:1".into(),
        "127.0.0.1:2".into(),
        Options {
            messages: true,
            stall_after: None,
        },
        Timestamp::from_unix_micros(0),
    );
    let mut out = Vec::new();
    for (dir, bytes) in inputs {
        c.handle_input(*dir, bytes, Timestamp::from_unix_micros(0));
        while let Some(e) = c.poll_event() {
            out.push(e);
        }
    }
    out
}

fn of_direction(events: &[Event], dir: Direction) -> Vec<EventKind> {
    events
        .iter()
        .filter(|e| e.dir == Some(dir))
        .map(|e| e.kind.clone())
        .collect()
}

/// Each direction re-split at random points, many times: the same events, no decode error.
#[test]
fn events_do_not_depend_on_segmentation() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for capture in fixture_captures() {
        let (c2s, s2c) = streams(&capture);
        let whole = run_connection(&[
            (Direction::ClientToServer, c2s.clone()),
            (Direction::ServerToClient, s2c.clone()),
        ]);
        assert!(
            !whole
                .iter()
                .any(|e| matches!(e.kind, EventKind::DecodeError { .. })),
            "{}: decode errors in {whole:?}",
            capture.display()
        );
        for round in 0..20 {
            let mut inputs = Vec::new();
            for (dir, stream) in [
                (Direction::ClientToServer, &c2s),
                (Direction::ServerToClient, &s2c),
            ] {
                let mut at = 0;
                while at < stream.len() {
                    // Mostly tiny pieces in early rounds, larger ones later.
                    let max = if round % 2 == 0 { 7 } else { 4096 };
                    let n = 1 + rng.below(max);
                    let end = (at + n).min(stream.len());
                    inputs.push((dir, stream[at..end].to_vec()));
                    at = end;
                }
            }
            let split = run_connection(&inputs);
            for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                assert_eq!(
                    of_direction(&whole, dir),
                    of_direction(&split, dir),
                    "{}: round {round}",
                    capture.display()
                );
            }
            // Every event, channel/session/subscription/publish ones included, in order.
            assert_eq!(whole, split, "{}: round {round}", capture.display());
        }
    }
}

/// The fast JSON writer gives exactly the reference objects on every event of the fixtures.
#[test]
fn fast_json_matches_reference_json() {
    let mut kinds = std::collections::BTreeSet::new();
    for capture in crate::util::all_fixture_captures() {
        let (c2s, s2c) = streams(&capture);
        let mut events = run_connection(&[
            (Direction::ClientToServer, c2s),
            (Direction::ServerToClient, s2c),
        ]);
        let mut c = Connection::new(
            "a:1".into(),
            "b:2".into(),
            Options {
                messages: true,
                stall_after: None,
            },
            Timestamp::from_unix_micros(0),
        );
        c.handle_close(
            uatap_analysis::ClosedBy::Client,
            uatap_analysis::CloseReason::Fin,
            Timestamp::from_unix_micros(5),
        );
        events.extend(std::iter::from_fn(|| c.poll_event()));
        for e in &events {
            let mut line = String::new();
            e.write_json(&mut line);
            let fast: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
            assert_eq!(fast, e.to_json(), "{}", capture.display());
            kinds.insert(e.kind.name());
        }
    }
    for k in [
        "message",
        "publish",
        "secure_channel",
        "session",
        "subscription",
        "service_fault",
        "summary",
        "hello",
    ] {
        assert!(kinds.contains(k), "{k} not exercised: {kinds:?}");
    }
}

/// Secured channels: every chunk splits into its clear headers and protected rest, and
/// re-encodes to the same bytes (Sign: body and signature apart; SignAndEncrypt: ciphertext).
#[test]
fn secured_chunks_round_trip() {
    for (name, protection) in [
        (
            "sign-b256sha256.pcapng",
            Protection::Sign { signature_len: 32 },
        ),
        ("encrypt-b256sha256.pcapng", Protection::Encrypted),
    ] {
        let capture = crate::util::root().join("fixtures").join(name);
        let (c2s, s2c) = streams(&capture);
        let mut n = 0;
        for stream in [&c2s, &s2c] {
            let mut rest = &stream[..];
            while let Ok(Frame::Complete { header }) = frame(rest, None) {
                let (bytes, tail) = rest.split_at(header.message_size as usize);
                if header.message_type.is_secure_conversation() {
                    let c = parse_chunk(&mut Reader::new(bytes), protection)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(c.to_vec(), bytes, "{name}");
                    if header.message_type != uatap_codec::tcp::MessageType::OpenSecureChannel {
                        assert_eq!(c.encrypted, protection == Protection::Encrypted);
                        if let Protection::Sign { .. } = protection {
                            assert_eq!(c.signature.len(), 32);
                            parse_message(&mut Reader::new(c.body))
                                .unwrap_or_else(|e| panic!("{name}: signed body: {e}"));
                        }
                    } else {
                        assert!(c.encrypted, "{name}: OPN of a secured policy");
                    }
                    n += 1;
                }
                rest = tail;
            }
            assert!(rest.is_empty(), "{name}: unframed bytes");
        }
        assert_eq!(n, 89, "{name}");
    }
}
