//! Passive decryption: with the private key of the client or the server (or both), read the
//! secured channel of one connection as it goes by, without taking part in it.
//!
//! The OPN request is encrypted to the server's key and the response to the client's key. With
//! one key, uatap reads that OPN (the status of a refused OpenSecureChannel, or the token);
//! with both, it has both nonces, derives the symmetric keys of every token and opens every
//! MSG and CLO chunk.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use uatap_codec::reader::Reader;
use uatap_codec::reassembly::ChunkOpener;
use uatap_codec::services::{parse_message, ServiceBody};
use uatap_codec::tcp::MessageType;

use crate::asymmetric::{open_asymmetric_chunk, opn_header};
use crate::error::CryptoError;
use crate::keylog::{self, KeyLog};
use crate::keys::PrivateKey;
use crate::policy::SecurityPolicy;
use crate::symmetric::{open_symmetric_chunk, open_symmetric_chunk_unverified, ChannelKeys};

/// Tokens kept per channel: the current one, and the previous ones still accepted while a
/// renewal settles.
const MAX_TOKENS: usize = 4;

/// What the observer learned of the channel so far.
#[derive(Debug, Default)]
struct ChannelState {
    policy: Option<SecurityPolicy>,
    /// SecurityMode of the last OPN request (2 Sign, 3 SignAndEncrypt).
    encrypted: Option<bool>,
    client_nonce: Option<Vec<u8>>,
    tokens: Vec<(u32, ChannelKeys)>,
    /// Which key opened which OPN, for the evidence of reports.
    opened_by: Vec<String>,
}

/// Where derived keys are written as a key log (`--export-keys`), shared by every connection.
#[derive(Clone)]
pub struct KeyLogWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl std::fmt::Debug for KeyLogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyLogWriter")
    }
}

impl KeyLogWriter {
    /// Writes the six lines of one token's keys, flushed at once.
    pub fn write(&self, channel_id: u32, token_id: u32, keys: &ChannelKeys) {
        if let Ok(mut out) = self.0.lock() {
            let text = keylog::lines(channel_id, token_id, keys);
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    }
}

/// Clear text of chunks that a party to the channel (uatap's MITM mode) opened or sealed
/// itself, for the analysis to read them: keyed by direction and the chunk's bytes as they
/// crossed the wire, taken once, bounded.
#[derive(Debug, Default)]
pub struct ClearRegistry {
    inner: Mutex<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    map: HashMap<(bool, u64), Vec<u8>>,
    order: std::collections::VecDeque<(bool, u64)>,
    bytes: usize,
}

/// Most clear bytes held for an analysis that lags behind.
const MAX_REGISTRY_BYTES: usize = 256 << 20;

fn chunk_key(from_client: bool, chunk: &[u8]) -> (bool, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    chunk.hash(&mut h);
    (from_client, h.finish())
}

impl ClearRegistry {
    /// Records the clear form of a chunk sent in one direction.
    pub fn register(&self, from_client: bool, wire: &[u8], clear: Vec<u8>) {
        let Ok(mut r) = self.inner.lock() else { return };
        let key = chunk_key(from_client, wire);
        r.bytes = r.bytes.saturating_add(clear.len());
        if let Some(old) = r.map.insert(key, clear) {
            r.bytes = r.bytes.saturating_sub(old.len());
        } else {
            r.order.push_back(key);
        }
        while r.bytes > MAX_REGISTRY_BYTES {
            let Some(k) = r.order.pop_front() else { break };
            if let Some(old) = r.map.remove(&k) {
                r.bytes = r.bytes.saturating_sub(old.len());
            }
        }
    }

    /// Takes the clear form of a chunk, if it was registered.
    pub fn take(&self, from_client: bool, wire: &[u8]) -> Option<Vec<u8>> {
        let mut r = self.inner.lock().ok()?;
        let clear = r.map.remove(&chunk_key(from_client, wire))?;
        r.bytes = r.bytes.saturating_sub(clear.len());
        Some(clear)
    }
}

/// The keys a user gave, shared by every connection the analysis follows: application private
/// keys (`--private-key`) and key logs (`--keys`).
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    keys: Arc<Vec<(String, PrivateKey)>>,
    key_log: Arc<KeyLog>,
    export: Option<KeyLogWriter>,
    registry: Option<Arc<ClearRegistry>>,
}

