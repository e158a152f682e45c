use super::*;
use etherparse::{Ipv4Header, Ipv6Header, TcpHeader};

fn flow_sink() -> PcapngWriter<Vec<u8>> {
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    w.add_interface(&InterfaceDescription::ethernet("lo", "test"))
        .unwrap();
    w
}

/// Splits a pcapng byte string into (type, whole block) pairs, checking both lengths.
fn blocks(bytes: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let ty = u32::from_le_bytes(rest[0..4].try_into().unwrap());
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        assert_eq!(len % 4, 0);
        let trailer = u32::from_le_bytes(rest[len - 4..len].try_into().unwrap()) as usize;
        assert_eq!(len, trailer);
        out.push((ty, &rest[..len]));
        rest = &rest[len..];
    }
    out
}

/// The frames of all EPBs (Ethernet stripped).
fn ip_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
    blocks(bytes)
        .into_iter()
        .filter(|(ty, _)| *ty == EPB_TYPE)
        .map(|(_, b)| {
            let caplen = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
            b[28 + 14..28 + caplen].to_vec()
        })
        .collect()
}

#[test]
fn section_header_layout() {
    let w = PcapngWriter::new(Vec::new()).unwrap();
    let bytes = w.finish().unwrap();
    let b = blocks(&bytes);
    assert_eq!(b.len(), 1);
    let shb = b[0].1;
    assert_eq!(&shb[0..4], &[0x0A, 0x0D, 0x0D, 0x0A]);
    assert_eq!(&shb[8..12], &[0x4D, 0x3C, 0x2B, 0x1A]);
    assert_eq!(&shb[12..16], &[1, 0, 0, 0]);
    assert_eq!(&shb[16..24], &[0xFF; 8]);
    let appl = USER_APPLICATION.as_bytes();
    assert!(shb.windows(appl.len()).any(|w| w == appl));
    assert!(USER_APPLICATION.starts_with("uatap "));
}

#[test]
fn interface_and_packet_layout() {
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    let id = w
        .add_interface(&InterfaceDescription::ethernet("eth0", "listener"))
        .unwrap();
    assert_eq!(id, InterfaceId(0));
    let ts = Timestamp::from_unix_nanos(0x1234_5678_9ABC_DEF0);
    w.write_packet(id, ts, &[1, 2, 3], &["hé"]).unwrap();
    let bytes = w.finish().unwrap();
    let b = blocks(&bytes);
    assert_eq!(b.len(), 3);
    let (ty, idb) = b[1];
    assert_eq!(ty, IDB_TYPE);
    #[rustfmt::skip]
    let expected: &[u8] = &[
        1, 0, 0, 0, 52, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0,
        2, 0, 4, 0, b'e', b't', b'h', b'0',
        3, 0, 8, 0, b'l', b'i', b's', b't', b'e', b'n', b'e', b'r',
        9, 0, 1, 0, 9, 0, 0, 0,
        0, 0, 0, 0,
        52, 0, 0, 0,
    ];
    assert_eq!(idb, expected);
    let (ty, epb) = b[2];
    assert_eq!(ty, EPB_TYPE);
    #[rustfmt::skip]
    let expected: &[u8] = &[
        6, 0, 0, 0, 48, 0, 0, 0,
        0, 0, 0, 0,
        0x78, 0x56, 0x34, 0x12, 0xF0, 0xDE, 0xBC, 0x9A,
        3, 0, 0, 0, 3, 0, 0, 0,
        1, 2, 3, 0,
        1, 0, 3, 0, b'h', 0xC3, 0xA9, 0,
        0, 0, 0, 0,
        48, 0, 0, 0,
    ];
    assert_eq!(epb, expected);
}

#[test]
fn decryption_secrets_layout() {
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    w.write_decryption_secrets(SECRETS_TYPE_OPCUA_KEY_LOG, b"abcde")
        .unwrap();
    let bytes = w.finish().unwrap();
    let (ty, dsb) = blocks(&bytes)[1];
    assert_eq!(ty, DSB_TYPE);
    assert_eq!(&dsb[8..12], b"LKAU");
    assert_eq!(&dsb[12..16], &[5, 0, 0, 0]);
    assert_eq!(&dsb[16..24], b"abcde\0\0\0");
    assert_eq!(dsb.len(), 28);
}

