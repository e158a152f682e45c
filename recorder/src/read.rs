//! Reading pcap and pcapng captures packet by packet.
//!
//! [`CaptureReader`] frames the file itself (so it knows every block's byte offset and can tell a
//! clean end from a cut one) and hands each complete block to `pcap-parser`. It keeps one
//! growable buffer and lends each packet's bytes from it: no allocation per packet.

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use pcap_parser::pcapng::{
    parse_enhancedpacketblock_be, parse_enhancedpacketblock_le, parse_interfacedescriptionblock_be,
    parse_interfacedescriptionblock_le, parse_sectionheaderblock, parse_simplepacketblock_be,
    parse_simplepacketblock_le, InterfaceDescriptionBlock,
};
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{
    parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header,
    LegacyPcapBlock, PcapError,
};

use crate::error::RecorderError;
use crate::time::Timestamp;

/// First buffer size; small captures (and the many tiny inputs of tests and fuzzing) stay
/// cheap.
const INITIAL_BUFFER: usize = 64 << 10;
/// The buffer doubles up to this size, so big captures are read in large chunks.
const READ_CHUNK: usize = 1 << 20;

/// Default upper bound for one pcap record or pcapng block; a larger length field is treated as
/// corruption instead of an allocation request.
pub const DEFAULT_MAX_BLOCK_LEN: usize = 64 << 20;

const SHB_MAGIC: u32 = 0x0A0D_0D0A;
const IDB_MAGIC: u32 = 0x0000_0001;
const SPB_MAGIC: u32 = 0x0000_0003;
const EPB_MAGIC: u32 = 0x0000_0006;
const PCAP_HEADER_LEN: usize = 24;

/// A link-layer header type (LINKTYPE_* value) as found in a pcap header or pcapng IDB; an open
/// set, so unknown values are kept and reported instead of rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: 4-byte address family in the writer's byte order, then IP.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II, possibly with 802.1Q / 802.1ad VLAN tags.
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP as written by some BSDs in pcap headers (DLT_RAW = 12); same as [`LinkType::RAW`].
    pub const RAW_BSD: LinkType = LinkType(12);
    /// Raw IP as written by OpenBSD in pcap headers (DLT_RAW = 14); same as [`LinkType::RAW`].
    pub const RAW_OPENBSD: LinkType = LinkType(14);
    /// Raw IPv4 or IPv6, the version nibble decides.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network byte order, then IP.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux "cooked" capture v1 (`tcpdump -i any`), 16-byte header.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4 only.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6 only.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux "cooked" capture v2 (newer `tcpdump -i any`), 20-byte header.
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// The LINKTYPE_ name, for messages; `None` for types this crate does not decode.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            LinkType::NULL => "NULL",
            LinkType::ETHERNET => "ETHERNET",
            LinkType::RAW_BSD | LinkType::RAW_OPENBSD | LinkType::RAW => "RAW",
            LinkType::LOOP => "LOOP",
            LinkType::LINUX_SLL => "LINUX_SLL",
            LinkType::IPV4 => "IPV4",
            LinkType::IPV6 => "IPV6",
            LinkType::LINUX_SLL2 => "LINUX_SLL2",
            _ => return None,
        })
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "LINKTYPE {}", self.0),
        }
    }
}

/// Which file format the capture uses, so callers can report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap file.
    Pcap {
        /// Record timestamps count nanoseconds (magic 0xA1B23C4D) instead of microseconds.
        nanosecond: bool,
        /// The file was written big-endian.
        big_endian: bool,
    },
    /// pcapng file (any number of sections and interfaces).
    PcapNg,
}

/// One captured packet, borrowed from the reader's buffer until the next call.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// Link type of the interface the packet was captured on; tells how to find the IP header.
    pub link_type: LinkType,
    /// pcapng interface id within its section (0 for pcap).
    pub interface: u32,
    /// Length on the wire; larger than `data.len()` when the capture cut the packet (snaplen).
    pub orig_len: u32,
    /// Byte offset of the packet's record or block in the file, for error reports.
    pub file_offset: u64,
    /// The captured bytes, starting with the link-layer header.
    pub data: &'a [u8],
}

/// What the reader skipped without failing, so a report can say why packets are missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Packets handed out.
    pub packets: u64,
    /// pcapng packet blocks naming an interface that no IDB of the section declared.
    pub unknown_interface: u64,
    /// pcapng blocks of other types (statistics, name resolution, secrets, custom …).
    pub other_blocks: u64,
}

