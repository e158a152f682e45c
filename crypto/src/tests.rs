//! Round trips of every policy, the key derivation against a real capture's keys, and what
//! happens with wrong keys or damaged chunks.

use proptest::prelude::*;
use uatap_codec::secure::SequenceHeader;
use uatap_codec::tcp::{ChunkType, MessageType};

use crate::asymmetric::{
    open_asymmetric_chunk, rsa_sign, rsa_verify, seal_asymmetric_chunk, AsymmetricChunk,
};
use crate::keys::{Certificate, PrivateKey};
use crate::policy::{SecurityPolicy, ALL_POLICIES};
use crate::symmetric::{open_symmetric_chunk, seal_symmetric_chunk, ChannelKeys, SymmetricChunk};
use crate::CryptoError;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A key and a self-signed certificate for it.
fn app() -> (PrivateKey, Certificate) {
    let key = PrivateKey::generate().unwrap();
    let pair = rcgen::KeyPair::try_from(key.pkcs8_der()).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    let cert = Certificate::from_der(cert.der()).unwrap();
    assert!(cert.matches(&key));
    (key, cert)
}

fn secured() -> impl Iterator<Item = SecurityPolicy> {
    ALL_POLICIES
        .into_iter()
        .filter(|p| *p != SecurityPolicy::None)
}

/// The keys of fixtures/encrypt-b256sha256.pcapng, computed independently from its nonces
/// (see its .md): P_SHA256 and the order signing key, encrypting key, IV.
#[test]
fn key_derivation_matches_the_capture() {
    let client_nonce = unhex("08f5e1d2daec9594aaa13cf87c17e91a3b948abfc7cefef94fc1d01493014f80");
    let server_nonce = unhex("e9f7d47e1959b8f2fa17be198a9f1d22e4b51d5b7c2b1bf9423e879c992beebb");
    let k = ChannelKeys::derive(
        SecurityPolicy::Basic256Sha256,
        true,
        &client_nonce,
        &server_nonce,
    );
    let (sig, enc, iv) = k.client.parts();
    assert_eq!(
        sig,
        unhex("2605f0b40a983c6d7a2ae7ef470f949626f3f6f1c4d4a68dd3a3a98f43095e45")
    );
    assert_eq!(
        enc,
        unhex("97a35cee92698997ac62a45408d95012c18e5b41f6be0bdd0e2e0a031ebc3b53")
    );
    assert_eq!(iv.to_vec(), unhex("e846649285ece896b8ad6d975a5f002f"));
    let (sig, enc, iv) = k.server.parts();
    assert_eq!(
        sig,
        unhex("c304e73baa112dc4eba56c3c4642de0a14dbe6093720286baa7d6e1b4d2f5f5f")
    );
    assert_eq!(
        enc,
        unhex("14773e8bfd1a3dadf20bb1d893d7a84859c11ef0aed1f186b5826362ee468573")
    );
    assert_eq!(iv.to_vec(), unhex("3c530b37a0d4ed1145388e94bb6271db"));
    assert!(
        !format!("{:?}", k.client).contains("26 05"),
        "keys never printed"
    );
}

#[test]
fn opn_chunks_round_trip_under_every_policy() {
    let (client_key, client_cert) = app();
    let (server_key, server_cert) = app();
    let body: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    for policy in secured() {
        let c = AsymmetricChunk {
            policy,
            secure_channel_id: 0,
            sequence_header: SequenceHeader {
                sequence_number: 1,
                request_id: 1,
            },
            body: &body,
        };
        let sealed = seal_asymmetric_chunk(&c, &client_key, &client_cert, &server_cert).unwrap();
        assert_eq!(
            u32::from_le_bytes(sealed[4..8].try_into().unwrap()) as usize,
            sealed.len(),
            "{policy}: MessageSize"
        );
        let opened = open_asymmetric_chunk(&sealed, &server_key).unwrap();
        assert_eq!(opened.policy, policy);
        let seq_and_body = &opened.chunk[opened.header_len..];
        assert_eq!(&seq_and_body[..8], &[1, 0, 0, 0, 1, 0, 0, 0], "{policy}");
        assert_eq!(&seq_and_body[8..], &body[..], "{policy}");
        // The client's own key does not open what was encrypted to the server.
        assert!(
            open_asymmetric_chunk(&sealed, &client_key).is_err(),
            "{policy}"
        );
        // A changed byte in the clear header breaks the signature.
        let mut tampered = sealed.clone();
        tampered[9] ^= 1;
        assert!(
            matches!(
                open_asymmetric_chunk(&tampered, &server_key),
                Err(CryptoError::BadSignature { .. })
            ),
            "{policy}"
        );
    }
}