#[test]
fn timestamps_never_go_back() {
    let mut w = flow_sink();
    let t = |n| Timestamp::from_unix_nanos(n);
    w.write_packet(InterfaceId(0), t(1_000), &[0], &[]).unwrap();
    w.write_packet(InterfaceId(0), t(500), &[0], &[]).unwrap();
    assert_eq!(w.last_timestamp(), t(1_000));
    w.write_packet(InterfaceId(0), t(2_000), &[0], &[]).unwrap();
    w.write_packet(InterfaceId(0), t(-5), &[0], &[]).unwrap();
    let bytes = w.finish().unwrap();
    let times: Vec<u64> = blocks(&bytes)
        .into_iter()
        .filter(|(ty, _)| *ty == EPB_TYPE)
        .map(|(_, b)| {
            let hi = u32::from_le_bytes(b[12..16].try_into().unwrap());
            let lo = u32::from_le_bytes(b[16..20].try_into().unwrap());
            (u64::from(hi) << 32) | u64::from(lo)
        })
        .collect();
    assert_eq!(times, [1_000, 1_000, 2_000, 2_000]);
}

#[test]
fn long_comment_is_cut_at_a_character_boundary() {
    let text = "é".repeat(40_000);
    let cut = truncate_utf8(&text, MAX_OPTION_LEN);
    assert_eq!(cut.len(), 65_534);
    let mut w = flow_sink();
    w.write_packet(InterfaceId(0), Timestamp::default(), &[0], &[&text])
        .unwrap();
    let bytes = w.finish().unwrap();
    let (_, epb) = *blocks(&bytes).last().unwrap();
    assert_eq!(&epb[32..36], &[1, 0, 0xFE, 0xFF]);
}

#[test]
fn bad_calls_are_refused() {
    let mut w = flow_sink();
    assert!(matches!(
        w.write_packet(InterfaceId(1), Timestamp::default(), &[0], &[]),
        Err(WriteError::UnknownInterface { id: 1 })
    ));
    let big = vec![0; MAX_FRAME_LEN + 1];
    let err = w
        .write_packet(InterfaceId(0), Timestamp::default(), &big, &[])
        .unwrap_err();
    assert!(matches!(err, WriteError::FrameTooLarge { .. }));
    assert!(!err.stops_recording());
    // Still usable.
    w.write_packet(InterfaceId(0), Timestamp::default(), &[0], &[])
        .unwrap();

    let v4: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::1]:4840".parse().unwrap();
    assert!(matches!(
        TcpFlowWriter::new(InterfaceId(0), v4, v6),
        Err(WriteError::MixedAddressFamilies { .. })
    ));
    let mapped: SocketAddr = "[::ffff:10.0.0.2]:4840".parse().unwrap();
    let f = TcpFlowWriter::new(InterfaceId(0), v4, mapped).unwrap();
    assert_eq!(f.server().to_string(), "10.0.0.2:4840");

    let mut f = TcpFlowWriter::new(InterfaceId(0), v4, "10.0.0.2:4840".parse().unwrap()).unwrap();
    let ts = Timestamp::default();
    f.open(&mut w, ts, None).unwrap();
    assert!(matches!(
        f.open(&mut w, ts, None),
        Err(WriteError::FlowState { .. })
    ));
    f.fin(&mut w, Direction::AToB, ts, None).unwrap();
    assert!(f
        .data(&mut w, Direction::AToB, ts, b"x", None)
        .is_err_and(|e| !e.stops_recording()));
    f.data(&mut w, Direction::BToA, ts, b"late reply", None)
        .unwrap();
    f.rst(&mut w, Direction::BToA, ts, None).unwrap();
    assert!(f.is_closed());
    assert!(f.data(&mut w, Direction::BToA, ts, b"x", None).is_err());

    let mut raw_only = PcapngWriter::new(Vec::new()).unwrap();
    raw_only
        .add_interface(&InterfaceDescription {
            link_type: LinkType::LINUX_SLL,
            name: String::new(),
            description: String::new(),
        })
        .unwrap();
    assert!(matches!(
        f.clone().open(&mut raw_only, ts, None),
        Err(WriteError::FlowState { .. })
    ));
    let mut g = TcpFlowWriter::new(InterfaceId(0), v4, mapped).unwrap();
    assert!(matches!(
        g.open(&mut raw_only, ts, None),
        Err(WriteError::UnsupportedLinkType { .. })
    ));
}

