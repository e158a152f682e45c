//! `uatap redact` on a capture file of arbitrary bytes: the secrets of its OPC UA streams
//! found and zeroed. No panic; the copy has the input's length, and only zeros were written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_codec::secrets::stream_secrets;
use uatap_recorder::zero::zero_stream_spans;

fuzz_target!(|data: &[u8]| {
    let Ok((out, zeroed)) = zero_stream_spans(data, stream_secrets) else {
        return;
    };
    assert_eq!(out.len(), data.len());
    let changed = out.iter().zip(data).filter(|(a, b)| a != b).count();
    assert!(zeroed.packets > 0 || changed == 0);
    // Changed bytes are zeros, or TCP checksums (two bytes per changed packet).
    let not_zero = out
        .iter()
        .zip(data)
        .filter(|(a, b)| a != b && **a != 0)
        .count();
    assert!(not_zero <= zeroed.packets.saturating_mul(2));
});
