//! `uatap probe opc.tcp://host:port`: the endpoint doctor. uatap acts as a client step by step
//! (DNS, TCP, HEL/ACK, OpenSecureChannel None, GetEndpoints, an anonymous session where the
//! server allows it) and then, for every secured endpoint the server offers, opens a channel
//! of its own with that policy and mode, signed with uatap's application certificate
//! ([`crate::pki`]) and encrypted to the endpoint's certificate, and (unless told not to) a
//! session over it, anonymous or with `--user`.
//!
//! Every byte uatap sends and receives goes through the same analysis as the proxy's, so the
//! steps come out as the usual events (`hello`, `secure_channel`, `session`, `reject`...), plus
//! one `probe_endpoint` per endpoint and a final `probe_summary`. The analysis holds the
//! probe's private key and the nonces of the probe's own OPN requests, so it reads what the
//! server answers on the secured channels (the exact status of a refusal included).
//!
//! Passwords, keys and nonces go into the chunks and nowhere else: no event, note or error
//! carries them.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uatap_analysis::cert::{san_hosts, summarize_certificate};
use uatap_analysis::payload::{ProbeEndpointInfo, ProbeSummaryInfo, Status};
use uatap_analysis::{Analyzer, CloseReason, ClosedBy, Connection, Direction, Event, EventKind};
use uatap_codec::reader::Reader;
use uatap_codec::secure::{
    parse_chunk, AsymmetricSecurityHeader, Chunk, Protection, SecurityHeader, SequenceHeader,
};
use uatap_codec::services::{parse_message, Message, ServiceBody};
use uatap_codec::services::{
    ActivateSessionRequest, CloseSessionRequest, CreateSessionRequest, Secret,
    UserNameIdentityToken,
};
use uatap_codec::services::{ApplicationDescription, EndpointDescription, GetEndpointsRequest};
use uatap_codec::services::{CloseSecureChannelRequest, OpenSecureChannelRequest};
use uatap_codec::services::{RequestHeader, SignatureData};
use uatap_codec::tcp::{
    frame, parse_tcp_message, ChunkType, Frame, HelloMessage, MessageHeader, MessageType,
    TcpMessage,
};
use uatap_codec::types::{ByteString, DateTime, ExtensionObject, LocalizedText, NodeId, UaString};
use uatap_codec::{ids, Encode};
use uatap_crypto::asymmetric::{
    encrypt_user_secret, open_asymmetric_chunk, rsa_sign, rsa_verify, seal_asymmetric_chunk,
    AsymmetricChunk,
};
use uatap_crypto::passive::KeyStore;
use uatap_crypto::symmetric::{
    max_body_size, open_symmetric_chunk, seal_symmetric_chunk, SymmetricChunk,
};
use uatap_crypto::{Certificate, ChannelKeys, PrivateKey, SecurityPolicy};

use crate::hub::now;
use crate::pki::Identity;
use crate::upstream::Upstream;

/// A password: kept for the one UserNameIdentityToken it goes into, never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps the password read from the environment or the prompt.
    pub fn new(p: String) -> Self {
        Password(p)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The user a session logs in as (`--user`).
#[derive(Debug, Clone)]
pub struct UserLogin {
    /// The user name (shown in events).
    pub user: String,
    /// The password (never shown).
    pub password: Password,
}

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The server.
    pub upstream: Upstream,
    /// Per step.
    pub timeout: Duration,
    /// uatap's application instance certificate and key; `None`: secured endpoints are
    /// described but not tried.
    pub identity: Option<Identity>,
    /// Open a session over each secured channel uatap opens (anonymous, or `user`).
    pub session: bool,
    /// Log in with this user instead of anonymously.
    pub user: Option<UserLogin>,
}

/// What the probe found, for the exit code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// TCP and HEL/ACK worked.
    pub reachable: bool,
    /// Endpoints uatap could use.
    pub usable: u64,
    /// Secured endpoints uatap could use.
    pub usable_secure: u64,
}

/// A step failed: why, for the person (the events already say it in detail).
#[derive(Debug)]
struct Failed(String);

/// The secured channel a [`Client`] has opened: the keys both sides derived.
struct Secured {
    keys: ChannelKeys,
    /// Largest chunk the server receives (from its ACK).
    chunk_size: usize,
}

/// The client side of one connection: builds the chunks, numbers them, seals them once a
/// secured channel is open.
struct Client {
    channel_id: u32,
    token_id: u32,
    sequence_number: u32,
    request_id: u32,
    endpoint_url: String,
    secured: Option<Secured>,
}

const POLICY_NONE: &str = "http://opcfoundation.org/UA/SecurityPolicy#None";

fn request_header(handle: u32, auth: NodeId<'_>) -> RequestHeader<'_> {
    let t = now();
    RequestHeader {
        authentication_token: auth,
        timestamp: DateTime::from_unix_micros(t.unix_micros),
        request_handle: handle,
        return_diagnostics: 0,
        audit_entry_id: UaString::null(),
        timeout_hint: 10_000,
        additional_header: ExtensionObject::default(),
    }
}

/// What a CreateSession carries besides the URL.
struct SessionRequest<'a> {
    application_uri: &'a str,
    client_nonce: &'a [u8],
    client_certificate: Option<&'a [u8]>,
}

impl Client {
    fn new(endpoint_url: String) -> Self {
        Client {
            channel_id: 0,
            token_id: 0,
            sequence_number: 0,
            request_id: 0,
            endpoint_url,
            secured: None,
        }
    }

    fn hello(&self) -> Vec<u8> {
        TcpMessage::Hello(HelloMessage {
            protocol_version: 0,
            receive_buffer_size: 65_536,
            send_buffer_size: 65_536,
            max_message_size: 16 << 20,
            max_chunk_count: 0,
            endpoint_url: UaString::from(self.endpoint_url.as_str()),
        })
        .to_vec()
    }