impl KeyStore {
    /// Keys with a label each (the file name), tried in order.
    pub fn new(keys: Vec<(String, PrivateKey)>) -> Self {
        KeyStore {
            keys: Arc::new(keys),
            ..KeyStore::default()
        }
    }

    /// Adds the symmetric keys of a key log (Wireshark's OPC UA format).
    pub fn with_key_log(mut self, log: KeyLog) -> Self {
        self.key_log = Arc::new(log);
        self
    }

    /// Writes the symmetric keys of every token derived from now on as a key log.
    pub fn export_to(mut self, out: Box<dyn Write + Send>) -> Self {
        self.export = Some(KeyLogWriter(Arc::new(Mutex::new(out))));
        self
    }

    /// The key log being written, for other parties that derive keys (the MITM mode).
    pub fn key_log_writer(&self) -> Option<KeyLogWriter> {
        self.export.clone()
    }

    /// Reads the chunks a MITM bridge registered in clear.
    pub fn with_registry(mut self, registry: Arc<ClearRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// True when there is nothing to open chunks with.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.key_log.is_empty() && self.registry.is_none()
    }

    /// The pair of openers for the two directions of one new connection.
    pub fn openers(&self) -> (PassiveOpener, PassiveOpener) {
        let state = Arc::new(Mutex::new(ChannelState::default()));
        let side = |client| PassiveOpener {
            store: self.clone(),
            state: state.clone(),
            from_client: client,
        };
        (side(true), side(false))
    }
}

/// The client's own word on a channel it opens itself (the probe): the OPN request is
/// encrypted to the server, so the openers learn its ClientNonce and mode from here instead.
#[derive(Debug, Clone)]
pub struct OwnRequest {
    state: Arc<Mutex<ChannelState>>,
}

impl OwnRequest {
    /// Tells the openers the mode (`encrypted`: SignAndEncrypt) and ClientNonce of the OPN
    /// request about to be sent; the nonce stays inside the openers, never in an event.
    pub fn sent(&self, encrypted: bool, client_nonce: &[u8]) {
        if let Ok(mut st) = self.state.lock() {
            st.encrypted = Some(encrypted);
            st.client_nonce = Some(client_nonce.to_vec());
        }
    }
}

impl KeyStore {
    /// The openers of one connection the key holder opens as the client, and the handle that
    /// tells them what its encrypted OPN request held.
    pub fn client_openers(&self) -> (PassiveOpener, PassiveOpener, OwnRequest) {
        let (c2s, s2c) = self.openers();
        let own = OwnRequest {
            state: c2s.state.clone(),
        };
        (c2s, s2c, own)
    }
}

/// Opens the secured chunks of one direction of one connection.
#[derive(Debug)]
pub struct PassiveOpener {
    store: KeyStore,
    state: Arc<Mutex<ChannelState>>,
    from_client: bool,
}

impl PassiveOpener {
    /// Tries every key on an OPN chunk; the one whose decryption and signature check pass
    /// opens it.
    fn open_opn(&self, chunk: &[u8]) -> Option<Result<(String, Vec<u8>), CryptoError>> {
        let mut last = None;
        for (label, key) in self.store.keys.iter() {
            match open_asymmetric_chunk(chunk, key) {
                Ok(o) => return Some(Ok((label.clone(), o.chunk))),
                Err(CryptoError::Policy(_)) => return None,
                Err(e @ CryptoError::BadSignature { .. }) => last = Some(e),
                Err(e) => {
                    if last.is_none() {
                        last = Some(e);
                    }
                }
            }
        }
        // No key fits: a key for the other side, or none for this one. Only a bad signature
        // under a key that decrypted the chunk is worth reporting.
        match last {
            Some(e @ CryptoError::BadSignature { .. }) => Some(Err(e)),
            _ => None,
        }
    }

    /// Learns nonces and tokens from an opened OPN.
    fn learn(&self, st: &mut ChannelState, clear: &[u8]) {
        let Some(body_at) = opn_body_offset(clear) else {
            return;
        };
        let Some(body) = clear.get(body_at..) else {
            return;
        };
        let Ok(msg) = parse_message(&mut Reader::new(body)) else {
            return;
        };
        match msg.body {
            ServiceBody::OpenSecureChannelRequest(r) => {
                st.encrypted = match r.security_mode {
                    2 => Some(false),
                    3 => Some(true),
                    _ => None,
                };
                st.client_nonce = r.client_nonce.as_bytes().map(<[u8]>::to_vec);
            }
            ServiceBody::OpenSecureChannelResponse(r) => {
                let (Some(policy), Some(encrypted), Some(client_nonce), Some(server_nonce)) = (
                    st.policy,
                    st.encrypted,
                    st.client_nonce.as_deref(),
                    r.server_nonce.as_bytes(),
                ) else {
                    return;
                };
                let keys = ChannelKeys::derive(policy, encrypted, client_nonce, server_nonce);
                let token = r.security_token.token_id;
                if let Some(w) = &self.store.export {
                    w.write(r.security_token.channel_id, token, &keys);
                }
                st.tokens.retain(|(t, _)| *t != token);
                if st.tokens.len() >= MAX_TOKENS {
                    st.tokens.remove(0);
                }
                st.tokens.push((token, keys));
            }
            _ => {}
        }
    }
}

