//! Following a client that comes back after a lost connection or channel, and judging how it
//! recovered against the rules of `reference/reconnect.md`.
//!
//! A [`Recovery`] starts on the new connection when the client activates its old session there
//! (reused) or creates a new session after losing one (a failed ActivateSession first, or an
//! orphaned session of the same client host and server). It then watches TransferSubscriptions,
//! the Republish loop, ResendData calls, recreated subscriptions and the Publish requests, and
//! settles into one `reconnect` event when every old subscription is accounted for, when
//! [`SETTLE_LIMIT_MS`] of traffic time passed, or when the connection ends. A session lost and
//! never recovered gets its verdict from [`never_came_back`] when the analysis finishes.
//!
//! Sans-IO: fed messages and capture time by the tracker; the same code runs live and offline.

use std::collections::{BTreeMap, BTreeSet};

use uatap_codec::status::StatusCode;

use crate::payload::{PatternInfo, ReconnectInfo, RuleVerdict};
use crate::time::Timestamp;

/// The rules this module judges, as in `reference/reconnect.md` (one line each, for people
/// reading the code; the verdict details say what the traffic showed).
pub const RULES: &[(&str, &str)] = &[
    ("R1", "the client monitors the connection: an item on, or Reads of, ServerStatus.State (i=2259)"),
    ("R2", "after a loss: new SecureChannel (OPN Issue), then ActivateSession on the existing session, no CreateSession first"),
    ("R3", "the new channel uses the same security policy, client certificate and user token type"),
    ("R4", "after a failed attempt the client waits before retrying (no tight loop)"),
    ("R5", "CreateSession only if ActivateSession on the old session failed"),
    ("R6", "with a new session the client calls TransferSubscriptions with the old SubscriptionIds"),
    ("R7", "a refused transfer is followed by CreateSubscription and CreateMonitoredItems"),
    ("R8", "the old session gets Good_SubscriptionTransferred (only if it has a Publish pending)"),
    ("R9", "transfer only for the same user (anonymous: same ApplicationUri, Sign or SignAndEncrypt)"),
    ("R10", "Republish from the next expected number, one by one, until Bad_MessageNotAvailable; then Publish"),
    ("R11", "Republish answered Bad_SubscriptionIdInvalid: the subscription and its items are recreated"),
    ("R12", "gaps Republish cannot fill: ResendData (Call 2253/12873) or Read of the items"),
    ("R18", "keep-alive numbers are never acknowledged"),
    ("R23", "only numbers in AvailableSequenceNumbers are acknowledged"),
    ("R25", "the client keeps no more Publish requests queued than the server accepts (Bad_TooManyPublishRequests)"),
];

/// A recovery settles at the latest this long after the client came back (traffic time).
pub const SETTLE_LIMIT_MS: f64 = 30_000.0;

/// `118–124`, `5, 7, 9–11`: sequence numbers as a person reads them.
pub fn ranges(nums: &[u64]) -> String {
    let mut v: Vec<u64> = nums.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = Vec::new();
    let mut i = 0usize;
    while let Some(&first) = v.get(i) {
        let mut j = i;
        while let (Some(&a), Some(&b)) = (v.get(j), v.get(j.saturating_add(1))) {
            if b != a.saturating_add(1) {
                break;
            }
            j = j.saturating_add(1);
        }
        let last = v.get(j).copied().unwrap_or(first);
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}–{last}")
        });
        i = j.saturating_add(1);
    }
    out.join(", ")
}

/// What a reconnect verdict says, for the one plain sentence of the live log and the timeline.
#[derive(Debug, Clone, Default)]
pub struct Story<'a> {
    /// The client came back at all.
    pub came_back: bool,
    /// It reactivated its old session (else it created a new one).
    pub session_reused: bool,
    /// Subscriptions transferred.
    pub transferred: usize,
    /// Sequence numbers recovered by Republish.
    pub republished: Vec<u64>,
    /// Sequence numbers lost for good.
    pub lost: Vec<u64>,
    /// How long the client was away.
    pub downtime_ms: Option<f64>,
    /// Rules the traffic shows were not followed.
    pub failed_rules: Vec<&'a str>,
}

impl Story<'_> {
    /// "client reused its session and republished 3 of 3 missing notification(s); nothing lost".
    pub fn sentence(&self) -> String {
        let mut parts = vec![if !self.came_back {
            "client did not come back".to_string()
        } else if self.session_reused {
            "client reused its session".to_string()
        } else {
            "client created a new session".to_string()
        }];
        if self.transferred > 0 {
            parts.push(format!("transferred {} subscription(s)", self.transferred));
        }
        if !self.republished.is_empty() {
            parts.push(format!(
                "republished {} of {} missing notification(s)",
                self.republished.len(),
                self.republished.len().saturating_add(self.lost.len())
            ));
        }
        let tail = if self.lost.is_empty() {
            "nothing lost".to_string()
        } else {
            format!("notifications {} were never delivered", ranges(&self.lost))
        };
        let mut s = format!("{}; {}", parts.join(" and "), tail);
        if let Some(ms) = self.downtime_ms {
            s.push_str(&format!(" (down {:.1} s)", ms / 1000.0));
        }
        if !self.failed_rules.is_empty() {
            s.push_str(&format!(
                "; rules not followed: {}",
                self.failed_rules.join(", ")
            ));
        }
        s
    }
}

