//! OPC UA security for uatap: the RSA security policies (OPC 10000-7), the asymmetric security
//! of OPN chunks, the symmetric keys derived from the OPN nonces and the signed/encrypted
//! MSG and CLO chunks they protect.
//!
//! Sans-IO like the codec: whole chunks in, whole chunks out. Used by the analysis to read
//! secured channels with the user's private keys, and by the probe (and the MITM mode) to
//! speak secured channels itself.
//!
//! Crypto comes from aws-lc-rs: ring has neither RSA encryption nor AES-CBC, which every RSA
//! policy needs; the RustCrypto `rsa` crate carries an unfixed timing advisory
//! (RUSTSEC-2023-0071) that matters for a tool that decrypts what a network peer sent. The one
//! operation aws-lc-rs's safe API lacks, RSA-SHA1 signing for the deprecated policies, is one
//! call into the same AWS-LC library (`keys::sign_pkcs1_sha1`).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod appcert;
pub mod asymmetric;
pub mod error;
pub mod keylog;
pub mod keys;
pub mod passive;
pub mod policy;
pub mod symmetric;

pub use error::CryptoError;
pub use keys::{Certificate, PrivateKey};
pub use policy::SecurityPolicy;
pub use symmetric::{ChannelKeys, SymmetricKeys};

/// A secured chunk in clear: the header it had (MessageSize set to the clear length), then
/// the sequence header and the body, without padding or signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedChunk {
    /// The whole clear chunk.
    pub chunk: Vec<u8>,
    /// Where the sequence header starts.
    pub header_len: usize,
    /// The policy that protected it.
    pub policy: SecurityPolicy,
}

impl OpenedChunk {
    /// Joins the clear header and the clear rest, fixing MessageSize.
    fn assemble(header: &[u8], rest: &[u8], header_len: usize, policy: SecurityPolicy) -> Self {
        let mut chunk = Vec::with_capacity(header.len().saturating_add(rest.len()));
        chunk.extend_from_slice(header);
        chunk.extend_from_slice(rest);
        let size = u32::try_from(chunk.len()).unwrap_or(u32::MAX).to_le_bytes();
        if let Some(s) = chunk.get_mut(4..8) {
            s.copy_from_slice(&size);
        }
        OpenedChunk {
            chunk,
            header_len,
            policy,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests;
