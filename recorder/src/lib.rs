//! Reads and writes packet captures (pcap, pcapng) and hands TCP streams over; knows nothing of OPC UA.
//!
//! Reading side, bottom up:
//! - [`CaptureReader`]: pcap (µs/ns, either byte order) and pcapng (sections, interfaces with
//!   their own link type and `if_tsresol`) from any `Read`, one borrowed [`Packet`] at a time;
//!   a damaged or cut file ends with a [`RecorderError`] carrying the byte offset.
//! - [`decode_tcp`]: Ethernet (VLAN), Linux SLL/SLL2, raw IP, NULL/LOOP → [`TcpSegment`].
//! - [`TcpReassembler`]: segments → [`StreamEvent`]s per connection ([`ConnId`]): open, in-order
//!   data of both directions interleaved as seen, gaps for bytes the capture lacks, FIN, close.
//! - [`StreamReader`] ties them together in one streaming pass with a visitor
//!   ([`StreamReader::for_each_event`]); [`read_streams`] collects owned events for small files.
//!
//! Writing side (used by the live proxy to record what crosses it):
//! - [`PcapngWriter`]: one pcapng section on any `Write` (SHB, IDBs with ns timestamps, EPBs
//!   with `opt_comment`s, DSBs), each block written whole and flushed, so a killed process
//!   leaves a readable file.
//! - [`TcpFlowWriter`]: one proxied TCP leg synthesized into Ethernet + IPv4/IPv6 + TCP frames
//!   (handshake, data, FIN, RST; valid sequence numbers and checksums) on a [`PacketSink`].
//! - [`RotatingWriter`]: a recording on disk, optionally a dumpcap-style ring of files.
//! - [`zero::zero_stream_spans`]: a copy of a capture with byte ranges of its TCP streams
//!   zeroed (what `uatap redact` finds), checksums fixed.
//!
//! It does not reassemble IP fragments, verify checksums, or interpret payloads.
#![deny(missing_docs)]

mod decode;
mod error;
mod read;
mod streams;
mod tcp;
mod time;
mod write;
pub mod zero;

pub use decode::{decode_tcp, SkipReason, TcpFlags, TcpSegment};
pub use error::RecorderError;
pub use read::{
    CaptureFormat, CaptureReader, LinkType, OwnedPacket, Packet, ReaderStats, DEFAULT_MAX_BLOCK_LEN,
};
pub use streams::{read_streams, DecodeStats, StreamReader};
pub use tcp::{
    ClientGuess, ClientHint, CloseReason, ConnId, Direction, ReassemblyConfig, StreamEvent,
    TcpReassembler, TcpStats, DEFAULT_MAX_PENDING_BYTES,
};
pub use time::Timestamp;
pub use write::{
    join_splices, open_plain_file, write_filler_block, InterfaceDescription, InterfaceId,
    OpenRecordFile, PacketSink, Payload, PayloadSums, PcapngWriter, RecordFile, RotatingWriter,
    RotationConfig, Splice, TcpFlowWriter, WriteError, FILLER_BLOCK_TYPE, MAX_FRAME_LEN,
    MAX_SEGMENT_PAYLOAD, MIN_BLOCK_LEN, SECRETS_TYPE_OPCUA_KEY_LOG, SPLICE_PAYLOAD_OFFSET,
    USER_APPLICATION,
};
