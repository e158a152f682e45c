//! Writing captures: pcapng blocks, synthesized TCP connections, dumpcap-style ring buffers.
//!
//! A live proxy sees byte streams, not packets. To let Wireshark and this crate's own reader
//! show what crossed the proxy, each proxied leg is recorded as a made-up TCP connection with
//! its real addresses: [`TcpFlowWriter`] turns opens, data, FIN and RST into Ethernet, IPv4/IPv6
//! and TCP frames with consistent sequence numbers and valid checksums, and hands them to a
//! [`PacketSink`]: a [`PcapngWriter`] over any `Write`, or a [`RotatingWriter`] that spreads
//! the recording over size-limited files like `dumpcap -b filesize:… -b files:…`.
//!
//! Every block is built in memory and written with one `write_all` followed by a flush, so a
//! recording cut short (crash, `kill -9`, full disk) still ends on a block boundary and opens
//! in every tool; there is nothing to finalize. With a write buffer
//! ([`PcapngWriter::set_write_buffer`], [`RotatingWriter::set_write_buffer`]) whole blocks are
//! collected in memory and written together, many per system call; what was collected but not
//! yet written is lost by a crash, and the file still ends on a block boundary. A file that
//! writes from memory it does not own ([`RecordFile::splice_alignment`], direct I/O) is handed
//! the payloads of shared buffers where they lie ([`Splice`]), between the collected bytes.
//!
//! Block layout: draft-ietf-opsawg-pcapng, sections 4.1 (SHB), 4.2 (IDB), 4.3 (EPB), 4.7 (DSB).

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::read::LinkType;
use crate::tcp::Direction;
use crate::time::Timestamp;

/// pcapng block type of the Section Header Block.
const SHB_TYPE: u32 = 0x0A0D_0D0A;
/// pcapng block type of the Interface Description Block.
const IDB_TYPE: u32 = 0x0000_0001;
/// pcapng block type of the Enhanced Packet Block.
const EPB_TYPE: u32 = 0x0000_0006;
/// pcapng block type of the Decryption Secrets Block.
const DSB_TYPE: u32 = 0x0000_000A;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;

/// Longest option value pcapng can carry (16-bit length field).
const MAX_OPTION_LEN: usize = 0xFFFF;

/// Largest frame [`PcapngWriter::write_packet`] accepts: Wireshark's standard maximum packet
/// size; bigger blocks are refused by readers.
pub const MAX_FRAME_LEN: usize = 262_144;

/// Block type of a filler block ([`write_filler_block`]): local use (high bit set), so every
/// pcapng reader skips it.
pub const FILLER_BLOCK_TYPE: u32 = 0x8000_0F11;

/// Smallest block pcapng allows: type, total length, total length again.
pub const MIN_BLOCK_LEN: usize = 12;

/// Fills `out` with one block that readers skip: a file written in aligned pieces (direct
/// I/O) ends on one until the next piece overwrites it, and still opens in every tool. `out`
/// must be at least [`MIN_BLOCK_LEN`] bytes and a multiple of 4; else nothing is written and
/// `false` returned.
pub fn write_filler_block(out: &mut [u8]) -> bool {
    let Ok(len) = u32::try_from(out.len()) else {
        return false;
    };
    if out.len() < MIN_BLOCK_LEN || out.len() % 4 != 0 {
        return false;
    }
    out.fill(0);
    let (head, rest) = out.split_at_mut(8);
    head[..4].copy_from_slice(&FILLER_BLOCK_TYPE.to_le_bytes());
    head[4..].copy_from_slice(&len.to_le_bytes());
    let end = rest.len() - 4;
    rest[end..].copy_from_slice(&len.to_le_bytes());
    true
}

/// Where a recording's bytes go: a plain [`File`], or a file the caller writes its own way
/// (the proxy writes around the page cache on Linux). Everything `write` accepted is in the
/// file when it returns, and the file then ends on a block boundary or on a filler block
/// ([`write_filler_block`]).
pub trait RecordFile: Write + Send + fmt::Debug {
    /// Cuts the file to `len` bytes: after an error, back to the last whole block.
    fn set_len(&mut self, len: u64) -> io::Result<()>;

    /// Readies an empty `buf` to collect the blocks of the next write (at least `capacity`
    /// bytes of them) and returns where they start in it: a file that writes from its own
    /// memory ([`write_blocks`]) wants them at a place of its choosing. `None` (the default):
    /// it does not, and takes bytes through [`Write`].
    ///
    /// [`write_blocks`]: RecordFile::write_blocks
    fn blocks_start(&mut self, buf: &mut Vec<u8>, capacity: usize) -> Option<usize> {
        let _ = (buf, capacity);
        None
    }

    /// Writes the whole blocks `buf[start..]` collected after [`blocks_start`], taking `buf`
    /// and leaving an empty one in its place. On an error nothing of them counts as written.
    ///
    /// [`blocks_start`]: RecordFile::blocks_start
    fn write_blocks(&mut self, buf: &mut Vec<u8>, start: usize) -> io::Result<()> {
        let done = buf.get(start..).map_or(Ok(()), |b| self.write_all(b));
        buf.clear();
        done
    }

    /// The alignment (a power of two) of memory and lengths in which this file writes bytes
    /// from where they lie, e.g. the payloads of packets still in the buffer they were read
    /// into ([`write_blocks_spliced`]); `None` (the default): it does not, and the writer
    /// copies every byte into its blocks.
    ///
    /// [`write_blocks_spliced`]: RecordFile::write_blocks_spliced
    fn splice_alignment(&self) -> Option<usize> {
        None
    }

    /// [`write_blocks`] of blocks whose bytes are `buf[start..]` with each of `splices` put in
    /// before `buf[splice.at]` (in order). The default joins them and writes the result.
    ///
    /// [`write_blocks`]: RecordFile::write_blocks
    fn write_blocks_spliced(
        &mut self,
        buf: &mut Vec<u8>,
        start: usize,
        splices: Vec<Splice>,
    ) -> io::Result<()> {
        if splices.is_empty() {
            return self.write_blocks(buf, start);
        }
        let joined = join_splices(buf.get(start..).unwrap_or(&[]), start, &splices);
        buf.clear();
        self.write_all(&joined)
    }
}

/// Bytes of a shared buffer that go into a file between the bytes a writer collected, where
/// they lie (no copy): see [`RecordFile::write_blocks_spliced`].
#[derive(Clone, Debug)]
pub struct Splice {
    /// Index, in the writer's buffer, of the byte these go before.
    pub at: usize,
    /// The bytes, a multiple of the file's [`splice_alignment`](RecordFile::splice_alignment)
    /// long and aligned to it in memory.
    pub bytes: Bytes,
}

/// `collected` (the bytes from index `start` of a writer's buffer) with `splices` put in: what
/// [`RecordFile::write_blocks_spliced`] writes, for a file that cannot write them where they lie.
#[must_use]
pub fn join_splices(collected: &[u8], start: usize, splices: &[Splice]) -> Vec<u8> {
    let spliced: usize = splices.iter().map(|s| s.bytes.len()).sum();
    let mut out = Vec::with_capacity(collected.len() + spliced);
    let mut from = 0usize;
    for s in splices {
        let at = s.at.saturating_sub(start).clamp(from, collected.len());
        out.extend_from_slice(collected.get(from..at).unwrap_or(&[]));
        out.extend_from_slice(&s.bytes);
        from = at;
    }
    out.extend_from_slice(collected.get(from..).unwrap_or(&[]));
    out
}

/// Where, in memory aligned to a file's [`splice_alignment`](RecordFile::splice_alignment)
/// (any power of two up to 4096), payload bytes are best read so that a writer can write them
/// uncopied: 2 bytes before an aligned address. A packet block's frame starts 4-byte aligned
/// in the file, and the 14-byte Ethernet header (plus IP and TCP headers, multiples of 4)
/// leaves its payload 2 bytes past such a boundary; the payload's first 2 bytes are then
/// copied, and the rest lies aligned.
pub const SPLICE_PAYLOAD_OFFSET: usize = 4096 - 2;

