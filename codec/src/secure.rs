//! UA Secure Conversation chunks (OPC 10000-6 §6.7.2): the SecureChannelId, the asymmetric (OPN)
//! or symmetric (MSG, CLO) security header, the sequence header and the body.
//!
//! The codec does not decrypt: when a chunk is encrypted it reports every clear-text field and
//! marks the rest as protected; when it is signed only, the signature is cut off the body.

use bytes::BufMut;

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::tcp::{parse_message_header, ChunkType, MessageHeader, MessageType, MESSAGE_HEADER_LEN};
use crate::types::{ByteString, Decode, UaString};
use crate::Encode;

/// SecurityPolicyUri of the None policy.
pub const SECURITY_POLICY_NONE_URI: &str = "http://opcfoundation.org/UA/SecurityPolicy#None";

/// Prefix shared by every standard SecurityPolicyUri.
pub const SECURITY_POLICY_URI_PREFIX: &str = "http://opcfoundation.org/UA/SecurityPolicy#";

/// Length of the sequence header (SequenceNumber, RequestId).
pub const SEQUENCE_HEADER_LEN: usize = 8;

/// The asymmetric security header of an OPN chunk (§6.7.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsymmetricSecurityHeader<'a> {
    /// The security policy the sender wants, e.g. `…#Basic256Sha256`.
    pub security_policy_uri: UaString<'a>,
    /// DER certificate of the sender (possibly followed by its chain); null with policy None.
    pub sender_certificate: ByteString<'a>,
    /// SHA-1 of the receiver's certificate; null when not encrypted.
    pub receiver_certificate_thumbprint: ByteString<'a>,
}

/// Parses an asymmetric security header.
pub fn parse_asymmetric_security_header<'a>(
    r: &mut Reader<'a>,
) -> Result<AsymmetricSecurityHeader<'a>, DecodeError> {
    Ok(AsymmetricSecurityHeader {
        security_policy_uri: UaString::decode(r)?,
        sender_certificate: ByteString::decode(r)?,
        receiver_certificate_thumbprint: ByteString::decode(r)?,
    })
}

impl AsymmetricSecurityHeader<'_> {
    /// True when the policy is None (or absent): the OPN is then plain text.
    pub fn is_policy_none(&self) -> bool {
        match self.security_policy_uri.as_bytes() {
            None => true,
            Some(b) => b.is_empty() || b == SECURITY_POLICY_NONE_URI.as_bytes(),
        }
    }

    /// The short policy name, e.g. `Basic256Sha256` (the part after `#`), lossily decoded.
    pub fn policy_name(&self) -> Option<String> {
        let uri = self.security_policy_uri.as_bytes()?;
        let uri = String::from_utf8_lossy(uri);
        Some(match uri.rsplit_once('#') {
            Some((_, name)) => name.to_string(),
            None => uri.into_owned(),
        })
    }
}

impl Encode for AsymmetricSecurityHeader<'_> {
    fn encoded_len(&self) -> usize {
        self.security_policy_uri
            .encoded_len()
            .saturating_add(self.sender_certificate.encoded_len())
            .saturating_add(self.receiver_certificate_thumbprint.encoded_len())
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.security_policy_uri.encode(out);
        self.sender_certificate.encode(out);
        self.receiver_certificate_thumbprint.encode(out);
    }
}

/// The security header of a chunk: asymmetric for OPN, symmetric (TokenId) for MSG and CLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityHeader<'a> {
    /// OPN: policy, sender certificate, receiver thumbprint.
    Asymmetric(AsymmetricSecurityHeader<'a>),
    /// MSG, CLO: the TokenId of the channel's security token.
    Symmetric {
        /// ChannelSecurityToken.TokenId in use.
        token_id: u32,
    },
}

impl Encode for SecurityHeader<'_> {
    fn encoded_len(&self) -> usize {
        match self {
            SecurityHeader::Asymmetric(a) => a.encoded_len(),
            SecurityHeader::Symmetric { .. } => 4,
        }
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        match self {
            SecurityHeader::Asymmetric(a) => a.encode(out),
            SecurityHeader::Symmetric { token_id } => out.put_u32_le(*token_id),
        }
    }
}