/// Checks every packet's checksums with etherparse, returning (flags, seq, ack, payload len).
fn check_packets(bytes: &[u8]) -> Vec<(u8, u32, u32, usize)> {
    ip_packets(bytes)
        .iter()
        .map(|ip| {
            let (tcp, payload, flags_byte) = if ip[0] >> 4 == 4 {
                let (h, rest) = Ipv4Header::from_slice(ip).unwrap();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                assert_eq!(usize::from(h.total_len), ip.len());
                let (tcp, payload) = TcpHeader::from_slice(rest).unwrap();
                assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&h, payload).unwrap());
                (tcp, payload.len(), rest[13])
            } else {
                let (h, rest) = Ipv6Header::from_slice(ip).unwrap();
                assert_eq!(usize::from(h.payload_length), rest.len());
                let (tcp, payload) = TcpHeader::from_slice(rest).unwrap();
                assert_eq!(tcp.checksum, tcp.calc_checksum_ipv6(&h, payload).unwrap());
                (tcp, payload.len(), rest[13])
            };
            (
                flags_byte,
                tcp.sequence_number,
                tcp.acknowledgment_number,
                payload,
            )
        })
        .collect()
}

#[test]
fn sequence_numbers_and_checksums() {
    for (client, server) in [
        ("192.168.1.10:50000", "192.168.1.20:4840"),
        ("[fe80::1]:50001", "[2001:db8::20]:4840"),
    ] {
        let mut w = flow_sink();
        let mut f = TcpFlowWriter::with_isn(
            InterfaceId(0),
            client.parse().unwrap(),
            server.parse().unwrap(),
            0xFFFF_FFF0,
            1000,
        )
        .unwrap();
        let ts = Timestamp::from_unix_nanos(1_700_000_000_000_000_000);
        f.open(&mut w, ts, Some("open")).unwrap();
        f.data(&mut w, Direction::AToB, ts, &[7; 33], None).unwrap();
        f.data(&mut w, Direction::BToA, ts, &[8; 140_001], None)
            .unwrap();
        f.fin(&mut w, Direction::BToA, ts, None).unwrap();
        f.fin(&mut w, Direction::AToB, ts, None).unwrap();
        let c = 0xFFFF_FFF0u32;
        let m = MAX_SEGMENT_PAYLOAD as u32;
        let got = check_packets(&w.finish().unwrap());
        let expected = vec![
            (SYN, c, 0, 0),
            (SYN | ACK, 1000, c + 1, 0),
            (ACK, c + 1, 1001, 0),
            (PSH | ACK, c + 1, 1001, 33),
            (PSH | ACK, 1001, c.wrapping_add(34), MAX_SEGMENT_PAYLOAD),
            // The client acknowledges before the server exceeds the 64 KiB window.
            (ACK, c.wrapping_add(34), 1001 + m, 0),
            (PSH | ACK, 1001 + m, c.wrapping_add(34), MAX_SEGMENT_PAYLOAD),
            (ACK, c.wrapping_add(34), 1001 + 2 * m, 0),
            (
                PSH | ACK,
                1001 + 2 * m,
                c.wrapping_add(34),
                140_001 - 2 * MAX_SEGMENT_PAYLOAD,
            ),
            (FIN | ACK, 141_002, c.wrapping_add(34), 0),
            (FIN | ACK, c.wrapping_add(34), 141_003, 0),
            (ACK, 141_003, c.wrapping_add(35), 0),
        ];
        assert_eq!(got, expected, "{client}");
        assert_eq!(f.next_seq(Direction::AToB), c.wrapping_add(35));
        assert!(f.is_closed());
    }
}

#[test]
fn checksum_matches_rfc1071_example() {
    // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded), checksum 220d.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(internet_checksum(sum_words(&data, 0)), !0xddf2);
    // Odd length: the last byte is the high half of a word.
    assert_eq!(sum_words(&[0x12, 0x34, 0x56], 0), 0x1234 + 0x5600);
}

