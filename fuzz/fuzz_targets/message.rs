//! Service message bodies: decode never panics, and a body that decodes re-encodes to the same
//! bytes (the proxy and replay rely on it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_codec::reader::Reader;
use uatap_codec::services::{parse_message, summarize_message};
use uatap_codec::Encode;

fuzz_target!(|data: &[u8]| {
    let _ = summarize_message(data);
    if let Ok(m) = parse_message(&mut Reader::new(data)) {
        assert_eq!(m.encoded_len(), data.len());
        let again = m.to_vec();
        // Booleans other than 0/1 decode as true and are written as 1: the only allowed change.
        if again != data {
            assert_eq!(again.len(), data.len());
            let m2 = parse_message(&mut Reader::new(&again)).expect("re-encoded body decodes");
            assert_eq!(m2.to_vec(), again);
        }
    }
});
