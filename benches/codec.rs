//! Codec speed: a realistic PublishResponse (100 MonitoredItemNotifications, Double values with
//! source and server timestamps) decoded fully, and chunk framing alone (what the proxy needs
//! on its hot path), against the same bytes decoded by the published `async-opcua-types` crate.
//!
//! Run with `cargo bench --bench codec`; the README's performance section quotes the ratios.

use std::hint::black_box;
use std::io::Cursor;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uatap_codec::reader::Reader;
use uatap_codec::secure::{parse_chunk, summarize_chunk, Protection};
use uatap_codec::services::{
    parse_message, parse_notification, DataChangeNotification, MonitoredItemNotification,
    Notification, NotificationMessage, PublishResponse, ResponseHeader, ServiceBody,
};
use uatap_codec::status::StatusCode;
use uatap_codec::types::{DataValue, DateTime, ExtensionObject, NodeId, Variant};
use uatap_codec::{ids, Encode};

const ITEMS: usize = 100;

/// A MSG/F chunk carrying a PublishResponse like a Kepware server sends for 100 tags.
fn publish_chunk() -> Vec<u8> {
    let base = 134_000_000_000_000_000i64;
    let items: Vec<MonitoredItemNotification<'static>> = (0..ITEMS)
        .map(|i| MonitoredItemNotification {
            client_handle: i as u32 + 1,
            value: DataValue {
                value: Some(Variant::Double(20.0 + i as f64 * 0.25)),
                source_timestamp: Some(DateTime(base + i as i64 * 10_000)),
                server_timestamp: Some(DateTime(base + i as i64 * 10_000 + 1_000)),
                ..Default::default()
            },
        })
        .collect();
    let dcn = DataChangeNotification {
        monitored_items: Some(items),
        diagnostic_infos: Some(vec![]),
    };
    let body = PublishResponse {
        response_header: ResponseHeader {
            timestamp: DateTime(base),
            request_handle: 1234,
            service_result: StatusCode(0),
            service_diagnostics: Default::default(),
            string_table: Some(vec![]),
            additional_header: ExtensionObject::default(),
        },
        subscription_id: 4,
        available_sequence_numbers: Some(vec![57]),
        more_notifications: false,
        notification_message: NotificationMessage {
            sequence_number: 57,
            publish_time: DateTime(base),
            notification_data: Some(vec![ExtensionObject::binary(
                NodeId::numeric(0, ids::structure::DATA_CHANGE_NOTIFICATION),
                dcn.to_vec(),
            )]),
        },
        results: Some(vec![StatusCode(0)]),
        diagnostic_infos: Some(vec![]),
    };
    let mut payload = NodeId::numeric(0, ids::service::PUBLISH_RESPONSE).to_vec();
    body.encode(&mut payload);
    let mut chunk = b"MSGF".to_vec();
    chunk.extend_from_slice(&(24 + payload.len() as u32).to_le_bytes());
    for v in [1u32, 1, 9001, 77] {
        chunk.extend_from_slice(&v.to_le_bytes());
    }
    chunk.extend_from_slice(&payload);
    chunk
}

/// uatap's full decode: chunk, message, and every data change in it.
fn uatap_full(chunk: &[u8]) -> usize {
    let c = parse_chunk(&mut Reader::new(chunk), Protection::None).expect("chunk");
    let m = parse_message(&mut Reader::new(c.body)).expect("message");
    let ServiceBody::PublishResponse(p) = &m.body else {
        panic!("not a PublishResponse")
    };
    let mut n = 0;
    for eo in p.notification_message.notification_data.iter().flatten() {
        if let Ok(Notification::DataChange(d)) = parse_notification(eo) {
            n += d.monitored_items.map_or(0, |v| v.len());
        }
    }
    n
}

/// async-opcua-types: NodeId then PublishResponse (its type loader decodes the
/// DataChangeNotification inside the ExtensionObject eagerly).
fn async_opcua_full(body: &[u8], ctx: &opcua_types::Context<'_>) -> usize {
    use opcua_types::BinaryDecodable;
    let mut cur = Cursor::new(body);
    let _id = opcua_types::NodeId::decode(&mut cur, ctx).expect("node id");
    let p = opcua_types::PublishResponse::decode(&mut cur, ctx).expect("publish response");
    p.notification_message
        .notification_data
        .iter()
        .flatten()
        .filter_map(|eo| eo.inner_as::<opcua_types::DataChangeNotification>())
        .map(|d| d.monitored_items.as_ref().map_or(0, |v| v.len()))
        .sum()
}

fn bench(c: &mut Criterion) {
    let chunk = publish_chunk();
    let body = &chunk[24..];
    let owned = opcua_types::ContextOwned::default();
    let ctx = owned.context();
    assert_eq!(uatap_full(&chunk), ITEMS);
    assert_eq!(
        async_opcua_full(body, &ctx),
        ITEMS,
        "async-opcua-types decodes the items"
    );

    let mut g = c.benchmark_group("publish_response_100_items");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("uatap_full_decode", |b| {
        b.iter(|| uatap_full(black_box(&chunk)))
    });
    g.bench_function("async_opcua_types_full_decode", |b| {
        b.iter(|| async_opcua_full(black_box(body), &ctx))
    });
    g.finish();

    let mut g = c.benchmark_group("chunk_framing");
    g.throughput(Throughput::Elements(1));
    g.bench_function("uatap_summarize_chunk", |b| {
        b.iter(|| summarize_chunk(black_box(&chunk), Protection::None).expect("summary"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