#[test]
fn word_sum_equals_the_plain_sum_of_words() {
    // The plain definition: big-endian 16-bit words, a last odd byte as the high half.
    let plain = |data: &[u8], acc: u64| {
        let mut acc = acc;
        for w in data.chunks(2) {
            acc += u64::from(w[0]) << 8 | w.get(1).map_or(0, |b| u64::from(*b));
        }
        acc
    };
    // All ones is the worst case for the lanes; long enough to fold them more than once.
    let ones = vec![0xFFu8; 600_001];
    assert_eq!(sum_words(&ones, 7), plain(&ones, 7));
    let mixed: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 1_000, 65_535, 70_000] {
        let d = &mixed[..len];
        assert_eq!(sum_words(d, 3), plain(d, 3), "length {len}");
    }
}

#[test]
fn payload_sum_gives_the_same_checksums_as_the_word_sum() {
    let mixed: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    // All ones fills the lanes fastest; past 128 KiB they are folded more than once.
    let ones = vec![0xFFu8; 300_001];
    for data in [&mixed[..], &ones[..]] {
        for len in [
            0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 63, 1_001, 65_535, 70_000, 131_072, 131_105,
            300_001,
        ] {
            let d = &data[..len.min(data.len())];
            for pseudo in [0u64, 6, 0x1_2345, 0xFFFF] {
                assert_eq!(
                    internet_checksum(pseudo + payload_sum(d)),
                    internet_checksum(sum_words(d, pseudo)),
                    "length {len}, pseudo {pseudo:#x}"
                );
            }
        }
    }
}

#[test]
fn write_buffer_writes_the_same_whole_blocks_later() {
    let client: SocketAddr = "10.0.0.1:50000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:4840".parse().unwrap();
    let write = |w: &mut PcapngWriter<Vec<u8>>, f: &mut TcpFlowWriter, from: usize, to: usize| {
        for i in from..to {
            f.data(
                w,
                Direction::AToB,
                Timestamp::from_unix_micros(i as i64),
                &[i as u8; 300],
                None,
            )
            .unwrap();
        }
    };
    let mut plain = flow_sink();
    let mut f = TcpFlowWriter::new(InterfaceId(0), client, server).unwrap();
    write(&mut plain, &mut f, 0, 10);
    let mut buffered = flow_sink();
    let header_len = buffered.get_ref().len();
    buffered.set_write_buffer(1_000).unwrap();
    let mut f = TcpFlowWriter::new(InterfaceId(0), client, server).unwrap();
    write(&mut buffered, &mut f, 0, 2);
    // Two blocks of 300 bytes and more are over the limit of 1000 only with the third.
    assert_eq!(buffered.get_ref().len(), header_len);
    write(&mut buffered, &mut f, 2, 3);
    let written = buffered.get_ref().len();
    assert!(written > header_len);
    assert_eq!(blocks(buffered.get_ref()).len(), 2 + 3, "whole blocks only");
    write(&mut buffered, &mut f, 3, 10);
    buffered.flush().unwrap();
    assert_eq!(buffered.get_ref().len() as u64, buffered.bytes_written());
    assert!(buffered.finish().unwrap() == plain.finish().unwrap());
}

#[test]
fn raw_link_type_has_no_ethernet_header() {
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    let id = w
        .add_interface(&InterfaceDescription {
            link_type: LinkType::RAW,
            name: "raw".into(),
            description: String::new(),
        })
        .unwrap();
    let mut f = TcpFlowWriter::new(
        id,
        "[::1]:50000".parse().unwrap(),
        "[::1]:4840".parse().unwrap(),
    )
    .unwrap();
    f.data(&mut w, Direction::AToB, Timestamp::default(), b"x", None)
        .unwrap();
    let bytes = w.finish().unwrap();
    let (_, epb) = *blocks(&bytes).last().unwrap();
    assert_eq!(epb[28] >> 4, 6);
    assert_eq!(&epb[20..24], &[61, 0, 0, 0]);
}

