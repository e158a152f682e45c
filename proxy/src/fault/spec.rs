//! The fault language: one line per fault, the same on the command line (`--fault`), in the
//! TOML config (`faults = [...]`) and in the admin API (`{"spec": "..."}`).
//!
//! ```text
//! cut at 10s
//! reset after ActivateSessionResponse
//! cut after PublishResponse seq=120
//! blackhole s2c after 5s for 30s
//! latency 200ms jitter 50ms c2s
//! bandwidth 10kB/s s2c
//! drop-message PublishResponse x3 after 5s
//! refuse x2
//! err Bad_TcpServerTooBusy
//! reject next OPN with Bad_SecurityChecksFailed
//! slow-close 2s
//! ```

use std::fmt;
use std::time::Duration;

use uatap_analysis::Direction;
use uatap_codec::ids;
use uatap_codec::status::StatusCode;
use uatap_codec::tcp::MessageType;

/// What the fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Close both legs with a FIN.
    Cut,
    /// Close both legs with a RST.
    Reset,
    /// Keep the connection open and forward nothing (the bytes are read and discarded).
    Blackhole,
    /// Delay every read by `latency` plus a random share of `jitter`.
    Latency {
        /// Fixed delay.
        latency: Duration,
        /// Up to this much more, at random.
        jitter: Duration,
    },
    /// Forward at most this many bytes per second.
    Bandwidth {
        /// The rate.
        bytes_per_sec: u64,
    },
    /// Drop whole UA messages that match (then renumber the following chunks so the channel
    /// stays valid; security None channels only).
    DropMessage {
        /// Which messages.
        what: Match,
    },
    /// Accept new connections and close them at once, with no ERR (a server at its limit).
    Refuse,
    /// Answer a matching message (a HEL unless told otherwise) with an ERR of this status, then
    /// close the connection; the message is not forwarded.
    Err {
        /// The status to answer with.
        status: StatusCode,
        /// Which message is answered.
        on: Match,
    },
    /// When a side closes, pass the close on only after this delay.
    SlowClose {
        /// The delay.
        delay: Duration,
    },
}

impl Action {
    /// The name used in `fault_injected` events and in the language.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Cut => "cut",
            Action::Reset => "reset",
            Action::Blackhole => "blackhole",
            Action::Latency { .. } => "latency",
            Action::Bandwidth { .. } => "bandwidth",
            Action::DropMessage { .. } => "drop-message",
            Action::Refuse => "refuse",
            Action::Err { .. } => "err",
            Action::SlowClose { .. } => "slow-close",
        }
    }

    /// True for the faults that happen once to a connection (and are then done); the others
    /// stay in force.
    pub fn is_instant(&self) -> bool {
        matches!(self, Action::Cut | Action::Reset)
    }

    /// True for faults that need the stream framed into UA messages.
    pub fn needs_framing(&self) -> bool {
        matches!(self, Action::DropMessage { .. } | Action::Err { .. })
    }
}

/// A UA message, by type or by service, optionally with its notification sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Any message of this type (HEL, OPN, CLO, MSG...).
    Type(MessageType),
    /// A service message by the numeric id of its binary encoding.
    Service {
        /// Encoding id, e.g. 829 for PublishResponse.
        type_id: u32,
        /// Its name.
        name: &'static str,
        /// For Publish and Republish responses: only the one with this
        /// NotificationMessage.SequenceNumber.
        seq: Option<u32>,
    },
}

impl Match {
    /// The direction the matching message travels, when the match says it.
    pub fn direction(&self) -> Option<Direction> {
        match self {
            Match::Type(MessageType::Hello) => Some(Direction::ClientToServer),
            Match::Type(MessageType::Acknowledge | MessageType::Error) => {
                Some(Direction::ServerToClient)
            }
            Match::Type(MessageType::ReverseHello) => Some(Direction::ServerToClient),
            Match::Type(_) => None,
            Match::Service { type_id, .. } => Some(if ids::is_request(*type_id) {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            }),
        }
    }

    fn parse(word: &str) -> Result<Match, String> {
        let upper = word.to_ascii_uppercase();
        if let Some(t) = <[u8; 3]>::try_from(upper.as_bytes())
            .ok()
            .and_then(MessageType::from_bytes)
        {
            return Ok(Match::Type(t));
        }
        ids::all_services()
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(word))
            .map(|&(type_id, name)| Match::Service {
                type_id,
                name,
                seq: None,
            })
            .ok_or_else(|| {
                format!("unknown message '{word}': give HEL, OPN, CLO, MSG or a service name such as PublishResponse")
            })
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Type(t) => f.write_str(t.as_str()),
            Match::Service { name, seq, .. } => {
                f.write_str(name)?;
                if let Some(s) = seq {
                    write!(f, " seq={s}")?;
                }
                Ok(())
            }
        }
    }
}

