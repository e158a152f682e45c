//! UA TCP (UACP, OPC 10000-6 §7.1): the 8-byte message header shared by every message, and the
//! connection-protocol messages Hello, Acknowledge, Error and ReverseHello.

use bytes::BufMut;

use crate::error::{DecodeError, DecodeErrorKind};
use crate::reader::Reader;
use crate::types::{Decode, UaString};
use crate::Encode;

/// Length of the message header that starts every UACP and UASC message.
pub const MESSAGE_HEADER_LEN: usize = 8;

/// Smallest legal message: an ERR with an empty reason (open62541 rejects anything shorter).
pub const MIN_MESSAGE_SIZE: u32 = 16;

/// Longest EndpointUrl, ServerUri or Error reason the spec allows (OPC 10000-6 §7.1.2).
pub const MAX_URL_LENGTH: usize = 4096;

/// The three-letter MessageType of the message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `HEL`: the client opens the connection and states its limits.
    Hello,
    /// `ACK`: the server answers HEL with its limits.
    Acknowledge,
    /// `ERR`: either side reports a fatal error and closes.
    Error,
    /// `RHE`: a server opens a reverse connection.
    ReverseHello,
    /// `OPN`: OpenSecureChannel request or response.
    OpenSecureChannel,
    /// `MSG`: a service request or response on a secure channel.
    Message,
    /// `CLO`: CloseSecureChannel.
    CloseSecureChannel,
}

impl MessageType {
    /// Maps the three ASCII bytes to a type; `None` for anything else.
    #[inline]
    pub fn from_bytes(b: [u8; 3]) -> Option<Self> {
        Some(match &b {
            b"HEL" => MessageType::Hello,
            b"ACK" => MessageType::Acknowledge,
            b"ERR" => MessageType::Error,
            b"RHE" => MessageType::ReverseHello,
            b"OPN" => MessageType::OpenSecureChannel,
            b"MSG" => MessageType::Message,
            b"CLO" => MessageType::CloseSecureChannel,
            _ => return None,
        })
    }

    /// The three ASCII bytes on the wire.
    pub fn as_bytes(self) -> &'static [u8; 3] {
        match self {
            MessageType::Hello => b"HEL",
            MessageType::Acknowledge => b"ACK",
            MessageType::Error => b"ERR",
            MessageType::ReverseHello => b"RHE",
            MessageType::OpenSecureChannel => b"OPN",
            MessageType::Message => b"MSG",
            MessageType::CloseSecureChannel => b"CLO",
        }
    }

    /// The three letters as a string, as the event stream writes them.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Hello => "HEL",
            MessageType::Acknowledge => "ACK",
            MessageType::Error => "ERR",
            MessageType::ReverseHello => "RHE",
            MessageType::OpenSecureChannel => "OPN",
            MessageType::Message => "MSG",
            MessageType::CloseSecureChannel => "CLO",
        }
    }

    /// True for OPN, MSG and CLO, which carry a secure conversation chunk.
    pub fn is_secure_conversation(self) -> bool {
        matches!(
            self,
            MessageType::OpenSecureChannel | MessageType::Message | MessageType::CloseSecureChannel
        )
    }
}

/// The fourth header byte: whether this chunk ends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkType {
    /// `F`: the final (or only) chunk of a message.
    Final,
    /// `C`: an intermediate chunk; more follow.
    Intermediate,
    /// `A`: the sender aborts the message; the body holds an error and reason.
    Abort,
}

impl ChunkType {
    /// Maps the ASCII byte to a chunk type; `None` for anything else.
    #[inline]
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'F' => Some(ChunkType::Final),
            b'C' => Some(ChunkType::Intermediate),
            b'A' => Some(ChunkType::Abort),
            _ => None,
        }
    }

    /// The ASCII byte on the wire.
    pub fn as_byte(self) -> u8 {
        match self {
            ChunkType::Final => b'F',
            ChunkType::Intermediate => b'C',
            ChunkType::Abort => b'A',
        }
    }
}