/// Accepts `limit` bytes, then fails like a full disk.
struct FullDisk {
    data: Vec<u8>,
    limit: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.data.len();
        if room == 0 {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        let n = room.min(buf.len());
        self.data.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn full_disk_is_reported_and_stops_writing() {
    let mut w = PcapngWriter::new(FullDisk {
        data: Vec::new(),
        limit: 200,
    })
    .unwrap();
    w.add_interface(&InterfaceDescription::ethernet("lo", ""))
        .unwrap();
    let before = w.bytes_written();
    let err = w
        .write_packet(InterfaceId(0), Timestamp::default(), &[0; 300], &[])
        .unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(err.stops_recording());
    assert!(err.to_string().starts_with("disk full"), "{err}");
    assert_eq!(w.bytes_written(), before);
    assert!(matches!(
        w.write_packet(InterfaceId(0), Timestamp::default(), &[0], &[]),
        Err(WriteError::Stopped)
    ));
}

#[test]
fn a_full_disk_keeps_the_whole_blocks_of_a_buffered_write_that_fit() {
    let mut w = PcapngWriter::new(FullDisk {
        data: Vec::new(),
        limit: 1000,
    })
    .unwrap();
    w.add_interface(&InterfaceDescription::ethernet("lo", ""))
        .unwrap();
    w.set_write_buffer(1 << 20).unwrap();
    let start = w.bytes_written();
    let mut ends = Vec::new();
    for _ in 0..20 {
        w.write_packet(InterfaceId(0), Timestamp::default(), &[7; 100], &[])
            .unwrap();
        ends.push(w.bytes_written());
    }
    let err = w.flush().unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    // The last whole block that fits in 1000 bytes, not the blocks of the last good flush.
    let fit = ends.iter().copied().filter(|&e| e <= 1000).max().unwrap();
    assert!(fit > start, "some packets fit");
    assert_eq!(w.flushed, fit);
    assert_eq!(whole_blocks_within(&[], 10), 0);
}

#[test]
fn dev_full_is_disk_full() {
    let file = File::options().write(true).open("/dev/full").unwrap();
    let err = PcapngWriter::new(file).unwrap_err();
    assert!(err.is_disk_full(), "{err:?}");
}

#[test]
fn dumpcap_file_names() {
    let cfg = RotationConfig {
        max_size_bytes: Some(1000),
        max_files: None,
    };
    let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    assert_eq!(
        file_name(Path::new("/tmp/rec.pcapng"), &cfg, 7, t),
        Path::new("/tmp/rec_00007_20231114221320.pcapng")
    );
    assert_eq!(
        file_name(Path::new("out"), &cfg, 123_456, t),
        Path::new("out_123456_20231114221320")
    );
    assert_eq!(
        file_name(
            Path::new("/tmp/rec.pcapng"),
            &RotationConfig::default(),
            1,
            t
        ),
        Path::new("/tmp/rec.pcapng")
    );
    assert_eq!(utc_compact(0), "19700101000000");
    assert_eq!(utc_compact(951_782_400), "20000229000000");
    assert_eq!(utc_compact(4_102_444_799), "20991231235959");
}

#[test]
fn flows_write_through_a_trait_object() {
    let mut w = flow_sink();
    let sink: &mut dyn PacketSink = &mut w;
    let mut f = TcpFlowWriter::new(
        InterfaceId(0),
        "10.0.0.1:50000".parse().unwrap(),
        "10.0.0.2:4840".parse().unwrap(),
    )
    .unwrap();
    f.open(sink, Timestamp::default(), None).unwrap();
    f.data(sink, Direction::AToB, Timestamp::default(), b"abc", None)
        .unwrap();
    assert_eq!(w.packets_written(), 4);
}

#[test]
fn payload_with_sums_computed_earlier_writes_the_same_packets() {
    let client: SocketAddr = "10.0.0.1:50000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:4840".parse().unwrap();
    // Over one segment's size, so that there are two sums.
    let bytes: Vec<u8> = (0..MAX_SEGMENT_PAYLOAD + 777)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let other = vec![0xABu8; 100];
    let write = |payload: &Payload<'_>| {
        let mut w = flow_sink();
        let mut f = TcpFlowWriter::new(InterfaceId(0), client, server).unwrap();
        let ts = Timestamp::from_unix_micros(5);
        f.data_payload(&mut w, Direction::AToB, ts, payload, None)
            .unwrap();
        f.data_headers_only(&mut w, Direction::BToA, ts, payload, None)
            .unwrap();
        w.finish().unwrap()
    };
    let plain = write(&Payload::new(&bytes));
    assert_eq!(
        write(&Payload::with_sums(&bytes, PayloadSums::of(&bytes))),
        plain,
        "the sums handed over are the ones it would compute"
    );
    // Sums of other bytes (another length) are not used: computed again from the bytes.
    assert_eq!(
        write(&Payload::with_sums(&bytes, PayloadSums::of(&other))),
        plain
    );
    // The checksums are right: etherparse recomputes them for each data segment.
    let mut checked = 0;
    for (kind, epb) in blocks(&plain) {
        if kind != 6 {
            continue;
        }
        let cap = u32::from_le_bytes(epb[20..24].try_into().unwrap()) as usize;
        let frame = &epb[28..28 + cap];
        let ip = Ipv4Header::from_slice(&frame[14..]).unwrap().0;
        let (tcp, rest) = TcpHeader::from_slice(&frame[14 + ip.header_len()..]).unwrap();
        if rest.is_empty() {
            continue;
        }
        assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&ip, rest).unwrap());
        checked += 1;
    }
    assert_eq!(checked, 2, "both segments of the client's leg checked");
}

