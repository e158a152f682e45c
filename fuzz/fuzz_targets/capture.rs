//! A capture file of arbitrary bytes (pcap or pcapng, as the first bytes say) read into
//! connections and their byte streams: no panic, and the reader's limits bound what it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_recorder::StreamReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = StreamReader::new(data) else {
        return;
    };
    let mut bytes = 0usize;
    let _ = reader.for_each_event(|event| {
        if let uatap_recorder::StreamEvent::Data { bytes: b, .. } = event {
            bytes = bytes.saturating_add(b.len());
        }
    });
    assert!(bytes <= data.len().saturating_mul(2).saturating_add(65_536));
});
