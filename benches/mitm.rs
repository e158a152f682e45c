//! End-to-end throughput of `uatap proxy --mitm` on SignAndEncrypt stream traffic, against a
//! plain tokio forwarder (copy_bidirectional, TCP_NODELAY) and a direct connection, in one run
//! with interleaved rounds on loopback.
//!
//! A synthetic server streams PublishResponses (100 Double items each) over a Basic256Sha256
//! SignAndEncrypt channel to a synthetic client that opens and checks every chunk; both use
//! the fixtures' test keys and uatap's crypto. Through the forwarder the bytes pass untouched;
//! through uatap each message is decrypted, checked, analysed and encrypted again for the other
//! leg. Run: `cargo bench --bench mitm` (`UATAP_MITM_MESSAGES`, `UATAP_MITM_ROUNDS`).

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uatap_codec::reader::Reader;
use uatap_codec::secure::SequenceHeader;
use uatap_codec::services::{
    parse_message, ChannelSecurityToken, DataChangeNotification, Message,
    MonitoredItemNotification, NotificationMessage, OpenSecureChannelRequest,
    OpenSecureChannelResponse, PublishResponse, RequestHeader, ResponseHeader, ServiceBody,
};
use uatap_codec::status::StatusCode;
use uatap_codec::tcp::{ChunkType, MessageType};
use uatap_codec::types::{
    ByteString, DataValue, DateTime, ExtensionObject, ExtensionObjectBody, NodeId, UaString,
    Variant,
};
use uatap_codec::{ids, Encode};
use uatap_crypto::asymmetric::{open_asymmetric_chunk, seal_asymmetric_chunk, AsymmetricChunk};
use uatap_crypto::symmetric::{open_symmetric_chunk, seal_symmetric_chunk, SymmetricChunk};
use uatap_crypto::{Certificate, ChannelKeys, PrivateKey, SecurityPolicy};

const POLICY: SecurityPolicy = SecurityPolicy::Basic256Sha256;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn key(app: &str) -> PrivateKey {
    let pem = std::fs::read(root().join("fixtures/keys").join(app).join("key.pem")).unwrap();
    PrivateKey::from_file_bytes(&pem).unwrap()
}

fn cert(path: PathBuf) -> Certificate {
    Certificate::from_der(&std::fs::read(path).unwrap()).unwrap()
}

fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(m.encoded_len());
    m.encode(&mut v);
    v
}

fn response_header() -> ResponseHeader<'static> {
    ResponseHeader {
        timestamp: DateTime(133_000_000_000_000_000),
        request_handle: 1,
        service_result: StatusCode(0),
        service_diagnostics: Default::default(),
        string_table: None,
        additional_header: ExtensionObject::default(),
    }
}

/// A PublishResponse with 100 data changes and NotificationMessage sequence number `seq`.
fn publish(seq: u32) -> Vec<u8> {
    let items: Vec<MonitoredItemNotification<'static>> = (0..100)
        .map(|i| MonitoredItemNotification {
            client_handle: i,
            value: DataValue {
                value: Some(Variant::Double(f64::from(seq) + f64::from(i))),
                source_timestamp: Some(DateTime(133_000_000_000_000_000 + i64::from(seq))),
                server_timestamp: Some(DateTime(133_000_000_000_000_100 + i64::from(seq))),
                ..Default::default()
            },
        })
        .collect();
    let dcn = DataChangeNotification {
        monitored_items: Some(items),
        diagnostic_infos: Some(vec![]),
    };
    let mut body = Vec::new();
    dcn.encode(&mut body);
    encode(&Message {
        type_id: NodeId::numeric(0, ids::service::PUBLISH_RESPONSE),
        body: ServiceBody::PublishResponse(PublishResponse {
            response_header: response_header(),
            subscription_id: 7,
            available_sequence_numbers: Some(vec![seq]),
            more_notifications: false,
            notification_message: NotificationMessage {
                sequence_number: seq,
                publish_time: DateTime(133_000_000_000_000_000),
                notification_data: Some(vec![ExtensionObject {
                    type_id: NodeId::numeric(0, ids::structure::DATA_CHANGE_NOTIFICATION),
                    body: ExtensionObjectBody::ByteString(Cow::Owned(body)),
                }]),
            },
            results: Some(vec![StatusCode(0)]),
            diagnostic_infos: Some(vec![]),
        }),
    })
}

/// Reads one whole chunk.
async fn read_chunk(s: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).await.unwrap();
    let size = u32::from_le_bytes(head[4..8].try_into().unwrap()) as usize;
    let mut chunk = vec![0u8; size];
    chunk[..8].copy_from_slice(&head);
    s.read_exact(&mut chunk[8..]).await.unwrap();
    chunk
}

fn hello() -> Vec<u8> {
    let url = b"opc.tcp://127.0.0.1/bench";
    let mut v = b"HELF\0\0\0\0".to_vec();
    for x in [0u32, 65536, 65536, 0, 0] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&(url.len() as i32).to_le_bytes());
    v.extend_from_slice(url);
    let n = (v.len() as u32).to_le_bytes();
    v[4..8].copy_from_slice(&n);
    v
}

