//! `uatap probe opc.tcp://host:port`: the endpoint doctor. uatap acts as a client step by step
//! (DNS, TCP, HEL/ACK, OpenSecureChannel None, GetEndpoints, and an anonymous session where the
//! server allows it) and reports each step.
//!
//! Every byte uatap sends and receives goes through the same analysis as the proxy's, so the
//! steps come out as the usual events (`hello`, `secure_channel`, `session`, `reject`...), plus
//! one `probe_endpoint` per endpoint and a final `probe_summary`.
//!
//! Not done yet: OpenSecureChannel with the secured policies (it needs the asymmetric
//! cryptography of the encrypted-channel work); secured endpoints are listed and checked
//! (certificate, host names) but reported as not tried.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uatap_analysis::cert::{san_hosts, summarize_certificate};
use uatap_analysis::payload::{ProbeEndpointInfo, ProbeSummaryInfo};
use uatap_analysis::{Analyzer, CloseReason, ClosedBy, Connection, Direction, Event, EventKind};
use uatap_codec::reader::Reader;
use uatap_codec::secure::{
    parse_chunk, AsymmetricSecurityHeader, Chunk, Protection, SecurityHeader, SequenceHeader,
};
use uatap_codec::services::{parse_message, Message, ServiceBody};
use uatap_codec::services::{
    ActivateSessionRequest, CloseSessionRequest, CreateSessionRequest, Secret,
};
use uatap_codec::services::{ApplicationDescription, EndpointDescription, GetEndpointsRequest};
use uatap_codec::services::{CloseSecureChannelRequest, OpenSecureChannelRequest};
use uatap_codec::services::{RequestHeader, SignatureData};
use uatap_codec::tcp::{
    frame, ChunkType, Frame, HelloMessage, MessageHeader, MessageType, TcpMessage,
};
use uatap_codec::types::{ByteString, DateTime, ExtensionObject, LocalizedText, NodeId, UaString};
use uatap_codec::{ids, Encode};

use crate::hub::now;
use crate::upstream::Upstream;

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The server.
    pub upstream: Upstream,
    /// Per step.
    pub timeout: Duration,
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