/// When a fault comes into force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// As soon as it is added.
    Now,
    /// This long after it was added (the proxy's start for `--fault`).
    At(Duration),
    /// When a matching message has been forwarded; the fault then applies to that connection.
    After(Match),
}

/// One fault as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// What to do.
    pub action: Action,
    /// When it comes into force.
    pub start: Start,
    /// How many times it applies (connections cut, messages dropped, HELs answered...);
    /// `None`: every time while it is in force.
    pub count: Option<u64>,
    /// How long it stays in force once started; `None`: until removed.
    pub lasting: Option<Duration>,
    /// Only this direction (latency, bandwidth, blackhole, drop-message).
    pub dir: Option<Direction>,
    /// Only this connection (its number, as the admin API lists it).
    pub conn: Option<u64>,
    /// Only the listener on this address (set by the config file's `[[listener]]` tables).
    pub listener: Option<std::net::SocketAddr>,
}

/// Parses `10s`, `500ms`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration '{s}': write e.g. 500ms, 10s, 1.5s, 2m");
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| s.split_at(i))
        .ok_or_else(bad)?;
    let v: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || !(0.0..=1.0e7).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `10kB/s`, `1MB/s`, `500B/s`, `64kbit/s`.
fn parse_rate(s: &str) -> Result<u64, String> {
    let bad = || format!("bad rate '{s}': write e.g. 500B/s, 10kB/s, 1MB/s, 64kbit/s");
    let body = s.strip_suffix("/s").ok_or_else(bad)?;
    let i = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = body.split_at(i);
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = match unit {
        "B" => v,
        "kB" | "KB" | "KiB" => v * 1024.0,
        "MB" | "MiB" => v * 1024.0 * 1024.0,
        "bit" => v / 8.0,
        "kbit" => v * 1000.0 / 8.0,
        "Mbit" => v * 1_000_000.0 / 8.0,
        _ => return Err(bad()),
    };
    if !bytes.is_finite() || !(1.0..=1.0e12).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses a StatusCode by name (`Bad_TcpServerTooBusy`) or hex (`0x80BE0000`).
pub fn parse_status(s: &str) -> Result<StatusCode, String> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16)
            .map(StatusCode)
            .map_err(|_| format!("bad status code '{s}'"));
    }
    StatusCode::all_named()
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(s))
        .map(|&(v, _)| StatusCode(v))
        .ok_or_else(|| format!("unknown status code '{s}': give a name such as Bad_TcpServerTooBusy or a hex value such as 0x80BE0000"))
}

fn parse_dir(s: &str) -> Option<Direction> {
    match s {
        "c2s" => Some(Direction::ClientToServer),
        "s2c" => Some(Direction::ServerToClient),
        _ => None,
    }
}