    fn next(&mut self) -> SequenceHeader {
        self.sequence_number = self.sequence_number.wrapping_add(1);
        self.request_id = self.request_id.wrapping_add(1);
        SequenceHeader {
            sequence_number: self.sequence_number,
            request_id: self.request_id,
        }
    }

    fn chunk(
        &mut self,
        message_type: MessageType,
        body: ServiceBody<'_>,
        type_id: u32,
    ) -> Result<Vec<u8>, Failed> {
        let body = Message {
            type_id: NodeId::numeric(0, type_id),
            body,
        }
        .to_vec();
        if let Some(sec) = &self.secured {
            let keys = &sec.keys;
            if body.len() > max_body_size(keys.policy, keys.encrypted, sec.chunk_size) {
                return Err(Failed(format!(
                    "a {}-byte request does not fit the server's {}-byte chunks",
                    body.len(),
                    sec.chunk_size
                )));
            }
            let (policy, encrypted) = (keys.policy, keys.encrypted);
            let sequence_header = self.next();
            let keys = self.secured.as_ref().map(|s| &s.keys.client);
            let Some(keys) = keys else {
                return Err(Failed("no channel keys".into()));
            };
            return seal_symmetric_chunk(
                policy,
                keys,
                encrypted,
                &SymmetricChunk {
                    message_type,
                    chunk_type: ChunkType::Final,
                    secure_channel_id: self.channel_id,
                    token_id: self.token_id,
                    sequence_header,
                    body: &body,
                },
            )
            .map_err(|e| Failed(format!("securing a request: {e}")));
        }
        let security_header = match message_type {
            MessageType::OpenSecureChannel => {
                SecurityHeader::Asymmetric(AsymmetricSecurityHeader {
                    security_policy_uri: UaString::from(POLICY_NONE),
                    sender_certificate: ByteString::null(),
                    receiver_certificate_thumbprint: ByteString::null(),
                })
            }
            _ => SecurityHeader::Symmetric {
                token_id: self.token_id,
            },
        };
        Ok(Chunk {
            header: MessageHeader {
                message_type,
                chunk_type: ChunkType::Final,
                message_size: 0,
            },
            secure_channel_id: self.channel_id,
            security_header,
            sequence_header: Some(self.next()),
            body: &body,
            signature: &[],
            encrypted: false,
        }
        .to_vec())
    }

    fn open_request(&self, mode: i32, client_nonce: Option<&[u8]>) -> Vec<u8> {
        let handle = self.request_id.wrapping_add(1);
        let req = OpenSecureChannelRequest {
            request_header: request_header(handle, NodeId::numeric(0, 0)),
            client_protocol_version: 0,
            request_type: 0,
            security_mode: mode,
            client_nonce: client_nonce.map_or_else(ByteString::null, ByteString::from),
            requested_lifetime: 600_000,
        };
        Message {
            type_id: NodeId::numeric(0, ids::service::OPEN_SECURE_CHANNEL_REQUEST),
            body: ServiceBody::OpenSecureChannelRequest(req),
        }
        .to_vec()
    }

    fn open(&mut self) -> Result<Vec<u8>, Failed> {
        let handle = self.request_id.wrapping_add(1);
        let req = OpenSecureChannelRequest {
            request_header: request_header(handle, NodeId::numeric(0, 0)),
            client_protocol_version: 0,
            request_type: 0,
            security_mode: 1,
            client_nonce: ByteString::null(),
            requested_lifetime: 600_000,
        };
        self.chunk(
            MessageType::OpenSecureChannel,
            ServiceBody::OpenSecureChannelRequest(req),
            ids::service::OPEN_SECURE_CHANNEL_REQUEST,
        )
    }

    /// An OPN Issue with a secured policy: signed with uatap's key, encrypted to the server.
    fn open_secured(
        &mut self,
        policy: SecurityPolicy,
        mode: i32,
        client_nonce: &[u8],
        me: &Identity,
        server: &Certificate,
    ) -> Result<Vec<u8>, Failed> {
        let body = self.open_request(mode, Some(client_nonce));
        let sequence_header = self.next();
        seal_asymmetric_chunk(
            &AsymmetricChunk {
                policy,
                secure_channel_id: 0,
                sequence_header,
                body: &body,
            },
            &me.key,
            &me.cert,
            server,
        )
        .map_err(|e| Failed(format!("securing the OpenSecureChannel request: {e}")))
    }

    fn get_endpoints(&mut self) -> Result<Vec<u8>, Failed> {
        let handle = self.request_id.wrapping_add(1);
        let url = self.endpoint_url.clone();
        let req = GetEndpointsRequest {
            request_header: request_header(handle, NodeId::numeric(0, 0)),
            endpoint_url: UaString::from(url.as_str()),
            locale_ids: None,
            profile_uris: None,
        };
        self.chunk(
            MessageType::Message,
            ServiceBody::GetEndpointsRequest(req),
            ids::service::GET_ENDPOINTS_REQUEST,
        )
    }

    fn create_session(&mut self, s: &SessionRequest<'_>) -> Result<Vec<u8>, Failed> {
        let handle = self.request_id.wrapping_add(1);
        let url = self.endpoint_url.clone();
        let req = CreateSessionRequest {
            request_header: request_header(handle, NodeId::numeric(0, 0)),
            client_description: ApplicationDescription {
                application_uri: UaString::from(s.application_uri),
                product_uri: UaString::from("urn:uatap"),
                application_name: LocalizedText::new("uatap probe"),
                application_type: 1,
                gateway_server_uri: UaString::null(),
                discovery_profile_uri: UaString::null(),
                discovery_urls: None,
            },
            server_uri: UaString::null(),
            endpoint_url: UaString::from(url.as_str()),
            session_name: UaString::from("uatap probe"),
            // Servers refuse a nonce they have seen before (node-opcua: Bad_NonceInvalid).
            client_nonce: Secret(ByteString::from(s.client_nonce)),
            client_certificate: s
                .client_certificate
                .map_or_else(ByteString::null, ByteString::from),
            requested_session_timeout: 60_000.0,
            max_response_message_size: 16 << 20,
        };
        self.chunk(
            MessageType::Message,
            ServiceBody::CreateSessionRequest(req),
            ids::service::CREATE_SESSION_REQUEST,
        )
    }

