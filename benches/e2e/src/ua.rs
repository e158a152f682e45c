//! Just enough hand-written OPC UA binary encoding (security None) for a synthetic client and
//! server: HEL/ACK, OPN request/response, MSG chunks carrying ReadRequest/ReadResponse and
//! PublishRequest/PublishResponse (DataChangeNotification with Double values and timestamps).
//!
//! Layouts follow OPC 10000-6 (UA TCP, UA SecureConversation, UA Binary); uatap decodes every
//! one of these messages without a decode error (the driver checks its event file).

use std::time::{SystemTime, UNIX_EPOCH};

pub const POLICY_NONE: &str = "http://opcfoundation.org/UA/SecurityPolicy#None";

/// Encoding ids (DefaultBinary) of the services used.
pub const OPN_REQUEST: u16 = 446;
pub const OPN_RESPONSE: u16 = 449;
pub const CLO_REQUEST: u16 = 452;
pub const READ_REQUEST: u16 = 631;
pub const READ_RESPONSE: u16 = 634;
pub const PUBLISH_REQUEST: u16 = 826;
pub const PUBLISH_RESPONSE: u16 = 829;
pub const DATA_CHANGE_NOTIFICATION: u16 = 811;

/// DateTime now: 100 ns ticks since 1601-01-01.
pub fn now_ticks() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    116_444_736_000_000_000 + (d.as_nanos() / 100) as i64
}

#[derive(Default)]
pub struct W(pub Vec<u8>);