impl RecordFile for File {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// Creates (or truncates) one file of a recording: [`open_plain_file`], or the caller's own.
pub type OpenRecordFile = fn(&Path) -> io::Result<Box<dyn RecordFile>>;

/// Creates (or truncates) `path` as a plain [`File`].
pub fn open_plain_file(path: &Path) -> io::Result<Box<dyn RecordFile>> {
    Ok(Box::new(File::create(path)?))
}

/// Secrets type of an OPC UA key log in a Decryption Secrets Block ("UAKL"; Wireshark
/// `wiretap/secrets-types.h` `SECRETS_TYPE_OPCUA`).
pub const SECRETS_TYPE_OPCUA_KEY_LOG: u32 = 0x5541_4B4C;

/// What the Section Header Block names as the writing application (`shb_userappl`).
pub const USER_APPLICATION: &str = concat!("uatap ", env!("CARGO_PKG_VERSION"));

/// Why writing a recording failed. A proxy keeps forwarding traffic and stops recording on
/// any of the I/O variants; [`WriteError::is_disk_full`] tells a full disk apart so the
/// message can say so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// No space left on the device or the disk quota is exhausted (`ENOSPC`, `EDQUOT`).
    /// The file ends with the last whole block, or with a cut block if the output could not
    /// be trimmed (only [`RotatingWriter`] trims).
    #[error("disk full{}: {source}", in_path(path))]
    DiskFull {
        /// The file being written, when known.
        path: Option<PathBuf>,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Creating, writing or flushing the output failed for another reason.
    #[error("cannot write recording{}: {source}", in_path(path))]
    Io {
        /// The file being written, when known.
        path: Option<PathBuf>,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Deleting the oldest ring-buffer file failed; the new file was not started.
    #[error("cannot delete old recording {}: {source}", path.display())]
    Remove {
        /// The file that should have been deleted.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// An earlier write failed, so nothing more is appended: the output may end inside a block
    /// and more data would be unreadable.
    #[error("recording stopped after an earlier write error")]
    Stopped,
    /// A packet names an interface no Interface Description Block declared.
    #[error("unknown capture interface {id}")]
    UnknownInterface {
        /// The interface id given.
        id: u32,
    },
    /// [`TcpFlowWriter`] cannot build frames for this link type.
    #[error("cannot synthesize TCP packets for link type {}", link_type.0)]
    UnsupportedLinkType {
        /// The interface's link type.
        link_type: LinkType,
    },
    /// The frame is longer than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes is longer than {MAX_FRAME_LEN}")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
    },
    /// The two ends of a flow are IPv4 and IPv6 (and not an IPv4-mapped IPv6 address).
    #[error("flow {client} -> {server} mixes IPv4 and IPv6")]
    MixedAddressFamilies {
        /// The client address.
        client: SocketAddr,
        /// The server address.
        server: SocketAddr,
    },
    /// The call does not fit the flow's state (data after this side's FIN, anything after
    /// RST, a second open); nothing was written and the writer is still usable.
    #[error("TCP flow {client} -> {server}: {reason}")]
    FlowState {
        /// The flow's client address.
        client: SocketAddr,
        /// The flow's server address.
        server: SocketAddr,
        /// What was wrong.
        reason: &'static str,
    },
}

fn in_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

impl WriteError {
    /// True when the disk is full or the quota exhausted: the caller may tell the user to
    /// free space rather than report a bug.
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WriteError::DiskFull { .. })
    }

    /// True when the error broke the output: every later write returns
    /// [`WriteError::Stopped`]. False for mistakes in a call (unknown interface, flow state),
    /// after which writing can go on.
    #[must_use]
    pub fn stops_recording(&self) -> bool {
        matches!(
            self,
            WriteError::DiskFull { .. } | WriteError::Io { .. } | WriteError::Stopped
        )
    }

    fn from_io(source: io::Error, path: Option<PathBuf>) -> Self {
        if matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) {
            WriteError::DiskFull { path, source }
        } else {
            WriteError::Io { path, source }
        }
    }

    fn with_path(self, file: &Path) -> Self {
        match self {
            WriteError::DiskFull { path: None, source } => WriteError::DiskFull {
                path: Some(file.to_path_buf()),
                source,
            },
            WriteError::Io { path: None, source } => WriteError::Io {
                path: Some(file.to_path_buf()),
                source,
            },
            other => other,
        }
    }
}

/// The length of the whole blocks at the start of `blocks` that end within its first `n` bytes
/// (`blocks` holds whole blocks, as built by this writer).
fn whole_blocks_within(blocks: &[u8], n: usize) -> usize {
    let mut at = 0usize;
    while let Some(len) = blocks
        .get(at.saturating_add(4)..at.saturating_add(8))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_le_bytes(b) as usize)
    {
        let end = at.saturating_add(len);
        if len == 0 || end > n {
            break;
        }
        at = end;
    }
    at
}

/// Identifies an interface declared to a writer; pcapng numbers them from 0 in IDB order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceId(pub u32);

/// What an Interface Description Block declares. The proxy declares one per listener so a
/// capture shows which listener a connection came through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceDescription {
    /// How frames on this interface start. [`TcpFlowWriter`] builds frames for
    /// [`LinkType::ETHERNET`] (widest tool support), [`LinkType::RAW`], and
    /// [`LinkType::IPV4`]/[`LinkType::IPV6`].
    pub link_type: LinkType,
    /// `if_name`, e.g. the listener's address; empty means no option.
    pub name: String,
    /// `if_description`, free text; empty means no option.
    pub description: String,
}

impl InterfaceDescription {
    /// An Ethernet interface (fake MAC addresses), the link type every tool decodes.
    #[must_use]
    pub fn ethernet(name: impl Into<String>, description: impl Into<String>) -> Self {
        InterfaceDescription {
            link_type: LinkType::ETHERNET,
            name: name.into(),
            description: description.into(),
        }
    }
}

/// Where [`TcpFlowWriter`] puts its frames: one pcapng file ([`PcapngWriter`]) or a ring of
/// files ([`RotatingWriter`]). Flows are plain state and get the sink on every call, so any
/// number of flows share one output.
pub trait PacketSink {
    /// The link type of a declared interface, or `None` if it was never declared.
    fn link_type(&self, iface: InterfaceId) -> Option<LinkType>;

    /// Number of the file the next packet goes to; it changes when a rotating writer starts a
    /// new file, so a flow can note that it started in an earlier one. Always 0 for a single
    /// file.
    fn file_index(&self) -> u64;

    /// Writes one frame as an Enhanced Packet Block, each of `comments` as an `opt_comment`
    /// (cut to 65535 bytes at a character boundary). A `ts` earlier than the previous
    /// packet's is raised to it, so times never go backwards within a file.
    fn write_packet(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        frame: &[u8],
        comments: &[&str],
    ) -> Result<(), WriteError>;

    /// Like [`write_packet`](Self::write_packet) for the frame `head` followed by `payload`,
    /// which a sink may copy into its block without joining them first. `uncaptured` more
    /// bytes followed on the wire but are left out of the capture, as a snap length would:
    /// they count in the packet's original length only.
    fn write_packet_parts(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &[u8],
        uncaptured: usize,
        comments: &[&str],
    ) -> Result<(), WriteError>;

    /// [`write_packet_parts`](Self::write_packet_parts) of a payload that lies in a shared
    /// buffer: a sink whose file writes from memory it does not own
    /// ([`RecordFile::splice_alignment`]) may keep the buffer and write most of the payload
    /// from there instead of copying it. The default copies.
    fn write_packet_shared(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &Bytes,
        comments: &[&str],
    ) -> Result<(), WriteError> {
        self.write_packet_parts(iface, ts, head, payload, 0, comments)
    }
}

impl<S: PacketSink + ?Sized> PacketSink for &mut S {
    fn link_type(&self, iface: InterfaceId) -> Option<LinkType> {
        (**self).link_type(iface)
    }
    fn file_index(&self) -> u64 {
        (**self).file_index()
    }
    fn write_packet(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        frame: &[u8],
        comments: &[&str],
    ) -> Result<(), WriteError> {
        (**self).write_packet(iface, ts, frame, comments)
    }
    fn write_packet_parts(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &[u8],
        uncaptured: usize,
        comments: &[&str],
    ) -> Result<(), WriteError> {
        (**self).write_packet_parts(iface, ts, head, payload, uncaptured, comments)
    }
    fn write_packet_shared(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &Bytes,
        comments: &[&str],
    ) -> Result<(), WriteError> {
        (**self).write_packet_shared(iface, ts, head, payload, comments)
    }
}