impl crate::payload::ReconnectInfo {
    /// The verdict in one plain sentence.
    pub fn story(&self) -> Story<'_> {
        Story {
            came_back: self.came_back,
            session_reused: self.session_reused,
            transferred: self.transferred.len(),
            republished: self.republished.iter().map(|&n| u64::from(n)).collect(),
            lost: self.lost.iter().map(|&n| u64::from(n)).collect(),
            downtime_ms: self.downtime_ms,
            failed_rules: self
                .rules
                .iter()
                .filter(|r| r.verdict == "FAIL")
                .map(|r| r.id)
                .collect(),
        }
    }
}
/// Most sequence numbers listed in `republished` / `lost`.
const MAX_LISTED: usize = 1000;
/// Most Republish requests remembered per subscription.
const MAX_ASKS: usize = 4096;
/// Most acknowledgement problems remembered per subscription.
pub(crate) const MAX_ACK_NOTES: usize = 16;
/// Recoveries that recreated subscriptions before the pattern is named.
const RECREATE_LOOP: usize = 3;
/// Bad_TooManyPublishRequests faults that make a flood.
const PUBLISH_FLOOD: u64 = 3;
/// Retries closer than this are a tight loop (R4).
const TIGHT_RETRY_MS: f64 = 1000.0;

/// What the lost session looked like, taken from the shared state when the client comes back.
#[derive(Debug, Clone, Default)]
pub(crate) struct OldSession {
    pub(crate) session_id: Option<String>,
    pub(crate) conn: String,
    pub(crate) channel_id: Option<u32>,
    /// When its connection ended, if it did.
    pub(crate) lost_at: Option<Timestamp>,
    /// The last Publish response seen for its subscriptions.
    pub(crate) last_seen: Option<Timestamp>,
    pub(crate) policy_uri: Option<String>,
    pub(crate) client_thumbprint: Option<String>,
    pub(crate) identity: Option<&'static str>,
    pub(crate) watches_server_state: bool,
    pub(crate) session_timeout_ms: Option<f64>,
    /// Failed attempts (channels or connections that ended before a session) since the loss.
    pub(crate) attempts: Vec<Timestamp>,
    pub(crate) subscriptions: Vec<OldSubscription>,
}

/// One subscription of the lost session.
#[derive(Debug, Clone, Default)]
pub(crate) struct OldSubscription {
    pub(crate) id: u32,
    /// Last data NotificationMessage number the client received.
    pub(crate) last_received: Option<u32>,
    pub(crate) ack_keep_alive: Vec<u32>,
    pub(crate) ack_unavailable: Vec<u32>,
}

#[derive(Debug, Default)]
struct SubRecovery {
    last_received: Option<u32>,
    asks: Vec<u32>,
    pending_asks: u32,
    /// Status that ended the loop (Bad_MessageNotAvailable or Bad_SubscriptionIdInvalid).
    loop_end: Option<u32>,
    asks_after_end: u32,
    publish_during_loop: bool,
    /// First Publish response on the new connection: (number, keep-alive).
    first_publish: Option<(u32, bool)>,
    published_since_last_ask: bool,
    good: BTreeSet<u32>,
    transfer: Option<(u32, Vec<u32>)>,
    invalid: bool,
    ack_keep_alive: Vec<u32>,
    ack_unavailable: Vec<u32>,
}

/// A client coming back: what it did since, until the verdict.
#[derive(Debug)]
pub(crate) struct Recovery {
    old: OldSession,
    pub(crate) new_channel_id: Option<u32>,
    pub(crate) new_policy_uri: Option<String>,
    pub(crate) new_client_thumbprint: Option<String>,
    pub(crate) new_identity: Option<&'static str>,
    started_at: Timestamp,
    session_reused: bool,
    /// Status of the failed ActivateSession on the old session, for a new session.
    activate_failed: Option<u32>,
    new_session_activated: bool,
    transfer_requested: Option<(Vec<u32>, bool)>,
    subs: BTreeMap<u32, SubRecovery>,
    new_subscriptions: Vec<u32>,
    items_for_new: BTreeSet<u32>,
    publish_requests: u64,
    resend_data: Vec<u32>,
    read_called: bool,
    too_many_publish: u64,
    transferred_notice: bool,
    /// Earlier recoveries of this client host that recreated subscriptions (with this one when
    /// it does too), for the recreate-loop pattern.
    pub(crate) recreations: Vec<Timestamp>,
}

fn verdict(id: &'static str, verdict: &'static str, detail: String) -> RuleVerdict {
    RuleVerdict {
        id,
        verdict,
        ok: verdict != "FAIL",
        detail,
    }
}

