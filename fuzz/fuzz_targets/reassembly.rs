//! Chunk reassembly: any bytes, split at fuzzer-chosen points, must never panic, and the
//! events must not depend on where the stream was split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_codec::reassembly::{Limits, Reassembler, ReassemblyEvent};

fn run(data: &[u8], splits: &[usize], limits: Limits) -> Vec<ReassemblyEvent> {
    let mut r = Reassembler::default();
    r.set_limits(limits);
    let mut out = Vec::new();
    let mut start = 0;
    for &s in splits.iter().chain(std::iter::once(&data.len())) {
        let end = s.clamp(start, data.len());
        r.handle_input(&data[start..end]);
        while let Some(e) = r.poll_event() {
            out.push(e);
        }
        start = end;
    }
    r.finish();
    while let Some(e) = r.poll_event() {
        out.push(e);
    }
    out
}

fuzz_target!(|input: (u8, u16, Vec<u8>)| {
    let (split_seed, chunk_limit, data) = input;
    let limits = Limits {
        max_chunk_size: Some(u32::from(chunk_limit).max(16)),
        max_message_size: Some(1 << 20),
        max_chunk_count: Some(8),
    };
    let whole = run(&data, &[], limits);
    let step = usize::from(split_seed % 13) + 1;
    let splits: Vec<usize> = (0..data.len()).step_by(step).collect();
    let split = run(&data, &splits, limits);
    assert_eq!(whole, split, "events depend on the split points");
});