    fn activate_session(
        &mut self,
        auth: &[u8],
        client_signature: SignatureData<'_>,
        token: ExtensionObject<'_>,
    ) -> Result<Vec<u8>, Failed> {
        let handle = self.request_id.wrapping_add(1);
        let auth = decode_node_id(auth);
        let req = ActivateSessionRequest {
            request_header: request_header(handle, auth),
            client_signature,
            client_software_certificates: None,
            locale_ids: None,
            user_identity_token: token,
            user_token_signature: SignatureData {
                algorithm: UaString::null(),
                signature: ByteString::null(),
            },
        };
        self.chunk(
            MessageType::Message,
            ServiceBody::ActivateSessionRequest(req),
            ids::service::ACTIVATE_SESSION_REQUEST,
        )
    }

    fn close_session(&mut self, auth: &[u8]) -> Result<Vec<u8>, Failed> {
        let handle = self.request_id.wrapping_add(1);
        let auth = decode_node_id(auth);
        let req = CloseSessionRequest {
            request_header: request_header(handle, auth),
            delete_subscriptions: true,
        };
        self.chunk(
            MessageType::Message,
            ServiceBody::CloseSessionRequest(req),
            ids::service::CLOSE_SESSION_REQUEST,
        )
    }

    fn close(&mut self) -> Result<Vec<u8>, Failed> {
        let handle = self.request_id.wrapping_add(1);
        let req = CloseSecureChannelRequest {
            request_header: request_header(handle, NodeId::numeric(0, 0)),
        };
        self.chunk(
            MessageType::CloseSecureChannel,
            ServiceBody::CloseSecureChannelRequest(req),
            ids::service::CLOSE_SECURE_CHANNEL_REQUEST,
        )
    }
}

/// An anonymous identity token for `policy_id`.
fn anonymous_token(policy_id: &str) -> ExtensionObject<'static> {
    let mut token = Vec::new();
    UaString::from(policy_id).encode(&mut token);
    ExtensionObject::binary(
        NodeId::numeric(0, ids::structure::ANONYMOUS_IDENTITY_TOKEN),
        token,
    )
}

/// `len` random bytes (nonces).
fn nonce_of(len: usize) -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut n = vec![0u8; len];
    // Without a random source, a nonce from the clock still differs from call to call.
    if ring::rand::SystemRandom::new().fill(&mut n).is_err() {
        let t = now().unix_micros.to_le_bytes();
        for (i, b) in n.iter_mut().enumerate() {
            *b = t.get(i % 8).copied().unwrap_or(0) ^ (i as u8);
        }
    }
    n
}

/// 32 random bytes for CreateSession's ClientNonce.
fn nonce() -> Vec<u8> {
    nonce_of(32)
}

/// The refusal the analysis explained on a connection, for the endpoint's line.
#[derive(Debug, Clone)]
struct SeenReject {
    cause: &'static str,
    status: Status,
    explanation: String,
    inferred: bool,
}

/// One connection to the server, tapped into the analysis.
struct Wire<'s> {
    stream: TcpStream,
    conn: Connection,
    analyzer: &'s mut Analyzer,
    buf: Vec<u8>,
    timeout: Duration,
    sink: &'s mut dyn FnMut(Event),
    /// The last `reject` the analysis emitted on this connection.
    reject: Option<SeenReject>,
}

impl Wire<'_> {
    fn drain(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            if let EventKind::Reject(r) = &e.kind {
                self.reject = Some(SeenReject {
                    cause: r.cause,
                    status: r.status.clone(),
                    explanation: r.explanation.clone(),
                    inferred: r.inferred,
                });
            }
            (self.sink)(e);
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Failed> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| Failed(format!("sending: {e}")))?;
        self.analyzer
            .handle_input(&mut self.conn, Direction::ClientToServer, bytes, now());
        self.drain();
        Ok(())
    }

    /// Reads one whole message; returns its type and its chunks.
    async fn receive(&mut self) -> Result<(MessageType, Vec<Vec<u8>>), Failed> {
        let mut chunks = Vec::new();
        loop {
            match frame(&self.buf, Some(16 << 20)) {
                Ok(Frame::Complete { header }) => {
                    let size = (header.message_size as usize).min(self.buf.len());
                    let chunk: Vec<u8> = self.buf.drain(..size).collect();
                    let last = header.chunk_type != ChunkType::Intermediate
                        || !header.message_type.is_secure_conversation();
                    chunks.push(chunk);
                    if last {
                        return Ok((header.message_type, chunks));
                    }
                }
                Ok(Frame::Incomplete { .. }) => {
                    let mut more = vec![0u8; 64 * 1024];
                    let n = tokio::time::timeout(self.timeout, self.stream.read(&mut more))
                        .await
                        .map_err(|_| Failed(format!("no answer within {:?}", self.timeout)))?
                        .map_err(|e| Failed(format!("reading: {e}")))?;
                    if n == 0 {
                        return Err(Failed("the server closed the connection".into()));
                    }
                    let got = more.get(..n).unwrap_or(&[]);
                    self.analyzer.handle_input(
                        &mut self.conn,
                        Direction::ServerToClient,
                        got,
                        now(),
                    );
                    self.drain();
                    self.buf.extend_from_slice(got);
                }
                Err(e) => {
                    return Err(Failed(format!(
                        "the server sent something that is not UA TCP: {e}"
                    )))
                }
            }
        }
    }

    /// Sends a request and returns the response body: the chunks' bodies, opened with the
    /// server's keys on a secured channel.
    async fn call(&mut self, bytes: &[u8], keys: Option<&ChannelKeys>) -> Result<Vec<u8>, Failed> {
        self.send(bytes).await?;
        let (t, chunks) = self.receive().await?;
        if t == MessageType::Error {
            return Err(Failed("the server answered with an ERR".into()));
        }
        let mut body = Vec::new();
        for chunk in &chunks {
            let opened;
            let (clear, protection) = match keys {
                Some(k) => {
                    opened = open_symmetric_chunk(k.policy, &k.server, k.encrypted, chunk)
                        .map_err(|e| Failed(format!("the server's answer does not open: {e}")))?;
                    (opened.chunk.as_slice(), Protection::Decrypted)
                }
                None => (chunk.as_slice(), Protection::None),
            };
            let c = parse_chunk(&mut Reader::new(clear), protection)
                .map_err(|e| Failed(format!("a chunk does not decode: {e}")))?;
            body.extend_from_slice(c.body);
        }
        Ok(body)
    }

    /// Ends the connection in the analysis; returns the last refusal it explained.
    fn close(mut self, by: ClosedBy) -> Option<SeenReject> {
        self.analyzer
            .handle_close(&mut self.conn, by, CloseReason::Fin, now());
        self.drain();
        self.reject
    }
}