impl FaultSpec {
    /// Parses one line of the fault language (see the module documentation).
    pub fn parse(line: &str) -> Result<FaultSpec, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut w = Words {
            words: &words,
            at: 0,
        };
        let verb = w
            .next()
            .ok_or("empty fault: start with cut, reset, blackhole, latency, bandwidth, drop-message, refuse, err, reject or slow-close")?;
        let mut count = None;
        let action = match verb {
            "cut" => Action::Cut,
            "reset" => Action::Reset,
            "blackhole" => Action::Blackhole,
            "refuse" => Action::Refuse,
            "latency" => {
                let latency = parse_duration(w.need("a delay after latency")?)?;
                let jitter = if w.peek() == Some("jitter") {
                    w.next();
                    parse_duration(w.need("a duration after jitter")?)?
                } else {
                    Duration::ZERO
                };
                Action::Latency { latency, jitter }
            }
            "bandwidth" => Action::Bandwidth {
                bytes_per_sec: parse_rate(w.need("a rate after bandwidth")?)?,
            },
            "slow-close" => Action::SlowClose {
                delay: parse_duration(w.need("a delay after slow-close")?)?,
            },
            "drop-message" => Action::DropMessage {
                what: w.message("a message after drop-message (e.g. PublishResponse)")?,
            },
            "err" => {
                let status = parse_status(w.need("a status after err")?)?;
                let on = if w.peek() == Some("on") {
                    w.next();
                    if w.peek() == Some("next") {
                        w.next();
                        count = Some(1);
                    }
                    w.message("a message after on")?
                } else {
                    Match::Type(MessageType::Hello)
                };
                Action::Err { status, on }
            }
            // `reject next OPN with STATUS`: sugar for `err STATUS on next OPN`.
            "reject" => {
                if w.peek() == Some("next") {
                    w.next();
                    count = Some(1);
                }
                let on = w.message("a message after reject (e.g. OPN)")?;
                if w.next() != Some("with") {
                    return Err("write reject [next] MESSAGE with STATUS".into());
                }
                let status = parse_status(w.need("a status after with")?)?;
                Action::Err { status, on }
            }
            other => return Err(format!("unknown fault '{other}': use cut, reset, blackhole, latency, bandwidth, drop-message, refuse, err, reject or slow-close")),
        };
        let mut spec = FaultSpec {
            action,
            start: Start::Now,
            count,
            lasting: None,
            dir: None,
            conn: None,
            listener: None,
        };
        while let Some(word) = w.next() {
            match word {
                "at" => spec.start = Start::At(parse_duration(w.need("a time after at")?)?),
                "after" => {
                    let what = w.need("a time or a message after after")?;
                    spec.start = if what.starts_with(|c: char| c.is_ascii_digit()) {
                        Start::At(parse_duration(what)?)
                    } else {
                        w.at = w.at.saturating_sub(1);
                        Start::After(w.message("a message after after")?)
                    };
                }
                "for" => spec.lasting = Some(parse_duration(w.need("a duration after for")?)?),
                "conn" => {
                    spec.conn = Some(
                        w.need("a connection number after conn")?
                            .parse()
                            .map_err(|_| "conn takes a connection number".to_string())?,
                    )
                }
                "dir" => {
                    let d = w.need("c2s or s2c after dir")?;
                    spec.dir = Some(parse_dir(d).ok_or("dir takes c2s or s2c")?);
                }
                "next" => spec.count = Some(1),
                d if parse_dir(d).is_some() => spec.dir = parse_dir(d),
                x if x.starts_with('x') && x.len() > 1 => {
                    let n: u64 = x[1..]
                        .parse()
                        .map_err(|_| format!("bad count '{x}': write e.g. x3"))?;
                    if n == 0 {
                        return Err("a count of x0 would never apply".into());
                    }
                    spec.count = Some(n);
                }
                other => return Err(format!("unexpected '{other}' in fault '{line}'")),
            }
        }
        spec.check()?;
        Ok(spec)
    }

    /// Refuses combinations that cannot work, with the reason.
    fn check(&self) -> Result<(), String> {
        if let (Some(d), Action::DropMessage { what } | Action::Err { on: what, .. }) =
            (self.dir, &self.action)
        {
            if what.direction().is_some_and(|m| m != d) {
                return Err(format!("{what} never travels {}", d.as_str()));
            }
        }
        if matches!(self.action, Action::Refuse) && matches!(self.start, Start::After(_)) {
            return Err(
                "refuse applies to new connections: start it with at/after a time, not after a message"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether the fault concerns this direction.
    pub fn applies_to_dir(&self, d: Direction) -> bool {
        self.dir.is_none_or(|x| x == d)
    }
}

/// A duration written back the way a person types it: `10s` when whole seconds, else `250ms`.
struct Dur(Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms != 0 && ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Latency { latency, jitter } => {
                write!(f, "latency {}", Dur(*latency))?;
                if !jitter.is_zero() {
                    write!(f, " jitter {}", Dur(*jitter))?;
                }
            }
            Action::Bandwidth { bytes_per_sec } => write!(f, "bandwidth {bytes_per_sec}B/s")?,
            Action::SlowClose { delay } => write!(f, "slow-close {}", Dur(*delay))?,
            Action::DropMessage { what } => write!(f, "drop-message {what}")?,
            Action::Err { status, on } => match status.name() {
                Some(n) if status.0 & 0xFFFF == 0 => write!(f, "err {n} on {on}")?,
                _ => write!(f, "err 0x{:08X} on {on}", status.0)?,
            },
            a => f.write_str(a.name())?,
        }
        if let Some(n) = self.count {
            write!(f, " x{n}")?;
        }
        match &self.start {
            Start::Now => {}
            Start::At(d) => write!(f, " at {}", Dur(*d))?,
            Start::After(m) => write!(f, " after {m}")?,
        }
        if let Some(d) = self.lasting {
            write!(f, " for {}", Dur(d))?;
        }
        if let Some(d) = self.dir {
            write!(f, " {}", d.as_str())?;
        }
        if let Some(c) = self.conn {
            write!(f, " conn {c}")?;
        }
        Ok(())
    }
}

struct Words<'a> {
    words: &'a [&'a str],
    at: usize,
}

