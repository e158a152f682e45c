//! Writing events as JSON Lines straight into a buffer: the contract's field names and order,
//! without building a `serde_json::Value` per event (which cost more than decoding the traffic).
//! [`Event::to_json`] remains the reference; a test holds the two equal on real captures.

use std::fmt::Write as _;

use uatap_codec::status::StatusCode;

use crate::event::{Event, EventKind, SCHEMA_VERSION};

/// Appends `s` as a JSON string.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    // Most strings need no escaping: copy runs of plain bytes at once.
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or(""));
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

/// Appends an integer.
fn push_int<T: itoa::Integer>(out: &mut String, v: T) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// One object being written: tracks the commas.
struct Obj<'a> {
    out: &'a mut String,
}

impl Obj<'_> {
    fn key(&mut self, k: &str) {
        if !self.out.ends_with('{') {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        push_str(self.out, v);
    }
    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }
    fn null(&mut self, k: &str) {
        self.key(k);
        self.out.push_str("null");
    }
    fn num<T: itoa::Integer>(&mut self, k: &str, v: T) {
        self.key(k);
        push_int(self.out, v);
    }
    fn opt_num<T: itoa::Integer>(&mut self, k: &str, v: Option<T>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.null(k),
        }
    }
    fn float(&mut self, k: &str, v: Option<f64>) {
        match v {
            // The same shortest form serde_json writes (it uses ryu too).
            Some(f) if f.is_finite() => {
                self.key(k);
                self.out.push_str(ryu::Buffer::new().format_finite(f));
            }
            _ => self.null(k),
        }
    }
    /// An array field, each element written by `item`.
    fn list<T>(&mut self, k: &str, items: &[T], mut item: impl FnMut(&mut String, &T)) {
        self.key(k);
        self.out.push('[');
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            item(self.out, v);
        }
        self.out.push(']');
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
    }
    fn status(&mut self, k: &str, name_key: &str, v: Option<u32>) {
        match v {
            Some(code) => {
                self.key(k);
                self.out.push('"');
                StatusCode(code).push_hex(self.out);
                self.out.push('"');
                self.opt_str(name_key, StatusCode(code).name());
            }
            None => {
                self.null(k);
                self.null(name_key);
            }
        }
    }
    /// Appends the fields of a serialisable payload (its object without the braces).
    fn payload<T: serde::Serialize>(&mut self, p: &T) {
        if let Ok(s) = serde_json::to_string(p) {
            if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if !inner.is_empty() {
                    self.out.push(',');
                    self.out.push_str(inner);
                }
            }
        }
    }
}

impl Event {
    /// Appends the event as one line of JSON (without the newline).
    pub fn write_json(&self, out: &mut String) {
        out.push('{');
        let mut o = Obj { out };
        o.num("v", SCHEMA_VERSION);
        o.key("ts");
        o.out.push('"');
        self.ts.write_rfc3339(o.out);
        o.out.push('"');
        o.str("conn", &self.conn);
        o.str("kind", self.kind.name());
        o.opt_str("dir", self.dir.map(|d| d.as_str()));
        match &self.kind {
            EventKind::ConnOpen { client, server } => {
                o.str("client", client);
                o.str("server", server);
            }
            EventKind::ConnClose {
                by,
                reason,
                bytes_c2s,
                bytes_s2c,
            } => {
                o.opt_str("by", by.as_str());
                o.str("reason", reason.as_str());
                o.num("bytes_c2s", *bytes_c2s);
                o.num("bytes_s2c", *bytes_s2c);
            }
            EventKind::Message(i) => {
                o.str("msg_type", i.msg_type);
                o.num("chunks", i.chunks);
                o.num("size", i.size);
                o.opt_num("channel_id", i.channel_id);
                o.opt_num("token_id", i.token_id);
                o.opt_num("sequence_number", i.sequence_number);
                o.opt_num("request_id", i.request_id);
                o.opt_str("service", i.service);
                o.opt_num("type_id", i.type_id);
                o.opt_num("request_handle", i.request_handle);
                o.status("service_result", "service_result_name", i.service_result);
                o.opt_num(
                    "notification_sequence_number",
                    i.notification_sequence_number,
                );
                o.bool("encrypted", i.encrypted);
                o.float("latency_ms", i.latency_ms);
            }
            EventKind::Hello(h) => {
                o.opt_str("endpoint_url", h.endpoint_url.as_deref());
                o.num("protocol_version", h.protocol_version);
                o.num("receive_buffer_size", h.receive_buffer_size);
                o.num("send_buffer_size", h.send_buffer_size);
                o.num("max_message_size", h.max_message_size);
                o.num("max_chunk_count", h.max_chunk_count);
            }
            EventKind::TcpError { status, reason } => {
                o.status("status", "status_name", *status);
                o.opt_str("reason", reason.as_deref());
            }
            EventKind::Abort {
                request_id,
                status,
                reason,
            } => {
                o.opt_num("request_id", *request_id);
                o.status("status", "status_name", *status);
                o.opt_str("reason", reason.as_deref());
            }
            EventKind::DecodeError {
                offset,
                what,
                hex_prefix,
            } => {
                o.num("offset", *offset);
                o.str("what", what);
                o.str("hex_prefix", hex_prefix);
            }
            EventKind::UpstreamError { error, detail } => {
                o.str("error", error);
                o.str("detail", detail);
            }
            EventKind::MessageStalled {
                offset,
                buffered_bytes,
                stalled_ms,
            } => {
                o.num("offset", *offset);
                o.num("buffered_bytes", *buffered_bytes);
                o.num("stalled_ms", *stalled_ms);
            }
            EventKind::WriteBlocked {
                blocked_ms,
                pending_bytes,
            } => {
                o.num("blocked_ms", *blocked_ms);
                o.num("pending_bytes", *pending_bytes);
            }
            EventKind::Recording {
                action,
                reason,
                path,
                bytes_written,
                headers_only_bytes,
            } => {
                o.str("action", action);
                o.str("reason", reason);
                o.str("path", path);
                o.num("bytes_written", *bytes_written);
                o.num("headers_only_bytes", *headers_only_bytes);
            }
            EventKind::FaultInjected { fault, detail } => {
                o.str("fault", fault);
                o.str("detail", detail);
            }
            EventKind::ReplayDivergence {
                role,
                service,
                detail,
                answer,
            } => {
                o.str("role", role);
                o.opt_str("service", service.as_deref());
                o.str("detail", detail);
                o.str("answer", answer);
            }
            EventKind::Publish(p) => {
                o.num("subscription_id", p.subscription_id);
                o.num("sequence_number", p.sequence_number);
                o.bool("keep_alive", p.keep_alive);
                o.num("notifications", p.notifications);
                o.bool("more_notifications", p.more_notifications);
                o.list(
                    "available_sequence_numbers",
                    &p.available_sequence_numbers,
                    |out, n| push_int(out, *n),
                );
                o.list("acks", &p.acks, |out, [s, n]| {
                    out.push('[');
                    push_int(out, *s);
                    out.push(',');
                    push_int(out, *n);
                    out.push(']');
                });
                o.list("ack_results", &p.ack_results, |out, r| {
                    // Names and hex need no escaping.
                    out.push('"');
                    r.push_display(out);
                    out.push('"');
                });
                o.opt_str("status", p.status.status.as_deref());
                o.opt_str("status_name", p.status.status_name);
                o.float("latency_ms", p.latency_ms);
            }
            EventKind::SecureChannel(p) => o.payload(p),
            EventKind::Session(p) => o.payload(p),
            EventKind::Subscription(p) => o.payload(p),
            EventKind::SequenceGap(p) => o.payload(p),
            EventKind::Republish(p) => o.payload(p),
            EventKind::ServiceFault(p) => o.payload(p),
            EventKind::Summary(p) => o.payload(p),
            EventKind::Reconnect(p) => o.payload(p),
            EventKind::Reject(p) => o.payload(p),
            EventKind::ProbeEndpoint(p) => o.payload(p),
            EventKind::ProbeSummary(p) => o.payload(p),
            EventKind::MonitoredItem(p) => o.payload(p),
            EventKind::ItemQuality(p) => o.payload(p),
            EventKind::ItemStale(p) => o.payload(p),
        }
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CloseReason, ClosedBy, Direction, MessageInfo};
    use crate::payload::{PublishInfo, Status};
    use crate::time::Timestamp;

