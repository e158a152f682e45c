//! The analysis of a connection with private keys (`--private-key`) fed arbitrary bytes: every
//! OPN is tried with the keys, every MSG with derived keys; no panic, every event serialises.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use uatap_analysis::{Connection, Direction, Options, Timestamp};
use uatap_crypto::passive::KeyStore;
use uatap_crypto::PrivateKey;

fn keys() -> &'static KeyStore {
    static KEYS: OnceLock<KeyStore> = OnceLock::new();
    KEYS.get_or_init(|| {
        let load = |pem: &[u8]| PrivateKey::from_file_bytes(pem).expect("key");
        KeyStore::new(vec![
            (
                "client".into(),
                load(include_bytes!("../../fixtures/keys/asyncua-client/key.pem")),
            ),
            (
                "server".into(),
                load(include_bytes!("../../fixtures/keys/node-server/key.pem")),
            ),
        ])
    })
}

fuzz_target!(|input: Vec<(bool, Vec<u8>)>| {
    let mut c = Connection::new(
        "127.0.0.1:1".into(),
        "127.0.0.1:4840".into(),
        Options {
            messages: true,
            stall_after: None,
        },
        Timestamp::from_unix_micros(0),
    );
    c.set_keys(keys());
    for (i, (to_server, bytes)) in input.iter().enumerate() {
        let dir = if *to_server {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        c.handle_input(dir, bytes, Timestamp::from_unix_micros(i as i64));
        while let Some(e) = c.poll_event() {
            let _ = e.to_json().to_string();
        }
    }
});