/// Appends pcapng blocks to a block under construction in `buf`.
struct BlockBuilder<'a> {
    buf: &'a mut Vec<u8>,
    /// Where the block starts in `buf` (after the blocks already there).
    start: usize,
    has_options: bool,
    /// Bytes of the block that are not in `buf` but spliced in (see [`Splice`]).
    spliced: usize,
}

impl<'a> BlockBuilder<'a> {
    /// Starts a block at the end of `buf`.
    fn new(buf: &'a mut Vec<u8>, block_type: u32) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&block_type.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        BlockBuilder {
            buf,
            start,
            has_options: false,
            spliced: 0,
        }
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes_padded(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        let rem = self.buf.len() % 4;
        if rem != 0 {
            self.buf.resize(self.buf.len() + 4 - rem, 0);
        }
    }

    /// Adds an option; values longer than 65535 bytes are cut (callers cut text first).
    fn option(&mut self, code: u16, value: &[u8]) {
        let value = value.get(..MAX_OPTION_LEN).unwrap_or(value);
        self.u16(code);
        self.u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
        self.bytes_padded(value);
        self.has_options = true;
    }

    fn text_option(&mut self, code: u16, text: &str) {
        if !text.is_empty() {
            self.option(code, truncate_utf8(text, MAX_OPTION_LEN).as_bytes());
        }
    }

    /// Ends the options and fills in both length fields.
    fn finish(mut self) {
        if self.has_options {
            self.u16_pair_end();
        }
        let total = self.buf.len() - self.start + self.spliced + 4;
        let total32 = u32::try_from(total).unwrap_or(u32::MAX);
        if let Some(len) = self.buf.get_mut(self.start + 4..self.start + 8) {
            len.copy_from_slice(&total32.to_le_bytes());
        }
        self.buf.extend_from_slice(&total32.to_le_bytes());
    }

    fn u16_pair_end(&mut self) {
        self.u16(OPT_ENDOFOPT);
        self.u16(0);
    }
}

/// The longest prefix of `text` that fits `max` bytes without splitting a character.
fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Writes one pcapng section to any `Write`: SHB at creation, then IDBs, EPBs and DSBs, each
/// with a single `write_all` and a flush. Dropping it without [`finish`](Self::finish) loses
/// nothing that a write call reported as done, unless a write buffer was set
/// ([`set_write_buffer`](Self::set_write_buffer)): then the blocks collected since the last
/// write are lost.
pub struct PcapngWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    /// Whole blocks collected but not yet written (write buffer only), from `pending_start`.
    pending: Vec<u8>,
    /// Where the blocks start in `pending`; `Some` when the output takes the buffer itself
    /// ([`RecordFile::write_blocks`]).
    pending_start: Option<usize>,
    /// How to hand `pending` over to an output that takes it ([`RecordFile`]).
    hand_over: Option<HandOver<W>>,
    /// The output's [`RecordFile::splice_alignment`]: payloads in shared buffers are then
    /// spliced into `pending` rather than copied.
    splice_align: Option<usize>,
    /// Payload bytes that go between the bytes of `pending` (in order of `at`).
    splices: Vec<Splice>,
    /// Bytes of `splices`.
    spliced_bytes: usize,
    /// Write once this many bytes are collected; 0: write every block at once.
    buffer_limit: usize,
    /// Bytes of whole blocks handed to `out` without error.
    flushed: u64,
    interfaces: Vec<LinkType>,
    last_ts: Timestamp,
    bytes_written: u64,
    packets_written: u64,
    stopped: bool,
}

/// [`RecordFile::blocks_start`] and [`RecordFile::write_blocks`] of a writer's output, for the
/// generic [`PcapngWriter`].
struct HandOver<W> {
    start: fn(&mut W, &mut Vec<u8>, usize) -> Option<usize>,
    write: fn(&mut W, &mut Vec<u8>, usize, Vec<Splice>) -> io::Result<()>,
}

/// Splices collected at most before the blocks are written: each holds the buffer it lies in
/// until the write is done (a proxy's read buffer), and becomes an I/O vector of the write.
/// 64 are the payloads of 32 reads of 128 KiB, 4 MiB.
pub const MAX_SPLICES: usize = 64;

/// Payload bytes that are worth splicing rather than copying, at the least.
const MIN_SPLICE: usize = 2048;

impl PcapngWriter<Box<dyn RecordFile>> {
    /// [`new`](Self::new) for a recording file: the collected blocks go to it with
    /// [`RecordFile::write_blocks`], which may write them from where they were built (direct
    /// I/O without a copy).
    pub fn for_record_file(out: Box<dyn RecordFile>) -> Result<Self, WriteError> {
        let mut w = PcapngWriter::new(out)?;
        w.splice_align = w
            .out
            .splice_alignment()
            .filter(|a| a.is_power_of_two() && (4..=4096).contains(a));
        w.hand_over = Some(HandOver {
            start: |out, buf, capacity| out.blocks_start(buf, capacity),
            write: |out, buf, start, splices| out.write_blocks_spliced(buf, start, splices),
        });
        Ok(w)
    }
}

