//! Symmetric security (OPC 10000-6 §6.7.5, §6.7.6): the keys both sides derive from the OPN
//! nonces, and the HMAC signature and AES-CBC encryption of MSG and CLO chunks.

use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::hmac;
use uatap_codec::secure::SequenceHeader;
use uatap_codec::tcp::{ChunkType, MessageType};

use crate::asymmetric::{pad_len, strip_padding};
use crate::error::CryptoError;
use crate::policy::{SecurityPolicy, SymmetricHash};
use crate::OpenedChunk;

/// AES block and IV length.
const AES_BLOCK: usize = 16;
/// Bytes before the encrypted part of a MSG/CLO chunk: message header, SecureChannelId, TokenId.
pub const SYMMETRIC_HEADER_LEN: usize = 16;

/// The keys one side uses for the chunks it sends.
#[derive(Clone, PartialEq, Eq)]
pub struct SymmetricKeys {
    signing: Vec<u8>,
    encrypting: Vec<u8>,
    iv: [u8; AES_BLOCK],
}

impl std::fmt::Debug for SymmetricKeys {
    /// Keys are secrets: only their lengths are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SymmetricKeys(signing {} bytes, encrypting {} bytes)",
            self.signing.len(),
            self.encrypting.len()
        )
    }
}

impl SymmetricKeys {
    /// Derives the keys of one side: P_hash(secret, seed) cut into signing key, encrypting key
    /// and IV.
    pub fn derive(policy: SecurityPolicy, secret: &[u8], seed: &[u8]) -> Self {
        let sig = policy.signing_key_len();
        let enc = policy.encrypting_key_len();
        let hash = policy.symmetric_hash().unwrap_or(SymmetricHash::Sha256);
        let out = p_hash(
            hash,
            secret,
            seed,
            sig.saturating_add(enc).saturating_add(AES_BLOCK),
        );
        let (signing, rest) = out.split_at(sig.min(out.len()));
        let (encrypting, iv_bytes) = rest.split_at(enc.min(rest.len()));
        let mut iv = [0u8; AES_BLOCK];
        let n = iv_bytes.len().min(AES_BLOCK);
        iv.get_mut(..n)
            .unwrap_or(&mut [])
            .copy_from_slice(iv_bytes.get(..n).unwrap_or(&[]));
        SymmetricKeys {
            signing: signing.to_vec(),
            encrypting: encrypting.to_vec(),
            iv,
        }
    }

    /// Builds keys from known parts (a key file exported for Wireshark, a test vector).
    pub fn from_parts(signing: Vec<u8>, encrypting: Vec<u8>, iv: [u8; 16]) -> Self {
        SymmetricKeys {
            signing,
            encrypting,
            iv,
        }
    }

    /// The signing key, the AES key and the IV, for a key export.
    pub fn parts(&self) -> (&[u8], &[u8], &[u8; 16]) {
        (&self.signing, &self.encrypting, &self.iv)
    }

    fn hmac_key(&self, hash: SymmetricHash) -> hmac::Key {
        let alg = match hash {
            SymmetricHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            SymmetricHash::Sha256 => hmac::HMAC_SHA256,
        };
        hmac::Key::new(alg, &self.signing)
    }

    fn aes_key(&self) -> Result<UnboundCipherKey, CryptoError> {
        let alg = if self.encrypting.len() == 16 {
            &AES_128
        } else {
            &AES_256
        };
        UnboundCipherKey::new(alg, &self.encrypting)
            .map_err(|_| CryptoError::Key("bad AES key length".into()))
    }
}

/// TLS P_hash (RFC 2246 §5) with HMAC-SHA1 or HMAC-SHA256: `len` bytes from secret and seed.
pub fn p_hash(hash: SymmetricHash, secret: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let alg = match hash {
        SymmetricHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        SymmetricHash::Sha256 => hmac::HMAC_SHA256,
    };
    let key = hmac::Key::new(alg, secret);
    let mut out = Vec::with_capacity(len.saturating_add(32));
    let mut a = hmac::sign(&key, seed).as_ref().to_vec();
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&a);
        ctx.update(seed);
        out.extend_from_slice(ctx.sign().as_ref());
        a = hmac::sign(&key, &a).as_ref().to_vec();
    }
    out.truncate(len);
    out
}

/// Both sides' keys of one security token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    /// The policy.
    pub policy: SecurityPolicy,
    /// True for SignAndEncrypt, false for Sign.
    pub encrypted: bool,
    /// Keys of the chunks the client sends.
    pub client: SymmetricKeys,
    /// Keys of the chunks the server sends.
    pub server: SymmetricKeys,
}