/// The sequence header (§6.7.2.4): per-chunk sequence number and the request it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SequenceHeader {
    /// +1 for every chunk the sender sends on the channel.
    pub sequence_number: u32,
    /// Chosen by the client; shared by every chunk of a request and of its response.
    pub request_id: u32,
}

/// Parses a sequence header.
#[inline]
pub fn parse_sequence_header(r: &mut Reader<'_>) -> Result<SequenceHeader, DecodeError> {
    Ok(SequenceHeader {
        sequence_number: r.read_u32("SequenceHeader")?,
        request_id: r.read_u32("SequenceHeader")?,
    })
}

/// How the chunks of a channel are protected, as far as an observer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protection {
    /// Security None: everything readable.
    #[default]
    None,
    /// Sign: readable body followed by a signature of this many bytes, no padding.
    Sign {
        /// Signature length (32 for the SHA-256 policies, 20 for SHA-1 ones).
        signature_len: usize,
    },
    /// SignAndEncrypt (or any OPN of a secured policy): only the headers before the sequence
    /// header are readable.
    Encrypted,
    /// A secured chunk already opened by a key holder (padding and signature removed): read
    /// everything, OPN included, as clear text.
    Decrypted,
}

/// One secure conversation chunk split into its parts; the body is borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Message header (type, chunk type, size).
    pub header: MessageHeader,
    /// SecureChannelId (0 in the first OPN request).
    pub secure_channel_id: u32,
    /// Asymmetric or symmetric security header.
    pub security_header: SecurityHeader<'a>,
    /// The sequence header, or `None` when it is encrypted.
    pub sequence_header: Option<SequenceHeader>,
    /// The readable body (for a signed chunk without its signature), or the encrypted bytes
    /// after the security header when the chunk is encrypted.
    pub body: &'a [u8],
    /// The signature cut off a Sign-only chunk (empty otherwise).
    pub signature: &'a [u8],
    /// True when `body` is ciphertext.
    pub encrypted: bool,
}

/// Parses one whole chunk (exactly `message_size` bytes in `r`) under the given protection of
/// MSG/CLO chunks; OPN chunks decide for themselves from their policy URI.
pub fn parse_chunk<'a>(
    r: &mut Reader<'a>,
    protection: Protection,
) -> Result<Chunk<'a>, DecodeError> {
    const S: &str = "Chunk";
    let header = parse_message_header(r)?;
    if !header.message_type.is_secure_conversation() {
        return Err(r.invalid(S, "MessageType"));
    }
    let rest_len = (header.message_size as usize).saturating_sub(MESSAGE_HEADER_LEN);
    let mut c = r.sub(rest_len, S)?;
    let secure_channel_id = c.read_u32(S)?;
    let security_header = if header.message_type == MessageType::OpenSecureChannel {
        SecurityHeader::Asymmetric(parse_asymmetric_security_header(&mut c)?)
    } else {
        SecurityHeader::Symmetric {
            token_id: c.read_u32(S)?,
        }
    };
    let protection = match &security_header {
        _ if protection == Protection::Decrypted => Protection::None,
        SecurityHeader::Asymmetric(a) if a.is_policy_none() => Protection::None,
        SecurityHeader::Asymmetric(_) => Protection::Encrypted,
        SecurityHeader::Symmetric { .. } => protection,
    };
    if protection == Protection::Encrypted {
        return Ok(Chunk {
            header,
            secure_channel_id,
            security_header,
            sequence_header: None,
            body: c.take_rest(),
            signature: &[],
            encrypted: true,
        });
    }
    let sequence_header = parse_sequence_header(&mut c)?;
    let (body, signature) = match protection {
        Protection::Sign { signature_len } => {
            let body_len = c
                .remaining()
                .checked_sub(signature_len)
                .ok_or_else(|| c.invalid(S, "signature length"))?;
            (c.take(body_len, S)?, c.take_rest())
        }
        _ => (c.take_rest(), &[][..]),
    };
    Ok(Chunk {
        header,
        secure_channel_id,
        security_header,
        sequence_header: Some(sequence_header),
        body,
        signature,
        encrypted: false,
    })
}

