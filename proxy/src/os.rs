//! What differs by platform outside the sockets: hiding a password as it is typed, and the
//! CPU time of this process (for the benches).

/// Turns the terminal's echo off or on (so a password typed at a prompt is not shown); false
/// when it could not, and the caller must then not read a secret from the terminal.
#[cfg(unix)]
pub fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// Turns the terminal's echo off or on; false when it could not.
#[cfg(not(unix))]
pub fn set_echo(_on: bool) -> bool {
    // No portable way without a console API: the caller refuses to read a visible password.
    false
}

/// CPU seconds this process has used so far (user and system, all threads); `None` where the
/// platform's clock is not read (the benches then report wall-clock time only).
#[cfg(target_os = "linux")]
pub fn process_cpu_secs() -> Option<f64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    (rc == 0).then_some(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

/// CPU seconds this process has used so far; `None` on this platform.
#[cfg(not(target_os = "linux"))]
pub fn process_cpu_secs() -> Option<f64> {
    None
}

/// Creates (or truncates) one file of a recording. On Linux the file is written with direct
/// I/O ([`DirectFile`]): the page cache would copy every recorded byte once more, which on a
/// small machine costs more CPU than the rest of the proxy. Where the file system refuses
/// direct I/O, and on other platforms, a plain file.
pub fn open_record_file(
    path: &std::path::Path,
) -> std::io::Result<Box<dyn uatap_recorder::RecordFile>> {
    #[cfg(target_os = "linux")]
    {
        // A pipe (to Wireshark) or a device is written as it is: positioned writes are for
        // files, and O_DIRECT on a pipe means something else.
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
        if special {
            return uatap_recorder::open_plain_file(path);
        }
        match DirectFile::create(path) {
            Ok(f) => return Ok(Box::new(f)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    uatap_recorder::open_plain_file(path)
}

#[cfg(target_os = "linux")]
pub use direct::DirectFile;

#[cfg(target_os = "linux")]
mod direct {
    use std::fs::File;
    use std::io::{self, IoSlice, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use bytes::Bytes;
    use uatap_recorder::{join_splices, write_filler_block, RecordFile, Splice, MIN_BLOCK_LEN};

    /// Offsets, lengths and addresses of direct I/O are multiples of this (the page size:
    /// enough for every block device's logical block size).
    const ALIGN: usize = 4096;

    /// Buffers are made this much larger than the write that needs them, in steps of it.
    const SPARE: usize = 256 * 1024;

    /// Writes handed to the I/O thread and not yet done, at most: one is written while the
    /// next is filled.
    const IN_FLIGHT: usize = 2;

    /// A recording file written with `O_DIRECT`, from memory to the device without the page
    /// cache's copy, by a thread of its own so that the next bytes are prepared while the
    /// device writes.
    ///
    /// Each [`write`](Write::write) (whole pcapng blocks, from the recorder) becomes one
    /// aligned write. Direct writes cover whole 4 KiB pieces, so the bytes after the last
    /// whole piece (the tail) are written again at the start of the next one, and the last
    /// piece is completed with a filler block that readers skip: the file always ends on a
    /// block boundary or on that filler, and a `kill -9` leaves a readable file. Dropping the
    /// file waits for its writes and cuts the filler off.
    ///
    /// Where the file system refuses a direct write, the writes go on through the page cache.
    /// An I/O error is returned by the next call; [`set_len`](RecordFile::set_len) then cuts
    /// the file within what was really written.
    #[derive(Debug)]
    pub struct DirectFile {
        file: Arc<File>,
        jobs: Option<SyncSender<Job>>,
        done: Receiver<Done>,
        thread: Option<JoinHandle<()>>,
        /// Buffers back from the I/O thread, for the next writes.
        free: Vec<Aligned>,
        in_flight: usize,
        /// The bytes after the last whole piece, written again with the next write.
        tail: Vec<u8>,
        /// File offset of the tail (a multiple of [`ALIGN`]).
        base: u64,
        /// End of the bytes known to be in the file (of the last write done).
        durable: u64,
        /// The last write done left a filler block after `durable`.
        filler: bool,
        /// The first I/O error; every later call returns it.
        error: Option<(io::ErrorKind, Option<i32>, String)>,
        /// Alignment of memory and lengths for direct I/O from buffers the file does not own
        /// ([`RecordFile::splice_alignment`]), when the file system tells it.
        splice_align: Option<usize>,
    }

    /// A buffer of `capacity` bytes for the writes. Asked to be backed by huge pages: the
    /// device reads it page by page, and with 4 KiB pages the kernel pins a thousand of them
    /// for each 4 MiB write (2.5% more stream with payload-once recording in 6 alternating
    /// runs on a 2-core machine).
    fn write_buffer(capacity: usize) -> Vec<u8> {
        let mem: Vec<u8> = Vec::with_capacity(capacity);
        let at = (mem.as_ptr() as usize).next_multiple_of(ALIGN);
        let len = (mem.as_ptr() as usize + mem.capacity()).saturating_sub(at) / ALIGN * ALIGN;
        if len > 0 {
            // SAFETY: the range lies within the allocation of `mem` (whole pages of it); the
            // advice changes how those pages are backed, not their contents or the mapping.
            unsafe {
                libc::madvise(at as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
        mem
    }

    /// What the file system asks of direct I/O (`statx`, `STATX_DIOALIGN`): the larger of its
    /// memory and offset alignments, if it says and it is at most [`ALIGN`].
    fn dio_alignment(file: &File) -> Option<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: statx is plain data; all zeros is a valid value.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: an open descriptor, an empty path with AT_EMPTY_PATH (the descriptor
        // itself), and a pointer to a statx the call fills.
        let r = unsafe {
            libc::statx(
                file.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                libc::STATX_DIOALIGN,
                &mut stx,
            )
        };
        if r != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 {
            return None;
        }
        let align = stx.stx_dio_mem_align.max(stx.stx_dio_offset_align) as usize;
        (align.is_power_of_two() && (4..=ALIGN).contains(&align)).then_some(align)
    }

    /// Memory whose region from `start` is aligned to [`ALIGN`].
    #[derive(Debug)]
    struct Aligned {
        mem: Vec<u8>,
        start: usize,
    }

    impl Aligned {
        /// `len` bytes of aligned region in `mem` (or in new memory, with room to spare, when
        /// `mem` is too small: a new buffer costs a page fault per page).
        fn region_in(mut mem: Vec<u8>, len: usize) -> Aligned {
            let need = len + ALIGN;
            if mem.capacity() < need {
                mem = write_buffer((need + SPARE).next_multiple_of(SPARE));
            }
            mem.clear();
            let start = mem.as_ptr().align_offset(ALIGN);
            mem.resize(start + len, 0);
            Aligned { mem, start }
        }
    }

    /// Bytes of filler that complete `total` bytes to a whole piece (none, or a whole block).
    fn pad_for(total: usize) -> usize {
        let pad = total.next_multiple_of(ALIGN) - total;
        if pad > 0 && pad < MIN_BLOCK_LEN {
            pad + ALIGN
        } else {
            pad
        }
    }

    /// One write for the I/O thread.
    struct Job {
        buf: Aligned,
        /// Bytes that go in between the bytes of `buf`'s region: (offset in the region of the
        /// byte they go before, the bytes), in order.
        splices: Vec<(usize, Bytes)>,
        /// Bytes of file data: the start of `buf`'s region with `splices` put in.
        data: usize,
        /// Bytes to write in direct mode: `data`, then a filler block up to a whole piece.
        direct: usize,
        offset: u64,
    }

    /// A job done: its buffer back, and where the file's data now ends (or the error).
    struct Done {
        buf: Aligned,
        result: Result<Written, io::Error>,
    }

    struct Written {
        end: u64,
        filler: bool,
    }

    impl DirectFile {
        /// Creates (or truncates) `path` for direct writes; `EINVAL` when the file system does
        /// not do direct I/O.
        pub fn create(path: &Path) -> io::Result<DirectFile> {
            let file = Arc::new(
                File::options()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)?,
            );
            let (jobs, jobs_rx) = sync_channel::<Job>(IN_FLIGHT);
            let (done_tx, done) = sync_channel::<Done>(IN_FLIGHT);
            let splice_align = dio_alignment(&file);
            let for_thread = Arc::clone(&file);
            let thread = std::thread::Builder::new()
                .name("uatap-record-io".into())
                .spawn(move || io_thread(&for_thread, &jobs_rx, &done_tx))?;
            Ok(DirectFile {
                file,
                jobs: Some(jobs),
                done,
                thread: Some(thread),
                free: Vec::new(),
                in_flight: 0,
                tail: Vec::with_capacity(ALIGN),
                base: 0,
                durable: 0,
                filler: false,
                error: None,
                splice_align,
            })
        }

        /// Waits for every write handed to the I/O thread; the length of the data in the file.
        pub fn wait(&mut self) -> io::Result<u64> {
            while self.in_flight > 0 {
                self.take_done(true);
            }
            self.check()?;
            Ok(self.durable)
        }

        /// Takes one finished write (waiting for it if `block`); false when none was there.
        fn take_done(&mut self, block: bool) -> bool {
            let done = if block {
                self.done.recv().ok()
            } else {
                self.done.try_recv().ok()
            };
            let Some(done) = done else {
                if block {
                    // The thread is gone (it cannot panic, but do not wait for ever).
                    self.in_flight = 0;
                }
                return false;
            };
            self.in_flight -= 1;
            self.free.push(done.buf);
            match done.result {
                Ok(w) => {
                    self.durable = w.end;
                    self.filler = w.filler;
                }
                Err(e) => {
                    if self.error.is_none() {
                        self.error = Some((e.kind(), e.raw_os_error(), e.to_string()));
                    }
                }
            }
            true
        }

        /// Waits until fewer than [`IN_FLIGHT`] writes are with the I/O thread.
        fn wait_for_room(&mut self) -> io::Result<()> {
            while self.in_flight >= IN_FLIGHT {
                if !self.take_done(true) {
                    break;
                }
            }
            self.check()
        }

        /// Hands `buf` to the I/O thread: its region holds room for the tail, then `data_len`
        /// bytes, and room for the filler. Puts the tail in front and the filler behind.
        fn submit(&mut self, buf: Aligned, data_len: usize) -> io::Result<()> {
            self.submit_spliced(buf, data_len, Vec::new())
        }

        /// [`submit`](Self::submit) with `splices` (region offsets, aligned) put in between
        /// the region's bytes.
        fn submit_spliced(
            &mut self,
            mut buf: Aligned,
            data_len: usize,
            splices: Vec<(usize, Bytes)>,
        ) -> io::Result<()> {
            let tail = self.tail.len();
            let in_region = tail + data_len;
            let spliced: usize = splices.iter().map(|(_, b)| b.len()).sum();
            let total = in_region + spliced;
            let pad = pad_for(total);
            let end = buf.start + in_region + pad;
            if buf.mem.len() < end {
                buf.mem.resize(end, 0);
            }
            let region = &mut buf.mem[buf.start..end];
            region[..tail].copy_from_slice(&self.tail);
            // The recorder's writes are whole pcapng blocks (multiples of 4 bytes), and so is
            // the pad; any other write goes out without filler.
            let direct = if write_filler_block(&mut region[in_region..]) {
                total + pad
            } else {
                total
            };
            let whole = total / ALIGN * ALIGN;
            self.tail.clear();
            copy_range(region, &splices, whole, total, &mut self.tail);
            let job = Job {
                buf,
                splices,
                data: total,
                direct,
                offset: self.base,
            };
            self.base += whole as u64;
            let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
            if !sent {
                return Err(io::Error::other("the recording's I/O thread is gone"));
            }
            self.in_flight += 1;
            Ok(())
        }

        fn check(&self) -> io::Result<()> {
            match &self.error {
                None => Ok(()),
                Some((_, Some(code), _)) => Err(io::Error::from_raw_os_error(*code)),
                Some((kind, None, text)) => Err(io::Error::new(*kind, text.clone())),
            }
        }
    }

    /// Writes jobs in order until the channel closes; after an error, writes nothing more.
    fn io_thread(file: &File, jobs: &Receiver<Job>, done: &SyncSender<Done>) {
        let mut plain = false;
        let mut failed = false;
        while let Ok(job) = jobs.recv() {
            let result = if failed {
                Err(io::Error::other("an earlier write failed"))
            } else {
                write_job(file, &job, &mut plain)
            };
            failed |= result.is_err();
            if done
                .send(Done {
                    buf: job.buf,
                    result,
                })
                .is_err()
            {
                return;
            }
        }
    }

    /// One job: a direct write of its data and filler, or a plain write of its data once the
    /// file system refused direct I/O. The region's pieces and the spliced bytes between them
    /// go in one vectored write.
    fn write_job(file: &File, job: &Job, plain: &mut bool) -> io::Result<Written> {
        let spliced: usize = job.splices.iter().map(|(_, b)| b.len()).sum();
        let end = job.offset + job.data as u64;
        if !*plain {
            let mut slices = pieces(job, job.direct - spliced);
            match write_vectored_all_at(file, &mut slices, job.offset) {
                Ok(()) => {
                    return Ok(Written {
                        end,
                        filler: job.direct > job.data,
                    })
                }
                Err((0, e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // Not for direct I/O after all: from here on plainly, without the filler
                    // an earlier write may have left past this one's data.
                    stop_direct(file)?;
                    *plain = true;
                    file.set_len(job.offset)?;
                }
                Err((_, e)) => return Err(e),
            }
        }
        let mut slices = pieces(job, job.data - spliced);
        write_vectored_all_at(file, &mut slices, job.offset).map_err(|(_, e)| e)?;
        Ok(Written { end, filler: false })
    }

    /// The first `region_len` bytes of a job's region with its splices between them, in file
    /// order.
    fn pieces(job: &Job, region_len: usize) -> Vec<IoSlice<'_>> {
        let region = job.buf.mem.get(job.buf.start..).unwrap_or_default();
        let region = region.get(..region_len).unwrap_or(region);
        let mut slices = Vec::with_capacity(job.splices.len() * 2 + 1);
        let mut from = 0usize;
        for (at, bytes) in &job.splices {
            let at = (*at).clamp(from, region.len());
            if at > from {
                slices.push(IoSlice::new(&region[from..at]));
            }
            slices.push(IoSlice::new(bytes));
            from = at;
        }
        if from < region.len() {
            slices.push(IoSlice::new(&region[from..]));
        }
        slices
    }

    /// Copies bytes `from..to` of the file data that `region` with `splices` put in makes.
    fn copy_range(
        region: &[u8],
        splices: &[(usize, Bytes)],
        from: usize,
        to: usize,
        out: &mut Vec<u8>,
    ) {
        // Walks the pieces in file order: (file offset of the piece, its bytes).
        let mut file_pos = 0usize;
        let mut region_pos = 0usize;
        let mut take = |piece: &[u8], file_pos: &mut usize| {
            let start = from.max(*file_pos);
            let end = to.min(*file_pos + piece.len());
            if start < end {
                out.extend_from_slice(&piece[start - *file_pos..end - *file_pos]);
            }
            *file_pos += piece.len();
        };
        for (at, bytes) in splices {
            let at = (*at).clamp(region_pos, region.len());
            take(&region[region_pos..at], &mut file_pos);
            take(bytes, &mut file_pos);
            region_pos = at;
        }
        take(&region[region_pos..], &mut file_pos);
    }

    /// Writes `slices` at `offset` whole (`pwritev`, at most 1024 at a time, retrying short
    /// writes); the bytes written on error.
    fn write_vectored_all_at(
        file: &File,
        mut slices: &mut [IoSlice<'_>],
        offset: u64,
    ) -> Result<(), (usize, io::Error)> {
        use std::os::fd::AsRawFd;
        let mut done = 0usize;
        while !slices.is_empty() {
            let count = slices.len().min(1024);
            let at = libc::off_t::try_from(offset + done as u64)
                .map_err(|_| (done, io::Error::from(io::ErrorKind::InvalidInput)))?;
            // SAFETY: IoSlice is ABI-compatible with iovec on Unix; `count` of them are valid
            // for the call, which only reads the memory they point to.
            let n = unsafe {
                libc::pwritev(
                    file.as_raw_fd(),
                    slices.as_ptr().cast::<libc::iovec>(),
                    count as libc::c_int,
                    at,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err((done, e));
            }
            if n == 0 {
                return Err((done, io::ErrorKind::WriteZero.into()));
            }
            let n = n as usize;
            done += n;
            IoSlice::advance_slices(&mut slices, n);
        }
        Ok(())
    }

    /// Clears `O_DIRECT` on the file's descriptor: plain writes from then on.
    fn stop_direct(file: &File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on an open descriptor; no pointers are passed.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    impl Write for DirectFile {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            while self.take_done(false) {}
            self.check()?;
            if data.is_empty() {
                return Ok(0);
            }
            let tail = self.tail.len();
            let total = tail + data.len();
            self.wait_for_room()?;
            let mem = self.free.pop().map(|a| a.mem).unwrap_or_default();
            let mut buf = Aligned::region_in(mem, total + pad_for(total));
            buf.mem[buf.start + tail..buf.start + total].copy_from_slice(data);
            self.submit(buf, data.len())?;
            Ok(data.len())
        }

        /// Nothing to do: each write is handed to the I/O thread at once, and dropping the
        /// file waits for them.
        fn flush(&mut self) -> io::Result<()> {
            while self.take_done(false) {}
            self.check()
        }
    }

    impl RecordFile for DirectFile {
        /// The blocks start where, with the tail copied in front of them, the write begins at
        /// an aligned address: they go to the device from the writer's own buffer, uncopied.
        fn blocks_start(&mut self, buf: &mut Vec<u8>, capacity: usize) -> Option<usize> {
            // Buffers the I/O thread is done with, to reuse.
            while self.take_done(false) {}
            let need = capacity + 4 * ALIGN;
            if buf.capacity() < need {
                *buf = match self.free.pop().filter(|a| a.mem.capacity() >= need) {
                    Some(a) => a.mem,
                    None => write_buffer((need + SPARE).next_multiple_of(SPARE)),
                };
            }
            buf.clear();
            let start = buf.as_ptr().align_offset(ALIGN) + self.tail.len();
            buf.resize(start, 0);
            Some(start)
        }

        fn write_blocks(&mut self, buf: &mut Vec<u8>, start: usize) -> io::Result<()> {
            while self.take_done(false) {}
            self.check()?;
            let tail = self.tail.len();
            let data_len = buf.len().saturating_sub(start);
            let total = tail + data_len;
            // Laid out by `blocks_start` and not moved since (else: copied like any write).
            let in_place = start >= tail
                && (buf.as_ptr() as usize + start - tail) % ALIGN == 0
                && buf.capacity() >= buf.len() + pad_for(total);
            if !in_place || data_len == 0 {
                let result = buf.get(start..).map_or(Ok(()), |b| self.write_all(b));
                buf.clear();
                return result;
            }
            self.wait_for_room()?;
            let mem = std::mem::take(buf);
            let region = Aligned {
                mem,
                start: start - tail,
            };
            self.submit(region, data_len)
        }

        fn splice_alignment(&self) -> Option<usize> {
            self.splice_align
        }

        /// The collected blocks go to the device from the writer's buffer and the spliced
        /// bytes from theirs, in one vectored write; each piece lies aligned as direct I/O
        /// needs (else they are joined and copied like any write).
        fn write_blocks_spliced(
            &mut self,
            buf: &mut Vec<u8>,
            start: usize,
            splices: Vec<Splice>,
        ) -> io::Result<()> {
            if splices.is_empty() {
                return self.write_blocks(buf, start);
            }
            while self.take_done(false) {}
            self.check()?;
            let tail = self.tail.len();
            let data_len = buf.len().saturating_sub(start);
            let spliced: usize = splices.iter().map(|s| s.bytes.len()).sum();
            let total = tail + data_len + spliced;
            let base = buf.as_ptr() as usize;
            let aligned = |at: usize, bytes: &Bytes, a: usize| {
                (base + at) % a == 0 && bytes.as_ptr() as usize % a == 0 && bytes.len() % a == 0
            };
            let in_place = start >= tail
                && (base + start - tail) % ALIGN == 0
                && buf.capacity() >= buf.len() + pad_for(total)
                && self.splice_align.is_some_and(|a| {
                    splices.iter().all(|s| aligned(s.at, &s.bytes, a))
                        && splices.windows(2).all(|w| w[0].at <= w[1].at)
                        && splices.iter().all(|s| (start..=buf.len()).contains(&s.at))
                });
            if !in_place {
                let joined = join_splices(buf.get(start..).unwrap_or_default(), start, &splices);
                buf.clear();
                return self.write_all(&joined);
            }
            self.wait_for_room()?;
            let mem = std::mem::take(buf);
            let region = Aligned {
                mem,
                start: start - tail,
            };
            let offsets = splices
                .into_iter()
                .map(|s| (s.at - region.start, s.bytes))
                .collect();
            self.submit_spliced(region, data_len, offsets)
        }

        fn set_len(&mut self, len: u64) -> io::Result<()> {
            let _ = self.wait();
            // Within what was really written: each write ends on a block boundary.
            let len = len.min(self.durable);
            self.file.set_len(len)?;
            self.durable = len;
            self.filler = false;
            // Only after an error: the writer stops, so no later write is expected.
            self.tail.clear();
            self.base = len;
            Ok(())
        }
    }

    impl Drop for DirectFile {
        fn drop(&mut self) {
            drop(self.jobs.take());
            let _ = self.wait();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            if self.filler {
                let _ = self.file.set_len(self.durable);
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::DirectFile;
    use std::io::Write;
    use std::path::PathBuf;
    use uatap_recorder::{RecordFile, FILLER_BLOCK_TYPE};

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("uatap-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A pcapng-shaped block of `len` bytes (a multiple of 4, at least 12) whose body tells
    /// where it was made.
    fn block(len: usize, seed: u32) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[..4].copy_from_slice(&6u32.to_le_bytes());
        b[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        for (i, x) in b[8..len - 4].iter_mut().enumerate() {
            *x = (seed as usize).wrapping_mul(31).wrapping_add(i) as u8;
        }
        b[len - 4..].copy_from_slice(&(len as u32).to_le_bytes());
        b
    }

    /// Splits a file into what the writer wrote and a trailing filler block, checking that
    /// the filler (if any) is one whole block that ends the file on a 4 KiB boundary.
    fn without_filler(file: &[u8], written: usize) -> &[u8] {
        let (data, rest) = file.split_at(written.min(file.len()));
        if !rest.is_empty() {
            assert_eq!(
                rest[..4],
                FILLER_BLOCK_TYPE.to_le_bytes(),
                "a filler follows the data"
            );
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            assert_eq!(
                len,
                rest.len(),
                "the filler is one block to the end of the file"
            );
            assert_eq!(rest[len - 4..], rest[4..8], "the filler's trailing length");
            assert_eq!(file.len() % 4096, 0, "a filler completes a whole piece");
        }
        data
    }

    #[test]
    fn direct_file_always_ends_on_a_block_and_holds_every_byte() {
        let path = temp_path("blocks.pcapng");
        let mut f = DirectFile::create(&path).unwrap();
        let mut expected = Vec::new();
        let mut seed = 0x2545_F491u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for round in 0..300 {
            // 1 to 40 blocks of 12 bytes to 20 KB, so writes end at every offset in a piece.
            let mut batch = Vec::new();
            for _ in 0..=(next() % 40) {
                let len = (12 + (next() as usize % 20_000)) / 4 * 4;
                batch.extend_from_slice(&block(len.max(12), round));
            }
            assert_eq!(f.write(&batch).unwrap(), batch.len());
            expected.extend_from_slice(&batch);
            if round % 7 == 0 {
                assert_eq!(f.wait().unwrap(), expected.len() as u64);
                let on_disk = std::fs::read(&path).unwrap();
                assert_eq!(without_filler(&on_disk, expected.len()), &expected[..]);
            }
        }
        drop(f);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            expected,
            "the filler is cut off at the end"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_rotating_recording_with_direct_io_reads_back_byte_for_byte() {
        use uatap_recorder::{
            Direction, InterfaceDescription, RotatingWriter, RotationConfig, StreamEvent,
            TcpFlowWriter, Timestamp,
        };
        let base = temp_path("ring.pcapng");
        let config = RotationConfig {
            max_size_bytes: Some(3 << 20),
            max_files: None,
        };
        let mut w = RotatingWriter::create_with(&base, config, super::open_record_file).unwrap();
        let iface = w
            .add_interface(InterfaceDescription::ethernet("t", "t"))
            .unwrap();
        // Small collected writes, so that blocks straddle the 4 KiB pieces at every offset.
        w.set_write_buffer(50_000).unwrap();
        let mut flow = TcpFlowWriter::new(
            iface,
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:4840".parse().unwrap(),
        )
        .unwrap();
        let ts = Timestamp::from_unix_micros(1_700_000_000_000_000);
        flow.open(&mut w, ts, None).unwrap();
        let mut sent = Vec::new();
        for i in 0..2000u32 {
            let len = 1 + (i.wrapping_mul(2_654_435_761) % 9000) as usize;
            let bytes: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
            let comment = (i % 7 == 0).then_some("uatap: a comment");
            flow.data(&mut w, Direction::BToA, ts, &bytes, comment)
                .unwrap();
            sent.extend_from_slice(&bytes);
            if i % 500 == 0 {
                w.flush().unwrap();
            }
        }
        let files: Vec<PathBuf> = w.files().map(PathBuf::from).collect();
        assert!(files.len() >= 3, "{files:?}");
        w.finish().unwrap();
        let mut got = Vec::new();
        for f in &files {
            let (events, damage) = uatap_recorder::read_streams(f).unwrap();
            assert!(damage.is_none(), "{f:?}: {damage:?}");
            for e in events {
                if let StreamEvent::Data { bytes, .. } = e {
                    got.extend_from_slice(&bytes);
                }
            }
            let file = std::fs::read(f).unwrap();
            let last_len = u32::from_le_bytes(file[file.len() - 4..].try_into().unwrap());
            let last = &file[file.len() - last_len as usize..];
            assert_ne!(
                last[..4],
                FILLER_BLOCK_TYPE.to_le_bytes(),
                "no filler left after the end of {f:?}"
            );
            let _ = std::fs::remove_file(f);
        }
        assert!(
            got == sent,
            "{} bytes read back, {} sent",
            got.len(),
            sent.len()
        );
    }

    #[test]
    fn payloads_written_from_their_read_buffers_read_back_byte_for_byte() {
        use uatap_recorder::{
            Direction, InterfaceDescription, Payload, RotatingWriter, RotationConfig,
            TcpFlowWriter, Timestamp, SPLICE_PAYLOAD_OFFSET,
        };
        let base = temp_path("spliced.pcapng");
        let probe = DirectFile::create(&base).unwrap();
        let align = probe.splice_alignment();
        drop(probe);
        assert!(
            align.is_some_and(|a| a <= 4096),
            "the temp directory's file system tells its direct I/O alignment: {align:?}"
        );
        let config = RotationConfig {
            max_size_bytes: Some(8 << 20),
            max_files: None,
        };
        let mut w = RotatingWriter::create_with(&base, config, super::open_record_file).unwrap();
        let iface = w
            .add_interface(InterfaceDescription::ethernet("t", "t"))
            .unwrap();
        w.set_write_buffer(1 << 20).unwrap();
        let mut client_leg = TcpFlowWriter::new(
            iface,
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:4840".parse().unwrap(),
        )
        .unwrap();
        let mut server_leg = TcpFlowWriter::new(
            iface,
            "127.0.0.1:40001".parse().unwrap(),
            "127.0.0.1:4841".parse().unwrap(),
        )
        .unwrap();
        let ts = Timestamp::from_unix_micros(1_700_000_000_000_000);
        client_leg.open(&mut w, ts, None).unwrap();
        server_leg.open(&mut w, ts, None).unwrap();
        let mut sent = Vec::new();
        for i in 0..600u32 {
            // Up to a whole read buffer (two segments), placed as a relay reads them.
            let len = 1 + (i.wrapping_mul(2_654_435_761) % 131_072) as usize;
            let mut mem = vec![0u8; len + 8192];
            let off = (SPLICE_PAYLOAD_OFFSET + 4096 - mem.as_ptr() as usize % 4096) % 4096;
            for (j, b) in mem[off..off + len].iter_mut().enumerate() {
                *b = (j as u32 ^ i.wrapping_mul(7)) as u8;
            }
            let owner = bytes::Bytes::from(mem).slice(off..off + len);
            let payload = Payload::shared(&owner, None);
            let comment = (i % 5 == 0).then_some("uatap: a comment");
            client_leg
                .data_payload(&mut w, Direction::BToA, ts, &payload, comment)
                .unwrap();
            server_leg
                .data_payload(&mut w, Direction::BToA, ts, &payload, None)
                .unwrap();
            sent.extend_from_slice(&owner);
            if i % 97 == 0 {
                w.flush().unwrap();
            }
        }
        let files: Vec<PathBuf> = w.files().map(PathBuf::from).collect();
        assert!(files.len() >= 3, "{files:?}");
        w.finish().unwrap();
        // Each leg's bytes, read back from the files in order.
        let mut got: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for f in &files {
            for ((_, server_port), contents) in crate::test_support::legs_of(f) {
                let leg = usize::from(server_port == 4841);
                for (captured, _, bytes) in contents {
                    assert!(captured, "{f:?}: bytes missing from leg {leg}");
                    got[leg].extend_from_slice(&bytes);
                }
            }
            let _ = std::fs::remove_file(f);
        }
        for (leg, got) in got.iter().enumerate() {
            assert!(
                *got == sent,
                "leg {leg}: {} bytes read back, {} sent",
                got.len(),
                sent.len()
            );
        }
    }

    #[test]
    fn a_pipe_is_recorded_to_as_a_stream() {
        // `uatap proxy --record FIFO` with Wireshark reading the other end.
        let path = temp_path("wireshark.fifo");
        let _ = std::fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let reader_path = path.clone();
        let reader = std::thread::spawn(move || std::fs::read(reader_path).unwrap());
        let mut f = super::open_record_file(&path).unwrap();
        let (a, b) = (block(5000, 1), block(700, 2));
        f.write_all(&a).unwrap();
        f.write_all(&b).unwrap();
        drop(f);
        assert_eq!(reader.join().unwrap(), [a, b].concat());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn direct_file_is_cut_within_what_was_written() {
        let path = temp_path("cut.pcapng");
        let mut f = DirectFile::create(&path).unwrap();
        let (a, b) = (block(5000, 1), block(700, 2));
        f.write_all(&a).unwrap();
        f.write_all(&b).unwrap();
        f.wait().unwrap();
        // A writer that lost count asks for more than was written: only what is there stays.
        f.set_len(1 << 20).unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap().len(), 5700);
        let mut f = DirectFile::create(&path).unwrap();
        f.write_all(&a).unwrap();
        f.write_all(&b).unwrap();
        f.set_len(5000).unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), a);
        let _ = std::fs::remove_file(&path);
    }
}
