//! Where events go: a readable log for a person at 2 a.m. (one line per event, colour on a
//! terminal, the important ones stand out) and JSON Lines for scripts.

use std::io::{IsTerminal, Write};

use uatap_analysis::{Event, EventKind};

use crate::hub::EventSink;

/// Lines are collected in one reused buffer and written this many bytes at a time (or when
/// the hub flushes): one system call for hundreds of lines, no allocation per line.
const WRITE_CHUNK: usize = 64 * 1024;

/// Lines collected for one write.
struct Lines(String);

impl Lines {
    fn new() -> Self {
        Lines(String::with_capacity(WRITE_CHUNK + 4096))
    }

    /// Writes the collected lines once there are enough of them.
    fn maybe_write(&mut self, out: &mut impl Write) {
        if self.0.len() >= WRITE_CHUNK {
            self.write(out);
        }
    }

    fn write(&mut self, out: &mut impl Write) {
        if !self.0.is_empty() {
            // A closed pipe (`| head`) must not stop the proxy.
            let _ = out.write_all(self.0.as_bytes());
            self.0.clear();
        }
    }
}

/// JSON Lines of the event contract; the hub flushes it whenever it has nothing else to do.
pub struct JsonSink<W: Write + Send> {
    out: W,
    lines: Lines,
    messages: bool,
}

impl<W: Write + Send> JsonSink<W> {
    /// Writes to `out`; `message` events only when `messages` (the contract: only with
    /// `--messages`).
    pub fn new(out: W, messages: bool) -> Self {
        JsonSink {
            out,
            lines: Lines::new(),
            messages,
        }
    }
}

impl<W: Write + Send> EventSink for JsonSink<W> {
    fn event(&mut self, e: &Event) {
        if matches!(e.kind, EventKind::Message(_)) && !self.messages {
            return;
        }
        e.write_json(&mut self.lines.0);
        self.lines.0.push('\n');
        self.lines.maybe_write(&mut self.out);
    }
    fn flush(&mut self) {
        self.lines.write(&mut self.out);
        let _ = self.out.flush();
    }
}

/// How much a line matters to the person reading the log.
fn weight(e: &Event) -> u8 {
    match &e.kind {
        EventKind::UpstreamError { .. }
        | EventKind::TcpError { .. }
        | EventKind::SequenceGap(_)
        | EventKind::WriteBlocked { .. }
        | EventKind::Recording { .. } => 2,
        EventKind::SecureChannel(p) if p.outcome != "ok" => 2,
        EventKind::Session(p) if p.outcome != "ok" || p.reused_on_new_channel == Some(true) => 2,
        EventKind::ServiceFault(p) if !p.normal => 2,
        EventKind::Abort { .. }
        | EventKind::DecodeError { .. }
        | EventKind::MessageStalled { .. } => 1,
        EventKind::ConnOpen { .. } | EventKind::ConnClose { .. } | EventKind::Summary(_) => 1,
        _ => 0,
    }
}

/// One line per event; `messages` adds the per-message lines; colour when a terminal.
pub struct TextSink<W: Write + Send> {
    out: W,
    color: bool,
    messages: bool,
    lines: Lines,
    /// The output is `/dev/null`: nothing is formatted (a service started with its log sent
    /// there, or a proxy run for its `--json-file` only).
    discard: bool,
}

impl<W: Write + Send> TextSink<W> {
    /// Writes to `out`; `color` adds ANSI colours.
    pub fn new(out: W, color: bool, messages: bool) -> Self {
        TextSink {
            out,
            color,
            messages,
            lines: Lines::new(),
            discard: false,
        }
    }
}

/// True when `fd` is the null device: what is written there is never read.
#[cfg(unix)]
fn is_dev_null(out: &impl std::os::fd::AsFd) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(own) = out.as_fd().try_clone_to_owned() else {
        return false;
    };
    let (Ok(out), Ok(null)) = (
        std::fs::File::from(own).metadata(),
        std::fs::metadata("/dev/null"),
    ) else {
        return false;
    };
    out.file_type().is_char_device() && out.rdev() == null.rdev()
}

#[cfg(not(unix))]
fn is_dev_null<T>(_: &T) -> bool {
    false
}

impl TextSink<std::io::BufWriter<std::io::Stderr>> {
    /// To standard error, coloured when it is a terminal (flushed by the hub when idle).
    pub fn stderr(messages: bool) -> Self {
        let err = std::io::stderr();
        let color = err.is_terminal();
        let discard = is_dev_null(&err);
        let mut s = TextSink::new(std::io::BufWriter::new(err), color, messages);
        s.discard = discard;
        s
    }
}

impl TextSink<std::io::BufWriter<std::io::Stdout>> {
    /// To standard output, coloured when it is a terminal (flushed by the hub when idle).
    pub fn stdout(messages: bool) -> Self {
        let out = std::io::stdout();
        let color = out.is_terminal();
        let discard = is_dev_null(&out);
        let mut s = TextSink::new(std::io::BufWriter::new(out), color, messages);
        s.discard = discard;
        s
    }
}

impl<W: Write + Send> EventSink for TextSink<W> {
    fn event(&mut self, e: &Event) {
        if self.discard || (matches!(e.kind, EventKind::Message(_)) && !self.messages) {
            return;
        }
        let (start, end) = match (self.color, weight(e)) {
            (true, 2) => ("\x1b[1;31m", "\x1b[0m\n"),
            (true, 1) => ("\x1b[1m", "\x1b[0m\n"),
            _ => ("", "\n"),
        };
        let line = &mut self.lines.0;
        line.push_str(start);
        e.write_text(line);
        line.push_str(end);
        self.lines.maybe_write(&mut self.out);
    }
    fn flush(&mut self) {
        self.lines.write(&mut self.out);
        let _ = self.out.flush();
    }
}