/// Timestamp conversion for one pcapng interface.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: LinkType,
    /// Timestamp units per second (if_tsresol).
    units_per_sec: u64,
    /// Seconds to add to every timestamp (if_tsoffset).
    offset_secs: i64,
}

#[derive(Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        nanosecond: bool,
        /// Kuznetzov's patched format with 24-byte record headers.
        modified: bool,
        link_type: LinkType,
    },
    PcapNg {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// Where the packet found by [`CaptureReader::next_packet`] lies, gathered without keeping a
/// borrow of the buffer across the loop.
struct Found {
    ts: Timestamp,
    link_type: LinkType,
    interface: u32,
    orig_len: u32,
    file_offset: u64,
    data_start: usize,
    data_len: usize,
}

/// Reads a pcap or pcapng capture from any `Read`, one packet at a time, reporting how the file
/// ends (cleanly or cut, with the byte offset) so earlier packets remain usable.
pub struct CaptureReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// First unconsumed byte in `buf`.
    start: usize,
    /// End of valid data in `buf`.
    end: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    eof: bool,
    /// Set after the end or an error: later calls return `Ok(None)`.
    done: bool,
    format: Format,
    max_block_len: usize,
    stats: ReaderStats,
}

impl<R> fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("offset", &self.offset())
            .field("format", &self.format())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl CaptureReader<File> {
    /// Opens a capture file and reads its header; the usual entry point of the `uatap` binary.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RecorderError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| RecorderError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        CaptureReader::new(file)
    }
}

impl<R> CaptureReader<R> {
    /// Changes the largest record or block accepted (default [`DEFAULT_MAX_BLOCK_LEN`]); bigger
    /// length fields are reported as [`RecorderError::Invalid`].
    pub fn set_max_block_len(&mut self, max_block_len: usize) {
        self.max_block_len = max_block_len.max(64);
    }

    /// The detected file format.
    #[must_use]
    pub fn format(&self) -> CaptureFormat {
        match self.format {
            Format::Pcap {
                big_endian,
                nanosecond,
                ..
            } => CaptureFormat::Pcap {
                nanosecond,
                big_endian,
            },
            Format::PcapNg { .. } => CaptureFormat::PcapNg,
        }
    }

