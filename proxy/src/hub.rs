//! The analysis side of the proxy: relays tap what they forward into a channel; one thread
//! runs the same sans-IO analysis as `uatap analyze` on it, hands the events in batches to a
//! second thread that runs the sinks, and the tapped bytes with their events' text to a third
//! that writes the recording. The forwarding path never waits for any of them.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use uatap_analysis::{
    Analyzer, CloseReason, ClosedBy, Connection, Direction, Event, Options, Timestamp,
};
use uatap_recorder::{
    Direction as RDir, InterfaceDescription, InterfaceId, Payload, PayloadSums, RotatingWriter,
    RotationConfig, TcpFlowWriter, WriteError, SPLICE_PAYLOAD_OFFSET,
};

use crate::arena::Slot;

/// What a relay reports about one proxied connection.
#[derive(Debug)]
pub enum Tap {
    /// A client connected (and the upstream connection, if it succeeded).
    Open {
        /// Connection number within this proxy.
        id: u64,
        /// The listener it came in on (its index in the proxy's list).
        listener: usize,
        /// The client's address.
        client: SocketAddr,
        /// The server the client thinks it talks to (the listen address it reached).
        server: SocketAddr,
        /// When.
        ts: Timestamp,
    },
    /// The proxy reached the server: the addresses of the second leg.
    Connected {
        /// Connection number.
        id: u64,
        /// The proxy's own address on the server leg.
        local: SocketAddr,
        /// The server's address.
        upstream: SocketAddr,
        /// When.
        ts: Timestamp,
    },
    /// Bytes forwarded in one direction, exactly as they were forwarded.
    Data {
        /// Connection number.
        id: u64,
        /// Which way.
        dir: Direction,
        /// The bytes (the relay's own read buffer, handed over without a copy).
        bytes: TapBytes,
        /// When they were read.
        ts: Timestamp,
    },
    /// Bytes forwarded but not handed to the analysis (the channel was full).
    Lost {
        /// Connection number.
        id: u64,
        /// Which way.
        dir: Direction,
        /// How many.
        bytes: u64,
        /// When.
        ts: Timestamp,
    },
    /// Bytes a fault kept from the receiver (blackhole, drop-message, an answered HEL): they
    /// are recorded on the sender's leg only. The analysis follows the client's leg: what the
    /// client sent is analysed, what the server sent and the client never got is not.
    Withheld {
        /// Connection number.
        id: u64,
        /// Which way they were going.
        dir: Direction,
        /// The bytes.
        bytes: Vec<u8>,
        /// When they were read.
        ts: Timestamp,
    },
    /// The upstream could not be reached or was lost.
    UpstreamError {
        /// Connection number.
        id: u64,
        /// `refused`, `timeout`, `unreachable`, `reset`, `dns`.
        error: &'static str,
        /// Detail for the person.
        detail: String,
        /// When.
        ts: Timestamp,
    },
    /// The relay changed (or declined to change) forwarded bytes on the user's request, e.g.
    /// `--rewrite-endpoint-urls`: reported as a `fault_injected` event.
    FaultInjected {
        /// Connection number.
        id: u64,
        /// Which way the changed bytes went.
        dir: Option<Direction>,
        /// Name of the fault.
        fault: &'static str,
        /// What was changed, or why not.
        detail: String,
        /// When.
        ts: Timestamp,
    },
    /// A write toward the receiver of `dir` has waited the stall threshold: reported as
    /// `write_blocked`.
    WriteBlocked {
        /// Connection number.
        id: u64,
        /// Which way the waiting bytes go.
        dir: Direction,
        /// How long the write has waited.
        blocked_ms: u64,
        /// Bytes uatap holds for the receiver.
        pending_bytes: u64,
        /// When.
        ts: Timestamp,
    },
    /// Time passes ([`tick`]): the analysis looks for chunks stalled while nothing comes.
    Tick {
        /// Now.
        ts: Timestamp,
    },
    /// The connection ended.
    Close {
        /// Connection number.
        id: u64,
        /// Who ended it.
        by: ClosedBy,
        /// How.
        reason: CloseReason,
        /// When.
        ts: Timestamp,
    },
}

/// Bytes one relay reads per system call: large reads mean fewer system calls for a busy
/// connection, and an idle one holds no buffer at all (see [`TapBytes::read_buffer`]).
pub const READ_BUFFER: usize = 128 * 1024;

/// Bytes of a read buffer: [`READ_BUFFER`], and room to place the bytes read where a
/// recording can write them from the buffer without copying them (see [`read_offset`]). The
/// shared read buffers are slots of 2 MiB arenas (`crate::arena`), 15 to an arena.
const READ_ALLOCATION: usize = READ_BUFFER + 4096;

/// Where in `buf` a read goes: [`SPLICE_PAYLOAD_OFFSET`] past a 4 KiB boundary, so that a
/// recording with direct I/O writes the bytes from the buffer itself.
fn read_offset(buf: &[u8]) -> usize {
    let misalignment = buf.as_ptr() as usize % 4096;
    let off = (SPLICE_PAYLOAD_OFFSET + 4096 - misalignment) % 4096;
    off.min(buf.len().saturating_sub(READ_BUFFER))
}

/// Reads up to this size are copied into a buffer of their own size for the analysis, and the
/// read buffer is free again at once: many small messages (requests, responses) must not hold
/// a large buffer each while they wait for the analysis.
const SMALL_READ: usize = 16 * 1024;

/// Read buffers that may be out at once (read into, forwarded, waiting for the analysis):
/// this bounds the memory of the taps to 128 MiB, enough to ride out about 100 ms in which
/// the analysis gets no CPU at full speed. Beyond it a relay reads into a buffer of its own
/// and the analysis loses those bytes (a gap), the forwarding nothing.
const MAX_BUFFERS: usize = 1024;

/// Read buffers added to [`MAX_BUFFERS`] while a recording runs (128 MiB more). The recording
/// writes payloads from the read buffers themselves and holds each until its write is done (at
/// most 3 writes of `uatap_recorder`'s 64 splices each), and the disk, not the CPU, sets the
/// pace at full speed: when it stalls, the analysis waits for the recording, and these buffers
/// ride out twice as long a stall (about 190 ms at 1.4 GB/s) before the analysis loses bytes.
/// With 192 more, one round in five of bench13 (and of bench11 with none) lost 0.1–0.6%; with
/// these, no round of bench14 lost any.
const RECORDING_BUFFERS: usize = 1024;

/// [`MAX_BUFFERS`], plus [`RECORDING_BUFFERS`] once a recording started.
static MAX_BUFFERS_NOW: AtomicUsize = AtomicUsize::new(MAX_BUFFERS);

/// Bytes of copies of their own (and their queue entries) that may wait for the analysis at
/// once: small reads, and the rare copy larger than a read buffer (bytes a fault or an
/// endpoint rewrite made). With the read buffers, this bounds the memory of the taps however
/// many small reads come. The queue is bounded by these bytes, not by a count of reads, so
/// that a short stall of the analysis thread (a busy host) with many small messages in flight
/// loses nothing.
const MAX_QUEUED_COPIES: usize = 64 << 20;

/// What one queued small copy costs besides its bytes (its queue entry and allocation).
const COPY_OVERHEAD: usize = 128;

/// Bytes of small copies waiting now, at most [`MAX_QUEUED_COPIES`].
static QUEUED_COPIES: AtomicUsize = AtomicUsize::new(0);

/// Free read buffers kept for reuse (about 8 MiB); at each [`TICK`] the arenas whose slots are
/// all free beyond these go back to the system, so a burst that left the analysis behind does
/// not keep its memory for ever.
const KEEP_FREE: usize = 64;

