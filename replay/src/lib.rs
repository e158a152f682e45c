//! Replays recorded OPC UA conversations against live peers, without owning a socket or a clock.
//!
//! - [`recording`]: a capture read into its OPC UA connections (the client's leg of each proxied
//!   pair), each a list of whole messages with their capture times and how it ended.
//! - [`server`]: [`server::ServerReplay`] plays the recorded server toward a live client: the
//!   recorded responses, matched to the live requests by service and order, with what must be
//!   live rewritten (RequestId, RequestHandle, sequence numbers, ClientHandles, timestamps), and
//!   the recorded fault (ERR, cut, missing responses) at the recorded point.
//! - [`client`]: [`client::ClientReplay`] plays the recorded client toward a live server (live
//!   SecureChannelId, TokenId, AuthenticationToken, subscription and monitored item ids), makes
//!   the recorded cut and reconnect, and diffs the live responses against the recorded ones.
//! - [`wire`]: building chunks and shifting timestamps, shared by both roles.
//!
//! Active roles follow the sans-IO shape of the analysis: `handle_input`, `handle_timeout`,
//! `poll_transmit`, `poll_timeout`, `poll_event`; the socket loop lives in the proxy crate.
//! It does not decrypt: a secured recording is replayed as security None (with a warning) as
//! far as its bodies are readable.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod recording;
pub mod server;
pub mod wire;

pub use recording::{RecordedConnection, RecordedMessage, Recording, RecordingError};

/// How fast recorded pauses are played: `--speed 1` (as recorded), `--speed 10`, `--speed max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Recorded pauses divided by this factor (> 0).
    Factor(f64),
    /// No pauses at all.
    Max,
}

impl Speed {
    /// A recorded pause of `micros`, scaled.
    #[must_use]
    pub fn scale(self, micros: i64) -> i64 {
        match self {
            Speed::Max => 0,
            Speed::Factor(f) if f > 0.0 && f.is_finite() => {
                let v = (micros.max(0) as f64) / f;
                if v >= i64::MAX as f64 {
                    i64::MAX
                } else {
                    v as i64
                }
            }
            Speed::Factor(_) => micros.max(0),
        }
    }
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "not a speed: {s} (a factor > 0 such as 1 or 10, or max)"
            )),
        }
    }
}

/// One thing a replay met that the recording does not have, and what it did instead: the
/// payload of a `replay_divergence` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The service concerned, e.g. `ReadRequest`.
    pub service: Option<String>,
    /// What differed.
    pub detail: String,
    /// What uatap did.
    pub answer: String,
}
