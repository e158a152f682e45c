//! `uatap proxy --mitm`: a trusted man-in-the-middle for secured channels, sans-IO.
//!
//! Toward the client uatap is the server, toward the server it is the client: each leg has its
//! own SecureChannel (the policy and mode the client asked for), its own nonces, keys and
//! sequence numbers. Messages pass through unchanged at the message level, except what must be
//! re-done for the other leg: the certificates and signatures of CreateSession and
//! ActivateSession, a UserName token's encrypted password, and the server certificates (and
//! endpoint URLs) in GetEndpoints and CreateSession answers, so the client sees uatap's
//! certificate. Channels with security None pass byte for byte, but for those discovery
//! answers.
//!
//! Every chunk the bridge opens or seals on the client's leg is registered with its clear text
//! in a [`ClearRegistry`], which the analysis reads: it sees the plaintext of the session and
//! emits the same events as on a None channel, while the recording keeps the bytes as they
//! crossed the wire.
//!
//! Not done: a renewal from the client renews both legs at once (not each leg on its own
//! schedule); an X509 user token cannot be re-signed and is passed as it is (the server refuses
//! it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uatap_codec::reader::Reader;
use uatap_codec::secure::SequenceHeader;
use uatap_codec::services::{
    parse_message, ChannelSecurityToken, IdentityToken, Message, OpenSecureChannelResponse,
    ResponseHeader, Secret, ServiceBody, SignatureData, UserNameIdentityToken,
};
use uatap_codec::status::StatusCode;
use uatap_codec::tcp::{frame, parse_hello_message, ChunkType, Frame, MessageType};
use uatap_codec::types::{ByteString, DateTime, ExtensionObject, IntoStatic, NodeId, UaString};
use uatap_codec::{ids, Encode};
use uatap_crypto::asymmetric::{
    open_asymmetric_chunk, opn_header, rsa_decrypt, rsa_encrypt, rsa_sign, seal_asymmetric_chunk,
    AsymmetricChunk,
};
use uatap_crypto::passive::{ClearRegistry, KeyLogWriter};
use uatap_crypto::policy::AsymmetricEncryption;
use uatap_crypto::symmetric::{
    max_body_size, open_symmetric_chunk, seal_symmetric_chunk, ChannelKeys, SymmetricChunk,
};
use uatap_crypto::{Certificate, SecurityPolicy};

use crate::rewrite::{authority_of, rewrite_url};

pub use crate::pki::Identity;

/// What every connection of one MITM listener shares.
#[derive(Debug)]
pub struct MitmShared {
    /// uatap's identity.
    pub identity: Identity,
    /// The server's certificate: given (`--upstream-cert`) or learned from the first discovery
    /// answer that passes.
    pub server_cert: Mutex<Option<Certificate>>,
    /// Where clear text of the client's leg goes for the analysis.
    pub registry: Arc<ClearRegistry>,
    /// Where the client leg's symmetric keys are written (`--export-keys`), so the recording
    /// can be decrypted later (Wireshark 4.4+, `uatap analyze --keys`).
    pub key_log: Option<KeyLogWriter>,
    /// The server's last nonce per session (by AuthenticationToken): a client that reconnects
    /// activates its session again on a new connection, and uatap signs that nonce for it.
    pub sessions: Mutex<HashMap<String, Vec<u8>>>,
}

/// Sessions whose nonce is remembered.
const MAX_SESSIONS: usize = 4096;

impl MitmShared {
    /// State shared by the connections of one listener.
    pub fn new(
        identity: Identity,
        server_cert: Option<Certificate>,
        registry: Arc<ClearRegistry>,
        key_log: Option<KeyLogWriter>,
    ) -> Self {
        MitmShared {
            identity,
            server_cert: Mutex::new(server_cert),
            registry,
            key_log,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn set_server_nonce(&self, token: String, nonce: Vec<u8>) {
        if let Ok(mut m) = self.sessions.lock() {
            if m.len() >= MAX_SESSIONS && !m.contains_key(&token) {
                m.clear();
            }
            m.insert(token, nonce);
        }
    }

    fn server_nonce(&self, token: &str) -> Option<Vec<u8>> {
        self.sessions.lock().ok()?.get(token).cloned()
    }
}

/// One leg's secure channel.
#[derive(Debug)]
struct Leg {
    policy: SecurityPolicy,
    encrypted: bool,
    /// uatap is the client on this leg (the server's leg).
    we_are_client: bool,
    channel_id: u32,
    tokens: Vec<(u32, ChannelKeys)>,
    next_seq: u32,
    /// Largest chunk the peer accepts.
    chunk_size: usize,
}

impl Leg {
    fn current(&self) -> Option<&(u32, ChannelKeys)> {
        self.tokens.last()
    }

    fn keys(&self, token: u32) -> Option<&ChannelKeys> {
        self.tokens
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, k)| k)
    }