/// Free read buffers kept for reuse while a recording runs and bytes come (about 25 MiB): the
/// recording writes the bytes from the read buffers themselves (direct I/O), holding each
/// until its write is done, up to about 100 of them at full speed; with only [`KEEP_FREE`]
/// kept, every write's worth went back to the system and was mapped (and zeroed) again, 340
/// times a second.
const KEEP_FREE_RECORDING: usize = 192;

/// [`KEEP_FREE`], or [`KEEP_FREE_RECORDING`] once a recording started.
static KEEP_FREE_NOW: AtomicUsize = AtomicUsize::new(KEEP_FREE);

/// Gives back to the system the arenas whose read buffers are all free, as long as more than
/// [`KEEP_FREE_NOW`] free buffers are left (while bytes come; [`KEEP_FREE`] after a tick
/// without bytes, when those a recording kept for the next writes are not needed). An arena
/// with a buffer in use stays; the free list hands out the buffers freed last first, so the
/// others drain.
fn trim_free_read_buffers(busy: bool) {
    let keep = if busy {
        KEEP_FREE_NOW.load(Ordering::Relaxed)
    } else {
        KEEP_FREE
    };
    let released = match FREE_BUFFERS.lock() {
        Ok(mut free) => release_whole_arenas(&mut free, keep),
        Err(_) => return,
    };
    BUFFERS.fetch_sub(released.len(), Ordering::Relaxed);
}

/// Takes out of `free` the slots of the arenas whose every living slot is in it, oldest in the
/// list first, as long as at least `keep` slots are left; dropping them unmaps those arenas.
fn release_whole_arenas(free: &mut Vec<Slot>, keep: usize) -> Vec<Slot> {
    if free.len() <= keep {
        return Vec::new();
    }
    let mut free_in: HashMap<usize, usize> = HashMap::new();
    for s in free.iter() {
        *free_in.entry(s.arena_id()).or_default() += 1;
    }
    let mut left = free.len();
    let mut release: Vec<usize> = Vec::new();
    for s in free.iter() {
        let id = s.arena_id();
        let n = free_in.get(&id).copied().unwrap_or(0);
        if n != s.arena_slots_alive() || release.contains(&id) {
            continue;
        }
        if left.saturating_sub(n) < keep {
            break;
        }
        left -= n;
        release.push(id);
    }
    let (gone, kept): (Vec<Slot>, Vec<Slot>) = std::mem::take(free)
        .into_iter()
        .partition(|s| release.contains(&s.arena_id()));
    *free = kept;
    gone
}

/// The read buffers not in use, shared by every relay and the analysis thread.
static FREE_BUFFERS: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

/// Read buffers that exist (free or in use), at most [`MAX_BUFFERS_NOW`].
static BUFFERS: AtomicUsize = AtomicUsize::new(0);

/// Where the bytes of a [`TapBytes`] are.
enum Memory {
    /// A shared read buffer (a slot of an arena), counted in [`BUFFERS`].
    Shared(Slot),
    /// Memory of its own: a copy, or a read buffer beyond the bound.
    Own(Vec<u8>),
}

impl Memory {
    fn bytes(&self) -> &[u8] {
        match self {
            Memory::Shared(s) => s,
            Memory::Own(v) => v,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Memory::Shared(s) => s,
            Memory::Own(v) => v,
        }
    }
}

/// A read buffer of [`READ_BUFFER`] bytes: read into by a relay, forwarded, then handed to the
/// analysis as it is; it goes back to the shared free list when dropped.
pub struct TapBytes {
    buf: Memory,
    /// Where the bytes start in `buf`.
    off: usize,
    len: usize,
    /// Counted in [`QUEUED_COPIES`] (a small copy waiting for the analysis).
    counted: usize,
    /// The TCP checksum sums of the bytes, when the relay computed them for the recording.
    sums: Option<PayloadSums>,
}

impl TapBytes {
    /// A free buffer for one read, all of it writable through [`spare`](Self::spare).
    pub fn read_buffer() -> TapBytes {
        let slot = TapBytes::free_slot();
        let buf = match slot {
            Some(s) => Memory::Shared(s),
            None => {
                keep_read_buffers_mapped();
                Memory::Own(vec![0; READ_ALLOCATION])
            }
        };
        TapBytes {
            off: read_offset(buf.bytes()),
            buf,
            len: 0,
            counted: 0,
            sums: None,
        }
    }

    /// A free shared read buffer: one from the free list, else one of a new arena (the others
    /// go to the free list). `None` when [`MAX_BUFFERS_NOW`] exist already (a new arena may
    /// take the count up to 14 past it).
    fn free_slot() -> Option<Slot> {
        let mut free = FREE_BUFFERS.lock().ok()?;
        if let Some(s) = free.pop() {
            return Some(s);
        }
        let max = MAX_BUFFERS_NOW.load(Ordering::Relaxed);
        if BUFFERS.load(Ordering::Relaxed) >= max {
            return None;
        }
        let mut slots = Slot::carve(READ_ALLOCATION)?;
        BUFFERS.fetch_add(slots.len(), Ordering::Relaxed);
        let s = slots.pop();
        free.append(&mut slots);
        s
    }

    /// Taken from the shared buffers (and counted in their bound).
    fn pooled(&self) -> bool {
        matches!(self.buf, Memory::Shared(_))
    }

    /// A copy of `bytes` for the analysis, or `None` when the bound on the memory of the taps
    /// is reached (every shared buffer in use, or as many small copies waiting as allowed).
    pub fn copy_of(bytes: &[u8]) -> Option<TapBytes> {
        if bytes.len() <= SMALL_READ || bytes.len() > READ_BUFFER {
            return TapBytes::own_copy(bytes);
        }
        let mut b = TapBytes::read_buffer();
        if !b.pooled() {
            return None;
        }
        b.spare().get_mut(..bytes.len())?.copy_from_slice(bytes);
        b.set_len(bytes.len());
        Some(b)
    }

    /// The whole buffer, to read into; then [`set_len`](Self::set_len).
    pub fn spare(&mut self) -> &mut [u8] {
        let buf = self.buf.bytes_mut();
        let end = self.off.saturating_add(READ_BUFFER).min(buf.len());
        buf.get_mut(self.off..end).unwrap_or_default()
    }

    /// How many bytes of the buffer were read.
    pub fn set_len(&mut self, n: usize) {
        self.len = n.min(self.buf.bytes().len().saturating_sub(self.off));
    }

    /// The bytes to queue for the analysis: a small read as a copy of its own size (the read
    /// buffer goes back at once), a large one as the read buffer itself. `None` when every
    /// shared buffer was in use, or [`MAX_QUEUED_COPIES`] bytes of small copies wait: the
    /// analysis is far behind, and queueing these bytes would lift the bound on the memory of
    /// the taps.
    pub fn into_tap(self) -> Option<TapBytes> {
        debug_assert!(self.sums.is_none(), "summed before it was queued");
        if self.len <= SMALL_READ {
            TapBytes::own_copy(&self)
        } else if self.pooled() {
            Some(self)
        } else {
            None
        }
    }
}

impl TapBytes {
    /// Computes the bytes' TCP checksum sums for the recording, by the relay that has just
    /// read them: they are still in its cache, while the recording thread, which reaches them
    /// later, would read them from memory (its largest cost when it summed them itself).
    pub fn sum_for_recording(&mut self) {
        self.sums = Some(PayloadSums::of(self));
    }

    /// The sums of [`sum_for_recording`](Self::sum_for_recording), if they were computed.
    fn take_sums(&mut self) -> Option<PayloadSums> {
        self.sums.take()
    }

    /// A copy of its own (a small read, or more than a read buffer holds), counted in
    /// [`QUEUED_COPIES`]; `None` when the copies waiting already reach [`MAX_QUEUED_COPIES`].
    fn own_copy(bytes: &[u8]) -> Option<TapBytes> {
        let cost = bytes.len().saturating_add(COPY_OVERHEAD);
        QUEUED_COPIES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                let after = q.saturating_add(cost);
                (after <= MAX_QUEUED_COPIES).then_some(after)
            })
            .ok()?;
        let mut b = TapBytes::from(bytes.to_vec());
        b.counted = cost;
        Some(b)
    }
}

