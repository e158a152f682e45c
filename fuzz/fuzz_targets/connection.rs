//! The whole per-connection analysis fed arbitrary bytes in both directions: no panic, and
//! every event serialises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_analysis::{Connection, Direction, Options, Timestamp};

fuzz_target!(|input: Vec<(bool, Vec<u8>)>| {
    let mut c = Connection::new(
        "127.0.0.1:1".into(),
        "127.0.0.1:4840".into(),
        Options {
            messages: true,
            // Inputs are 1 µs apart: stalls are looked for, and found, all the time.
            stall_after: Some(std::time::Duration::from_micros(2)),
        },
        Timestamp::from_unix_micros(0),
    );
    for (i, (to_server, bytes)) in input.iter().enumerate() {
        let dir = if *to_server {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        c.handle_input(dir, bytes, Timestamp::from_unix_micros(i as i64));
        c.handle_timeout(Timestamp::from_unix_micros(i as i64));
        while let Some(e) = c.poll_event() {
            let _ = e.to_json().to_string();
        }
    }
});