#[test]
fn signatures_of_every_policy_verify_and_detect_changes() {
    let (key, cert) = app();
    for policy in secured() {
        let alg = policy.asymmetric_signature().unwrap();
        let sig = rsa_sign(alg, &key, b"certificate and nonce").unwrap();
        assert_eq!(sig.len(), 256);
        rsa_verify(alg, &cert, b"certificate and nonce", &sig, 0).unwrap();
        assert!(rsa_verify(alg, &cert, b"certificate and nonce!", &sig, 0).is_err());
    }
}

fn seal_open(policy: SecurityPolicy, encrypted: bool, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let keys = ChannelKeys::derive(policy, encrypted, &[1; 32], &[2; 32]);
    let c = SymmetricChunk {
        message_type: MessageType::Message,
        chunk_type: ChunkType::Final,
        secure_channel_id: 7,
        token_id: 3,
        sequence_header: SequenceHeader {
            sequence_number: 52,
            request_id: 9,
        },
        body,
    };
    let sealed = seal_symmetric_chunk(policy, &keys.client, encrypted, &c)?;
    if encrypted {
        assert_eq!((sealed.len() - 16) % 16, 0);
        if body.len() >= 16 {
            assert!(
                !sealed.windows(16).any(|w| w == &body[..16]),
                "the body is not in clear"
            );
        }
    }
    // The server's keys do not open what the client sent.
    assert!(open_symmetric_chunk(policy, &keys.server, encrypted, &sealed).is_err());
    let opened = open_symmetric_chunk(policy, &keys.client, encrypted, &sealed)?;
    Ok(opened.chunk[opened.header_len + 8..].to_vec())
}

