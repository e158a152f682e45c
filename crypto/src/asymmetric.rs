//! Asymmetric security (OPC 10000-6 §6.7.2, §6.7.4): RSA encryption and signatures of OPN
//! chunks, and the same signatures over certificate + nonce that CreateSession and
//! ActivateSession carry.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    OaepPublicEncryptingKey, Pkcs1PublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature;
use uatap_codec::reader::Reader;
use uatap_codec::secure::{parse_asymmetric_security_header, SequenceHeader};
use uatap_codec::tcp::{parse_message_header, MessageType};

use crate::error::CryptoError;
use crate::keys::{sign_pkcs1_sha1, Certificate, PrivateKey};
use crate::policy::{AsymmetricEncryption, AsymmetricSignature, SecurityPolicy};
use crate::OpenedChunk;

/// Encrypts `plain` to the certificate's key, one RSA block per plaintext block.
pub fn rsa_encrypt(
    alg: AsymmetricEncryption,
    cert: &Certificate,
    plain: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key_size = cert.key_size();
    let block = key_size.saturating_sub(alg.overhead());
    if block == 0 {
        return Err(CryptoError::Key(
            "the certificate's RSA key is too small".into(),
        ));
    }
    let public = cert.encrypting_key()?;
    let mut out = Vec::with_capacity(plain.len().div_ceil(block).saturating_mul(key_size));
    let mut buf = vec![0u8; key_size];
    let fail = |_| CryptoError::Key("RSA encryption failed".into());
    match alg {
        AsymmetricEncryption::Pkcs1v15 => {
            let k = Pkcs1PublicEncryptingKey::new(public).map_err(fail)?;
            for piece in plain.chunks(block) {
                out.extend_from_slice(k.encrypt(piece, &mut buf).map_err(fail)?);
            }
        }
        AsymmetricEncryption::OaepSha1 | AsymmetricEncryption::OaepSha256 => {
            let k = OaepPublicEncryptingKey::new(public).map_err(fail)?;
            let a = if alg == AsymmetricEncryption::OaepSha1 {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            for piece in plain.chunks(block) {
                out.extend_from_slice(k.encrypt(a, piece, &mut buf, None).map_err(fail)?);
            }
        }
    }
    Ok(out)
}

/// Decrypts RSA blocks with the private key; `at` is the offset reported on failure.
pub fn rsa_decrypt(
    alg: AsymmetricEncryption,
    key: &PrivateKey,
    cipher: &[u8],
    at: usize,
) -> Result<Vec<u8>, CryptoError> {
    let size = key.size();
    if cipher.len().checked_rem(size).is_none_or(|r| r != 0) {
        return Err(CryptoError::Malformed {
            offset: at,
            what: "ciphertext not a whole number of RSA blocks of the private key's size",
        });
    }
    let mut out = Vec::with_capacity(cipher.len());
    let mut buf = vec![0u8; size];
    let fail = |_| CryptoError::Decrypt { offset: at };
    match alg {
        AsymmetricEncryption::Pkcs1v15 => {
            let k = key.pkcs1_decrypting();
            for block in cipher.chunks(size) {
                out.extend_from_slice(k.decrypt(block, &mut buf).map_err(fail)?);
            }
        }
        AsymmetricEncryption::OaepSha1 | AsymmetricEncryption::OaepSha256 => {
            let k = key.oaep_decrypting();
            let a = if alg == AsymmetricEncryption::OaepSha1 {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            for block in cipher.chunks(size) {
                out.extend_from_slice(k.decrypt(a, block, &mut buf, None).map_err(fail)?);
            }
        }
    }
    Ok(out)
}

/// Signs `data` with the private key.
pub fn rsa_sign(
    alg: AsymmetricSignature,
    key: &PrivateKey,
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let encoding: &'static dyn signature::RsaEncoding = match alg {
        AsymmetricSignature::Pkcs1Sha1 => return sign_pkcs1_sha1(key, data),
        AsymmetricSignature::Pkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
        AsymmetricSignature::PssSha256 => &signature::RSA_PSS_SHA256,
    };
    let mut sig = vec![0u8; key.size()];
    key.pair()
        .sign(encoding, &SystemRandom::new(), data, &mut sig)
        .map_err(|_| CryptoError::Sign)?;
    Ok(sig)
}

/// Checks a signature over `data` with the certificate's public key; `at` is the offset
/// reported on failure.
pub fn rsa_verify(
    alg: AsymmetricSignature,
    cert: &Certificate,
    data: &[u8],
    sig: &[u8],
    at: usize,
) -> Result<(), CryptoError> {
    let params: &'static signature::RsaParameters = match alg {
        AsymmetricSignature::Pkcs1Sha1 => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
        AsymmetricSignature::Pkcs1Sha256 => {
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
        }
        AsymmetricSignature::PssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
    };
    cert.verifier(params)
        .verify(data, sig)
        .map_err(|_| CryptoError::BadSignature { offset: at })
}