    fn check(kind: EventKind) {
        let e = Event {
            ts: Timestamp::from_unix_micros(1_795_462_316_041_123),
            conn: "10.0.0.1:5000->10.0.0.2:4840".into(),
            dir: Some(Direction::ServerToClient),
            kind,
        };
        let mut s = String::new();
        e.write_json(&mut s);
        let parsed: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(parsed, e.to_json(), "{s}");
    }

    #[test]
    fn fast_writer_matches_the_reference() {
        check(EventKind::MessageStalled {
            offset: 3,
            buffered_bytes: 5,
            stalled_ms: 2000,
        });
        check(EventKind::WriteBlocked {
            blocked_ms: 2001,
            pending_bytes: 131_072,
        });
        check(EventKind::Recording {
            action: "stopped",
            reason: "disk full in /x \"y\": No space left on device".into(),
            path: "/x".into(),
            bytes_written: 262_144,
            headers_only_bytes: 0,
        });
        check(EventKind::Recording {
            action: "caught_up",
            reason: "kept up for 10 s".into(),
            path: "/x".into(),
            bytes_written: 0,
            headers_only_bytes: 1_048_576,
        });
        check(EventKind::DecodeError {
            offset: 7,
            what: "a \"quoted\"\\ line\nwith\u{1} control".into(),
            hex_prefix: "00ff".into(),
        });
        check(EventKind::Message(MessageInfo {
            msg_type: "MSG",
            chunks: 2,
            size: 1234,
            channel_id: Some(1),
            token_id: None,
            sequence_number: Some(9),
            request_id: Some(9),
            service: Some("PublishResponse"),
            type_id: Some(829),
            request_handle: Some(3),
            service_result: Some(0x8079_0000),
            notification_sequence_number: Some(3),
            encrypted: false,
            latency_ms: Some(12.5),
        }));
        check(EventKind::Publish(PublishInfo {
            subscription_id: 5,
            sequence_number: 7,
            keep_alive: false,
            notifications: 100,
            more_notifications: true,
            available_sequence_numbers: vec![6, 7],
            acks: vec![[5, 6]],
            ack_results: vec![StatusCode(0), StatusCode(0x807A_0000)],
            status: Status::of(0),
            latency_ms: Some(0.25),
        }));
        check(EventKind::FaultInjected {
            fault: "rewrite_endpoint_urls".into(),
            detail: "opc.tcp://kepware:49320 -> opc.tcp://proxy:4841 (3 endpoints)".into(),
        });
        check(EventKind::ReplayDivergence {
            role: "server",
            service: Some("ReadRequest".into()),
            detail: "no recorded Read of i=2259".into(),
            answer: "ReadResponse from recorded state".into(),
        });
        check(EventKind::ConnClose {
            by: ClosedBy::Unknown,
            reason: CloseReason::CaptureEnd,
            bytes_c2s: 1,
            bytes_s2c: 2,
        });
    }
}
