//! The MITM bridge fed arbitrary bytes from both sides: no panic, and what it queues for either
//! side stays bounded by what came in (plus the few messages it writes itself).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use uatap_crypto::passive::ClearRegistry;
use uatap_crypto::{Certificate, PrivateKey};
use uatap_proxy::mitm::{Bridge, Identity, MitmShared};

/// The fixtures' test keys: uatap's identity, and a server certificate to encrypt to.
fn shared() -> Arc<MitmShared> {
    static SHARED: OnceLock<Arc<MitmShared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let key = PrivateKey::from_file_bytes(include_bytes!(
                "../../fixtures/keys/asyncua-client/key.pem"
            ))
            .expect("key");
            let cert = Certificate::from_der(include_bytes!(
                "../../fixtures/keys/asyncua-client/cert.der"
            ))
            .expect("cert");
            let server = Certificate::from_der(include_bytes!(
                "../../fixtures/keys/node-server/cert.der"
            ))
            .expect("server cert");
            Arc::new(MitmShared::new(
                Identity {
                    key: Arc::new(key),
                    cert,
                    application_uri: "urn:uatap:test-client:asyncua".into(),
                    cert_path: "fixtures/keys/asyncua-client/cert.der".into(),
                },
                Some(server),
                Arc::new(ClearRegistry::default()),
                None,
            ))
        })
        .clone()
}

fuzz_target!(|input: Vec<(bool, Vec<u8>)>| {
    let mut b = Bridge::new(shared(), "127.0.0.1:4841".into());
    let mut total = 0usize;
    for (from_client, bytes) in &input {
        total = total.saturating_add(bytes.len());
        if *from_client {
            b.client_bytes(bytes);
        } else {
            b.server_bytes(bytes);
        }
        let out = b.to_client.len().saturating_add(b.to_server.len());
        assert!(out <= total.saturating_mul(4).saturating_add(1 << 20), "{out} out for {total} in");
        b.to_client.clear();
        b.to_server.clear();
    }
});