impl Chunk<'_> {
    /// The TokenId of a MSG/CLO chunk (`None` for OPN).
    pub fn token_id(&self) -> Option<u32> {
        match self.security_header {
            SecurityHeader::Symmetric { token_id } => Some(token_id),
            SecurityHeader::Asymmetric(_) => None,
        }
    }
}

impl Encode for Chunk<'_> {
    fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_LEN
            .saturating_add(4)
            .saturating_add(self.security_header.encoded_len())
            .saturating_add(if self.sequence_header.is_some() {
                SEQUENCE_HEADER_LEN
            } else {
                0
            })
            .saturating_add(self.body.len())
            .saturating_add(self.signature.len())
    }
    /// Writes the chunk; MessageSize is recomputed from the parts, so a chunk decoded and encoded
    /// unchanged gives back its bytes, and an edited one gets a correct size.
    fn encode<B: BufMut>(&self, out: &mut B) {
        MessageHeader {
            message_size: u32::try_from(self.encoded_len()).unwrap_or(u32::MAX),
            ..self.header
        }
        .encode(out);
        out.put_u32_le(self.secure_channel_id);
        self.security_header.encode(out);
        if let Some(s) = self.sequence_header {
            out.put_u32_le(s.sequence_number);
            out.put_u32_le(s.request_id);
        }
        out.put_slice(self.body);
        out.put_slice(self.signature);
    }
}

/// The fields a proxy needs on its hot path, read straight from a symmetric (MSG/CLO) chunk
/// without building anything: no allocation, a handful of loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSummary {
    /// Message type.
    pub message_type: MessageType,
    /// F, C or A.
    pub chunk_type: ChunkType,
    /// Chunk size.
    pub message_size: u32,
    /// SecureChannelId.
    pub secure_channel_id: u32,
    /// TokenId (MSG/CLO only).
    pub token_id: Option<u32>,
    /// Sequence header, if readable.
    pub sequence_header: Option<SequenceHeader>,
    /// Numeric id of the body's encoding NodeId (first chunk of a message only, `None` when the
    /// body does not start with a numeric ns=0 NodeId or is encrypted).
    pub type_id: Option<u32>,
}

/// Reads the summary of one MSG/CLO chunk at the start of `buf` (a whole chunk or at least its
/// first 32 bytes). OPN chunks yield only the header fields.
#[inline]
pub fn summarize_chunk(buf: &[u8], protection: Protection) -> Result<ChunkSummary, DecodeError> {
    // Fast path for the common case: a symmetric chunk whose fixed 24-byte prefix is present.
    // Fixed offsets on a fixed-size array: no per-field bounds checks.
    if let Some(head) = buf.first_chunk::<28>() {
        macro_rules! u32_at {
            ($o:literal) => {
                u32::from_le_bytes([head[$o], head[$o + 1], head[$o + 2], head[$o + 3]])
            };
        }
        // Type and chunk byte as one word: one compare instead of four byte matches.
        let kind = match &[head[0], head[1], head[2], head[3]] {
            b"MSGF" => Some((MessageType::Message, ChunkType::Final)),
            b"MSGC" => Some((MessageType::Message, ChunkType::Intermediate)),
            b"MSGA" => Some((MessageType::Message, ChunkType::Abort)),
            b"CLOF" => Some((MessageType::CloseSecureChannel, ChunkType::Final)),
            b"CLOC" => Some((MessageType::CloseSecureChannel, ChunkType::Intermediate)),
            b"CLOA" => Some((MessageType::CloseSecureChannel, ChunkType::Abort)),
            _ => None,
        };
        let message_size = u32_at!(4);
        if let Some((message_type, chunk_type)) = kind {
            if message_size >= crate::tcp::MIN_MESSAGE_SIZE {
                let readable = protection != Protection::Encrypted;
                if readable && chunk_type != ChunkType::Abort && head[24] == 0x02 {
                    // Full numeric NodeId: rare for ns=0 service ids; the general path reads it.
                    return summarize_chunk_slow(buf, protection);
                }
                let type_id = if readable && chunk_type != ChunkType::Abort {
                    match head[24] {
                        0x00 => Some(u32::from(head[25])),
                        0x01 if head[25] == 0 => {
                            Some(u32::from(u16::from_le_bytes([head[26], head[27]])))
                        }
                        _ => None,
                    }
                } else {
                    None
                };
                return Ok(ChunkSummary {
                    message_type,
                    chunk_type,
                    message_size,
                    secure_channel_id: u32_at!(8),
                    token_id: Some(u32_at!(12)),
                    sequence_header: readable.then(|| SequenceHeader {
                        sequence_number: u32_at!(16),
                        request_id: u32_at!(20),
                    }),
                    type_id,
                });
            }
        }
    }
    summarize_chunk_slow(buf, protection)
}

