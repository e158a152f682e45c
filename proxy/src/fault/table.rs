//! The faults in force and the connections they can hit, shared by the listeners, the relays,
//! the scheduler and the admin API.
//!
//! Relays read a cheap version number on every read and ask for their [`DirView`] only when it
//! changed, so a proxy with no fault pays one atomic load per read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use uatap_analysis::{Direction, Timestamp};
use uatap_codec::status::StatusCode;
use uatap_codec::tcp::MessageType;

use super::spec::{Action, FaultSpec, Match, Start};
use crate::hub::{now, Tap};

/// How the proxy ends a connection on a fault's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// With a RST (true) or a FIN (false).
    pub reset: bool,
    /// Bytes to send to the client first (an ERR), if any.
    pub reply_to_client: Option<Arc<[u8]>>,
}

/// Where a fault stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its start.
    Pending,
    /// In force; `conn` when a message of that connection started it.
    Active {
        /// When it started.
        since: Instant,
        /// The connection whose message started it.
        conn: Option<u64>,
    },
    /// Applied as many times as asked, expired, or removed.
    Done,
}

/// One fault in the table.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its number in the admin API.
    pub id: u64,
    /// What the user asked for.
    pub spec: FaultSpec,
    /// When it was added.
    pub added: Instant,
    /// Where it stands.
    pub state: State,
    /// How many times it was applied.
    pub applied: u64,
}

impl Entry {
    fn concerns(&self, conn: u64, listen: SocketAddr) -> bool {
        self.spec.conn.is_none_or(|c| c == conn)
            && self.spec.listener.is_none_or(|l| l == listen)
            && match self.state {
                State::Active {
                    conn: Some(started_by),
                    ..
                } => started_by == conn,
                _ => true,
            }
    }

    fn active(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }

    /// Counts one application; the fault is done when its count is reached.
    fn apply(&mut self) {
        self.applied = self.applied.saturating_add(1);
        if self.limit().is_some_and(|n| self.applied >= n) {
            self.state = State::Done;
        }
    }

    /// How many times it may apply: as asked, else once for a cut or reset started by a
    /// message, else without limit.
    fn limit(&self) -> Option<u64> {
        self.spec.count.or_else(|| {
            (self.spec.action.is_instant() && matches!(self.spec.start, Start::After(_)))
                .then_some(1)
        })
    }

    /// `pending`, `active` or `done`, for the admin API.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Pending => "pending",
            State::Active { .. } => "active",
            State::Done => "done",
        }
    }
}

/// A proxied connection as the fault table knows it.
#[derive(Debug)]
pub struct ConnEntry {
    /// The listener it came in on.
    pub listen: SocketAddr,
    /// The client.
    pub client: SocketAddr,
    /// When it was accepted.
    pub opened: Timestamp,
    kill: watch::Sender<Option<Kill>>,
}

/// What the faults mean for one direction of one connection, right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirView {
    /// Discard what is read (the fault's id).
    pub blackhole: Option<u64>,
    /// Delay each read by this much plus up to the second value more.
    pub latency: Option<(Duration, Duration)>,
    /// At most this many bytes per second.
    pub bandwidth: Option<u64>,
    /// Hold a close this long before passing it on.
    pub slow_close: Option<Duration>,
    /// A fault looks at whole messages of this direction: frame the stream.
    pub framing: bool,
}

/// A whole UA message a relay is about to forward, as far as it could read it.
#[derive(Debug, Clone, Default)]
pub struct MessageInfo {
    /// Its type; `None` when the stream could not be framed.
    pub message_type: Option<MessageType>,
    /// Numeric encoding id of the body (readable channels only).
    pub type_id: Option<u32>,
    /// NotificationMessage.SequenceNumber of a Publish/Republish response.
    pub notification_seq: Option<u32>,
    /// True when the channel is secured (its bodies cannot be read or changed).
    pub secured: bool,
}

impl Match {
    /// Whether `m` is a message this matches.
    pub fn matches(&self, m: &MessageInfo) -> bool {
        match self {
            Match::Type(t) => m.message_type == Some(*t),
            Match::Service { type_id, seq, .. } => {
                m.message_type == Some(MessageType::Message)
                    && m.type_id == Some(*type_id)
                    && seq.is_none_or(|s| m.notification_seq == Some(s))
            }
        }
    }
}

/// What a relay does with a message, on the faults' order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Forward,
    /// Do not forward it (drop-message); the following chunks are renumbered.
    Drop {
        /// The fault's id.
        fault: u64,
    },
    /// Do not forward it; answer the client with this ERR and close.
    Reply {
        /// The fault's id.
        fault: u64,
        /// The status of the ERR.
        status: StatusCode,
    },
    /// Forward it, then end the connection.
    ForwardThenKill {
        /// The fault's id.
        fault: u64,
        /// With a reset.
        reset: bool,
    },
}

