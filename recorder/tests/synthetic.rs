//! Hand-written captures of every supported format and link type, plus damaged files.

mod common;

use common::*;
use uatap_recorder::{
    read_streams, CaptureFormat, CaptureReader, ClientGuess, CloseReason, ConnId, Direction,
    LinkType, RecorderError, StreamEvent, StreamReader, Timestamp,
};

/// Runs the whole pipeline over in-memory bytes.
fn run(bytes: &[u8]) -> (Vec<StreamEvent<'static>>, Result<(), RecorderError>) {
    let mut reader = StreamReader::new(bytes).expect("capture header");
    let mut events = Vec::new();
    let result = reader.for_each_event(|e| events.push(e.into_owned()));
    (events, result)
}

/// Asserts the standard conversation came out complete and in order.
fn assert_conversation(bytes: &[u8], client: &str, server: &str) {
    let (events, result) = run(bytes);
    result.unwrap();
    let s = streams(&events);
    assert_eq!(s[&(ConnId(0), Direction::AToB)], CONV_CLIENT);
    assert_eq!(s[&(ConnId(0), Direction::BToA)], CONV_SERVER);
    match &events[0] {
        StreamEvent::Open {
            client: c,
            server: v,
            syn_seen,
            guess,
            ..
        } => {
            assert_eq!(c.to_string(), client);
            assert_eq!(v.to_string(), server);
            assert!(syn_seen);
            assert_eq!(*guess, ClientGuess::Syn);
        }
        e => panic!("{e:?}"),
    }
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Data { dir, bytes, .. } => {
                Some(format!("{dir:?} {}", String::from_utf8_lossy(bytes)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "AToB HELF hello",
            "BToA ACKF ack",
            "AToB MSGF request",
            "BToA MSGF response"
        ]
    );
    assert!(matches!(
        events.last(),
        Some(StreamEvent::Close {
            reason: CloseReason::Fin,
            by: Some(Direction::AToB),
            ..
        })
    ));
}

#[test]
fn pcap_microseconds_ethernet() {
    let f = frames(conversation(CLI, SRV).iter().map(|p| ethernet(p)).collect());
    let bytes = pcap(1, false, false, &f);
    assert_conversation(&bytes, CLI, SRV);
    let mut r = CaptureReader::new(&bytes[..]).unwrap();
    assert_eq!(
        r.format(),
        CaptureFormat::Pcap {
            nanosecond: false,
            big_endian: false
        }
    );
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(p.link_type, LinkType::ETHERNET);
    assert_eq!(p.file_offset, 24);
    // Microsecond file: the nanoseconds below a microsecond are lost.
    assert_eq!(p.ts, Timestamp::from_unix_micros(1_700_000_000_000_000));
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(p.ts, Timestamp::from_unix_micros(1_700_000_000_001_000));
}

#[test]
fn pcap_nanoseconds_and_big_endian() {
    for (nanosecond, big_endian) in [(true, false), (false, true), (true, true)] {
        let f = frames(conversation(CLI, SRV).iter().map(|p| ethernet(p)).collect());
        let bytes = pcap(1, nanosecond, big_endian, &f);
        assert_conversation(&bytes, CLI, SRV);
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        assert_eq!(
            r.format(),
            CaptureFormat::Pcap {
                nanosecond,
                big_endian
            }
        );
        let _ = r.next_packet().unwrap().unwrap();
        let p = r.next_packet().unwrap().unwrap();
        let expected = if nanosecond {
            1_700_000_000_001_000_123
        } else {
            1_700_000_000_001_000_000
        };
        assert_eq!(p.ts.unix_nanos, expected);
        assert_eq!(p.data.len(), f[1].data.len());
    }
}

#[test]
fn linux_cooked_v1_and_v2() {
    let conv = conversation(CLI, SRV);
    let v1 = pcap(
        113,
        false,
        false,
        &frames(conv.iter().map(|p| sll(p)).collect()),
    );
    assert_conversation(&v1, CLI, SRV);
    let v2 = pcapng(
        276,
        Some(9),
        &frames(conv.iter().map(|p| sll2(p)).collect()),
    );
    assert_conversation(&v2, CLI, SRV);
    let conv6 = conversation(CLI6, SRV6);
    let v2_6 = pcap(
        276,
        false,
        true,
        &frames(conv6.iter().map(|p| sll2(p)).collect()),
    );
    assert_conversation(&v2_6, CLI6, SRV6);
}

#[test]
fn raw_ip_link_types() {
    let conv = conversation(CLI, SRV);
    for link in [101, 12, 14, 228] {
        let bytes = pcap(link, false, false, &frames(conv.clone()));
        assert_conversation(&bytes, CLI, SRV);
    }
    let conv6 = conversation(CLI6, SRV6);
    for link in [101, 229] {
        let bytes = pcapng(link as u16, None, &frames(conv6.clone()));
        assert_conversation(&bytes, CLI6, SRV6);
    }
}

#[test]
fn ipv6_loopback_null_and_loop() {
    let conv6 = conversation(CLI6, SRV6);
    for family in [24, 28, 30] {
        let bytes = pcap(
            0,
            false,
            false,
            &frames(conv6.iter().map(|p| null_le(family, p)).collect()),
        );
        assert_conversation(&bytes, CLI6, SRV6);
    }
    // LOOP: family in network byte order.
    let conv = conversation(CLI, SRV);
    let frames_loop = frames(
        conv.iter()
            .map(|p| {
                let mut v = vec![0, 0, 0, 2];
                v.extend_from_slice(p);
                v
            })
            .collect(),
    );
    assert_conversation(&pcapng(108, None, &frames_loop), CLI, SRV);
}

#[test]
fn ipv6_extension_header_and_vlan() {
    let conv6 = conversation(CLI6, SRV6);
    let with_hop_by_hop: Vec<Vec<u8>> = conv6
        .iter()
        .map(|p| {
            let mut v = p[..40].to_vec();
            v[6] = 0; // next header: hop-by-hop options
            let plen = u16::from_be_bytes([v[4], v[5]]) + 8;
            v[4..6].copy_from_slice(&plen.to_be_bytes());
            v.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // -> TCP, PadN
            v.extend_from_slice(&p[40..]);
            v
        })
        .collect();
    let tagged: Vec<Vec<u8>> = with_hop_by_hop
        .iter()
        .map(|p| {
            let eth = ethernet(p);
            let mut v = eth[..12].to_vec();
            v.extend_from_slice(&[0x81, 0x00, 0x00, 0x2A]);
            v.extend_from_slice(&eth[12..]);
            v
        })
        .collect();
    assert_conversation(&pcapng(1, None, &frames(tagged)), CLI6, SRV6);
}

#[test]
fn pcapng_sections_interfaces_and_resolutions() {
    let conv = conversation(CLI, SRV);
    // Section 1 (LE): interface 0 Ethernet µs, interface 1 raw ns; packets alternate.
    let mut s1 = Section::new(false);
    s1.interface(Iface {
        link: 1,
        tsresol: None,
    })
    .interface(Iface {
        link: 101,
        tsresol: Some(9),
    });
    for (i, p) in conv.iter().take(5).enumerate() {
        if i % 2 == 0 {
            s1.packet(0, 1_700_000_000_000_000 + i as u64, &ethernet(p));
        } else {
            s1.packet(1, 1_700_000_000_000_000_000 + i as u64, p);
        }
        s1.other_block();
    }
    // Section 2 (BE): its own interface 0, Linux SLL2 with 2^-10 s units.
    let mut s2 = Section::new(true);
    s2.interface(Iface {
        link: 276,
        tsresol: Some(0x80 | 10),
    });
    for p in conv.iter().skip(5) {
        s2.packet(0, 1_700_000_001 * 1024 + 512, &sll2(p));
    }
    let mut bytes = s1.bytes().to_vec();
    bytes.extend_from_slice(s2.bytes());
    assert_conversation(&bytes, CLI, SRV);

    let packets: Vec<_> = CaptureReader::new(&bytes[..])
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(packets.len(), conv.len());
    assert_eq!(packets[0].link_type, LinkType::ETHERNET);
    assert_eq!(packets[0].ts.unix_nanos, 1_700_000_000_000_000_000);
    assert_eq!(packets[1].link_type, LinkType::RAW);
    assert_eq!(packets[1].interface, 1);
    assert_eq!(packets[1].ts.unix_nanos, 1_700_000_000_000_000_001);
    assert_eq!(packets[2].ts.unix_nanos, 1_700_000_000_000_002_000);
    assert_eq!(packets[5].link_type, LinkType::LINUX_SLL2);
    assert_eq!(packets[5].interface, 0);
    assert_eq!(packets[5].ts.unix_nanos, 1_700_000_001_500_000_000);
    let mut r = CaptureReader::new(&bytes[..]).unwrap();
    while r.next_packet().unwrap().is_some() {}
    assert_eq!(r.stats().other_blocks, 5);
    assert_eq!(r.stats().packets, conv.len() as u64);
}

#[test]
fn capture_started_mid_connection() {
    // No handshake; the first packet is the server's.
    let pkts = vec![
        ip_tcp(SRV, CLI, 5000, Some(7000), NONE, b"tail of response"),
        ip_tcp(CLI, SRV, 7000, Some(5016), NONE, b"next request"),
        ip_tcp(SRV, CLI, 5016, Some(7012), NONE, b"next response"),
    ];
    let (events, result) = run(&pcap(101, false, false, &frames(pkts)));
    result.unwrap();
    match &events[0] {
        StreamEvent::Open {
            client,
            syn_seen,
            guess,
            ..
        } => {
            assert_eq!(client.to_string(), CLI);
            assert!(!syn_seen);
            assert_eq!(*guess, ClientGuess::HigherPort);
        }
        e => panic!("{e:?}"),
    }
    let s = streams(&events);
    assert_eq!(s[&(ConnId(0), Direction::AToB)], b"next request");
    assert_eq!(
        s[&(ConnId(0), Direction::BToA)],
        b"tail of responsenext response"
    );
    assert!(matches!(
        events.last(),
        Some(StreamEvent::Close {
            reason: CloseReason::EndOfCapture,
            ..
        })
    ));
}

#[test]
fn retransmission_out_of_order_and_gap_in_a_file() {
    let pkts = vec![
        ip_tcp(CLI, SRV, 100, None, SYN, b""),
        ip_tcp(SRV, CLI, 900, Some(101), SYN, b""),
        ip_tcp(CLI, SRV, 101, Some(901), NONE, b"AAAA"),
        ip_tcp(CLI, SRV, 101, Some(901), NONE, b"AAAA"), // retransmission
        ip_tcp(CLI, SRV, 109, Some(901), NONE, b"CCCC"), // out of order
        ip_tcp(CLI, SRV, 105, Some(901), NONE, b"BBBB"), // fills the hole
        ip_tcp(SRV, CLI, 901, Some(113), NONE, b"ok"),
        ip_tcp(SRV, CLI, 907, Some(113), NONE, b"late"), // 903..907 missing
        ip_tcp(CLI, SRV, 113, Some(911), NONE, b"D"),    // acks past the hole
        ip_tcp(CLI, SRV, 114, Some(911), RST, b""),
    ];
    let bytes = pcapng(101, Some(9), &frames(pkts));
    let (events, result) = run(&bytes);
    result.unwrap();
    let s = streams(&events);
    assert_eq!(s[&(ConnId(0), Direction::AToB)], b"AAAABBBBCCCCD");
    assert_eq!(s[&(ConnId(0), Direction::BToA)], b"ok####late");
    let gaps: Vec<_> = events
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
        .collect();
    assert_eq!(gaps, [(Direction::BToA, 2, 4)]);
    assert!(matches!(
        events.last(),
        Some(StreamEvent::Close {
            reason: CloseReason::Rst,
            by: Some(Direction::AToB),
            ..
        })
    ));
    let mut reader = StreamReader::new(&bytes[..]).unwrap();
    reader.for_each_event(|_| {}).unwrap();
    let stats = reader.tcp_stats();
    assert_eq!(stats.retransmitted_bytes, 4);
    assert_eq!(stats.out_of_order_segments, 2); // "CCCC" and "late"
    assert_eq!((stats.gaps, stats.gap_bytes), (1, 4));
}

#[test]
fn truncated_files_keep_earlier_data() {
    let conv = conversation(CLI, SRV);
    let f = frames(conv.iter().map(|p| ethernet(p)).collect());
    // Cut inside the 7th packet (the server's "MSGF response").
    for (bytes, structure) in [
        (pcapng(1, None, &f), "pcapng block"),
        (pcap(1, false, false, &f), "pcap packet record"),
    ] {
        let mut offsets = Vec::new();
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        while let Some(p) = r.next_packet().unwrap() {
            offsets.push(p.file_offset);
        }
        let cut_block = offsets[6];
        let cut = &bytes[..cut_block as usize + 30];
        let (events, result) = run(cut);
        match result {
            Err(RecorderError::Truncated {
                offset,
                structure: s,
                available,
                ..
            }) => {
                assert_eq!(offset, cut_block);
                assert_eq!(s, structure);
                assert_eq!(available, 30);
            }
            other => panic!("{other:?}"),
        }
        let s = streams(&events);
        assert_eq!(s[&(ConnId(0), Direction::AToB)], b"HELF helloMSGF request");
        assert_eq!(s[&(ConnId(0), Direction::BToA)], b"ACKF ack");
        assert!(matches!(
            events.last(),
            Some(StreamEvent::Close {
                reason: CloseReason::EndOfCapture,
                ..
            })
        ));

        // Same through the file-based convenience API.
        let path = temp_file(&format!("cut-{structure}.cap").replace(' ', "-"), cut);
        let (events2, err) = read_streams(&path).unwrap();
        assert_eq!(events2, events);
        let err = err.expect("truncation error");
        assert_eq!(err.offset(), Some(cut_block));
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn file_cut_inside_its_header_fails_to_open() {
    let conv = conversation(CLI, SRV);
    let f = frames(conv.iter().map(|p| ethernet(p)).collect());
    let shb_len = Section::new(false).bytes().len();
    for (bytes, header_len) in [
        (pcapng(1, None, &f), shb_len),
        (pcap(1, false, false, &f), 24),
        (pcap(1, true, true, &f), 24),
    ] {
        // Every cut before the end of the file header (pcap) or the section header block
        // (pcapng, e.g. inside its 12-byte block header) holds nothing: an error at open.
        for len in 0..header_len {
            let cut = &bytes[..len];
            match StreamReader::new(cut) {
                Err(RecorderError::Truncated {
                    offset: 0,
                    available,
                    ..
                }) => assert_eq!(available, len as u64),
                other => panic!("cut at {len}: {other:?}"),
            }
            assert!(CaptureReader::new(cut).is_err(), "cut at {len}");
            let path = temp_file(&format!("header-cut-{len}-{header_len}.cap"), cut);
            let err = StreamReader::open(&path).unwrap_err();
            assert!(err.to_string().contains("truncated at byte 0"), "{err}");
            assert!(read_streams(&path).is_err(), "cut at {len}");
        }
        // The header alone is a valid, empty capture.
        let (events, result) = run(&bytes[..header_len]);
        assert!(events.is_empty());
        result.unwrap();
    }
}

#[test]
fn every_truncation_point_and_byte_flip_is_handled() {
    let conv = conversation(CLI, SRV);
    let f = frames(conv.iter().map(|p| ethernet(p)).collect());
    for bytes in [pcapng(1, Some(9), &f), pcap(1, true, true, &f)] {
        for len in 0..bytes.len() {
            if let Ok(mut reader) = StreamReader::new(&bytes[..len]) {
                let mut n = 0;
                let result = reader.for_each_event(|_| n += 1);
                if len < bytes.len() && result.is_ok() {
                    // Only a cut exactly at a record boundary reads cleanly.
                    let mut r = CaptureReader::new(&bytes[..len]).unwrap();
                    while r.next_packet().unwrap().is_some() {}
                    assert_eq!(r.offset(), len as u64);
                }
            }
        }
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2000 {
            let mut damaged = bytes.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % damaged.len() as u64) as usize;
                damaged[at] = (seed >> 32) as u8;
            }
            if let Ok(mut reader) = StreamReader::new(&damaged[..]) {
                let _ = reader.for_each_event(|_| {});
            }
        }
    }
}

#[test]
fn garbage_is_a_clear_error() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let err = StreamReader::new(&garbage[..]).unwrap_err();
    assert!(matches!(err, RecorderError::UnknownFormat { .. }), "{err}");
    assert!(err.to_string().contains("not a pcap or pcapng"));

    let path = temp_file("garbage.bin", &garbage);
    assert!(matches!(
        read_streams(&path),
        Err(RecorderError::UnknownFormat { .. })
    ));
    assert!(matches!(
        read_streams(path.with_extension("missing")),
        Err(RecorderError::Open { .. })
    ));

    // Valid pcapng header followed by garbage: one clear error at the first bad block.
    let mut bytes = Section::new(false).bytes().to_vec();
    let shb_len = bytes.len() as u64;
    bytes.extend_from_slice(&garbage);
    let (events, result) = run(&bytes);
    assert!(events.is_empty());
    let err = result.unwrap_err();
    assert_eq!(err.offset(), Some(shb_len), "{err}");

    // pcap with an absurd captured length.
    let mut bytes = pcap(1, false, false, &[]);
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0]);
    let err = run(&bytes).1.unwrap_err();
    assert!(
        matches!(err, RecorderError::Invalid { offset: 24, .. }),
        "{err}"
    );
}