fn summarize_chunk_slow(buf: &[u8], protection: Protection) -> Result<ChunkSummary, DecodeError> {
    let mut r = Reader::new(buf);
    let header = parse_message_header(&mut r)?;
    let secure_channel_id = r.read_u32("Chunk")?;
    let mut s = ChunkSummary {
        message_type: header.message_type,
        chunk_type: header.chunk_type,
        message_size: header.message_size,
        secure_channel_id,
        token_id: None,
        sequence_header: None,
        type_id: None,
    };
    if header.message_type == MessageType::OpenSecureChannel {
        return Ok(s);
    }
    s.token_id = Some(r.read_u32("Chunk")?);
    if protection == Protection::Encrypted {
        return Ok(s);
    }
    s.sequence_header = Some(parse_sequence_header(&mut r)?);
    if header.chunk_type != ChunkType::Abort {
        s.type_id = match r.read_u8("NodeId") {
            Ok(0x00) => r.read_u8("NodeId").ok().map(u32::from),
            Ok(0x01) if r.read_u8("NodeId").ok() == Some(0) => {
                r.read_u16("NodeId").ok().map(u32::from)
            }
            Ok(0x02) if r.read_u16("NodeId").ok() == Some(0) => r.read_u32("NodeId").ok(),
            _ => None,
        };
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )]
    use super::*;

    fn msg_chunk(chunk: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![b'M', b'S', b'G', chunk];
        v.extend_from_slice(&(24 + body.len() as u32).to_le_bytes());
        v.extend_from_slice(&7u32.to_le_bytes()); // SecureChannelId
        v.extend_from_slice(&3u32.to_le_bytes()); // TokenId
        v.extend_from_slice(&51u32.to_le_bytes()); // SequenceNumber
        v.extend_from_slice(&9u32.to_le_bytes()); // RequestId
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn symmetric_chunk_round_trip_and_summary() {
        let bytes = msg_chunk(b'F', &[0x01, 0x00, 0x3d, 0x03, 0xaa]);
        let c = parse_chunk(&mut Reader::new(&bytes), Protection::None).unwrap();
        assert_eq!(c.secure_channel_id, 7);
        assert_eq!(c.token_id(), Some(3));
        assert_eq!(
            c.sequence_header,
            Some(SequenceHeader {
                sequence_number: 51,
                request_id: 9
            })
        );
        assert_eq!(c.body, &[0x01, 0x00, 0x3d, 0x03, 0xaa]);
        assert_eq!(c.to_vec(), bytes);
        let s = summarize_chunk(&bytes, Protection::None).unwrap();
        assert_eq!(s.type_id, Some(829));
        assert_eq!(s.token_id, Some(3));
    }

    #[test]
    fn signed_chunk_keeps_signature_apart() {
        let mut body = vec![0x01, 0x00, 0x3d, 0x03];
        body.extend_from_slice(&[0xee; 32]);
        let bytes = msg_chunk(b'F', &body);
        let c = parse_chunk(
            &mut Reader::new(&bytes),
            Protection::Sign { signature_len: 32 },
        )
        .unwrap();
        assert_eq!(c.body, &[0x01, 0x00, 0x3d, 0x03]);
        assert_eq!(c.signature.len(), 32);
        assert_eq!(c.to_vec(), bytes);
        // A signature longer than what is there is an error, not a panic.
        assert!(parse_chunk(
            &mut Reader::new(&bytes),
            Protection::Sign { signature_len: 100 }
        )
        .is_err());
    }

    #[test]
    fn encrypted_chunk_reports_clear_headers_only() {
        let bytes = msg_chunk(b'C', &[1, 2, 3, 4, 5, 6, 7, 8]);
        let c = parse_chunk(&mut Reader::new(&bytes), Protection::Encrypted).unwrap();
        assert!(c.encrypted);
        assert_eq!(c.sequence_header, None);
        assert_eq!(c.token_id(), Some(3));
        assert_eq!(c.body.len(), 16);
        assert_eq!(c.to_vec(), bytes);
    }

    #[test]
    fn opn_with_secured_policy_is_protected() {
        let uri = b"http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256";
        let mut v = b"OPNF".to_vec();
        let body_len = 4 + (4 + uri.len()) + (4 + 3) + (4 + 20) + 16;
        v.extend_from_slice(&((8 + body_len) as u32).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(uri.len() as i32).to_le_bytes());
        v.extend_from_slice(uri);
        v.extend_from_slice(&3i32.to_le_bytes());
        v.extend_from_slice(&[0x30, 0x01, 0x00]);
        v.extend_from_slice(&20i32.to_le_bytes());
        v.extend_from_slice(&[0xab; 20]);
        v.extend_from_slice(&[0x5a; 16]);
        let c = parse_chunk(&mut Reader::new(&v), Protection::None).unwrap();
        assert!(c.encrypted);
        let SecurityHeader::Asymmetric(a) = &c.security_header else {
            panic!()
        };
        assert_eq!(a.policy_name().as_deref(), Some("Basic256Sha256"));
        assert!(!a.is_policy_none());
        assert_eq!(c.to_vec(), v);
    }

    #[test]
    fn fast_and_slow_summaries_agree() {
        let mut cases = vec![
            msg_chunk(b'F', &[0x01, 0x00, 0x3d, 0x03, 0xaa]),
            msg_chunk(b'C', &[0x00, 0x55, 0, 0]),
            msg_chunk(b'A', &[0, 0, 0x7d, 0x80, 0xff, 0xff, 0xff, 0xff]),
            msg_chunk(b'F', &[0x02, 0x00, 0x00, 0x3d, 0x03, 0, 0]),
            msg_chunk(b'F', &[0x01, 0x02, 0x3d, 0x03]),
        ];
        let mut opn = msg_chunk(b'F', &[1, 2, 3, 4]);
        opn[..3].copy_from_slice(b"OPN");
        cases.push(opn);
        let mut small = msg_chunk(b'F', &[0x01, 0x00, 0x3d, 0x03]);
        small[4] = 3;
        cases.push(small);
        for c in &cases {
            for p in [
                Protection::None,
                Protection::Sign { signature_len: 32 },
                Protection::Encrypted,
            ] {
                assert_eq!(summarize_chunk(c, p), summarize_chunk_slow(c, p), "{c:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn summaries_agree_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), t in 0usize..7) {
            let mut bytes = bytes;
            if bytes.len() >= 4 {
                let types: [&[u8; 3]; 7] = [b"MSG", b"CLO", b"OPN", b"HEL", b"MSG", b"ERR", b"XYZ"];
                bytes[..3].copy_from_slice(types[t]);
                bytes[3] = [b'F', b'C', b'A', b'F', b'Q', b'F', b'F'][t];
            }
            for p in [Protection::None, Protection::Encrypted] {
                proptest::prop_assert_eq!(summarize_chunk(&bytes, p), summarize_chunk_slow(&bytes, p));
            }
        }
    }
}