/// The clear parts of an OPN chunk, sealed or opened: what its security header names and where
/// the sequence header starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpnHeader {
    /// The policy named (`None` when the URI is not one uatap knows).
    pub policy: Option<SecurityPolicy>,
    /// The policy is None (or absent): the chunk is in clear.
    pub policy_none: bool,
    /// SenderCertificate, as sent (possibly with its chain).
    pub sender_certificate: Option<Vec<u8>>,
    /// Offset of the sequence header (the end of the security header).
    pub sequence_header_at: usize,
}

/// Reads the clear parts of an OPN chunk (`None` when they do not parse).
pub fn opn_header(chunk: &[u8]) -> Option<OpnHeader> {
    let mut r = Reader::new(chunk);
    r.skip(12, "Chunk").ok()?;
    let sec = parse_asymmetric_security_header(&mut r).ok()?;
    let policy_none = sec.is_policy_none();
    let policy = if policy_none {
        Some(SecurityPolicy::None)
    } else {
        SecurityPolicy::from_uri(sec.security_policy_uri.as_bytes().unwrap_or(&[]))
    };
    Some(OpnHeader {
        policy,
        policy_none,
        sender_certificate: sec.sender_certificate.as_bytes().map(<[u8]>::to_vec),
        sequence_header_at: r.position(),
    })
}

/// Reads the clear part of an OPN chunk: its policy, the sender certificate, and where the
/// encrypted part starts.
fn open_header(chunk: &[u8]) -> Result<(SecurityPolicy, Option<Vec<u8>>, usize), CryptoError> {
    let mut r = Reader::new(chunk);
    let header = parse_message_header(&mut r).map_err(|e| CryptoError::Malformed {
        offset: e.offset,
        what: "OPN header does not parse",
    })?;
    if header.message_type != MessageType::OpenSecureChannel
        || header.message_size as usize != chunk.len()
    {
        return Err(CryptoError::Malformed {
            offset: 0,
            what: "not one whole OPN chunk",
        });
    }
    let h = opn_header(chunk).ok_or(CryptoError::Malformed {
        offset: 12,
        what: "OPN security header does not parse",
    })?;
    let policy = h.policy.ok_or(CryptoError::Policy("unknown"))?;
    Ok((policy, h.sender_certificate, h.sequence_header_at))
}

/// Decrypts an OPN chunk with the receiver's private key, checks the signature with the
/// sender certificate it carries, and returns it in clear with padding and signature removed.
pub fn open_asymmetric_chunk(chunk: &[u8], key: &PrivateKey) -> Result<OpenedChunk, CryptoError> {
    let (policy, sender, header_len) = open_header(chunk)?;
    let (Some(enc), Some(sig_alg)) = (
        policy.asymmetric_encryption(),
        policy.asymmetric_signature(),
    ) else {
        return Err(CryptoError::Policy(policy.name()));
    };
    let sender = sender.ok_or(CryptoError::Malformed {
        offset: 12,
        what: "secured OPN without a sender certificate",
    })?;
    let sender = Certificate::from_der(&sender)?;
    let cipher = chunk.get(header_len..).unwrap_or(&[]);
    let plain = rsa_decrypt(enc, key, cipher, header_len)?;
    let sig_len = sender.key_size();
    let signed_len = plain
        .len()
        .checked_sub(sig_len)
        .ok_or(CryptoError::Malformed {
            offset: header_len,
            what: "shorter than the sender's signature",
        })?;
    let (signed_plain, sig) = plain.split_at(signed_len);
    let mut signed = Vec::with_capacity(header_len.saturating_add(signed_len));
    signed.extend_from_slice(chunk.get(..header_len).unwrap_or(&[]));
    signed.extend_from_slice(signed_plain);
    rsa_verify(sig_alg, &sender, &signed, sig, header_len)?;
    let body_end = strip_padding(signed_plain, key.size() > 256, header_len)?;
    Ok(OpenedChunk::assemble(
        chunk.get(..header_len).unwrap_or(&[]),
        signed_plain.get(..body_end).unwrap_or(&[]),
        header_len,
        policy,
    ))
}

/// Where the padding starts in `plain` (sequence header, body, padding, PaddingSize and, for
/// keys over 2048 bits, ExtraPaddingSize).
pub(crate) fn strip_padding(plain: &[u8], extra: bool, at: usize) -> Result<usize, CryptoError> {
    let bad = CryptoError::Malformed {
        offset: at,
        what: "padding runs past the sequence header",
    };
    let last = plain.len().checked_sub(1).ok_or(bad.clone())?;
    let (n, size_bytes) = if extra {
        let hi = usize::from(*plain.get(last).ok_or(bad.clone())?);
        let lo = usize::from(
            *plain
                .get(last.checked_sub(1).ok_or(bad.clone())?)
                .ok_or(bad.clone())?,
        );
        ((hi << 8) | lo, 2usize)
    } else {
        (usize::from(*plain.get(last).ok_or(bad.clone())?), 1usize)
    };
    let end = plain
        .len()
        .checked_sub(n.saturating_add(size_bytes))
        .ok_or(bad.clone())?;
    if end < 8 {
        return Err(bad);
    }
    Ok(end)
}