/// The shared fault table.
#[derive(Debug)]
pub struct Faults {
    table: Mutex<Table>,
    version: AtomicU64,
    changed: Notify,
    tap: mpsc::Sender<Tap>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    faults: Vec<Entry>,
    conns: BTreeMap<u64, ConnEntry>,
}

impl Faults {
    /// An empty table whose applications are reported on `tap`.
    pub fn new(tap: mpsc::Sender<Tap>) -> Arc<Self> {
        Arc::new(Faults {
            table: Mutex::new(Table::default()),
            version: AtomicU64::new(0),
            changed: Notify::new(),
            tap,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere must not stop the faults (the table stays consistent).
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
        self.changed.notify_one();
    }

    /// Changes whenever the faults in force change: relays re-read their view then.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Adds a fault; returns its id.
    pub fn add(&self, spec: FaultSpec) -> u64 {
        let id = {
            let mut t = self.lock();
            t.next_id = t.next_id.saturating_add(1);
            let id = t.next_id;
            let added = Instant::now();
            let state = match spec.start {
                Start::Now => State::Active {
                    since: added,
                    conn: None,
                },
                _ => State::Pending,
            };
            t.faults.push(Entry {
                id,
                spec,
                added,
                state,
                applied: 0,
            });
            id
        };
        self.bump();
        id
    }

    /// Removes a fault; false when there is no such fault.
    pub fn remove(&self, id: u64) -> bool {
        let found = {
            let mut t = self.lock();
            let before = t.faults.len();
            t.faults.retain(|e| e.id != id);
            t.faults.len() != before
        };
        if found {
            self.bump();
        }
        found
    }

    /// The faults, in the order they were added.
    pub fn list(&self) -> Vec<Entry> {
        self.lock().faults.clone()
    }

    /// The open connections: number, listener, client, opened.
    pub fn connections(&self) -> Vec<(u64, SocketAddr, SocketAddr, Timestamp)> {
        self.lock()
            .conns
            .iter()
            .map(|(id, c)| (*id, c.listen, c.client, c.opened))
            .collect()
    }

    /// Registers a connection; the receiver tells its relays when a fault ends it.
    pub fn register(
        &self,
        id: u64,
        listen: SocketAddr,
        client: SocketAddr,
    ) -> watch::Receiver<Option<Kill>> {
        let (kill, rx) = watch::channel(None);
        self.lock().conns.insert(
            id,
            ConnEntry {
                listen,
                client,
                opened: now(),
                kill,
            },
        );
        rx
    }

    /// Forgets a connection that ended.
    pub fn unregister(&self, id: u64) {
        self.lock().conns.remove(&id);
    }

    /// Whether a new connection on `listen` is to be refused (counts the refusal).
    pub fn refuse(&self, conn: u64, listen: SocketAddr) -> Option<u64> {
        let mut t = self.lock();
        let e = t.faults.iter_mut().find(|e| {
            matches!(e.spec.action, Action::Refuse) && e.active() && e.concerns(conn, listen)
        })?;
        e.apply();
        let id = e.id;
        drop(t);
        self.bump();
        Some(id)
    }

    /// What the faults mean for one direction of a connection now.
    pub fn view(&self, conn: u64, listen: SocketAddr, dir: Direction) -> DirView {
        let t = self.lock();
        let mut v = DirView::default();
        for e in t.faults.iter() {
            if e.state == State::Done || !e.concerns(conn, listen) || !e.spec.applies_to_dir(dir) {
                continue;
            }
            if let Start::After(m) = &e.spec.start {
                if e.state == State::Pending && m.direction().is_none_or(|d| d == dir) {
                    v.framing = true;
                }
            }
            if !e.active() {
                if let Action::DropMessage { what } | Action::Err { on: what, .. } = &e.spec.action
                {
                    // Frame from the start so that the fault can act as soon as it starts.
                    v.framing |= what.direction().is_none_or(|d| d == dir);
                }
                continue;
            }
            match &e.spec.action {
                Action::Blackhole => v.blackhole = Some(e.id),
                Action::Latency { latency, jitter } => v.latency = Some((*latency, *jitter)),
                Action::Bandwidth { bytes_per_sec } => {
                    v.bandwidth = Some(
                        v.bandwidth
                            .map_or(*bytes_per_sec, |b| b.min(*bytes_per_sec)),
                    )
                }
                Action::SlowClose { delay } => v.slow_close = Some(*delay),
                Action::DropMessage { what } | Action::Err { on: what, .. } => {
                    v.framing |= what.direction().is_none_or(|d| d == dir);
                }
                _ => {}
            }
        }
        v
    }

    /// A relay is about to forward a whole message: starts the faults waiting for it, and says
    /// what to do with it. Each decision is reported as a `fault_injected` event.
    pub fn on_message(
        &self,
        conn: u64,
        listen: SocketAddr,
        dir: Direction,
        m: &MessageInfo,
    ) -> Verdict {
        let mut verdict = Verdict::Forward;
        let mut notes: Vec<(Option<Direction>, &'static str, String)> = Vec::new();
        let mut changed = false;
        {
            let mut t = self.lock();
            let at = Instant::now();
            for e in t.faults.iter_mut() {
                if e.state == State::Done
                    || !e.concerns(conn, listen)
                    || !e.spec.applies_to_dir(dir)
                {
                    continue;
                }
                // Acting on the message itself comes before starting on it.
                if e.active() && verdict == Verdict::Forward {
                    match e.spec.action.clone() {
                        Action::DropMessage { what } if what.matches(m) => {
                            if m.secured {
                                notes.push((Some(dir), "drop-message", format!("fault #{}: not applied to a {} on a secured channel: dropping it would break the chunk sequence numbers and signatures (only possible on security None channels, or in the MITM mode)", e.id, what)));
                                e.state = State::Done;
                            } else {
                                e.apply();
                                verdict = Verdict::Drop { fault: e.id };
                                notes.push((
                                    Some(dir),
                                    "drop-message",
                                    format!(
                                        "fault #{}: dropped {} ({} of {}); the following chunks of this direction are renumbered",
                                        e.id,
                                        describe(m),
                                        e.applied,
                                        e.spec.count.map_or("unlimited".into(), |n| n.to_string())
                                    ),
                                ));
                            }
                            changed = true;
                        }
                        Action::Err { status, on } if on.matches(m) => {
                            e.apply();
                            verdict = Verdict::Reply {
                                fault: e.id,
                                status,
                            };
                            notes.push((
                                Some(Direction::ServerToClient),
                                "err",
                                format!(
                                    "fault #{}: answered the client's {} with ERR {} and closed; the {} was not forwarded",
                                    e.id,
                                    describe(m),
                                    status,
                                    describe(m)
                                ),
                            ));
                            changed = true;
                        }
                        _ => {}
                    }
                }
                if let (State::Pending, Start::After(what)) = (e.state, &e.spec.start) {
                    if what.matches(m) {
                        e.state = State::Active {
                            since: at,
                            conn: Some(conn),
                        };
                        changed = true;
                        if e.spec.action.is_instant() {
                            e.apply();
                            if verdict == Verdict::Forward {
                                let reset = e.spec.action == Action::Reset;
                                verdict = Verdict::ForwardThenKill { fault: e.id, reset };
                                notes.push((
                                    None,
                                    e.spec.action.name(),
                                    format!(
                                        "fault #{}: {} after {}",
                                        e.id,
                                        if reset {
                                            "reset both legs (RST)"
                                        } else {
                                            "cut both legs (FIN)"
                                        },
                                        describe(m)
                                    ),
                                ));
                            }
                            if e.state != State::Done {
                                // Waits for the next such message again.
                                e.state = State::Pending;
                            }
                        } else {
                            notes.push((
                                None,
                                e.spec.action.name(),
                                format!(
                                    "fault #{} ({}) starts after {}",
                                    e.id,
                                    e.spec,
                                    describe(m)
                                ),
                            ));
                        }
                    }
                }
            }
        }
        for (d, fault, detail) in notes {
            self.report(conn, d, fault, detail);
        }
        if changed {
            self.bump();
        }
        verdict
    }

    /// Reports a fault applied to a connection as a `fault_injected` event (never waits: a
    /// report that does not fit is dropped rather than delaying the relay).
    pub fn report(&self, conn: u64, dir: Option<Direction>, fault: &'static str, detail: String) {
        let _ = self.tap.try_send(Tap::FaultInjected {
            id: conn,
            dir,
            fault,
            detail,
            ts: now(),
        });
    }

    /// Ends a connection on a fault's order.
    pub fn kill(&self, conn: u64, kill: Kill) {
        if let Some(c) = self.lock().conns.get(&conn) {
            let _ = c.kill.send(Some(kill));
        }
    }

    /// Starts and ends the faults on their clock, and cuts or resets the connections of the
    /// time-started instant faults. Runs until the process ends.
    pub async fn run_scheduler(self: Arc<Self>) {
        loop {
            let next = self.tick();
            let notified = self.changed.notified();
            match next {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// One pass of the scheduler: returns how long until the next thing to do.
    fn tick(&self) -> Option<Duration> {
        let now_i = Instant::now();
        let mut next: Option<Duration> = None;
        let mut soonest = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
        let mut kills: Vec<(u64, u64, FaultSpec)> = Vec::new();
        let mut changed = false;
        {
            let mut t = self.lock();
            let Table { faults, conns, .. } = &mut *t;
            for e in faults.iter_mut() {
                if let (State::Pending, Start::At(after)) = (e.state, &e.spec.start) {
                    let due = e.added.checked_add(*after).unwrap_or(now_i);
                    if due <= now_i {
                        e.state = State::Active {
                            since: now_i,
                            conn: None,
                        };
                        changed = true;
                    } else {
                        soonest(due.saturating_duration_since(now_i));
                    }
                }
                if let (State::Active { since, .. }, Some(lasting)) = (e.state, e.spec.lasting) {
                    let end = since.checked_add(lasting).unwrap_or(now_i);
                    if end <= now_i {
                        e.state = State::Done;
                        changed = true;
                    } else {
                        soonest(end.saturating_duration_since(now_i));
                    }
                }
                if e.spec.action.is_instant() && matches!(e.state, State::Active { conn: None, .. })
                {
                    // A time-started cut or reset: every connection it concerns, once.
                    for (id, c) in conns.iter() {
                        if e.spec.count.is_some_and(|n| e.applied >= n) {
                            break;
                        }
                        if e.concerns(*id, c.listen) {
                            e.applied = e.applied.saturating_add(1);
                            kills.push((*id, e.id, e.spec.clone()));
                        }
                    }
                    e.state = State::Done;
                    changed = true;
                }
            }
        }
        for (conn, fault, spec) in kills {
            let reset = spec.action == Action::Reset;
            self.report(
                conn,
                None,
                spec.action.name(),
                format!(
                    "fault #{fault} ({spec}): {} both legs",
                    if reset { "reset (RST)" } else { "cut (FIN)" }
                ),
            );
            self.kill(
                conn,
                Kill {
                    reset,
                    reply_to_client: None,
                },
            );
        }
        if changed {
            self.version.fetch_add(1, Ordering::Release);
        }
        next
    }
}

/// `PublishResponse seq=120`, `HEL`...
fn describe(m: &MessageInfo) -> String {
    let base = match (
        m.message_type,
        m.type_id.and_then(uatap_codec::ids::service_name),
    ) {
        (Some(MessageType::Message), Some(n)) => n.to_string(),
        (Some(t), _) => t.as_str().to_string(),
        (None, _) => "message".to_string(),
    };
    match m.notification_seq {
        Some(s) => format!("{base} seq={s}"),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults() -> (Arc<Faults>, mpsc::Receiver<Tap>) {
        let (tx, rx) = mpsc::channel(64);
        (Faults::new(tx), rx)
    }

    fn listen() -> SocketAddr {
        "127.0.0.1:4841".parse().unwrap()
    }

    fn publish(seq: u32) -> MessageInfo {
        MessageInfo {
            message_type: Some(MessageType::Message),
            type_id: Some(829),
            notification_seq: Some(seq),
            secured: false,
        }
    }

    fn details(rx: &mut mpsc::Receiver<Tap>) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(t) = rx.try_recv() {
            if let Tap::FaultInjected { fault, detail, .. } = t {
                v.push(format!("{fault}: {detail}"));
            }
        }
        v
    }

    #[test]
    fn drop_message_counts_down_and_reports() {
        let (f, mut rx) = faults();
        f.add(FaultSpec::parse("drop-message PublishResponse x2").unwrap());
        let s2c = Direction::ServerToClient;
        assert!(f.view(1, listen(), s2c).framing);
        assert!(!f.view(1, listen(), Direction::ClientToServer).framing);
        assert_eq!(
            f.on_message(1, listen(), s2c, &publish(5)),
            Verdict::Drop { fault: 1 }
        );
        assert_eq!(
            f.on_message(1, listen(), s2c, &publish(6)),
            Verdict::Drop { fault: 1 }
        );
        assert_eq!(
            f.on_message(1, listen(), s2c, &publish(7)),
            Verdict::Forward
        );
        assert!(!f.view(1, listen(), s2c).framing);
        let d = details(&mut rx);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].contains("dropped PublishResponse seq=5 (1 of 2)"),
            "{d:?}"
        );
    }

    #[test]
    fn secured_channels_are_not_touched() {
        let (f, mut rx) = faults();
        f.add(FaultSpec::parse("drop-message PublishResponse").unwrap());
        let mut m = publish(1);
        m.secured = true;
        assert_eq!(
            f.on_message(1, listen(), Direction::ServerToClient, &m),
            Verdict::Forward
        );
        assert!(details(&mut rx)[0].contains("secured channel"));
    }

    #[test]
    fn message_started_faults_apply_to_that_connection_only() {
        let (f, _rx) = faults();
        f.add(FaultSpec::parse("blackhole s2c after ActivateSessionResponse").unwrap());
        let s2c = Direction::ServerToClient;
        assert!(f.view(3, listen(), s2c).blackhole.is_none());
        let activate = MessageInfo {
            message_type: Some(MessageType::Message),
            type_id: Some(470),
            ..MessageInfo::default()
        };
        assert_eq!(f.on_message(3, listen(), s2c, &activate), Verdict::Forward);
        assert_eq!(f.view(3, listen(), s2c).blackhole, Some(1));
        assert_eq!(f.view(4, listen(), s2c).blackhole, None);
        assert_eq!(
            f.view(3, listen(), Direction::ClientToServer).blackhole,
            None
        );
    }

    #[test]
    fn cut_after_a_given_publish_sequence_number() {
        let (f, _rx) = faults();
        f.add(FaultSpec::parse("cut after PublishResponse seq=120").unwrap());
        let s2c = Direction::ServerToClient;
        assert_eq!(
            f.on_message(1, listen(), s2c, &publish(119)),
            Verdict::Forward
        );
        assert_eq!(
            f.on_message(1, listen(), s2c, &publish(120)),
            Verdict::ForwardThenKill {
                fault: 1,
                reset: false
            }
        );
        // Once: a later 120 (another subscription, a reconnect) passes.
        assert_eq!(
            f.on_message(2, listen(), s2c, &publish(120)),
            Verdict::Forward
        );
        assert_eq!(f.list()[0].state, State::Done);
    }

    #[test]
    fn err_answers_every_hello_until_removed() {
        let (f, _rx) = faults();
        let id = f.add(FaultSpec::parse("err Bad_TcpServerTooBusy").unwrap());
        let hel = MessageInfo {
            message_type: Some(MessageType::Hello),
            ..MessageInfo::default()
        };
        for conn in 1..4 {
            assert_eq!(
                f.on_message(conn, listen(), Direction::ClientToServer, &hel),
                Verdict::Reply {
                    fault: id,
                    status: StatusCode(0x807D_0000)
                }
            );
        }
        assert!(f.remove(id));
        assert_eq!(
            f.on_message(4, listen(), Direction::ClientToServer, &hel),
            Verdict::Forward
        );
    }

    #[tokio::test]
    async fn timed_cut_kills_the_open_connections_once() {
        let (f, mut rx) = faults();
        let mut k1 = f.register(1, listen(), "127.0.0.1:50001".parse().unwrap());
        let mut k2 = f.register(2, listen(), "127.0.0.1:50002".parse().unwrap());
        f.add(FaultSpec::parse("reset at 10ms").unwrap());
        let sched = tokio::spawn(f.clone().run_scheduler());
        k1.changed().await.unwrap();
        k2.changed().await.unwrap();
        assert_eq!(k1.borrow().as_ref().map(|k| k.reset), Some(true));
        assert_eq!(f.list()[0].state, State::Done);
        assert_eq!(f.list()[0].applied, 2);
        sched.abort();
        let d = details(&mut rx);
        assert_eq!(d.len(), 2);
        assert!(d[0].starts_with("reset: fault #1"), "{d:?}");
    }

    #[tokio::test]
    async fn lasting_faults_end_by_themselves() {
        let (f, _rx) = faults();
        f.add(FaultSpec::parse("latency 100ms for 20ms").unwrap());
        let sched = tokio::spawn(f.clone().run_scheduler());
        assert!(f
            .view(1, listen(), Direction::ClientToServer)
            .latency
            .is_some());
        let v0 = f.version();
        while f.version() == v0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(f.view(1, listen(), Direction::ClientToServer).latency, None);
        sched.abort();
    }

    #[test]
    fn refuse_counts_connections() {
        let (f, _rx) = faults();
        f.add(FaultSpec::parse("refuse x2").unwrap());
        assert_eq!(f.refuse(1, listen()), Some(1));
        assert_eq!(f.refuse(2, listen()), Some(1));
        assert_eq!(f.refuse(3, listen()), None);
    }
}