    /// Byte offset in the file of the next record or block to read.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.buf_offset + self.start as u64
    }

    /// Counters of what was read or skipped so far.
    #[must_use]
    pub fn stats(&self) -> ReaderStats {
        self.stats
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header from `reader` and detects pcap (µs/ns, either byte order) or
    /// pcapng; fails on anything else. The reader does its own buffering.
    pub fn new(reader: R) -> Result<Self, RecorderError> {
        let mut this = CaptureReader {
            reader,
            buf: Vec::new(),
            start: 0,
            end: 0,
            buf_offset: 0,
            eof: false,
            done: false,
            format: Format::PcapNg {
                big_endian: false,
                interfaces: Vec::new(),
            },
            max_block_len: DEFAULT_MAX_BLOCK_LEN,
            stats: ReaderStats::default(),
        };
        let avail = this.fill(4)?;
        let magic = match this.available().get(..4) {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => return Err(this.truncated("capture file header", 4, avail)),
        };
        if u32::from_le_bytes(magic) == SHB_MAGIC {
            // pcapng: the section header is handled like every other block, but read now, so
            // a file that cannot yield even that fails to open like a cut pcap header does.
            return match this.next_pcapng_block()? {
                Some(_) => Ok(this),
                None => Err(this.truncated("pcapng section header block", 12, avail)),
            };
        }
        let avail = this.fill(PCAP_HEADER_LEN)?;
        let header = match this.available().get(..PCAP_HEADER_LEN) {
            Some(bytes) => match parse_pcap_header(bytes) {
                Ok((_, header)) => header,
                Err(_) => return Err(RecorderError::UnknownFormat { magic }),
            },
            None if is_pcap_magic(magic) => {
                return Err(this.truncated("pcap file header", PCAP_HEADER_LEN, avail))
            }
            None => return Err(RecorderError::UnknownFormat { magic }),
        };
        // The top bits of the link type field may carry FCS information.
        let link_type = LinkType((header.network.0 as u32) & 0xFFFF);
        this.format = Format::Pcap {
            big_endian: header.is_bigendian(),
            nanosecond: header.is_nanosecond_precision(),
            modified: header.is_modified_format(),
            link_type,
        };
        this.consume(PCAP_HEADER_LEN);
        Ok(this)
    }

    /// Returns the next packet, `Ok(None)` at the clean end of the file, or the error that stops
    /// reading (after which every call returns `Ok(None)`). Packets before the error stay valid.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, RecorderError> {
        if self.done {
            return Ok(None);
        }
        let found = match self.find_packet() {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        let end = found.data_start.saturating_add(found.data_len);
        let data = self.buf.get(found.data_start..end).unwrap_or_default();
        self.stats.packets += 1;
        Ok(Some(Packet {
            ts: found.ts,
            link_type: found.link_type,
            interface: found.interface,
            orig_len: found.orig_len,
            file_offset: found.file_offset,
            data,
        }))
    }

    /// Reads blocks until one holds a packet; the packet's bytes stay in `buf` (consumed but
    /// not overwritten) until the next fill.
    fn find_packet(&mut self) -> Result<Option<Found>, RecorderError> {
        match self.format {
            Format::Pcap {
                big_endian,
                nanosecond,
                modified,
                link_type,
            } => self.find_pcap_packet(big_endian, nanosecond, modified, link_type),
            Format::PcapNg { .. } => self.find_pcapng_packet(),
        }
    }

    fn find_pcap_packet(
        &mut self,
        big_endian: bool,
        nanosecond: bool,
        modified: bool,
        link_type: LinkType,
    ) -> Result<Option<Found>, RecorderError> {
        let header_len = if modified { 24 } else { 16 };
        let avail = self.fill(header_len)?;
        if avail == 0 {
            return Ok(None);
        }
        let caplen = match self.available().get(8..12) {
            Some(&[a, b, c, d]) if avail >= header_len => {
                if big_endian {
                    u32::from_be_bytes([a, b, c, d])
                } else {
                    u32::from_le_bytes([a, b, c, d])
                }
            }
            _ => return Err(self.truncated("pcap record header", header_len, avail)),
        };
        let caplen = usize::try_from(caplen).unwrap_or(usize::MAX);
        if caplen > self.max_block_len {
            return Err(self.invalid(
                "pcap record header",
                "captured length larger than the record size limit",
            ));
        }
        let record_len = header_len + caplen;
        let avail = self.fill(record_len)?;
        let record = match self.available().get(..record_len) {
            Some(record) => record,
            None => return Err(self.truncated("pcap packet record", record_len, avail)),
        };
        let parse = if modified {
            parse_pcap_frame_modified
        } else if big_endian {
            parse_pcap_frame_be
        } else {
            parse_pcap_frame
        };
        let block: LegacyPcapBlock<'_> = match parse(record) {
            Ok((_, block)) => block,
            Err(_) => return Err(self.invalid("pcap packet record", "rejected by the parser")),
        };
        let frac = i64::from(block.ts_usec);
        let nanos = if nanosecond {
            frac
        } else {
            frac.saturating_mul(1_000)
        };
        let found = Found {
            ts: Timestamp::from_secs_nanos(i64::from(block.ts_sec), nanos),
            link_type,
            interface: 0,
            orig_len: block.origlen,
            file_offset: self.offset(),
            data_start: self.start + header_len,
            data_len: block.data.len(),
        };
        self.consume(record_len);
        Ok(Some(found))
    }

    fn find_pcapng_packet(&mut self) -> Result<Option<Found>, RecorderError> {
        while let Some(found) = self.next_pcapng_block()? {
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Reads and consumes one pcapng block: `None` at the clean end of the input, else the
    /// packet it holds, if any.
    fn next_pcapng_block(&mut self) -> Result<Option<Option<Found>>, RecorderError> {
        let avail = self.fill(12)?;
        if avail == 0 {
            return Ok(None);
        }
        let head = match self.available().get(..12) {
            Some(&[t0, t1, t2, t3, l0, l1, l2, l3, b0, b1, b2, b3]) => {
                ([t0, t1, t2, t3], [l0, l1, l2, l3], [b0, b1, b2, b3])
            }
            // The smallest block is 12 bytes.
            _ => return Err(self.truncated("pcapng block header", 12, avail)),
        };
        let (type_bytes, len_bytes, bom) = head;
        let section_big_endian = match &self.format {
            Format::PcapNg { big_endian, .. } => *big_endian,
            Format::Pcap { .. } => false,
        };
        let block_type_le = u32::from_le_bytes(type_bytes);
        let big_endian = if block_type_le == SHB_MAGIC {
            match u32::from_le_bytes(bom) {
                0x1A2B_3C4D => false,
                0x4D3C_2B1A => true,
                _ => {
                    return Err(
                        self.invalid("pcapng section header block", "unknown byte-order magic")
                    )
                }
            }
        } else {
            section_big_endian
        };
        let (block_type, block_len) = if big_endian {
            (
                u32::from_be_bytes(type_bytes),
                u32::from_be_bytes(len_bytes),
            )
        } else {
            (block_type_le, u32::from_le_bytes(len_bytes))
        };
        let block_len = usize::try_from(block_len).unwrap_or(usize::MAX);
        if block_len < 12 || block_len % 4 != 0 {
            return Err(self.invalid(
                "pcapng block",
                "block length is below 12 or not a multiple of 4",
            ));
        }
        if block_len > self.max_block_len {
            return Err(self.invalid("pcapng block", "block larger than the size limit"));
        }
        let avail = self.fill(block_len)?;
        let file_offset = self.offset();
        let found = {
            let block_end = self.start.saturating_add(block_len);
            let block = match self.buf.get(self.start..block_end) {
                Some(block) if block_end <= self.end => block,
                _ => return Err(self.truncated("pcapng block", block_len, avail)),
            };
            match block_type {
                SHB_MAGIC => match parse_sectionheaderblock(block) {
                    Ok((_, shb)) => {
                        let big_endian = shb.big_endian();
                        self.format = Format::PcapNg {
                            big_endian,
                            interfaces: Vec::new(),
                        };
                        None
                    }
                    Err(e) => return Err(self.nom_invalid("pcapng section header block", &e)),
                },
                IDB_MAGIC => {
                    let parsed = if big_endian {
                        parse_interfacedescriptionblock_be(block)
                    } else {
                        parse_interfacedescriptionblock_le(block)
                    };
                    let interface = match parsed {
                        Ok((_, idb)) => interface_from_idb(&idb, big_endian),
                        Err(e) => {
                            return Err(self.nom_invalid("pcapng interface description block", &e))
                        }
                    };
                    match interface {
                        Some(interface) => {
                            if let Format::PcapNg { interfaces, .. } = &mut self.format {
                                interfaces.push(interface);
                            }
                            None
                        }
                        None => {
                            return Err(self.invalid(
                                "pcapng interface description block",
                                "if_tsresol out of range",
                            ))
                        }
                    }
                }
                EPB_MAGIC => {
                    let parsed = if big_endian {
                        parse_enhancedpacketblock_be(block)
                    } else {
                        parse_enhancedpacketblock_le(block)
                    };
                    match parsed {
                        Ok((_, epb)) => {
                            let data = epb.packet_data();
                            let data_start = offset_in(&self.buf, data);
                            let data_len = data.len();
                            let ts_units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let (if_id, orig_len) = (epb.if_id, epb.origlen);
                            self.packet_on_interface(
                                if_id,
                                Some(ts_units),
                                orig_len,
                                file_offset,
                                data_start,
                                data_len,
                            )
                        }
                        Err(e) => return Err(self.nom_invalid("pcapng enhanced packet block", &e)),
                    }
                }
                SPB_MAGIC => {
                    let parsed = if big_endian {
                        parse_simplepacketblock_be(block)
                    } else {
                        parse_simplepacketblock_le(block)
                    };
                    match parsed {
                        Ok((_, spb)) => {
                            let data = spb.packet_data();
                            let data_start = offset_in(&self.buf, data);
                            let (data_len, orig_len) = (data.len(), spb.origlen);
                            self.packet_on_interface(
                                0,
                                None,
                                orig_len,
                                file_offset,
                                data_start,
                                data_len,
                            )
                        }
                        Err(e) => return Err(self.nom_invalid("pcapng simple packet block", &e)),
                    }
                }
                _ => {
                    self.stats.other_blocks += 1;
                    None
                }
            }
        };
        self.consume(block_len);
        Ok(Some(found))
    }

    /// Resolves a pcapng packet's interface and timestamp; `None` (and a count) when the
    /// interface was never declared.
    fn packet_on_interface(
        &mut self,
        interface: u32,
        ts_units: Option<u64>,
        orig_len: u32,
        file_offset: u64,
        data_start: usize,
        data_len: usize,
    ) -> Option<Found> {
        let iface = match &self.format {
            Format::PcapNg { interfaces, .. } => usize::try_from(interface)
                .ok()
                .and_then(|i| interfaces.get(i))
                .copied(),
            Format::Pcap { .. } => None,
        };
        let Some(iface) = iface else {
            self.stats.unknown_interface += 1;
            return None;
        };
        // Simple packet blocks carry no timestamp.
        let ts = ts_units.map_or(Timestamp::default(), |units| {
            pcapng_timestamp(units, iface.units_per_sec, iface.offset_secs)
        });
        Some(Found {
            ts,
            link_type: iface.link_type,
            interface,
            orig_len,
            file_offset,
            data_start,
            data_len,
        })
    }

    /// The unconsumed bytes.
    fn available(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
    }

    /// Makes at least `n` unconsumed bytes available unless the input ends first; returns how
    /// many are available.
    fn fill(&mut self, n: usize) -> Result<usize, RecorderError> {
        loop {
            let avail = self.end - self.start;
            if avail >= n || self.eof {
                return Ok(avail);
            }
            if self.end == self.buf.len() {
                // Full: move the unconsumed tail to the front, then grow. Growth doubles, so a
                // corrupt length field costs memory only as far as the input really goes.
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.buf_offset += self.start as u64;
                    self.end -= self.start;
                    self.start = 0;
                }
                let len = self.buf.len();
                if len < READ_CHUNK || self.end == len {
                    let new_len = (len * 2).max(INITIAL_BUFFER).min(READ_CHUNK.max(n));
                    if new_len > len {
                        self.buf.resize(new_len, 0);
                    }
                }
            }
            let space = self.buf.get_mut(self.end..).unwrap_or_default();
            match self.reader.read(space) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end = self.end.saturating_add(k).min(self.buf.len()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(RecorderError::Io {
                        offset: self.buf_offset + self.end as u64,
                        source,
                    })
                }
            }
        }
    }

    fn truncated(&self, structure: &'static str, needed: usize, available: usize) -> RecorderError {
        RecorderError::Truncated {
            offset: self.offset(),
            structure,
            needed: needed as u64,
            available: available as u64,
        }
    }

    fn invalid(&self, structure: &'static str, reason: &'static str) -> RecorderError {
        RecorderError::Invalid {
            offset: self.offset(),
            structure,
            reason,
        }
    }

    fn nom_invalid<I>(
        &self,
        structure: &'static str,
        e: &pcap_parser::nom::Err<PcapError<I>>,
    ) -> RecorderError {
        let reason = match e {
            // The parser saw the whole block, so "incomplete" means an inner length is too big.
            pcap_parser::nom::Err::Incomplete(_) => "an inner length exceeds the block",
            pcap_parser::nom::Err::Error(PcapError::HeaderNotRecognized)
            | pcap_parser::nom::Err::Failure(PcapError::HeaderNotRecognized) => {
                "header not recognized"
            }
            _ => "rejected by the parser",
        };
        self.invalid(structure, reason)
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<OwnedPacket, RecorderError>;

    /// Owned variant for convenience (tests, small files); allocates one `Vec` per packet.
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_packet() {
            Ok(Some(p)) => Some(Ok(OwnedPacket {
                ts: p.ts,
                link_type: p.link_type,
                interface: p.interface,
                orig_len: p.orig_len,
                file_offset: p.file_offset,
                data: p.data.to_vec(),
            })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// A [`Packet`] that owns its bytes, for callers that keep packets around (tests, tools that
/// sort or filter); the streaming path uses [`CaptureReader::next_packet`] instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedPacket {
    /// Capture time.
    pub ts: Timestamp,
    /// Link type of the capturing interface.
    pub link_type: LinkType,
    /// pcapng interface id within its section (0 for pcap).
    pub interface: u32,
    /// Length on the wire.
    pub orig_len: u32,
    /// Byte offset of the packet's record or block in the file.
    pub file_offset: u64,
    /// The captured bytes, starting with the link-layer header.
    pub data: Vec<u8>,
}

fn is_pcap_magic(magic: [u8; 4]) -> bool {
    matches!(
        u32::from_le_bytes(magic),
        0xA1B2_C3D4 | 0xA1B2_3C4D | 0xA1B2_CD34 | 0xD4C3_B2A1 | 0x4D3C_B2A1
    )
}

/// Position of `part` inside `whole` (`part` must have been sliced from it).
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// Reads link type, if_tsresol and if_tsoffset; `None` if the resolution is unusable.
fn interface_from_idb(idb: &InterfaceDescriptionBlock<'_>, big_endian: bool) -> Option<Interface> {
    let mut tsresol = 6u8;
    let mut offset_secs = 0i64;
    for opt in &idb.options {
        let Ok(value) = opt.as_bytes() else { continue };
        match opt.code.0 {
            9 => {
                if let Some(&v) = value.first() {
                    tsresol = v;
                }
            }
            14 => {
                if let Some(bytes) = value.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    offset_secs = if big_endian {
                        i64::from_be_bytes(bytes)
                    } else {
                        i64::from_le_bytes(bytes)
                    };
                }
            }
            _ => {}
        }
    }
    Some(Interface {
        link_type: LinkType(u32::from(idb.linktype.0 as u16)),
        units_per_sec: ts_units_per_sec(tsresol)?,
        offset_secs,
    })
}

/// Decodes if_tsresol: MSB clear → 10^-n s, MSB set → 2^-n s.
fn ts_units_per_sec(tsresol: u8) -> Option<u64> {
    let exp = u32::from(tsresol & 0x7F);
    let units = if tsresol & 0x80 == 0 {
        10u64.checked_pow(exp)?
    } else {
        1u64.checked_shl(exp)?
    };
    Some(units)
}

fn pcapng_timestamp(units: u64, units_per_sec: u64, offset_secs: i64) -> Timestamp {
    let nanos: i128 = match units_per_sec {
        1_000_000_000 => i128::from(units),
        1_000_000 => i128::from(units) * 1_000,
        0 => 0,
        per_sec => i128::from(units) * 1_000_000_000 / i128::from(per_sec),
    };
    let nanos = nanos + i128::from(offset_secs) * 1_000_000_000;
    let nanos = i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
    Timestamp::from_unix_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_decoding() {
        assert_eq!(ts_units_per_sec(6), Some(1_000_000));
        assert_eq!(ts_units_per_sec(9), Some(1_000_000_000));
        assert_eq!(ts_units_per_sec(0x80 | 10), Some(1024));
        assert_eq!(ts_units_per_sec(20), None);
        assert_eq!(ts_units_per_sec(0xFF), None);
    }

    #[test]
    fn pcapng_timestamps() {
        assert_eq!(
            pcapng_timestamp(1_500_000, 1_000_000, 0).unix_nanos,
            1_500_000_000
        );
        assert_eq!(
            pcapng_timestamp(7, 1_000_000_000, 1).unix_nanos,
            1_000_000_007
        );
        assert_eq!(pcapng_timestamp(512, 1024, 0).unix_nanos, 500_000_000);
        assert_eq!(pcapng_timestamp(u64::MAX, 1, 0).unix_nanos, i64::MAX);
    }

    #[test]
    fn rejects_garbage_and_short_input() {
        let err = CaptureReader::new(&b"hello world, this is not a capture"[..]).unwrap_err();
        assert!(matches!(err, RecorderError::UnknownFormat { magic } if &magic == b"hell"));
        let err = CaptureReader::new(&b"\x0a\x0d"[..]).unwrap_err();
        assert!(
            matches!(err, RecorderError::Truncated { offset: 0, .. }),
            "{err}"
        );
        let err = CaptureReader::new(&[0xD4u8, 0xC3, 0xB2, 0xA1, 2, 0][..]).unwrap_err();
        assert!(matches!(
            err,
            RecorderError::Truncated {
                needed: 24,
                available: 6,
                ..
            }
        ));
        let err = CaptureReader::new(&[][..]).unwrap_err();
        assert!(matches!(err, RecorderError::Truncated { available: 0, .. }));
    }

    #[test]
    fn pcapng_bad_block_length() {
        // SHB claiming 13 bytes.
        let mut bytes = vec![0x0A, 0x0D, 0x0D, 0x0A, 13, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A];
        bytes.extend_from_slice(&[0; 16]);
        // The section header is read at open: no reader to get packets from.
        let err = CaptureReader::new(&bytes[..]).unwrap_err();
        assert!(
            matches!(err, RecorderError::Invalid { offset: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn link_type_names() {
        assert_eq!(LinkType::LINUX_SLL2.to_string(), "LINUX_SLL2");
        assert_eq!(LinkType(147).to_string(), "LINKTYPE 147");
    }
}
