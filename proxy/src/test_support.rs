//! Helpers shared by the unit tests of this crate.

/// The client→server and server→client bytes of the first connection of a fixture capture.
pub fn fixture_streams(name: &str) -> (Vec<u8>, Vec<u8>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    let (events, err) = uatap_recorder::read_streams(&path).expect("fixture");
    assert!(err.is_none());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let first = events.first().map(uatap_recorder::StreamEvent::conn);
    for e in events {
        if let uatap_recorder::StreamEvent::Data {
            conn, dir, bytes, ..
        } = e
        {
            if Some(conn) == first {
                match dir {
                    uatap_recorder::Direction::AToB => a.extend_from_slice(&bytes),
                    uatap_recorder::Direction::BToA => b.extend_from_slice(&bytes),
                }
            }
        }
    }
    (a, b)
}