    fn add_token(&mut self, token: u32, keys: ChannelKeys) {
        self.tokens.retain(|(t, _)| *t != token);
        if self.tokens.len() >= 3 {
            self.tokens.remove(0);
        }
        self.tokens.push((token, keys));
    }

    fn next(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }
}

/// The client's OpenSecureChannel, waiting for the server's leg to open.
#[derive(Debug)]
struct PendingOpen {
    request_id: u32,
    request_handle: u32,
    client_nonce: Vec<u8>,
    client_cert: Certificate,
    policy: SecurityPolicy,
    encrypted: bool,
    our_nonce: Vec<u8>,
    renew: bool,
}

/// What ActivateSession needs from CreateSession.
#[derive(Debug, Default)]
struct SessionCtx {
    client_cert: Vec<u8>,
    client_nonce: Vec<u8>,
    /// The server's last nonce (CreateSession, then each ActivateSession).
    server_nonce: Vec<u8>,
}

/// One connection's man-in-the-middle: bytes from either side in, bytes to either side out.
#[derive(Debug)]
pub struct Bridge {
    shared: Arc<MitmShared>,
    from_client: Vec<u8>,
    from_server: Vec<u8>,
    /// Bytes to write to the client.
    pub to_client: Vec<u8>,
    /// Bytes to write to the server.
    pub to_server: Vec<u8>,
    /// What happened that a person should know (one line each).
    pub notes: Vec<String>,
    /// host:port the client dialed (from its Hello), for the endpoint URLs it is shown.
    authority: Option<String>,
    client_chunk: usize,
    server_chunk: usize,
    client_leg: Option<Leg>,
    server_leg: Option<Leg>,
    pending: Option<PendingOpen>,
    c_partial: HashMap<u32, Vec<u8>>,
    s_partial: HashMap<u32, Vec<u8>>,
    session: SessionCtx,
    /// uatap's nonce in the server leg's pending OpenSecureChannel.
    upstream_nonce: Option<Vec<u8>>,
    /// ActivateSession requests in flight: RequestId -> AuthenticationToken.
    activating: HashMap<u32, String>,
    /// The connection is broken beyond repair (a fatal protocol error): pass nothing more.
    pub failed: bool,
    /// Close both legs once what is queued is written.
    pub close: bool,
}

/// Most bytes of unfinished messages held per direction.
const MAX_PARTIAL: usize = 64 << 20;

impl Bridge {
    /// A bridge for one client connection; `listen` is the proxy's address (the authority the
    /// client is shown when its Hello does not say).
    pub fn new(shared: Arc<MitmShared>, listen: String) -> Self {
        Bridge {
            shared,
            from_client: Vec::new(),
            from_server: Vec::new(),
            to_client: Vec::new(),
            to_server: Vec::new(),
            notes: Vec::new(),
            authority: Some(listen),
            client_chunk: 8192,
            server_chunk: 8192,
            client_leg: None,
            server_leg: None,
            pending: None,
            c_partial: HashMap::new(),
            s_partial: HashMap::new(),
            session: SessionCtx::default(),
            upstream_nonce: None,
            activating: HashMap::new(),
            failed: false,
            close: false,
        }
    }

    /// Bytes the client sent.
    pub fn client_bytes(&mut self, data: &[u8]) {
        self.from_client.extend_from_slice(data);
        while let Some(chunk) = take_chunk(&mut self.from_client) {
            if let Err(e) = self.client_chunk(&chunk) {
                self.fail(e);
            }
        }
    }

    /// Bytes the server sent.
    pub fn server_bytes(&mut self, data: &[u8]) {
        self.from_server.extend_from_slice(data);
        while let Some(chunk) = take_chunk(&mut self.from_server) {
            if let Err(e) = self.server_chunk(&chunk) {
                self.fail(e);
            }
        }
    }

    fn fail(&mut self, why: String) {
        self.notes.push(format!("mitm: {why}"));
    }

    fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    fn server_cert(&self) -> Option<Certificate> {
        self.shared.server_cert.lock().ok().and_then(|c| c.clone())
    }