/// The 8-byte header of every message (OPC 10000-6 §7.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// HEL, ACK, ERR, RHE, OPN, MSG or CLO.
    pub message_type: MessageType,
    /// F, C or A (always F for the UACP messages).
    pub chunk_type: ChunkType,
    /// Size of the whole message or chunk, header included.
    pub message_size: u32,
}

/// Parses the message header; validates the type, chunk byte and the minimum size.
#[inline]
pub fn parse_message_header(r: &mut Reader<'_>) -> Result<MessageHeader, DecodeError> {
    const S: &str = "MessageHeader";
    let start = r.offset();
    let t = r.take(3, S)?;
    let message_type = match t {
        [a, b, c] => MessageType::from_bytes([*a, *b, *c]),
        _ => None,
    }
    .ok_or(DecodeError {
        offset: start,
        structure: S,
        kind: DecodeErrorKind::UnknownMessageType,
    })?;
    let chunk_byte = r.read_u8(S)?;
    let chunk_type = ChunkType::from_byte(chunk_byte).ok_or(DecodeError {
        offset: start.saturating_add(3),
        structure: S,
        kind: DecodeErrorKind::InvalidValue { field: "ChunkType" },
    })?;
    if !message_type.is_secure_conversation() && chunk_type != ChunkType::Final {
        return Err(DecodeError {
            offset: start.saturating_add(3),
            structure: S,
            kind: DecodeErrorKind::InvalidValue { field: "ChunkType" },
        });
    }
    let size_at = r.offset();
    let message_size = r.read_u32(S)?;
    if message_size < MIN_MESSAGE_SIZE {
        return Err(DecodeError {
            offset: size_at,
            structure: S,
            kind: DecodeErrorKind::InvalidValue {
                field: "MessageSize",
            },
        });
    }
    Ok(MessageHeader {
        message_type,
        chunk_type,
        message_size,
    })
}

impl Encode for MessageHeader {
    fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_LEN
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(self.message_type.as_bytes());
        out.put_u8(self.chunk_type.as_byte());
        out.put_u32_le(self.message_size);
    }
}

/// What framing found at the start of a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet: at least `needed` more are required.
    Incomplete {
        /// Bytes still missing, at least.
        needed: usize,
    },
    /// A whole message of `header.message_size` bytes is at the start of the buffer.
    Complete {
        /// Its header.
        header: MessageHeader,
    },
}

/// Frames one message at the start of `buf`: tells "need N more bytes" apart from "invalid",
/// and rejects a MessageSize over `max_size` before any byte of the body is waited for.
#[inline]
pub fn frame(buf: &[u8], max_size: Option<u32>) -> Result<Frame, DecodeError> {
    if buf.len() < MESSAGE_HEADER_LEN {
        // Reject an unknown type as early as the bytes allow: a resync must not wait for 8 bytes.
        let known = buf.len().min(3);
        let prefix = buf.get(..known).unwrap_or(&[]);
        let plausible = [b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"MSG", b"CLO"]
            .iter()
            .any(|t| t.starts_with(prefix));
        if !plausible {
            return Err(DecodeError {
                offset: 0,
                structure: "MessageHeader",
                kind: DecodeErrorKind::UnknownMessageType,
            });
        }
        return Ok(Frame::Incomplete {
            needed: MESSAGE_HEADER_LEN.saturating_sub(buf.len()),
        });
    }
    let header = parse_message_header(&mut Reader::new(buf))?;
    if let Some(limit) = max_size {
        if header.message_size > limit {
            return Err(DecodeError {
                offset: 4,
                structure: "MessageHeader",
                kind: DecodeErrorKind::LimitExceeded {
                    field: "MessageSize",
                    limit: u64::from(limit),
                    actual: u64::from(header.message_size),
                },
            });
        }
    }
    let size = header.message_size as usize;
    if buf.len() < size {
        return Ok(Frame::Incomplete {
            needed: size.saturating_sub(buf.len()),
        });
    }
    Ok(Frame::Complete { header })
}