fn token_name(t: i32) -> &'static str {
    match t {
        0 => "anonymous",
        1 => "username",
        2 => "x509",
        3 => "issued",
        _ => "unknown",
    }
}

/// Clock skew from a response header timestamp: server time minus the midpoint of the call.
fn skew_ms(server: DateTime, sent: i64, received: i64) -> f64 {
    let server_us = server.0.saturating_sub(DateTime::UNIX_EPOCH_TICKS) / 10;
    (server_us - (sent + received) / 2) as f64 / 1000.0
}

/// Runs the probe; every event goes to `sink`, in order.
pub async fn probe(config: &ProbeConfig, sink: &mut dyn FnMut(Event)) -> Outcome {
    let mut analyzer = Analyzer::new(uatap_analysis::Options {
        messages: false,
        stall_after: None,
    });
    let up = &config.upstream;
    let url = up
        .url
        .clone()
        .unwrap_or_else(|| format!("opc.tcp://{}:{}", up.host, up.port));
    let mut outcome = Outcome::default();
    let target = format!("{}:{}", up.host, up.port);
    // DNS.
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((up.host.as_str(), up.port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            let mut conn = analyzer.open("uatap-probe".into(), target.clone(), now());
            conn.handle_upstream_error("dns", format!("cannot resolve {}: {e}", up.host), now());
            analyzer.handle_close(&mut conn, ClosedBy::Proxy, CloseReason::Error, now());
            while let Some(e) = conn.poll_event() {
                sink(e);
            }
            unreachable_summary(sink, &target);
            return outcome;
        }
    };
    // TCP, to the first address that accepts.
    let mut stream = None;
    let mut last_error = ("unreachable", format!("{} resolves to no address", up.host));
    for a in &addrs {
        match tokio::time::timeout(config.timeout, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                stream = Some((s, *a));
                break;
            }
            Ok(Err(e)) => {
                last_error = (
                    crate::upstream::classify_io_error(&e),
                    format!("connect to {a}: {e}"),
                )
            }
            Err(_) => {
                last_error = (
                    "timeout",
                    format!("connect to {a}: no answer within {:?}", config.timeout),
                )
            }
        }
    }
    let Some((stream, addr)) = stream else {
        let mut conn = analyzer.open("uatap-probe".into(), target.clone(), now());
        conn.handle_upstream_error(last_error.0, last_error.1, now());
        analyzer.handle_close(&mut conn, ClosedBy::Proxy, CloseReason::Error, now());
        while let Some(e) = conn.poll_event() {
            sink(e);
        }
        unreachable_summary(sink, &target);
        return outcome;
    };
    let (conn, conn_id) = open_conn(&mut analyzer, &stream, &target);
    let mut wire = Wire {
        stream,
        conn,
        analyzer: &mut analyzer,
        buf: Vec::new(),
        timeout: config.timeout,
        sink: &mut *sink,
        reject: None,
    };
    let mut client = Client::new(url.clone());
    let mut skew = None;
    let mut session_ok = None;
    let result: Result<Vec<u8>, Failed> = async {
        let hello = client.hello();
        wire.send(&hello).await?;
        let (t, _) = wire.receive().await?;
        if t != MessageType::Acknowledge {
            return Err(Failed("the server did not acknowledge the Hello".into()));
        }
        outcome.reachable = true;
        let opn = client.open()?;
        wire.send(&opn).await?;
        let (t, chunks) = wire.receive().await?;
        if t != MessageType::OpenSecureChannel {
            return Err(Failed("the server refused a security None channel".into()));
        }
        let whole = chunks.first().map(Vec::as_slice).unwrap_or(&[]);
        let c = parse_chunk(&mut Reader::new(whole), Protection::None)
            .map_err(|e| Failed(format!("OPN response: {e}")))?;
        let m = parse_message(&mut Reader::new(c.body))
            .map_err(|e| Failed(format!("OPN response: {e}")))?;
        match &m.body {
            ServiceBody::OpenSecureChannelResponse(r) => {
                client.channel_id = r.security_token.channel_id;
                client.token_id = r.security_token.token_id;
            }
            _ => return Err(Failed("the server refused a security None channel".into())),
        }
        let sent = now().unix_micros;
        let req = client.get_endpoints()?;
        let body = wire.call(&req, None).await?;
        let received = now().unix_micros;
        let m = parse_message(&mut Reader::new(&body))
            .map_err(|e| Failed(format!("GetEndpoints response: {e}")))?;
        let ServiceBody::GetEndpointsResponse(r) = &m.body else {
            return Err(Failed("GetEndpoints was refused".into()));
        };
        skew = Some(skew_ms(r.response_header.timestamp, sent, received));
        let endpoints: Vec<EndpointDescription<'_>> = r.endpoints.clone().unwrap_or_default();
        // An anonymous session on a None endpoint, where one is offered.
        let anonymous_none = endpoints
            .iter()
            .find_map(|e| (e.security_mode == 1).then(|| token_policy(e, 0)).flatten());
        if let Some(policy_id) = &anonymous_none {
            let req = client.create_session(&SessionRequest {
                application_uri: config
                    .identity
                    .as_ref()
                    .map_or("urn:uatap:probe", |i| i.application_uri.as_str()),
                client_nonce: &nonce(),
                client_certificate: None,
            })?;
            let created = wire.call(&req, None).await?;
            let m = parse_message(&mut Reader::new(&created))
                .map_err(|e| Failed(format!("CreateSession response: {e}")))?;
            if let ServiceBody::CreateSessionResponse(r) = &m.body {
                let auth = r.authentication_token.to_vec();
                let no_signature = SignatureData {
                    algorithm: UaString::null(),
                    signature: ByteString::null(),
                };
                let req =
                    client.activate_session(&auth, no_signature, anonymous_token(policy_id))?;
                let activated = wire.call(&req, None).await?;
                let m = parse_message(&mut Reader::new(&activated))
                    .map_err(|e| Failed(format!("ActivateSession response: {e}")))?;
                session_ok = Some(matches!(&m.body,
                    ServiceBody::ActivateSessionResponse(r) if r.response_header.service_result.is_good()));
                let req = client.close_session(&auth)?;
                let _ = wire.call(&req, None).await;
            } else {
                session_ok = Some(false);
            }
        }
        let clo = client.close()?;
        wire.send(&clo).await?;
        Ok(body)
    }
    .await;
    let (body, stopped) = match result {
        Ok(b) => (b, None),
        Err(Failed(why)) => (Vec::new(), Some(why)),
    };
    let by = if stopped.is_none() {
        ClosedBy::Client
    } else {
        ClosedBy::Server
    };
    wire.close(by);
    let endpoints: Vec<EndpointDescription<'_>> = parse_message(&mut Reader::new(&body))
        .ok()
        .and_then(|m| match m.body {
            ServiceBody::GetEndpointsResponse(r) => r.endpoints,
            _ => None,
        })
        .unwrap_or_default();
    let keys = config.identity.as_ref().and_then(|me| {
        PrivateKey::from_pkcs8(me.key.pkcs8_der())
            .ok()
            .map(|k| KeyStore::new(vec![("probe".into(), k)]))
    });
    // The same policy and mode offered at several URLs is tried once.
    let mut tried: HashMap<(Vec<u8>, i32), Attempt> = HashMap::new();
    for e in &endpoints {
        let policy = e
            .security_policy_uri
            .as_bytes()
            .and_then(SecurityPolicy::from_uri);
        let attempt = match (policy, &config.identity, &keys) {
            (Some(p), Some(me), Some(keys)) if p != SecurityPolicy::None && e.security_mode > 1 => {
                let key = (
                    e.security_policy_uri.as_bytes().unwrap_or(&[]).to_vec(),
                    e.security_mode,
                );
                if !tried.contains_key(&key) {
                    let a = try_secured(
                        config,
                        &Secure {
                            me,
                            keys,
                            policy: p,
                            addr,
                            url: &url,
                        },
                        e,
                        &mut analyzer,
                        sink,
                    )
                    .await;
                    tried.insert(key.clone(), a);
                }
                tried.get(&key).cloned()
            }
            _ => None,
        };
        if skew.is_none() {
            skew = attempt.as_ref().and_then(|a| a.skew);
        }
        let info = endpoint_info(e, session_ok, attempt.as_ref(), config).await;
        if info.usable {
            outcome.usable += 1;
            if e.security_mode != 1 {
                outcome.usable_secure += 1;
            }
        }
        let conn = attempt.map_or_else(|| conn_id.clone(), |a| a.conn);
        sink(Event {
            ts: now(),
            conn: conn.as_str().into(),
            dir: None,
            kind: EventKind::ProbeEndpoint(Box::new(info)),
        });
    }
    sink(Event {
        ts: now(),
        conn: conn_id.as_str().into(),
        dir: None,
        kind: EventKind::ProbeSummary(Box::new(ProbeSummaryInfo {
            reachable: outcome.reachable,
            usable_endpoints: outcome.usable,
            usable_secure_endpoints: outcome.usable_secure,
            endpoints: endpoints.len() as u64,
            clock_skew_ms: skew,
            stopped,
        })),
    });
    outcome
}