/// A recording file that writes spliced payloads as direct I/O would: it takes the writer's
/// buffer from an aligned place, checks that every splice lies aligned in memory and length
/// as the device needs, and joins the pieces.
#[derive(Debug)]
struct SplicingFile {
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    splices: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    align: usize,
}

impl Write for SplicingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RecordFile for SplicingFile {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.out.lock().unwrap().truncate(len as usize);
        Ok(())
    }
    fn blocks_start(&mut self, buf: &mut Vec<u8>, capacity: usize) -> Option<usize> {
        if buf.capacity() < capacity + 4096 {
            *buf = Vec::with_capacity(capacity + 4096);
        }
        buf.clear();
        let start = buf.as_ptr().align_offset(4096);
        buf.resize(start, 0);
        Some(start)
    }
    fn write_blocks(&mut self, buf: &mut Vec<u8>, start: usize) -> io::Result<()> {
        self.write_blocks_spliced(buf, start, Vec::new())
    }
    fn splice_alignment(&self) -> Option<usize> {
        Some(self.align)
    }
    fn write_blocks_spliced(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        splices: Vec<Splice>,
    ) -> io::Result<()> {
        let mut out = self.out.lock().unwrap();
        let mut from = start;
        for s in &splices {
            assert_eq!(
                (s.at - start) % self.align,
                0,
                "the bytes before a splice end aligned"
            );
            assert_eq!(
                s.bytes.as_ptr() as usize % self.align,
                0,
                "spliced bytes lie aligned"
            );
            assert_eq!(
                s.bytes.len() % self.align,
                0,
                "spliced bytes are whole units"
            );
            out.extend_from_slice(&buf[from..s.at]);
            out.extend_from_slice(&s.bytes);
            from = s.at;
        }
        out.extend_from_slice(&buf[from..]);
        assert_eq!(
            (out.len() - buf.len() + start) % 4,
            0,
            "whole blocks were written"
        );
        self.splices
            .fetch_add(splices.len(), std::sync::atomic::Ordering::Relaxed);
        buf.clear();
        Ok(())
    }
}

/// `data` in a shared buffer, placed as a proxy's read buffer places what it reads.
fn shared_as_read(data: &[u8]) -> Bytes {
    let mut v = vec![0u8; data.len() + 8192];
    let off = (SPLICE_PAYLOAD_OFFSET + 4096 - v.as_ptr() as usize % 4096) % 4096;
    v[off..off + data.len()].copy_from_slice(data);
    let b = Bytes::from(v).slice(off..off + data.len());
    assert_eq!(b.as_ptr() as usize % 4096, SPLICE_PAYLOAD_OFFSET);
    b
}