/// HEL: the client's protocol version, buffer limits and the endpoint it wants (§7.1.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloMessage<'a> {
    /// Latest protocol version the client supports (0 today).
    pub protocol_version: u32,
    /// Largest chunk the client can receive.
    pub receive_buffer_size: u32,
    /// Largest chunk the client will send.
    pub send_buffer_size: u32,
    /// Largest response message the client accepts; 0 = no limit.
    pub max_message_size: u32,
    /// Most chunks per response the client accepts; 0 = no limit.
    pub max_chunk_count: u32,
    /// The URL the client wants to talk to.
    pub endpoint_url: UaString<'a>,
}

/// Parses the body of a HEL (the reader is positioned after the 8-byte header).
pub fn parse_hello_message<'a>(r: &mut Reader<'a>) -> Result<HelloMessage<'a>, DecodeError> {
    const S: &str = "HelloMessage";
    Ok(HelloMessage {
        protocol_version: r.read_u32(S)?,
        receive_buffer_size: r.read_u32(S)?,
        send_buffer_size: r.read_u32(S)?,
        max_message_size: r.read_u32(S)?,
        max_chunk_count: r.read_u32(S)?,
        endpoint_url: UaString::decode(r)?,
    })
}

impl Encode for HelloMessage<'_> {
    fn encoded_len(&self) -> usize {
        20usize.saturating_add(self.endpoint_url.encoded_len())
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.protocol_version);
        out.put_u32_le(self.receive_buffer_size);
        out.put_u32_le(self.send_buffer_size);
        out.put_u32_le(self.max_message_size);
        out.put_u32_le(self.max_chunk_count);
        self.endpoint_url.encode(out);
    }
}

/// ACK: the server's protocol version and limits (§7.1.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcknowledgeMessage {
    /// Protocol version the server will use.
    pub protocol_version: u32,
    /// Largest chunk the server can receive.
    pub receive_buffer_size: u32,
    /// Largest chunk the server will send.
    pub send_buffer_size: u32,
    /// Largest request message the server accepts; 0 = no limit.
    pub max_message_size: u32,
    /// Most chunks per request the server accepts; 0 = no limit.
    pub max_chunk_count: u32,
}

/// Parses the body of an ACK.
pub fn parse_acknowledge_message(r: &mut Reader<'_>) -> Result<AcknowledgeMessage, DecodeError> {
    const S: &str = "AcknowledgeMessage";
    Ok(AcknowledgeMessage {
        protocol_version: r.read_u32(S)?,
        receive_buffer_size: r.read_u32(S)?,
        send_buffer_size: r.read_u32(S)?,
        max_message_size: r.read_u32(S)?,
        max_chunk_count: r.read_u32(S)?,
    })
}

impl Encode for AcknowledgeMessage {
    fn encoded_len(&self) -> usize {
        20
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.protocol_version);
        out.put_u32_le(self.receive_buffer_size);
        out.put_u32_le(self.send_buffer_size);
        out.put_u32_le(self.max_message_size);
        out.put_u32_le(self.max_chunk_count);
    }
}

/// ERR: a status code and a reason; the sender closes the connection after it (§7.1.2.5).
/// The same shape is the body of an abort chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage<'a> {
    /// The StatusCode, e.g. Bad_TcpServerTooBusy.
    pub error: u32,
    /// Free text for a person; the spec allows at most 4096 bytes.
    pub reason: UaString<'a>,
}

/// Parses the body of an ERR (or of an abort chunk).
pub fn parse_error_message<'a>(r: &mut Reader<'a>) -> Result<ErrorMessage<'a>, DecodeError> {
    const S: &str = "ErrorMessage";
    Ok(ErrorMessage {
        error: r.read_u32(S)?,
        reason: UaString::decode(r)?,
    })
}