/// A connection of the probe in the analysis, named by its addresses.
fn open_conn(analyzer: &mut Analyzer, stream: &TcpStream, target: &str) -> (Connection, String) {
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or(target.to_string());
    let conn = analyzer.open(local, peer, now());
    let id = conn.id().to_string();
    (conn, id)
}

/// The PolicyId of the endpoint's first user token policy of `token_type` (0 anonymous,
/// 1 user name).
fn token_policy(e: &EndpointDescription<'_>, token_type: i32) -> Option<String> {
    e.user_identity_tokens
        .as_ref()?
        .iter()
        .find(|t| t.token_type == token_type)
        .map(|t| String::from_utf8_lossy(t.policy_id.as_bytes().unwrap_or(b"")).into_owned())
}

/// What uatap needs to open a secured channel to one endpoint.
struct Secure<'a> {
    me: &'a Identity,
    keys: &'a KeyStore,
    policy: SecurityPolicy,
    addr: SocketAddr,
    url: &'a str,
}

/// What happened when uatap tried a secured endpoint.
#[derive(Debug, Clone)]
struct Attempt {
    /// `accepted`, `rejected`, `not_tried`.
    channel: &'static str,
    /// `activated`, `rejected`, or none tried.
    session: Option<&'static str>,
    /// `anonymous` or `username`, when a session was tried.
    identity: Option<&'static str>,
    /// From the OpenSecureChannel response header.
    skew: Option<f64>,
    /// For the person.
    notes: Vec<String>,
    /// The refusal the analysis explained.
    reject: Option<SeenReject>,
    /// The connection id of the attempt.
    conn: String,
}