fn pattern(name: &'static str, detail: String) -> PatternInfo {
    PatternInfo { name, detail }
}

fn status_name(code: u32) -> String {
    StatusCode(code).to_string()
}

fn list(v: &[u32]) -> String {
    format!("{v:?}")
}

fn next(seq: u32) -> u32 {
    if seq == u32::MAX {
        1
    } else {
        seq.saturating_add(1)
    }
}

/// Numbers after `last` up to and including `upto`, at most [`MAX_LISTED`].
fn range_after(last: u32, upto: u32) -> Vec<u32> {
    let mut v = Vec::new();
    let mut s = next(last);
    // Within half the number space: `upto` is ahead of `last`.
    if upto.wrapping_sub(last) >= (1 << 31) || upto == last {
        return v;
    }
    while v.len() < MAX_LISTED {
        v.push(s);
        if s == upto {
            break;
        }
        s = next(s);
    }
    v
}

/// The rules that apply to acknowledgements, and their patterns.
fn ack_rules(
    keep_alive: &[(u32, u32)],
    unavailable: &[(u32, u32)],
    rules: &mut Vec<RuleVerdict>,
    patterns: &mut Vec<PatternInfo>,
) {
    if !keep_alive.is_empty() {
        rules.push(verdict(
            "R18",
            "FAIL",
            format!(
                "keep-alive numbers acknowledged ([subscription, number]): {keep_alive:?}; the server answers Bad_SequenceNumberUnknown"
            ),
        ));
    }
    if !unavailable.is_empty() {
        rules.push(verdict(
            "R23",
            "WARN",
            format!("acknowledged numbers not in AvailableSequenceNumbers ([subscription, number]): {unavailable:?}"),
        ));
        patterns.push(pattern(
            "ack_not_available",
            format!(
                "the client acknowledged {unavailable:?}, which the server no longer held (Kepware closes the connection for this)"
            ),
        ));
    }
}

impl Recovery {
    /// A client came back at `now` for `old`.
    pub(crate) fn new(
        old: OldSession,
        now: Timestamp,
        session_reused: bool,
        activate_failed: Option<u32>,
    ) -> Self {
        let subs = old
            .subscriptions
            .iter()
            .map(|s| {
                (
                    s.id,
                    SubRecovery {
                        last_received: s.last_received,
                        ..SubRecovery::default()
                    },
                )
            })
            .collect();
        Recovery {
            old,
            new_channel_id: None,
            new_policy_uri: None,
            new_client_thumbprint: None,
            new_identity: None,
            started_at: now,
            session_reused,
            activate_failed,
            new_session_activated: session_reused,
            transfer_requested: None,
            subs,
            new_subscriptions: Vec::new(),
            items_for_new: BTreeSet::new(),
            publish_requests: 0,
            resend_data: Vec::new(),
            read_called: false,
            too_many_publish: 0,
            transferred_notice: false,
            recreations: Vec::new(),
        }
    }

    /// The new session was activated (CreateSession path).
    pub(crate) fn on_new_session_activated(&mut self, identity: Option<&'static str>) {
        self.new_session_activated = true;
        if identity.is_some() {
            self.new_identity = identity;
        }
    }

    /// SubscriptionIds of the lost session.
    pub(crate) fn old_subscription_ids(&self) -> Vec<u32> {
        self.old.subscriptions.iter().map(|s| s.id).collect()
    }

    /// A Republish request.
    pub(crate) fn on_republish_request(&mut self, subscription_id: u32, seq: u32) {
        if let Some(s) = self.subs.get_mut(&subscription_id) {
            if s.asks.len() < MAX_ASKS {
                s.asks.push(seq);
            }
            s.pending_asks = s.pending_asks.saturating_add(1);
            s.published_since_last_ask = false;
            if s.loop_end.is_some() {
                s.asks_after_end = s.asks_after_end.saturating_add(1);
            }
        }
    }

    /// A Republish answer: Good with the message, or the fault's status.
    pub(crate) fn on_republish_result(&mut self, subscription_id: u32, seq: u32, status: u32) {
        let Some(s) = self.subs.get_mut(&subscription_id) else {
            return;
        };
        s.pending_asks = s.pending_asks.saturating_sub(1);
        if StatusCode(status).is_good() {
            if s.good.len() < MAX_ASKS {
                s.good.insert(seq);
            }
        } else if s.loop_end.is_none() {
            s.loop_end = Some(status);
            if status == StatusCode::BAD_SUBSCRIPTION_ID_INVALID.0 {
                s.invalid = true;
            }
        }
    }

    /// A Publish request (with its acknowledgement problems).
    pub(crate) fn on_publish_request(&mut self) {
        self.publish_requests = self.publish_requests.saturating_add(1);
        for s in self.subs.values_mut() {
            if !s.asks.is_empty() && s.loop_end.is_none() {
                s.publish_during_loop = true;
            }
        }
    }