impl From<Vec<u8>> for TapBytes {
    fn from(buf: Vec<u8>) -> Self {
        let len = buf.len();
        TapBytes {
            buf: Memory::Own(buf),
            off: 0,
            len,
            counted: 0,
            sums: None,
        }
    }
}

impl Deref for TapBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf
            .bytes()
            .get(self.off..self.off + self.len)
            .unwrap_or_default()
    }
}

impl AsRef<[u8]> for TapBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for TapBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TapBytes({} bytes)", self.len)
    }
}

impl Drop for TapBytes {
    fn drop(&mut self) {
        if self.counted > 0 {
            QUEUED_COPIES.fetch_sub(self.counted, Ordering::Relaxed);
        }
        // Back to the free list; the arenas beyond what is kept go at the next tick.
        if let Memory::Shared(slot) = std::mem::replace(&mut self.buf, Memory::Own(Vec::new())) {
            if let Ok(mut free) = FREE_BUFFERS.lock() {
                free.push(slot);
                return;
            }
            BUFFERS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How often [`tick`] gives the analysis the time.
pub const TICK: Duration = Duration::from_secs(1);

/// Sends a [`Tap::Tick`] every [`TICK`] while the taps are open: the analysis is sans-IO and
/// learns the time from its input, so a sender that stops inside a chunk is reported by these.
/// Holds no sender between ticks (the hub ends when the relays' senders are gone); a full
/// queue skips a tick.
pub async fn tick(tap: mpsc::WeakSender<Tap>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(tap) = tap.upgrade() else {
            return;
        };
        let _ = tap.try_send(Tap::Tick { ts: now() });
    }
}

/// Makes every read buffer a mapping of its own, given back to the system when it is freed.
/// glibc's malloc maps requests of 128 KiB and more, but at the first free of such a mapping it
/// raises that threshold to the freed size, and every later read buffer then comes from its
/// heaps, which keep what is freed below their top: the buffers of one burst that outran the
/// analysis (up to the bound of the taps, 128 MiB) stayed resident after the connections had
/// closed, for the life of the proxy (tests/load.rs, burst_memory_goes_back_after_the_
/// connections_close). A threshold set explicitly stays where it is set.
fn keep_read_buffers_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let threshold = libc::c_int::try_from(READ_BUFFER).unwrap_or(libc::c_int::MAX);
            // SAFETY: mallopt only changes a tuning parameter of malloc; it takes malloc's own
            // lock.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
            }
        });
    }
}

/// Now, as the analysis' timestamp.
pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The recording collects whole pcapng blocks and writes them this many bytes at a time, and
/// when traffic pauses, and at least every [`FLUSH_INTERVAL`].
const RECORD_BUFFER: usize = 4 * 1024 * 1024;

/// The longest the sinks and the recording keep what they collected: a `kill -9` loses about
/// this much of the recording and of the event file (more when they are behind the traffic).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Batches waiting for the recording thread at which the recording is behind the traffic (the
/// disk takes the bytes more slowly than they come): from then on the server's leg gets its
/// packets' headers only, as with `--record-payload-once`, so that the disk has half as much to
/// write, instead of the analysis and the recording both losing bytes when the taps fill.
const BEHIND_AT: usize = 32;

/// Batches waiting at or under which the recording keeps up.
const KEEPS_UP_AT: usize = 2;

/// How long the recording keeps up, without falling behind again, before the server's leg
/// gets its bytes again: under a load the disk cannot take, it stays behind instead of
/// switching (and reporting) every second.
const CATCH_UP_HOLD: Duration = Duration::from_secs(10);

/// Server-leg packets with bytes the recording writes in full before it may write that leg's
/// headers only while behind: the first two answers of the server (ACK and the
/// OpenSecureChannel response) follow the client's HEL and OPN, which `uatap analyze` compares
/// on both legs to pair them.
const FULL_ANSWERS_FIRST: u32 = 2;

/// One proxied connection in the recording.
struct Flow {
    /// Client to proxy.
    client: TcpFlowWriter,
    /// Proxy to server, once connected.
    server: Option<TcpFlowWriter>,
    /// The server's leg opened while the recording was behind: its bytes are on the client's
    /// leg only, for the connection's whole life (a leg that gets bytes only from its middle
    /// on could not be paired with its client leg).
    server_headers_only: bool,
    /// Server-to-client writes on the server's leg with their bytes, up to
    /// [`FULL_ANSWERS_FIRST`].
    server_answers: u32,
}

/// The recording is behind the traffic.
struct Behind {
    /// Bytes of the server's leg written as headers only since.
    headers_only_bytes: u64,
    /// The first such packet got a comment saying why.
    noted: bool,
}

/// Whether the recording is behind the traffic, judged by the batches waiting for the recording
/// thread where they are handed over: the recording thread itself may be stuck in a write.
#[derive(Default)]
struct Pressure {
    /// While behind: the last time [`BEHIND_AT`] batches or more were waiting.
    last_behind: Option<Instant>,
}

impl Pressure {
    /// `backlog` batches wait at `now`: `Some(true)` when the recording falls behind at
    /// [`BEHIND_AT`], `Some(false)` when it has kept up (at most [`KEEPS_UP_AT`] waiting) for
    /// [`CATCH_UP_HOLD`] since it was last behind.
    fn update(&mut self, backlog: usize, now: Instant) -> Option<bool> {
        if backlog >= BEHIND_AT {
            let was = self.last_behind.replace(now).is_some();
            (!was).then_some(true)
        } else if backlog <= KEEPS_UP_AT
            && self
                .last_behind
                .is_some_and(|t| now.saturating_duration_since(t) >= CATCH_UP_HOLD)
        {
            self.last_behind = None;
            Some(false)
        } else {
            None
        }
    }
}

/// Writes what crosses the proxy to pcapng: per proxied connection two TCP flows (client to
/// proxy, proxy to server) with the real addresses, the events as packet comments. Blocks are
/// collected in memory and written whole, at least every [`FLUSH_INTERVAL`].
pub struct Recording {
    writer: RotatingWriter,
    /// One interface block per listener, in the listeners' order.
    interfaces: Vec<InterfaceId>,
    /// The interface of each connection (its listener's).
    interface_of: HashMap<u64, InterfaceId>,
    flows: HashMap<u64, Flow>,
    /// The server's leg gets its packets' headers only (the bytes are on the client's leg).
    payload_once: bool,
    /// Set while the recording is behind the traffic (see [`BEHIND_AT`]).
    behind: Option<Behind>,
    stopped: bool,
    /// Where the `recording` events go (the sinks).
    events: Option<std::sync::mpsc::SyncSender<ToSinks>>,
}

impl Recording {
    /// Starts a recording with one interface block per listener (`descriptions`, in the
    /// listeners' order; Wireshark shows them as the capture's interfaces). With
    /// `payload_once`, the bytes go on the client's leg only, the server's leg getting the
    /// packets' headers (`--record-payload-once`).
    pub fn create(
        path: &std::path::Path,
        rotation: RotationConfig,
        descriptions: &[String],
        payload_once: bool,
    ) -> Result<Self, WriteError> {
        let mut writer = RotatingWriter::create_with(path, rotation, crate::os::open_record_file)?;
        let mut interfaces = Vec::with_capacity(descriptions.len().max(1));
        for (i, d) in descriptions.iter().enumerate() {
            interfaces.push(
                writer.add_interface(InterfaceDescription::ethernet(format!("uatap{i}"), d))?,
            );
        }
        if interfaces.is_empty() {
            interfaces
                .push(writer.add_interface(InterfaceDescription::ethernet("uatap", "uatap"))?);
        }
        writer.set_write_buffer(RECORD_BUFFER)?;
        KEEP_FREE_NOW.store(KEEP_FREE_RECORDING, Ordering::Relaxed);
        MAX_BUFFERS_NOW.store(MAX_BUFFERS + RECORDING_BUFFERS, Ordering::Relaxed);
        Ok(Recording {
            writer,
            interfaces,
            interface_of: HashMap::new(),
            flows: HashMap::new(),
            payload_once,
            behind: None,
            stopped: false,
            events: None,
        })
    }

