//! The live inline proxy (tokio). Arrives with the live proxy issue; nothing lives here yet.
#![deny(missing_docs)]