impl<W: Write> fmt::Debug for PcapngWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapngWriter")
            .field("interfaces", &self.interfaces)
            .field("last_ts", &self.last_ts)
            .field("bytes_written", &self.bytes_written)
            .field("packets_written", &self.packets_written)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl<W: Write> PcapngWriter<W> {
    /// Starts a section on `out` by writing the Section Header Block (little-endian, version
    /// 1.0, unknown section length, `shb_userappl` = [`USER_APPLICATION`]).
    pub fn new(out: W) -> Result<Self, WriteError> {
        let mut writer = PcapngWriter {
            out,
            buf: Vec::with_capacity(256),
            pending: Vec::new(),
            pending_start: None,
            hand_over: None,
            splice_align: None,
            splices: Vec::new(),
            spliced_bytes: 0,
            buffer_limit: 0,
            flushed: 0,
            interfaces: Vec::new(),
            last_ts: Timestamp::default(),
            bytes_written: 0,
            packets_written: 0,
            stopped: false,
        };
        let mut b = BlockBuilder::new(writer.target(), SHB_TYPE);
        b.u32(BYTE_ORDER_MAGIC);
        b.u16(1);
        b.u16(0);
        b.buf.extend_from_slice(&(-1i64).to_le_bytes());
        b.text_option(SHB_OS, std::env::consts::OS);
        b.text_option(SHB_USERAPPL, USER_APPLICATION);
        b.finish();
        writer.write_block(0)?;
        Ok(writer)
    }

    /// Declares an interface with an Interface Description Block (`if_tsresol` = 9, i.e.
    /// nanoseconds; snap length unlimited) and returns its id for packets.
    pub fn add_interface(
        &mut self,
        iface: &InterfaceDescription,
    ) -> Result<InterfaceId, WriteError> {
        let id = InterfaceId(u32::try_from(self.interfaces.len()).unwrap_or(u32::MAX));
        let start = self.target().len();
        let mut b = BlockBuilder::new(self.target(), IDB_TYPE);
        b.u16(u16::try_from(iface.link_type.0).unwrap_or(u16::MAX));
        b.u16(0);
        b.u32(0);
        b.text_option(IF_NAME, &iface.name);
        b.text_option(IF_DESCRIPTION, &iface.description);
        b.option(IF_TSRESOL, &[9]);
        b.finish();
        self.write_block(start)?;
        self.interfaces.push(iface.link_type);
        Ok(id)
    }

    /// Writes a Decryption Secrets Block, e.g. an OPC UA key log
    /// ([`SECRETS_TYPE_OPCUA_KEY_LOG`]); it must precede the packets it decrypts.
    pub fn write_decryption_secrets(
        &mut self,
        secrets_type: u32,
        data: &[u8],
    ) -> Result<(), WriteError> {
        let len =
            u32::try_from(data.len()).map_err(|_| WriteError::FrameTooLarge { len: data.len() })?;
        let start = self.target().len();
        let mut b = BlockBuilder::new(self.target(), DSB_TYPE);
        b.u32(secrets_type);
        b.u32(len);
        b.bytes_padded(data);
        b.finish();
        self.write_block(start)
    }

    /// Bytes of whole blocks written so far (the file size for a fresh file, once the write
    /// buffer is flushed).
    #[must_use]
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Collects whole blocks in memory and writes them once `limit` bytes are collected, or on
    /// [`flush`](Self::flush) or [`finish`](Self::finish); 0 (the default) writes every block
    /// at once. Fewer, larger writes for a busy recording; a crash loses what was collected.
    pub fn set_write_buffer(&mut self, limit: usize) -> Result<(), WriteError> {
        self.buffer_limit = limit;
        if limit == 0 {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the blocks collected by the write buffer (nothing without one).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        let start = self.pending_start.unwrap_or(0);
        if self.pending.len() <= start {
            return Ok(());
        }
        if self.stopped {
            return Err(WriteError::Stopped);
        }
        if let (Some(h), Some(start)) = (&self.hand_over, self.pending_start) {
            let len = (self.pending.len() - start + self.spliced_bytes) as u64;
            let splices = std::mem::take(&mut self.splices);
            self.spliced_bytes = 0;
            let result = (h.write)(&mut self.out, &mut self.pending, start, splices);
            self.pending.clear();
            self.pending_start = None;
            return match result {
                Ok(()) => {
                    self.flushed += len;
                    Ok(())
                }
                Err(e) => {
                    // Nothing of these blocks counts: the file is cut back to `flushed`.
                    self.stopped = true;
                    Err(WriteError::from_io(e, None))
                }
            };
        }
        // `write_all` by hand, to know how far a failed write got: the whole blocks before that
        // point count as flushed, so a full disk keeps every block that fit (the caller cuts
        // the file there), not only those of earlier flushes.
        let mut done = 0usize;
        let mut result = Ok(());
        while let Some(rest) = self.pending.get(done..).filter(|r| !r.is_empty()) {
            match self.out.write(rest) {
                Ok(0) => {
                    result = Err(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => done = done.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        match result.and_then(|()| self.out.flush()) {
            Ok(()) => {
                self.flushed += self.pending.len() as u64;
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                self.flushed += whole_blocks_within(&self.pending, done) as u64;
                self.stopped = true;
                Err(WriteError::from_io(e, None))
            }
        }
    }

    /// Enhanced Packet Blocks written so far.
    #[must_use]
    pub fn packets_written(&self) -> u64 {
        self.packets_written
    }

    /// The time of the last packet written (after clamping); the floor for the next one.
    #[must_use]
    pub fn last_timestamp(&self) -> Timestamp {
        self.last_ts
    }

    /// The output, e.g. to check a `Vec<u8>` in tests.
    #[must_use]
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Flushes and hands the output back. Optional without a write buffer: every block is
    /// already flushed.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.flush()?;
        self.out.flush().map_err(|e| WriteError::from_io(e, None))?;
        Ok(self.out)
    }

    /// Where the next block is built: at the end of the collected blocks with a write buffer,
    /// else in the (emptied) block buffer.
    fn target(&mut self) -> &mut Vec<u8> {
        if self.buffer_limit > 0 {
            if self.pending.is_empty() {
                if let Some(h) = &self.hand_over {
                    // Room for the limit and one more of the largest blocks.
                    let capacity = self.buffer_limit + MAX_FRAME_LEN + 2 * MAX_OPTION_LEN + 64;
                    self.pending_start = (h.start)(&mut self.out, &mut self.pending, capacity);
                }
            }
            &mut self.pending
        } else {
            &mut self.buf
        }
    }

    /// Writes the block just built at `start` of [`target`](Self::target) (with a write
    /// buffer: keeps it, and writes the collected blocks once there are enough).
    fn write_block(&mut self, start: usize) -> Result<(), WriteError> {
        if self.buffer_limit > 0 {
            // The splices of this block (the last ones) count with it.
            let spliced: usize = self
                .splices
                .iter()
                .rev()
                .take_while(|s| s.at > start)
                .map(|s| s.bytes.len())
                .sum();
            if self.stopped {
                self.pending.truncate(start);
                while self.splices.last().is_some_and(|s| s.at > start) {
                    self.splices.pop();
                }
                self.spliced_bytes -= spliced;
                return Err(WriteError::Stopped);
            }
            self.bytes_written += (self.pending.len() - start + spliced) as u64;
            let collected =
                self.pending.len() - self.pending_start.unwrap_or(0) + self.spliced_bytes;
            if collected >= self.buffer_limit || self.splices.len() >= MAX_SPLICES {
                return self.flush();
            }
            return Ok(());
        }
        if self.stopped {
            self.buf.clear();
            return Err(WriteError::Stopped);
        }
        let result = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush());
        let len = self.buf.len() as u64;
        self.buf.clear();
        match result {
            Ok(()) => {
                self.bytes_written += len;
                self.flushed = self.bytes_written;
                Ok(())
            }
            Err(e) => {
                self.stopped = true;
                Err(WriteError::from_io(e, None))
            }
        }
    }
}

impl<W: Write> PacketSink for PcapngWriter<W> {
    fn link_type(&self, iface: InterfaceId) -> Option<LinkType> {
        self.interfaces.get(iface.0 as usize).copied()
    }

    fn file_index(&self) -> u64 {
        0
    }

    fn write_packet(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        frame: &[u8],
        comments: &[&str],
    ) -> Result<(), WriteError> {
        self.write_packet_parts(iface, ts, frame, &[], 0, comments)
    }

    fn write_packet_parts(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &[u8],
        uncaptured: usize,
        comments: &[&str],
    ) -> Result<(), WriteError> {
        self.write_epb(iface, ts, head, payload, None, uncaptured, comments)
    }

    fn write_packet_shared(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &Bytes,
        comments: &[&str],
    ) -> Result<(), WriteError> {
        self.write_epb(iface, ts, head, payload, Some(payload), 0, comments)
    }
}

/// Where a payload is spliced into its packet block: see [`PcapngWriter::splice_plan`].
struct SplicePlan {
    /// Bytes of filler block written before the packet block.
    filler: usize,
    /// Payload bytes copied before the spliced ones.
    copied: usize,
    /// Payload bytes spliced.
    spliced: usize,
}

impl<W: Write> PcapngWriter<W> {
    #[allow(clippy::too_many_arguments)]
    fn write_epb(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &[u8],
        shared: Option<&Bytes>,
        uncaptured: usize,
        comments: &[&str],
    ) -> Result<(), WriteError> {
        if self.link_type(iface).is_none() {
            return Err(WriteError::UnknownInterface { id: iface.0 });
        }
        let frame_len = head.len() + payload.len();
        let orig_len = frame_len.saturating_add(uncaptured);
        if orig_len > MAX_FRAME_LEN {
            return Err(WriteError::FrameTooLarge { len: orig_len });
        }
        let ts = ts.max(self.last_ts);
        let units = u64::try_from(ts.unix_nanos).unwrap_or(0);
        let len = u32::try_from(frame_len).unwrap_or(u32::MAX);
        let orig_len = u32::try_from(orig_len).unwrap_or(u32::MAX);
        let start = self.target().len();
        let plan = shared.and_then(|b| self.splice_plan(head.len(), b));
        if let Some(plan) = &plan {
            let end = start + plan.filler;
            self.pending.resize(end, 0);
            if let Some(filler) = self.pending.get_mut(start..end) {
                write_filler_block(filler);
            }
        }
        let mut b = BlockBuilder::new(self.target(), EPB_TYPE);
        b.u32(iface.0);
        b.u32((units >> 32) as u32);
        b.u32(units as u32);
        b.u32(len);
        b.u32(orig_len);
        b.buf.extend_from_slice(head);
        let mut splice = None;
        match (&plan, shared) {
            (Some(plan), Some(shared)) => {
                let (before, rest) = payload.split_at(plan.copied);
                b.buf.extend_from_slice(before);
                splice = Some(Splice {
                    at: b.buf.len(),
                    bytes: shared.slice(plan.copied..plan.copied + plan.spliced),
                });
                b.spliced = plan.spliced;
                b.bytes_padded(rest.get(plan.spliced..).unwrap_or(&[]));
            }
            _ => b.bytes_padded(payload),
        }
        for comment in comments {
            b.text_option(OPT_COMMENT, comment);
        }
        b.finish();
        if let Some(splice) = splice {
            self.spliced_bytes += splice.bytes.len();
            self.splices.push(splice);
        }
        self.write_block(start)?;
        self.last_ts = ts;
        self.packets_written += 1;
        Ok(())
    }

    /// How to write `payload` (after a frame header of `head_len` bytes) partly from where it
    /// lies, or `None` to copy it: a filler block first, so that the packet block's bytes
    /// before the spliced part end on an aligned place in the file, as the spliced part starts
    /// on one in memory. Only with an output that splices, a write buffer, and a payload long
    /// enough.
    fn splice_plan(&self, head_len: usize, payload: &Bytes) -> Option<SplicePlan> {
        let align = self.splice_align?;
        self.pending_start?;
        if self.splices.len() >= MAX_SPLICES {
            return None;
        }
        let copied = (payload.as_ptr() as usize).wrapping_neg() % align;
        let spliced = payload.len().checked_sub(copied)? / align * align;
        if spliced < MIN_SPLICE.max(align) {
            return None;
        }
        // Block type, length, interface, time (2), captured and original length; the frame.
        let before = 28 + head_len + copied;
        if before % 4 != 0 {
            return None;
        }
        let here = self.pending.as_ptr() as usize + self.pending.len();
        let mut filler = here.wrapping_add(before).wrapping_neg() % align;
        if filler > 0 && filler < MIN_BLOCK_LEN {
            filler += align;
        }
        (filler % 4 == 0).then_some(SplicePlan {
            filler,
            copied,
            spliced,
        })
    }
}

/// TCP flag bits (RFC 9293 section 3.1).
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Most payload bytes per synthesized segment: keeps IPv4's 16-bit total length (and IPv6's
/// payload length) in range with room to spare. A multiple of 512, so that every segment of a
/// payload lies as aligned in memory as its first (see [`PacketSink::write_packet_shared`]).
pub const MAX_SEGMENT_PAYLOAD: usize = 126 * 512;

/// The receive window every synthesized segment advertises (no window scaling); a side with
/// this much unacknowledged data first gets an ACK from its peer, so Wireshark reports no
/// "window full".
const WINDOW: u16 = 65_535;

/// Fake MAC addresses (locally administered) of the client and the server side.
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// One TCP connection turned into packets: the proxy calls [`open`](Self::open) when a
/// connection is set up, [`data`](Self::data) for the bytes each way, and [`fin`](Self::fin)
/// or [`rst`](Self::rst) when a side closes; each call writes frames with correct sequence and
/// acknowledgment numbers and checksums to the sink passed in.
///
/// Direction [`Direction::AToB`] is client → server, as this crate's reader reports it for a
/// connection whose SYN it saw.
#[derive(Clone, Debug)]
pub struct TcpFlowWriter {
    iface: InterfaceId,
    client: SocketAddr,
    server: SocketAddr,
    /// Sequence number of the next byte each side sends; index 0 = client.
    next_seq: [u32; 2],
    /// The last acknowledgment each side received for its data.
    acked: [u32; 2],
    ip_id: [u16; 2],
    /// Some packet was written (handshake or not).
    started: bool,
    fin_sent: [bool; 2],
    reset: bool,
    /// File index of the last packet written, to notice a rotation.
    file_index: Option<u64>,
}

const fn side(dir: Direction) -> usize {
    match dir {
        Direction::AToB => 0,
        Direction::BToA => 1,
    }
}

impl TcpFlowWriter {
    /// A flow between `client` and `server` on interface `iface`, with initial sequence
    /// numbers derived from the addresses (the same connection always gets the same ones).
    /// IPv4-mapped IPv6 addresses pair with IPv4 ones as IPv4.
    pub fn new(
        iface: InterfaceId,
        client: SocketAddr,
        server: SocketAddr,
    ) -> Result<Self, WriteError> {
        let h = fnv1a(&[addr_bytes(&client), addr_bytes(&server)].concat());
        Self::with_isn(iface, client, server, h as u32, (h >> 32) as u32)
    }

    /// Like [`new`](Self::new) with chosen initial sequence numbers (client's, server's).
    pub fn with_isn(
        iface: InterfaceId,
        client: SocketAddr,
        server: SocketAddr,
        client_isn: u32,
        server_isn: u32,
    ) -> Result<Self, WriteError> {
        let (client, server) = same_family(client, server)?;
        Ok(TcpFlowWriter {
            iface,
            client,
            server,
            next_seq: [client_isn, server_isn],
            acked: [client_isn, server_isn],
            ip_id: [1, 1],
            started: false,
            fin_sent: [false; 2],
            reset: false,
            file_index: None,
        })
    }

    /// The client address (after IPv4-mapped normalization).
    #[must_use]
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// The server address (after IPv4-mapped normalization).
    #[must_use]
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The interface the flow's packets are written on.
    #[must_use]
    pub fn interface(&self) -> InterfaceId {
        self.iface
    }

    /// Sequence number of the next byte `dir`'s sender will send.
    #[must_use]
    pub fn next_seq(&self, dir: Direction) -> u32 {
        self.next_seq[side(dir)]
    }

    /// True after [`rst`](Self::rst) or after both sides sent FIN: nothing more can be written.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.reset || self.fin_sent == [true, true]
    }

    /// Writes the three-way handshake (SYN, SYN+ACK, ACK) at `ts`; `comment` goes on the SYN.
    /// Optional: a flow whose first call is [`data`](Self::data) starts mid-stream, which
    /// readers accept.
    pub fn open(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        ts: Timestamp,
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        if self.started {
            return Err(self.state_error("open after packets were written"));
        }
        self.segment(sink, Direction::AToB, ts, SYN, &[], comment)?;
        self.segment(sink, Direction::BToA, ts, SYN | ACK, &[], None)?;
        self.segment(sink, Direction::AToB, ts, ACK, &[], None)
    }

    /// Writes `bytes` sent by `dir`'s sender as PSH+ACK segments of at most
    /// [`MAX_SEGMENT_PAYLOAD`] bytes; `comment` goes on the first. Empty `bytes` with a comment
    /// write a bare ACK carrying it (an event not tied to data); without, nothing.
    pub fn data(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        dir: Direction,
        ts: Timestamp,
        bytes: &[u8],
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        self.data_payload(sink, dir, ts, &Payload::new(bytes), comment)
    }

    /// [`data`](Self::data) with the checksums of the bytes computed already: a proxy writes
    /// the same bytes on both legs of a connection and sums them once.
    pub fn data_payload(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        dir: Direction,
        ts: Timestamp,
        payload: &Payload<'_>,
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        self.data_segments(sink, dir, ts, payload, comment, true)
    }

    /// [`data_payload`](Self::data_payload) with the segments' headers only: each packet has
    /// its real length, sequence numbers and checksum, but the payload is left out of the
    /// capture, as a snap length would. A proxy that records the bytes once, on the client's
    /// leg, writes the server's leg this way (Wireshark marks them "packet size limited during
    /// capture").
    pub fn data_headers_only(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        dir: Direction,
        ts: Timestamp,
        payload: &Payload<'_>,
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        self.data_segments(sink, dir, ts, payload, comment, false)
    }

    fn data_segments(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        dir: Direction,
        ts: Timestamp,
        payload: &Payload<'_>,
        comment: Option<&str>,
        captured: bool,
    ) -> Result<(), WriteError> {
        self.check_can_send(dir)?;
        if payload.bytes.is_empty() {
            if comment.is_some() {
                self.segment(sink, dir, ts, ACK, &[], comment)?;
            }
            return Ok(());
        }
        let mut comment = comment;
        for (chunk, &sum) in payload.bytes.chunks(MAX_SEGMENT_PAYLOAD).zip(&payload.sums) {
            let shared = payload
                .shared
                .filter(|_| captured)
                .map(|b| b.slice_ref(chunk));
            let me = side(dir);
            let in_flight = self.next_seq[me].wrapping_sub(self.acked[me]) as usize;
            if in_flight + chunk.len() >= usize::from(WINDOW) && in_flight > 0 {
                self.segment(sink, dir.reverse(), ts, ACK, &[], None)?;
            }
            let seg = Segment {
                flags: PSH | ACK,
                payload: chunk,
                shared,
                sum: Some(sum),
                captured,
            };
            self.segment_summed(sink, dir, ts, seg, comment.take())?;
        }
        Ok(())
    }

    /// Writes a FIN+ACK from `dir`'s sender (it will send no more). When this is the second
    /// FIN, the peer's final ACK follows, so the connection closes cleanly.
    pub fn fin(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        dir: Direction,
        ts: Timestamp,
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        self.check_can_send(dir)?;
        self.segment(sink, dir, ts, FIN | ACK, &[], comment)?;
        self.fin_sent[side(dir)] = true;
        if self.fin_sent[side(dir.reverse())] {
            self.segment(sink, dir.reverse(), ts, ACK, &[], None)?;
        }
        Ok(())
    }

    /// Writes an RST+ACK from `dir`'s sender (connection reset); the flow is closed afterwards.
    pub fn rst(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        dir: Direction,
        ts: Timestamp,
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        if self.reset {
            return Err(self.state_error("already reset"));
        }
        self.segment(sink, dir, ts, RST | ACK, &[], comment)?;
        self.reset = true;
        Ok(())
    }

    fn check_can_send(&self, dir: Direction) -> Result<(), WriteError> {
        if self.reset {
            Err(self.state_error("packet after RST"))
        } else if self.fin_sent[side(dir)] {
            Err(self.state_error("packet from a side after its FIN"))
        } else {
            Ok(())
        }
    }

    fn state_error(&self, reason: &'static str) -> WriteError {
        WriteError::FlowState {
            client: self.client,
            server: self.server,
            reason,
        }
    }

    /// Builds and writes one segment, then advances the sequence state.
    fn segment(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        dir: Direction,
        ts: Timestamp,
        flags: u8,
        payload: &[u8],
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        let seg = Segment {
            flags,
            payload,
            shared: None,
            sum: None,
            captured: true,
        };
        self.segment_summed(sink, dir, ts, seg, comment)
    }

    /// [`segment`](Self::segment) of a [`Segment`]: with the payload's [`payload_sum`] when
    /// known, and with the payload left out of the capture when asked.
    fn segment_summed(
        &mut self,
        sink: &mut (impl PacketSink + ?Sized),
        dir: Direction,
        ts: Timestamp,
        seg: Segment<'_>,
        comment: Option<&str>,
    ) -> Result<(), WriteError> {
        let Segment {
            flags,
            payload,
            shared,
            sum,
            captured,
        } = seg;
        let sum = sum.unwrap_or_else(|| payload_sum(payload));
        let link_type = sink
            .link_type(self.iface)
            .ok_or(WriteError::UnknownInterface { id: self.iface.0 })?;
        let (me, peer) = (side(dir), side(dir.reverse()));
        let (src, dst, src_mac, dst_mac) = match dir {
            Direction::AToB => (self.client, self.server, CLIENT_MAC, SERVER_MAC),
            Direction::BToA => (self.server, self.client, SERVER_MAC, CLIENT_MAC),
        };
        let header = SegmentHeader {
            src,
            dst,
            ip_id: self.ip_id[me],
            seq: self.next_seq[me],
            ack: if flags & ACK != 0 {
                self.next_seq[peer]
            } else {
                0
            },
            flags,
        };
        // The headers only: the payload goes into the block as it is.
        let mut head = Vec::with_capacity(14 + 60);
        match link_type {
            LinkType::ETHERNET => {
                let ethertype: u16 = if src.is_ipv4() { 0x0800 } else { 0x86DD };
                head.extend_from_slice(&dst_mac);
                head.extend_from_slice(&src_mac);
                head.extend_from_slice(&ethertype.to_be_bytes());
                header.write_ip_tcp_headers(&mut head, payload.len(), sum);
            }
            LinkType::RAW => header.write_ip_tcp_headers(&mut head, payload.len(), sum),
            LinkType::IPV4 if src.is_ipv4() => {
                header.write_ip_tcp_headers(&mut head, payload.len(), sum)
            }
            LinkType::IPV6 if src.is_ipv6() => {
                header.write_ip_tcp_headers(&mut head, payload.len(), sum)
            }
            link_type => return Err(WriteError::UnsupportedLinkType { link_type }),
        }

        let file_index = sink.file_index();
        let continued = self.file_index.is_some_and(|f| f != file_index);
        let note;
        let mut comments: [&str; 2] = [""; 2];
        let mut n = 0;
        if continued {
            note = format!(
                "uatap: TCP connection {} -> {} started in an earlier file of this recording",
                self.client, self.server
            );
            comments[n] = &note;
            n += 1;
        }
        if let Some(c) = comment {
            comments[n] = c;
            n += 1;
        }
        let (kept, uncaptured) = if captured {
            (payload, 0)
        } else {
            (&[][..], payload.len())
        };
        match &shared {
            Some(shared) if captured => {
                sink.write_packet_shared(self.iface, ts, &head, shared, &comments[..n])?;
            }
            _ => {
                sink.write_packet_parts(self.iface, ts, &head, kept, uncaptured, &comments[..n])?
            }
        }

        self.file_index = Some(file_index);
        self.started = true;
        self.ip_id[me] = self.ip_id[me].wrapping_add(1);
        let consumed = payload.len() + usize::from(flags & (SYN | FIN) != 0);
        self.next_seq[me] = self.next_seq[me].wrapping_add(consumed as u32);
        if flags & ACK != 0 {
            self.acked[peer] = header.ack;
        }
        Ok(())
    }
}

/// One segment for [`TcpFlowWriter::segment_summed`].
struct Segment<'a> {
    flags: u8,
    payload: &'a [u8],
    /// The shared buffer `payload` is, when it is one (see [`Payload::shared`]).
    shared: Option<Bytes>,
    /// The payload's [`payload_sum`], when already known.
    sum: Option<u64>,
    /// The payload goes into the capture (else its headers only).
    captured: bool,
}

/// Bytes to write on one or more flows, summed once for their TCP checksums (see
/// [`TcpFlowWriter::data_payload`]).
pub struct Payload<'a> {
    bytes: &'a [u8],
    /// The shared buffer `bytes` is, which a sink may keep rather than copy from.
    shared: Option<&'a Bytes>,
    /// [`payload_sum`] of each segment's part of `bytes`.
    sums: Vec<u64>,
}