    /// Sends a `recording` event to the sinks (to stderr when there are none).
    fn report(
        &self,
        action: &'static str,
        reason: String,
        bytes_written: u64,
        headers_only_bytes: u64,
    ) {
        let event = Event {
            ts: now(),
            conn: "".into(),
            dir: None,
            kind: uatap_analysis::EventKind::Recording {
                action,
                reason,
                path: self.writer.current_path().display().to_string(),
                bytes_written,
                headers_only_bytes,
            },
        };
        match &self.events {
            Some(to) => {
                let _ = to.send(ToSinks::Events(vec![event]));
                let _ = to.send(ToSinks::Flush);
            }
            None => eprintln!("uatap: {}", event.to_text()),
        }
    }

    fn guard(&mut self, r: Result<(), WriteError>) {
        if let Err(e) = r {
            if e.stops_recording() && !self.stopped {
                self.stopped = true;
                // The writer cut the file back to its last whole block.
                let bytes_written =
                    std::fs::metadata(self.writer.current_path()).map_or(0, |m| m.len());
                self.report("stopped", e.to_string(), bytes_written, 0);
            }
        }
    }

    /// Whether the recording is behind the traffic (as [`Pressure`] decided where the batches
    /// are handed over); reports `caught_up` when it no longer is.
    fn set_behind(&mut self, behind: bool) {
        if behind && self.behind.is_none() {
            self.behind = Some(Behind {
                headers_only_bytes: 0,
                noted: false,
            });
        } else if !behind {
            if let Some(b) = self.behind.take() {
                self.report(
                    "caught_up",
                    format!(
                        "the recording kept up for {} s; the server's leg gets its bytes again (connections opened while it was behind keep theirs on the client's leg)",
                        CATCH_UP_HOLD.as_secs()
                    ),
                    0,
                    b.headers_only_bytes,
                );
            }
        }
    }

    fn open(
        &mut self,
        id: u64,
        listener: usize,
        client: SocketAddr,
        server: SocketAddr,
        ts: Timestamp,
        note: &str,
    ) {
        if self.stopped {
            return;
        }
        let interface = self
            .interfaces
            .get(listener)
            .or_else(|| self.interfaces.first())
            .copied();
        let Some(interface) = interface else {
            return;
        };
        self.interface_of.insert(id, interface);
        let Ok(mut flow) = TcpFlowWriter::new(interface, client, server) else {
            return;
        };
        let r = flow.open(&mut self.writer, rts(ts), Some(note));
        self.guard(r);
        self.flows.insert(
            id,
            Flow {
                client: flow,
                server: None,
                server_headers_only: false,
                server_answers: 0,
            },
        );
    }

    fn connected(&mut self, id: u64, local: SocketAddr, upstream: SocketAddr, ts: Timestamp) {
        if self.stopped {
            return;
        }
        let Some(&interface) = self.interface_of.get(&id) else {
            return;
        };
        let Ok(mut flow) = TcpFlowWriter::new(interface, local, upstream) else {
            return;
        };
        let r = flow.open(&mut self.writer, rts(ts), None);
        self.guard(r);
        if let Some(f) = self.flows.get_mut(&id) {
            f.server = Some(flow);
            f.server_headers_only = self.behind.is_some();
        }
    }

    fn data(
        &mut self,
        id: u64,
        dir: Direction,
        bytes: &Bytes,
        sums: Option<PayloadSums>,
        ts: Timestamp,
        comments: &str,
    ) {
        if self.stopped {
            return;
        }
        let d = rdir(dir);
        let comment = (!comments.is_empty()).then_some(comments);
        let Some(flow) = self.flows.get_mut(&id) else {
            return;
        };
        // What the sender sent is on its own leg first, then on the other: the bytes are the
        // same on both, and the comments go with the client's view.
        // Summed once for the TCP checksums of both legs; written from the read buffer itself
        // where the file can (direct I/O), else copied.
        let payload = Payload::shared(bytes, sums);
        let mut r = flow
            .client
            .data_payload(&mut self.writer, d, rts(ts), &payload, comment);
        if let (Ok(()), Some(s)) = (&r, flow.server.as_mut()) {
            let behind = self
                .behind
                .as_mut()
                .filter(|_| flow.server_answers >= FULL_ANSWERS_FIRST);
            r = if self.payload_once || flow.server_headers_only {
                s.data_headers_only(&mut self.writer, d, rts(ts), &payload, None)
            } else if let Some(b) = behind {
                b.headers_only_bytes = b.headers_only_bytes.saturating_add(bytes.len() as u64);
                let note = (!std::mem::replace(&mut b.noted, true)).then_some(BEHIND_NOTE);
                s.data_headers_only(&mut self.writer, d, rts(ts), &payload, note)
            } else {
                if d == RDir::BToA {
                    flow.server_answers = flow.server_answers.saturating_add(1);
                }
                s.data_payload(&mut self.writer, d, rts(ts), &payload, None)
            };
        }
        self.guard(r);
    }

    /// Bytes that reached the proxy but not the receiver: on the sender's leg only.
    fn withheld(&mut self, id: u64, dir: Direction, bytes: &[u8], ts: Timestamp, comments: &str) {
        if self.stopped {
            return;
        }
        let comment = (!comments.is_empty()).then_some(comments);
        let Some(flow) = self.flows.get_mut(&id) else {
            return;
        };
        let leg = match dir {
            Direction::ClientToServer => Some(&mut flow.client),
            Direction::ServerToClient => flow.server.as_mut(),
        };
        if let Some(leg) = leg {
            let r = leg.data(&mut self.writer, rdir(dir), rts(ts), bytes, comment);
            self.guard(r);
        }
    }

    fn close(&mut self, id: u64, by: ClosedBy, reason: CloseReason, ts: Timestamp, comments: &str) {
        self.interface_of.remove(&id);
        let Some(Flow {
            client: mut client_leg,
            server: server_leg,
            ..
        }) = self.flows.remove(&id)
        else {
            return;
        };
        if self.stopped {
            return;
        }
        let comment = (!comments.is_empty()).then_some(comments);
        let dir = match by {
            ClosedBy::Server => RDir::BToA,
            _ => RDir::AToB,
        };
        let t = rts(ts);
        let mut legs = vec![(&mut client_leg, comment)];
        let mut server_leg = server_leg;
        if let Some(s) = server_leg.as_mut() {
            legs.push((s, None));
        }
        for (leg, c) in legs {
            let r = match reason {
                CloseReason::Rst => leg.rst(&mut self.writer, dir, t, c),
                _ => leg
                    .fin(&mut self.writer, dir, t, c)
                    .and_then(|()| leg.fin(&mut self.writer, dir.reverse(), t, None)),
            };
            self.guard(r);
        }
    }

