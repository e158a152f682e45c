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

/// What one leg of a recording holds, in order: bytes (`true`) or bytes the capture does
/// not have (`false`), with the direction (`true`: client to server).
pub type LegContents = Vec<(bool, bool, Vec<u8>)>;

/// Reads back a recording's legs by their server port.
pub fn legs_of(path: &std::path::Path) -> std::collections::HashMap<(u16, u16), LegContents> {
    let (events, damage) = uatap_recorder::read_streams(path).unwrap();
    assert!(damage.is_none(), "{damage:?}");
    let mut names = std::collections::HashMap::new();
    let mut legs: std::collections::HashMap<(u16, u16), LegContents> = Default::default();
    for e in events {
        match e {
            uatap_recorder::StreamEvent::Open {
                conn,
                client,
                server,
                ..
            } => {
                names.insert(conn, (client.port(), server.port()));
            }
            uatap_recorder::StreamEvent::Data {
                conn, dir, bytes, ..
            } => {
                let leg = legs.entry(names[&conn]).or_default();
                leg.push((true, dir == uatap_recorder::Direction::AToB, bytes.to_vec()));
            }
            uatap_recorder::StreamEvent::Gap {
                conn,
                dir,
                missing_bytes,
                ..
            } => {
                let leg = legs.entry(names[&conn]).or_default();
                leg.push((
                    false,
                    dir == uatap_recorder::Direction::AToB,
                    vec![0; missing_bytes as usize],
                ));
            }
            _ => {}
        }
    }
    legs
}