    /// An acknowledgement the server cannot hold: of a keep-alive, or of a number not available.
    pub(crate) fn on_bad_ack(&mut self, subscription_id: u32, seq: u32, keep_alive: bool) {
        if let Some(s) = self.subs.get_mut(&subscription_id) {
            let v = if keep_alive {
                &mut s.ack_keep_alive
            } else {
                &mut s.ack_unavailable
            };
            if v.len() < MAX_ACK_NOTES {
                v.push(seq);
            }
        }
    }

    /// A Publish response for one of the subscriptions.
    pub(crate) fn on_publish_response(&mut self, subscription_id: u32, seq: u32, keep_alive: bool) {
        if let Some(s) = self.subs.get_mut(&subscription_id) {
            if s.first_publish.is_none() {
                s.first_publish = Some((seq, keep_alive));
            }
            s.published_since_last_ask = true;
        }
    }

    /// A StatusChangeNotification Good_SubscriptionTransferred was seen (R8).
    pub(crate) fn on_transferred_notice(&mut self) {
        self.transferred_notice = true;
    }

    /// TransferSubscriptions request.
    pub(crate) fn on_transfer_request(&mut self, ids: &[u32], send_initial_values: bool) {
        self.transfer_requested = Some((ids.to_vec(), send_initial_values));
    }

    /// One TransferSubscriptions result.
    pub(crate) fn on_transfer_result(&mut self, id: u32, status: u32, available: &[u32]) {
        let s = self.subs.entry(id).or_default();
        s.transfer = Some((status, available.to_vec()));
        if !StatusCode(status).is_good() {
            s.invalid = true;
        }
    }

    /// A subscription created after the client came back.
    pub(crate) fn on_subscription_created(&mut self, id: u32) {
        // A server may hand out an old number again: new unless the old one continues.
        if !self.subs.get(&id).is_some_and(|s| self.continues(s)) {
            self.new_subscriptions.push(id);
        }
    }

    /// Monitored items created (Good) in a subscription.
    pub(crate) fn on_items_created(&mut self, subscription_id: u32) {
        if self.new_subscriptions.contains(&subscription_id) {
            self.items_for_new.insert(subscription_id);
        }
    }

    /// A ResendData call (Call ObjectId 2253, MethodId 12873).
    pub(crate) fn on_resend_data(&mut self, subscription_id: Option<u32>) {
        self.resend_data.push(subscription_id.unwrap_or(0));
    }

    /// A Read request after the client came back (R12's other way to refill).
    pub(crate) fn on_read(&mut self) {
        self.read_called = true;
    }

    /// A Publish answered Bad_TooManyPublishRequests.
    pub(crate) fn on_too_many_publish(&mut self) {
        self.too_many_publish = self.too_many_publish.saturating_add(1);
    }

    /// Old subscriptions that continue: the session was reused, or they were transferred.
    fn continues(&self, s: &SubRecovery) -> bool {
        if s.invalid {
            return false;
        }
        match &s.transfer {
            Some((status, _)) => StatusCode(*status).is_good(),
            None => self.session_reused,
        }
    }

    fn recreated_enough(&self, needed: usize) -> bool {
        self.items_for_new.len() >= needed
    }

    /// Every old subscription is accounted for: the verdict can be given.
    pub(crate) fn settled(&self, now: Timestamp) -> bool {
        if now.millis_since(self.started_at) >= SETTLE_LIMIT_MS {
            return true;
        }
        if !self.new_session_activated {
            return false;
        }
        let mut must_recreate = 0usize;
        for s in self.subs.values() {
            if self.continues(s) {
                // A Republish loop is over only at Bad_MessageNotAvailable (or
                // Bad_SubscriptionIdInvalid); one that stops short is judged at the limit.
                let loop_open = !s.asks.is_empty() && s.loop_end.is_none();
                if s.pending_asks > 0 || !s.published_since_last_ask || loop_open {
                    return false;
                }
            } else {
                must_recreate = must_recreate.saturating_add(1);
            }
        }
        // A new session that has not (yet) said whether it transfers.
        if !self.session_reused && self.transfer_requested.is_none() && must_recreate > 0 {
            return self.recreated_enough(must_recreate);
        }
        must_recreate == 0 || self.recreated_enough(must_recreate)
    }