/// The client side of one connection: builds the chunks, numbers them.
struct Client {
    channel_id: u32,
    token_id: u32,
    sequence_number: u32,
    request_id: u32,
    endpoint_url: String,
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

impl Client {
    fn new(endpoint_url: String) -> Self {
        Client {
            channel_id: 0,
            token_id: 0,
            sequence_number: 0,
            request_id: 0,
            endpoint_url,
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

    fn chunk(&mut self, message_type: MessageType, body: ServiceBody<'_>, type_id: u32) -> Vec<u8> {
        let body = Message {
            type_id: NodeId::numeric(0, type_id),
            body,
        }
        .to_vec();
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
        Chunk {
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
        .to_vec()
    }

    fn open(&mut self) -> Vec<u8> {
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

    fn get_endpoints(&mut self) -> Vec<u8> {
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

    fn create_session(&mut self) -> Vec<u8> {
        let handle = self.request_id.wrapping_add(1);
        let url = self.endpoint_url.clone();
        let req = CreateSessionRequest {
            request_header: request_header(handle, NodeId::numeric(0, 0)),
            client_description: ApplicationDescription {
                application_uri: UaString::from("urn:uatap:probe"),
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
            client_nonce: Secret(ByteString::from(nonce())),
            client_certificate: ByteString::null(),
            requested_session_timeout: 60_000.0,
            max_response_message_size: 16 << 20,
        };
        self.chunk(
            MessageType::Message,
            ServiceBody::CreateSessionRequest(req),
            ids::service::CREATE_SESSION_REQUEST,
        )
    }

    fn activate_session(&mut self, auth: &[u8], policy_id: &str) -> Vec<u8> {
        let handle = self.request_id.wrapping_add(1);
        let auth = decode_node_id(auth);
        let mut token = Vec::new();
        UaString::from(policy_id).encode(&mut token);
        let req = ActivateSessionRequest {
            request_header: request_header(handle, auth),
            client_signature: SignatureData {
                algorithm: UaString::null(),
                signature: ByteString::null(),
            },
            client_software_certificates: None,
            locale_ids: None,
            user_identity_token: ExtensionObject::binary(
                NodeId::numeric(0, ids::structure::ANONYMOUS_IDENTITY_TOKEN),
                token,
            ),
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

    fn close_session(&mut self, auth: &[u8]) -> Vec<u8> {
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

    fn close(&mut self) -> Vec<u8> {
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

/// 32 random bytes for CreateSession's ClientNonce.
fn nonce() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut n = vec![0u8; 32];
    // Without a random source, a nonce from the clock still differs from call to call.
    if ring::rand::SystemRandom::new().fill(&mut n).is_err() {
        let t = now().unix_micros.to_le_bytes();
        for (i, b) in n.iter_mut().enumerate() {
            *b = t.get(i % 8).copied().unwrap_or(0) ^ (i as u8);
        }
    }
    n
}

/// One connection to the server, tapped into the analysis.
struct Wire<'s> {
    stream: TcpStream,
    conn: Connection,
    analyzer: &'s mut Analyzer,
    buf: Vec<u8>,
    timeout: Duration,
    sink: &'s mut dyn FnMut(Event),
}

impl Wire<'_> {
    fn drain(&mut self) {
        while let Some(e) = self.conn.poll_event() {
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

    /// Reads one whole message (its chunks concatenated); returns its type and the bytes.
    async fn receive(&mut self) -> Result<(MessageType, Vec<u8>), Failed> {
        let mut chunks = Vec::new();
        loop {
            match frame(&self.buf, Some(16 << 20)) {
                Ok(Frame::Complete { header }) => {
                    let size = header.message_size as usize;
                    let chunk: Vec<u8> = self.buf.drain(..size).collect();
                    let last = header.chunk_type != ChunkType::Intermediate
                        || !header.message_type.is_secure_conversation();
                    chunks.extend_from_slice(&chunk);
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

    /// Sends a request and returns the response body (service messages of a None channel).
    async fn call(&mut self, bytes: &[u8]) -> Result<Vec<u8>, Failed> {
        self.send(bytes).await?;
        let (t, whole) = self.receive().await?;
        if t == MessageType::Error {
            return Err(Failed("the server answered with an ERR".into()));
        }
        // The bodies of the chunks, in order.
        let mut body = Vec::new();
        let mut rest = &whole[..];
        while let Ok(Frame::Complete { header }) = frame(rest, None) {
            let (one, after) = rest.split_at((header.message_size as usize).min(rest.len()));
            let c = parse_chunk(&mut Reader::new(one), Protection::None)
                .map_err(|e| Failed(format!("a chunk does not decode: {e}")))?;
            body.extend_from_slice(c.body);
            rest = after;
        }
        Ok(body)
    }

    fn close(mut self, by: ClosedBy) {
        self.analyzer
            .handle_close(&mut self.conn, by, CloseReason::Fin, now());
        self.drain();
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
    let mut analyzer = Analyzer::new(uatap_analysis::Options { messages: false });
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
                stream = Some(s);
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
    let Some(stream) = stream else {
        let mut conn = analyzer.open("uatap-probe".into(), target.clone(), now());
        conn.handle_upstream_error(last_error.0, last_error.1, now());
        analyzer.handle_close(&mut conn, ClosedBy::Proxy, CloseReason::Error, now());
        while let Some(e) = conn.poll_event() {
            sink(e);
        }
        unreachable_summary(sink, &target);
        return outcome;
    };
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or(target.clone());
    let conn = analyzer.open(local, peer.clone(), now());
    let conn_id = conn.id().to_string();
    let mut wire = Wire {
        stream,
        conn,
        analyzer: &mut analyzer,
        buf: Vec::new(),
        timeout: config.timeout,
        sink: &mut *sink,
    };
    let mut client = Client::new(url.clone());
    let mut skew = None;
    let mut endpoints_total = 0u64;
    let result: Result<(), Failed> = async {
        let hello = client.hello();
        wire.send(&hello).await?;
        let (t, _) = wire.receive().await?;
        if t != MessageType::Acknowledge {
            return Err(Failed("the server did not acknowledge the Hello".into()));
        }
        outcome.reachable = true;
        let opn = client.open();
        wire.send(&opn).await?;
        let (t, whole) = wire.receive().await?;
        if t != MessageType::OpenSecureChannel {
            return Err(Failed("the server refused a security None channel".into()));
        }
        let c = parse_chunk(&mut Reader::new(&whole), Protection::None)
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
        let req = client.get_endpoints();
        let body = wire.call(&req).await?;
        let received = now().unix_micros;
        let m = parse_message(&mut Reader::new(&body))
            .map_err(|e| Failed(format!("GetEndpoints response: {e}")))?;
        let ServiceBody::GetEndpointsResponse(r) = &m.body else {
            return Err(Failed("GetEndpoints was refused".into()));
        };
        skew = Some(skew_ms(r.response_header.timestamp, sent, received));
        let endpoints: Vec<EndpointDescription<'_>> = r.endpoints.clone().unwrap_or_default();
        endpoints_total = endpoints.len() as u64;
        // An anonymous session on a None endpoint, where one is offered.
        let anonymous_none = endpoints.iter().find_map(|e| {
            (e.security_mode == 1)
                .then(|| {
                    e.user_identity_tokens
                        .as_ref()?
                        .iter()
                        .find(|t| t.token_type == 0)
                        .map(|t| {
                            String::from_utf8_lossy(t.policy_id.as_bytes().unwrap_or(b""))
                                .into_owned()
                        })
                })
                .flatten()
        });
        let mut session_ok = None;
        if let Some(policy_id) = &anonymous_none {
            let req = client.create_session();
            let body = wire.call(&req).await?;
            let m = parse_message(&mut Reader::new(&body))
                .map_err(|e| Failed(format!("CreateSession response: {e}")))?;
            if let ServiceBody::CreateSessionResponse(r) = &m.body {
                let auth = r.authentication_token.to_vec();
                let req = client.activate_session(&auth, policy_id);
                let body = wire.call(&req).await?;
                let m = parse_message(&mut Reader::new(&body))
                    .map_err(|e| Failed(format!("ActivateSession response: {e}")))?;
                session_ok = Some(matches!(&m.body, ServiceBody::ActivateSessionResponse(_)));
                let req = client.close_session(&auth);
                let _ = wire.call(&req).await;
            } else {
                session_ok = Some(false);
            }
        }
        for e in &endpoints {
            let info = endpoint_info(e, session_ok).await;
            if info.usable {
                outcome.usable += 1;
                if e.security_mode != 1 {
                    outcome.usable_secure += 1;
                }
            }
            (wire.sink)(Event {
                ts: now(),
                conn: conn_id.as_str().into(),
                dir: None,
                kind: EventKind::ProbeEndpoint(Box::new(info)),
            });
        }
        let clo = client.close();
        wire.send(&clo).await?;
        Ok(())
    }
    .await;
    let stopped = result.err().map(|Failed(why)| why);
    let by = if stopped.is_none() {
        ClosedBy::Client
    } else {
        ClosedBy::Server
    };
    wire.close(by);
    sink(Event {
        ts: now(),
        conn: conn_id.as_str().into(),
        dir: None,
        kind: EventKind::ProbeSummary(Box::new(ProbeSummaryInfo {
            reachable: outcome.reachable,
            usable_endpoints: outcome.usable,
            usable_secure_endpoints: outcome.usable_secure,
            endpoints: endpoints_total,
            clock_skew_ms: skew,
            stopped,
        })),
    });
    outcome
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

/// What one endpoint offers, and whether uatap could use it.
async fn endpoint_info(e: &EndpointDescription<'_>, session_ok: Option<bool>) -> ProbeEndpointInfo {
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
    let usable = if e.security_mode == 1 {
        match session_ok {
            Some(true) => {
                notes.push("security None channel and anonymous session opened".to_string());
                true
            }
            Some(false) => {
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
    } else {
        notes.push(format!(
            "not tried: opening a {} channel needs the asymmetric cryptography uatap does not have yet (its certificate is described here)",
            policy.as_deref().unwrap_or("secured")
        ));
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
    }
}