impl ChannelKeys {
    /// Derives both key sets from the two nonces of an OpenSecureChannel exchange.
    pub fn derive(
        policy: SecurityPolicy,
        encrypted: bool,
        client_nonce: &[u8],
        server_nonce: &[u8],
    ) -> Self {
        ChannelKeys {
            policy,
            encrypted,
            client: SymmetricKeys::derive(policy, server_nonce, client_nonce),
            server: SymmetricKeys::derive(policy, client_nonce, server_nonce),
        }
    }
}

/// Checks and opens a MSG or CLO chunk sent with `keys`: decrypts it when `encrypted`,
/// verifies the HMAC, removes padding and signature.
pub fn open_symmetric_chunk(
    policy: SecurityPolicy,
    keys: &SymmetricKeys,
    encrypted: bool,
    chunk: &[u8],
) -> Result<OpenedChunk, CryptoError> {
    let hash = policy.symmetric_hash().ok_or(CryptoError::Policy("None"))?;
    let header = chunk
        .get(..SYMMETRIC_HEADER_LEN)
        .ok_or(CryptoError::Malformed {
            offset: 0,
            what: "shorter than a symmetric chunk header",
        })?;
    let mut rest = chunk.get(SYMMETRIC_HEADER_LEN..).unwrap_or(&[]).to_vec();
    if encrypted {
        if rest.is_empty() || rest.len() % AES_BLOCK != 0 {
            return Err(CryptoError::Malformed {
                offset: SYMMETRIC_HEADER_LEN,
                what: "encrypted part not a whole number of AES blocks",
            });
        }
        let key = DecryptingKey::cbc(keys.aes_key()?)
            .map_err(|_| CryptoError::Key("bad AES key".into()))?;
        key.decrypt(&mut rest, DecryptionContext::Iv128(keys.iv.into()))
            .map_err(|_| CryptoError::Decrypt {
                offset: SYMMETRIC_HEADER_LEN,
            })?;
    }
    let sig_len = hash.signature_len();
    let signed_len = rest
        .len()
        .checked_sub(sig_len)
        .ok_or(CryptoError::Malformed {
            offset: SYMMETRIC_HEADER_LEN,
            what: "shorter than its signature",
        })?;
    let sig_at = SYMMETRIC_HEADER_LEN.saturating_add(signed_len);
    let (signed_part, sig) = rest.split_at(signed_len);
    let mut ctx = hmac::Context::with_key(&keys.hmac_key(hash));
    ctx.update(header);
    ctx.update(signed_part);
    let tag = ctx.sign();
    if !constant_time_eq(tag.as_ref(), sig) {
        return Err(CryptoError::BadSignature { offset: sig_at });
    }
    let body_end = if encrypted {
        strip_padding(signed_part, false, SYMMETRIC_HEADER_LEN)?
    } else if signed_len >= 8 {
        signed_len
    } else {
        return Err(CryptoError::Malformed {
            offset: SYMMETRIC_HEADER_LEN,
            what: "no sequence header",
        });
    };
    Ok(OpenedChunk::assemble(
        header,
        signed_part.get(..body_end).unwrap_or(&[]),
        SYMMETRIC_HEADER_LEN,
        policy,
    ))
}

/// Opens a SignAndEncrypt MSG or CLO chunk with the AES key and IV only (a key log, which has
/// no signing keys): decrypts, drops the `signature_len` bytes of signature unchecked and the
/// padding.
pub fn open_symmetric_chunk_unverified(
    policy_hint: SecurityPolicy,
    encrypting_key: &[u8],
    iv: &[u8; 16],
    signature_len: usize,
    chunk: &[u8],
) -> Result<OpenedChunk, CryptoError> {
    let header = chunk
        .get(..SYMMETRIC_HEADER_LEN)
        .ok_or(CryptoError::Malformed {
            offset: 0,
            what: "shorter than a symmetric chunk header",
        })?;
    let mut rest = chunk.get(SYMMETRIC_HEADER_LEN..).unwrap_or(&[]).to_vec();
    if rest.is_empty() || rest.len().checked_rem(AES_BLOCK) != Some(0) {
        return Err(CryptoError::Malformed {
            offset: SYMMETRIC_HEADER_LEN,
            what: "encrypted part not a whole number of AES blocks",
        });
    }
    let keys = SymmetricKeys::from_parts(Vec::new(), encrypting_key.to_vec(), *iv);
    let key =
        DecryptingKey::cbc(keys.aes_key()?).map_err(|_| CryptoError::Key("bad AES key".into()))?;
    key.decrypt(&mut rest, DecryptionContext::Iv128(keys.iv.into()))
        .map_err(|_| CryptoError::Decrypt {
            offset: SYMMETRIC_HEADER_LEN,
        })?;
    let signed_len = rest
        .len()
        .checked_sub(signature_len)
        .ok_or(CryptoError::Malformed {
            offset: SYMMETRIC_HEADER_LEN,
            what: "shorter than its signature",
        })?;
    let signed_part = rest.get(..signed_len).unwrap_or(&[]);
    let body_end = strip_padding(signed_part, false, SYMMETRIC_HEADER_LEN)?;
    // Without the signing key, the padding is the only check: every padding byte holds its
    // count.
    let pad = signed_part.get(body_end..).unwrap_or(&[]);
    let n = pad.last().copied().unwrap_or(0);
    if pad.iter().any(|b| *b != n) {
        return Err(CryptoError::Decrypt {
            offset: SYMMETRIC_HEADER_LEN,
        });
    }
    Ok(OpenedChunk::assemble(
        header,
        signed_part.get(..body_end).unwrap_or(&[]),
        SYMMETRIC_HEADER_LEN,
        policy_hint,
    ))
}