fn ack() -> Vec<u8> {
    let mut v = b"ACKF\x1c\0\0\0".to_vec();
    for x in [0u32, 65536, 65536, 0, 0] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// The synthetic server: one connection at a time, streams `n` PublishResponses after the
/// client's first message.
async fn server(
    listener: TcpListener,
    key: Arc<PrivateKey>,
    own: Certificate,
    bodies: Arc<Vec<Vec<u8>>>,
) {
    loop {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.set_nodelay(true);
        let key = key.clone();
        let own = own.clone();
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let _hel = read_chunk(&mut s).await;
            s.write_all(&ack()).await.unwrap();
            let opn = read_chunk(&mut s).await;
            let clear = open_asymmetric_chunk(&opn, &key).expect("the OPN is for the server");
            let peer = sender_cert(&opn);
            let body_at = opn_body(&clear.chunk);
            let msg = parse_message(&mut Reader::new(&clear.chunk[body_at..])).unwrap();
            let ServiceBody::OpenSecureChannelRequest(r) = msg.body else {
                panic!()
            };
            let client_nonce = r.client_nonce.as_bytes().unwrap().to_vec();
            let server_nonce = vec![7u8; 32];
            let body = encode(&Message {
                type_id: NodeId::numeric(0, ids::service::OPEN_SECURE_CHANNEL_RESPONSE),
                body: ServiceBody::OpenSecureChannelResponse(OpenSecureChannelResponse {
                    response_header: response_header(),
                    server_protocol_version: 0,
                    security_token: ChannelSecurityToken {
                        channel_id: 5,
                        token_id: 1,
                        created_at: DateTime(133_000_000_000_000_000),
                        revised_lifetime: 3_600_000,
                    },
                    server_nonce: ByteString::from(&server_nonce[..]),
                }),
            });
            let sealed = seal_asymmetric_chunk(
                &AsymmetricChunk {
                    policy: POLICY,
                    secure_channel_id: 5,
                    sequence_header: SequenceHeader {
                        sequence_number: 1,
                        request_id: 1,
                    },
                    body: &body,
                },
                &key,
                &own,
                &peer,
            )
            .unwrap();
            s.write_all(&sealed).await.unwrap();
            let keys = ChannelKeys::derive(POLICY, true, &client_nonce, &server_nonce);
            let _start = read_chunk(&mut s).await;
            let mut out = Vec::with_capacity(1 << 20);
            for (i, b) in bodies.iter().enumerate() {
                let c = SymmetricChunk {
                    message_type: MessageType::Message,
                    chunk_type: ChunkType::Final,
                    secure_channel_id: 5,
                    token_id: 1,
                    sequence_header: SequenceHeader {
                        sequence_number: i as u32 + 2,
                        request_id: 2,
                    },
                    body: b,
                };
                out.extend_from_slice(
                    &seal_symmetric_chunk(POLICY, &keys.server, true, &c).unwrap(),
                );
                if out.len() > 256 * 1024 {
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            }
            let _ = s.write_all(&out).await;
            let mut sink = [0u8; 64];
            let _ = s.read(&mut sink).await;
        });
    }
}

fn sender_cert(opn: &[u8]) -> Certificate {
    let mut r = Reader::new(opn);
    r.skip(12, "Chunk").unwrap();
    let h = uatap_codec::secure::parse_asymmetric_security_header(&mut r).unwrap();
    Certificate::from_der(h.sender_certificate.as_bytes().unwrap()).unwrap()
}

fn opn_body(clear: &[u8]) -> usize {
    let mut r = Reader::new(clear);
    r.skip(12, "Chunk").unwrap();
    uatap_codec::secure::parse_asymmetric_security_header(&mut r).unwrap();
    r.position() + 8
}