/// The pieces of an OPN chunk to secure.
pub struct AsymmetricChunk<'a> {
    /// The policy of the channel.
    pub policy: SecurityPolicy,
    /// SecureChannelId (0 in the first request).
    pub secure_channel_id: u32,
    /// Sequence header.
    pub sequence_header: SequenceHeader,
    /// The body: encoding NodeId and the OpenSecureChannel request or response.
    pub body: &'a [u8],
}

/// Builds a signed and encrypted OPN chunk from the sender's key and certificate to the
/// receiver's certificate.
pub fn seal_asymmetric_chunk(
    c: &AsymmetricChunk<'_>,
    sender_key: &PrivateKey,
    sender_cert: &Certificate,
    receiver: &Certificate,
) -> Result<Vec<u8>, CryptoError> {
    let (Some(enc), Some(sig_alg)) = (
        c.policy.asymmetric_encryption(),
        c.policy.asymmetric_signature(),
    ) else {
        return Err(CryptoError::Policy(c.policy.name()));
    };
    let uri = c.policy.uri();
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"OPNF\0\0\0\0");
    out.extend_from_slice(&c.secure_channel_id.to_le_bytes());
    put_bytes(&mut out, uri.as_bytes());
    put_bytes(&mut out, sender_cert.der());
    put_bytes(&mut out, receiver.thumbprint());
    let header_len = out.len();
    let cipher_block = receiver.key_size();
    let plain_block = cipher_block.saturating_sub(enc.overhead()).max(1);
    let extra = cipher_block > 256;
    let sig_len = sender_key.size();
    let unpadded = 8usize
        .saturating_add(c.body.len())
        .saturating_add(1)
        .saturating_add(usize::from(extra))
        .saturating_add(sig_len);
    let pad = pad_len(unpadded, plain_block);
    let plain_len = unpadded.saturating_add(pad);
    let size = header_len.saturating_add(
        plain_len
            .checked_div(plain_block)
            .unwrap_or(0)
            .saturating_mul(cipher_block),
    );
    let size32 = u32::try_from(size).map_err(|_| CryptoError::TooBig {
        needed: size,
        limit: u32::MAX as usize,
    })?;
    out.splice(4..8, size32.to_le_bytes());
    let mut plain = Vec::with_capacity(plain_len);
    plain.extend_from_slice(&c.sequence_header.sequence_number.to_le_bytes());
    plain.extend_from_slice(&c.sequence_header.request_id.to_le_bytes());
    plain.extend_from_slice(c.body);
    let lo = (pad & 0xFF) as u8;
    plain.extend(std::iter::repeat_n(lo, pad.saturating_add(1)));
    if extra {
        plain.push((pad >> 8) as u8);
    }
    let mut signed = out.clone();
    signed.extend_from_slice(&plain);
    plain.extend_from_slice(&rsa_sign(sig_alg, sender_key, &signed)?);
    out.extend_from_slice(&rsa_encrypt(enc, receiver, &plain)?);
    debug_assert_eq!(out.len(), size);
    Ok(out)
}

/// Bytes of padding that bring `len` to a multiple of `block`.
pub(crate) fn pad_len(len: usize, block: usize) -> usize {
    let rem = len.checked_rem(block).unwrap_or(0);
    if rem == 0 {
        0
    } else {
        block.saturating_sub(rem)
    }
}

/// Appends a ByteString.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as i32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Encrypts a user secret (a UserNameIdentityToken password) to the server certificate, the
/// legacy RSA layout of OPC 10000-4 §7.41.2.2: `UInt32 length | secret | serverNonce`, where
/// length counts secret and nonce.
pub fn encrypt_user_secret(
    alg: AsymmetricEncryption,
    server: &Certificate,
    secret: &[u8],
    server_nonce: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let len = secret.len().saturating_add(server_nonce.len());
    let len32 = u32::try_from(len).map_err(|_| CryptoError::TooBig {
        needed: len,
        limit: u32::MAX as usize,
    })?;
    let mut plain = Vec::with_capacity(len.saturating_add(4));
    plain.extend_from_slice(&len32.to_le_bytes());
    plain.extend_from_slice(secret);
    plain.extend_from_slice(server_nonce);
    let out = rsa_encrypt(alg, server, &plain);
    // The clear secret does not outlive the call.
    plain.iter_mut().for_each(|b| *b = 0);
    out
}

/// The secret of [`encrypt_user_secret`] back, checking the length field and the nonce.
pub fn decrypt_user_secret(
    alg: AsymmetricEncryption,
    key: &PrivateKey,
    cipher: &[u8],
    server_nonce: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let plain = rsa_decrypt(alg, key, cipher, 0)?;
    let bad = |what| CryptoError::Malformed { offset: 0, what };
    let (len, rest) = plain
        .split_first_chunk::<4>()
        .ok_or(bad("shorter than its length field"))?;
    let len = u32::from_le_bytes(*len) as usize;
    let rest = rest.get(..len).ok_or(bad("length field past the end"))?;
    let secret_len = len
        .checked_sub(server_nonce.len())
        .ok_or(bad("shorter than the nonce"))?;
    let (secret, nonce) = rest.split_at(secret_len);
    if nonce != server_nonce {
        return Err(bad("not the server nonce"));
    }
    Ok(secret.to_vec())
}
