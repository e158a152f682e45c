//! Replays recordings against live peers. Arrives with the replay issue; nothing lives here yet.
#![deny(missing_docs)]