/// The synthetic client: opens the channel to `receiver`, asks once, then opens and checks
/// every chunk of the stream. Returns the time from the first to the last message.
async fn client(
    addr: &str,
    key: &PrivateKey,
    own: &Certificate,
    receiver: &Certificate,
    n: usize,
) -> Duration {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.set_nodelay(true);
    s.write_all(&hello()).await.unwrap();
    let _ack = read_chunk(&mut s).await;
    let nonce = vec![3u8; 32];
    let body = encode(&Message {
        type_id: NodeId::numeric(0, ids::service::OPEN_SECURE_CHANNEL_REQUEST),
        body: ServiceBody::OpenSecureChannelRequest(OpenSecureChannelRequest {
            request_header: RequestHeader {
                authentication_token: NodeId::numeric(0, 0),
                timestamp: DateTime(133_000_000_000_000_000),
                request_handle: 1,
                return_diagnostics: 0,
                audit_entry_id: UaString::null(),
                timeout_hint: 10_000,
                additional_header: ExtensionObject::default(),
            },
            client_protocol_version: 0,
            request_type: 0,
            security_mode: 3,
            client_nonce: ByteString::from(&nonce[..]),
            requested_lifetime: 3_600_000,
        }),
    });
    let sealed = seal_asymmetric_chunk(
        &AsymmetricChunk {
            policy: POLICY,
            secure_channel_id: 0,
            sequence_header: SequenceHeader {
                sequence_number: 1,
                request_id: 1,
            },
            body: &body,
        },
        key,
        own,
        receiver,
    )
    .unwrap();
    s.write_all(&sealed).await.unwrap();
    let answer = read_chunk(&mut s).await;
    let clear = open_asymmetric_chunk(&answer, key).unwrap();
    let msg = parse_message(&mut Reader::new(&clear.chunk[opn_body(&clear.chunk)..])).unwrap();
    let ServiceBody::OpenSecureChannelResponse(r) = msg.body else {
        panic!("{msg:?}")
    };
    let keys = ChannelKeys::derive(POLICY, true, &nonce, r.server_nonce.as_bytes().unwrap());
    let (channel, token) = (r.security_token.channel_id, r.security_token.token_id);
    // A small first request (any service body will do: the server only waits for it).
    let start = encode(&Message {
        type_id: NodeId::numeric(0, ids::service::OPEN_SECURE_CHANNEL_RESPONSE),
        body: ServiceBody::OpenSecureChannelResponse(OpenSecureChannelResponse {
            response_header: response_header(),
            server_protocol_version: 0,
            security_token: r.security_token.clone(),
            server_nonce: ByteString::null(),
        }),
    });
    let c = SymmetricChunk {
        message_type: MessageType::Message,
        chunk_type: ChunkType::Final,
        secure_channel_id: channel,
        token_id: token,
        sequence_header: SequenceHeader {
            sequence_number: 2,
            request_id: 2,
        },
        body: &start,
    };
    s.write_all(&seal_symmetric_chunk(POLICY, &keys.client, true, &c).unwrap())
        .await
        .unwrap();
    let t0 = Instant::now();
    for _ in 0..n {
        let chunk = read_chunk(&mut s).await;
        open_symmetric_chunk(POLICY, &keys.server, true, &chunk).expect("every chunk verifies");
    }
    t0.elapsed()
}

/// A plain forwarder: copy_bidirectional per connection.
async fn forwarder(listener: TcpListener, upstream: String) {
    loop {
        let (mut c, _) = listener.accept().await.unwrap();
        let up = upstream.clone();
        tokio::spawn(async move {
            let mut s = TcpStream::connect(up).await.unwrap();
            let _ = c.set_nodelay(true);
            let _ = s.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
        });
    }
}

fn main() {
    let n: usize = std::env::var("UATAP_MITM_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let rounds: usize = std::env::var("UATAP_MITM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server_key = Arc::new(key("node-server"));
    let server_cert = cert(root().join("fixtures/keys/node-server/cert.der"));
    let client_key = key("asyncua-client");
    let client_cert = cert(root().join("fixtures/keys/asyncua-client/cert.der"));
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..n).map(|i| publish(i as u32 + 1)).collect());
    let msg_bytes: usize = bodies.iter().map(Vec::len).sum();
    let dir = std::env::temp_dir().join(format!("uatap-bench-mitm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_addr, fwd_addr) = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        tokio::spawn(server(
            l,
            server_key.clone(),
            server_cert.clone(),
            bodies.clone(),
        ));
        let f = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fa = f.local_addr().unwrap().to_string();
        tokio::spawn(forwarder(f, a.clone()));
        (a, fa)
    });
    // uatap in MITM mode, analysing every message, events to a file.
    let pki = dir.join("pki");
    let stderr = dir.join("proxy.err");
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &server_addr,
            "--mitm",
        ])
        .arg("--pki")
        .arg(&pki)
        .arg("--upstream-cert")
        .arg(root().join("fixtures/keys/node-server/cert.der"))
        .arg("--json-file")
        .arg(dir.join("events.jsonl"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("uatap");
    let mitm_addr = loop {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        if let Some(a) = text
            .lines()
            .filter(|l| l.contains("proxying"))
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("opc.tcp://"))
                    .map(str::to_string)
            })
        {
            break a;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let uatap_cert = cert(pki.join("own/cert.der"));
    let mut results: Vec<(&str, Vec<f64>)> = vec![
        ("direct", vec![]),
        ("forwarder", vec![]),
        ("uatap --mitm", vec![]),
    ];
    for _ in 0..rounds {
        for (name, times) in results.iter_mut() {
            let (addr, receiver) = match *name {
                "direct" => (server_addr.as_str(), &server_cert),
                "forwarder" => (fwd_addr.as_str(), &server_cert),
                _ => (mitm_addr.as_str(), &uatap_cert),
            };
            let d = rt.block_on(client(addr, &client_key, &client_cert, receiver, n));
            times.push(msg_bytes as f64 / d.as_secs_f64() / 1e6);
        }
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!("SignAndEncrypt Basic256Sha256 stream, {n} PublishResponses of {} bytes (100 items), {rounds} interleaved rounds, median MB/s of message bodies:", msg_bytes / n);
    let fwd = median(&results[1].1);
    for (name, v) in &results {
        let m = median(v);
        println!(
            "  {name:<14} {m:8.1} MB/s  ({:.2}x the forwarder)  rounds {v:.1?}",
            m / fwd
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
