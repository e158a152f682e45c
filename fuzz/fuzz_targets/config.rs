//! The proxy's TOML configuration file, arbitrary text: a config or a clear error, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(e) = uatap_proxy::config::parse(text, std::path::Path::new("/etc/uatap")) {
        let _ = e.to_string();
    }
});