impl Attempt {
    fn new(conn: String) -> Self {
        Attempt {
            channel: "not_tried",
            session: None,
            identity: None,
            skew: None,
            notes: Vec::new(),
            reject: None,
            conn,
        }
    }
}

/// Opens a channel with the endpoint's policy and mode on a new connection and, if asked, a
/// session over it.
async fn try_secured(
    config: &ProbeConfig,
    s: &Secure<'_>,
    e: &EndpointDescription<'_>,
    analyzer: &mut Analyzer,
    sink: &mut dyn FnMut(Event),
) -> Attempt {
    let target = s.addr.to_string();
    let mut attempt = Attempt::new(target.clone());
    let server_der = e.server_certificate.as_bytes().unwrap_or(&[]);
    let server = match Certificate::from_der(server_der) {
        Ok(c) => c,
        Err(err) => {
            attempt.notes.push(format!(
                "not tried: the endpoint's server certificate is unusable ({err})"
            ));
            return attempt;
        }
    };
    let stream = match tokio::time::timeout(config.timeout, TcpStream::connect(s.addr)).await {
        Ok(Ok(st)) => st,
        Ok(Err(err)) => {
            attempt
                .notes
                .push(format!("not tried: a new connection failed ({err})"));
            return attempt;
        }
        Err(_) => {
            attempt
                .notes
                .push("not tried: a new connection timed out".to_string());
            return attempt;
        }
    };
    let (mut conn, conn_id) = open_conn(analyzer, &stream, &target);
    attempt.conn = conn_id;
    let (c2s, s2c, own) = s.keys.client_openers();
    conn.set_openers(Box::new(c2s), Box::new(s2c));
    let mut wire = Wire {
        stream,
        conn,
        analyzer,
        buf: Vec::new(),
        timeout: config.timeout,
        sink,
        reject: None,
    };
    let mut client = Client::new(s.url.to_string());
    let policy = s.policy;
    let mode = e.security_mode;
    let result: Result<(), Failed> = async {
        let hello = client.hello();
        wire.send(&hello).await?;
        let (t, ack) = wire.receive().await?;
        if t != MessageType::Acknowledge {
            attempt.channel = "rejected";
            return Err(Failed("the server did not acknowledge the Hello".into()));
        }
        let chunk_size = ack
            .first()
            .and_then(|a| parse_tcp_message(&mut Reader::new(a)).ok())
            .and_then(|m| match m {
                TcpMessage::Acknowledge(a) => Some(a.receive_buffer_size as usize),
                _ => None,
            })
            .filter(|n| *n >= 8192)
            .unwrap_or(8192);
        let client_nonce = nonce_of(policy.nonce_len());
        own.sent(mode == 3, &client_nonce);
        let sent = now().unix_micros;
        let opn = client.open_secured(policy, mode, &client_nonce, s.me, &server)?;
        wire.send(&opn).await?;
        let answer = wire.receive().await;
        let received = now().unix_micros;
        let (t, chunks) = answer.inspect_err(|_| attempt.channel = "rejected")?;
        attempt.channel = "rejected";
        if t != MessageType::OpenSecureChannel {
            return Err(Failed(format!(
                "the server answered the OpenSecureChannel with {t:?}"
            )));
        }
        let opened =
            open_asymmetric_chunk(chunks.first().map_or(&[][..], Vec::as_slice), &s.me.key)
                .map_err(|err| {
                    Failed(format!(
                        "the server's answer does not open with uatap's key: {err}"
                    ))
                })?;
        let c = parse_chunk(&mut Reader::new(&opened.chunk), Protection::Decrypted)
            .map_err(|err| Failed(format!("OPN response: {err}")))?;
        let m = parse_message(&mut Reader::new(c.body))
            .map_err(|err| Failed(format!("OPN response: {err}")))?;
        let ServiceBody::OpenSecureChannelResponse(r) = &m.body else {
            return Err(Failed("the server refused the secured channel".into()));
        };
        if r.response_header.service_result.is_bad() {
            return Err(Failed("the server refused the secured channel".into()));
        }
        attempt.channel = "accepted";
        attempt.skew = Some(skew_ms(r.response_header.timestamp, sent, received));
        let server_nonce = r.server_nonce.as_bytes().unwrap_or(&[]);
        client.channel_id = r.security_token.channel_id;
        client.token_id = r.security_token.token_id;
        client.secured = Some(Secured {
            keys: ChannelKeys::derive(policy, mode == 3, &client_nonce, server_nonce),
            chunk_size,
        });
        if config.session {
            session(config, s, e, &server, &mut client, &mut wire, &mut attempt).await?;
        }
        let clo = client.close()?;
        wire.send(&clo).await?;
        Ok(())
    }
    .await;
    let by = match &result {
        Ok(()) => ClosedBy::Client,
        Err(Failed(why)) => {
            if attempt.channel != "rejected" && attempt.session != Some("rejected") {
                attempt.notes.push(why.clone());
            }
            ClosedBy::Server
        }
    };
    attempt.reject = wire.close(by);
    attempt
}

