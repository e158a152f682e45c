//! The admin API's requests (HTTP head and JSON body), arbitrary bytes: an answer with a status
//! for every one, no panic; two requests in a row on the same fault table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_proxy::fault::{admin::respond_to_bytes, table::Faults};

fuzz_target!(|requests: (Vec<u8>, Vec<u8>)| {
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let faults = Faults::new(tx);
    for r in [&requests.0, &requests.1] {
        let (status, body) = respond_to_bytes(r, &faults);
        assert!(status.len() > 4);
        let _ = body.to_string();
    }
});