    /// Does what the analysis thread asked.
    fn handle(&mut self, msg: ToRecording) {
        match msg {
            ToRecording::Open {
                id,
                listener,
                client,
                server,
                ts,
                note,
            } => self.open(id, listener, client, server, ts, &note),
            ToRecording::Connected {
                id,
                local,
                upstream,
                ts,
            } => self.connected(id, local, upstream, ts),
            ToRecording::Data {
                id,
                dir,
                bytes,
                sums,
                ts,
                comments,
            } => self.data(id, dir, &bytes, sums, ts, &comments),
            ToRecording::Withheld {
                id,
                dir,
                bytes,
                ts,
                comments,
            } => self.withheld(id, dir, &bytes, ts, &comments),
            ToRecording::Close {
                id,
                by,
                reason,
                ts,
                comments,
            } => self.close(id, by, reason, ts, &comments),
            ToRecording::Flush => self.flush(),
            ToRecording::Tick => {}
        }
    }

    /// Writes the blocks collected so far.
    fn flush(&mut self) {
        if !self.stopped {
            let r = self.writer.flush();
            self.guard(r);
        }
    }

    fn finish(mut self) {
        if let Some(b) = self.behind.take() {
            self.report(
                "caught_up",
                "the recording ended while behind the traffic".into(),
                0,
                b.headers_only_bytes,
            );
        }
        if let Err(e) = self.writer.finish() {
            eprintln!("uatap: recording: {e}");
        }
    }
}

/// The comment on the first server-leg packet written without its bytes while the recording is
/// behind: Wireshark marks the packet "packet size limited during capture", and this says why.
const BEHIND_NOTE: &str = "uatap: the recording is behind the traffic (the disk is slower): from here on, until it catches up, this leg's packets have their headers only; their bytes are the same as the client leg's, recorded there";

fn rts(t: Timestamp) -> uatap_recorder::Timestamp {
    uatap_recorder::Timestamp::from_unix_micros(t.unix_micros)
}

fn rdir(d: Direction) -> RDir {
    match d {
        Direction::ClientToServer => RDir::AToB,
        Direction::ServerToClient => RDir::BToA,
    }
}

/// While the queue is empty the hub looks again every this long before it sleeps until woken:
/// under load the relays then hand over their copies without waking a thread (a system call
/// and a context switch on the forwarding path), and the hub takes them in batches.
const IDLE_POLL: Duration = Duration::from_micros(500);

/// How many idle looks before the hub flushes and sleeps until woken (about 20 ms of silence).
const IDLE_POLLS: u32 = 40;

/// What looking at an empty queue for a while gave.
enum Polled {
    /// A tap came.
    Tap(Tap),
    /// Every sender is gone.
    Closed,
    /// Nothing for [`IDLE_POLLS`] looks.
    Quiet,
}

/// Looks at the empty queue every [`IDLE_POLL`] for a while.
fn poll_recv(rx: &mut mpsc::Receiver<Tap>) -> Polled {
    for _ in 0..IDLE_POLLS {
        std::thread::sleep(IDLE_POLL);
        match rx.try_recv() {
            Ok(t) => return Polled::Tap(t),
            Err(mpsc::error::TryRecvError::Empty) => {}
            Err(mpsc::error::TryRecvError::Disconnected) => return Polled::Closed,
        }
    }
    Polled::Quiet
}

/// Requests handed to the recording thread at a time, at most: fewer hand-overs, and the
/// recording thread sleeps and wakes once per batch instead of once per read.
const RECORD_BATCH: usize = 16;

/// Batches the recording thread may be behind before the analysis waits for it.
const RECORD_BATCHES_QUEUED: usize = 256;

/// What the analysis thread asks the recording thread to do.
enum ToRecording {
    Open {
        id: u64,
        listener: usize,
        client: SocketAddr,
        server: SocketAddr,
        ts: Timestamp,
        note: String,
    },
    Connected {
        id: u64,
        local: SocketAddr,
        upstream: SocketAddr,
        ts: Timestamp,
    },
    Data {
        id: u64,
        dir: Direction,
        bytes: Bytes,
        sums: Option<PayloadSums>,
        ts: Timestamp,
        comments: String,
    },
    Withheld {
        id: u64,
        dir: Direction,
        bytes: Vec<u8>,
        ts: Timestamp,
        comments: String,
    },
    Close {
        id: u64,
        by: ClosedBy,
        reason: CloseReason,
        ts: Timestamp,
        comments: String,
    },
    Flush,
    /// A second passed (the recording may have caught up while nothing came).
    Tick,
}

/// The recording, written on a thread of its own: building the packets and copying them to
/// the file takes longer than the analysis of the same bytes. The analysis hands over the
/// tapped buffers themselves, with the text of the events they caused.
struct Recorder {
    to: Option<std::sync::mpsc::SyncSender<Vec<ToRecording>>>,
    /// Batches handed over and not yet taken by the recording thread.
    backlog: std::sync::Arc<AtomicUsize>,
    /// Whether the recording is behind (`None` with `--record-payload-once`: it writes each
    /// byte once already), and the flag the recording thread reads.
    pressure: Option<Pressure>,
    behind: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Where the `behind` event goes (the sinks), and the recording it names.
    events: Option<std::sync::mpsc::SyncSender<ToSinks>>,
    path: String,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Requests not handed over yet: sent when [`RECORD_BATCH`] are waiting, and at every
    /// flush (which the analysis does when the traffic pauses, and at least every
    /// `FLUSH_INTERVAL`).
    batch: Vec<ToRecording>,
}

impl Recorder {
    /// Starts the recording thread; `events` takes the `recording` event if it stops.
    fn start(mut r: Recording, events: Option<std::sync::mpsc::SyncSender<ToSinks>>) -> Recorder {
        r.events = events.clone();
        let pressure = (!r.payload_once).then(Pressure::default);
        let path = r.writer.current_path().display().to_string();
        let behind = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let behind_now = behind.clone();
        let (to, from) = std::sync::mpsc::sync_channel::<Vec<ToRecording>>(RECORD_BATCHES_QUEUED);
        let backlog = std::sync::Arc::new(AtomicUsize::new(0));
        let waiting = backlog.clone();
        let thread = std::thread::Builder::new()
            .name("uatap-record".into())
            .spawn(move || {
                for batch in from.iter() {
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    r.set_behind(behind_now.load(Ordering::Relaxed));
                    for msg in batch {
                        r.handle(msg);
                    }
                }
                r.finish();
            })
            .ok();
        Recorder {
            to: Some(to),
            backlog,
            pressure,
            behind,
            events,
            path,
            thread,
            batch: Vec::with_capacity(RECORD_BATCH),
        }
    }

    fn send(&mut self, msg: ToRecording) {
        let now = matches!(msg, ToRecording::Flush | ToRecording::Tick);
        self.batch.push(msg);
        if now || self.batch.len() >= RECORD_BATCH {
            self.hand_over();
        }
    }