#[test]
fn spliced_payloads_make_the_same_blocks_as_copied_ones() {
    let payloads: Vec<Vec<u8>> = [
        2 * MAX_SEGMENT_PAYLOAD + 1234,
        5000,
        2100,
        100,
        70_000,
        4098,
    ]
    .iter()
    .enumerate()
    .map(|(n, &len)| (0..len).map(|i| (i * 13 + n * 7) as u8).collect())
    .collect();
    let client: SocketAddr = "10.0.0.1:50000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:4840".parse().unwrap();
    let proxy: SocketAddr = "[2001:db8::3]:50001".parse().unwrap();
    let upstream: SocketAddr = "[2001:db8::2]:4840".parse().unwrap();
    // Both legs of a proxied connection, the second with headers only every other time;
    // `shared`: the payloads as read buffers, else plain slices.
    let write = |w: &mut dyn PacketSink, shared: bool| {
        let mut a = TcpFlowWriter::new(InterfaceId(0), client, server).unwrap();
        let mut b = TcpFlowWriter::new(InterfaceId(0), proxy, upstream).unwrap();
        a.open(w, Timestamp::from_unix_micros(1), Some("open"))
            .unwrap();
        b.open(w, Timestamp::from_unix_micros(1), None).unwrap();
        for (n, data) in payloads.iter().enumerate() {
            let ts = Timestamp::from_unix_micros(10 + n as i64);
            let dir = if n % 3 == 1 {
                Direction::AToB
            } else {
                Direction::BToA
            };
            let comment = format!("event {n}: {}", "x".repeat(n * 37));
            let owner = shared_as_read(data);
            let payload = if shared {
                Payload::shared(&owner, None)
            } else {
                Payload::new(data)
            };
            a.data_payload(w, dir, ts, &payload, Some(&comment))
                .unwrap();
            if n % 2 == 0 {
                b.data_payload(w, dir, ts, &payload, None).unwrap();
            } else {
                b.data_headers_only(w, dir, ts, &payload, None).unwrap();
            }
        }
        a.fin(w, Direction::AToB, Timestamp::from_unix_micros(99), None)
            .unwrap();
    };
    let mut plain = flow_sink();
    write(&mut plain, false);
    let plain = plain.finish().unwrap();

    for align in [512, 4096] {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let splices = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let file = SplicingFile {
            out: out.clone(),
            splices: splices.clone(),
            align,
        };
        let mut w = PcapngWriter::for_record_file(Box::new(file)).unwrap();
        w.add_interface(&InterfaceDescription::ethernet("lo", "test"))
            .unwrap();
        // Small, so that the blocks go out in several writes.
        w.set_write_buffer(100_000).unwrap();
        write(&mut w, true);
        let written = w.bytes_written();
        w.finish().unwrap();
        let spliced = out.lock().unwrap().clone();
        assert_eq!(
            written,
            spliced.len() as u64,
            "bytes_written counts spliced bytes"
        );
        let fillers = blocks(&spliced)
            .iter()
            .filter(|(kind, _)| *kind == FILLER_BLOCK_TYPE)
            .count();
        let kept: Vec<(u32, &[u8])> = blocks(&spliced)
            .into_iter()
            .filter(|(kind, _)| *kind != FILLER_BLOCK_TYPE)
            .collect();
        assert_eq!(kept, blocks(&plain), "align {align}: the same blocks");
        // Segments with 2 KiB or more (and at least one unit) from their first aligned byte
        // on are spliced, on each leg that carries them: 512: both legs of segments 1 and 2
        // of the first payload (not its 1234-byte third), of 2100 (2048 from the second byte)
        // and of both segments of 70,000 bytes, and the client's leg of 5000 and of 4098
        // bytes; 4096: not the 2100 bytes (no whole unit).
        let n = splices.load(std::sync::atomic::Ordering::Relaxed);
        let expected = if align == 512 { 12 } else { 10 };
        assert_eq!(n, expected, "align {align}: splices");
        assert!(
            fillers > 0 && fillers <= n,
            "align {align}: {fillers} fillers"
        );
    }
}

#[test]
fn join_splices_puts_each_before_its_byte() {
    let splice = |at: usize, b: &'static [u8]| Splice {
        at,
        bytes: Bytes::from_static(b),
    };
    // The collected bytes start at index 10 of the writer's buffer.
    let joined = join_splices(
        b"abcdef",
        10,
        &[
            splice(10, b"<"),
            splice(12, b"XY"),
            splice(15, b"Z"),
            splice(16, b">"),
        ],
    );
    assert_eq!(joined, b"<abXYcdeZf>");
    assert_eq!(join_splices(b"abc", 0, &[]), b"abc");
}