impl Encode for ErrorMessage<'_> {
    fn encoded_len(&self) -> usize {
        4usize.saturating_add(self.reason.encoded_len())
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.error);
        self.reason.encode(out);
    }
}

/// RHE: a server that dialled the client names itself and its endpoint (§7.1.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseHelloMessage<'a> {
    /// The server's ApplicationUri.
    pub server_uri: UaString<'a>,
    /// The endpoint the client should name in its HEL.
    pub endpoint_url: UaString<'a>,
}

/// Parses the body of an RHE.
pub fn parse_reverse_hello_message<'a>(
    r: &mut Reader<'a>,
) -> Result<ReverseHelloMessage<'a>, DecodeError> {
    Ok(ReverseHelloMessage {
        server_uri: UaString::decode(r)?,
        endpoint_url: UaString::decode(r)?,
    })
}

impl Encode for ReverseHelloMessage<'_> {
    fn encoded_len(&self) -> usize {
        self.server_uri
            .encoded_len()
            .saturating_add(self.endpoint_url.encoded_len())
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.server_uri.encode(out);
        self.endpoint_url.encode(out);
    }
}

/// A whole UACP message (HEL, ACK, ERR or RHE) with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpMessage<'a> {
    /// HEL.
    Hello(HelloMessage<'a>),
    /// ACK.
    Acknowledge(AcknowledgeMessage),
    /// ERR.
    Error(ErrorMessage<'a>),
    /// RHE.
    ReverseHello(ReverseHelloMessage<'a>),
}

/// Parses a whole HEL, ACK, ERR or RHE message (header included); the body must fill exactly the
/// MessageSize. A secure conversation message type is reported as `InvalidValue`.
pub fn parse_tcp_message<'a>(r: &mut Reader<'a>) -> Result<TcpMessage<'a>, DecodeError> {
    let header = parse_message_header(r)?;
    let body_len = (header.message_size as usize).saturating_sub(MESSAGE_HEADER_LEN);
    let mut body = r.sub(body_len, "MessageHeader")?;
    let msg = match header.message_type {
        MessageType::Hello => TcpMessage::Hello(parse_hello_message(&mut body)?),
        MessageType::Acknowledge => TcpMessage::Acknowledge(parse_acknowledge_message(&mut body)?),
        MessageType::Error => TcpMessage::Error(parse_error_message(&mut body)?),
        MessageType::ReverseHello => {
            TcpMessage::ReverseHello(parse_reverse_hello_message(&mut body)?)
        }
        _ => return Err(body.invalid("MessageHeader", "MessageType")),
    };
    body.finish(match header.message_type {
        MessageType::Hello => "HelloMessage",
        MessageType::Acknowledge => "AcknowledgeMessage",
        MessageType::Error => "ErrorMessage",
        _ => "ReverseHelloMessage",
    })?;
    Ok(msg)
}

impl TcpMessage<'_> {
    /// The message type of this message.
    pub fn message_type(&self) -> MessageType {
        match self {
            TcpMessage::Hello(_) => MessageType::Hello,
            TcpMessage::Acknowledge(_) => MessageType::Acknowledge,
            TcpMessage::Error(_) => MessageType::Error,
            TcpMessage::ReverseHello(_) => MessageType::ReverseHello,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            TcpMessage::Hello(m) => m.encoded_len(),
            TcpMessage::Acknowledge(m) => m.encoded_len(),
            TcpMessage::Error(m) => m.encoded_len(),
            TcpMessage::ReverseHello(m) => m.encoded_len(),
        }
    }
}

