//! Capture file in, TCP stream events out: [`CaptureReader`] + [`decode_tcp`] +
//! [`TcpReassembler`] in one loop.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::decode::{decode_tcp, SkipReason};
use crate::error::RecorderError;
use crate::read::{CaptureReader, ReaderStats};
use crate::tcp::{ReassemblyConfig, StreamEvent, TcpReassembler, TcpStats};

/// Packets that carried no usable TCP segment, by reason; for a capture-quality summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Packets read from the capture.
    pub packets: u64,
    /// Packets that yielded a TCP segment.
    pub tcp_segments: u64,
    /// Packets on interfaces with a link type this crate does not decode.
    pub unsupported_link_type: u64,
    /// Frames without IPv4/IPv6 (ARP …).
    pub not_ip: u64,
    /// IP packets that are not TCP.
    pub not_tcp: u64,
    /// IP fragments (not reassembled).
    pub ip_fragments: u64,
    /// Frames whose headers are too short or inconsistent.
    pub malformed: u64,
}

impl DecodeStats {
    fn count(&mut self, reason: SkipReason) {
        let counter = match reason {
            SkipReason::UnsupportedLinkType(_) => &mut self.unsupported_link_type,
            SkipReason::NotIp => &mut self.not_ip,
            SkipReason::NotTcp => &mut self.not_tcp,
            SkipReason::Fragment => &mut self.ip_fragments,
            SkipReason::Malformed => &mut self.malformed,
        };
        *counter += 1;
    }
}

/// Reads a capture and reassembles its TCP connections in one streaming pass: memory stays
/// bounded by the out-of-order buffers, not the file size. The entry point for big captures.
#[derive(Debug)]
pub struct StreamReader<R> {
    capture: CaptureReader<R>,
    tcp: TcpReassembler,
    stats: DecodeStats,
    finished: bool,
}

impl StreamReader<File> {
    /// Opens a capture file (pcap or pcapng).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RecorderError> {
        Ok(StreamReader::from_capture(
            CaptureReader::open(path)?,
            TcpReassembler::default(),
        ))
    }
}

impl<R: Read> StreamReader<R> {
    /// Reads a capture from any reader with default reassembly limits.
    pub fn new(reader: R) -> Result<Self, RecorderError> {
        Ok(StreamReader::from_capture(
            CaptureReader::new(reader)?,
            TcpReassembler::new(ReassemblyConfig::default()),
        ))
    }

    /// Combines a reader and a configured reassembler (client hint, limits).
    #[must_use]
    pub fn from_capture(capture: CaptureReader<R>, tcp: TcpReassembler) -> Self {
        StreamReader {
            capture,
            tcp,
            stats: DecodeStats::default(),
            finished: false,
        }
    }

    /// The reassembler, e.g. to install a client hint before reading.
    pub fn reassembler_mut(&mut self) -> &mut TcpReassembler {
        &mut self.tcp
    }

    /// Reads one packet and hands the events it causes to `f`. Returns `Ok(true)` while there
    /// may be more, `Ok(false)` at the end; at the end or on an error every open connection is
    /// closed first (`EndOfCapture`), so `f` has seen everything reassembled before the error.
    pub fn step(&mut self, mut f: impl FnMut(StreamEvent<'_>)) -> Result<bool, RecorderError> {
        if self.finished {
            return Ok(false);
        }
        let packet = match self.capture.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => {
                self.finish(&mut f);
                return Ok(false);
            }
            Err(e) => {
                self.finish(&mut f);
                return Err(e);
            }
        };
        self.stats.packets += 1;
        match decode_tcp(packet.link_type, packet.data) {
            Ok(segment) => {
                self.stats.tcp_segments += 1;
                self.tcp.handle_segment(packet.ts, &segment, &mut f);
            }
            Err(reason) => self.stats.count(reason),
        }
        Ok(true)
    }

    /// Runs through the whole capture, handing every event to `f` as soon as its bytes are in
    /// order. Returns the error that stopped reading, after `f` got all events before it.
    pub fn for_each_event(
        &mut self,
        mut f: impl FnMut(StreamEvent<'_>),
    ) -> Result<(), RecorderError> {
        while self.step(&mut f)? {}
        Ok(())
    }

    fn finish(&mut self, f: &mut impl FnMut(StreamEvent<'_>)) {
        self.finished = true;
        self.tcp.finish(f);
    }

    /// Counters of the packet decoding so far.
    #[must_use]
    pub fn decode_stats(&self) -> DecodeStats {
        self.stats
    }

    /// Counters of the reassembly so far.
    #[must_use]
    pub fn tcp_stats(&self) -> TcpStats {
        self.tcp.stats()
    }

    /// Counters of the file reading so far.
    #[must_use]
    pub fn reader_stats(&self) -> ReaderStats {
        self.capture.stats()
    }

    /// The underlying capture reader (format, offset).
    #[must_use]
    pub fn capture(&self) -> &CaptureReader<R> {
        &self.capture
    }
}

/// Reads a whole capture into owned events: `Err` if it cannot be opened or is not a capture,
/// otherwise every event plus the error that cut reading short, if any. Convenient for small
/// files and tests; use [`StreamReader::for_each_event`] for big ones.
pub fn read_streams(
    path: impl AsRef<Path>,
) -> Result<(Vec<StreamEvent<'static>>, Option<RecorderError>), RecorderError> {
    let mut reader = StreamReader::open(path)?;
    let mut events = Vec::new();
    let result = reader.for_each_event(|event| events.push(event.into_owned()));
    Ok((events, result.err()))
}
