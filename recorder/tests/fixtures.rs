//! The real loopback captures in `fixtures/`: one OPC UA connection each.

use std::collections::HashMap;
use std::path::PathBuf;

use pcap_parser::{PcapBlockOwned, PcapError};
use uatap_recorder::{
    read_streams, CaptureFormat, CaptureReader, ClientGuess, CloseReason, ConnId, Direction,
    StreamEvent, StreamReader,
};

/// The captures of one peer pair talking (not the proxy recordings of reconnects, which hold
/// both legs of several connections each).
fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("reconnect-"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// TCP payload bytes per source port, computed independently of the crate under test:
/// pcap-parser's own streaming reader + etherparse's full packet slicer.
fn payload_bytes_by_src_port(path: &PathBuf) -> HashMap<u16, u64> {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = pcap_parser::create_reader(1 << 20, file).unwrap();
    let mut sums = HashMap::new();
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                if let PcapBlockOwned::NG(pcap_parser::Block::EnhancedPacket(epb)) = block {
                    // Loopback capture: link type Ethernet (checked below).
                    let data = &epb.data[..epb.caplen as usize];
                    let packet = etherparse::SlicedPacket::from_ethernet(data).unwrap();
                    if let Some(etherparse::TransportSlice::Tcp(tcp)) = packet.transport {
                        *sums.entry(tcp.source_port()).or_default() += tcp.payload().len() as u64;
                    }
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader.refill().unwrap(),
            Err(e) => panic!("{e:?}"),
        }
    }
    sums
}

#[test]
fn each_fixture_is_one_complete_opc_ua_connection() {
    for path in fixtures() {
        let name = path.display().to_string();
        let (events, err) = read_streams(&path).unwrap();
        assert!(err.is_none(), "{name}: {err:?}");

        let opens: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Open {
                    conn,
                    client,
                    server,
                    syn_seen,
                    guess,
                    ..
                } => Some((*conn, *client, *server, *syn_seen, *guess)),
                _ => None,
            })
            .collect();
        assert_eq!(opens.len(), 1, "{name}");
        let (conn, client, server, syn_seen, guess) = opens[0];
        assert_eq!(conn, ConnId(0));
        assert!(syn_seen, "{name}");
        assert_eq!(guess, ClientGuess::Syn);
        assert!(client.ip().is_loopback() && server.ip().is_loopback());
        assert!((48400..48500).contains(&server.port()), "{name}: {server}");

        let mut client_bytes = Vec::new();
        let mut server_bytes = Vec::new();
        let mut last_ts = None;
        for e in &events {
            if let Some(prev) = last_ts {
                assert!(e.ts() >= prev, "{name}: time went backwards");
            }
            last_ts = Some(e.ts());
            match e {
                StreamEvent::Data {
                    dir,
                    bytes,
                    offset_in_stream,
                    ..
                } => {
                    let s = match dir {
                        Direction::AToB => &mut client_bytes,
                        Direction::BToA => &mut server_bytes,
                    };
                    assert_eq!(*offset_in_stream, s.len() as u64);
                    s.extend_from_slice(bytes);
                }
                StreamEvent::Gap { .. } => panic!("{name}: unexpected gap {e:?}"),
                _ => {}
            }
        }
        assert_eq!(&client_bytes[..4], b"HELF", "{name}");
        assert_eq!(&server_bytes[..4], b"ACKF", "{name}");
        // The HEL's own size field (u32 LE at 4) is consistent with what followed.
        let hel_len = u32::from_le_bytes(client_bytes[4..8].try_into().unwrap()) as usize;
        assert!(hel_len >= 32 && hel_len < client_bytes.len());

        let expected = payload_bytes_by_src_port(&path);
        assert_eq!(
            expected.get(&client.port()).copied(),
            Some(client_bytes.len() as u64),
            "{name}"
        );
        assert_eq!(
            expected.get(&server.port()).copied(),
            Some(server_bytes.len() as u64),
            "{name}"
        );

        match events.last() {
            Some(StreamEvent::Close { reason, .. }) => {
                assert_eq!(*reason, CloseReason::Fin, "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn fixture_byte_counts_match_tshark() {
    // From `tshark -r FILE -T fields -e tcp.srcport -e tcp.len` (TShark 4.0.17), summed.
    let known: &[(&str, u64, u64)] = &[
        ("basic-none.pcapng", 4266, 7903),
        ("basic-none-rev.pcapng", 4739, 5936),
        ("big-publish.pcapng", 108_786, 1_950_558),
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    for (file, client_total, server_total) in known {
        let mut reader = StreamReader::open(dir.join(file)).unwrap();
        assert_eq!(reader.capture().format(), CaptureFormat::PcapNg);
        let mut totals = [0u64; 2];
        reader
            .for_each_event(|e| {
                if let StreamEvent::Data { dir, bytes, .. } = e {
                    totals[usize::from(dir == Direction::BToA)] += bytes.len() as u64;
                }
            })
            .unwrap();
        assert_eq!(totals, [*client_total, *server_total], "{file}");
        let stats = reader.tcp_stats();
        assert_eq!(stats.gaps, 0, "{file}");
        assert_eq!(stats.connections, 1, "{file}");
        assert_eq!(
            reader.decode_stats().packets,
            reader.decode_stats().tcp_segments
        );
    }
}

#[test]
fn basic_none_details() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/basic-none.pcapng");
    let mut reader = CaptureReader::open(&path).unwrap();
    let mut n = 0;
    let mut first_ts = None;
    while let Some(p) = reader.next_packet().unwrap() {
        assert_eq!(p.link_type, uatap_recorder::LinkType::ETHERNET);
        first_ts.get_or_insert(p.ts);
        n += 1;
    }
    assert_eq!(n, 126);
    // if_tsresol 9 in this capture: nanoseconds, some time after 2020.
    assert!(first_ts.unwrap().unix_nanos > 1_577_836_800_000_000_000);

    let (events, _) = read_streams(&path).unwrap();
    match &events[0] {
        StreamEvent::Open { server, .. } => assert_eq!(server.port(), 48401),
        e => panic!("{e:?}"),
    }
    // The client closes (FIN first).
    assert!(matches!(
        events.last(),
        Some(StreamEvent::Close {
            by: Some(Direction::AToB),
            reason: CloseReason::Fin,
            ..
        })
    ));
}