/// Where the body (encoding NodeId) of a clear OPN chunk starts: after the asymmetric security
/// header and the sequence header.
fn opn_body_offset(clear: &[u8]) -> Option<usize> {
    opn_header(clear)?.sequence_header_at.checked_add(8)
}

impl ChunkOpener for PassiveOpener {
    fn open(&mut self, chunk: &[u8]) -> Option<Result<Vec<u8>, (usize, &'static str)>> {
        if let Some(r) = &self.store.registry {
            if let Some(clear) = r.take(self.from_client, chunk) {
                return Some(Ok(clear));
            }
        }
        let kind = chunk.get(..3).and_then(|b| {
            let b: [u8; 3] = b.try_into().ok()?;
            MessageType::from_bytes(b)
        })?;
        match kind {
            MessageType::OpenSecureChannel => {
                let policy = policy_of(chunk)?;
                if policy == SecurityPolicy::None {
                    return None;
                }
                let opened = self.open_opn(chunk)?;
                let mut st = self.state.lock().ok()?;
                st.policy = Some(policy);
                match opened {
                    Ok((label, clear)) => {
                        st.opened_by.push(label);
                        self.learn(&mut st, &clear);
                        Some(Ok(clear))
                    }
                    Err(e) => Some(Err(error_place(&e))),
                }
            }
            MessageType::Message | MessageType::CloseSecureChannel => {
                let token = u32::from_le_bytes(chunk.get(12..16)?.try_into().ok()?);
                let st = self.state.lock().ok()?;
                let Some((_, keys)) = st.tokens.iter().find(|(t, _)| *t == token) else {
                    return self.open_from_key_log(st.policy, token, chunk);
                };
                let side = if self.from_client {
                    &keys.client
                } else {
                    &keys.server
                };
                Some(
                    open_symmetric_chunk(keys.policy, side, keys.encrypted, chunk)
                        .map(|o| o.chunk)
                        .map_err(|e| error_place(&e)),
                )
            }
            _ => None,
        }
    }
}

impl PassiveOpener {
    /// Opens a MSG/CLO chunk with the AES key and IV of a key log (no signature check: key logs
    /// have no signing keys).
    fn open_from_key_log(
        &self,
        policy: Option<SecurityPolicy>,
        token: u32,
        chunk: &[u8],
    ) -> Option<Result<Vec<u8>, (usize, &'static str)>> {
        let channel = u32::from_le_bytes(chunk.get(8..12)?.try_into().ok()?);
        let t = self.store.key_log.get(&(channel, token))?;
        if chunk.len().checked_sub(16)?.checked_rem(16) != Some(0) {
            // Not whole AES blocks: a Sign-only chunk, readable as it is.
            return None;
        }
        let side = if self.from_client {
            &t.client
        } else {
            &t.server
        };
        let policy = policy.unwrap_or(SecurityPolicy::Basic256Sha256);
        Some(
            open_symmetric_chunk_unverified(policy, &side.key, &side.iv, side.signature_len, chunk)
                .map(|o| o.chunk)
                .map_err(|e| error_place(&e)),
        )
    }
}

/// The policy named in an OPN chunk's security header.
fn policy_of(chunk: &[u8]) -> Option<SecurityPolicy> {
    opn_header(chunk)?.policy
}

/// Offset and field name of a failure, for the codec's decode error.
fn error_place(e: &CryptoError) -> (usize, &'static str) {
    match e {
        CryptoError::BadSignature { offset } => (*offset, "Signature (does not verify)"),
        CryptoError::Decrypt { offset } => (*offset, "encrypted part (does not decrypt)"),
        CryptoError::Malformed { offset, .. } => (*offset, "padding"),
        _ => (0, "security"),
    }
}