impl<'a> Payload<'a> {
    /// Sums `bytes` as [`TcpFlowWriter::data`] cuts them into segments.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Payload::with_sums(bytes, PayloadSums::of(bytes))
    }

    /// `bytes` with their sums computed earlier ([`PayloadSums::of`] on the same bytes),
    /// where the bytes were still in the cache; sums of other bytes (another length) are
    /// computed again.
    #[must_use]
    pub fn with_sums(bytes: &'a [u8], sums: PayloadSums) -> Self {
        let sums = if sums.len == bytes.len() {
            sums.sums
        } else {
            PayloadSums::of(bytes).sums
        };
        Payload {
            bytes,
            shared: None,
            sums,
        }
    }

    /// [`with_sums`](Self::with_sums) (or [`new`](Self::new) without sums) of a shared
    /// buffer: a sink that writes from memory it does not own keeps the buffer and writes
    /// the payload from it ([`PacketSink::write_packet_shared`]).
    #[must_use]
    pub fn shared(bytes: &'a Bytes, sums: Option<PayloadSums>) -> Self {
        let mut p = match sums {
            Some(sums) => Payload::with_sums(bytes, sums),
            None => Payload::new(bytes),
        };
        p.shared = Some(bytes);
        p
    }
}

/// The TCP checksum sums of bytes to be recorded, computed by whoever has them in the cache
/// (the thread that analysed them) for the thread that records them later.
#[derive(Clone, Debug, Default)]
pub struct PayloadSums {
    len: usize,
    sums: Vec<u64>,
}