/// Compares two MACs without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The pieces of a MSG or CLO chunk to secure.
pub struct SymmetricChunk<'a> {
    /// MSG or CLO.
    pub message_type: MessageType,
    /// F, C or A.
    pub chunk_type: ChunkType,
    /// SecureChannelId.
    pub secure_channel_id: u32,
    /// TokenId of the keys.
    pub token_id: u32,
    /// Sequence header.
    pub sequence_header: SequenceHeader,
    /// The body piece of this chunk.
    pub body: &'a [u8],
}

/// The room a chunk of `chunk_size` bytes leaves for the body under this protection.
pub fn max_body_size(policy: SecurityPolicy, encrypted: bool, chunk_size: usize) -> usize {
    let sig = policy
        .symmetric_hash()
        .map_or(0, SymmetricHash::signature_len);
    let room = chunk_size.saturating_sub(SYMMETRIC_HEADER_LEN);
    if encrypted {
        // Whole blocks, one padding byte at least, then the signature.
        room.saturating_sub(room.checked_rem(AES_BLOCK).unwrap_or(0))
            .saturating_sub(sig)
            .saturating_sub(1)
            .saturating_sub(8)
    } else {
        room.saturating_sub(sig).saturating_sub(8)
    }
}

/// Builds a signed (and, when `encrypted`, padded and encrypted) MSG or CLO chunk.
pub fn seal_symmetric_chunk(
    policy: SecurityPolicy,
    keys: &SymmetricKeys,
    encrypted: bool,
    c: &SymmetricChunk<'_>,
) -> Result<Vec<u8>, CryptoError> {
    let hash = policy.symmetric_hash().ok_or(CryptoError::Policy("None"))?;
    let sig_len = hash.signature_len();
    let unpadded = 8usize
        .saturating_add(c.body.len())
        .saturating_add(sig_len)
        .saturating_add(usize::from(encrypted));
    let pad = if encrypted {
        pad_len(unpadded, AES_BLOCK)
    } else {
        0
    };
    let size = SYMMETRIC_HEADER_LEN
        .saturating_add(unpadded)
        .saturating_add(pad);
    let size32 = u32::try_from(size).map_err(|_| CryptoError::TooBig {
        needed: size,
        limit: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(c.message_type.as_bytes());
    out.push(c.chunk_type.as_byte());
    out.extend_from_slice(&size32.to_le_bytes());
    out.extend_from_slice(&c.secure_channel_id.to_le_bytes());
    out.extend_from_slice(&c.token_id.to_le_bytes());
    out.extend_from_slice(&c.sequence_header.sequence_number.to_le_bytes());
    out.extend_from_slice(&c.sequence_header.request_id.to_le_bytes());
    out.extend_from_slice(c.body);
    if encrypted {
        out.extend(std::iter::repeat_n(
            (pad & 0xFF) as u8,
            pad.saturating_add(1),
        ));
    }
    let tag = hmac::sign(&keys.hmac_key(hash), &out);
    out.extend_from_slice(tag.as_ref());
    if encrypted {
        let key = EncryptingKey::cbc(keys.aes_key()?)
            .map_err(|_| CryptoError::Key("bad AES key".into()))?;
        let tail = out.get_mut(SYMMETRIC_HEADER_LEN..).unwrap_or(&mut []);
        key.less_safe_encrypt(tail, EncryptionContext::Iv128(keys.iv.into()))
            .map_err(|_| CryptoError::Key("AES encryption failed".into()))?;
    }
    Ok(out)
}