impl W {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.i32(-1),
            Some(s) => {
                self.i32(s.len() as i32);
                self.0.extend_from_slice(s.as_bytes());
                self
            }
        }
    }
    /// Four-byte NodeId in namespace 0 (ids up to 65535).
    pub fn node_ns0(&mut self, id: u16) -> &mut Self {
        self.u8(0x01).u8(0).u16(id)
    }
    /// Null NodeId (two-byte encoding).
    pub fn node_null(&mut self) -> &mut Self {
        self.u8(0x00).u8(0)
    }
    /// Null ExtensionObject.
    pub fn ext_null(&mut self) -> &mut Self {
        self.node_null().u8(0)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn put_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

pub fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_i64(buf: &mut [u8], at: usize, v: i64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
}

/// Request header (OPC 10000-4 §7.32); returns the offset of its RequestHandle in `w`.
pub fn request_header(w: &mut W, handle: u32) -> usize {
    w.node_null(); // AuthenticationToken (none: no session)
    w.i64(now_ticks());
    let at = w.len();
    w.u32(handle).u32(0).string(None).u32(10_000).ext_null();
    at
}

/// Response header (§7.33); returns the offset of its RequestHandle in `w`.
pub fn response_header(w: &mut W, handle: u32) -> usize {
    w.i64(now_ticks());
    let at = w.len();
    w.u32(handle).u32(0); // RequestHandle, ServiceResult Good
    w.u8(0); // ServiceDiagnostics: empty DiagnosticInfo
    w.i32(-1); // StringTable
    w.ext_null(); // AdditionalHeader
    at
}

pub fn hello(url: &str) -> Vec<u8> {
    let mut w = W::default();
    w.0.extend_from_slice(b"HELF");
    w.u32(0);
    w.u32(0)
        .u32(65_536)
        .u32(65_536)
        .u32(0)
        .u32(0)
        .string(Some(url));
    let n = w.len() as u32;
    w.put_u32(4, n);
    w.0
}

pub fn ack() -> Vec<u8> {
    let mut w = W::default();
    w.0.extend_from_slice(b"ACKF");
    w.u32(28);
    w.u32(0).u32(65_536).u32(65_536).u32(0).u32(0);
    w.0
}

fn opn_header(w: &mut W, channel: u32, seq: u32, request_id: u32) {
    w.0.extend_from_slice(b"OPNF");
    w.u32(0);
    w.u32(channel).string(Some(POLICY_NONE)).i32(-1).i32(-1);
    w.u32(seq).u32(request_id);
}

fn finish(mut w: W) -> Vec<u8> {
    let n = w.len() as u32;
    w.put_u32(4, n);
    w.0
}

pub fn opn_request(seq: u32, request_id: u32) -> Vec<u8> {
    let mut w = W::default();
    opn_header(&mut w, 0, seq, request_id);
    w.node_ns0(OPN_REQUEST);
    request_header(&mut w, 1);
    w.u32(0); // ClientProtocolVersion
    w.u32(0); // RequestType Issue
    w.u32(1); // SecurityMode None
    w.i32(0); // ClientNonce (empty)
    w.u32(3_600_000); // RequestedLifetime
    finish(w)
}

pub fn opn_response(channel: u32, token: u32, seq: u32, request_id: u32, handle: u32) -> Vec<u8> {
    let mut w = W::default();
    opn_header(&mut w, channel, seq, request_id);
    w.node_ns0(OPN_RESPONSE);
    response_header(&mut w, handle);
    w.u32(0); // ServerProtocolVersion
    w.u32(channel).u32(token).i64(now_ticks()).u32(600_000); // ChannelSecurityToken
    w.i32(0); // ServerNonce (empty)
    finish(w)
}

/// A CLO chunk (CloseSecureChannelRequest, symmetric security header): how a client says
/// goodbye before it closes the socket.
pub fn clo_request(channel: u32, token: u32, seq: u32, request_id: u32) -> Vec<u8> {
    let mut w = W::default();
    w.0.extend_from_slice(b"CLOF");
    w.u32(0);
    w.u32(channel).u32(token).u32(seq).u32(request_id);
    w.node_ns0(CLO_REQUEST);
    request_header(&mut w, request_id);
    finish(w)
}

/// Offsets in a MSG chunk (symmetric security header).
pub const MSG_SEQ: usize = 16;
pub const MSG_REQUEST_ID: usize = 20;
pub const MSG_BODY: usize = 24;

fn msg_header(w: &mut W, channel: u32, token: u32) {
    w.0.extend_from_slice(b"MSGF");
    w.u32(0);
    w.u32(channel).u32(token).u32(0).u32(0); // seq and request id patched per message
}

/// A ReadRequest chunk for `nodes` Value attributes; patch seq, request id and handle.
pub struct ReadRequestTemplate {
    pub bytes: Vec<u8>,
    pub handle_at: usize,
    pub ts_at: usize,
}

impl ReadRequestTemplate {
    pub fn new(channel: u32, token: u32, nodes: u32) -> Self {
        let mut w = W::default();
        msg_header(&mut w, channel, token);
        w.node_ns0(READ_REQUEST);
        let handle_at = request_header(&mut w, 0);
        let ts_at = handle_at - 8;
        w.f64(0.0); // MaxAge
        w.i32(2); // TimestampsToReturn Both
        w.i32(nodes as i32);
        for i in 0..nodes {
            // ns=2;i=1000+i, Value, no IndexRange, default DataEncoding
            w.u8(0x01).u8(2).u16(1000 + i as u16);
            w.u32(13).string(None).u16(0).string(None);
        }
        ReadRequestTemplate {
            bytes: finish(w),
            handle_at,
            ts_at,
        }
    }
    pub fn patch(&mut self, seq: u32, request_id: u32, handle: u32) {
        put_u32(&mut self.bytes, MSG_SEQ, seq);
        put_u32(&mut self.bytes, MSG_REQUEST_ID, request_id);
        put_u32(&mut self.bytes, self.handle_at, handle);
        put_i64(&mut self.bytes, self.ts_at, now_ticks());
    }
}

/// A ReadResponse chunk with `nodes` Double DataValues (value + source and server timestamps).
pub struct ReadResponseTemplate {
    pub bytes: Vec<u8>,
    pub handle_at: usize,
}

impl ReadResponseTemplate {
    pub fn new(channel: u32, token: u32, nodes: u32) -> Self {
        let mut w = W::default();
        msg_header(&mut w, channel, token);
        w.node_ns0(READ_RESPONSE);
        let handle_at = response_header(&mut w, 0);
        w.i32(nodes as i32);
        let t = now_ticks();
        for i in 0..nodes {
            w.u8(0x0D).u8(11).f64(20.0 + f64::from(i)).i64(t).i64(t);
        }
        w.i32(-1); // DiagnosticInfos
        ReadResponseTemplate {
            bytes: finish(w),
            handle_at,
        }
    }
    pub fn patch(&mut self, seq: u32, request_id: u32, handle: u32) {
        put_u32(&mut self.bytes, MSG_SEQ, seq);
        put_u32(&mut self.bytes, MSG_REQUEST_ID, request_id);
        put_u32(&mut self.bytes, self.handle_at, handle);
    }
}

/// A PublishRequest chunk acknowledging one notification message.
pub struct PublishRequestTemplate {
    pub bytes: Vec<u8>,
    pub handle_at: usize,
    pub sub_at: usize,
    pub ack_at: usize,
}

impl PublishRequestTemplate {
    pub fn new(channel: u32, token: u32) -> Self {
        let mut w = W::default();
        msg_header(&mut w, channel, token);
        w.node_ns0(PUBLISH_REQUEST);
        let handle_at = request_header(&mut w, 0);
        w.i32(1); // SubscriptionAcknowledgements
        let sub_at = w.len();
        w.u32(0).u32(0);
        PublishRequestTemplate {
            bytes: finish(w),
            handle_at,
            sub_at,
            ack_at: sub_at + 4,
        }
    }
    pub fn patch(&mut self, seq: u32, request_id: u32, subscription: u32, ack: u32) {
        put_u32(&mut self.bytes, MSG_SEQ, seq);
        put_u32(&mut self.bytes, MSG_REQUEST_ID, request_id);
        put_u32(&mut self.bytes, self.handle_at, request_id);
        put_u32(&mut self.bytes, self.sub_at, subscription);
        put_u32(&mut self.bytes, self.ack_at, ack);
    }
}

/// A PublishResponse chunk: one DataChangeNotification with `items` MonitoredItemNotifications
/// (ClientHandle, DataValue mask 0x0D: Double, SourceTimestamp, ServerTimestamp).
pub struct PublishResponseTemplate {
    pub bytes: Vec<u8>,
    pub handle_at: usize,
    pub header_ts_at: usize,
    pub available_at: usize,
    pub nm_seq_at: usize,
    pub publish_time_at: usize,
    /// Offset of the first item's value (f64); items are `ITEM` bytes apart.
    pub first_value_at: usize,
    pub items: u32,
}

pub const ITEM: usize = 4 + 1 + 1 + 8 + 8 + 8;

impl PublishResponseTemplate {
    pub fn new(channel: u32, token: u32, subscription: u32, items: u32) -> Self {
        let mut w = W::default();
        msg_header(&mut w, channel, token);
        w.node_ns0(PUBLISH_RESPONSE);
        let handle_at = response_header(&mut w, 0);
        let header_ts_at = handle_at - 8;
        w.u32(subscription);
        w.i32(1); // AvailableSequenceNumbers
        let available_at = w.len();
        w.u32(0);
        w.u8(0); // MoreNotifications
        let nm_seq_at = w.len();
        w.u32(0); // NotificationMessage.SequenceNumber
        let publish_time_at = w.len();
        w.i64(0); // PublishTime
        w.i32(1); // NotificationData: one ExtensionObject
        w.node_ns0(DATA_CHANGE_NOTIFICATION).u8(0x01);
        let len_at = w.len();
        w.i32(0);
        let body_start = w.len();
        w.i32(items as i32); // MonitoredItems
        let first_value_at = w.len() + 6;
        let t = now_ticks();
        for i in 0..items {
            w.u32(i + 1).u8(0x0D).u8(11).f64(f64::from(i)).i64(t).i64(t);
        }
        w.i32(-1); // DiagnosticInfos
        let body_len = (w.len() - body_start) as u32;
        w.put_u32(len_at, body_len);
        w.i32(1).u32(0); // Results: one Good (the request acknowledges one message)
        w.i32(-1); // DiagnosticInfos
        PublishResponseTemplate {
            bytes: finish(w),
            handle_at,
            header_ts_at,
            available_at,
            nm_seq_at,
            publish_time_at,
            first_value_at,
            items,
        }
    }

    /// Appends one message to `out`.
    pub fn emit(
        &self,
        out: &mut Vec<u8>,
        seq: u32,
        request_id: u32,
        handle: u32,
        nm_seq: u32,
        ts: i64,
    ) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let b = &mut out[start..];
        put_u32(b, MSG_SEQ, seq);
        put_u32(b, MSG_REQUEST_ID, request_id);
        put_u32(b, self.handle_at, handle);
        put_i64(b, self.header_ts_at, ts);
        put_u32(b, self.available_at, nm_seq);
        put_u32(b, self.nm_seq_at, nm_seq);
        put_i64(b, self.publish_time_at, ts);
        // Change one value per message so payloads are not all identical.
        let item = (nm_seq % self.items) as usize;
        let at = self.first_value_at + item * ITEM;
        b[at..at + 8].copy_from_slice(&f64::from(nm_seq).to_le_bytes());
    }
}