impl PayloadSums {
    /// The sums of `bytes`' segments, as [`TcpFlowWriter::data`] cuts them.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        PayloadSums {
            len: bytes.len(),
            sums: bytes.chunks(MAX_SEGMENT_PAYLOAD).map(payload_sum).collect(),
        }
    }
}

/// Pairs the two ends in one address family, turning IPv4-mapped IPv6 into IPv4 if needed.
fn same_family(
    client: SocketAddr,
    server: SocketAddr,
) -> Result<(SocketAddr, SocketAddr), WriteError> {
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(|v4| SocketAddr::new(IpAddr::V4(v4), a.port())),
        IpAddr::V4(_) => Some(a),
    };
    match (client.is_ipv4(), server.is_ipv4()) {
        (true, true) | (false, false) => Ok((client, server)),
        _ => match (unmap(client), unmap(server)) {
            (Some(c), Some(s)) => Ok((c, s)),
            _ => Err(WriteError::MixedAddressFamilies { client, server }),
        },
    }
}

fn addr_bytes(a: &SocketAddr) -> Vec<u8> {
    let mut v = match a.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fields that differ between synthesized segments.
struct SegmentHeader {
    src: SocketAddr,
    dst: SocketAddr,
    ip_id: u16,
    seq: u32,
    ack: u32,
    flags: u8,
}

impl SegmentHeader {
    /// Appends the IPv4 (RFC 791) or IPv6 (RFC 8200) header and the 20-byte TCP header
    /// (RFC 9293), with both checksums (the TCP one over the payload too, which follows
    /// them: `payload_len` bytes whose [`payload_sum`] is `payload_sum`).
    fn write_ip_tcp_headers(&self, out: &mut Vec<u8>, payload_len: usize, payload_sum: u64) {
        const TCP_HEADER_LEN: usize = 20;
        let tcp_len = TCP_HEADER_LEN + payload_len;
        // Pseudo-header sum (RFC 9293 section 3.1; RFC 8200 section 8.1): addresses, protocol,
        // TCP length.
        let mut pseudo = 6 + tcp_len as u64;
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total_len = u16::try_from(20 + tcp_len).unwrap_or(u16::MAX);
                let start = out.len();
                out.extend_from_slice(&[0x45, 0]);
                out.extend_from_slice(&total_len.to_be_bytes());
                out.extend_from_slice(&self.ip_id.to_be_bytes());
                out.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                let checksum = internet_checksum(sum_words(&out[start..], 0));
                out[start + 10..start + 12].copy_from_slice(&checksum.to_be_bytes());
                pseudo = sum_words(&s.octets(), pseudo);
                pseudo = sum_words(&d.octets(), pseudo);
            }
            (s, d) => {
                let to_v6 = |a: IpAddr| match a {
                    IpAddr::V6(v6) => v6,
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                };
                let (s, d) = (to_v6(s), to_v6(d));
                let payload_len = u16::try_from(tcp_len).unwrap_or(u16::MAX);
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&payload_len.to_be_bytes());
                out.extend_from_slice(&[6, 64]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                pseudo = sum_words(&s.octets(), pseudo);
                pseudo = sum_words(&d.octets(), pseudo);
            }
        }
        let start = out.len();
        out.extend_from_slice(&self.src.port().to_be_bytes());
        out.extend_from_slice(&self.dst.port().to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        out.extend_from_slice(&[0x50, self.flags]);
        out.extend_from_slice(&WINDOW.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        // The TCP header has an even length, so the payload's words line up on their own.
        let checksum = internet_checksum(sum_words(&out[start..], pseudo) + payload_sum);
        out[start + 16..start + 18].copy_from_slice(&checksum.to_be_bytes());
    }
}

/// Adds `data` as big-endian 16-bit words (a last odd byte padded with zero) to `acc`
/// (RFC 1071); the u64 cannot overflow for any frame size. Eight bytes at a time: the four
/// words of a big-endian u64 are added in two 32-bit lanes, which are folded into `acc`
/// before they can overflow, so the result is exactly the sum of the words.
fn sum_words(data: &[u8], acc: u64) -> u64 {
    const LANES: u64 = 0x0000_FFFF_0000_FFFF;
    // Each step adds at most 2 * 0xFFFF to a 32-bit lane: 32_768 steps cannot overflow it.
    const STEPS: usize = 32_768;
    let mut acc = acc;
    let mut quads = data.chunks_exact(8);
    loop {
        let mut lanes = 0u64;
        let mut steps = 0;
        for q in quads.by_ref() {
            let mut b = [0u8; 8];
            b.copy_from_slice(q);
            let x = u64::from_be_bytes(b);
            lanes += (x & LANES) + ((x >> 16) & LANES);
            steps += 1;
            if steps == STEPS {
                break;
            }
        }
        acc += (lanes & 0xFFFF_FFFF) + (lanes >> 32);
        if steps < STEPS {
            break;
        }
    }
    let mut words = quads.remainder().chunks_exact(2);
    acc = words
        .by_ref()
        .fold(acc, |a, w| a + u64::from(u16::from_be_bytes([w[0], w[1]])));
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The sum of `data` as big-endian 16-bit words (a last odd byte padded with zero), folded to
/// 16 bits: not the same number as [`sum_words`], but the same once folded with other sums
/// into a checksum (RFC 1071 section 2: the sum is the same modulo 0xFFFF, and byte order can
/// be swapped at the end). Little-endian 16-bit words into sixteen 32-bit lanes, which the
/// compiler turns into vector adds of 16 bytes at a time even on baseline x86-64 (SSE2).
fn payload_sum(data: &[u8]) -> u64 {
    /// 32-byte blocks added into the lanes before they are folded: 4096 x 0xFFFF fits in u32.
    const BLOCKS: usize = 4096;
    let mut acc = 0u64;
    let mut blocks = data.chunks_exact(32);
    loop {
        let mut lanes = [0u32; 16];
        let mut n = 0;
        for block in blocks.by_ref() {
            for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(2)) {
                *lane += u32::from(u16::from_le_bytes([w[0], w[1]]));
            }
            n += 1;
            if n == BLOCKS {
                break;
            }
        }
        acc += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
        if n < BLOCKS {
            break;
        }
    }
    let mut words = blocks.remainder().chunks_exact(2);
    for w in words.by_ref() {
        acc += u64::from(u16::from_le_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last);
    }
    // 2^16 = 1 modulo 0xFFFF: folding keeps the sum modulo 0xFFFF.
    while acc >> 16 != 0 {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    // Little-endian words give the byte-swapped sum.
    u64::from((acc as u16).swap_bytes())
}

/// Folds a sum to 16 bits and complements it: the Internet checksum (RFC 1071).
fn internet_checksum(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

/// Ring-buffer limits, like dumpcap's `-b filesize:` and `-b files:` (uatap's
/// `--record-max-size` and `--record-files`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotationConfig {
    /// Start a new file once the current one reaches this many bytes (checked after each
    /// packet, so a file exceeds it by at most one packet). `None`: one file, named exactly as
    /// given.
    pub max_size_bytes: Option<u64>,
    /// Keep at most this many files, deleting the oldest before starting a new one. `None`:
    /// keep all. Only with `max_size_bytes`.
    pub max_files: Option<NonZeroUsize>,
}

/// Secrets kept for replay into new files are bounded; the oldest are dropped first.
const MAX_REPLAYED_SECRETS_BYTES: usize = 1 << 20;

/// A recording on disk: one file, or with [`RotationConfig::max_size_bytes`] a ring of files
/// named like dumpcap's, `<stem>_<NNNNN>_<YYYYmmddHHMMSS>[.<ext>]` (number from 00001, time
/// in UTC when the file is started). Every file starts with the Section Header Block, all
/// interfaces and the retained decryption secrets, so each opens on its own; flows continue
/// into the next file without a new handshake.
///
/// After an I/O error the current file is trimmed back to its last whole block (best effort)
/// and every later write returns [`WriteError::Stopped`].
#[derive(Debug)]
pub struct RotatingWriter {
    base: PathBuf,
    config: RotationConfig,
    interfaces: Vec<InterfaceDescription>,
    secrets: VecDeque<(u32, Vec<u8>)>,
    secrets_bytes: usize,
    current: PcapngWriter<Box<dyn RecordFile>>,
    current_path: PathBuf,
    /// Creates each file.
    open: OpenRecordFile,
    /// Files kept on disk, oldest first; the last is the current one.
    files: VecDeque<PathBuf>,
    /// Number of the current file, from 1.
    number: u64,
    rotate_pending: bool,
    stopped: bool,
    /// Write buffer of every file ([`PcapngWriter::set_write_buffer`]).
    buffer_limit: usize,
}

impl RotatingWriter {
    /// Creates the first file (truncating an existing one of the same name) and writes its
    /// Section Header Block.
    pub fn create(base: impl Into<PathBuf>, config: RotationConfig) -> Result<Self, WriteError> {
        RotatingWriter::create_with(base, config, open_plain_file)
    }

    /// [`create`](Self::create) with every file made by `open` (e.g. written with direct
    /// I/O).
    pub fn create_with(
        base: impl Into<PathBuf>,
        config: RotationConfig,
        open: OpenRecordFile,
    ) -> Result<Self, WriteError> {
        let base = base.into();
        let path = file_name(&base, &config, 1, SystemTime::now());
        let current = open_file(open, &path, Timestamp::default())?;
        Ok(RotatingWriter {
            base,
            config,
            interfaces: Vec::new(),
            secrets: VecDeque::new(),
            secrets_bytes: 0,
            current,
            current_path: path.clone(),
            open,
            files: VecDeque::from([path]),
            number: 1,
            rotate_pending: false,
            stopped: false,
            buffer_limit: 0,
        })
    }

    /// Declares an interface in the current file and in every later one.
    pub fn add_interface(
        &mut self,
        iface: InterfaceDescription,
    ) -> Result<InterfaceId, WriteError> {
        self.check_running()?;
        let result = self.current.add_interface(&iface);
        let id = self.checked(result)?;
        self.interfaces.push(iface);
        Ok(id)
    }

    /// Writes a Decryption Secrets Block into the current file and repeats it at the start of
    /// later files (the most recent 1 MiB of secrets), so packets in any file can be decrypted.
    pub fn write_decryption_secrets(
        &mut self,
        secrets_type: u32,
        data: &[u8],
    ) -> Result<(), WriteError> {
        self.check_running()?;
        let result = self.current.write_decryption_secrets(secrets_type, data);
        self.checked(result)?;
        self.secrets.push_back((secrets_type, data.to_vec()));
        self.secrets_bytes += data.len();
        while self.secrets_bytes > MAX_REPLAYED_SECRETS_BYTES {
            match self.secrets.pop_front() {
                Some((_, old)) => self.secrets_bytes -= old.len(),
                None => break,
            }
        }
        Ok(())
    }

    /// The file being written.
    #[must_use]
    pub fn current_path(&self) -> &Path {
        &self.current_path
    }

    /// The files of this recording still on disk, oldest first (the last is the current one).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(PathBuf::as_path)
    }

    /// Collects whole blocks in memory and writes them `limit` bytes at a time, in this file
    /// and the next ones (see [`PcapngWriter::set_write_buffer`]); call [`flush`](Self::flush)
    /// to bound what a crash can lose. 0 (the default) writes every block at once.
    pub fn set_write_buffer(&mut self, limit: usize) -> Result<(), WriteError> {
        self.check_running()?;
        self.buffer_limit = limit;
        let result = self.current.set_write_buffer(limit);
        self.checked(result)
    }

    /// Writes the blocks collected by the write buffer (nothing without one).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.check_running()?;
        let result = self.current.flush();
        self.checked(result)
    }

    /// Flushes the current file (with a write buffer, writes what it collected). Optional
    /// without a write buffer: every block is already written.
    pub fn finish(self) -> Result<(), WriteError> {
        let path = self.current_path;
        self.current
            .finish()
            .map(drop)
            .map_err(|e| e.with_path(&path))
    }

    fn check_running(&self) -> Result<(), WriteError> {
        if self.stopped {
            Err(WriteError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Passes a result of the current file through, stopping and trimming on I/O errors.
    fn checked<T>(&mut self, result: Result<T, WriteError>) -> Result<T, WriteError> {
        result.map_err(|e| {
            if e.stops_recording() {
                self.stopped = true;
                // Cut a partly written block so the file still ends cleanly.
                let _ = self.current.out.set_len(self.current.flushed);
            }
            e.with_path(&self.current_path)
        })
    }

    /// Deletes the oldest files over the limit, then starts the next file.
    fn rotate(&mut self) -> Result<(), WriteError> {
        if let Some(max) = self.config.max_files {
            while self.files.len() >= max.get() {
                let Some(oldest) = self.files.pop_front() else {
                    break;
                };
                match fs::remove_file(&oldest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(WriteError::Remove {
                            path: oldest,
                            source,
                        })
                    }
                }
            }
        }
        // What the old file collected goes into it before the next one starts.
        let result = self.current.flush();
        self.checked(result)?;
        let number = self.number + 1;
        let path = file_name(&self.base, &self.config, number, SystemTime::now());
        let mut next = open_file(self.open, &path, self.current.last_timestamp())?;
        let headers = self
            .interfaces
            .iter()
            .try_for_each(|iface| next.add_interface(iface).map(drop))
            .and_then(|()| {
                self.secrets
                    .iter()
                    .try_for_each(|(ty, data)| next.write_decryption_secrets(*ty, data))
            });
        let headers = headers.and_then(|()| next.set_write_buffer(self.buffer_limit));
        if let Err(e) = headers {
            // A file without its interfaces is useless.
            drop(next);
            let _ = fs::remove_file(&path);
            return Err(e.with_path(&path));
        }
        self.current = next;
        self.current_path = path.clone();
        self.files.push_back(path);
        self.number = number;
        self.rotate_pending = false;
        Ok(())
    }
}

impl PacketSink for RotatingWriter {
    fn link_type(&self, iface: InterfaceId) -> Option<LinkType> {
        self.current.link_type(iface)
    }

    fn file_index(&self) -> u64 {
        self.number + u64::from(self.rotate_pending)
    }

    fn write_packet(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        frame: &[u8],
        comments: &[&str],
    ) -> Result<(), WriteError> {
        self.write_packet_parts(iface, ts, frame, &[], 0, comments)
    }

    fn write_packet_parts(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &[u8],
        uncaptured: usize,
        comments: &[&str],
    ) -> Result<(), WriteError> {
        self.write_to_current(|w| {
            w.write_packet_parts(iface, ts, head, payload, uncaptured, comments)
        })
    }

    fn write_packet_shared(
        &mut self,
        iface: InterfaceId,
        ts: Timestamp,
        head: &[u8],
        payload: &Bytes,
        comments: &[&str],
    ) -> Result<(), WriteError> {
        self.write_to_current(|w| w.write_packet_shared(iface, ts, head, payload, comments))
    }
}

impl RotatingWriter {
    /// Writes one packet with `write` to the current file, starting the next file first when
    /// the last packet filled this one.
    fn write_to_current(
        &mut self,
        write: impl FnOnce(&mut PcapngWriter<Box<dyn RecordFile>>) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        self.check_running()?;
        if self.rotate_pending {
            if let Err(e) = self.rotate() {
                if e.stops_recording() {
                    self.stopped = true;
                }
                return Err(e);
            }
        }
        let result = write(&mut self.current);
        self.checked(result)?;
        if self
            .config
            .max_size_bytes
            .is_some_and(|max| self.current.bytes_written() >= max)
        {
            self.rotate_pending = true;
        }
        Ok(())
    }
}

/// Creates `path` and writes the Section Header Block; `last_ts` carries the time floor over
/// from the previous file.
fn open_file(
    open: OpenRecordFile,
    path: &Path,
    last_ts: Timestamp,
) -> Result<PcapngWriter<Box<dyn RecordFile>>, WriteError> {
    let file = open(path).map_err(|e| WriteError::from_io(e, Some(path.to_path_buf())))?;
    let mut writer = PcapngWriter::for_record_file(file).map_err(|e| e.with_path(path))?;
    writer.last_ts = last_ts;
    Ok(writer)
}

/// The name of file `number`: `base` itself without rotation, else dumpcap's pattern.
fn file_name(base: &Path, config: &RotationConfig, number: u64, now: SystemTime) -> PathBuf {
    if config.max_size_bytes.is_none() {
        return base.to_path_buf();
    }
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = format!("{stem}_{number:05}_{}", utc_compact(secs));
    if let Some(ext) = base.extension() {
        name.push('.');
        name.push_str(&ext.to_string_lossy());
    }
    base.with_file_name(name)
}

/// `YYYYmmddHHMMSS` in UTC for seconds since the epoch (days to civil date: H. Hinnant,
/// "chrono-Compatible Low-Level Date Algorithms").
fn utc_compact(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