/// CreateSession and ActivateSession over the secured channel `client` has open.
async fn session(
    config: &ProbeConfig,
    s: &Secure<'_>,
    e: &EndpointDescription<'_>,
    endpoint_cert: &Certificate,
    client: &mut Client,
    wire: &mut Wire<'_>,
    attempt: &mut Attempt,
) -> Result<(), Failed> {
    let token_type = if config.user.is_some() { 1 } else { 0 };
    let Some(policy_id) = token_policy(e, token_type) else {
        attempt.notes.push(if config.user.is_some() {
            "no session tried: the endpoint offers no user name login".to_string()
        } else {
            "no session tried: the endpoint offers no anonymous login (give --user)".to_string()
        });
        return Ok(());
    };
    attempt.identity = Some(if config.user.is_some() {
        "username"
    } else {
        "anonymous"
    });
    let Some(sig_alg) = s.policy.asymmetric_signature() else {
        return Err(Failed("the policy signs nothing".into()));
    };
    let keys = client.secured.as_ref().map(|c| c.keys.clone());
    let keys = keys.as_ref();
    let client_nonce = nonce();
    let req = client.create_session(&SessionRequest {
        application_uri: &s.me.application_uri,
        client_nonce: &client_nonce,
        client_certificate: Some(s.me.cert.der()),
    })?;
    attempt.session = Some("rejected");
    let created = wire.call(&req, keys).await?;
    let m = parse_message(&mut Reader::new(&created))
        .map_err(|err| Failed(format!("CreateSession response: {err}")))?;
    let ServiceBody::CreateSessionResponse(r) = &m.body else {
        return Err(Failed("CreateSession was refused".into()));
    };
    if r.response_header.service_result.is_bad() {
        return Err(Failed("CreateSession was refused".into()));
    }
    // The server proves it holds its key: it signs our certificate and nonce.
    let server_der = r
        .server_certificate
        .as_bytes()
        .filter(|b| !b.is_empty())
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| endpoint_cert.der().to_vec());
    let server = Certificate::from_der(&server_der).unwrap_or_else(|_| endpoint_cert.clone());
    let mut signed = s.me.cert.der().to_vec();
    signed.extend_from_slice(&client_nonce);
    match r.server_signature.signature.as_bytes() {
        Some(sig) if !sig.is_empty() => {
            if rsa_verify(sig_alg, &server, &signed, sig, 0).is_err() {
                attempt.notes.push(
                    "the server's CreateSession signature does not verify with its certificate"
                        .to_string(),
                );
            }
        }
        _ => attempt
            .notes
            .push("the server sent no CreateSession signature".to_string()),
    }
    let server_nonce = r.server_nonce.0.as_bytes().unwrap_or(&[]).to_vec();
    let auth = r.authentication_token.to_vec();
    let mut to_sign = server_der.clone();
    to_sign.extend_from_slice(&server_nonce);
    let signature = rsa_sign(sig_alg, &s.me.key, &to_sign)
        .map_err(|err| Failed(format!("signing ActivateSession: {err}")))?;
    let token = match &config.user {
        None => anonymous_token(&policy_id),
        Some(u) => user_name_token(e, &policy_id, u, s.policy, &server, &server_nonce)?,
    };
    let req = client.activate_session(
        &auth,
        SignatureData {
            algorithm: UaString::from(sig_alg.uri()),
            signature: ByteString::from(signature),
        },
        token,
    )?;
    let activated = wire.call(&req, keys).await?;
    let m = parse_message(&mut Reader::new(&activated))
        .map_err(|err| Failed(format!("ActivateSession response: {err}")))?;
    // node-opcua refuses in an ActivateSessionResponse with a bad ServiceResult, others in a
    // ServiceFault.
    if !matches!(&m.body, ServiceBody::ActivateSessionResponse(r) if r.response_header.service_result.is_good())
    {
        return Err(Failed("ActivateSession was refused".into()));
    }
    attempt.session = Some("activated");
    let req = client.close_session(&auth)?;
    let _ = wire.call(&req, keys).await;
    Ok(())
}

/// A UserNameIdentityToken, the password encrypted to the server certificate with the user
/// token policy's SecurityPolicyUri (the channel's policy when it names none).
fn user_name_token(
    e: &EndpointDescription<'_>,
    policy_id: &str,
    u: &UserLogin,
    channel: SecurityPolicy,
    server: &Certificate,
    server_nonce: &[u8],
) -> Result<ExtensionObject<'static>, Failed> {
    let uri = e
        .user_identity_tokens
        .as_ref()
        .and_then(|v| v.iter().find(|t| t.token_type == 1))
        .and_then(|t| t.security_policy_uri.as_bytes())
        .filter(|b| !b.is_empty());
    let policy = match uri {
        None => channel,
        Some(b) => SecurityPolicy::from_uri(b).ok_or_else(|| {
            Failed(format!(
                "the user token policy names an unknown security policy {}",
                String::from_utf8_lossy(b)
            ))
        })?,
    };
    let (password, algorithm) = match policy.asymmetric_encryption() {
        None => (u.password.0.as_bytes().to_vec(), UaString::null()),
        Some(alg) => (
            encrypt_user_secret(alg, server, u.password.0.as_bytes(), server_nonce)
                .map_err(|err| Failed(format!("encrypting the password: {err}")))?,
            UaString::from(alg.uri()),
        ),
    };
    let token = UserNameIdentityToken {
        policy_id: UaString::from(policy_id),
        user_name: UaString::from(u.user.as_str()),
        password: Secret(ByteString::from(password)),
        encryption_algorithm: algorithm,
    };
    let mut body = Vec::with_capacity(token.encoded_len());
    token.encode(&mut body);
    Ok(ExtensionObject::binary(
        NodeId::numeric(0, ids::structure::USER_NAME_IDENTITY_TOKEN),
        body,
    ))
}

/// The last event when the server could not even be reached.
fn unreachable_summary(sink: &mut dyn FnMut(Event), conn: &str) {
    sink(Event {
        ts: now(),
        conn: conn.into(),
        dir: None,
        kind: EventKind::ProbeSummary(Box::new(ProbeSummaryInfo {
            reachable: false,
            usable_endpoints: 0,
            usable_secure_endpoints: 0,
            endpoints: 0,
            clock_skew_ms: None,
            stopped: Some("the server could not be reached".into()),
        })),
    });
}

/// A NodeId from its encoded bytes (the session's AuthenticationToken kept between calls).
fn decode_node_id(bytes: &[u8]) -> NodeId<'_> {
    use uatap_codec::types::Decode;
    NodeId::decode(&mut Reader::new(bytes)).unwrap_or_default()
}

/// Causes that mean the server does not trust uatap's certificate (yet).
const TRUST_CAUSES: [&str; 4] = [
    "client_cert_untrusted",
    "security_checks_failed",
    "client_cert_issuer_unknown",
    "secure_channel_unanswered",
];