    /// Hands the waiting requests to the recording thread.
    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(RECORD_BATCH));
        let Some(to) = &self.to else {
            return;
        };
        let waiting = self.backlog.fetch_add(1, Ordering::Relaxed) + 1;
        match self
            .pressure
            .as_mut()
            .and_then(|p| p.update(waiting, Instant::now()))
        {
            Some(true) => {
                self.behind.store(true, Ordering::Relaxed);
                let event = Event {
                    ts: now(),
                    conn: "".into(),
                    dir: None,
                    kind: uatap_analysis::EventKind::Recording {
                        action: "behind",
                        reason: format!(
                            "the disk takes the recording more slowly than the traffic comes; until it keeps up for {} s, the server's leg gets its packets' headers only, as with --record-payload-once (its bytes are the client leg's, recorded there), so nothing is lost",
                            CATCH_UP_HOLD.as_secs()
                        ),
                        path: self.path.clone(),
                        bytes_written: 0,
                        headers_only_bytes: 0,
                    },
                };
                match &self.events {
                    Some(sinks) => {
                        let _ = sinks.send(ToSinks::Events(vec![event]));
                        let _ = sinks.send(ToSinks::Flush);
                    }
                    None => eprintln!("uatap: {}", event.to_text()),
                }
            }
            Some(false) => self.behind.store(false, Ordering::Relaxed),
            None => {}
        }
        if to.send(batch).is_err() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn open(
        &mut self,
        id: u64,
        listener: usize,
        client: SocketAddr,
        server: SocketAddr,
        ts: Timestamp,
        note: String,
    ) {
        self.send(ToRecording::Open {
            id,
            listener,
            client,
            server,
            ts,
            note,
        });
    }

    fn connected(&mut self, id: u64, local: SocketAddr, upstream: SocketAddr, ts: Timestamp) {
        self.send(ToRecording::Connected {
            id,
            local,
            upstream,
            ts,
        });
    }

    fn data(
        &mut self,
        id: u64,
        dir: Direction,
        bytes: Bytes,
        sums: Option<PayloadSums>,
        ts: Timestamp,
        comments: String,
    ) {
        self.send(ToRecording::Data {
            id,
            dir,
            bytes,
            sums,
            ts,
            comments,
        });
    }

    fn withheld(
        &mut self,
        id: u64,
        dir: Direction,
        bytes: Vec<u8>,
        ts: Timestamp,
        comments: String,
    ) {
        self.send(ToRecording::Withheld {
            id,
            dir,
            bytes,
            ts,
            comments,
        });
    }

    fn close(
        &mut self,
        id: u64,
        by: ClosedBy,
        reason: CloseReason,
        ts: Timestamp,
        comments: String,
    ) {
        self.send(ToRecording::Close {
            id,
            by,
            reason,
            ts,
            comments,
        });
    }

    fn flush(&mut self) {
        self.send(ToRecording::Flush);
    }

    /// A second passed.
    fn tick(&mut self) {
        self.send(ToRecording::Tick);
    }

    /// Writes everything handed over and closes the file.
    fn finish(mut self) {
        self.hand_over();
        drop(self.to.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn flush_all(sinks: &mut Sinks, recording: &mut Option<Recorder>) {
    sinks.flush();
    if let Some(r) = recording.as_mut() {
        r.flush();
    }
}

/// Events handed to the sink thread at a time (fewer hand-overs, no wake-up per event).
const EVENT_BATCH: usize = 256;

/// Batches the sink thread may be behind before the analysis waits for it (the relays never
/// wait: their copies are dropped and reported as gaps instead).
const EVENT_BATCHES_QUEUED: usize = 128;

/// What the analysis thread sends the sink thread.
enum ToSinks {
    /// Events, in order.
    Events(Vec<Event>),
    /// Write out what was collected.
    Flush,
}

/// The sinks, run on a thread of their own: formatting and writing the event lines (JSON,
/// the readable log, metrics) takes about as long as the analysis itself, and the two now run
/// side by side.
struct Sinks {
    batch: Vec<Event>,
    to: Option<std::sync::mpsc::SyncSender<ToSinks>>,
    /// Emptied batches coming back for reuse.
    recycled: std::sync::mpsc::Receiver<Vec<Event>>,
    thread: Option<std::thread::JoinHandle<Vec<Box<dyn EventSink>>>>,
}

impl Sinks {
    fn start(mut sinks: Vec<Box<dyn EventSink>>) -> Sinks {
        let (to, from) = std::sync::mpsc::sync_channel::<ToSinks>(EVENT_BATCHES_QUEUED);
        let (back, recycled) = std::sync::mpsc::channel::<Vec<Event>>();
        let thread = std::thread::Builder::new()
            .name("uatap-sinks".into())
            .spawn(move || {
                while let Ok(msg) = from.recv() {
                    match msg {
                        ToSinks::Events(mut events) => {
                            for e in events.drain(..) {
                                for s in sinks.iter_mut() {
                                    s.event(&e);
                                }
                            }
                            let _ = back.send(events);
                        }
                        ToSinks::Flush => {
                            for s in sinks.iter_mut() {
                                s.flush();
                            }
                        }
                    }
                }
                for s in sinks.iter_mut() {
                    s.flush();
                }
                sinks
            })
            .ok();
        Sinks {
            batch: Vec::with_capacity(EVENT_BATCH),
            to: Some(to),
            recycled,
            thread,
        }
    }

    /// One event, in order.
    fn event(&mut self, e: Event) {
        self.batch.push(e);
        if self.batch.len() >= EVENT_BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(EVENT_BATCH));
        let batch = std::mem::replace(&mut self.batch, next);
        if let Some(to) = &self.to {
            let _ = to.send(ToSinks::Events(batch));
        }
    }

    /// Hands over the events collected so far, to be written out after them.
    fn flush(&mut self) {
        self.send();
        if let Some(to) = &self.to {
            let _ = to.send(ToSinks::Flush);
        }
    }

    /// Flushes and stops the sink thread; returns the sinks.
    fn finish(mut self) -> Vec<Box<dyn EventSink>> {
        self.send();
        drop(self.to.take());
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// Keeps the text of events that came with no bytes for the recording's next packet of `id`.
fn note_for_later(pending: &mut HashMap<u64, String>, id: u64, text: &str) {
    if text.is_empty() {
        return;
    }
    let note = pending.entry(id).or_default();
    if !note.is_empty() {
        note.push('\n');
    }
    note.push_str(text);
}

/// Receives events from the hub.
pub trait EventSink: Send {
    /// One event, in order.
    fn event(&mut self, e: &Event);
    /// The proxy is stopping: flush.
    fn flush(&mut self) {}
}

/// Runs the analysis until every sender of `rx` is gone; returns the sinks (flushed). With a
/// recording, every tapped byte is written to it, with the events it caused as comments.
///
/// `keys`: the applications' private keys (`--private-key`), to read secured channels.
pub fn run_hub(
    mut rx: mpsc::Receiver<Tap>,
    options: Options,
    keys: uatap_crypto::passive::KeyStore,
    sinks: Vec<Box<dyn EventSink>>,
    recording: Option<Recording>,
) -> Vec<Box<dyn EventSink>> {
    let mut analyzer = Analyzer::new(options);
    analyzer.set_keys(keys);
    let mut conns: HashMap<u64, Connection> = HashMap::new();
    // Drains a connection's events to the sinks; returns their text for packet comments.
    let mut sinks = Sinks::start(sinks);
    let emit = |c: &mut Connection, sinks: &mut Sinks, comments: bool| {
        let mut text = String::new();
        while let Some(e) = c.poll_event() {
            if comments && !matches!(e.kind, uatap_analysis::EventKind::Message(_)) {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str("uatap: ");
                e.write_text(&mut text);
            }
            sinks.event(e);
        }
        text
    };
    let rec = recording.is_some();
    let to_sinks = sinks.to.clone();
    let mut recording = recording.map(|r| Recorder::start(r, to_sinks));
    // Text of `fault_injected` events waiting for the next bytes of their connection.
    let mut pending_notes: HashMap<u64, String> = HashMap::new();
    // Bytes came since the last tick (else the spare read buffers a recording keeps go).
    let mut busy = false;
    let mut last_flush = Instant::now();
    let mut since_check: u32 = 0;
    loop {
        // Sinks and recording are flushed when the traffic pauses (IDLE_POLLS looks find
        // nothing), and at least every FLUSH_INTERVAL while it goes on: a person (or `| jq`)
        // sees each event within that time, and a busy proxy neither pays a write per line or
        // packet nor wakes the sink and recording threads at every look.
        let tap = match rx.try_recv() {
            Ok(t) => {
                since_check += 1;
                if since_check >= 256 {
                    since_check = 0;
                    if last_flush.elapsed() >= FLUSH_INTERVAL {
                        flush_all(&mut sinks, &mut recording);
                        last_flush = Instant::now();
                    }
                }
                t
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                if last_flush.elapsed() >= FLUSH_INTERVAL {
                    flush_all(&mut sinks, &mut recording);
                    last_flush = Instant::now();
                }
                match poll_recv(&mut rx) {
                    Polled::Tap(t) => t,
                    Polled::Closed => break,
                    Polled::Quiet => {
                        flush_all(&mut sinks, &mut recording);
                        last_flush = Instant::now();
                        match rx.blocking_recv() {
                            Some(t) => t,
                            None => break,
                        }
                    }
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match tap {
            Tap::Open {
                id,
                listener,
                client,
                server,
                ts,
            } => {
                let mut c = analyzer.open(client.to_string(), server.to_string(), ts);
                let text = emit(&mut c, &mut sinks, rec);
                if let Some(r) = recording.as_mut() {
                    r.open(id, listener, client, server, ts, text);
                }
                conns.insert(id, c);
            }
            Tap::Connected {
                id,
                local,
                upstream,
                ts,
            } => {
                if let Some(r) = recording.as_mut() {
                    r.connected(id, local, upstream, ts);
                }
            }
            Tap::Data {
                id,
                dir,
                mut bytes,
                ts,
            } => {
                busy = true;
                if let Some(c) = conns.get_mut(&id) {
                    let sums = bytes.take_sums();
                    // Shared, so that the analysis reads the messages in the read buffer
                    // itself and the recording gets the same buffer afterwards.
                    let bytes = Bytes::from_owner(bytes);
                    analyzer.handle_input_shared(c, dir, &bytes, ts);
                    let mut text = emit(c, &mut sinks, rec);
                    if let Some(mut note) = pending_notes.remove(&id) {
                        if !text.is_empty() {
                            note.push('\n');
                            note.push_str(&text);
                        }
                        text = note;
                    }
                    if let Some(r) = recording.as_mut() {
                        r.data(id, dir, bytes, sums, ts, text);
                    }
                }
            }
            Tap::Withheld { id, dir, bytes, ts } => {
                let mut note = pending_notes.remove(&id).unwrap_or_default();
                if dir == Direction::ClientToServer {
                    // The client did send them: they are on the client's leg of the recording,
                    // so the live analysis (of that leg) sees them too, as `analyze` will.
                    if let Some(c) = conns.get_mut(&id) {
                        analyzer.handle_input(c, dir, &bytes, ts);
                        let text = emit(c, &mut sinks, rec);
                        if !text.is_empty() {
                            if !note.is_empty() {
                                note.push('\n');
                            }
                            note.push_str(&text);
                        }
                    }
                }
                if let Some(r) = recording.as_mut() {
                    r.withheld(id, dir, bytes, ts, note);
                }
            }
            Tap::Lost { id, dir, bytes, ts } => {
                if let Some(c) = conns.get_mut(&id) {
                    analyzer.handle_gap(c, dir, bytes, ts);
                    emit(c, &mut sinks, false);
                }
            }
            Tap::UpstreamError {
                id,
                error,
                detail,
                ts,
            } => {
                if let Some(c) = conns.get_mut(&id) {
                    c.handle_upstream_error(error, detail, ts);
                    emit(c, &mut sinks, false);
                }
            }
            Tap::FaultInjected {
                id,
                dir,
                fault,
                detail,
                ts,
            } => {
                if let Some(c) = conns.get(&id) {
                    let e = Event {
                        ts,
                        conn: c.id().into(),
                        dir,
                        kind: uatap_analysis::EventKind::FaultInjected {
                            fault: fault.to_string(),
                            detail,
                        },
                    };
                    if rec {
                        // Goes into the recording with the next bytes of the connection.
                        let note = pending_notes.entry(id).or_default();
                        if !note.is_empty() {
                            note.push('\n');
                        }
                        note.push_str("uatap: ");
                        note.push_str(&e.to_text());
                    }
                    sinks.event(e);
                }
            }
            Tap::WriteBlocked {
                id,
                dir,
                blocked_ms,
                pending_bytes,
                ts,
            } => {
                if let Some(c) = conns.get_mut(&id) {
                    c.handle_write_blocked(dir, blocked_ms, pending_bytes, ts);
                    let text = emit(c, &mut sinks, rec);
                    // Goes into the recording with the next bytes of the connection.
                    note_for_later(&mut pending_notes, id, &text);
                }
            }
            Tap::Tick { ts } => {
                trim_free_read_buffers(std::mem::take(&mut busy));
                if let Some(r) = recording.as_mut() {
                    r.tick();
                }
                for (id, c) in conns.iter_mut() {
                    c.handle_timeout(ts);
                    let text = emit(c, &mut sinks, rec);
                    note_for_later(&mut pending_notes, *id, &text);
                }
            }
            Tap::Close { id, by, reason, ts } => {
                let note = pending_notes.remove(&id);
                if let Some(mut c) = conns.remove(&id) {
                    analyzer.handle_close(&mut c, by, reason, ts);
                    let mut text = emit(&mut c, &mut sinks, rec);
                    if let Some(mut note) = note {
                        note.push('\n');
                        note.push_str(&text);
                        text = note;
                    }
                    if let Some(r) = recording.as_mut() {
                        r.close(id, by, reason, ts, text);
                    }
                }
            }
        }
    }
    // Shutting down: close what is still open so summaries and recordings are complete.
    let ts = now();
    for (id, mut c) in conns.drain() {
        analyzer.handle_close(&mut c, ClosedBy::Proxy, CloseReason::Error, ts);
        let text = emit(&mut c, &mut sinks, rec);
        if let Some(r) = recording.as_mut() {
            r.close(id, ClosedBy::Proxy, CloseReason::Fin, ts, text);
        }
    }
    // Verdicts on sessions lost and not (yet) come back: the proxy stops, so this is the end.
    analyzer.finish(ts);
    while let Some(e) = analyzer.poll_event() {
        sinks.event(e);
    }
    if let Some(r) = recording {
        r.finish();
    }
    sinks.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recording_falls_behind_at_once_and_catches_up_after_keeping_up_for_a_while() {
        let mut p = Pressure::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(p.update(BEHIND_AT - 1, t0), None);
        assert_eq!(p.update(BEHIND_AT, t0), Some(true), "falls behind");
        assert_eq!(p.update(BEHIND_AT + 5, t0 + s), None, "is behind already");
        assert_eq!(
            p.update(KEEPS_UP_AT, t0 + s + CATCH_UP_HOLD - s / 10),
            None,
            "has not kept up for the hold since it was last behind"
        );
        assert_eq!(
            p.update(KEEPS_UP_AT + 1, t0 + 3 * CATCH_UP_HOLD),
            None,
            "more batches wait than keeping up allows"
        );
        assert_eq!(
            p.update(KEEPS_UP_AT, t0 + 3 * CATCH_UP_HOLD),
            Some(false),
            "caught up"
        );
        assert_eq!(p.update(0, t0 + 4 * CATCH_UP_HOLD), None);
        assert_eq!(
            p.update(BEHIND_AT, t0 + 4 * CATCH_UP_HOLD),
            Some(true),
            "falls behind again"
        );
    }

    #[test]
    fn behind_the_traffic_the_server_leg_gets_headers_only_and_nothing_is_lost() {
        let dir = std::env::temp_dir().join(format!("uatap-behind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("behind.pcapng");
        let mut r = Recording::create(
            &path,
            RotationConfig::default(),
            &["test".to_string()],
            false,
        )
        .unwrap();
        let (to, from) = std::sync::mpsc::sync_channel(16);
        r.events = Some(to);
        let addr = |p: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], p)) };
        let ts = |s: i64| Timestamp::from_unix_micros(1_700_000_000_000_000 + s * 1_000_000);
        let bytes = |tag: &str, n: usize| Bytes::from(format!("{tag}:{}", "x".repeat(n)));
        let (c2s, s2c) = (Direction::ClientToServer, Direction::ServerToClient);
        // Connection `id`: client port `port`, its server leg from `port + 1`; HEL and ACK.
        let handshake = |r: &mut Recording, id: u64, port: u16, hel: &str, ack: &str| {
            r.open(id, 0, addr(port), addr(4841), ts(0), "");
            r.connected(id, addr(port + 1), addr(4840), ts(0));
            r.data(id, c2s, &bytes(hel, 50), None, ts(0), "");
            r.data(id, s2c, &bytes(ack, 20), None, ts(0), "");
        };
        // Connection 1 opens while the recording keeps up: HEL and ACK in full on both legs.
        handshake(&mut r, 1, 50001, "HEL", "ACK");
        // Behind: the first two answers of a server leg still go in full, so the client's HEL
        // and OPN are on both legs for `uatap analyze` to pair them.
        r.set_behind(true);
        r.data(1, c2s, &bytes("OPN", 100), None, ts(1), "");
        r.data(1, s2c, &bytes("OPN-answer", 80), None, ts(1), "");
        r.data(1, c2s, &bytes("MSG1", 1000), None, ts(2), "uatap: an event");
        r.data(1, s2c, &bytes("MSG1-answer", 3000), None, ts(2), "");
        // Connection 2 opens while behind: its server leg never gets bytes.
        handshake(&mut r, 2, 50003, "HEL2", "ACK2");
        r.set_behind(true);
        r.data(1, s2c, &bytes("MSG2-answer", 500), None, ts(3), "");
        r.data(1, s2c, &bytes("MSG3-answer", 7), None, ts(4), "");
        r.set_behind(false);
        r.data(1, c2s, &bytes("MSG4", 60), None, ts(5), "");
        r.data(2, s2c, &bytes("MSG4-answer-2", 90), None, ts(5), "");
        r.close(1, ClosedBy::Client, CloseReason::Fin, ts(6), "");
        r.close(2, ClosedBy::Client, CloseReason::Fin, ts(6), "");
        r.finish();

        let mut events = Vec::new();
        while let Ok(m) = from.try_recv() {
            if let ToSinks::Events(e) = m {
                events.extend(e);
            }
        }
        let recording: Vec<(&str, u64)> = events
            .iter()
            .map(|e| match &e.kind {
                uatap_analysis::EventKind::Recording {
                    action,
                    headers_only_bytes,
                    ..
                } => (*action, *headers_only_bytes),
                k => panic!("{k:?}"),
            })
            .collect();
        // Written as headers only while behind: MSG1 (c2s) and three answers of connection 1;
        // connection 2's server leg (its own count: from the start, not a switch) is not in it.
        let switched = [1005, 3012, 512, 19];
        assert_eq!(recording, [("caught_up", switched.iter().sum::<u64>())]);

        let legs = crate::test_support::legs_of(&path);
        let full = |tag: &str, n: usize| format!("{tag}:{}", "x".repeat(n)).into_bytes();
        let data = |c2s: bool, b: Vec<u8>| (true, c2s, b);
        let gap = |c2s: bool, n: usize| (false, c2s, vec![0; n]);
        // The client legs hold every byte.
        assert_eq!(
            legs[&(50001, 4841)],
            [
                data(true, full("HEL", 50)),
                data(false, full("ACK", 20)),
                data(true, full("OPN", 100)),
                data(false, full("OPN-answer", 80)),
                data(true, full("MSG1", 1000)),
                data(false, full("MSG1-answer", 3000)),
                data(false, full("MSG2-answer", 500)),
                data(false, full("MSG3-answer", 7)),
                data(true, full("MSG4", 60)),
            ]
        );
        assert_eq!(
            legs[&(50003, 4841)],
            [
                data(true, full("HEL2", 50)),
                data(false, full("ACK2", 20)),
                data(false, full("MSG4-answer-2", 90)),
            ]
        );
        // Connection 1's server leg: in full up to its second answer, headers only while
        // behind, in full again once caught up.
        let (h, a) = (&legs[&(50002, 4840)], gap);
        assert_eq!(
            *h,
            [
                data(true, full("HEL", 50)),
                data(false, full("ACK", 20)),
                data(true, full("OPN", 100)),
                data(false, full("OPN-answer", 80)),
                a(true, 1005),
                a(false, 3012 + 512 + 19),
                data(true, full("MSG4", 60)),
            ],
            "connection 1, server leg"
        );
        // Connection 2's server leg, opened while behind: headers only for its whole life.
        assert_eq!(
            legs[&(50004, 4840)],
            [gap(true, 55), gap(false, 25 + 104)],
            "connection 2, server leg"
        );
        // The first packet without its bytes says why, once.
        let file = std::fs::read(&path).unwrap();
        let noted = file
            .windows(BEHIND_NOTE.len())
            .filter(|w| *w == BEHIND_NOTE.as_bytes())
            .count();
        assert_eq!(noted, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_arenas_with_every_buffer_free_go_back_and_enough_are_kept() {
        let mut a = Slot::carve(READ_ALLOCATION).expect("arena a");
        let b = Slot::carve(READ_ALLOCATION).expect("arena b");
        let c = Slot::carve(READ_ALLOCATION).expect("arena c");
        let per = a.len();
        let (a_id, b_id, c_id) = (a[0].arena_id(), b[0].arena_id(), c[0].arena_id());
        // One buffer of arena a is still in use (by the analysis or the recording).
        let in_use = a.pop().expect("slot");
        let mut free: Vec<Slot> = a.into_iter().chain(b).chain(c).collect();
        assert_eq!(free.len(), 3 * per - 1);

        // Keeping more than two arenas' worth: nothing can go without going under it.
        let gone = release_whole_arenas(&mut free, 2 * per);
        assert!(gone.is_empty());

        // Keeping one arena's worth: b goes (the oldest whole one); a stays, its buffer in use.
        let gone = release_whole_arenas(&mut free, per);
        assert_eq!(gone.len(), per);
        assert!(gone.iter().all(|s| s.arena_id() == b_id));
        assert!(free.iter().all(|s| s.arena_id() != b_id));
        assert_eq!(free.len(), 2 * per - 1);

        // Keeping nothing: c goes, a still stays.
        let gone = release_whole_arenas(&mut free, 0);
        assert!(gone.iter().all(|s| s.arena_id() == c_id));
        assert_eq!(free.len(), per - 1);
        assert!(free.iter().all(|s| s.arena_id() == a_id));

        // Its last buffer back: a goes too.
        free.push(in_use);
        let gone = release_whole_arenas(&mut free, 0);
        assert_eq!(gone.len(), per);
        assert!(free.is_empty());
    }

    #[test]
    fn small_reads_are_copied_and_large_ones_handed_over() {
        let mut b = TapBytes::read_buffer();
        assert_eq!(b.spare().len(), READ_BUFFER);
        b.spare()[..3].copy_from_slice(b"abc");
        b.set_len(3);
        let small = b
            .into_tap()
            .expect("a small read is tapped while the bound allows");
        assert_eq!(&small[..], b"abc");
        // A copy of its own size: the read buffer is free again.
        assert!(!small.pooled());
        assert!(matches!(&small.buf, Memory::Own(v) if v.capacity() == 3));
        assert_eq!(small.counted, 3 + COPY_OVERHEAD, "counted while it waits");

        let mut b = TapBytes::read_buffer();
        b.spare().fill(7);
        b.set_len(READ_BUFFER);
        let pooled = b.pooled();
        match b.into_tap() {
            Some(large) => {
                assert!(pooled);
                assert_eq!(large.len(), READ_BUFFER);
                assert!(large.iter().all(|&x| x == 7));
            }
            // Only when every shared buffer was out (other tests may hold some).
            None => assert!(!pooled),
        }
        assert_eq!(
            TapBytes::copy_of(b"xyz").as_deref(),
            Some(&b"xyz"[..]),
            "small copies are tapped while the bound allows"
        );
    }
}