#[test]
fn msg_chunks_round_trip_signed_and_encrypted() {
    for policy in secured() {
        for encrypted in [false, true] {
            for len in [0usize, 1, 15, 16, 17, 100, 8000] {
                let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
                assert_eq!(
                    seal_open(policy, encrypted, &body).unwrap(),
                    body,
                    "{policy} {encrypted} {len}"
                );
            }
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_is_caught() {
    let policy = SecurityPolicy::Basic256Sha256;
    let keys = ChannelKeys::derive(policy, true, &[1; 32], &[2; 32]);
    let c = SymmetricChunk {
        message_type: MessageType::Message,
        chunk_type: ChunkType::Final,
        secure_channel_id: 7,
        token_id: 3,
        sequence_header: SequenceHeader {
            sequence_number: 1,
            request_id: 1,
        },
        body: b"PublishResponse",
    };
    let sealed = seal_symmetric_chunk(policy, &keys.server, true, &c).unwrap();
    for i in 8..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 0x10;
        assert!(
            open_symmetric_chunk(policy, &keys.server, true, &t).is_err(),
            "byte {i}"
        );
    }
    // Truncated or not whole blocks: an error with an offset, no panic.
    for n in 0..sealed.len() {
        let _ = open_symmetric_chunk(policy, &keys.server, true, &sealed[..n]);
        let _ = open_symmetric_chunk(policy, &keys.server, false, &sealed[..n]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn symmetric_round_trip(body in proptest::collection::vec(any::<u8>(), 0..3000), p in 0usize..5, enc: bool) {
        let policy = secured().nth(p).unwrap();
        prop_assert_eq!(seal_open(policy, enc, &body).unwrap(), body);
    }

    #[test]
    fn opening_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let keys = ChannelKeys::derive(SecurityPolicy::Basic256Sha256, true, &[1; 32], &[2; 32]);
        let _ = open_symmetric_chunk(SecurityPolicy::Basic256Sha256, &keys.client, true, &bytes);
        let _ = open_symmetric_chunk(SecurityPolicy::Basic128Rsa15, &keys.client, false, &bytes);
    }
}

#[test]
fn user_secrets_round_trip_under_every_policy() {
    use crate::asymmetric::{decrypt_user_secret, encrypt_user_secret};
    let (server_key, server_cert) = app();
    let nonce = [7u8; 32];
    for policy in secured() {
        let alg = policy.asymmetric_encryption().unwrap();
        let c = encrypt_user_secret(alg, &server_cert, b"s3cret", &nonce).unwrap();
        assert_eq!(c.len() % 256, 0, "{policy}: whole RSA blocks");
        assert_eq!(
            decrypt_user_secret(alg, &server_key, &c, &nonce).unwrap(),
            b"s3cret"
        );
        assert!(decrypt_user_secret(alg, &server_key, &c, &[8u8; 32]).is_err());
    }
}

#[test]
fn a_client_reads_the_answer_to_its_own_opn() {
    use crate::passive::KeyStore;
    use uatap_codec::reassembly::ChunkOpener;
    let (client_key, client_cert) = app();
    let (server_key, server_cert) = app();
    let client_nonce = [1u8; 32];
    let server_nonce = [2u8; 32];
    let policy = SecurityPolicy::Basic256Sha256;
    let store = KeyStore::new(vec![("probe".into(), client_key)]);
    let (mut c2s, mut s2c, own) = store.client_openers();
    // The request is encrypted to the server: the client's key cannot open it.
    let (ck, _) = app();
    let req = seal_asymmetric_chunk(
        &AsymmetricChunk {
            policy,
            secure_channel_id: 0,
            sequence_header: SequenceHeader {
                sequence_number: 1,
                request_id: 1,
            },
            body: b"request",
        },
        &ck,
        &client_cert,
        &server_cert,
    )
    .unwrap();
    own.sent(true, &client_nonce);
    assert!(c2s.open(&req).is_none());
    // The response: OpenSecureChannelResponse (i=449) with TokenId 5 and the server nonce.
    let mut body = vec![0x01, 0x00, 0xC1, 0x01];
    body.extend_from_slice(&[0; 8]); // Timestamp
    body.extend_from_slice(&1u32.to_le_bytes()); // RequestHandle
    body.extend_from_slice(&0u32.to_le_bytes()); // ServiceResult
    body.push(0); // ServiceDiagnostics
    body.extend_from_slice(&(-1i32).to_le_bytes()); // StringTable
    body.extend_from_slice(&[0, 0, 0]); // AdditionalHeader
    body.extend_from_slice(&0u32.to_le_bytes()); // ServerProtocolVersion
    body.extend_from_slice(&9u32.to_le_bytes()); // ChannelId
    body.extend_from_slice(&5u32.to_le_bytes()); // TokenId
    body.extend_from_slice(&[0; 8]); // CreatedAt
    body.extend_from_slice(&600_000u32.to_le_bytes()); // RevisedLifetime
    body.extend_from_slice(&32i32.to_le_bytes());
    body.extend_from_slice(&server_nonce);
    let resp = seal_asymmetric_chunk(
        &AsymmetricChunk {
            policy,
            secure_channel_id: 9,
            sequence_header: SequenceHeader {
                sequence_number: 1,
                request_id: 1,
            },
            body: &body,
        },
        &server_key,
        &server_cert,
        &client_cert,
    )
    .unwrap();
    assert!(s2c.open(&resp).unwrap().is_ok());
    // Now the server's MSG chunks under token 5 open.
    let keys = ChannelKeys::derive(policy, true, &client_nonce, &server_nonce);
    let msg = seal_symmetric_chunk(
        policy,
        &keys.server,
        true,
        &SymmetricChunk {
            message_type: MessageType::Message,
            chunk_type: ChunkType::Final,
            secure_channel_id: 9,
            token_id: 5,
            sequence_header: SequenceHeader {
                sequence_number: 2,
                request_id: 2,
            },
            body: b"hello",
        },
    )
    .unwrap();
    let clear = s2c.open(&msg).unwrap().unwrap();
    assert!(clear.ends_with(b"hello"));
}