/// What one endpoint offers, and whether uatap could use it.
async fn endpoint_info(
    e: &EndpointDescription<'_>,
    session_ok: Option<bool>,
    attempt: Option<&Attempt>,
    config: &ProbeConfig,
) -> ProbeEndpointInfo {
    let text = |s: &UaString<'_>| {
        s.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let endpoint_url = text(&e.endpoint_url);
    let policy_uri = text(&e.security_policy_uri);
    let policy = policy_uri
        .as_deref()
        .map(|u| u.rsplit_once('#').map_or(u, |(_, n)| n).to_string());
    let der = e.server_certificate.as_bytes().unwrap_or(&[]);
    let (server_cert, hosts) = if der.is_empty() {
        (None, Vec::new())
    } else {
        (Some(summarize_certificate(der)), san_hosts(der))
    };
    let host_port = endpoint_url
        .as_deref()
        .and_then(|u| u.strip_prefix("opc.tcp://"))
        .map(|r| r.split('/').next().unwrap_or(r).to_string());
    let host = host_port.as_deref().map(|hp| match hp.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => hp.to_string(),
    });
    let host_resolves = match &host_port {
        Some(hp) => Some(
            tokio::net::lookup_host(hp.as_str())
                .await
                .is_ok_and(|mut a| a.next().is_some()),
        ),
        None => None,
    };
    let mode = uatap_codec::services::security_mode_name(e.security_mode);
    let user_tokens = e
        .user_identity_tokens
        .as_ref()
        .map(|v| v.iter().map(|t| token_name(t.token_type)).collect())
        .unwrap_or_default();
    let mut notes = Vec::new();
    let mut channel = "not_tried";
    let mut session = None;
    let mut identity = None;
    let mut cause = None;
    let mut status = Status::default();
    let mut clock_skew_ms = None;
    let name = policy.as_deref().unwrap_or("secured");
    let usable = if e.security_mode == 1 {
        channel = "accepted";
        match session_ok {
            Some(true) => {
                session = Some("activated");
                identity = Some("anonymous");
                notes.push("security None channel and anonymous session opened".to_string());
                true
            }
            Some(false) => {
                session = Some("rejected");
                identity = Some("anonymous");
                notes.push("the channel opened but the anonymous session was refused".to_string());
                false
            }
            None => {
                notes.push(
                    "security None channel opened; no anonymous session offered, so none tried"
                        .to_string(),
                );
                true
            }
        }
    } else if let Some(a) = attempt {
        channel = a.channel;
        session = a.session;
        identity = a.identity;
        clock_skew_ms = a.skew;
        if let Some(r) = &a.reject {
            cause = Some(r.cause);
            status = r.status.clone();
        }
        let refusal = |r: &Option<SeenReject>| {
            r.as_ref().map_or(String::new(), |r| {
                format!(
                    ": {} ({}{}, cause {}{})",
                    r.explanation,
                    r.status.describe(),
                    "",
                    r.cause,
                    if r.inferred { ", inferred" } else { "" }
                )
            })
        };
        match (a.channel, a.session) {
            ("accepted", Some("activated")) => notes.push(format!(
                "{name} {mode} channel opened with uatap's certificate and a session activated ({} login)",
                a.identity.unwrap_or("anonymous")
            )),
            ("accepted", Some(_)) => notes.push(format!(
                "{name} {mode} channel opened, but the session ({} login) was refused{}",
                a.identity.unwrap_or("anonymous"),
                refusal(&a.reject)
            )),
            ("accepted", None) => notes.push(format!(
                "{name} {mode} channel opened with uatap's certificate"
            )),
            ("rejected", _) => {
                notes.push(format!(
                    "the server refused uatap's {name} {mode} channel{}",
                    refusal(&a.reject)
                ));
                if a.reject
                    .as_ref()
                    .is_none_or(|r| TRUST_CAUSES.contains(&r.cause))
                {
                    if let Some(me) = &config.identity {
                        notes.push(format!(
                            "if the server does not trust uatap's certificate yet, trust {} (ApplicationUri {}) in the server's certificate store and probe again",
                            me.cert_path.display(),
                            me.application_uri
                        ));
                    }
                }
            }
            _ => {}
        }
        notes.extend(a.notes.iter().cloned());
        if let Some(sk) = a.skew.filter(|sk| sk.abs() >= 60_000.0) {
            notes.push(format!(
                "the server's clock is {:.0} s {} this machine's: certificates can look not yet valid or expired to one side",
                (sk / 1000.0).abs(),
                if sk > 0.0 { "ahead of" } else { "behind" }
            ));
        }
        a.channel == "accepted" && a.session.is_none_or(|s| s == "activated")
    } else {
        notes.push(if config.identity.is_none() {
            format!(
                "not tried: {name} needs uatap's application certificate (--pki or --cert/--key)"
            )
        } else {
            format!("not tried: uatap does not know the policy {name}")
        });
        false
    };
    if host_resolves == Some(false) {
        notes.push(format!(
            "the host {} the server advertises does not resolve from here: a client that dials the advertised URL (Ignition) cannot connect; fix the server's host name or use uatap's --rewrite-endpoint-urls",
            host.as_deref().unwrap_or("?")
        ));
    }
    if let (Some(h), false) = (&host, hosts.is_empty()) {
        if !hosts.iter().any(|x| x.eq_ignore_ascii_case(h)) {
            notes.push(format!(
                "the host {h} is not among the server certificate's names ({}): clients that check host names fail with Bad_CertificateHostNameInvalid",
                hosts.join(", ")
            ));
        }
    }
    ProbeEndpointInfo {
        endpoint_url,
        policy,
        policy_uri,
        mode,
        user_tokens,
        server_cert,
        server_cert_hosts: hosts,
        host_resolves,
        usable,
        explanation: notes.join("; "),
        channel,
        session,
        identity,
        cause,
        status,
        clock_skew_ms,
    }
}