impl<'a> Words<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.at).copied();
        self.at = self.at.saturating_add(1);
        w
    }
    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.at).copied()
    }
    fn need(&mut self, what: &str) -> Result<&'a str, String> {
        self.next().ok_or_else(|| format!("expected {what}"))
    }
    /// A message name, with an optional `seq=N` word after it.
    fn message(&mut self, what: &str) -> Result<Match, String> {
        let mut m = Match::parse(self.need(what)?)?;
        if let Some(s) = self.peek().and_then(|p| p.strip_prefix("seq=")) {
            self.next();
            let n: u32 = s.parse().map_err(|_| format!("bad seq={s}"))?;
            match &mut m {
                Match::Service {
                    type_id: ids::service::PUBLISH_RESPONSE | ids::service::REPUBLISH_RESPONSE,
                    seq,
                    ..
                } => *seq = Some(n),
                _ => {
                    return Err("seq= applies to PublishResponse and RepublishResponse only".into())
                }
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_of_the_issue_parse() {
        let cut = FaultSpec::parse("cut at 10s").unwrap();
        assert_eq!(cut.action, Action::Cut);
        assert_eq!(cut.start, Start::At(Duration::from_secs(10)));

        let drop = FaultSpec::parse("drop-message PublishResponse x3 after 5s").unwrap();
        assert_eq!(drop.count, Some(3));
        assert_eq!(drop.start, Start::At(Duration::from_secs(5)));
        assert!(matches!(
            drop.action,
            Action::DropMessage {
                what: Match::Service { type_id: 829, .. }
            }
        ));

        let reset = FaultSpec::parse("reset after ActivateSessionResponse").unwrap();
        assert!(matches!(
            reset.start,
            Start::After(Match::Service { type_id: 470, .. })
        ));

        let seq = FaultSpec::parse("cut after PublishResponse seq=120").unwrap();
        assert!(matches!(
            seq.start,
            Start::After(Match::Service { seq: Some(120), .. })
        ));

        let reject = FaultSpec::parse("reject next OPN with Bad_SecurityChecksFailed").unwrap();
        assert_eq!(reject.count, Some(1));
        assert_eq!(
            reject.action,
            Action::Err {
                status: StatusCode(0x8013_0000),
                on: Match::Type(MessageType::OpenSecureChannel)
            }
        );

        let busy = FaultSpec::parse("err Bad_TcpServerTooBusy").unwrap();
        assert_eq!(
            busy.action,
            Action::Err {
                status: StatusCode(0x807D_0000),
                on: Match::Type(MessageType::Hello)
            }
        );
        assert_eq!(busy.count, None);
    }

    #[test]
    fn options_and_units() {
        let l = FaultSpec::parse("latency 200ms jitter 50ms s2c for 1m conn 7").unwrap();
        assert_eq!(
            l.action,
            Action::Latency {
                latency: Duration::from_millis(200),
                jitter: Duration::from_millis(50)
            }
        );
        assert_eq!(l.dir, Some(Direction::ServerToClient));
        assert_eq!(l.lasting, Some(Duration::from_secs(60)));
        assert_eq!(l.conn, Some(7));
        let b = FaultSpec::parse("bandwidth 10kB/s").unwrap();
        assert_eq!(
            b.action,
            Action::Bandwidth {
                bytes_per_sec: 10240
            }
        );
        let b = FaultSpec::parse("bandwidth 64kbit/s dir c2s").unwrap();
        assert_eq!(
            b.action,
            Action::Bandwidth {
                bytes_per_sec: 8000
            }
        );
        assert_eq!(b.dir, Some(Direction::ClientToServer));
        assert_eq!(
            FaultSpec::parse("slow-close 1.5s").unwrap().action,
            Action::SlowClose {
                delay: Duration::from_millis(1500)
            }
        );
    }

    #[test]
    fn mistakes_are_explained() {
        for (bad, says) in [
            ("", "empty fault"),
            ("explode", "unknown fault"),
            ("cut at soon", "bad duration"),
            ("drop-message Frobnicate", "unknown message"),
            ("err Bad_Whatever", "unknown status"),
            ("reject next OPN", "with STATUS"),
            ("cut after ReadRequest seq=3", "seq= applies"),
            ("drop-message PublishResponse c2s", "never travels c2s"),
            ("refuse after HEL", "new connections"),
            ("cut x0", "never apply"),
            ("bandwidth fast", "bad rate"),
            ("cut at 10s please", "unexpected 'please'"),
        ] {
            let e = FaultSpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?} gave {e:?}");
        }
    }

    #[test]
    fn display_parses_back_to_the_same_fault() {
        for line in [
            "cut at 10s",
            "reset after ActivateSessionResponse",
            "cut after PublishResponse seq=120 conn 3",
            "blackhole s2c after 5s for 30s",
            "latency 200ms jitter 50ms c2s",
            "bandwidth 10kB/s s2c",
            "drop-message PublishResponse x3 after 5s",
            "refuse x2",
            "err Bad_TcpServerTooBusy",
            "reject next OPN with Bad_SecurityChecksFailed",
            "slow-close 2s",
        ] {
            let spec = FaultSpec::parse(line).unwrap();
            let again = FaultSpec::parse(&spec.to_string()).unwrap();
            assert_eq!(spec, again, "{line} -> {spec}");
        }
    }
}
