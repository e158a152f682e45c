//! The fault language and the proxy's TOML config: any text gives a fault or an error, never a
//! panic; a fault written back parses to the same fault.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uatap_proxy::config;
use uatap_proxy::fault::FaultSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = FaultSpec::parse(text) {
        let again = FaultSpec::parse(&spec.to_string()).expect("written faults parse");
        assert_eq!(spec.to_string(), again.to_string());
    }
    let _ = config::parse(text, std::path::Path::new("/etc/uatap"));
});