impl Encode for TcpMessage<'_> {
    fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_LEN.saturating_add(self.body_len())
    }
    fn encode<B: BufMut>(&self, out: &mut B) {
        MessageHeader {
            message_type: self.message_type(),
            chunk_type: ChunkType::Final,
            message_size: u32::try_from(self.encoded_len()).unwrap_or(u32::MAX),
        }
        .encode(out);
        match self {
            TcpMessage::Hello(m) => m.encode(out),
            TcpMessage::Acknowledge(m) => m.encode(out),
            TcpMessage::Error(m) => m.encode(out),
            TcpMessage::ReverseHello(m) => m.encode(out),
        }
    }
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

    // HEL from basic-none.pcapng (asyncua client).
    fn hello_bytes() -> Vec<u8> {
        let url = b"opc.tcp://127.0.0.1:48401/UA/Test";
        let mut v = b"HELF".to_vec();
        v.extend_from_slice(&(32 + url.len() as u32).to_le_bytes());
        for x in [0u32, 65535, 65535, 0, 0] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&(url.len() as i32).to_le_bytes());
        v.extend_from_slice(url);
        v
    }

    #[test]
    fn hello_round_trip() {
        let bytes = hello_bytes();
        let msg = parse_tcp_message(&mut Reader::new(&bytes)).unwrap();
        let TcpMessage::Hello(h) = &msg else { panic!() };
        assert_eq!(h.receive_buffer_size, 65535);
        assert_eq!(
            h.endpoint_url,
            UaString::from("opc.tcp://127.0.0.1:48401/UA/Test")
        );
        assert_eq!(msg.to_vec(), bytes);
    }

    #[test]
    fn acknowledge_and_error_round_trip() {
        let ack = TcpMessage::Acknowledge(AcknowledgeMessage {
            protocol_version: 0,
            receive_buffer_size: 524288,
            send_buffer_size: 524288,
            max_message_size: 16777216,
            max_chunk_count: 256,
        });
        let bytes = ack.to_vec();
        assert_eq!(&bytes[..8], b"ACKF\x1c\x00\x00\x00");
        assert_eq!(parse_tcp_message(&mut Reader::new(&bytes)).unwrap(), ack);
        let err = TcpMessage::Error(ErrorMessage {
            error: 0x807D_0000,
            reason: UaString::from("busy"),
        });
        let bytes = err.to_vec();
        assert_eq!(bytes.len(), 20);
        assert_eq!(parse_tcp_message(&mut Reader::new(&bytes)).unwrap(), err);
    }

    #[test]
    fn framing_tells_incomplete_from_invalid() {
        let bytes = hello_bytes();
        assert_eq!(
            frame(&bytes[..2], None),
            Ok(Frame::Incomplete { needed: 6 })
        );
        assert_eq!(
            frame(&bytes[..10], None),
            Ok(Frame::Incomplete {
                needed: bytes.len() - 10
            })
        );
        assert!(matches!(frame(&bytes, None), Ok(Frame::Complete { .. })));
        assert!(matches!(
            frame(b"GET / HTTP/1.1", None).map_err(|e| e.kind),
            Err(DecodeErrorKind::UnknownMessageType)
        ));
        assert!(matches!(
            frame(b"GE", None).map_err(|e| e.kind),
            Err(DecodeErrorKind::UnknownMessageType)
        ));
        // A 4 GiB HEL is refused from its header alone.
        let huge = b"HELF\xff\xff\xff\xff";
        assert!(matches!(
            frame(huge, Some(65536)).map_err(|e| e.kind),
            Err(DecodeErrorKind::LimitExceeded {
                actual: 0xffff_ffff,
                ..
            })
        ));
        // HEL must be a final chunk; sizes below 16 are invalid.
        assert!(frame(b"HELC\x20\x00\x00\x00", None).is_err());
        assert!(frame(b"MSGF\x0f\x00\x00\x00", None).is_err());
    }

    #[test]
    fn trailing_bytes_in_hel_are_reported_with_offset() {
        let mut bytes = hello_bytes();
        bytes.push(0);
        let n = bytes.len() as u32;
        bytes[4..8].copy_from_slice(&n.to_le_bytes());
        let err = parse_tcp_message(&mut Reader::new(&bytes)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TrailingBytes { count: 1 });
        assert_eq!(err.offset, bytes.len() - 1);
    }
}