#[test]
fn non_tcp_and_fragments_are_counted() {
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
        .udp(1, 2)
        .write(&mut udp, b"x")
        .unwrap();
    let mut frag = ip_tcp(CLI, SRV, 1, None, NONE, b"abcdef");
    frag[6] |= 0x20; // more fragments
    let arp = {
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&[0x08, 0x06]);
        v.extend_from_slice(&[0; 28]);
        v
    };
    let f = frames(vec![ethernet(&udp), ethernet(&frag), arp, vec![1, 2, 3]]);
    let bytes = pcap(1, false, false, &f);
    let mut reader = StreamReader::new(&bytes[..]).unwrap();
    let mut n = 0;
    reader.for_each_event(|_| n += 1).unwrap();
    assert_eq!(n, 0);
    let stats = reader.decode_stats();
    assert_eq!(
        (
            stats.packets,
            stats.not_tcp,
            stats.ip_fragments,
            stats.not_ip,
            stats.malformed
        ),
        (4, 1, 1, 1, 1)
    );
    let f = frames(vec![vec![0; 20]]);
    let bytes = pcap(147, false, false, &f);
    let mut reader = StreamReader::new(&bytes[..]).unwrap();
    reader.for_each_event(|_| {}).unwrap();
    assert_eq!(reader.decode_stats().unsupported_link_type, 1);
}