    /// Old subscriptions that neither continue nor were recreated under the same id: their
    /// state can be forgotten once the verdict is given (a client recreating subscriptions for
    /// hours must not grow the analysis).
    pub(crate) fn abandoned(&self) -> Vec<u32> {
        self.subs
            .iter()
            .filter(|(id, s)| !self.continues(s) && !self.new_subscriptions.contains(id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The old session was replaced by a new one.
    pub(crate) fn session_replaced(&self) -> bool {
        !self.session_reused
    }

    /// True when this recovery recreated subscriptions (for the recreate-loop pattern).
    pub(crate) fn recreates(&self) -> bool {
        !self.new_subscriptions.is_empty() && self.subs.values().any(|s| !self.continues(s))
    }

    /// The verdict: the `reconnect` event's payload.
    pub(crate) fn verdict(&self, now: Timestamp) -> ReconnectInfo {
        let mut rules = Vec::new();
        let mut patterns = Vec::new();
        let old = &self.old;

        // R1
        rules.push(if old.watches_server_state {
            verdict(
                "R1",
                "PASS",
                "the session monitors or reads ServerStatus.State (i=2259)".into(),
            )
        } else {
            verdict(
                "R1",
                "WARN",
                "no monitored item on, or Read of, ServerStatus.State (i=2259) seen for this session".into(),
            )
        });

        // R2 and R5
        if self.session_reused {
            let same_channel =
                self.new_channel_id.is_some() && self.new_channel_id == old.channel_id;
            rules.push(if same_channel {
                verdict(
                    "R2",
                    "WARN",
                    format!(
                        "ActivateSession with the old AuthenticationToken, but on the same SecureChannelId {}",
                        self.new_channel_id.unwrap_or(0)
                    ),
                )
            } else {
                verdict(
                    "R2",
                    "PASS",
                    format!(
                        "new SecureChannel {} (was {}), then ActivateSession on the existing session",
                        self.new_channel_id.map_or("?".into(), |c| c.to_string()),
                        old.channel_id.map_or("?".into(), |c| c.to_string())
                    ),
                )
            });
            rules.push(verdict(
                "R5",
                "PASS",
                "no CreateSession: the old session was reused".into(),
            ));
        } else if let Some(st) = self.activate_failed {
            rules.push(verdict(
                "R2",
                "PASS",
                format!(
                    "ActivateSession on the existing session was tried first and failed ({})",
                    status_name(st)
                ),
            ));
            rules.push(verdict(
                "R5",
                "PASS",
                format!(
                    "CreateSession only after ActivateSession failed ({})",
                    status_name(st)
                ),
            ));
        } else {
            rules.push(verdict(
                "R2",
                "FAIL",
                "the client created a new session without trying ActivateSession on the existing one".into(),
            ));
            rules.push(verdict(
                "R5",
                "FAIL",
                "CreateSession without a failed ActivateSession before it".into(),
            ));
        }

        // R3
        let mut diffs = Vec::new();
        let mut compared = 0;
        let mut cmp = |what: &str, a: Option<&str>, b: Option<&str>| {
            if let (Some(a), Some(b)) = (a, b) {
                compared += 1;
                if a != b {
                    diffs.push(format!("{what} {a} -> {b}"));
                }
            }
        };
        cmp(
            "security policy",
            old.policy_uri.as_deref(),
            self.new_policy_uri.as_deref(),
        );
        cmp(
            "client certificate",
            old.client_thumbprint.as_deref(),
            self.new_client_thumbprint.as_deref(),
        );
        cmp("user token", old.identity, self.new_identity);
        rules.push(if compared == 0 {
            verdict(
                "R3",
                "N/A",
                "policy, certificate and user token not readable on both channels".into(),
            )
        } else if diffs.is_empty() {
            verdict(
                "R3",
                "PASS",
                "same security policy, client certificate and user token type".into(),
            )
        } else {
            verdict("R3", "FAIL", diffs.join("; "))
        });

        // R4
        if !old.attempts.is_empty() {
            let tight = old
                .attempts
                .windows(2)
                .filter_map(|w| match w {
                    [a, b] => Some(b.millis_since(*a)),
                    _ => None,
                })
                .filter(|d| *d < TIGHT_RETRY_MS)
                .count();
            rules.push(if tight > 0 {
                verdict(
                    "R4",
                    "WARN",
                    format!(
                        "{} failed attempts, {tight} of them less than {TIGHT_RETRY_MS} ms after the previous one",
                        old.attempts.len()
                    ),
                )
            } else {
                verdict(
                    "R4",
                    "PASS",
                    format!(
                        "{} failed attempts, spaced at least {TIGHT_RETRY_MS} ms apart",
                        old.attempts.len()
                    ),
                )
            });
        }

        let old_ids: Vec<u32> = old.subscriptions.iter().map(|s| s.id).collect();
        // R6
        if !self.session_reused {
            match &self.transfer_requested {
                Some((ids, initial)) => {
                    let missing: Vec<u32> = old_ids
                        .iter()
                        .copied()
                        .filter(|i| !ids.contains(i))
                        .collect();
                    rules.push(if missing.is_empty() {
                        verdict(
                            "R6",
                            "PASS",
                            format!(
                                "TransferSubscriptions {} with SendInitialValues={initial}",
                                list(ids)
                            ),
                        )
                    } else {
                        verdict(
                            "R6",
                            "FAIL",
                            format!(
                                "TransferSubscriptions {} left out {}",
                                list(ids),
                                list(&missing)
                            ),
                        )
                    });
                }
                None if old_ids.is_empty() => rules.push(verdict(
                    "R6",
                    "N/A",
                    "the old session had no subscription seen in the capture".into(),
                )),
                None => rules.push(verdict(
                    "R6",
                    "FAIL",
                    format!(
                        "new session without TransferSubscriptions of {}",
                        list(&old_ids)
                    ),
                )),
            }
        }

        // R7, R8, R9
        let mut good_transfers = Vec::new();
        let mut refused = Vec::new();
        for (id, s) in &self.subs {
            if let Some((st, _)) = &s.transfer {
                if StatusCode(*st).is_good() {
                    good_transfers.push(*id);
                } else {
                    refused.push((*id, *st));
                }
            }
        }
        if !good_transfers.is_empty() || !refused.is_empty() {
            let mut details: Vec<String> = self
                .subs
                .iter()
                .filter_map(|(id, s)| s.transfer.as_ref().map(|t| (id, t)))
                .filter(|(_, (st, _))| StatusCode(*st).is_good())
                .map(|(id, (_, avail))| format!("{id} transferred, available {}", list(avail)))
                .collect();
            let recreated = self.recreated_enough(refused.len());
            let verdict_word = if refused.is_empty() || recreated {
                "PASS"
            } else {
                "FAIL"
            };
            for (id, st) in &refused {
                details.push(format!(
                    "{id} refused ({}){}",
                    status_name(*st),
                    if recreated {
                        ""
                    } else {
                        " and no new subscription with monitored items followed"
                    }
                ));
            }
            if !refused.is_empty() && recreated {
                details.push(format!("recreated as {}", list(&self.new_subscriptions)));
                patterns.push(pattern(
                    "recreated_after_refused_transfer",
                    format!(
                        "transfer of {} refused; the client recreated them as {} (new ids, the queued notifications are gone)",
                        list(&refused.iter().map(|r| r.0).collect::<Vec<_>>()),
                        list(&self.new_subscriptions)
                    ),
                ));
            }
            rules.push(verdict("R7", verdict_word, details.join("; ")));
            if !good_transfers.is_empty() {
                rules.push(if self.transferred_notice {
                    verdict(
                        "R8",
                        "PASS",
                        "Good_SubscriptionTransferred seen on the old session".into(),
                    )
                } else {
                    verdict(
                        "R8",
                        "N/A",
                        "the old session had no Publish pending to carry Good_SubscriptionTransferred"
                            .into(),
                    )
                });
            }
            let denied: Vec<u32> = refused
                .iter()
                .filter(|(_, st)| *st == StatusCode::BAD_USER_ACCESS_DENIED.0)
                .map(|r| r.0)
                .collect();
            if !denied.is_empty() {
                rules.push(verdict(
                    "R9",
                    "WARN",
                    format!(
                        "transfer of {} refused with Bad_UserAccessDenied: the user differs ({} -> {}), or it is anonymous on a channel without Sign/SignAndEncrypt or from another ApplicationUri",
                        list(&denied),
                        old.identity.unwrap_or("?"),
                        self.new_identity.unwrap_or("?")
                    ),
                ));
            }
        }

        // R10, R11 and what was lost.
        let mut republished = BTreeSet::new();
        let mut lost = BTreeSet::new();
        let mut r10 = Vec::new();
        let mut r10_word = "PASS";
        let worse = |w: &mut &'static str, new: &'static str| {
            let rank = |x: &str| match x {
                "FAIL" => 3,
                "WARN" => 2,
                "PASS" => 1,
                _ => 0,
            };
            if rank(new) > rank(w) {
                *w = new;
            }
        };
        let mut invalid_ids = Vec::new();
        let mut dropped = Vec::new();
        let mut any_continues = false;
        for (id, s) in &self.subs {
            if s.loop_end == Some(StatusCode::BAD_SUBSCRIPTION_ID_INVALID.0) {
                invalid_ids.push(*id);
            }
            if !self.continues(s) {
                if s.transfer.is_none() && !s.invalid {
                    dropped.push(*id);
                }
                continue;
            }
            any_continues = true;
            // How far the server got: the first number on the new connection, the numbers it
            // still held, the numbers Republish returned.
            let mut upto: Option<u32> = None;
            let mut raise = |n: u32| {
                if upto.is_none_or(|u| n.wrapping_sub(u) < (1 << 31)) {
                    upto = Some(n);
                }
            };
            // Data or keep-alive, the number before the first one was the last sent.
            if let Some((seq, _)) = s.first_publish {
                if seq > 1 {
                    raise(seq.saturating_sub(1));
                }
            }
            if let Some((_, avail)) = &s.transfer {
                avail.iter().for_each(|n| raise(*n));
            }
            s.good.iter().for_each(|n| raise(*n));
            let missing: Vec<u32> = match (s.last_received, upto) {
                (Some(last), Some(u)) => range_after(last, u),
                (None, _) => {
                    let mut v: Vec<u32> =
                        s.transfer.as_ref().map(|t| t.1.clone()).unwrap_or_default();
                    v.extend(s.good.iter().copied());
                    v.sort_unstable();
                    v.dedup();
                    v
                }
                _ => Vec::new(),
            };
            for n in &missing {
                if s.good.contains(n) {
                    republished.insert(*n);
                } else {
                    lost.insert(*n);
                }
            }
            let expected = s.last_received.map(next);
            if s.asks.is_empty() {
                if missing.is_empty() {
                    r10.push(format!(
                        "subscription {id}: nothing to republish{}",
                        s.first_publish
                            .map(|(n, _)| format!(
                                ", the first message after the reconnect was {n}"
                            ))
                            .unwrap_or_default()
                    ));
                } else {
                    worse(&mut r10_word, "FAIL");
                    r10.push(format!(
                        "subscription {id}: {} missing and no Republish",
                        list(&missing)
                    ));
                }
            } else {
                let first = s.asks.first().copied().unwrap_or(0);
                let mut d = format!(
                    "subscription {id}: asked {}{}",
                    list(&s.asks),
                    s.loop_end
                        .map(|st| format!(", ended by {}", status_name(st)))
                        .unwrap_or_default()
                );
                if let Some(e) = expected {
                    if first != e {
                        worse(&mut r10_word, "FAIL");
                        d.push_str(&format!(", started at {first} where {e} was next"));
                    }
                }
                // The number asked most often, and how often.
                let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
                for n in &s.asks {
                    let c = counts.entry(*n).or_default();
                    *c = c.saturating_add(1);
                }
                let (stuck_at, stuck) = counts
                    .iter()
                    .max_by_key(|(_, c)| **c)
                    .map_or((0, 0), |(n, c)| (*n, *c));
                if stuck >= 3 {
                    worse(&mut r10_word, "FAIL");
                    d.push_str(", never advanced");
                    patterns.push(pattern(
                        "republish_loop_stuck",
                        format!("subscription {id}: Republish of {stuck_at} asked {stuck} times"),
                    ));
                } else if s
                    .asks
                    .windows(2)
                    .any(|w| matches!(w, [a, b] if *b != next(*a)))
                {
                    worse(&mut r10_word, "WARN");
                    d.push_str(", not one by one");
                }
                if s.asks_after_end > 0 {
                    worse(&mut r10_word, "WARN");
                    d.push_str(&format!(
                        ", {} more after Bad_MessageNotAvailable",
                        s.asks_after_end
                    ));
                    patterns.push(pattern(
                        "republish_loop_never_stops",
                        format!(
                            "subscription {id}: Republish went on {} times after Bad_MessageNotAvailable",
                            s.asks_after_end
                        ),
                    ));
                } else if s.loop_end.is_none() {
                    worse(&mut r10_word, "WARN");
                    d.push_str(", never reached Bad_MessageNotAvailable");
                    if s.pending_asks > 0 || !s.published_since_last_ask {
                        patterns.push(pattern(
                            "republish_loop_never_stops",
                            format!(
                                "subscription {id}: Republish loop still running, no Bad_MessageNotAvailable"
                            ),
                        ));
                    }
                }
                if s.publish_during_loop {
                    worse(&mut r10_word, "WARN");
                    d.push_str(", Publish requests interleaved");
                }
                r10.push(d);
            }
        }
        if any_continues {
            if self.publish_requests == 0 {
                worse(&mut r10_word, "FAIL");
                r10.push(
                    "no Publish request after the reconnect: normal Publish handling never resumed"
                        .into(),
                );
                patterns.push(pattern(
                    "no_publish_after_reactivation",
                    format!(
                        "no Publish request in the {:.0} ms after the session came back: data frozen while connected",
                        now.millis_since(self.started_at)
                    ),
                ));
            }
            rules.push(verdict("R10", r10_word, r10.join("; ")));
        }
        if !invalid_ids.is_empty() {
            let ok = self.recreated_enough(invalid_ids.len());
            rules.push(verdict(
                "R11",
                if ok { "PASS" } else { "FAIL" },
                format!(
                    "Republish of {} answered Bad_SubscriptionIdInvalid; {}",
                    list(&invalid_ids),
                    if ok {
                        format!("recreated as {}", list(&self.new_subscriptions))
                    } else {
                        "no new subscription with monitored items followed".into()
                    }
                ),
            ));
        }
        if !lost.is_empty() {
            rules.push(if !self.resend_data.is_empty() {
                verdict(
                    "R12",
                    "PASS",
                    format!("ResendData called for {}", list(&self.resend_data)),
                )
            } else if self.read_called {
                verdict(
                    "R12",
                    "PASS",
                    "the client read values after the reconnect".into(),
                )
            } else {
                verdict(
                    "R12",
                    "WARN",
                    format!(
                        "{} never recovered and no ResendData (Call 2253/12873) or Read followed",
                        list(&lost.iter().copied().take(20).collect::<Vec<_>>())
                    ),
                )
            });
        }

        // R18, R23: acknowledgements before the loss and since.
        let mut ka = Vec::new();
        let mut un = Vec::new();
        for o in &old.subscriptions {
            ka.extend(o.ack_keep_alive.iter().map(|n| (o.id, *n)));
            un.extend(o.ack_unavailable.iter().map(|n| (o.id, *n)));
        }
        for (id, s) in &self.subs {
            ka.extend(s.ack_keep_alive.iter().map(|n| (*id, *n)));
            un.extend(s.ack_unavailable.iter().map(|n| (*id, *n)));
        }
        // The same acknowledgement can be noted before and during the recovery.
        ka.sort_unstable();
        ka.dedup();
        un.sort_unstable();
        un.dedup();
        ack_rules(&ka, &un, &mut rules, &mut patterns);

        // R25
        if self.too_many_publish > 0 {
            rules.push(verdict(
                "R25",
                "WARN",
                format!(
                    "{} Publish requests answered Bad_TooManyPublishRequests",
                    self.too_many_publish
                ),
            ));
            if self.too_many_publish >= PUBLISH_FLOOD {
                patterns.push(pattern(
                    "too_many_publish_requests",
                    format!(
                        "{} Bad_TooManyPublishRequests after the reconnect",
                        self.too_many_publish
                    ),
                ));
            }
        }

        if !dropped.is_empty() {
            patterns.push(pattern(
                "queued_data_dropped",
                format!(
                    "subscriptions {} were neither reused nor transferred{}: their queued notifications are dropped",
                    list(&dropped),
                    if self.new_subscriptions.is_empty() {
                        String::new()
                    } else {
                        format!("; recreated as {}", list(&self.new_subscriptions))
                    }
                ),
            ));
        }
        if self.recreates() && self.recreations.len() >= RECREATE_LOOP {
            let span = match (self.recreations.first(), self.recreations.last()) {
                (Some(a), Some(b)) => b.millis_since(*a),
                _ => 0.0,
            };
            let every = span / (self.recreations.len().saturating_sub(1).max(1) as f64);
            patterns.push(pattern(
                "subscription_recreated_repeatedly",
                format!(
                    "{} reconnects of this client recreated their subscriptions, about every {:.1} s",
                    self.recreations.len(),
                    every / 1000.0
                ),
            ));
        }

        let transferred = good_transfers;
        let lost: Vec<u32> = lost.into_iter().take(MAX_LISTED).collect();
        let recovered =
            lost.is_empty() && dropped.is_empty() && self.subs.values().all(|s| self.continues(s));
        ReconnectInfo {
            session_id: old.session_id.clone(),
            old_channel_id: old.channel_id,
            new_channel_id: self.new_channel_id,
            session_reused: self.session_reused,
            transferred,
            republished: republished.into_iter().take(MAX_LISTED).collect(),
            lost,
            recovered,
            downtime_ms: old
                .lost_at
                .or(old.last_seen)
                .map(|t| self.started_at.millis_since(t)),
            rules,
            patterns,
            came_back: true,
            old_conn: old.conn.clone(),
            dropped_subscriptions: dropped,
            recreated_subscriptions: self.new_subscriptions.clone(),
        }
    }
}

/// The verdict on a session lost and never recovered by the end of the analysis.
pub(crate) fn never_came_back(old: &OldSession, now: Timestamp) -> ReconnectInfo {
    let mut rules = Vec::new();
    let mut patterns = Vec::new();
    let since = old.lost_at.map(|t| now.millis_since(t));
    let past_timeout = match (since, old.session_timeout_ms) {
        (Some(s), Some(t)) => s > t,
        _ => false,
    };
    rules.push(verdict(
        "R2",
        "WARN",
        format!(
            "the client did not come back{}{}",
            since
                .map(|s| format!(" in the {:.0} ms after the loss", s))
                .unwrap_or_default(),
            if past_timeout {
                " (past the session timeout: the session and its subscriptions are gone)"
            } else {
                ""
            }
        ),
    ));
    if !old.attempts.is_empty() {
        rules.push(verdict(
            "R4",
            "PASS",
            format!("{} failed attempts to come back", old.attempts.len()),
        ));
    }
    let mut ka = Vec::new();
    let mut un = Vec::new();
    for o in &old.subscriptions {
        ka.extend(o.ack_keep_alive.iter().map(|n| (o.id, *n)));
        un.extend(o.ack_unavailable.iter().map(|n| (o.id, *n)));
    }
    ack_rules(&ka, &un, &mut rules, &mut patterns);
    let dropped: Vec<u32> = old.subscriptions.iter().map(|s| s.id).collect();
    patterns.push(pattern(
        "never_came_back",
        format!(
            "session lost with subscriptions {} and no ActivateSession or new session followed",
            list(&dropped)
        ),
    ));
    ReconnectInfo {
        session_id: old.session_id.clone(),
        old_channel_id: old.channel_id,
        new_channel_id: None,
        session_reused: false,
        transferred: Vec::new(),
        republished: Vec::new(),
        lost: Vec::new(),
        recovered: false,
        downtime_ms: since,
        rules,
        patterns,
        came_back: false,
        old_conn: old.conn.clone(),
        dropped_subscriptions: dropped,
        recreated_subscriptions: Vec::new(),
    }
}

#[cfg(test)]
#[path = "reconnect_tests.rs"]
mod tests;