    fn client_chunk(&mut self, chunk: &[u8]) -> Result<(), String> {
        let kind = message_type(chunk);
        match kind {
            Some(MessageType::Hello) => {
                if let Ok(h) = parse_hello_message(&mut Reader::new(chunk)) {
                    self.client_chunk = h.receive_buffer_size as usize;
                    if let Some(url) = h.endpoint_url.as_bytes() {
                        if let Some(a) = authority_of(&String::from_utf8_lossy(url)) {
                            self.authority = Some(a);
                        }
                    }
                }
                self.to_server.extend_from_slice(chunk);
                Ok(())
            }
            Some(MessageType::OpenSecureChannel) => {
                if is_policy_none(chunk) {
                    self.to_server.extend_from_slice(chunk);
                    return Ok(());
                }
                self.client_open(chunk)
            }
            Some(MessageType::Message | MessageType::CloseSecureChannel) => {
                if self.client_leg.is_none() {
                    // Security None: byte for byte.
                    self.to_server.extend_from_slice(chunk);
                    return Ok(());
                }
                self.client_secured(chunk)
            }
            _ => {
                self.to_server.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    fn server_chunk(&mut self, chunk: &[u8]) -> Result<(), String> {
        match message_type(chunk) {
            Some(MessageType::Acknowledge) => {
                if let Some(size) = chunk.get(12..16) {
                    let size: [u8; 4] = size.try_into().unwrap_or_default();
                    self.server_chunk = u32::from_le_bytes(size) as usize;
                }
                self.to_client.extend_from_slice(chunk);
                Ok(())
            }
            Some(MessageType::OpenSecureChannel) if self.pending.is_some() => {
                self.server_open(chunk)
            }
            Some(MessageType::Message | MessageType::CloseSecureChannel)
                if self.server_leg.is_some() =>
            {
                self.server_secured(chunk)
            }
            Some(MessageType::Message) => {
                // A None channel: pass, but for the discovery answers.
                let out = self.plain_answer(chunk).unwrap_or_else(|| chunk.to_vec());
                self.to_client.extend_from_slice(&out);
                Ok(())
            }
            _ => {
                self.to_client.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    /// The client opens (or renews) a secured channel with uatap.
    fn client_open(&mut self, chunk: &[u8]) -> Result<(), String> {
        let opened = open_asymmetric_chunk(chunk, &self.identity().key).map_err(|e| {
            format!("the client's OpenSecureChannel does not open with uatap's key ({e}): the client uses another server certificate than uatap's; let it fetch the endpoints through uatap")
        })?;
        let clear = opened.chunk;
        let (seq_at, body_at) = opn_offsets(&clear).ok_or("OPN layout")?;
        let request_id = read_u32(&clear, seq_at.saturating_add(4)).unwrap_or(0);
        let msg = parse_message(&mut Reader::new(clear.get(body_at..).unwrap_or(&[])))
            .map_err(|e| format!("the client's OpenSecureChannel does not decode: {e}"))?;
        let ServiceBody::OpenSecureChannelRequest(r) = msg.body else {
            return Err("the client's OPN is not an OpenSecureChannelRequest".into());
        };
        self.shared.registry.register(true, chunk, clear.clone());
        let sender = sender_certificate(chunk).ok_or("no client certificate")?;
        let policy = opened.policy;
        let encrypted = r.security_mode == 3;
        let renew = r.request_type == 1;
        let our_nonce = nonce(policy.nonce_len());
        self.pending = Some(PendingOpen {
            request_id,
            request_handle: r.request_header.request_handle,
            client_nonce: r.client_nonce.as_bytes().unwrap_or(&[]).to_vec(),
            client_cert: sender,
            policy,
            encrypted,
            our_nonce,
            renew,
        });
        // The server's leg: the same policy and mode, uatap's certificate.
        let server_cert = self.server_cert().ok_or(
            "the server's certificate is not known yet: let the client fetch the endpoints through uatap first, or give --upstream-cert",
        )?;
        let upstream_nonce = nonce(policy.nonce_len());
        let channel_id = self.server_leg.as_ref().map_or(0, |l| l.channel_id);
        let body = encode(
            ids::service::OPEN_SECURE_CHANNEL_REQUEST,
            ServiceBody::OpenSecureChannelRequest(
                uatap_codec::services::OpenSecureChannelRequest {
                    request_header: r.request_header.clone(),
                    client_protocol_version: 0,
                    request_type: r.request_type,
                    security_mode: r.security_mode,
                    client_nonce: ByteString::from(&upstream_nonce[..]),
                    requested_lifetime: r.requested_lifetime,
                },
            ),
        );
        let seq = match &mut self.server_leg {
            Some(l) => l.next(),
            None => 1,
        };
        let sealed = seal_asymmetric_chunk(
            &AsymmetricChunk {
                policy,
                secure_channel_id: channel_id,
                sequence_header: SequenceHeader {
                    sequence_number: seq,
                    request_id,
                },
                body: &body,
            },
            &self.identity().key,
            &self.identity().cert,
            &server_cert,
        )
        .map_err(|e| format!("sealing the server leg's OpenSecureChannel: {e}"))?;
        self.to_server.extend_from_slice(&sealed);
        self.upstream_nonce = Some(upstream_nonce);
        Ok(())
    }

    /// The server answered the server leg's OpenSecureChannel: open the client's leg.
    fn server_open(&mut self, chunk: &[u8]) -> Result<(), String> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let opened = open_asymmetric_chunk(chunk, &self.identity().key).map_err(|e| {
            format!("the server's OpenSecureChannel answer does not open with uatap's key: {e}")
        })?;
        let clear = opened.chunk;
        let (_, body_at) = opn_offsets(&clear).ok_or("OPN layout")?;
        let msg = parse_message(&mut Reader::new(clear.get(body_at..).unwrap_or(&[])))
            .map_err(|e| format!("the server's OpenSecureChannel answer does not decode: {e}"))?;
        let upstream_nonce = self.upstream_nonce.take().unwrap_or_default();
        let (status, answer) = match msg.body {
            ServiceBody::OpenSecureChannelResponse(r) => {
                let keys = ChannelKeys::derive(
                    p.policy,
                    p.encrypted,
                    &upstream_nonce,
                    r.server_nonce.as_bytes().unwrap_or(&[]),
                );
                let leg = self.server_leg.get_or_insert(Leg {
                    policy: p.policy,
                    encrypted: p.encrypted,
                    we_are_client: true,
                    channel_id: r.security_token.channel_id,
                    tokens: Vec::new(),
                    next_seq: 2,
                    chunk_size: self.server_chunk,
                });
                leg.channel_id = r.security_token.channel_id;
                leg.add_token(r.security_token.token_id, keys);
                (StatusCode::GOOD, Some(r.security_token))
            }
            ServiceBody::ServiceFault(f) => (f.response_header.service_result, None),
            _ => (StatusCode(0x8002_0000), None),
        };
        let now = DateTime::from_unix_micros(crate::hub::now().unix_micros);
        let header = ResponseHeader {
            timestamp: now,
            request_handle: p.request_handle,
            service_result: status,
            service_diagnostics: Default::default(),
            string_table: None,
            additional_header: ExtensionObject::default(),
        };
        let body = match &answer {
            Some(t) => {
                let token_id = self
                    .client_leg
                    .as_ref()
                    .and_then(|l| l.current().map(|(t, _)| t.wrapping_add(1)))
                    .unwrap_or(1);
                let token = ChannelSecurityToken {
                    channel_id: t.channel_id,
                    token_id,
                    created_at: now,
                    revised_lifetime: t.revised_lifetime,
                };
                let keys =
                    ChannelKeys::derive(p.policy, p.encrypted, &p.client_nonce, &p.our_nonce);
                let leg = self.client_leg.get_or_insert(Leg {
                    policy: p.policy,
                    encrypted: p.encrypted,
                    we_are_client: false,
                    channel_id: t.channel_id,
                    tokens: Vec::new(),
                    next_seq: 1,
                    chunk_size: self.client_chunk,
                });
                leg.channel_id = t.channel_id;
                if let Some(w) = &self.shared.key_log {
                    w.write(t.channel_id, token_id, &keys);
                }
                leg.add_token(token_id, keys);
                encode(
                    ids::service::OPEN_SECURE_CHANNEL_RESPONSE,
                    ServiceBody::OpenSecureChannelResponse(OpenSecureChannelResponse {
                        response_header: header,
                        server_protocol_version: 0,
                        security_token: token,
                        server_nonce: ByteString::from(&p.our_nonce[..]),
                    }),
                )
            }
            None => {
                // Passed on as an ERR and a close, which every client stack reads (asyncua's
                // cannot read a ServiceFault in an OPN).
                self.notes.push(format!(
                    "mitm: the server refused uatap's OpenSecureChannel with {status}: passed on to the client as an ERR (the server must trust uatap's certificate)"
                ));
                let reason =
                    format!("the server refused uatap's OpenSecureChannel (MITM mode): {status}");
                let mut err = b"ERRF\0\0\0\0".to_vec();
                err.extend_from_slice(&status.0.to_le_bytes());
                err.extend_from_slice(&(reason.len() as i32).to_le_bytes());
                err.extend_from_slice(reason.as_bytes());
                fix_size(&mut err);
                self.to_client.extend_from_slice(&err);
                self.close = true;
                return Ok(());
            }
        };
        let channel_id = self.client_leg.as_ref().map_or(0, |l| l.channel_id);
        let seq = match &mut self.client_leg {
            Some(l) => l.next(),
            None => 1,
        };
        let sealed = seal_asymmetric_chunk(
            &AsymmetricChunk {
                policy: p.policy,
                secure_channel_id: channel_id,
                sequence_header: SequenceHeader {
                    sequence_number: seq,
                    request_id: p.request_id,
                },
                body: &body,
            },
            &self.identity().key,
            &self.identity().cert,
            &p.client_cert,
        )
        .map_err(|e| format!("sealing the client leg's OpenSecureChannel answer: {e}"))?;
        let mut registered = clear_opn_of(&sealed);
        registered.extend_from_slice(&seq.to_le_bytes());
        registered.extend_from_slice(&p.request_id.to_le_bytes());
        registered.extend_from_slice(&body);
        fix_size(&mut registered);
        self.shared.registry.register(false, &sealed, registered);
        self.to_client.extend_from_slice(&sealed);
        let _ = p.renew;
        Ok(())
    }

    /// A MSG/CLO chunk from the client on a secured channel.
    fn client_secured(&mut self, chunk: &[u8]) -> Result<(), String> {
        let leg = self.client_leg.as_ref().ok_or("no channel")?;
        let token = read_u32(chunk, 12).unwrap_or(0);
        let keys = leg.keys(token).ok_or("a chunk under an unknown token")?;
        let opened = open_symmetric_chunk(leg.policy, &keys.client, leg.encrypted, chunk)
            .map_err(|e| format!("a chunk from the client does not open: {e}"))?;
        self.shared
            .registry
            .register(true, chunk, opened.chunk.clone());
        let Some((request_id, body, last)) = collect(&mut self.c_partial, &opened.chunk) else {
            return Err("a chunk from the client is too short".into());
        };
        if !last {
            return Ok(());
        }
        let kind = message_type(chunk).unwrap_or(MessageType::Message);
        let body = self.rewrite_request(request_id, body);
        self.seal_to(false, kind, request_id, &body)
    }

    /// A MSG/CLO chunk from the server on a secured channel.
    fn server_secured(&mut self, chunk: &[u8]) -> Result<(), String> {
        let leg = self.server_leg.as_ref().ok_or("no channel")?;
        let token = read_u32(chunk, 12).unwrap_or(0);
        let keys = leg.keys(token).ok_or("a chunk under an unknown token")?;
        let opened = open_symmetric_chunk(leg.policy, &keys.server, leg.encrypted, chunk)
            .map_err(|e| format!("a chunk from the server does not open: {e}"))?;
        let Some((request_id, body, last)) = collect(&mut self.s_partial, &opened.chunk) else {
            return Err("a chunk from the server is too short".into());
        };
        if !last {
            return Ok(());
        }
        let kind = message_type(chunk).unwrap_or(MessageType::Message);
        let body = self.rewrite_response(request_id, body);
        self.seal_to(true, kind, request_id, &body)
    }

    /// Seals a whole message for one leg (`to_client`), in chunks the peer accepts.
    fn seal_to(
        &mut self,
        to_client: bool,
        kind: MessageType,
        request_id: u32,
        body: &[u8],
    ) -> Result<(), String> {
        let registry = self.shared.registry.clone();
        let leg = if to_client {
            self.client_leg.as_mut()
        } else {
            self.server_leg.as_mut()
        }
        .ok_or("no channel")?;
        let (token, keys) = leg.current().cloned().ok_or("no token")?;
        let room = max_body_size(leg.policy, leg.encrypted, leg.chunk_size.max(8192)).max(1);
        let pieces: Vec<&[u8]> = if body.is_empty() {
            vec![body]
        } else {
            body.chunks(room).collect()
        };
        let n = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            let seq = leg.next();
            let c = SymmetricChunk {
                message_type: kind,
                chunk_type: if i.saturating_add(1) == n {
                    ChunkType::Final
                } else {
                    ChunkType::Intermediate
                },
                secure_channel_id: leg.channel_id,
                token_id: token,
                sequence_header: SequenceHeader {
                    sequence_number: seq,
                    request_id,
                },
                body: piece,
            };
            let side = if leg.we_are_client {
                &keys.client
            } else {
                &keys.server
            };
            let sealed = seal_symmetric_chunk(leg.policy, side, leg.encrypted, &c)
                .map_err(|e| format!("sealing: {e}"))?;
            let out = if to_client {
                let mut clear = Vec::with_capacity(piece.len().saturating_add(24));
                clear.extend_from_slice(sealed.get(..16).unwrap_or(&[]));
                clear.extend_from_slice(&seq.to_le_bytes());
                clear.extend_from_slice(&request_id.to_le_bytes());
                clear.extend_from_slice(piece);
                fix_size(&mut clear);
                registry.register(false, &sealed, clear);
                &mut self.to_client
            } else {
                &mut self.to_server
            };
            out.extend_from_slice(&sealed);
        }
        Ok(())
    }

    /// What must change in a request for the server's leg.
    fn rewrite_request(&mut self, request_id: u32, body: Vec<u8>) -> Vec<u8> {
        let Ok(msg) = parse_message(&mut Reader::new(&body)) else {
            return body;
        };
        let server_cert = self.server_cert();
        let shared = self.shared.clone();
        let id = &shared.identity;
        let policy = self
            .server_leg
            .as_ref()
            .map_or(SecurityPolicy::None, |l| l.policy);
        match msg.body {
            ServiceBody::CreateSessionRequest(mut r) => {
                self.session.client_cert = r.client_certificate.as_bytes().unwrap_or(&[]).to_vec();
                self.session.client_nonce = r.client_nonce.0.as_bytes().unwrap_or(&[]).to_vec();
                r.client_certificate = ByteString::from(id.cert.der());
                // Servers check the ApplicationUri against the certificate's: uatap's now.
                r.client_description.application_uri = UaString::from(id.application_uri.clone());
                encode(
                    ids::service::CREATE_SESSION_REQUEST,
                    ServiceBody::CreateSessionRequest(r),
                )
            }
            ServiceBody::ActivateSessionRequest(mut r) => {
                let Some(server_cert) = server_cert else {
                    return body;
                };
                // uatap proves to the server it holds the key of the certificate it gave.
                if let Some(alg) = policy.asymmetric_signature() {
                    let token = r.request_header.authentication_token.to_string();
                    let nonce = shared
                        .server_nonce(&token)
                        .unwrap_or_else(|| self.session.server_nonce.clone());
                    self.activating.insert(request_id, token);
                    let mut signed = server_cert.der().to_vec();
                    signed.extend_from_slice(&nonce);
                    if let Ok(sig) = rsa_sign(alg, &id.key, &signed) {
                        r.client_signature = SignatureData {
                            algorithm: UaString::from(alg.uri()),
                            signature: ByteString::from(sig),
                        };
                    }
                }
                let token = match r.identity_token() {
                    Ok(IdentityToken::UserName(t)) => self.reencrypt_password(&t, &server_cert),
                    Ok(IdentityToken::X509(_)) => {
                        self.notes.push("mitm: an X509 user token cannot be re-signed without the user's private key; passed as it is (the server will refuse it)".into());
                        None
                    }
                    _ => None,
                };
                if let Some(token) = token {
                    r.user_identity_token = token;
                }
                encode(
                    ids::service::ACTIVATE_SESSION_REQUEST,
                    ServiceBody::ActivateSessionRequest(r),
                )
            }
            _ => body,
        }
    }

    /// A UserName token's password, decrypted with uatap's key and encrypted again to the
    /// server's certificate with the same algorithm. The password itself is never kept or shown.
    fn reencrypt_password(
        &mut self,
        t: &UserNameIdentityToken<'_>,
        server_cert: &Certificate,
    ) -> Option<ExtensionObject<'static>> {
        let uri = t.encryption_algorithm.as_bytes().unwrap_or(&[]);
        if uri.is_empty() {
            return None;
        }
        let alg = [
            AsymmetricEncryption::Pkcs1v15,
            AsymmetricEncryption::OaepSha1,
            AsymmetricEncryption::OaepSha256,
        ]
        .into_iter()
        .find(|a| a.uri().as_bytes() == uri)?;
        let secret = t.password.0.as_bytes()?;
        let plain = match rsa_decrypt(alg, &self.identity().key, secret, 0) {
            Ok(p) => p,
            Err(e) => {
                self.notes.push(format!("mitm: the user token's password does not decrypt with uatap's key ({e}); passed as it is"));
                return None;
            }
        };
        let again = rsa_encrypt(alg, server_cert, &plain).ok()?;
        let token = UserNameIdentityToken {
            policy_id: t.policy_id.clone(),
            user_name: t.user_name.clone(),
            password: Secret(ByteString::from(again)),
            encryption_algorithm: t.encryption_algorithm.clone(),
        };
        let mut body = Vec::with_capacity(token.encoded_len());
        token.encode(&mut body);
        let token = ExtensionObject::binary(
            NodeId::numeric(0, ids::structure::USER_NAME_IDENTITY_TOKEN),
            body,
        );
        Some(token.into_static())
    }

    /// What must change in a response for the client's leg.
    fn rewrite_response(&mut self, request_id: u32, body: Vec<u8>) -> Vec<u8> {
        let Ok(msg) = parse_message(&mut Reader::new(&body)) else {
            return body;
        };
        let shared = self.shared.clone();
        let id = &shared.identity;
        let authority = self.authority.clone();
        let policy = self
            .client_leg
            .as_ref()
            .map_or(SecurityPolicy::None, |l| l.policy);
        match msg.body {
            ServiceBody::GetEndpointsResponse(mut r) => {
                self.learn_server_cert(r.endpoints.iter().flatten());
                for ep in r.endpoints.iter_mut().flatten() {
                    swap_endpoint(ep, id.cert.der(), authority.as_deref());
                }
                encode(
                    ids::service::GET_ENDPOINTS_RESPONSE,
                    ServiceBody::GetEndpointsResponse(r),
                )
            }
            ServiceBody::CreateSessionResponse(mut r) => {
                self.session.server_nonce = r.server_nonce.0.as_bytes().unwrap_or(&[]).to_vec();
                shared.set_server_nonce(
                    r.authentication_token.to_string(),
                    self.session.server_nonce.clone(),
                );
                r.server_certificate = ByteString::from(id.cert.der());
                for ep in r.server_endpoints.iter_mut().flatten() {
                    swap_endpoint(ep, id.cert.der(), authority.as_deref());
                }
                if let Some(alg) = policy.asymmetric_signature() {
                    let mut signed = self.session.client_cert.clone();
                    signed.extend_from_slice(&self.session.client_nonce);
                    if let Ok(sig) = rsa_sign(alg, &id.key, &signed) {
                        r.server_signature = SignatureData {
                            algorithm: UaString::from(alg.uri()),
                            signature: ByteString::from(sig),
                        };
                    }
                }
                encode(
                    ids::service::CREATE_SESSION_RESPONSE,
                    ServiceBody::CreateSessionResponse(r),
                )
            }
            ServiceBody::ActivateSessionResponse(r) => {
                if let Some(n) = r.server_nonce.0.as_bytes() {
                    self.session.server_nonce = n.to_vec();
                    if let Some(token) = self.activating.remove(&request_id) {
                        shared.set_server_nonce(token, n.to_vec());
                    }
                }
                body
            }
            _ => body,
        }
    }

    /// Remembers the server certificate a discovery answer carries.
    fn learn_server_cert<'e>(
        &self,
        endpoints: impl Iterator<Item = &'e uatap_codec::services::EndpointDescription<'e>>,
    ) {
        for ep in endpoints {
            let Some(der) = ep.server_certificate.as_bytes().filter(|d| !d.is_empty()) else {
                continue;
            };
            if der == self.identity().cert.der() {
                continue;
            }
            if let (Ok(c), Ok(mut slot)) =
                (Certificate::from_der(der), self.shared.server_cert.lock())
            {
                *slot = Some(c);
                return;
            }
        }
    }

    /// A discovery answer on a None channel (one chunk): certificates and URLs swapped.
    fn plain_answer(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        if chunk.get(3) != Some(&b'F') {
            return None;
        }
        let body = chunk.get(24..)?;
        let msg = parse_message(&mut Reader::new(body)).ok()?;
        let ServiceBody::GetEndpointsResponse(mut r) = msg.body else {
            return None;
        };
        self.learn_server_cert(r.endpoints.iter().flatten());
        let id = self.identity();
        let authority = self.authority.clone();
        for ep in r.endpoints.iter_mut().flatten() {
            swap_endpoint(ep, id.cert.der(), authority.as_deref());
        }
        let new_body = encode(
            ids::service::GET_ENDPOINTS_RESPONSE,
            ServiceBody::GetEndpointsResponse(r),
        );
        let mut out = chunk.get(..24)?.to_vec();
        out.extend_from_slice(&new_body);
        fix_size(&mut out);
        self.notes
            .push("mitm: endpoints answered with uatap's certificate and address".into());
        Some(out)
    }
}

/// Gives an endpoint uatap's certificate and the address the client dialed.
fn swap_endpoint(
    ep: &mut uatap_codec::services::EndpointDescription<'_>,
    cert: &[u8],
    authority: Option<&str>,
) {
    if ep
        .server_certificate
        .as_bytes()
        .is_some_and(|c| !c.is_empty())
    {
        ep.server_certificate = ByteString::from(cert.to_vec());
        // Clients check the server's ApplicationUri against its certificate's.
        if let Some(uri) = application_uri(cert) {
            ep.server.application_uri = UaString::from(uri);
        }
    }
    if let Some(a) = authority {
        if let Some(url) = ep.endpoint_url.as_bytes() {
            if let Some(new) = rewrite_url(&String::from_utf8_lossy(url), a) {
                ep.endpoint_url = UaString::from(new);
            }
        }
    }
}

/// The ApplicationUri in a certificate's SubjectAltName.
fn application_uri(cert: &[u8]) -> Option<String> {
    uatap_analysis::cert::summarize_certificate(cert).application_uri
}

/// Adds the body of a clear chunk to its message; the request id, the whole body and whether
/// it is complete.
fn collect(partials: &mut HashMap<u32, Vec<u8>>, clear: &[u8]) -> Option<(u32, Vec<u8>, bool)> {
    let chunk_type = *clear.get(3)?;
    let request_id = read_u32(clear, 20)?;
    let piece = clear.get(24..)?;
    match chunk_type {
        b'C' => {
            let total: usize = partials.values().map(Vec::len).sum();
            if total.saturating_add(piece.len()) > MAX_PARTIAL {
                partials.clear();
                return None;
            }
            partials
                .entry(request_id)
                .or_default()
                .extend_from_slice(piece);
            Some((request_id, Vec::new(), false))
        }
        b'A' => {
            partials.remove(&request_id);
            Some((request_id, Vec::new(), false))
        }
        _ => {
            let mut body = partials.remove(&request_id).unwrap_or_default();
            body.extend_from_slice(piece);
            Some((request_id, body, true))
        }
    }
}

/// Takes one whole chunk off the front of a buffer.
fn take_chunk(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    match frame(buf, Some(64 << 20)) {
        Ok(Frame::Complete { header }) => {
            let n = header.message_size as usize;
            let chunk: Vec<u8> = buf.drain(..n.min(buf.len())).collect();
            Some(chunk)
        }
        Ok(Frame::Incomplete { .. }) => None,
        Err(_) => {
            // Not UA TCP: pass what is there as one piece (the peer will complain).
            Some(std::mem::take(buf))
        }
    }
}

fn message_type(chunk: &[u8]) -> Option<MessageType> {
    let b: [u8; 3] = chunk.get(..3)?.try_into().ok()?;
    MessageType::from_bytes(b)
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Sets MessageSize to the buffer's length.
fn fix_size(chunk: &mut [u8]) {
    let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX).to_le_bytes();
    if let Some(s) = chunk.get_mut(4..8) {
        s.copy_from_slice(&n);
    }
}

fn is_policy_none(chunk: &[u8]) -> bool {
    opn_header(chunk).is_none_or(|h| h.policy_none)
}

fn sender_certificate(chunk: &[u8]) -> Option<Certificate> {
    Certificate::from_der(&opn_header(chunk)?.sender_certificate?).ok()
}

/// Offsets of the sequence header and of the body in a clear OPN chunk.
fn opn_offsets(clear: &[u8]) -> Option<(usize, usize)> {
    let seq = opn_header(clear)?.sequence_header_at;
    Some((seq, seq.checked_add(8)?))
}

/// The clear header part (message header, channel, security header) of a sealed OPN chunk.
fn clear_opn_of(sealed: &[u8]) -> Vec<u8> {
    let end = opn_header(sealed).map_or(0, |h| h.sequence_header_at);
    sealed.get(..end).unwrap_or(&[]).to_vec()
}

/// Random bytes.
fn nonce(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut v);
    v
}

/// A message body: encoding NodeId, then the structure.
fn encode(type_id: u32, body: ServiceBody<'_>) -> Vec<u8> {
    let m = Message {
        type_id: NodeId::numeric(0, type_id),
        body,
    };
    let mut out = Vec::with_capacity(m.encoded_len());
    m.encode(&mut out);
    out
}