#[test]
fn port_reuse_in_a_file_gets_new_ids() {
    let mut pkts = conversation(CLI, SRV);
    let second: Vec<Vec<u8>> = vec![
        ip_tcp(CLI, SRV, 70_000, None, SYN, b""),
        ip_tcp(SRV, CLI, 80_000, Some(70_001), SYN, b""),
        ip_tcp(CLI, SRV, 70_001, Some(80_001), NONE, b"again"),
    ];
    pkts.extend(second);
    let (events, result) = run(&pcapng(101, None, &frames(pkts)));
    result.unwrap();
    let s = streams(&events);
    assert_eq!(s[&(ConnId(0), Direction::AToB)], CONV_CLIENT);
    assert_eq!(s[&(ConnId(1), Direction::AToB)], b"again");
    let opens = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Open { .. }))
        .count();
    assert_eq!(opens, 2);
}

/// Hands out the input in small, varying pieces, with interruptions, then optionally fails.
struct Trickle<'a> {
    data: &'a [u8],
    pos: usize,
    n: usize,
    fail_at: Option<usize>,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.n += 1;
        if self.n % 5 == 0 {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let end_limit = self.fail_at.unwrap_or(self.data.len());
        if self.pos >= end_limit && self.fail_at.is_some() {
            return Err(std::io::Error::other("disk on fire"));
        }
        let k = (self.n % 7 + 1).min(buf.len()).min(end_limit - self.pos);
        buf[..k].copy_from_slice(&self.data[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

#[test]
fn short_reads_and_read_errors() {
    let conv = conversation(CLI, SRV);
    let bytes = pcapng(1, None, &frames(conv.iter().map(|p| ethernet(p)).collect()));
    let mut reader = StreamReader::new(Trickle {
        data: &bytes,
        pos: 0,
        n: 0,
        fail_at: None,
    })
    .unwrap();
    let mut events = Vec::new();
    reader
        .for_each_event(|e| events.push(e.into_owned()))
        .unwrap();
    assert_eq!(events, run(&bytes).0);

    let fail_at = bytes.len() - 50;
    let mut reader = StreamReader::new(Trickle {
        data: &bytes,
        pos: 0,
        n: 0,
        fail_at: Some(fail_at),
    })
    .unwrap();
    let mut events = Vec::new();
    let err = reader
        .for_each_event(|e| events.push(e.into_owned()))
        .unwrap_err();
    assert!(
        matches!(err, RecorderError::Io { offset, .. } if offset == fail_at as u64),
        "{err}"
    );
    assert!(err.to_string().contains("disk on fire"));
    let s = streams(&events);
    assert_eq!(s[&(ConnId(0), Direction::AToB)], CONV_CLIENT);
}
