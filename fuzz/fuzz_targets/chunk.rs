//! UA TCP messages and secure conversation chunks: decode never panics; what decodes
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_codec::reader::Reader;
use uatap_codec::secure::{parse_chunk, summarize_chunk, Protection};
use uatap_codec::tcp::{frame, parse_tcp_message, Frame};
use uatap_codec::Encode;

fuzz_target!(|data: &[u8]| {
    let Ok(Frame::Complete { header }) = frame(data, None) else {
        return;
    };
    let whole = &data[..header.message_size as usize];
    if let Ok(m) = parse_tcp_message(&mut Reader::new(whole)) {
        assert_eq!(m.to_vec(), whole);
    }
    for p in [
        Protection::None,
        Protection::Sign { signature_len: 32 },
        Protection::Encrypted,
    ] {
        let _ = summarize_chunk(whole, p);
        if let Ok(c) = parse_chunk(&mut Reader::new(whole), p) {
            assert_eq!(c.to_vec(), whole);
        }
    }
});