/// Skips an encoded NodeId at `at`; returns the offset after it.
pub fn skip_node_id(b: &[u8], at: usize) -> Option<usize> {
    let enc = *b.get(at)?;
    let n = match enc & 0x3F {
        0 => 2,
        1 => 4,
        2 => 7,
        3 => 3 + 4 + (get_u32(b, at + 3) as i32).max(0) as usize,
        4 => 3 + 16,
        5 => 3 + 4 + (get_u32(b, at + 3) as i32).max(0) as usize,
        _ => return None,
    };
    Some(at + n)
}

/// Request id, RequestHandle and type id of a MSG request chunk.
pub fn request_ids(chunk: &[u8]) -> Option<(u32, u32, u16)> {
    if chunk.len() < MSG_BODY + 4 || &chunk[..3] != b"MSG" {
        return None;
    }
    let request_id = get_u32(chunk, MSG_REQUEST_ID);
    let type_id = u16::from_le_bytes([chunk[MSG_BODY + 2], chunk[MSG_BODY + 3]]);
    let after_type = skip_node_id(chunk, MSG_BODY)?;
    let after_token = skip_node_id(chunk, after_type)?;
    let handle_at = after_token + 8;
    if chunk.len() < handle_at + 4 {
        return None;
    }
    Some((request_id, get_u32(chunk, handle_at), type_id))
}

/// Channel and token ids from an OPN response chunk.
pub fn opn_response_ids(chunk: &[u8]) -> Option<(u32, u32)> {
    let uri_len = (get_u32(chunk, 12) as i32).max(0) as usize;
    let mut at = 16 + uri_len;
    for _ in 0..2 {
        at += 4 + (get_u32(chunk, at) as i32).max(0) as usize;
    }
    at += 8; // sequence number, request id
    at = skip_node_id(chunk, at)?;
    // ResponseHeader: timestamp, handle, result, diagnostics (empty), string table, ext
    at += 8 + 4 + 4 + 1;
    let st = get_u32(chunk, at) as i32;
    at += 4;
    for _ in 0..st.max(0) {
        at += 4 + (get_u32(chunk, at) as i32).max(0) as usize;
    }
    at = skip_node_id(chunk, at)? + 1;
    at += 4; // ServerProtocolVersion
    if chunk.len() < at + 8 {
        return None;
    }
    Some((get_u32(chunk, at), get_u32(chunk, at + 4)))
}
